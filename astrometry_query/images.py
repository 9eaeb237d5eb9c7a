"""Images of any kind, read lazily and in bands of rows.

An image may be a FITS file (gzip allowed; plain files are read band by band
straight from disk, never all at once), an `~astropy.io.fits.HDUList` or HDU,
a numpy array (a `numpy.memmap` too), `~astropy.nddata.NDData` /
``CCDData`` (its WCS and meta become the header), or a picture file: PNG,
JPEG, GIF, TIFF, XISF, camera RAW, BMP or WebP (decoded by
`~astrometry_query.formats` into one luminance plane, its metadata as header
cards).

`open_image` checks the input before any solving starts and returns an
`Image`: its shape and header at once, its pixels on demand as native
float32 rows.  An `Image` pickles as its source (a path, or the array), so
it can travel to a process pool or a Dask worker.
"""
import glob
import hashlib
import os
import re
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ._log import quiet_warnings
from .exceptions import InvalidInputError
from .formats import (KIND_NAMES, NOT_AN_IMAGE, PICTURE_KINDS, RAW_SUFFIXES, describe_picture,
                      file_kind, luminance, read_picture)

__all__ = ['Image', 'open_image', 'file_kind', 'read_picture', 'luminance', 'expand_images',
           'image_stem', 'is_image_name', 'MIN_SIZE', 'IMAGE_SUFFIXES', 'PICTURE_KINDS']

#: Smallest image side that can hold a star field worth solving, pixels.
MIN_SIZE = 16
#: File name endings of images (a directory is listed by them), lower case.
IMAGE_SUFFIXES = ('.fits', '.fit', '.fts', '.fz', '.png', '.jpg', '.jpeg', '.gif', '.tif',
                  '.tiff', '.pnm', '.ppm', '.pgm', '.xisf', '.bmp', '.webp') + RAW_SUFFIXES
#: Compressions an image file name may end with (m42.fits.gz).
COMPRESSIONS = ('.gz', '.bz2', '.xz', '.z')


def image_stem(name):
    """A file name without its image and compression suffixes: m42.fits.gz -> m42."""
    lower = name.lower()
    for suffix in COMPRESSIONS:
        if lower.endswith(suffix):
            name, lower = name[:-len(suffix)], lower[:-len(suffix)]
            break
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return Path(name).stem or name


def is_image_name(name):
    """Whether a file name is an image's (by its suffix, compressed or not)."""
    lower = name.lower()
    for suffix in COMPRESSIONS:
        if lower.endswith(suffix):
            lower = lower[:-len(suffix)]
            break
    return lower.endswith(IMAGE_SUFFIXES)


