"""Image files that are not FITS: recognised by their first bytes and decoded
by well-kept libraries.

======== ==================================================================
kind     decoded by
======== ==================================================================
png      imagecodecs' libpng (16-bit colour kept: Pillow would cut it to 8)
jpeg     Pillow
gif      Pillow (its first frame)
bmp      Pillow (Windows bitmaps, as solve-field takes them)
webp     Pillow
tiff     tifffile (the first 2-D or colour image of the file)
xisf     xisf (PixInsight's format; its first image)
raw      rawpy (LibRaw): CR2, CR3, NEF, ARW, DNG, ORF, RW2, RAF, PEF...
======== ==================================================================

Conventions, the same for every kind:

* **Pixel grid: the file's stored rows.**  Row 0 is the first row stored,
  as Pillow, tifffile, xisf and solve-field give it; an EXIF (or RAW)
  orientation tag is never applied.  A solution's pixel (x, y), FITS
  1-based, is ``read_picture(path)[y - 1, x - 1]``.  For RAW files the grid
  is the sensor's visible area as stored, ``rawpy``'s ``raw_image_visible``
  (which is what ``postprocess(user_flip=0)`` returns; rawpy's plain
  ``postprocess()`` turns portrait shots upright).
* **One luminance plane** (`luminance`): the equal-weight mean of the colour
  channels, values as stored.  Stars are to be detected, not seen:
  every channel's photons count alike (perceptual weights such as Rec. 709
  give blue light a tenth of the weight of green), and the mean, unlike a
  sum, keeps the file's own range (an 8-bit picture stays 0-255).  No
  gamma is undone: many astronomy programs store linear data in PNG and
  TIFF, and a monotonic stretch does not move a star's centre.  Palettes
  are looked up; 16-bit samples are kept.
* **Alpha**: dropped, except that fully transparent black or white pixels
  (alpha 0, the blank edges of a mosaic or a rotated crop) hold no data:
  they come back as NaN (the pixels as float32), which source extraction
  leaves out, rather than as the black or white a program stored there.
* **RAW development** (`RAW_DEVELOPMENT`): bilinear demosaicing (LibRaw's
  LINEAR), linear output (gamma 1, no auto-brightening, 16-bit), no white
  balance (all multipliers 1: the camera's channels as recorded, whatever
  the camera was set to) and no colour matrix (the camera's own RGB).
  Bilinear interpolation is linear in the data and the same everywhere,
  so each star's centroid comes out where the sensor saw it; the
  edge-directed methods (AHD, DCB...) take decisions per pixel from local
  gradients, made for sharp daylight edges, that can shift or speckle
  undersampled stars.

Metadata become FITS cards (see `~astrometry_query.image_meta`).
"""
import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .exceptions import InvalidInputError
from .image_meta import exif_cards, libraw_cards, xisf_cards

__all__ = ['file_kind', 'read_picture', 'luminance', 'describe_picture', 'PictureInfo',
           'PICTURE_KINDS', 'NOVA_KINDS', 'NOT_AN_IMAGE', 'KIND_NAMES', 'RAW_SUFFIXES',
           'RAW_DEVELOPMENT']

log = logging.getLogger(__name__)

#: Readable names of the kinds, for messages.
KIND_NAMES = {'fits': 'FITS', 'png': 'PNG', 'jpeg': 'JPEG', 'gif': 'GIF', 'tiff': 'TIFF',
              'xisf': 'XISF', 'raw': 'camera RAW', 'bmp': 'BMP', 'webp': 'WebP'}
#: The kinds decoded here (not FITS): their row 0 is the top of the picture as seen.
PICTURE_KINDS = ('png', 'jpeg', 'gif', 'tiff', 'xisf', 'raw', 'bmp', 'webp')
#: The kinds nova itself takes; the others are read by this package only.
NOVA_KINDS = ('fits', 'png', 'jpeg', 'gif')


def _names(kinds):
    """'A, B or C' of the kinds' readable names."""
    names = [KIND_NAMES[k] for k in kinds]
    return ', '.join(names[:-1]) + ' or ' + names[-1] if len(names) > 1 else names[0]


#: What a file that is none of the kinds is not (after its name, in messages).
NOT_AN_IMAGE = (f'is not a {_names(NOVA_KINDS)} image, '
                f'nor {_names([k for k in PICTURE_KINDS if k not in NOVA_KINDS])}.')
#: Name endings of camera RAW files (lower case): the kind when the first
#: bytes leave it open (a TIFF-based RAW such as NEF or ARW).
RAW_SUFFIXES = ('.cr2', '.cr3', '.crw', '.nef', '.nrw', '.arw', '.srf', '.sr2', '.dng',
                '.orf', '.rw2', '.raf', '.pef', '.srw', '.3fr', '.erf', '.kdc', '.dcr',
                '.mrw', '.x3f', '.iiq', '.mos', '.rwl')
