"""Turning the server's submissions into images, as nova's first stage does:
the submission arguments (cast and checked as nova casts them, over its
defaults), uploads stored, url_uploads downloaded (`~astrometry_query.urls.fetch_url`,
public addresses only unless allowed), gunzipped and untarred, and each file
recognised: an image (FITS, PNG, JPEG, GIF, and beyond nova TIFF, XISF,
camera RAW, BMP and WebP) or a source list (FITS table or text), with its size.
"""
import gzip
import hashlib
import io
import math
import shutil
import struct
import tarfile
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidInputError
from ..formats import NOVA_KINDS, PICTURE_KINDS
from ..images import file_kind, open_image
from ..settings import MAX_SOURCES, SETTINGS, nova_cast
from ..urls import copy_limited, fetch_url

__all__ = ['NOVA_DEFAULTS', 'GIVEN_KEY', 'submission_args', 'source_list_bytes', 'classify',
           'ingest', 'save_upload']

#: The values nova's models give absent submission arguments (protocol §2), less
#: downsample_factor (2 on nova): absent, we bin only images large enough to gain.
NOVA_DEFAULTS = {
    'publicly_visible': 'y', 'allow_commercial_use': 'd', 'allow_modifications': 'd',
    'scale_units': 'degwidth', 'scale_type': 'ul', 'scale_lower': 0.1, 'scale_upper': 180.0,
    'tweak_order': 2, 'parity': 2, 'use_sextractor': False,
    'crpix_center': False, 'invert': False, 'image_width': 0, 'image_height': 0,
}
#: Key of the stored arguments that lists the names the request gave.
GIVEN_KEY = '_given'
NOT_SUPPORTED = "This file's type is not supported"
NOT_POSITIVE = 'Source list must contain POSITIVE x,y coordinates'


def submission_args(data):
    """Submission arguments from request-json, cast as nova casts them, over
    nova's defaults, and checked against the allowed ranges.

    Raises
    ------
    ValueError
        Naming the argument and what it allows, where nova would crash (HTTP
        500) or accept a value that can only fail the job later.

    The names the request gave are kept under `GIVEN_KEY`, so that header
    hints fill only what the submitter left open (see `job_task`).
    """
    args = dict(NOVA_DEFAULTS)
    cast = {}
    for key, value in data.items():
        setting = SETTINGS.get(key)
        if setting is None:
            continue
        try:
            cast.update(nova_cast({key: value}))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f'{key}: {value!r} is not a valid {setting.type.__name__}; '
                             f'allowed: {setting.describe_allowed()}') from None
        _check_range(key, cast[key], setting)
    args.update(cast)
    for key in ('image_width', 'image_height'):     # int() in nova, not in our settings table
        if key in data:
            try:
                args[key] = int(data[key])
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f'{key}: {data[key]!r} is not a whole number of pixels') from None
            if not 0 <= args[key] <= 1_000_000:
                raise ValueError(f'{key}: {args[key]} is not in 0..1000000 pixels '
                                 '(0: from the sources)')
    args.pop('album', None)
    args[GIVEN_KEY] = sorted(cast)
    return args


def _check_range(key, value, setting):
    if key == 'downsample_factor' and value == 0:      # nova's "none"
        return
    if setting.type in (int, float) and setting.allowed:
        low, high = setting.allowed
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f'{key}: {value!r} is out of range; allowed: '
                             f'{setting.describe_allowed()}')
    elif setting.type is str and setting.allowed and value not in setting.allowed:
        raise ValueError(f'{key}: {value!r} is not allowed; allowed: {setting.describe_allowed()}')


def source_list_bytes(x, y):
    """A FITS binary table with float64 ``X``, ``Y`` columns, in the given
    order, truncated to the solver's first 1000 sources."""
    x, y = np.asarray(x, dtype=float)[:MAX_SOURCES], np.asarray(y, dtype=float)[:MAX_SOURCES]
    table = fits.BinTableHDU.from_columns([fits.Column('X', 'D', array=x),
                                          fits.Column('Y', 'D', array=y)])
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    return buf.getvalue()


