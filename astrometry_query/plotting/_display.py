"""What both plots share: the arguments resolved into a client, a WCS and
pixels, and the frame they are drawn in (the image under its display
interval and stretch, the WCSAxes, the RA/Dec grid).

matplotlib and astropy.visualization are imported inside the functions
that need them: `astrometry_query.local.annotate` uses `display_norm`,
and importing the package must not import matplotlib.
"""
import math
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from ..exceptions import InvalidInputError
from ..images import open_image
from ..results import JOB_ID_CARD, SUBMISSION_ID_CARD, job_ref

__all__ = ['display_interval', 'display_norm']


# -- inputs ----------------------------------------------------------------------------------
def _client(client):
    if client is None:
        from .. import AstrometryNet     # at call time: the instance the user configured
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
    """The image as float32 pixels, checked against the size the solution is for, and
    whether it is a picture (PNG, JPEG, GIF: its row 0, y = 1, is its top row)."""
    if image is None:
        if wcs.pixel_shape is None:
            raise InvalidInputError('image: None needs a solution with IMAGEW/IMAGEH cards to '
                                    'know the field size; pass the image.')
        return None, False
    img = open_image(image, hdu=hdu)
    ny, nx = img.shape
    if wcs.pixel_shape is not None and tuple(wcs.pixel_shape) != (nx, ny):
        sx, sy = wcs.pixel_shape
        raise InvalidInputError(f'image: {img.name} is {nx}x{ny} pixels but the solution is for '
                                f'{sx}x{sy}; pass the image that was solved.')
    if wcs.pixel_shape is None:
        wcs.pixel_shape = (nx, ny)
    return img.pixels(), img.flips_y