def expand_images(patterns, argument='images'):
    """The image files named by paths, directories and glob patterns, in
    order, each once.

    A directory stands for the image files in it (by their name endings,
    `IMAGE_SUFFIXES`, compressed too; not its subdirectories), sorted by
    name; a pattern (``night/*.fits``, ``night/**/*.fit``) for the files it
    matches, sorted.

    Parameters
    ----------
    patterns : str, path-like, or an iterable of them
    argument : str
        The name errors give the input.

    Raises
    ------
    InvalidInputError
        For a missing file, a directory without images, or a pattern that
        matches nothing.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    found = []
    for pattern in patterns:
        text = os.path.expanduser(os.fspath(pattern))
        path = Path(text)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p.name))
            if not images:
                raise InvalidInputError(
                    f'{argument}: the directory {text!r} holds no image files (names ending '
                    f'in {", ".join(IMAGE_SUFFIXES)}, compressed or not); give a pattern such '
                    f"as '{text.rstrip('/')}/*.dat' for others.")
            found += images
        elif re.search(r'[*?[]', text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not matches:
                raise InvalidInputError(f'{argument}: no file matches {os.fspath(pattern)!r}')
            found += matches
        else:
            raise InvalidInputError(f'{argument}: no such file: {os.fspath(pattern)!r}')
    unique = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _first_image_hdu(hdul, hdu, name):
    """Index of the HDU to read: ``hdu`` if given, else the first with >= 2-D data."""
    if hdu is not None:
        try:
            h = hdul[hdu]
        except (KeyError, IndexError):
            raise InvalidInputError(f'hdu: {name} has no HDU {hdu!r} (it has {len(hdul)}).') from None
        if not (h.is_image and h.header.get('NAXIS', 0) >= 2):
            raise InvalidInputError(f'hdu: HDU {hdu!r} of {name} holds no 2-D image.')
        return hdul.index_of(h.name) if isinstance(hdu, str) else int(hdu)
    for i, h in enumerate(hdul):
        if h.is_image and h.header.get('NAXIS', 0) >= 2 and all(
                h.header.get(f'NAXIS{k}', 0) > 0 for k in (1, 2)):
            return i
    raise InvalidInputError(f'image: {name} has no HDU with 2-D image data.')


def _check_shape(shape, name):
    if len(shape) < 2:
        raise InvalidInputError(f'image: {name} must be 2-D (or a cube), got shape {tuple(shape)}.')
    ny, nx = shape[-2:]
    if min(nx, ny) < MIN_SIZE:
        raise InvalidInputError(f'image: {name} is {nx}x{ny} pixels; at least {MIN_SIZE}x{MIN_SIZE} '
                                'are needed to solve.')
    return int(ny), int(nx)


def _plane(data):
    data = np.asarray(data)
    while data.ndim > 2:        # a cube: its first plane
        data = data[0]
    return data


class Image:
    """A 2-D image whose pixels are read on demand.

    Use `open_image` to make one.

    Attributes
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    header : `~astropy.io.fits.Header`
        The image's header (a copy), with the WCS of an NDData merged in.
    path : `~pathlib.Path` or None
        The file the pixels come from, if any.
    kind : str
        'fits', 'png', 'jpeg', 'gif', 'tiff', 'xisf', 'raw', 'bmp', 'webp' or 'array'.
    name : str
        For messages: the file name, or a description of the object.
    meta : dict
        A picture file's metadata as its format has them (EXIF tags, XISF
        properties, LibRaw's readings); empty for FITS and data in memory.
    """

    def __init__(self, *, shape, header, kind, name, path=None, hdu=None, array=None,
                 band_offset=None, raw_dtype=None, scale=(1.0, 0.0), blank=None, meta=None):
        self.shape, self.header, self.kind, self.name = shape, header, kind, name
        self.path, self.hdu, self.meta = path, hdu, dict(meta or {})
        self._array = array      # the pixels when they are the source (not from a file)
        self._cache = None       # pixels decoded from a file that cannot be read in bands
        self._offset, self._raw_dtype, self._scale, self._blank = band_offset, raw_dtype, scale, blank

    def __repr__(self):
        return f'<Image {self.name} {self.shape[1]}x{self.shape[0]} {self.kind}>'

    # Pickle as the source: a path is reopened where it lands.
    def __reduce__(self):
        if self.path is not None:
            return open_image, (str(self.path), self.hdu)
        return _from_state, (self.shape, self.header.tostring(), self.kind, self.name,
                             self._array)

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    @property
    def flips_y(self):
        """True for picture files (PNG, JPEG, GIF, TIFF, XISF, RAW): their row 0
        (y = 1) is the top of the picture as seen, and nova flips the
        orientation it reports for them."""
        return self.kind in PICTURE_KINDS

    def rows(self, y0, y1):
        """Rows ``y0:y1`` as a new native float32 array (non-finite values kept)."""
        nx = self.shape[1]
        y0 = min(max(0, int(y0)), self.shape[0])
        y1 = min(max(y0, int(y1)), self.shape[0])
        source = self._array
        if source is None and self._offset is None:
            if self._cache is None:
                self._cache = self._load()
            source = self._cache
        if source is not None:
            return np.array(source[y0:y1], dtype=np.float32)
        if y1 == y0:
            return np.zeros((0, nx), np.float32)
        with open(self.path, 'rb') as f:
            raw = np.fromfile(f, dtype=self._raw_dtype, count=(y1 - y0) * nx,
                              offset=self._offset + y0 * nx * self._raw_dtype.itemsize)
        raw = raw.reshape(y1 - y0, nx)
        out = raw.astype(np.float32)
        if self._blank is not None:
            out[raw == self._blank] = np.nan
        bscale, bzero = self._scale
        if bscale != 1.0:
            out *= np.float32(bscale)
        if bzero != 0.0:
            out += np.float32(bzero)
        return out

    def pixels(self):
        """All pixels as a native float32 array."""
        return self.rows(0, self.shape[0])

    def data(self):
        """The pixels in their own type (for writing the image back out); a
        picture's luminance plane (float32; `read_picture` gives its colours)."""
        if self._array is not None:
            return self._array
        if self.kind in PICTURE_KINDS:
            return self._load()
        # Not memory-mapped: astropy cannot map data it has to scale (BZERO...).
        with fits.open(self.path, memmap=False) as hdul:
            return np.array(_plane(hdul[self.hdu].data))

    def _load(self):
        if self.kind in PICTURE_KINDS:
            plane = luminance(read_picture(self.path, self.kind))
            if plane.shape != self.shape:       # e.g. a RAW file LibRaw resizes
                raise InvalidInputError(
                    f'image: {self.name} decodes to {plane.shape[1]}x{plane.shape[0]} pixels, '
                    f'not the {self.shape[1]}x{self.shape[0]} its header says.')
            return plane
        with fits.open(self.path, memmap=False) as hdul:
            return _plane(hdul[self.hdu].data)

    def check_values(self):
        """Refuse an image with no finite pixel or one value everywhere (read in bands).

        Raises
        ------
        InvalidInputError
        """
        low, high, rows = np.inf, -np.inf, max(1, 8_000_000 // self.shape[1])
        for y0 in range(0, self.shape[0], rows):
            band = self.rows(y0, y0 + rows)
            finite = band[np.isfinite(band)]
            if finite.size:
                low, high = min(low, finite.min()), max(high, finite.max())
                if low < high:
                    return
        if not np.isfinite(low):
            raise InvalidInputError(f'image: {self.name} has no finite pixel values.')
        raise InvalidInputError(f'image: {self.name} is constant (every pixel is {low:g}): '
                                'there is nothing to solve.')

    def digest(self):
        """A content hash of the pixels' source (file bytes, or array bytes and shape)."""
        h = hashlib.blake2b(digest_size=20)
        if self.path is not None:
            with open(self.path, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 22), b''):
                    h.update(chunk)
            h.update(repr(self.hdu).encode())
        else:
            # The values, not their byte order: an array and its pickled copy agree.
            arr = np.ascontiguousarray(self._array,
                                       dtype=self._array.dtype.newbyteorder('<'))
            h.update(f'{arr.dtype.str}{arr.shape}'.encode())
            h.update(memoryview(arr).cast('B'))
        return h.hexdigest()

    def wcs(self):
        """The header's celestial WCS, or None when it has none."""
        header = self.header
        if not any(k in header for k in ('CTYPE1', 'CD1_1', 'PC1_1', 'CDELT1')):
            return None
        try:
            with quiet_warnings():
                w = WCS(header, relax=True, naxis=2)
        except Exception:
            return None
        return w if w.has_celestial else None


