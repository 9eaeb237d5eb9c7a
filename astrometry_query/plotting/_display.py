"""What both plots share: the arguments resolved into a client, a WCS and
pixels, and the frame they are drawn in (the image under its display
interval and stretch, the WCSAxes, the RA/Dec grid).

matplotlib and astropy.visualization are imported inside the functions
that need them: `astrometry_query.local.annotate` uses `display_interval`,
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

__all__ = ['display_interval']


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


# -- display ---------------------------------------------------------------------------------
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


def _halo():
    import matplotlib.patheffects as pe
    return [pe.withStroke(linewidth=2.5, foreground='black')]
