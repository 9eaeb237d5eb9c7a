"""`plot_solution`: how well a solve fits, from the job's corr file: the
matched sources, the catalogue stars, the magnified residuals between them,
the key of the magnification and a summary of the RMS residual."""
import math

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..exceptions import InvalidInputError
from ._display import (_area, _axes, _client, _flag, _frame, _halo, _nice, _pixels,
                       _pixels_of, _pixscale, _solution, _wcs_of)
from ._guides import add_guides

__all__ = ['plot_solution']

_CORR_COLUMNS = ('field_x', 'field_y', 'index_x', 'index_y')
# The residual arrows, and those cut at the frame's edge
_ARROW, _CUT_ARROW = '#fcc419', '#ff922b'


def _table(value, name):
    """A Table from a Table, an HDUList (first table HDU), a table HDU, bytes or a path."""
    if isinstance(value, Table):
        return value
    try:
        if isinstance(value, fits.HDUList):
            value = next(h for h in value if isinstance(h, (fits.BinTableHDU, fits.TableHDU)))
        return Table.read(value, hdu=1) if not isinstance(value, (fits.BinTableHDU,
                                                                  fits.TableHDU)) \
            else Table(value.data)
    except Exception as exc:    # astropy's readers raise many kinds
        raise InvalidInputError(f'{name} must be a FITS table (Table, HDUList, HDU or path), '
                                f'got {type(value).__name__} ({exc}).') from None


def _residuals(corr, wcs, residuals):
    """Field and catalogue positions (FITS pixels) of each match: fx, fy, ix, iy."""
    missing = [c for c in _CORR_COLUMNS if c not in corr.colnames]
    if missing:
        raise InvalidInputError(f'corr has no column {", ".join(missing)}; it must be the '
                                "job's corr file (download(job, 'corr')).")
    fx, fy, ix, iy = (np.asarray(corr[c], dtype=float) for c in _CORR_COLUMNS)
    if residuals == 'wcs':
        if not {'index_ra', 'index_dec'} <= set(corr.colnames):
            raise InvalidInputError("corr has no index_ra/index_dec columns, needed for "
                                    "residuals='wcs'.")
        ix, iy = wcs.all_world2pix(np.asarray(corr['index_ra'], float),
                                   np.asarray(corr['index_dec'], float), 1)
    return fx, fy, np.asarray(ix), np.asarray(iy)


def _xy(axy):
    cols = {c.upper(): c for c in axy.colnames}
    if 'X' not in cols or 'Y' not in cols:
        raise InvalidInputError('sources must be a source list with X and Y columns '
                                f'(the job\'s axy file), got columns {axy.colnames}.')
    return np.asarray(axy[cols['X']], float), np.asarray(axy[cols['Y']], float)


def _cut_at(x0, y0, ex, ey, box):
    """How much (0-1) of each segment from (x0, y0) to (ex, ey) lies inside ``box``
    (xmin, xmax, ymin, ymax), from its start."""
    t = np.ones(len(x0))
    for start, end, low, high in ((x0, ex, box[0], box[1]), (y0, ey, box[2], box[3])):
        span = end - start
        with np.errstate(divide='ignore', invalid='ignore'):
            t = np.where(end > high, np.minimum(t, (high - start) / span), t)
            t = np.where(end < low, np.minimum(t, (low - start) / span), t)
    return np.clip(t, 0.0, 1.0)


def _extent(artist):
    """The display box of a text (with its bbox patch), a legend, an offset box or a
    QuiverKey (its arrow and its label); the figure must have been drawn."""
    from matplotlib.quiver import QuiverKey
    from matplotlib.transforms import Bbox
    if isinstance(artist, QuiverKey):
        offset = artist.get_transform().transform((artist.X, artist.Y))
        arrow = Bbox.union([p.get_extents(artist.vector.get_transform())
                            for p in artist.vector.get_paths()]).translated(*offset)
        return Bbox.union([arrow, artist.text.get_window_extent()])
    boxes = [artist.get_window_extent()]
    patch = getattr(artist, 'get_bbox_patch', lambda: None)()
    if patch is not None:
        boxes.append(patch.get_window_extent())
    return Bbox.union(boxes)


