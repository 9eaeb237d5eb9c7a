"""Camera metadata of picture files as the FITS cards the solve hints read.

A camera writes its settings into EXIF (JPEG, TIFF, PNG's eXIf chunk, and the
TIFF-based RAW files); PixInsight's XISF keeps FITS keywords and its own
properties; LibRaw reads the settings of every RAW file.  Each becomes, where
present, the card a FITS writer would have used: ``EXPTIME`` (s),
``DATE-OBS``, ``INSTRUME``, ``FOCALLEN`` (mm) and ``XPIXSZ``/``YPIXSZ``
(micron).  `~astrometry_query.hints` turns ``FOCALLEN`` with ``XPIXSZ`` into
a pixel-scale hint (206.265 * XPIXSZ / FOCALLEN arcsec/pixel).

Cards already in the file (an XISF's FITS keywords) are never overwritten.
"""
import math
from datetime import datetime, timedelta, timezone

from astropy.io import fits

__all__ = ['exif_cards', 'xisf_cards', 'libraw_cards', 'add_card', 'FULL_FRAME_DIAGONAL_MM']

#: The 35 mm film frame's diagonal (36 x 24 mm): EXIF's FocalLengthIn35mmFilm
#: is the focal length giving the same field over this diagonal.
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
#: EXIF FocalPlaneResolutionUnit -> microns per unit (2 inch, 3 cm; 4 mm and
#: 5 micron are TIFF/EP's and DNG's).  1 (no unit) gives no pixel size.
_FOCAL_PLANE_UNITS = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}
# Layout cards of a FITS file: meaningless for pixels decoded from another format.
_STRUCTURE = {'SIMPLE', 'BITPIX', 'EXTEND', 'XTENSION', 'PCOUNT', 'GCOUNT', 'BZERO', 'BSCALE',
              'BLANK', 'END'}


def add_card(header, key, value, comment=''):
    """Set ``key`` unless the header has it already (the file's own cards win)."""
    if value is None or value == '' or key in header:
        return
    header[key] = (value, comment)


def _number(value):
    """A positive finite float from an EXIF value: a rational (Pillow's
    IFDRational, or tifffile's ``(numerator, denominator)``), a number, or a
    one-item sequence; else None."""
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            value = value[0] / value[1] if value[1] else None
        elif len(value) == 1:
            value = value[0]
        else:
            return None
    try:
        value = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _text(value):
    if isinstance(value, bytes):
        value = value.decode('latin-1')
    return value.strip('\x00 ').strip() if isinstance(value, str) else ''


def _exif_time(original, subsec='', offset=''):
    """(DATE-OBS, comment) from EXIF's 'YYYY:MM:DD HH:MM:SS' local time, or None.

    With OffsetTimeOriginal the time is turned into UTC (as FITS wants it);
    without, the camera clock stands, and the comment says so.
    """
    try:
        when = datetime.strptime(_text(original), '%Y:%m:%d %H:%M:%S')
    except ValueError:
        return None
    digits = ''.join(c for c in _text(subsec) if c.isdigit())
    if digits:
        when = when.replace(microsecond=int(digits[:6].ljust(6, '0')))
    spec = 'milliseconds' if digits else 'seconds'
    try:
        shift = datetime.strptime(_text(offset), '%z').utcoffset()
    except ValueError:
        shift = None
    if shift is None:
        return when.isoformat(timespec=spec), 'camera clock (EXIF), time zone not recorded'
    return (when - shift).isoformat(timespec=spec), 'UTC, from the EXIF time and its offset'


def _instrument(make, model):
    make, model = _text(make), _text(model)
    if make and model.lower().startswith(make.split()[0].lower()):
        return model            # 'Canon' 'Canon EOS 6D'
    return ' '.join(s for s in (make, model) if s)