# (offset, magic bytes, kind)
_MAGIC = ((0, b'\x89PNG', 'png'), (0, b'\xff\xd8', 'jpeg'), (0, b'GIF8', 'gif'),
          (0, b'SIMPLE  =', 'fits'), (0, b'XISF0100', 'xisf'),
          (0, b'II*\x00', 'tiff'), (0, b'MM\x00*', 'tiff'),          # classic TIFF
          (0, b'II+\x00', 'tiff'), (0, b'MM\x00+', 'tiff'),          # BigTIFF
          (0, b'IIRO', 'raw'), (0, b'IIRS', 'raw'), (0, b'MMOR', 'raw'),   # Olympus ORF
          (0, b'IIU\x00', 'raw'),                                     # Panasonic RW2
          (0, b'FUJIFILMCCD-RAW', 'raw'), (4, b'ftypcrx ', 'raw'),    # Fujifilm RAF, Canon CR3
          (6, b'HEAPCCDR', 'raw'), (0, b'FOVb', 'raw'), (0, b'\x00MRM', 'raw'),
          (8, b'WEBP', 'webp'), (0, b'BM', 'bmp'))
#: rawpy ``postprocess`` arguments: how a RAW file becomes RGB (see the module's notes).
RAW_DEVELOPMENT = dict(demosaic_algorithm='LINEAR', use_camera_wb=False, use_auto_wb=False,
                       user_wb=[1.0, 1.0, 1.0, 1.0], output_color='raw', output_bps=16,
                       no_auto_bright=True, gamma=(1.0, 1.0), user_flip=0,
                       adjust_maximum_thr=0.0)


@dataclass
class PictureInfo:
    """What a picture file says before its pixels are decoded.

    Attributes
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    header : `~astropy.io.fits.Header`
        Its metadata as FITS cards (see `~astrometry_query.image_meta`).
    meta : dict
        Its metadata as the format has them: EXIF tags by name, XISF
        properties and FITS keywords, LibRaw's readings.
    """
    shape: tuple
    header: fits.Header = field(default_factory=fits.Header)
    meta: dict = field(default_factory=dict)


def _sniff(head, name):
    kind = next((k for offset, magic, k in _MAGIC if head[offset:offset + len(magic)] == magic),
                None)
    if kind is None and name.lower().endswith(RAW_SUFFIXES):
        kind = 'raw'            # a RAW whose first bytes we do not know: LibRaw decides
    return kind


def _tiff_or_raw(path, head):
    """'raw' for a TIFF-based RAW file (DNG, CR2, NEF, ARW...), else 'tiff'."""
    if head[8:10] == b'CR' or Path(path).name.lower().endswith(RAW_SUFFIXES):
        return 'raw'
    import tifffile
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if 'DNGVersion' in page.tags or page.photometric in (
                    tifffile.PHOTOMETRIC.CFA, tifffile.PHOTOMETRIC.LINEAR_RAW):
                return 'raw'
    except Exception:       # unreadable: the TIFF reader says why
        pass
    return 'tiff'


def file_kind(path):
    """The kind of an image file, from its first bytes (gzip allowed).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    kind : str or None
        'fits', 'png', 'jpeg', 'gif', 'tiff', 'xisf', 'raw', 'bmp', 'webp', or None for
        anything else.  A TIFF-based RAW file (DNG, CR2, NEF, ARW...) is
        'raw'.
    gzipped : bool

    Raises
    ------
    InvalidInputError
        A file that starts as gzip but is not.
    """
    with open(path, 'rb') as f:
        head = f.read(32)
    gzipped = head[:2] == b'\x1f\x8b'
    if gzipped:
        try:
            with gzip.open(path, 'rb') as g:
                head = g.read(32)
        except (OSError, EOFError) as exc:
            raise InvalidInputError(f'image: {Path(path).name} looks gzip-compressed but cannot '
                                    f'be read as gzip ({exc}).') from None
    kind = _sniff(head, Path(path).name[:-3] if gzipped else Path(path).name)
    if kind == 'tiff' and not gzipped:
        kind = _tiff_or_raw(path, head)
    return kind, gzipped


# -- pixels ---------------------------------------------------------------------------------
def _png_pixels(path):
    import imagecodecs
    return imagecodecs.png_decode(Path(path).read_bytes())


def _pillow_pixels(path):
    from PIL import Image
    with Image.open(path) as im:
        if im.mode.startswith('I') or im.mode == 'F':    # 16/32-bit grey kept
            return np.array(im)
        return np.array(im.convert('L' if im.mode in ('1', 'L', 'LA', 'La') else 'RGB'))