def _place_key(ax, arrows, key_px, label, reserved):
    """The key of the arrows where it overlaps none of ``reserved`` (artists) and stays in
    the frame: top right, under the summary, bottom left or over the legend, in this order
    (else where it overlaps least, the summary counting most)."""
    from matplotlib.transforms import Bbox
    fig = ax.figure
    # The figure is drawn to measure the key, without its images: matplotlib would
    # resample them (seconds for a large one) for each draw.
    images = [im for a in fig.axes for im in a.get_images() if im.get_visible()]

    def make(x, y, side):
        key = ax.quiverkey(arrows, x, y, key_px, label, labelpos=side, coordinates='axes',
                           color=_ARROW, labelcolor='white', fontproperties={'size': 8})
        key.text.set_path_effects(_halo())
        key.set_gid('residuals-key')
        for im in images:
            im.set_visible(False)
        try:
            fig.draw_without_rendering()
        finally:
            for im in images:
                im.set_visible(True)
        return key, _extent(key)

    # the key's size, from a first one (its length does not depend on where it is)
    key, extent = make(0.5, 0.5, 'W')
    label_width = key.text.get_window_extent().width
    key.remove()
    frame = ax.get_window_extent()
    boxes = [_extent(a) for a in reserved]
    weights = [10.0 if a.get_gid() == 'solution-summary' else 1.0 for a in reserved]
    gap, half = 4.0, extent.height / 2.0
    width = (extent.width - label_width) / frame.width      # the arrow's, as an axes fraction
    to_axes = ax.transAxes.inverted().transform

    def level(y):
        """A display height as an axes fraction."""
        return to_axes((frame.x0, y))[1]

    right, left = max(0.5, 0.97 - width), 0.03 + width
    spots = [(right, level(frame.y1 - gap - half), 'W')]
    spots += [(left, level(b.y0 - gap - half), 'E') for a, b in zip(reserved, boxes)
              if a.get_gid() == 'solution-summary']
    spots.append((left, level(frame.y0 + gap + half), 'E'))
    spots += [(right, level(b.y1 + gap + half), 'W') for a, b in zip(reserved, boxes)
              if a is ax.get_legend()]
    best = None
    for x, y, side in spots:
        key, extent = make(x, y, side)
        overlap = sum(w * _area(Bbox.intersection(extent, b)) for w, b in zip(weights, boxes)) \
            + _area(extent) - _area(Bbox.intersection(extent, frame))
        if best is None or overlap < best[0]:
            if best is not None:
                best[1].remove()
            best = (overlap, key)
        else:
            key.remove()
        if overlap == 0:
            break
    return best[1]


