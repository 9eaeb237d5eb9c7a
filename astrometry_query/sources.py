"""Source extraction with sep, image reading, RA/Dec hints from headers, and
x/y lists in the form astrometry.net reads.
"""
import re
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.table import Table

from .exceptions import InvalidInputError
from .settings import MAX_SOURCES

__all__ = ['read_image', 'extract_sources', 'write_xylist', 'header_position', 'check_source_list']


def read_image(image, hdu=None):
    """The 2-D pixel data and header of an image.

    Parameters
    ----------
    image : str, `~pathlib.Path`, `~astropy.io.fits.HDUList`, HDU or `~numpy.ndarray`
        A FITS file (gzip allowed) or data already in memory.
    hdu : int or str, optional
        Which HDU to read; default: the first one with 2-D (or 3-D: first plane) data.

    Returns
    -------
    data : `~numpy.ndarray` (float64, NaN/inf replaced by the median)
    header : `~astropy.io.fits.Header`
    """
    if isinstance(image, np.ndarray):
        return _clean(image), fits.Header()
    if isinstance(image, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        return _clean(image.data), image.header
    if isinstance(image, fits.HDUList):
        return _from_hdulist(image, hdu)
    path = Path(image)
    if not path.is_file():
        raise InvalidInputError(f'image_file_path: no such file: {str(path)!r}')
    try:
        with fits.open(path, memmap=False) as hdul:
            return _from_hdulist(hdul, hdu)
    except OSError as exc:
        raise InvalidInputError(f'image_file_path: {path.name} is not a FITS image ({exc}).') from None


def _from_hdulist(hdul, hdu):
    candidates = [hdul[hdu]] if hdu is not None else list(hdul)
    for h in candidates:
        if getattr(h, 'is_image', False) and h.data is not None and h.data.ndim >= 2:
            return _clean(h.data), h.header
    raise InvalidInputError('The FITS file has no HDU with 2-D image data.')


def _clean(data):
    data = np.asarray(data)
    while data.ndim > 2:     # a cube: solve its first plane
        data = data[0]
    if data.ndim != 2 or min(data.shape) < 8:
        raise InvalidInputError(f'An image must be 2-D and at least 8x8 pixels, got shape {data.shape}.')
    data = np.array(data, dtype=np.float64)    # native byte order, as sep needs
    bad = ~np.isfinite(data)
    if bad.all():
        raise InvalidInputError('The image has no finite pixel values.')
    if bad.any():
        data[bad] = np.median(data[~bad])
    return data


def _gaussian_kernel(fwhm):
    sigma = max(float(fwhm), 0.5) / 2.3548
    half = max(1, int(np.ceil(2 * sigma)))
    x = np.arange(-half, half + 1)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return np.outer(g, g) / g.sum() ** 2


def extract_sources(data, *, fwhm=3, detect_threshold=5, max_sources=MAX_SOURCES):
    """Detect sources with sep, brightest first.

    Parameters
    ----------
    data : `~numpy.ndarray`
        2-D image (as returned by `read_image`).
    fwhm : float
        Typical star FWHM in pixels (sets the matched filter).
    detect_threshold : float
        Detection threshold in units of the background RMS.
    max_sources : int
        Keep at most this many (astrometry.net uses 1000).

    Returns
    -------
    `~astropy.table.Table`
        Columns x, y (FITS 1-based pixels, as astrometry.net wants) and flux.
    """
    import sep

    if not (np.isfinite(fwhm) and 0 < fwhm <= 100):
        raise InvalidInputError(f'fwhm must be in (0, 100] pixels, got {fwhm!r}.')
    if not (np.isfinite(detect_threshold) and detect_threshold > 0):
        raise InvalidInputError(f'detect_threshold must be > 0, got {detect_threshold!r}.')
    data = np.ascontiguousarray(data, dtype=np.float64)
    background = sep.Background(data)
    residual = data - background.back()
    rms = background.globalrms if background.globalrms > 0 else np.std(residual) or 1.0
    sep.set_extract_pixstack(max(300000, data.size // 2))
    sep.set_sub_object_limit(4096)
    objects = sep.extract(residual, detect_threshold, err=rms, minarea=3,
                          filter_kernel=_gaussian_kernel(fwhm))
    order = np.argsort(-objects['flux'], kind='stable')[:max_sources]
    table = Table()
    # sep is 0-based; astrometry.net's x/y lists are FITS 1-based.
    table['x'] = (objects['x'][order] + 1.0) * u.pix
    table['y'] = (objects['y'][order] + 1.0) * u.pix
    table['flux'] = objects['flux'][order]
    return table


def check_source_list(x, y):
    """x, y as float arrays, checked as nova would check them, before any I/O."""
    try:
        x = np.asarray(u.Quantity(x, u.pix).value if isinstance(x, u.Quantity) else x, dtype=float)
        y = np.asarray(u.Quantity(y, u.pix).value if isinstance(y, u.Quantity) else y, dtype=float)
    except (TypeError, ValueError, u.UnitsError):
        raise InvalidInputError('x and y must be sequences of numbers (pixels).') from None
    if x.ndim != 1 or y.ndim != 1:
        raise InvalidInputError('x and y must be 1-D sequences.')
    if len(x) != len(y):
        raise InvalidInputError(f'x and y must have the same length, got {len(x)} and {len(y)}.')
    if len(x) < 4:
        raise InvalidInputError(f'A source list needs at least 4 sources, got {len(x)}.')
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError('x and y must be finite (no NaN or inf).')
    if x.max() <= 0 or y.max() <= 0:
        raise InvalidInputError('Source lists must contain positive x, y coordinates (FITS 1-based).')
    return x, y


def write_xylist(path, x, y, flux=None):
    """Write an x/y list as the FITS binary table astrometry.net reads (X, Y[, FLUX])."""
    columns = [fits.Column('X', 'D', array=np.asarray(x, float)),
               fits.Column('Y', 'D', array=np.asarray(y, float))]
    if flux is not None:
        columns.append(fits.Column('FLUX', 'D', array=np.asarray(flux, float)))
    fits.BinTableHDU.from_columns(columns).writeto(path, overwrite=True)
    return Path(path)


_UNIT_HINT = re.compile(r'\b(hours?|hrs?|h|hms|deg|degrees?)\b|\[(h|deg|hr)\]', re.I)


def header_position(header, ra_key, dec_key):
    """RA/Dec hint (degrees) from header cards, reading units where they are said.

    A sexagesimal RA string is taken in hours; a number in degrees, unless the
    card's comment says hours.  Raises `InvalidInputError` naming the card.
    """
    values = []
    for key, is_ra in ((ra_key, True), (dec_key, False)):
        if key not in header:
            raise InvalidInputError(f'{"ra_key" if is_ra else "dec_key"}: the header has no '
                                    f'{key!r} card.')
        value, comment = header[key], header.comments[key] or ''
        hint = _UNIT_HINT.search(comment)
        said = (hint.group(0).strip('[]').lower() if hint else '')
        try:
            if isinstance(value, str) and re.search(r'[:\shdm]', value.strip()):
                unit = u.hourangle if is_ra and not said.startswith('deg') else u.deg
                angle = Angle(value.strip(), unit=unit)
            else:
                number = float(value)
                unit = u.hourangle if (is_ra and said.startswith('h')) else u.deg
                angle = Angle(number, unit=unit)
        except (ValueError, TypeError):
            raise InvalidInputError(f'Cannot read an angle from header card {key}={value!r}.') from None
        values.append(angle.deg)
    ra, dec = values
    if not (-90 <= dec <= 90):
        raise InvalidInputError(f'Declination from {dec_key} is out of range: {dec} deg.')
    return ra % 360.0, dec