def _flag(value, name):
    """A bool argument, checked (a string such as 'no' would count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f'{name} must be True or False, got {value!r}.')
    return bool(value)


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


# -- display ---------------------------------------------------------------------------------
# The sky is shown from SKY_LOW noise sigmas under its level; the asinh stretch is linear up
# to SOFTENING sigmas above it (the noise stays dark and even) and logarithmic beyond (faint
# and bright stars both show).  A range of at least MIN_RANGE sigmas keeps a field with
# only faint stars from amplifying its noise into grey.
_SKY_LOW, _SOFTENING, _MIN_RANGE = 2.0, 2.0, 50.0
# Pixels this many sigmas over the sky are the stars'; the top end of the display is the
# _STAR_PERCENTILE of their levels: the peaks of the bright stars.
_STAR_SIGMAS, _STAR_PERCENTILE = 5.0, 99.5


def _sky_levels(data):
    """(sky, noise, star peak level) of an image, or None when it has no finite pixel.

    The sky and its noise are the sigma-clipped median and MAD standard
    deviation (astropy.stats); computed on at most a million pixels.
    """
    from astropy.stats import sigma_clipped_stats
    flat = np.ravel(data)
    sample = flat[::max(1, flat.size // 1_000_000)]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    if not sample.size:
        return None
    _, sky, noise = sigma_clipped_stats(sample, sigma=3.0, maxiters=10, stdfunc='mad_std')
    sky, noise = float(sky), float(noise)
    if not (math.isfinite(noise) and noise > 0):
        # quantised or clipped data (e.g. a black sky at 0): a thousandth of the range
        noise = float(np.ptp(sample)) / 1000.0
    stars = sample[sample > sky + _STAR_SIGMAS * noise]
    peak = float(np.percentile(stars, _STAR_PERCENTILE)) if stars.size else sky
    return sky, noise, peak


def display_interval(data):
    """The default display range of an image, from its sky and its stars.

    From 2 noise sigmas under the sky level (the sigma-clipped median) to the
    peak level of the bright stars (the 99.5th percentile of the pixels over
    5 sigmas), and at least 50 sigmas wide: a nearly empty field keeps a
    dark sky instead of stretching its noise to grey.  Computed on at most
    a million pixels.

    Parameters
    ----------
    data : `~numpy.ndarray`

    Returns
    -------
    `~astropy.visualization.ManualInterval`
    """
    return _interval(_sky_levels(data))


def _interval(levels):
    from astropy.visualization import ManualInterval
    if levels is None:
        return ManualInterval(0.0, 1.0)
    sky, noise, peak = levels
    if noise == 0:              # a flat image: any span will do
        return ManualInterval(sky, sky + 1.0)
    return ManualInterval(sky - _SKY_LOW * noise, max(peak, sky + _MIN_RANGE * noise))


def display_norm(data, interval=None, stretch=None):
    """How an image is shown: an `~astropy.visualization.ImageNormalize`.

    The default is the plots' and the annotated PNG's: `display_interval`,
    under an `~astropy.visualization.AsinhStretch` whose linear part spans
    the sky noise (2 sigmas): the sky is dark and even, and stars from the
    faintest to the brightest show, on a logarithmic scale.

    Parameters
    ----------
    data : `~numpy.ndarray`
    interval : `~astropy.visualization.BaseInterval` or (vmin, vmax), optional
        Default `display_interval`.
    stretch : `~astropy.visualization.BaseStretch`, optional
        Default the asinh stretch above (with any ``interval``).

    Returns
    -------
    `~astropy.visualization.ImageNormalize`
        Clipping: values outside the interval are shown as its ends.

    Raises
    ------
    InvalidInputError
        ``interval`` or ``stretch`` of the wrong kind.
    """
    from astropy.visualization import (AsinhStretch, BaseInterval, BaseStretch, ImageNormalize,
                                       ManualInterval)
    if isinstance(interval, (tuple, list)) and len(interval) == 2:
        interval = ManualInterval(*(u.Quantity(v).value for v in interval))
    if interval is not None and not isinstance(interval, BaseInterval):
        raise InvalidInputError('interval must be an astropy.visualization interval (e.g. '
                                f'ZScaleInterval()) or (vmin, vmax), got {interval!r}.')
    if stretch is not None and not isinstance(stretch, BaseStretch):
        raise InvalidInputError('stretch must be an astropy.visualization stretch (e.g. '
                                f'AsinhStretch()), got {stretch!r}.')
    data = np.asarray(data)
    finite = data[np.isfinite(data)]
    levels = _sky_levels(finite) if interval is None or stretch is None else None
    if interval is None:
        interval = _interval(levels)
    vmin, vmax = interval.get_limits(finite) if finite.size else (0.0, 1.0)
    if not vmax > vmin:
        vmax = vmin + 1.0
    if stretch is None:
        noise = levels[1] if levels else 0.0
        stretch = AsinhStretch(min(1.0, max(_SOFTENING * noise / (vmax - vmin), 1e-6)))
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch, clip=True)


def _axes(ax, wcs):
    """A WCSAxes for ``wcs``: ``ax`` when it already shows this solution, else a new figure."""
    from astropy.visualization.wcsaxes import WCSAxes
    if ax is None:
        import matplotlib.pyplot as plt
        nx, ny = wcs.pixel_shape
        # 8 inches wide, at most 14 high: a tall image gets a narrower figure
        height = min(max(8.0 * ny / nx, 3.0), 14.0)
        width = 8.0 if 8.0 * ny / nx <= 14.0 else max(4.0, 14.0 * nx / ny + 2.0)
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


def _frame(ax, data, wcs, *, new, top_down, interval, stretch, cmap, grid):
    """The image under its normalization, the frame's limits (new axes: y = 1 at the bottom,
    as FITS images are shown, or at the top for a picture, as it is seen), the axis labels
    (unless the axes have labels of their own) and the grid."""
    if data is not None:
        ax.imshow(data, origin='lower', cmap=cmap, norm=display_norm(data, interval, stretch))
    elif new:
        ax.set_facecolor('black')
    if new:
        nx, ny = wcs.pixel_shape
        # the frame is the data (as an image's extent is): quiver sizes its arrows on it
        ax.update_datalim([(-0.5, -0.5), (nx - 0.5, ny - 0.5)])
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(*((ny - 0.5, -0.5) if top_down else (-0.5, ny - 0.5)))
    for coord, label in zip(ax.coords, ('Right ascension (ICRS)', 'Declination (ICRS)')):
        # WCSAxes labels an axis with its physical type (pos.eq.ra) until told otherwise
        if coord.get_axislabel() in ('', coord.default_label):
            coord.set_axislabel(label)
    if grid:
        ax.coords.grid(color='white', alpha=0.4, linestyle='solid', linewidth=0.5)


def _display_box(ax, points):
    """The display-space box around data points (whatever the direction of the axes)."""
    from matplotlib.transforms import Bbox
    xy = ax.transData.transform(points)
    return Bbox.from_extents(*xy.min(axis=0), *xy.max(axis=0))


def _area(box):
    """The area of a Bbox; 0 for None (what an empty Bbox.intersection gives)."""
    return box.width * box.height if box is not None else 0.0


def _halo():
    import matplotlib.patheffects as pe
    return [pe.withStroke(linewidth=2.5, foreground='black')]
