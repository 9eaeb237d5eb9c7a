"""Every solve option in one table: validation, normalisation, and its
mapping to nova arguments (the solver's directives are made from those by
``astrometry_query.local.axy``), and what the scale arguments mean in
arcsec/pixel (`scale_bounds`, for the engine and the index coverage check).

The same table serves the nova-compatible server, which casts incoming
arguments the way nova does (``nova_cast``) before mapping them to flags.
"""
import difflib
import math
import numbers
import re
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle, SkyCoord

from .exceptions import InvalidSettingError

__all__ = ['SETTINGS', 'validate_settings', 'normalize_settings', 'to_nova_args',
           'nova_cast', 'allowed_settings_text', 'check_search_workers', 'parse_position',
           'scale_bounds', 'MAX_SOURCES']

#: nova's solver reads at most this many sources (``--objs 1000``).
MAX_SOURCES = 1000

#: Upper bound of each scale unit (the whole sky, or a silly focal length).
SCALE_UNIT_LIMITS = {'degwidth': 360.0, 'arcminwidth': 21600.0,
                     'arcsecperpix': 36000.0, 'focalmm': 1e6}

_PARITY_WORDS = {'pos': 0, 'positive': 0, 'neg': 1, 'negative': 1, 'both': 2}


@dataclass(frozen=True)
class Setting:
    """One solve option: its type, default, allowed values and meaning."""
    name: str
    type: type
    default: object
    allowed: tuple      # choices for str, (low, high) bounds for numbers
    doc: str
    unit: str = ''

    def describe_allowed(self):
        if self.type is bool:
            return 'True or False'
        if self.type is str:
            return ('one of ' + ', '.join(repr(a) for a in self.allowed)
                    if self.allowed else 'any non-empty string')
        low, high = self.allowed
        unit = f' ({self.unit})' if self.unit else ''
        return f'{low} <= {self.name} <= {high}{unit}'


_TABLE = [
    Setting('allow_commercial_use', str, 'd', ('d', 'y', 'n'),
            "Licence: allow commercial use ('d' = your account default)."),
    Setting('allow_modifications', str, 'd', ('d', 'y', 'n', 'sa'),
            "Licence: allow modifications ('sa' = share-alike)."),
    Setting('publicly_visible', str, 'n', ('y', 'n'),
            'Make the upload public on the server. Private by default.'),
    Setting('scale_units', str, None, ('degwidth', 'arcminwidth', 'arcsecperpix', 'focalmm'),
            'Units of scale_lower/upper/est.'),
    Setting('scale_type', str, None, ('ul', 'ev'),
            "'ul' = lower/upper bounds, 'ev' = estimate +/- error (inferred when omitted)."),
    Setting('scale_lower', float, None, (0, 1e6), 'Lower bound of the image scale.', 'scale_units'),
    Setting('scale_upper', float, None, (0, 1e6), 'Upper bound of the image scale.', 'scale_units'),
    Setting('scale_est', float, None, (0, 1e6), 'Estimated image scale.', 'scale_units'),
    Setting('scale_err', float, None, (0, 100), 'Error of scale_est.', 'percent'),
    Setting('center_ra', float, None, (0, 360), 'RA of the field centre hint.', 'deg'),
    Setting('center_dec', float, None, (-90, 90), 'Dec of the field centre hint.', 'deg'),
    Setting('radius', float, None, (0, 180), 'How far the true centre may be from the hint.', 'deg'),
    Setting('downsample_factor', int, None, (1, 64), 'Downsample the image before detection.'),
    Setting('tweak_order', int, 2, (0, 9), 'SIP distortion order (0 = pure TAN).'),
    Setting('use_sextractor', bool, False, (), 'Detect sources with Source Extractor.'),
    Setting('crpix_center', bool, None, (), 'Put the WCS reference point at the image centre.'),
    Setting('invert', bool, None, (), 'Invert the image (dark stars) before detection.'),
    Setting('parity', int, None, (0, 2), "0 = 'pos', 1 = 'neg', 2 = try both."),
    Setting('positional_error', float, None, (0, 100), 'Source position error.', 'pixels'),
    Setting('album', str, None, (), 'Title of an existing album on the server.'),
]
SETTINGS = {s.name: s for s in _TABLE}

#: Convenience keywords that are turned into the settings above.
ASTROPY_KEYWORDS = ('center', 'scale')