def _tiff_page(tif, name):
    """The first page holding a full-size 2-D or colour image."""
    for page in tif.pages:
        if page.is_reduced:         # a thumbnail
            continue
        if page.axes in ('YX', 'YXS', 'SYX'):
            return page
    raise InvalidInputError(f'image: {name} holds no 2-D or colour image (its first page is '
                            f'{tif.pages[0].shape}, axes {tif.pages[0].axes}).')


def _tiff_pixels(path):
    import tifffile
    with tifffile.TiffFile(path) as tif:
        page = _tiff_page(tif, Path(path).name)
        data = page.asarray()
        if page.axes == 'SYX':
            data = np.moveaxis(data, 0, -1)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
            data = np.moveaxis(page.colormap[:, data], 0, -1)
        elif page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB,
                                      tifffile.PHOTOMETRIC.YCBCR):
            raise InvalidInputError(f'image: {Path(path).name} is a {page.photometric.name} '
                                    'TIFF; only grey, RGB and palette TIFF images are read.')
        extra = len(page.extrasamples or ())
        if data.ndim == 3 and extra:
            data = data[..., :data.shape[-1] - extra]      # alpha (and other extra samples)
        return data


def _xisf_pixels(path):
    from xisf import XISF
    data = XISF(str(path)).read_image(0)        # (height, width, channels)
    return data[..., 0] if data.shape[-1] == 1 else data


def _raw_pixels(path):
    import rawpy
    args = dict(RAW_DEVELOPMENT)
    args['demosaic_algorithm'] = rawpy.DemosaicAlgorithm[args['demosaic_algorithm']]
    args['output_color'] = rawpy.ColorSpace[args['output_color']]
    with rawpy.imread(str(path)) as raw:
        return raw.postprocess(**args)


def _as_grey_or_colour(data):
    """Grey + alpha -> grey, RGBA -> RGB (decoders that keep alpha), fully
    transparent black or white pixels NaN (float32); colour whose channels are
    all equal (a grey palette, grey saved as RGB) -> grey."""
    if data.ndim == 3 and data.shape[-1] in (2, 4):
        alpha = data[..., -1]
        data = data[..., :data.shape[-1] - 1]
        top = np.iinfo(data.dtype).max if data.dtype.kind in 'ui' else 1.0
        # A program's filler (black or white) where there is no data: a mosaic's or a
        # turned crop's edges.  Another colour made transparent (a palette's entry) is
        # still the picture's.
        clear = (alpha == 0) & ((data == 0).all(axis=-1) | (data == top).all(axis=-1))
        if clear.any() and not clear.all():
            data = data.astype(np.float32)
            data[clear] = np.nan
    if data.ndim == 3 and all(np.array_equal(data[..., 0], data[..., i])
                              for i in range(1, data.shape[-1])):
        data = data[..., 0].copy()
    return data


_PIXELS = {'png': _png_pixels, 'jpeg': _pillow_pixels, 'gif': _pillow_pixels,
           'tiff': _tiff_pixels, 'xisf': _xisf_pixels, 'raw': _raw_pixels,
           'bmp': _pillow_pixels, 'webp': _pillow_pixels}


def read_picture(path, kind=None):
    """The pixels of a picture file, decoded as stored.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, GIF, TIFF, XISF, camera RAW, BMP or WebP file.
    kind : str, optional
        Its kind, when known (see `file_kind`).

    Returns
    -------
    `~numpy.ndarray`
        ``(ny, nx)`` grey levels or ``(ny, nx, 3)`` colour, in the file's own
        type (uint8, uint16, float32...); row 0 is the first stored row (the
        top of the picture), no orientation tag applied.  Alpha is dropped
        (fully transparent black or white pixels become NaN, as float32), palettes are
        looked up, colour with three equal channels comes back
        grey, a RAW file is developed as `RAW_DEVELOPMENT` says (16-bit RGB).

    Raises
    ------
    InvalidInputError
        Not a picture, or one that cannot be decoded.
    """
    path = Path(path)
    kind = kind or file_kind(path)[0]
    if kind not in _PIXELS:
        raise InvalidInputError(f'image: {path.name} is not a {_names(PICTURE_KINDS)} file.')
    try:
        data = _PIXELS[kind](path)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f'image: {path.name} cannot be decoded as {KIND_NAMES[kind]} '
                                f'({type(exc).__name__}: {exc}).') from None
    data = _as_grey_or_colour(np.asarray(data))
    if data.dtype.kind not in 'uif':
        data = data.astype(np.uint8)    # 1-bit images
    return data


