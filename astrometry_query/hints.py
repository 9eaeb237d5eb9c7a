"""Solve hints read from a FITS header: pointing and pixel scale.

Camera software writes where the telescope pointed (RA/DEC, OBJCTRA/OBJCTDEC)
and the optics (FOCALLEN, XPIXSZ, binning), or a pixel scale (SECPIX,
PIXSCALE, SCALE); a previous solve leaves a WCS.  Each narrows the search a
lot.  They are hints, never truths: the solver falls back to a wider search
when a hinted one fails (see `SolveHints.attempts`).
"""
import math
import re
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle

from .exceptions import InvalidInputError

__all__ = ['header_position', 'header_hints', 'SolveHints', 'merge_attempts', 'HEADER_HINTS',
           'check_header_hints']

_UNIT_HINT = re.compile(r'\b(hours?|hrs?|h|hms|deg|degrees?)\b|\[(h|deg|hr)\]', re.I)
#: Pointing cards, tried in this order: (RA card, Dec card).
POSITION_CARDS = (('OBJCTRA', 'OBJCTDEC'), ('RA', 'DEC'), ('RA_OBJ', 'DEC_OBJ'),
                  ('TELRA', 'TELDEC'), ('RA_TARG', 'DEC_TARG'))
#: Cards holding a pixel scale in arcsec/pixel.
SCALE_CARDS = ('SECPIX', 'SECPIX1', 'PIXSCALE', 'PIXSCAL1', 'SCALE', 'PIXSCAL')
#: What ``header_hints`` accepts: read and trust the header, read it but search
#: on when a hint cannot be served, or ignore it.
HEADER_HINTS = (True, 'verify', False)
#: How far a header pointing may be off, as a multiple of the field radius (and at least 1 deg).
POINTING_SLACK = 3.0


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


def check_header_hints(value):
    """``header_hints`` checked: True, 'verify' or False."""
    if value is True or value is False or value == 'verify':
        return value
    raise InvalidInputError(f"header_hints must be True (read the header's pointing and scale "
                            f"and trust them), 'verify' (read them, but search on without a "
                            f"hint the index files cannot serve) or False, got {value!r}.")


def _number(header, key):
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        try:
            value = float(str(value).strip()) if isinstance(value, str) else None
        except ValueError:
            value = None
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def _scale_range(header):
    """(low, high) arcsec/pixel and where it came from, or None."""
    for key in SCALE_CARDS:
        scale = _number(header, key)
        if scale is not None and scale < 3600:
            return (0.9 * scale, 1.1 * scale), key
    focal = _number(header, 'FOCALLEN')
    pixel = _number(header, 'XPIXSZ') or _number(header, 'YPIXSZ') or _number(header, 'PIXSIZE')
    if focal and pixel:
        scale = 206.264806 * pixel / focal
        binning = max(_number(header, 'XBINNING') or 1.0, 1.0)
        # Writers differ on whether XPIXSZ includes the binning: cover both.
        return (0.85 * scale, 1.15 * scale * binning), 'FOCALLEN/XPIXSZ'
    return None


def _wcs_hints(image_wcs, shape):
    ny, nx = shape
    try:
        ra, dec = image_wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        scales = image_wcs.proj_plane_pixel_scales()
        scale = float(np.mean([s.to_value(u.arcsec) if hasattr(s, 'unit') else s * 3600
                               for s in scales]))
    except Exception:
        return None
    if not (np.isfinite(ra) and np.isfinite(dec) and np.isfinite(scale) and 0 < scale < 3600):
        return None
    return float(ra) % 360.0, float(dec), scale


