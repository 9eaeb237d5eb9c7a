"""Plots of a solved field on astropy's WCSAxes: what is in it, and how well it is solved.

`plot_annotations` draws the image under a RA/Dec grid with the named stars
and NGC/IC objects of the field; `plot_solution` draws the extracted sources,
the catalogue stars matched to them and the residual of each match,
magnified so that sub-pixel errors show.

>>> from astrometry_query import AstrometryNet, plotting
>>> header = AstrometryNet.solve_from_image('m42.fits')          # doctest: +SKIP
>>> ax = plotting.plot_annotations('m42.fits', header)           # doctest: +SKIP
>>> ax.figure.savefig('m42-annotated.png')                       # doctest: +SKIP

matplotlib is imported when a plot is made, not when the package is.  The
solver's tables number pixels from 1 (FITS); matplotlib's pixel coordinates
start at 0, so every position is shifted by one when drawn.
"""
import math
import re
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from .exceptions import InvalidInputError
from .images import open_image
from .results import JOB_ID_CARD, SUBMISSION_ID_CARD, job_ref

__all__ = ['plot_annotations', 'plot_solution', 'display_interval', 'TYPE_COLORS']

#: Colour of each annotation type; other types are drawn in white.
TYPE_COLORS = {'bright': '#ffd43b', 'ngc': '#4dabf7', 'ic': '#69db7c'}
_CORR_COLUMNS = ('field_x', 'field_y', 'index_x', 'index_y')
# Label spots around an object, tried in this order: (dx, dy, ha, va).
_SPOTS = ((1, 0, 'left', 'center'), (-1, 0, 'right', 'center'), (0, 1, 'center', 'bottom'),
          (0, -1, 'center', 'top'), (0.7, 0.7, 'left', 'bottom'), (-0.7, 0.7, 'right', 'bottom'),
          (0.7, -0.7, 'left', 'top'), (-0.7, -0.7, 'right', 'top'))


# -- inputs ----------------------------------------------------------------------------------
def _client(client):
    if client is None:
        from . import AstrometryNet     # at call time: the instance the user configured
        return AstrometryNet
    if not all(callable(getattr(client, m, None))
               for m in ('get_wcs_header', 'get_annotations', 'download')):
        raise InvalidInputError('client must be an AstrometryNetClass (or None for the module\'s '
                                f'AstrometryNet), got {type(client).__name__}.')
    return client


def _solution(job_or_header, client):
    """The WCS header named by ``job_or_header`` and the job to ask for more (or None)."""
    if isinstance(job_or_header, fits.Header):
        named = JOB_ID_CARD in job_or_header or SUBMISSION_ID_CARD in job_or_header
        job = job_or_header if named else None
        if 'CTYPE1' in job_or_header:
            return job_or_header, job
        if job is None:
            raise InvalidInputError('job_or_header: this header has no WCS and no '
                                    f'{JOB_ID_CARD} card; pass the header returned by a solve, '
                                    'a job id or a Job.')
        return client.get_wcs_header(job), job
    try:
        job_ref(job_or_header)
    except InvalidInputError as exc:
        raise InvalidInputError(f'job_or_header: {exc.message}') from None
    return client.get_wcs_header(job_or_header), job_or_header


def _wcs_of(header):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)   # header-only files lack NAXISn
        try:
            wcs = WCS(header, relax=True, naxis=2)
        except Exception as exc:
            raise InvalidInputError(f'job_or_header: the WCS cannot be read ({exc}).') from None
    if not wcs.has_celestial:
        raise InvalidInputError('job_or_header: the header holds no celestial WCS.')
    nx = header.get('IMAGEW') or header.get('NAXIS1')
    ny = header.get('IMAGEH') or header.get('NAXIS2')
    if nx and ny:
        wcs.pixel_shape = (int(nx), int(ny))
    return wcs


def _pixels(image, hdu, wcs):
    """The image as float32 pixels, checked against the size the solution is for."""
    if image is None:
        if wcs.pixel_shape is None:
            raise InvalidInputError('image: None needs a solution with IMAGEW/IMAGEH cards to '
                                    'know the field size; pass the image.')
        return None
    img = open_image(image, hdu=hdu)
    ny, nx = img.shape
    if wcs.pixel_shape is not None and tuple(wcs.pixel_shape) != (nx, ny):
        sx, sy = wcs.pixel_shape
        raise InvalidInputError(f'image: {img.name} is {nx}x{ny} pixels but the solution is for '
                                f'{sx}x{sy}; pass the image that was solved.')
    if wcs.pixel_shape is None:
        wcs.pixel_shape = (nx, ny)
    return img.pixels()


