"""The optional guides of both plots: an N/E compass and a scale bar, in one box anchored
in the lower left corner of the frame (so that other overlays can keep clear of it)."""
import math

import astropy.units as u
import numpy as np

from ._display import _nice, _pixscale

__all__ = []

# (unit symbol, arcsec per unit), largest first: a bar is labelled in the largest that fits
_ANGLE_UNITS = (('\u00b0', 3600.0), ('\u2032', 60.0), ('\u2033', 1.0))


def sky_directions(wcs, x, y):
    """Unit vectors in pixel space (FITS or 0-based: differences only) pointing to the north
    and to the east from pixel ``(x, y)``, as the WCS says (with its rotation, flip and
    distortion): two small steps on the sky, along position angles 0 and 90 degrees."""
    celestial = wcs.celestial
    centre = celestial.pixel_to_world(x, y)
    step = 2.0 * _pixscale(wcs) * u.arcsec
    out = []
    for angle in (0.0, 90.0):
        px, py = celestial.world_to_pixel(centre.directional_offset_by(angle * u.deg, step))
        vector = np.array([float(px) - x, float(py) - y])
        out.append(vector / np.hypot(*vector))
    return out


def scale_length(wcs, width):
    """The largest round angle (1, 2, 5 x 10**k) within a quarter of ``width`` pixels:
    (length in pixels, label)."""
    pixscale = _pixscale(wcs)
    target = 0.25 * width * pixscale
    symbol, per = next((s, p) for s, p in _ANGLE_UNITS if target >= p or p == 1.0)
    value = _nice(target / per)
    return value * per / pixscale, f'{value:g}{symbol}'


def _compass_area(ax, wcs, fontsize, color):
    """A DrawingArea (points, y up) with arrows to the north and the east of the field's
    centre, as long as three letters are high, and just large enough to hold them."""
    from matplotlib.offsetbox import DrawingArea
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.text import Text
    nx, ny = wcs.pixel_shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    length = 3.0 * fontsize
    to_display = ax.transData.transform
    directions = []
    for dx, dy in sky_directions(wcs, cx, cy):
        # the direction on screen: the axes may be inverted (a picture)
        sx, sy = to_display((cx + dx, cy + dy)) - to_display((cx, cy))
        directions.append(np.array([sx, sy]) / math.hypot(sx, sy))
    labels = [(length + 0.7 * fontsize) * d for d in directions]
    half = 0.6 * fontsize               # about half a letter
    corners = np.array([[0.0, 0.0]] + [d * length for d in directions]
                       + [p + s for p in labels for s in ((-half, -half), (half, half))])
    low, high = corners.min(axis=0), corners.max(axis=0)
    area = DrawingArea(*(high - low))
    for direction, label, name in zip(directions, labels, ('north', 'east')):
        area.add_artist(FancyArrowPatch(tuple(-low), tuple(length * direction - low),
                                        arrowstyle='-|>', mutation_scale=fontsize * 1.2,
                                        color=color, linewidth=1.5, shrinkA=0, shrinkB=0,
                                        gid=f'compass-{name}'))
        area.add_artist(Text(*(label - low), name[0].upper(), color=color, fontsize=fontsize,
                             ha='center', va='center', gid=f'compass-{name}-label'))
    return area


def _scale_bar(ax, wcs, fontsize, color):
    """A horizontal bar of a round angle (data units: pixels) over its label."""
    from matplotlib.lines import Line2D
    from matplotlib.offsetbox import AuxTransformBox, TextArea, VPacker
    nx, _ = wcs.pixel_shape
    pixels, label = scale_length(wcs, nx)
    bar = AuxTransformBox(ax.transData)
    bar.add_artist(Line2D([0.0, pixels], [0.0, 0.0], color=color, linewidth=2.5,
                          solid_capstyle='butt', gid='scale-bar'))
    text = TextArea(label, textprops={'color': color, 'fontsize': fontsize,
                                      'gid': 'scale-bar-label'})
    return VPacker(children=[bar, text], align='center', pad=0, sep=3)


def add_guides(ax, wcs, *, compass, scalebar, fontsize=10, color='white'):
    """The compass and/or scale bar in a box at the frame's lower left, on a half-dark
    ground (no halo: at screen resolutions it would eat thin letters); the box or None.

    The box has gid ``'guides'``.  Directions are computed for the axes as they are laid
    out now (``apply_aspect``), and stay right when the figure is resized: the axes keep
    their equal aspect.
    """
    if not (compass or scalebar):
        return None
    from matplotlib.offsetbox import AnchoredOffsetbox, VPacker
    ax.apply_aspect()
    children = ([_compass_area(ax, wcs, fontsize, color)] if compass else []) \
        + ([_scale_bar(ax, wcs, fontsize, color)] if scalebar else [])
    box = AnchoredOffsetbox('lower left', child=VPacker(children=children, align='center',
                                                        pad=0, sep=4),
                            pad=0.4, borderpad=0.6, frameon=True)
    box.patch.set(facecolor='black', alpha=0.5, edgecolor='none')
    box.set_gid('guides')
    box.set_zorder(6)
    ax.add_artist(box)
    return box