@dataclass
class SolveHints:
    """Hints from a header, as nova settings, with where each came from.

    Attributes
    ----------
    position : dict
        ``center_ra``, ``center_dec``, ``radius`` (degrees), or empty.
    scale : dict
        ``scale_units`` (arcsecperpix), ``scale_lower``, ``scale_upper``, or empty.
    position_source, scale_source : str
        The cards each came from ('' when absent).
    verify : bool
        The header may be wrong (``header_hints='verify'``): a hint the
        installed index files cannot serve is dropped and the search goes on
        without it.  By default headers are trusted (they almost always are
        right), so such a field is refused at once.
    """
    position: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)
    position_source: str = ''
    scale_source: str = ''
    verify: bool = False

    @property
    def sources(self):
        """The cards used, for messages and logs."""
        return list(dict.fromkeys(s for s in (self.scale_source, self.position_source) if s))

    def __bool__(self):
        return bool(self.position or self.scale)

    def to_dict(self):
        return {'position': dict(self.position), 'scale': dict(self.scale),
                'position_source': self.position_source, 'scale_source': self.scale_source,
                'verify': self.verify}

    @classmethod
    def from_dict(cls, data):
        data = data or {}
        return cls(dict(data.get('position') or {}), dict(data.get('scale') or {}),
                   data.get('position_source', ''), data.get('scale_source', ''),
                   bool(data.get('verify', False)))

    def attempts(self, settings):
        """The settings to try, narrowest first: ``settings`` plus all hints,
        plus the scale hint only, then ``settings`` alone.  A hint never
        overrides what ``settings`` already says."""
        return merge_attempts(settings, self.position, self.scale)


def merge_attempts(settings, position, scale):
    has_position = any(k in settings for k in ('center_ra', 'center_dec'))
    has_scale = any(k in settings for k in ('scale_lower', 'scale_upper', 'scale_est'))
    position = {} if has_position else position
    scale = {} if has_scale else scale
    out = []
    for extra in (dict(position, **scale), dict(scale), {}):
        attempt = dict(settings, **extra)
        if extra and 'scale_lower' in extra:
            attempt['scale_type'] = 'ul'
        if attempt not in out:
            out.append(attempt)
    return out


def header_hints(header, shape, image_wcs=None, *, verify=False):
    """Pointing and pixel-scale hints from a FITS header.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
    shape : tuple of int
        ``(ny, nx)`` of the image, to size the search radius.
    image_wcs : `~astropy.wcs.WCS`, optional
        The header's WCS, if it has one (a previous solution).
    verify : bool
        The hints may be wrong (see `SolveHints.verify`).

    Returns
    -------
    SolveHints
        Empty when the header says nothing useful.  Unreadable cards are
        ignored, never an error.
    """
    hints = SolveHints(verify=bool(verify))
    ny, nx = shape
    position = None
    if image_wcs is not None:
        found = _wcs_hints(image_wcs, shape)
        if found is not None:
            ra, dec, scale = found
            position = (ra, dec)
            hints.scale = {'scale_units': 'arcsecperpix', 'scale_lower': float(0.9 * scale),
                           'scale_upper': float(1.1 * scale)}
            hints.scale_source = hints.position_source = 'WCS'
    if not hints.scale:
        found = _scale_range(header)
        if found is not None:
            (low, high), key = found
            hints.scale = {'scale_units': 'arcsecperpix', 'scale_lower': float(low),
                           'scale_upper': float(high)}
            hints.scale_source = key
    if position is None:
        for ra_key, dec_key in POSITION_CARDS:
            if ra_key in header and dec_key in header:
                try:
                    position = header_position(header, ra_key, dec_key)
                except InvalidInputError:
                    continue
                hints.position_source = f'{ra_key}/{dec_key}'
                break
    if position is not None:
        scale = hints.scale.get('scale_upper')
        field_radius = (scale * math.hypot(nx, ny) / 2 / 3600) if scale else 5.0
        radius = min(max(1.0, POINTING_SLACK * field_radius), 30.0)
        ra, dec = position
        # nova drops a position hint holding a zero (protocol §2): keep it non-zero.
        hints.position = {'center_ra': float(ra) or 360.0, 'center_dec': float(dec) or 1e-9,
                          'radius': float(radius)}
    return hints