def display_interval(data):
    """The default display range of an image, as an astropy interval.

    From ZScale's lower limit (just under the sky) to the 99.8th percentile,
    so that under an asinh stretch the sky is dark with its noise still
    visible, faint stars show and bright ones are not flattened.  Computed on
    at most a million pixels.

    Parameters
    ----------
    data : `~numpy.ndarray`

    Returns
    -------
    `~astropy.visualization.ManualInterval`
    """
    from astropy.visualization import ManualInterval, ZScaleInterval
    flat = np.ravel(data)
    sample = flat[::max(1, flat.size // 1_000_000)]
    sample = sample[np.isfinite(sample)]
    if not sample.size:
        return ManualInterval(0.0, 1.0)
    low = float(ZScaleInterval().get_limits(sample)[0])
    high = float(np.percentile(sample, 99.8))
    if not high > low:          # a flat image: any span will do
        high = low + 1.0
    return ManualInterval(low, high)


def _normalization(data, interval, stretch):
    from astropy.visualization import (AsinhStretch, BaseInterval, BaseStretch, ImageNormalize,
                                       ManualInterval)
    if isinstance(interval, (tuple, list)) and len(interval) == 2:
        interval = ManualInterval(*(u.Quantity(v).value for v in interval))
    stretch = AsinhStretch(0.1) if stretch is None else stretch
    if interval is not None and not isinstance(interval, BaseInterval):
        raise InvalidInputError('interval must be an astropy.visualization interval (e.g. '
                                f'ZScaleInterval()) or (vmin, vmax), got {interval!r}.')
    if not isinstance(stretch, BaseStretch):
        raise InvalidInputError('stretch must be an astropy.visualization stretch (e.g. '
                                f'AsinhStretch()), got {stretch!r}.')
    if interval is None:
        vmin, vmax = display_interval(data).get_limits(data)
    else:
        finite = data[np.isfinite(data)]
        vmin, vmax = interval.get_limits(finite) if finite.size else (0.0, 1.0)
        if not vmax > vmin:
            vmax = vmin + 1.0
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch, clip=True)


def _axes(ax, wcs):
    """A WCSAxes for ``wcs``: ``ax`` when it already shows this solution, else a new figure."""
    from astropy.visualization.wcsaxes import WCSAxes
    if ax is None:
        import matplotlib.pyplot as plt
        nx, ny = wcs.pixel_shape
        width = 8.0
        height = min(max(width * ny / nx, 3.0), 14.0)
        return plt.figure(figsize=(width, height)).add_subplot(projection=wcs)
    if not isinstance(ax, WCSAxes):
        raise InvalidInputError('ax must be a WCSAxes, e.g. plt.subplot(projection=WCS(header)), '
                                f'got {type(ax).__name__}.')
    # Same solution: the pixels of a few points go to the same place on the sky.
    nx, ny = wcs.pixel_shape
    xs, ys = np.array([0.0, nx - 1.0, 0.0, nx - 1.0]), np.array([0.0, 0.0, ny - 1.0, ny - 1.0])
    try:
        world = ax.wcs.pixel_to_world_values(xs, ys)
        back = np.asarray(wcs.world_to_pixel_values(*world[:2]))
        same = np.allclose(back, [xs, ys], atol=0.01)
    except Exception:
        same = False
    if not same:
        raise InvalidInputError('ax shows another WCS than this solution; pass ax=None, or '
                                'axes made with projection=WCS(header) of this solve.')
    return ax


def _frame(ax, data, wcs, *, new, interval, stretch, cmap, grid):
    if data is not None:
        ax.imshow(data, origin='lower', cmap=cmap, norm=_normalization(data, interval, stretch))
    elif new:
        ax.set_facecolor('black')
    if new:
        nx, ny = wcs.pixel_shape
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(-0.5, ny - 0.5)
        ax.coords[0].set_axislabel('Right ascension (ICRS)')
        ax.coords[1].set_axislabel('Declination (ICRS)')
    if grid:
        ax.coords.grid(color='white', alpha=0.4, linestyle='solid', linewidth=0.5)


def _pixels_of(value, name, pixscale):
    """A length in pixels from a number (pixels), a pixel Quantity or an angle."""
    try:
        q = u.Quantity(value)
        if q.unit.is_equivalent(u.deg):
            q = (q / (pixscale * u.arcsec / u.pix)).to(u.pix)
        px = float(q.to_value(u.pix) if q.unit != u.dimensionless_unscaled else q.value)
    except (TypeError, ValueError, u.UnitsError):
        px = math.nan
    if not (math.isfinite(px) and px > 0):
        raise InvalidInputError(f'{name} must be a positive length in pixels or an angle '
                                f'(e.g. 5 * u.pix or 30 * u.arcsec), got {value!r}.')
    return px


def _pixscale(wcs):
    """arcsec per pixel (mean of the two axes)."""
    return float(np.mean(proj_plane_pixel_scales(wcs.celestial)) * 3600.0)


def _nice(value):
    """The largest of 1, 2, 5 x 10**k that is <= value (value > 0)."""
    power = 10.0 ** math.floor(math.log10(value))
    return next(m for m in (5, 2, 1) if m * power <= value * (1 + 1e-9)) * power


def _halo():
    import matplotlib.patheffects as pe
    return [pe.withStroke(linewidth=2.5, foreground='black')]


# -- annotations -----------------------------------------------------------------------------
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


def _place_labels(ax, items, fontsize):
    """Write each label at the first spot around its object that overlaps no label written
    before and no other object's marker; if no spot is free, at the least crowded one.

    ``items``: (x, y, radius in pixels, text, colour, is_marker), most important first.
    """
    from matplotlib.transforms import Bbox
    frame = ax.get_window_extent()
    to_display = ax.transData.transform
    points_per_dot = 72.0 / ax.figure.dpi
    markers = [Bbox(to_display([(x - r, y - r), (x + r, y + r)])) if is_marker else None
               for x, y, r, _, _, is_marker in items]
    taken = []

    def crowding(box, own):
        others = taken + [b for i, b in enumerate(markers) if b is not None and i != own]
        inter = (Bbox.intersection(box, b) for b in others)
        overlap = sum(b.width * b.height for b in inter if b is not None)
        inside = Bbox.intersection(box, frame)
        outside = box.width * box.height - (inside.width * inside.height if inside else 0.0)
        return overlap + 2.0 * outside

    for own, (x, y, radius, text, color, _) in enumerate(items):
        reach = np.hypot(*(to_display((x + radius, y)) - to_display((x, y)))) * points_per_dot
        best = None
        # next to the object, else a little farther out
        for gap, (dx, dy, ha, va) in ((gap, spot) for gap in (2, 12) for spot in _SPOTS):
            if best is not None and best[0] == 0:
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
        taken.append(best[2].padded(1.0))


def plot_annotations(image, job_or_header, ax=None, *, client=None, annotations=None,
                     nbright=None, hdu=None, interval=None, stretch=None, cmap='gray', grid=True,
                     labels=True, marker_radius=None, fontsize=8, colors=None):
    """Draw the image with a RA/Dec grid and the objects annotated in the field.

    Point-like objects (named stars) get a circle of ``marker_radius``, NGC/IC
    objects a circle of their catalogue size; each is labelled with its first
    name, placed where it overlaps the fewest other labels.

    Parameters
    ----------
    image : path, `~astropy.io.fits.HDUList`, HDU, `~numpy.ndarray`, `~astropy.nddata.NDData` or None
        The solved image (see `~astrometry_query.images.open_image`); None
        draws on a black canvas, or only the overlay when ``ax`` is given.
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
        Default ``AsinhStretch(0.1)``.
    cmap : str or `~matplotlib.colors.Colormap`
    grid, labels : bool
        Draw the coordinate grid; write the names.
    marker_radius : `~astropy.units.Quantity` or float, optional
        Circle around point-like objects: pixels, or an angle on the sky.
        Default 1.5 % of the larger image side.
    fontsize : float
    colors : dict, optional
        Colour per annotation type, updating `TYPE_COLORS`.

    Returns
    -------
    `~astropy.visualization.wcsaxes.WCSAxes`
        The circles are one collection with gid ``'annotations'``, the labels
        texts with gid ``'annotation-label'``.

    Raises
    ------
    InvalidInputError
        A bad argument (named in the message), an image of another size than
        the solution, or a header with neither WCS nor job id.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    client = _client(client)
    header, job = _solution(job_or_header, client)
    wcs = _wcs_of(header)
    data = _pixels(image, hdu, wcs)
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
    _frame(ax, data, wcs, new=new, interval=interval, stretch=stretch, cmap=cmap, grid=grid)
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
            items.append((min(max(x0, 0.0), nx - 1.0), min(max(y0, 0.0), ny - 1.0),
                          reach, name, edge[-1], inside and r <= point))
    ax.add_collection(PatchCollection(circles, facecolors='none', edgecolors=edge,
                                      linewidths=1.2, gid='annotations', zorder=3),
                      autolim=False)
    if items:
        # small objects (named stars, brightest first) before the large ones
        items.sort(key=lambda item: not item[5])
        _place_labels(ax, items, fontsize)
    return ax


# -- solution --------------------------------------------------------------------------------
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


def plot_solution(image, job_or_header, ax=None, *, client=None, corr=None, sources=True,
                  residuals='wcs', scale=None, key_length=None, hdu=None, interval=None,
                  stretch=None, cmap='gray', grid=True, legend=True):
    """Draw how well a solve fits: the sources, the catalogue stars and their residuals.

    Each catalogue star the solver matched (from the job's corr file) is a
    cross, the source it was matched to a circle, and an arrow goes from the
    star to the source, magnified ``scale`` times so that sub-pixel residuals
    show (the key gives the scale).  Every extracted source is a small dot,
    and a text gives the number of matches and the RMS residual.

    Parameters
    ----------
    image, job_or_header, ax, client, hdu, interval, stretch, cmap, grid
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
        image side.
    key_length : `~astropy.units.Quantity` or float, optional
        The residual shown by the key arrow: pixels, or an angle on the sky.
        Default a round value near the RMS residual.
    legend : bool
        Add a legend of the markers.

    Returns
    -------
    `~astropy.visualization.wcsaxes.WCSAxes`
        Artists have gids: ``'sources'``, ``'matched-sources'``,
        ``'catalog-stars'`` (collections), ``'residuals'`` (the quiver) and
        ``'solution-summary'`` (the text).

    Notes
    -----
    The RMS residual is ``sqrt(mean(dx**2 + dy**2))`` over the matches, the
    radial distance from each catalogue star to its source.  A false match
    (a residual over 5 times the robust spread, and over 1 px) would
    dominate it: such matches are drawn, counted apart in the text, and left
    out of the RMS.

    Raises
    ------
    InvalidInputError
        A bad argument (named in the message), or a corr table without the
        solver's columns.
    """
    client = _client(client)
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
    data = _pixels(image, hdu, wcs)
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
        scale = max(1.0, _nice(0.06 * max(nx, ny) / p90)) if p90 > 0 else 1.0
    if key_px is None:
        key_px = _nice(rms) if n and rms > 0 else 1.0

    new = ax is None
    ax = _axes(ax, wcs)
    _frame(ax, data, wcs, new=new, interval=interval, stretch=stretch, cmap=cmap, grid=grid)
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
    arrows = ax.quiver(ix - 1, iy - 1, dx, dy, angles='xy', scale_units='xy', scale=1.0 / scale,
                       color='#fcc419', width=0.003, headwidth=4, headlength=5, minlength=0.5,
                       gid='residuals', zorder=4)
    angle = f' = {key_px * pixscale:.2g}\u2033' if math.isfinite(pixscale) else ''
    # the key arrow starts at its X: keep all of it inside the frame
    key_x = max(0.5, 0.97 - key_px * scale / nx)
    key = ax.quiverkey(arrows, key_x, 0.96, key_px,
                       f'{key_px:g} px{angle}  (arrows \u00d7{scale:g})', labelpos='W',
                       coordinates='axes', color='#fcc419', labelcolor='white',
                       fontproperties={'size': 8})
    key.text.set_path_effects(_halo())
    summary = (f'{n} matches\nRMS residual {rms:.3g} px ({rms * pixscale:.3g}\u2033)' if n
               else 'no matches')
    if outliers:
        summary += f'\n{outliers} over {limit:.2g} px (false matches?) not in the RMS'
    ax.text(0.02, 0.98, summary, transform=ax.transAxes, ha='left', va='top', fontsize=9,
            color='white', gid='solution-summary', zorder=5,
            bbox={'facecolor': 'black', 'alpha': 0.6, 'edgecolor': 'none', 'pad': 3})
    if legend:
        ax.legend(loc='lower right', fontsize=8, framealpha=0.6, facecolor='black',
                  labelcolor='white', edgecolor='none', markerscale=1.0)
    return ax
