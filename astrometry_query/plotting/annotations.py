"""`plot_annotations`: the named stars and NGC/IC objects of a solved field,
circled and labelled where the labels crowd each other least."""
import math
import re

import astropy.units as u
import numpy as np
from astropy.table import Table

from ..exceptions import InvalidInputError
from ._display import (_area, _axes, _client, _display_box, _flag, _frame, _halo, _pixels,
                       _pixels_of, _pixscale, _solution, _wcs_of)
from ._guides import add_guides

__all__ = ['plot_annotations', 'TYPE_COLORS']

# Colour of each annotation type; other types are drawn in white.  The package
# re-exports this dict (and documents it) as plotting.TYPE_COLORS.
TYPE_COLORS = {'bright': '#ffd43b', 'ngc': '#4dabf7', 'ic': '#69db7c'}
# Label spots around an object, tried in this order: (dx, dy, ha, va).
_SPOTS = ((1, 0, 'left', 'center'), (-1, 0, 'right', 'center'), (0, 1, 'center', 'bottom'),
          (0, -1, 'center', 'top'), (0.7, 0.7, 'left', 'bottom'), (-0.7, 0.7, 'right', 'bottom'),
          (0.7, -0.7, 'left', 'top'), (-0.7, -0.7, 'right', 'top'))


def _annotation_rows(annotations):
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
    markers = [_display_box(ax, [(x - r, y - r), (x + r, y + r)]) if is_marker else None
               for x, y, r, _, _, is_marker in items]
    taken = list(reserved)

    def crowding(box, own):
        """(overlap with labels and outside the frame, overlap with markers)"""
        labels = sum(_area(Bbox.intersection(box, b)) for b in taken)
        outside = _area(box) - _area(Bbox.intersection(box, frame))
        others = sum(_area(Bbox.intersection(box, b)) for i, b in enumerate(markers)
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
                                fontsize=fontsize, path_effects=_halo(), clip_on=True,
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


def plot_annotations(image, job_or_header, ax=None, *, client=None, annotations=None,
                     nbright=None, hdu=None, interval=None, stretch=None, cmap='gray', grid=True,
                     labels=True, marker_radius=None, fontsize=8, colors=None, compass=False,
                     scalebar=False):
    """Draw the image with a RA/Dec grid and the objects annotated in the field.

    Point-like objects (named stars) get a circle of ``marker_radius``, NGC/IC
    objects a circle of their catalogue size; each is labelled with its first
    name, placed where it overlaps no other label (else the fewest), nor the
    compass and scale bar.  Labels are placed by importance: Messier objects,
    named stars (brightest first), other NGC/IC objects (largest first).

    Parameters
    ----------
    image : path, `~astropy.io.fits.HDUList`, HDU, `~numpy.ndarray`, `~astropy.nddata.NDData` or None
        The solved image (see `~astrometry_query.images.open_image`); None
        draws on a black canvas, or only the overlay when ``ax`` is given.
        New axes show pixel y = 1 at the bottom, as FITS images are shown,
        but a PNG, JPEG or GIF file as it is seen: y = 1 (its top row) at
        the top.
    job_or_header : `~astropy.io.fits.Header`, int or `~astrometry_query.results.Job`
        The header returned by a solve (its WCS is used as is, its
        ``AN_JOBID`` names the job), a job id or a Job record.
    ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
        Axes made with ``projection=WCS(header)`` of this solution; default a
        new figure.
    client : `~astrometry_query.AstrometryNetClass`, optional
        Who is asked for the WCS and the annotations; default the module's
        ``AstrometryNet``.
    annotations : `~astropy.table.Table` or list of dict, optional
        The objects (``get_annotations`` Table, or nova's list); default asked
        of ``client``.
    nbright : int, optional
        Only the N brightest named stars (when the annotations are asked for).
    hdu : int or str, optional
        Which HDU of a FITS image.
    interval : `~astropy.visualization.BaseInterval` or (vmin, vmax), optional
        Default `display_interval`.
    stretch : `~astropy.visualization.BaseStretch`, optional
        Default an asinh stretch fitted to the sky noise (see `display_norm`).
    cmap : str or `~matplotlib.colors.Colormap`
    grid, labels : bool
        Draw the coordinate grid; write the names.
    marker_radius : `~astropy.units.Quantity` or float, optional
        Circle around point-like objects: pixels, or an angle on the sky.
        Default 1.5 % of the larger image side.
    fontsize : float
    colors : dict, optional
        Colour per annotation type, updating `TYPE_COLORS`.
    compass : bool
        Draw arrows to the north and the east (as the WCS has them at the
        field's centre) in the lower left corner.
    scalebar : bool
        Draw a bar of a round angle (about a fifth of the image width) in the
        lower left corner.

    Returns
    -------
    `~astropy.visualization.wcsaxes.WCSAxes`
        The circles are one collection with gid ``'annotations'``, the labels
        texts with gid ``'annotation-label'``; the compass and scale bar are
        in an anchored box with gid ``'guides'`` (arrows with gids
        ``'compass-north'`` and ``'compass-east'``, the bar a line with gid
        ``'scale-bar'``).

    Raises
    ------
    InvalidInputError
        A bad argument (named in the message), an image of another size than
        the solution, or a header with neither WCS nor job id.
    """
    client = _client(client)
    compass, scalebar = _flag(compass, 'compass'), _flag(scalebar, 'scalebar')
    header, job = _solution(job_or_header, client)
    wcs = _wcs_of(header)
    data, top_down = _pixels(image, hdu, wcs)
    if annotations is None:
        if job is None:
            raise InvalidInputError('annotations: the header names no job (no AN_JOBID card), '
                                    'so give the annotations Table.')
        annotations = client.get_annotations(job, nbright=nbright)
    rows = _annotation_rows(annotations)
    palette = dict(TYPE_COLORS, **(colors or {}))
    nx, ny = wcs.pixel_shape
    point = (0.015 * max(nx, ny) if marker_radius is None
             else _pixels_of(marker_radius, 'marker_radius', _pixscale(wcs)))

    new = ax is None
    ax = _axes(ax, wcs)
    _frame(ax, data, wcs, new=new, top_down=top_down, interval=interval, stretch=stretch,
           cmap=cmap, grid=grid)
    guides = add_guides(ax, wcs, compass=compass, scalebar=scalebar)
    draw_objects(ax, rows, (nx, ny), point=point, palette=palette, labels=labels,
                 fontsize=fontsize, reserved=[guides.get_window_extent()] if guides else ())
    return ax


def draw_objects(ax, rows, shape, *, point, palette, labels, fontsize, linewidth=1.2,
                 skip_crowded=False, reserved=()):
    """Circle and label the objects of `_annotation_rows` on axes in pixel coordinates.

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