def exif_cards(tags, shape, header=None):
    """FITS cards from EXIF tags.

    Parameters
    ----------
    tags : dict
        EXIF tags by their EXIF names (``ExposureTime``, ``FocalLength``...),
        IFD0's and the Exif IFD's together, as Pillow's ``ExifTags.TAGS`` and
        tifffile name them.
    shape : tuple of int
        ``(ny, nx)`` of the image, for the pixel size that
        ``FocalLengthIn35mmFilm`` implies.
    header : `~astropy.io.fits.Header`, optional
        Added to (its cards kept); default a new one.

    Returns
    -------
    `~astropy.io.fits.Header`

    Notes
    -----
    The pixel size comes from ``FocalPlaneXResolution`` (pixels per
    ``FocalPlaneResolutionUnit`` on the sensor): XPIXSZ = unit / resolution,
    times PixelXDimension / width for a picture narrower than the camera
    recorded (scaled down after it was taken).
    Without it, from the 35 mm equivalent focal length F35 over the image's
    own diagonal: XPIXSZ = 43.27 mm * FocalLength / (F35 * hypot(nx, ny)).
    """
    header = fits.Header() if header is None else header
    add_card(header, 'EXPTIME', _number(tags.get('ExposureTime')), '[s] EXIF ExposureTime')
    when = _exif_time(tags.get('DateTimeOriginal'), tags.get('SubsecTimeOriginal', ''),
                      tags.get('OffsetTimeOriginal', ''))
    if when:
        add_card(header, 'DATE-OBS', *when)
    add_card(header, 'INSTRUME', _instrument(tags.get('Make'), tags.get('Model')),
             'EXIF Make and Model')
    focal = _number(tags.get('FocalLength'))
    f35 = _number(tags.get('FocalLengthIn35mmFilm'))
    microns = _FOCAL_PLANE_UNITS.get(int(_number(tags.get('FocalPlaneResolutionUnit')) or 2))
    xres = _number(tags.get('FocalPlaneXResolution'))
    yres = _number(tags.get('FocalPlaneYResolution'))
    if xres and microns:
        # The resolution is the camera's full-size image's: a picture scaled down
        # since (its width below the recorded PixelXDimension) has larger pixels.
        full = _number(tags.get('PixelXDimension') or tags.get('ExifImageWidth'))
        binned = full / shape[1] if full and full > 1.05 * shape[1] else 1.0
        note = ' x PixelXDimension/width' if binned != 1.0 else ''
        add_card(header, 'FOCALLEN', focal, '[mm] EXIF FocalLength')
        add_card(header, 'XPIXSZ', round(binned * microns / xres, 4),
                 f'[um] EXIF FocalPlaneXResolution{note}')
        add_card(header, 'YPIXSZ', round(binned * microns / (yres or xres), 4),
                 f'[um] EXIF FocalPlane{"Y" if yres else "X"}Resolution{note}')
    elif f35:
        ny, nx = shape
        pixel = 1000.0 * FULL_FRAME_DIAGONAL_MM * (focal or f35) / (f35 * math.hypot(nx, ny))
        add_card(header, 'FOCALLEN', focal or f35, '[mm] EXIF FocalLength')
        add_card(header, 'XPIXSZ', round(pixel, 4), '[um] from EXIF FocalLengthIn35mmFilm')
        add_card(header, 'YPIXSZ', round(pixel, 4), '[um] from EXIF FocalLengthIn35mmFilm')
    else:
        add_card(header, 'FOCALLEN', focal, '[mm] EXIF FocalLength')
    return header


def _fits_value(text):
    """A FITS keyword value as XISF stores it (a string, quotes removed)."""
    text = str(text).strip()
    if text in ('T', 'F'):
        return text == 'T'
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip("'").rstrip()


