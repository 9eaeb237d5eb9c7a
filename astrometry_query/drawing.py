"""Internal: the objects of a solved field drawn on matplotlib axes in pixel coordinates.

Circles and labels placed where they crowd each other least, as
`astrometry_query.plotting.plot_annotations` draws them and as the local
backend's annotated PNG (`write_png`) is drawn.  matplotlib is imported
inside the functions; pixels given are FITS 1-based.

The annotated PNG: the image at its own size, one pixel per image pixel, oriented as
`~astrometry_query.plotting.plot_annotations` shows it (pixel y = 1 at the bottom, as
FITS images are shown, but a picture file (PNG, JPEG, GIF) as it is seen, its top row at
the top).  Labels that would overlap one written before are left out (Messier objects
first, then named stars, brightest first, then other NGC/IC objects, largest first); the
circles are all drawn.  matplotlib draws the objects on a transparent figure, which
Pillow lays over the image: matplotlib would resample a large image, for seconds, to put
it back pixel for pixel.
"""
import math
import re

import astropy.units as u
import numpy as np
from astropy.table import Table

from .exceptions import InvalidInputError

__all__ = ['TYPE_COLORS', 'annotation_rows', 'draw_objects', 'draw_overlay', 'write_png',
           'display_box', 'box_area', 'halo']

#: matplotlib's points are pixels at this resolution (the annotated PNG)
_DPI = 72.0

# Colour of each annotation type; other types are drawn in white.  The plots re-export
# this dict (and document it) as plotting.TYPE_COLORS.
TYPE_COLORS = {'bright': '#ffd43b', 'ngc': '#4dabf7', 'ic': '#69db7c'}
# Label spots around an object, tried in this order: (dx, dy, ha, va).
_SPOTS = ((1, 0, 'left', 'center'), (-1, 0, 'right', 'center'), (0, 1, 'center', 'bottom'),
          (0, -1, 'center', 'top'), (0.7, 0.7, 'left', 'bottom'), (-0.7, 0.7, 'right', 'bottom'),
          (0.7, -0.7, 'left', 'top'), (-0.7, -0.7, 'right', 'top'))


def annotation_rows(annotations):
    """(x, y, radius, type, name) of a Table or of nova's list of dicts; FITS pixels."""
    if isinstance(annotations, Table):
        rows = [dict(zip(annotations.colnames, row)) for row in annotations.iterrows()]
    elif isinstance(annotations, (list, tuple)) and all(isinstance(a, dict) for a in annotations):
        rows = list(annotations)
    else:
        raise InvalidInputError('annotations must be the Table of get_annotations() or nova\'s '
                                f'list of dicts, got {type(annotations).__name__}.')
    out = []
    for row in rows:
        try:
            x, y = (float(u.Quantity(row[k]).value) for k in ('pixelx', 'pixely'))
            radius = float(u.Quantity(row.get('radius') or 0.0).value)
        except (KeyError, TypeError, ValueError):
            raise InvalidInputError('annotations: every object needs numbers pixelx and pixely '
                                    '(and radius, if given).') from None
        names = row.get('names') or row.get('name') or ''
        names = [n.strip() for n in (names.split(' / ') if isinstance(names, str) else names)]
        out.append((x, y, radius if math.isfinite(radius) else 0.0,
                    str(row.get('type', '')), _label(names)))
    return out


def _label(names):
    """The first name, with the Messier number first when there is one: "M 42 (NGC 1976)"."""
    names = [str(n) for n in names if str(n).strip()]
    if not names:
        return ''
    messier = next((n for n in names if re.fullmatch(r'M\s*\d+', n)), None)
    return f'{messier} ({names[0]})' if messier and messier != names[0] else names[0]


def _place_labels(ax, items, fontsize, *, skip_crowded=False, reserved=()):
    """Write each label at the first spot around its object that overlaps no label written
    before, no ``reserved`` box (display units) and no other object's marker.

    If no spot is free: the spot that overlaps the fewest labels, then the fewest markers;
    with ``skip_crowded``, a label that would overlap another label (or a reserved box, or
    leave the frame) is not written at all, so the most important objects, first in
    ``items``, keep theirs.

    ``items``: (x, y, radius in pixels, text, colour, is_marker), most important first.
    """
    from matplotlib.transforms import Bbox
    frame = ax.get_window_extent()
    to_display = ax.transData.transform
    points_per_dot = 72.0 / ax.figure.dpi
    markers = [display_box(ax, [(x - r, y - r), (x + r, y + r)]) if is_marker else None
               for x, y, r, _, _, is_marker in items]
    taken = list(reserved)

    def crowding(box, own):
        """(overlap with labels and outside the frame, overlap with markers)"""
        labels = sum(box_area(Bbox.intersection(box, b)) for b in taken)
        outside = box_area(box) - box_area(Bbox.intersection(box, frame))
        others = sum(box_area(Bbox.intersection(box, b)) for i, b in enumerate(markers)
                     if b is not None and i != own)
        return labels + 2.0 * outside, others

    for own, (x, y, radius, text, color, _) in enumerate(items):
        reach = np.hypot(*(to_display((x + radius, y)) - to_display((x, y)))) * points_per_dot
        best = None
        # next to the object, else a little farther out
        for gap, (dx, dy, ha, va) in ((gap, spot) for gap in (2, 12) for spot in _SPOTS):
            if best is not None and best[0] == (0, 0):
                break
            label = ax.annotate(text, (x, y), xytext=((reach + gap) * dx, (reach + gap) * dy),
                                textcoords='offset points', ha=ha, va=va, color=color,
                                fontsize=fontsize, path_effects=halo(), clip_on=True,
                                annotation_clip=False, gid='annotation-label', zorder=4)
            box = label.get_window_extent()
            cost = crowding(box, own)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, label, box)
            else:
                label.remove()
        if skip_crowded and best[0][0] > 0:
            best[1].remove()
        else:
            taken.append(best[2].padded(1.0))