def luminance(pixels):
    """One float32 plane from decoded pixels: the equal-weight mean of the
    colour channels (a grey image as it is); see the module's notes for why.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    return pixels.mean(axis=-1, dtype=np.float32)


# -- sizes and metadata, without decoding the pixels ----------------------------------------
def _pillow_info(path):
    from PIL import ExifTags, Image
    with Image.open(path) as im:
        nx, ny = im.size
        exif = im.getexif()
        tags = {ExifTags.TAGS.get(k, k): v for k, v in exif.items()}
        tags.update({ExifTags.TAGS.get(k, k): v
                     for k, v in exif.get_ifd(0x8769).items()})
    tags.pop('ExifOffset', None)
    return PictureInfo((ny, nx), exif_cards(tags, (ny, nx)), {'exif': tags})


def _tiff_tags(tif):
    """IFD0's tags and its Exif IFD's, by name."""
    page = tif.pages[0]
    tags = {tag.name: tag.value for tag in page.tags.values()
            if tag.name not in ('StripOffsets', 'StripByteCounts', 'TileOffsets',
                                'TileByteCounts', 'ExifTag')}
    exif = page.tags.get('ExifTag')
    if exif is not None and isinstance(exif.value, dict):
        tags.update(exif.value)
    return tags


def _tiff_info(path):
    import tifffile
    with tifffile.TiffFile(path) as tif:
        page = _tiff_page(tif, Path(path).name)
        shape = page.shape[1:] if page.axes == 'SYX' else page.shape[:2]
        tags = _tiff_tags(tif)
        header = fits.Header()
        if page.is_astrotiff:       # AstroTIFF: a FITS header in the ImageDescription
            astro = fits.Header.fromstring(page.description, sep='\n')
            for card in astro.cards:
                if card.keyword and not (card.keyword.startswith('NAXIS') or card.keyword in (
                        'SIMPLE', 'BITPIX', 'EXTEND', 'BZERO', 'BSCALE', 'END')):
                    header.append(card)
    return PictureInfo(tuple(shape), exif_cards(tags, shape, header), {'exif': tags})


def _xisf_info(path):
    from xisf import XISF
    meta = XISF(str(path)).get_images_metadata()
    if not meta:
        raise InvalidInputError(f'image: {Path(path).name} holds no image.')
    first = meta[0]
    width, height = first['geometry'][:2]
    if str(first.get('sampleFormat', '')).startswith('Complex'):
        raise InvalidInputError(f'image: {Path(path).name} holds complex numbers, not an image.')
    keywords = first.get('FITSKeywords', {})
    properties = first.get('XISFProperties', {})
    return PictureInfo((int(height), int(width)), xisf_cards(keywords, properties),
                       {'fits_keywords': keywords,
                        'xisf_properties': {k: v.get('value') for k, v in properties.items()}})


def _raw_info(path):
    import rawpy
    with rawpy.imread(str(path)) as raw:
        sizes, other = raw.sizes, getattr(raw, 'other', None)     # older rawpy has none
    if sizes.pixel_aspect not in (0.0, 1.0):
        raise InvalidInputError(f'image: {Path(path).name} has non-square pixels '
                                f'(aspect {sizes.pixel_aspect:g}), which are not supported.')
    shape = (int(sizes.height), int(sizes.width))
    tags = {}
    with open(path, 'rb') as f:
        tiff_based = f.read(4) in (b'II*\x00', b'MM\x00*')
    if tiff_based:          # DNG, CR2, NEF, ARW...: their EXIF, the richest record
        import tifffile
        try:
            with tifffile.TiffFile(path) as tif:
                tags = _tiff_tags(tif)
        except Exception as exc:
            log.debug('%s: no EXIF read (%s)', Path(path).name, exc)
    header = exif_cards(tags, shape)
    libraw_cards(other, header)
    meta = {'exif': tags, 'libraw': other._asdict() if other is not None else {},
            'orientation_flip': int(sizes.flip)}
    return PictureInfo(shape, header, meta)


_INFO = {'png': _pillow_info, 'jpeg': _pillow_info, 'gif': _pillow_info, 'tiff': _tiff_info,
         'xisf': _xisf_info, 'raw': _raw_info, 'bmp': _pillow_info, 'webp': _pillow_info}


def describe_picture(path, kind):
    """Size and metadata of a picture file, its pixels not decoded.

    Returns
    -------
    PictureInfo

    Raises
    ------
    InvalidInputError
        A file its library cannot read.
    """
    path = Path(path)
    try:
        return _INFO[kind](path)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f'image: {path.name} is not a readable {KIND_NAMES[kind]} '
                                f'({type(exc).__name__}: {exc}).') from None
