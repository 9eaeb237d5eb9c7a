"""Internal: what both plots share: the arguments resolved into a client, a WCS and
pixels, and the frame they are drawn in (the image under its display
interval and stretch, the WCSAxes, the RA/Dec grid).

matplotlib is imported inside the functions that need it: importing the
package must not import matplotlib.
"""
import math
import tempfile
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from ..display import display_norm
from ..exceptions import InvalidInputError, LocalSolverNotFoundError
from ..images import open_image
from ..results import JOB_ID_CARD, SUBMISSION_ID_CARD, Job, Submission, job_ref

__all__ = []

_NEEDS_CLIENT = ('pass client=, the AstrometryNetClass that solved it (e.g. '
                 'client=AstrometryNet)')


# -- inputs ----------------------------------------------------------------------------------
def _client(client, job_or_header):
    """Who is asked for what the arguments do not hold: ``client``, else the client a
    record is bound to (`~astrometry_query.results.Job.bind`), else None."""
    if client is None:
        if isinstance(job_or_header, (Job, Submission)):
            return job_or_header.client
        return None
    if not all(callable(getattr(client, m, None))
               for m in ('get_wcs_header', 'get_annotations', 'download')):
        raise InvalidInputError('client must be an AstrometryNetClass (e.g. the module\'s '
                                f'AstrometryNet) or None, got {type(client).__name__}.')
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
        return _asked(client, 'job_or_header', 'a header without WCS').get_wcs_header(job), job
    try:
        job_ref(job_or_header)
    except InvalidInputError as exc:
        raise InvalidInputError(f'job_or_header: {exc.message}') from None
    source = _asked(client, 'job_or_header', f'{type(job_or_header).__name__} {job_or_header!r}')
    return source.get_wcs_header(job_or_header), job_or_header


def _asked(client, argument, what):
    """``client``, or an error saying that ``what`` (given as ``argument``) needs one."""
    if client is None:
        raise InvalidInputError(f'{argument}: {what} names a job whose solution only a client '
                                f'can fetch; {_NEEDS_CLIENT}, or pass the header returned by '
                                'the solve.')
    return client


def _annotations_of(header, job, client, nbright):
    """The objects in the field: asked of ``client`` (for the job), else computed from the
    WCS by the local astrometry.net, as the local backend computes them."""
    if client is not None:
        if job is None:
            raise InvalidInputError('annotations: the header names no job (no AN_JOBID card), '
                                    'so give the annotations Table.')
        return client.get_annotations(job, nbright=nbright)
    from ..local.annotate import annotations
    with tempfile.TemporaryDirectory(prefix='aq-plot-') as tmp:
        path = Path(tmp) / 'wcs.fits'
        fits.PrimaryHDU(header=header).writeto(path)
        try:
            return annotations(path, nbright=nbright)
        except LocalSolverNotFoundError as exc:
            raise InvalidInputError(f'annotations: without a client they are computed from the '
                                    f'WCS by the local astrometry.net, which is missing here '
                                    f'({exc}); {_NEEDS_CLIENT}, or give annotations=.') from None


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


# -- the frame -------------------------------------------------------------------------------
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