def _image_size(head):
    """(kind, width, height) of a PNG/GIF/JPEG from its first bytes, or None."""
    if head.startswith(b'\x89PNG\r\n\x1a\n') and len(head) >= 24:
        return ('png',) + struct.unpack('>II', head[16:24])
    if head[:6] in (b'GIF87a', b'GIF89a'):
        return ('gif',) + struct.unpack('<HH', head[6:10])
    if head.startswith(b'\xff\xd8'):
        i = 2
        while i + 9 < len(head) and head[i] == 0xFF:
            marker, length = head[i + 1], struct.unpack('>H', head[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack('>HH', head[i + 5:i + 9])
                return 'jpeg', w, h
            i += 2 + length
        return 'jpeg', None, None
    return None


def _fits_content(path):
    """('image', w, h) or ('xy', x, y) for a FITS file, else None."""
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        for hdu in hdul:
            shape = [hdu.header.get(k, 0) for k in ('NAXIS', 'NAXIS1', 'NAXIS2')]
            if hdu.is_image and shape[0] >= 2 and shape[1] * shape[2]:
                return 'image', int(shape[1]), int(shape[2])
        for hdu in hdul:
            if isinstance(hdu, fits.BinTableHDU):
                names = {n.lower(): n for n in hdu.columns.names}
                if 'x' in names and 'y' in names:   # nova matches the names case-insensitively
                    x, y = hdu.data[names['x']], hdu.data[names['y']]
                    return 'xy', np.array(x, float), np.array(y, float)
    return None


def _text_source_list(path):
    """x, y arrays from a text file of 'x y' lines, or None."""
    if path.stat().st_size > 50_000_000:
        return None
    try:
        rows = [line.split() for line in path.read_text('ascii').splitlines() if line.strip()]
        values = np.array([[float(a), float(b)] for a, b in rows], dtype=float)
    except (UnicodeDecodeError, ValueError):
        return None
    return (values[:, 0], values[:, 1]) if len(values) else None


def _as_source_list(x, y, out, name, args):
    x, y = np.asarray(x, float)[:MAX_SOURCES], np.asarray(y, float)[:MAX_SOURCES]
    if not len(x) or not (np.nanmax(x) > 0 and np.nanmax(y) > 0):
        raise ValueError(NOT_POSITIVE)
    out.write_bytes(source_list_bytes(x, y))
    # The image's size when the submitter gave it (our client always does), else
    # ceil(max x/y) as on nova.  nova records ceil(max x/y) even when given the size,
    # so its calibration of a source list differs from the image's; here both agree.
    width = args.get('image_width') or int(math.ceil(np.nanmax(x)))
    height = args.get('image_height') or int(math.ceil(np.nanmax(y)))
    return {'path': str(out), 'kind': 'xyls', 'original_filename': name,
            'width': width, 'height': height, 'solve_width': width, 'solve_height': height}


#: Image kinds nova does not take, read here as the solver reads them (`open_image`).
_CAMERA_KINDS = tuple(k for k in PICTURE_KINDS if k not in NOVA_KINDS)


def _camera_file(path):
    """(kind, width, height) of a TIFF, XISF, camera RAW, BMP or WebP file, else None.

    Raises ValueError (the reader's words) for such a file that cannot be read.
    """
    try:
        kind, gzipped = file_kind(path)
    except InvalidInputError:
        return None
    if gzipped or kind not in _CAMERA_KINDS:
        return None
    try:
        height, width = open_image(path).shape
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None
    return kind, width, height


def classify(path, name, args, index=0):
    """Recognise one decoded file: an image, or a source list (FITS table or text).

    Images are FITS, PNG, JPEG and GIF as on nova, and TIFF, XISF, camera
    RAW, BMP and WebP files (recognised as `~astrometry_query.images.open_image` reads
    them, by their first bytes).

    Raises
    ------
    ValueError
        "This file's type is not supported", an unreadable TIFF, XISF, RAW,
        BMP or WebP file, or a non-positive source list.
    """
    path = Path(path)
    with open(path, 'rb') as f:
        head = f.read(65536)
    xyls, picture = path.with_name(f'{index}-sources.xyls'), _image_size(head)
    if picture is None and not head.startswith(b'SIMPLE'):
        picture = _camera_file(path)
    if head.startswith(b'SIMPLE  ='):
        try:
            content = _fits_content(path)
        except Exception:
            content = None
        if content and content[0] == 'xy':
            return _as_source_list(content[1], content[2], xyls, name, args)
        picture = ('fits',) + content[1:] if content else None
    if picture:
        return {'path': str(path), 'kind': picture[0], 'original_filename': name,
                'width': picture[1], 'height': picture[2]}
    text = None if head.startswith(b'SIMPLE') else _text_source_list(path)
    if text is not None:
        return _as_source_list(text[0], text[1], xyls, name, args)
    raise ValueError(NOT_SUPPORTED)


def _decompress(path, name):
    with open(path, 'rb') as f:
        if f.read(2) != b'\x1f\x8b':
            return path, name
    out = path.with_name(path.name + '.gunzip')
    with gzip.open(path, 'rb') as src, open(out, 'wb') as dst:
        copy_limited(iter(lambda: src.read(1 << 20), b''), dst)
    return out, (name[:-3] if name.endswith('.gz') else name)


def _members(path, name):
    """The files of a tar archive, else the file itself."""
    with open(path, 'rb') as f:
        if f.read(9) == b'SIMPLE  =' or not tarfile.is_tarfile(path):
            return [(path, name)]
    out = []
    with tarfile.open(path) as tar:
        for i, member in enumerate(m for m in tar if m.isfile()):
            # Member names are never used as paths: no traversal out of the upload dir.
            dest = path.with_name(f'member-{i}')
            with tar.extractfile(member) as src, open(dest, 'wb') as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            out.append((dest, member.name))
    if not out:
        raise ValueError(NOT_SUPPORTED)
    return out


def ingest(sub, uploads_dir, fetch_timeout=10.0, allow_private=False, max_bytes=None):
    """Turn a claimed submission into image records (nova's first stage)."""
    if sub['source'] in ('file', 'xy'):
        path, name = Path(sub['upload']), sub['original_filename']
    else:
        work = Path(uploads_dir) / f'sub-{sub["id"]}'
        work.mkdir(parents=True, exist_ok=True)
        path = work / 'download'
        # url is None for an upload with neither file nor x/y: the fetch then
        # fails, as nova's worker does.
        fetch_url(sub['url'], path, fetch_timeout, allow_private=allow_private,
                  max_bytes=max_bytes)
        name = urlparse(sub['url']).path.rstrip('/').rsplit('/', 1)[-1]
    path, name = _decompress(path, name)
    return [classify(p, n, sub['args'], i) for i, (p, n) in enumerate(_members(path, name))]


def save_upload(uploads_dir, name, content):
    """Store upload bytes or a stream in a new directory under ``uploads_dir``.

    Returns
    -------
    path : str
    sha1 : str
        Hex SHA-1 of the stored bytes (nova's upload ``hash``).
    """
    dest = Path(uploads_dir) / uuid.uuid4().hex / name
    dest.parent.mkdir(parents=True)
    digest = hashlib.sha1()
    stream = io.BytesIO(content) if isinstance(content, bytes) else content
    with open(dest, 'wb') as out:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
            out.write(chunk)
    return str(dest), digest.hexdigest()