def _from_state(shape, header_text, kind, name, array):
    return Image(shape=shape, header=fits.Header.fromstring(header_text), kind=kind, name=name,
                 array=array)


def _open_fits_file(path, hdu, gzipped):
    name = path.name
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            index = _first_image_hdu(hdul, hdu, name)
            h = hdul[index]
            header = h.header.copy()
            shape = _check_shape([header[f'NAXIS{k}'] for k in range(header['NAXIS'], 0, -1)],
                                 name)
            compressed = isinstance(h, fits.CompImageHDU)
            info = None if (gzipped or compressed) else h.fileinfo()
            size = os.path.getsize(path)
            itemsize = abs(header['BITPIX']) // 8
            if info is not None and info['datLoc'] + shape[0] * shape[1] * itemsize > size:
                raise InvalidInputError(f'image: {name} is truncated: its header promises '
                                        f'{shape[1]}x{shape[0]} pixels the file does not hold.')
    except InvalidInputError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f'image: {name} is not a readable FITS image ({exc}).') from None
    image = Image(shape=shape, header=header, kind='fits', name=name, path=path, hdu=index)
    if info is None:      # compressed: decompressed now, which also proves it is whole
        try:
            image._cache = image._load()
        except Exception as exc:
            raise InvalidInputError(f'image: {name} cannot be read ({exc}).') from None
        return image
    code = {8: 'u1', 16: '>i2', 32: '>i4', 64: '>i8', -32: '>f4', -64: '>f8'}[header['BITPIX']]
    blank = header.get('BLANK') if header['BITPIX'] > 0 else None
    return Image(shape=shape, header=header, kind='fits', name=name, path=path, hdu=index,
                 band_offset=info['datLoc'], raw_dtype=np.dtype(code),
                 scale=(float(header.get('BSCALE', 1.0)), float(header.get('BZERO', 0.0))),
                 blank=blank)