def draw_objects(ax, rows, shape, *, point, palette, labels, fontsize, linewidth=1.2,
                 skip_crowded=False, reserved=()):
    """Circle and label the objects of `annotation_rows` on axes in pixel coordinates.

    ``shape`` is the field's (nx, ny); ``point`` the radius of point-like objects
    (pixels).  Labels are placed by importance: Messier objects first, then
    named stars (brightest first, as the annotations list them), then the
    other NGC/IC objects, largest first.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle
    nx, ny = shape
    circles, edge, items = [], [], []
    for x, y, radius, kind, name in rows:
        r = radius if radius > point else point
        x0, y0 = x - 1.0, y - 1.0                   # FITS -> matplotlib pixels
        circles.append(Circle((x0, y0), r))
        edge.append(palette.get(kind, 'white'))
        if labels and name:
            # an object centred off the image is labelled at the nearest edge
            # and one larger than a quarter of the image at its centre, inside its circle
            inside = 0 <= x0 <= nx - 1 and 0 <= y0 <= ny - 1
            reach = r if inside and r < 0.25 * min(nx, ny) else 0.0
            small = inside and r <= point
            rank = 0 if re.match(r'M\s*\d', name) else 1 if small else 2
            items.append(((rank, 0.0 if small else -r),
                          (min(max(x0, 0.0), nx - 1.0), min(max(y0, 0.0), ny - 1.0),
                           reach, name, edge[-1], small)))
    ax.add_collection(PatchCollection(circles, facecolors='none', edgecolors=edge,
                                      linewidths=linewidth, gid='annotations', zorder=3),
                      autolim=False)
    if items:
        items.sort(key=lambda item: item[0])
        _place_labels(ax, [item for _, item in items], fontsize, skip_crowded=skip_crowded,
                      reserved=reserved)


def display_box(ax, points):
    """The display-space box around data points (whatever the direction of the axes)."""
    from matplotlib.transforms import Bbox
    xy = ax.transData.transform(points)
    return Bbox.from_extents(*xy.min(axis=0), *xy.max(axis=0))


def box_area(box):
    """The area of a Bbox; 0 for None (what an empty Bbox.intersection gives)."""
    return box.width * box.height if box is not None else 0.0


def halo():
    """A black outline that keeps text readable on any image (matplotlib path effects)."""
    import matplotlib.patheffects as pe
    return [pe.withStroke(linewidth=2.5, foreground='black')]


def draw_overlay(annotations, shape, *, top_down=False):
    """The objects on a transparent matplotlib Figure of ``shape`` (nx, ny) pixels.

    Parameters
    ----------
    annotations : list of dict or `~astropy.table.Table`
        nova's annotations (FITS pixels), e.g. `astrometry_query.local.annotate.annotations`.
    shape : (int, int)
        The image's width and height in pixels.
    top_down : bool
        Pixel y = 1 at the top (a picture file) rather than at the bottom.

    Returns
    -------
    `~matplotlib.figure.Figure`
        On an Agg canvas, not attached to pyplot (safe in server threads); its
        one axes has the gids of `~astrometry_query.plotting.plot_annotations`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    nx, ny = shape
    big = max(nx, ny)
    fig = Figure(figsize=(nx / _DPI, ny / _DPI), dpi=_DPI)
    fig.patch.set_alpha(0.0)
    FigureCanvasAgg(fig)        # what the labels are measured with, and drawn by
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(*((ny - 0.5, -0.5) if top_down else (-0.5, ny - 0.5)))
    # Labels a little over 2 % of the larger side high (at least 11 px): readable at
    # full size and when a page shows the picture scaled down to a screen's width.
    draw_objects(ax, annotation_rows(annotations), (nx, ny), point=0.015 * big,
                 palette=TYPE_COLORS, labels=True, fontsize=max(11.0, big / 45.0),
                 linewidth=max(1.5, big / 400.0), skip_crowded=True)
    return fig


def write_png(path, annotations, shape, *, pixels=None, top_down=False):
    """Save the image with the objects drawn over it as an RGB PNG of ``shape`` (nx, ny).

    ``pixels``: (ny, nx) grey levels or (ny, nx, 3) RGB, uint8, row 0 at y = 1; default a
    black canvas.  Returns the overlay's Figure (see `draw_overlay`).
    """
    from PIL import Image
    fig = draw_overlay(annotations, shape, top_down=top_down)
    fig.canvas.draw()
    overlay = Image.fromarray(np.asarray(fig.canvas.buffer_rgba()))
    if pixels is None:
        base = Image.new('RGBA', overlay.size, (0, 0, 0, 255))
    else:
        rows = pixels if top_down else pixels[::-1]     # the PNG's row 0 is its top
        base = Image.fromarray(np.ascontiguousarray(rows, dtype=np.uint8)).convert('RGBA')
    # zlib's fast level: a large noisy image compresses little whatever the level, and
    # the slowest takes seconds
    Image.alpha_composite(base, overlay).convert('RGB').save(path, format='PNG',
                                                             compress_level=3)
    return fig