def plot_solution(image, job_or_header, ax=None, *, client=None, corr=None, sources=True,
                  residuals='wcs', scale=None, key_length=None, hdu=None, interval=None,
                  stretch=None, cmap='gray', grid=True, legend=True, compass=False,
                  scalebar=False):
    """Draw how well a solve fits: the sources, the catalogue stars and their residuals.

    Each catalogue star the solver matched (from the job's corr file) is a
    cross, the source it was matched to a circle, and an arrow goes from the
    star to the source, magnified ``scale`` times so that sub-pixel residuals
    show (the key gives the scale).  An arrow that would leave the frame is
    cut at its edge, drawn in orange and marked there with a square.  Every
    extracted source is a small dot, and a text gives the number of matches
    and the RMS residual.

    Parameters
    ----------
    image, job_or_header, ax, client, hdu, interval, stretch, cmap, grid, compass, scalebar
        As for `plot_annotations`.
    corr : `~astropy.table.Table`, `~astropy.io.fits.HDUList` or path, optional
        The job's corr file (``field_x``, ``field_y``, ``index_x``,
        ``index_y``, FITS pixels); default ``client.download(job, 'corr')``.
    sources : bool, `~astropy.table.Table`, `~astropy.io.fits.HDUList` or path
        Draw every extracted source: True asks ``client`` for the job's axy
        file, a table (``X``, ``Y``, FITS pixels) is drawn as given.
    residuals : {'wcs', 'corr'}
        Where the catalogue stars are: projected through the WCS of
        ``job_or_header`` (with its SIP terms; the default: the solution you
        use, which the local backend refits after the engine), or as the
        engine projected them when it matched (``index_x/y`` of the corr file).
    scale : float, optional
        How many times the arrows are longer than the residuals; default a
        round number that makes the 90th-percentile residual about 6 % of the
        image's shorter side.
    key_length : `~astropy.units.Quantity` or float, optional
        The residual shown by the key arrow: pixels, or an angle on the sky.
        Default a round value near the RMS residual.
    legend : bool
        Add a legend of the markers.

    Returns
    -------
    `~astropy.visualization.wcsaxes.WCSAxes`
        Artists have gids: ``'sources'``, ``'matched-sources'``,
        ``'catalog-stars'`` (collections), ``'residuals'`` (the quiver of the
        arrows inside the frame, ``U``, ``V`` the residuals in pixels),
        ``'residuals-cut'`` (the quiver of the arrows cut at the frame's edge,
        ``U``, ``V`` shortened to the part drawn) and ``'residuals-cut-ends'``
        (their squares at the edge), ``'residuals-key'`` (the key),
        ``'solution-summary'`` (the text) and ``'guides'`` (the compass and
        scale bar).

    Notes
    -----
    The RMS residual is ``sqrt(mean(dx**2 + dy**2))`` over the matches, the
    radial distance from each catalogue star to its source.  A false match
    (a residual over 5 times the robust spread, and over 1 px) would
    dominate it: such matches are drawn, counted apart in the text, and left
    out of the RMS.

    The key is put where it overlaps neither the text, the legend nor the
    guides, for the figure's size at the time of the call: top right, else
    under the text, else bottom left, else over the legend.

    Raises
    ------
    InvalidInputError
        A bad argument (named in the message), or a corr table without the
        solver's columns.
    """
    client = _client(client)
    compass, scalebar = _flag(compass, 'compass'), _flag(scalebar, 'scalebar')
    if residuals not in ('corr', 'wcs'):
        raise InvalidInputError(f"residuals must be 'corr' or 'wcs', got {residuals!r}.")
    if scale is not None:
        try:
            factor = float(u.Quantity(scale).to_value(u.dimensionless_unscaled))
        except (TypeError, ValueError, u.UnitsError):
            factor = math.nan
        if not (math.isfinite(factor) and factor > 0):
            raise InvalidInputError('scale must be a positive number (arrow length per pixel of '
                                    f'residual), got {scale!r}.')
        scale = factor
    header, job = _solution(job_or_header, client)
    wcs = _wcs_of(header)
    pixscale = _pixscale(wcs)
    key_px = None if key_length is None else _pixels_of(key_length, 'key_length', pixscale)
    data, top_down = _pixels(image, hdu, wcs)
    if (corr is None or sources is True) and job is None:
        raise InvalidInputError('job_or_header: the header names no job (no AN_JOBID card); '
                                'give corr and sources (or sources=False).')
    corr = _table(client.download(job, 'corr') if corr is None else corr, 'corr')
    fx, fy, ix, iy = _residuals(corr, wcs, residuals)
    if sources is True:
        sources = client.download(job, 'axy')
    sx, sy = _xy(_table(sources, 'sources')) if sources is not False else (None, None)

    dx, dy = fx - ix, fy - iy
    n = len(fx)
    length = np.hypot(dx, dy)
    # One false match (e.g. a corner star paired with a neighbour) would
    # dominate the RMS of a solution good to a hundredth of a pixel.
    limit = max(1.0, 5.0 * 1.4826 * float(np.median(length))) if n else math.inf
    outliers = int(np.sum(length > limit))
    kept = length[length <= limit]
    rms = float(np.sqrt(np.mean(kept ** 2))) if len(kept) else math.nan
    nx, ny = wcs.pixel_shape
    if scale is None:
        p90 = float(np.percentile(length, 90)) if n else 0.0
        scale = max(1.0, _nice(0.06 * min(nx, ny) / p90)) if p90 > 0 else 1.0
    if key_px is None:
        key_px = _nice(rms) if n and rms > 0 else 1.0

    new = ax is None
    ax = _axes(ax, wcs)
    _frame(ax, data, wcs, new=new, top_down=top_down, interval=interval, stretch=stretch,
           cmap=cmap, grid=grid)
    ax.apply_aspect()           # the frame's size on the screen, as drawn
    marker = 0.01 * max(nx, ny) * 72.0 / ax.figure.dpi * ax.get_window_extent().width / nx
    size = max(marker, 3.0) ** 2
    if sx is not None:
        ax.scatter(sx - 1, sy - 1, s=size / 4, marker='o', facecolors='none',
                   edgecolors='#ced4da', linewidths=0.5, gid='sources', zorder=2,
                   label=f'extracted sources ({len(sx)})')
    ax.scatter(fx - 1, fy - 1, s=size * 2, marker='o', facecolors='none', edgecolors='#22d3ee',
               linewidths=1.0, gid='matched-sources', zorder=3, label=f'matched sources ({n})')
    ax.scatter(ix - 1, iy - 1, s=size * 2, marker='+', color='#ff6b6b', linewidths=1.0,
               gid='catalog-stars', zorder=3, label=f'catalogue stars ({n})')
    # A magnified residual may run far out of the image: it is cut a little inside the
    # frame (so that its head and mark show), in another colour, and counted.
    margin = 0.01 * min(nx, ny)
    x0, y0 = ix - 1, iy - 1
    t = _cut_at(x0, y0, x0 + dx * scale, y0 + dy * scale,
                (margin - 0.5, nx - 0.5 - margin, margin - 0.5, ny - 0.5 - margin))
    cut = t < 1.0
    style = dict(angles='xy', scale_units='xy', scale=1.0 / scale, width=0.003, headwidth=4,
                 headlength=5, minlength=0.5, zorder=4)
    arrows = ax.quiver(x0[~cut], y0[~cut], dx[~cut], dy[~cut], color=_ARROW, gid='residuals',
                       **style)
    ncut = int(cut.sum())
    if ncut:
        ax.quiver(x0[cut], y0[cut], (dx * t)[cut], (dy * t)[cut], color=_CUT_ARROW,
                  gid='residuals-cut', **style)
        ax.scatter((x0 + dx * t * scale)[cut], (y0 + dy * t * scale)[cut], s=size / 2, marker='s',
                   color=_CUT_ARROW, edgecolors='black', linewidths=0.5, zorder=5,
                   gid='residuals-cut-ends', label=f'arrows cut at the frame ({ncut})')
    summary = (f'{n} matches\nRMS residual {rms:.3g} px ({rms * pixscale:.3g}\u2033)' if n
               else 'no matches')
    if outliers:
        summary += f'\n{outliers} over {limit:.2g} px (false matches?) not in the RMS'
    if ncut:
        summary += f'\n{ncut} arrow{"s" if ncut > 1 else ""} cut at the frame (orange)'
    text = ax.text(0.02, 0.98, summary, transform=ax.transAxes, ha='left', va='top', fontsize=9,
                   color='white', gid='solution-summary', zorder=5,
                   bbox={'facecolor': 'black', 'alpha': 0.6, 'edgecolor': 'none', 'pad': 3})
    reserved = [text]
    if legend:
        reserved.append(ax.legend(loc='lower right', fontsize=8, framealpha=0.6,
                                  facecolor='black', labelcolor='white', edgecolor='none',
                                  markerscale=1.0))
    guides = add_guides(ax, wcs, compass=compass, scalebar=scalebar)
    if guides is not None:
        reserved.append(guides)
    angle = f' = {key_px * pixscale:.2g}\u2033' if math.isfinite(pixscale) else ''
    _place_key(ax, arrows, key_px, f'{key_px:g} px{angle}  (arrows \u00d7{scale:g})', reserved)
    return ax