def _from_array(array, header, name):
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    if array.dtype.kind not in 'uif' or array.dtype.kind == 'c':
        raise InvalidInputError(f'image: {name} must hold numbers, got dtype {array.dtype}.')
    _check_shape(array.shape, name)
    plane = _plane(array)
    return Image(shape=plane.shape, header=header, kind='array', name=name, array=plane)


def open_image(image, hdu=None):
    """Check an image and return it as an `Image` (pixels not read yet).

    Parameters
    ----------
    image : path, `~astropy.io.fits.HDUList`, HDU, `~numpy.ndarray` or `~astropy.nddata.NDData`
        A FITS file (gzip allowed), a PNG, JPEG, GIF, TIFF, XISF or camera
        RAW file (see `~astrometry_query.formats`: one luminance plane, row 0
        the first stored row, the metadata as header cards), or data in
        memory.
    hdu : int or str, optional
        Which HDU of a FITS file or HDUList; default the first with 2-D data.

    Returns
    -------
    Image

    Raises
    ------
    InvalidInputError
        A missing, empty, truncated or unreadable file, no 2-D image, or an
        image smaller than 16x16 pixels.
    """
    if isinstance(image, Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.exists():
            raise InvalidInputError(f'image: no such file: {str(path)!r}')
        if path.is_dir():
            raise InvalidInputError(f'image: {str(path)!r} is a directory, not an image file.')
        if path.stat().st_size == 0:
            raise InvalidInputError(f'image: {path.name} is empty.')
        kind, gzipped = file_kind(path)
        if kind == 'fits':
            return _open_fits_file(path.resolve(), hdu, gzipped)
        if kind in PICTURE_KINDS and gzipped:
            raise InvalidInputError(f'image: {path.name} is a gzip-compressed '
                                    f'{KIND_NAMES[kind]} file: only FITS files are read '
                                    'compressed; decompress it first.')
        if kind in PICTURE_KINDS:
            info = describe_picture(path, kind)
            _check_shape(info.shape, path.name)
            return Image(shape=tuple(info.shape), header=info.header, kind=kind,
                         name=path.name, path=path.resolve(), meta=info.meta)
        raise InvalidInputError(f'image: {path.name} {NOT_AN_IMAGE}')
    if isinstance(image, fits.HDUList):
        index = _first_image_hdu(image, hdu, 'the HDUList')
        h = image[index]
        return _from_array(h.data, h.header.copy(), f'HDU {index} of the HDUList')
    if isinstance(image, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        if image.data is None:
            raise InvalidInputError('image: the HDU holds no data.')
        return _from_array(image.data, image.header.copy(), type(image).__name__)
    try:
        from astropy.nddata import NDData
    except ImportError:     # pragma: no cover
        NDData = ()
    if isinstance(image, NDData):
        header = fits.Header()
        meta = getattr(image, 'meta', None) or {}
        for key, value in (meta.items() if hasattr(meta, 'items') else []):
            if isinstance(key, str) and len(key) <= 8 and isinstance(value, (str, int, float, bool)):
                header[key] = value
        if getattr(image, 'wcs', None) is not None:
            try:
                with quiet_warnings(FITSFixedWarning):
                    header.extend(image.wcs.to_header(relax=True), update=True)
            except Exception:
                pass
        data = np.asarray(image.data)
        if image.mask is not None and np.any(image.mask):
            data = np.where(np.asarray(image.mask, bool), np.nan, data.astype(np.float32))
        return _from_array(data, header, type(image).__name__)
    if isinstance(image, np.ndarray):
        return _from_array(image, fits.Header(), f'array {image.shape}')
    raise InvalidInputError(
        'image: must be a file path, an HDUList or HDU, a numpy array or NDData/CCDData, '
        f'got {type(image).__name__}.')