def _fail(name, value, setting=None, reason=None):
    setting = setting or SETTINGS.get(name)
    allowed = setting.describe_allowed() if setting else None
    text = reason or f'Value {value!r} for {name} is invalid.'
    if allowed:
        text += f' The valid values are {allowed}.'
    raise InvalidSettingError(text, setting=name, allowed=allowed)


def _check_one(name, value):
    """Check one setting's type and range; return it as a plain Python value."""
    setting = SETTINGS.get(name)
    if setting is None:
        close = difflib.get_close_matches(name, list(SETTINGS) + list(ASTROPY_KEYWORDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ''
        raise InvalidSettingError(
            f'Setting {name} is not allowed.{hint} Display all of the allowed settings '
            'with: AstrometryNet.show_allowed_settings()', setting=name,
            allowed=sorted(SETTINGS))
    type_name = setting.type.__name__
    if setting.type is bool:
        if not isinstance(value, (bool, np.bool_)):
            _fail(name, value, setting, f"Value for {name} must be of type '{type_name}', "
                                        f"got {type(value).__name__} {value!r}.")
        return bool(value)
    if setting.type is str:
        if not isinstance(value, str):
            _fail(name, value, setting, f"Value for {name} must be of type '{type_name}', "
                                        f"got {type(value).__name__} {value!r}.")
        if setting.allowed and value not in setting.allowed:
            _fail(name, value, setting)
        if not setting.allowed and (not value.strip() or len(value) > 200):
            _fail(name, value, setting)
        return value
    if name == 'parity' and isinstance(value, str) and value.lower() in _PARITY_WORDS:
        return _PARITY_WORDS[value.lower()]
    if isinstance(value, u.Quantity):
        value = _quantity_value(name, value, setting)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        _fail(name, value, setting, f"Value for {name} must be of type '{type_name}', "
                                    f"got {type(value).__name__} {value!r}.")
    try:
        as_float = float(value)
    except OverflowError:           # an int too large for any range
        _fail(name, value, setting, f'Value for {name} is far out of range.')
    if setting.type is int:
        if not as_float.is_integer():
            _fail(name, value, setting, f"Value for {name} must be of type 'int', got {value!r}.")
        value = int(value)
    else:
        value = as_float
    low, high = setting.allowed
    if not (math.isfinite(value) and low <= value <= high):
        _fail(name, value, setting)
    if name in ('radius', 'scale_est') and value == 0:
        _fail(name, value, setting, f'Value {value!r} for {name} is invalid: it must be > 0.')
    return value


def _quantity_value(name, value, setting):
    """Strip units from a Quantity given for a scalar setting."""
    if setting.unit == 'deg':
        try:
            return value.to_value(u.deg)
        except u.UnitsError:
            pass
    elif setting.unit == 'pixels':
        try:
            return value.to_value(u.pix)
        except u.UnitsError:
            pass
    elif setting.unit == 'percent':
        try:
            return value.to_value(u.percent)
        except u.UnitsError:
            pass
    elif setting.unit == 'scale_units':
        return value   # resolved with scale_units by normalize_settings
    _fail(name, value, setting, f'Value {value} for {name} has incompatible units.')


#: What a scale Quantity may be, for error messages.
SCALE_FORMS = ('an angle per pixel (pixel scale, e.g. (8, 10) * u.arcsec / u.pix), an angle '
               '(the field width, e.g. (40, 60) * u.arcmin) or a length (focal length in 35 mm '
               'equivalent, u.mm)')
#: A field narrower than this cannot be solved by any index file (the smallest
#: quads, of the 5200 series' scale 0, are 2 arcmin): an angle that small is a
#: pixel scale given without its /pix.
NARROWEST_FIELD = 1.0 * u.arcmin


def _scale_quantity(value, name):
    """Turn an angle or angle/pixel Quantity into (number, nova scale_units)."""
    try:
        value = u.Quantity(value)
    except (TypeError, ValueError):
        raise InvalidSettingError(
            f'{name} must be a Quantity: {SCALE_FORMS}; got {value!r}.',
            setting=name, allowed=SCALE_FORMS) from None
    if not value.isscalar:
        raise InvalidSettingError(f'{name} must be one value, got {value.size} values.',
                                  setting=name, allowed=SCALE_FORMS)
    if value.unit.is_equivalent(u.arcsec / u.pix):
        return value.to_value(u.arcsec / u.pix), 'arcsecperpix'
    if value.unit.is_equivalent(u.deg):
        if value < NARROWEST_FIELD:
            raise InvalidSettingError(
                f'{name}: an angle is the width of the whole field, and {value} is narrower '
                f'than any index file can solve ({NARROWEST_FIELD}). Did you mean '
                f'{value.unit}/pix, a pixel scale (e.g. * u.{value.unit} / u.pix)?',
                setting=name, allowed=SCALE_FORMS)
        return value.to_value(u.deg), 'degwidth'
    if value.unit.is_equivalent(u.mm):
        return value.to_value(u.mm), 'focalmm'
    if value.unit == u.dimensionless_unscaled:
        raise InvalidSettingError(
            f'{name}: {value.value:g} has no unit. Did you mean arcsec/pix (a pixel scale: '
            f'* u.arcsec / u.pix)? A scale Quantity is {SCALE_FORMS}; plain numbers go in '
            'scale_lower/scale_upper with scale_units.', setting=name, allowed=SCALE_FORMS)
    raise InvalidSettingError(f'{name} must be {SCALE_FORMS}; got unit {value.unit}.',
                              setting=name, allowed=SCALE_FORMS)


#: What ``center`` accepts, for error messages.
CENTER_FORMS = ("a SkyCoord, an (ra, dec) pair in degrees, or a string such as "
                "'05h35m17s -05d23m28s', '05:35:17 -05:23:28' or '83.82 -5.39'")
_NUMBER = r'[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?'
_TWO_NUMBERS = re.compile(rf'\s*({_NUMBER})\s*[,\s]\s*({_NUMBER})\s*')


def parse_position(text):
    """A sky position from a string, read as `~astropy.coordinates.SkyCoord` reads it.

    Units written in the string are used ('05h35m17s -05d23m28s',
    '83.82d -5.39d'); two plain numbers are degrees ('83.82 -5.39' or
    '83.82, -5.39'); sexagesimal numbers without units are hours of RA and
    degrees of Dec ('05:35:17 -05:23:28', '05 35 17 -05 23 28'), as in FITS
    headers and observing logs.

    Raises
    ------
    InvalidSettingError
        Naming the forms accepted.
    """
    numbers = _TWO_NUMBERS.fullmatch(text)
    try:
        if numbers:
            return SkyCoord(float(numbers[1]), float(numbers[2]), unit=u.deg)
        try:
            return SkyCoord(text)
        except (ValueError, u.UnitsError):
            return SkyCoord(text, unit=(u.hourangle, u.deg))
    except (ValueError, u.UnitsError, TypeError) as exc:
        raise InvalidSettingError(f'center: cannot read a position from {text!r} ({exc}); '
                                  f'give {CENTER_FORMS}.', setting='center',
                                  allowed=CENTER_FORMS) from None


def _expand_astropy_keywords(settings):
    """Turn center=SkyCoord, scale=(lo, hi) and Quantity scales into nova settings."""
    settings = dict(settings)
    center = settings.pop('center', None)
    if center is not None:
        if 'center_ra' in settings or 'center_dec' in settings:
            raise InvalidSettingError('Give either center or center_ra/center_dec, not both.',
                                      setting='center')
        if isinstance(center, str):
            center = parse_position(center)
        elif not isinstance(center, SkyCoord):
            try:
                ra, dec = center
                center = SkyCoord(Angle(ra, u.deg), Angle(dec, u.deg))
            except Exception:
                raise InvalidSettingError(
                    f'center must be a SkyCoord, a string or an (ra, dec) pair, got {center!r}.',
                    setting='center', allowed=CENTER_FORMS) from None
        if not center.isscalar:
            raise InvalidSettingError('center must be a single position.', setting='center')
        try:
            icrs = center.icrs
        except Exception as exc:     # e.g. AltAz without a location or time
            raise InvalidSettingError(f'center cannot be turned into ICRS RA/Dec: {exc}',
                                      setting='center', allowed=CENTER_FORMS) from None
        settings['center_ra'] = icrs.ra.wrap_at(360 * u.deg).deg
        settings['center_dec'] = icrs.dec.deg
    scale = settings.pop('scale', None)
    quantities = {k: settings[k] for k in ('scale_lower', 'scale_upper', 'scale_est')
                  if isinstance(settings.get(k), u.Quantity)}
    if scale is not None:
        if any(k in settings for k in ('scale_lower', 'scale_upper', 'scale_est')):
            raise InvalidSettingError('Give either scale or scale_lower/upper/est, not both.',
                                      setting='scale')
        if isinstance(scale, numbers.Real):
            _scale_quantity(scale, 'scale')          # says the unit is missing
        if isinstance(scale, u.Quantity) and scale.isscalar:
            quantities = {'scale_est': scale}
            settings.setdefault('scale_err', 10.0)
        else:
            try:
                low, high = scale
            except Exception:
                raise InvalidSettingError(
                    'scale must be a Quantity estimate or a (low, high) pair of Quantities.',
                    setting='scale', allowed='Quantity or (low, high)') from None
            quantities = {'scale_lower': low, 'scale_upper': high}
    units = set()
    for key, value in quantities.items():
        number, unit = _scale_quantity(value, 'scale' if scale is not None else key)
        units.add(unit)
        settings[key] = number
    if len(units) > 1:
        raise InvalidSettingError(f'Scale quantities mix incompatible kinds: {sorted(units)}.',
                                  setting='scale')
    if units:
        (unit,) = units
        given = settings.get('scale_units')
        if given is not None and given != unit and not (unit == 'degwidth' and given == 'arcminwidth'):
            raise InvalidSettingError(f'scale_units={given!r} contradicts the scale Quantity '
                                      f'units ({unit}).', setting='scale_units')
        if given == 'arcminwidth' and unit == 'degwidth':
            for key in quantities:
                settings[key] *= 60.0
        else:
            settings['scale_units'] = unit
    return settings


def validate_settings(settings):
    """Check each setting's name, type and range (astroquery's rules).

    Parameters
    ----------
    settings : dict
        Setting names and values; None values are ignored.

    Returns
    -------
    dict
        The settings as plain Python values.

    Raises
    ------
    InvalidSettingError
        Naming the setting and its allowed values.
    """
    checked = {k: _check_one(k, v) for k, v in settings.items() if v is not None}
    scale_type = checked.get('scale_type')
    if scale_type is not None:
        required = (['scale_est', 'scale_err', 'scale_units'] if scale_type == 'ev'
                    else ['scale_lower', 'scale_upper', 'scale_units'])
        if not all(k in checked for k in required):
            raise InvalidSettingError(f'Scale type {scale_type} requires values for {required}',
                                      setting='scale_type', allowed=required)
    return checked


def normalize_settings(settings):
    """Validate settings, accept astropy forms, and refuse inconsistent ones.

    Accepts ``center`` (`~astropy.coordinates.SkyCoord` or an (ra, dec) pair),
    ``radius`` as an angle, ``scale`` as ``(low, high)`` or a single estimate
    in angle (field width), angle/pixel or focal-length Quantities.

    Returns
    -------
    dict
        Nova settings with plain values, scale_type filled in.
    """
    settings = {k: v for k, v in settings.items() if v is not None}
    checked = validate_settings(_expand_astropy_keywords(settings))
    _check_scale(checked)
    has_ra, has_dec = 'center_ra' in checked, 'center_dec' in checked
    if has_ra != has_dec:
        raise InvalidSettingError('center_ra and center_dec must be given together.',
                                  setting='center_ra' if has_ra else 'center_dec')
    if 'radius' in checked and not has_ra:
        raise InvalidSettingError('radius needs a centre: give center (SkyCoord) or '
                                  'center_ra and center_dec.', setting='radius')
    if has_ra and 'radius' not in checked:
        checked['radius'] = 5.0   # the solver ignores a centre without a radius
    return checked


def _check_scale(checked):
    ul = [k for k in ('scale_lower', 'scale_upper') if k in checked]
    ev = [k for k in ('scale_est', 'scale_err') if k in checked]
    if ul and ev:
        raise InvalidSettingError('Give scale_lower/scale_upper or scale_est/scale_err, not both.',
                                  setting='scale_type')
    if not (ul or ev):
        return
    inferred = 'ul' if ul else 'ev'
    given = checked.get('scale_type', inferred)
    if given != inferred:
        raise InvalidSettingError(f"scale_type={checked['scale_type']!r} does not match the "
                                  f'scale values given ({", ".join(ul or ev)}).', setting='scale_type')
    if inferred == 'ev' or len(ul) == 2:
        checked['scale_type'] = inferred
    # One bound alone (the solver leaves the other open, as nova does) carries no
    # scale_type: astroquery's rule refuses an explicit 'ul' without both bounds.
    units = checked.get('scale_units')
    if units is None:
        raise InvalidSettingError(
            f'{", ".join(ul or ev)} need scale_units (one of '
            f"{', '.join(SETTINGS['scale_units'].allowed)}), or give Quantities.",
            setting='scale_units', allowed=SETTINGS['scale_units'].allowed)
    if inferred == 'ev' and 'scale_est' not in checked:
        raise InvalidSettingError('scale_err needs scale_est.', setting='scale_est')
    if inferred == 'ev':
        checked.setdefault('scale_err', 10.0)
    limit = SCALE_UNIT_LIMITS[units]
    for key in ul + ['scale_est'] * (inferred == 'ev'):
        if checked[key] > limit:
            _fail(key, checked[key], reason=f'Value {checked[key]!r} for {key} is invalid: '
                  f'at most {limit} {units}.')
    if len(ul) == 2 and checked['scale_lower'] > checked['scale_upper']:
        raise InvalidSettingError(f"scale_lower ({checked['scale_lower']}) is greater than "
                                  f"scale_upper ({checked['scale_upper']}).", setting='scale_lower')


def to_nova_args(settings):
    """Nova request-json arguments for normalised settings.

    The licence and visibility flags are always sent (private by default), and
    a zero centre coordinate, which nova would silently drop together with the
    whole position hint, is sent as an equivalent non-zero value.
    """
    args = {k: SETTINGS[k].default for k in ('publicly_visible', 'allow_commercial_use',
                                              'allow_modifications')}
    args.update(settings)
    if args.get('center_ra') == 0:
        args['center_ra'] = 360.0
    if args.get('center_dec') == 0:
        args['center_dec'] = 1e-9
    return args


def scale_bounds(args, width, height):
    """(low, high) pixel scale in arcsec/pixel of nova arguments, or (None, None).

    What solve-field makes of them: field widths are the image ``width``
    (``height`` is not used), a focal length (``'focalmm'``) is a 35 mm
    equivalent, and a missing bound is None.

    Parameters
    ----------
    args : dict
        nova arguments: ``scale_units``, ``scale_type`` and ``scale_lower``,
        ``scale_upper`` or ``scale_est``, ``scale_err``.
    width, height : int
        The image in pixels.

    Returns
    -------
    tuple
        (low, high), each a float or None.
    """
    units = args.get('scale_units') or 'degwidth'
    if args.get('scale_type', 'ul') == 'ev':
        est, err = args.get('scale_est'), args.get('scale_err')
        if not (est and err is not None):
            return None, None
        low, high = est * (1 - err / 100.0), est * (1 + err / 100.0)
    else:
        low, high = args.get('scale_lower'), args.get('scale_upper')
    if not (low or high):
        return None, None
    size = float(width)     # solve-field's field widths are the image width
    to_app = {'arcsecperpix': lambda v: v,
              'degwidth': lambda v: v * 3600.0 / size,
              'arcminwidth': lambda v: v * 60.0 / size,
              # 35 mm equivalent focal length, as solve-field converts it
              'focalmm': lambda v: math.degrees(math.atan(36.0 / (2 * v))) * 3600.0 / size}
    convert = to_app.get(units, to_app['degwidth'])
    low, high = (convert(v) if v else None for v in (low, high))
    if units == 'focalmm':          # a longer focal length is a smaller scale
        low, high = high, low
    return low, high


def check_search_workers(value):
    """``conf.search_workers`` as an int: 0 (automatic: one engine per index
    file) or how many engine processes a blind local search is split across."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        value = None
    try:
        number = int(value) if value is not None and float(value) == int(float(value)) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 <= number <= 256:
        raise InvalidSettingError(
            f'conf.search_workers must be a whole number from 0 (automatic) to 256, '
            f'got {value!r}.', setting='search_workers', allowed='0 <= search_workers <= 256')
    return number


def nova_cast(raw):
    """Cast raw nova arguments the way the nova server does (``float()``,
    ``int()``, ``bool()``); unknown keys are dropped.  Raises ValueError or
    TypeError on a value nova could not cast either."""
    out = {}
    for key, value in raw.items():
        setting = SETTINGS.get(key)
        if setting is None:
            continue
        out[key] = str(value) if setting.type is str else setting.type(value)
    return out


def allowed_settings_text():
    """One line per setting: type, default and allowed values."""
    lines = []
    for name in sorted(SETTINGS):
        s = SETTINGS[name]
        lines.append(f'{name}: type {s.type.__name__!r}, default value {s.default}, '
                     f'allowed values {s.describe_allowed()}. {s.doc}')
    lines.append(f"center: {CENTER_FORMS}; sets center_ra/center_dec.")
    lines.append("scale: (low, high) Quantities, or one Quantity estimate; angle = field "
                 "width, angle/pixel = pixel scale.")
    return '\n'.join(lines)