#: XISF property -> (FITS card, factor to its unit or None for text, comment).
_XISF_PROPERTIES = {
    'Instrument:ExposureTime': ('EXPTIME', 1.0, '[s]'),
    'Instrument:Telescope:FocalLength': ('FOCALLEN', 1000.0, '[mm]'),   # stored in metres
    'Instrument:Sensor:XPixelSize': ('XPIXSZ', 1.0, '[um]'),
    'Instrument:Sensor:YPixelSize': ('YPIXSZ', 1.0, '[um]'),
    'Instrument:Camera:XBinning': ('XBINNING', 1.0, ''),
    'Instrument:Camera:YBinning': ('YBINNING', 1.0, ''),
    'Instrument:Camera:Name': ('INSTRUME', None, ''),
    'Instrument:Telescope:Name': ('TELESCOP', None, ''),
    'Observation:Object:Name': ('OBJECT', None, ''),
    'Observation:Time:Start': ('DATE-OBS', None, 'UTC'),
    'Observation:Center:RA': ('RA', 1.0, '[deg]'),
    'Observation:Center:Dec': ('DEC', 1.0, '[deg]'),
}


def _utc_text(value):
    """An XISF TimePoint (ISO 8601, with its zone) as a FITS UTC time, or None."""
    try:
        when = datetime.fromisoformat(str(value).strip().replace('Z', '+00:00'))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.isoformat(timespec='milliseconds' if when.microsecond else 'seconds')


def xisf_cards(keywords, properties):
    """FITS cards from an XISF image's FITS keywords and XISF properties.

    Parameters
    ----------
    keywords : dict
        The ``FITSKeywords`` of ``xisf``'s image metadata: name -> list of
        ``{'value', 'comment'}``.
    properties : dict
        The ``XISFProperties``: id -> ``{'value': ...}``.

    Returns
    -------
    `~astropy.io.fits.Header`
        The FITS keywords (less the layout cards), then the properties the
        keywords did not give, in FITS units.
    """
    header = fits.Header()
    for key, entries in (keywords or {}).items():
        key = str(key).upper().strip()
        if key in _STRUCTURE or key.startswith('NAXIS') or not entries:
            continue
        for entry in entries:
            value, comment = entry.get('value', ''), entry.get('comment', '') or ''
            try:
                if key == 'COMMENT':
                    header.add_comment(str(comment or value))
                elif key == 'HISTORY':
                    header.add_history(str(comment or value))
                elif len(key) <= 8:
                    add_card(header, key, _fits_value(value), str(comment))
            except (ValueError, TypeError):   # not a valid card: the property may give it
                continue
    for name, (key, factor, unit) in _XISF_PROPERTIES.items():
        value = (properties or {}).get(name, {}).get('value')
        if value is None:
            continue
        if key == 'DATE-OBS':
            value = _utc_text(value)
        elif factor is None:
            value = _text(value)
        else:
            value = _number(value) if key not in ('RA', 'DEC') else _finite(value)
            value = None if value is None else value * factor
        add_card(header, key, value, f'{unit} XISF {name}'.strip())
    return header


def _finite(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def libraw_cards(other, header=None):
    """FITS cards from LibRaw's metadata of a RAW file (rawpy's ``RawPy.other``):
    exposure, focal length and the camera's clock, for what EXIF did not give.

    LibRaw reads the time as the camera's local clock; it is kept as that.
    """
    header = fits.Header() if header is None else header
    add_card(header, 'EXPTIME', _number(getattr(other, 'shutter_speed', None)), '[s] LibRaw')
    add_card(header, 'FOCALLEN', _number(getattr(other, 'focal_length', None)), '[mm] LibRaw')
    when = getattr(other, 'timestamp', None)
    if isinstance(when, (int, float)) and when > 0:
        when = datetime(1970, 1, 1) + timedelta(seconds=when)
    if isinstance(when, datetime) and when.year > 1980:
        add_card(header, 'DATE-OBS', when.replace(tzinfo=None).isoformat(timespec='seconds'),
                 'camera clock (LibRaw), time zone not recorded')
    return header
