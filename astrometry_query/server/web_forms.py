"""The upload form of the server's web pages: its fields and choices, and the
nova submission arguments its posted text stands for.

The form checks only what nova cannot (fields that go together, sexagesimal
positions); casts and range checks are left to the API's own code path,
whose messages the page shows with the form's labels (``labelled``).
"""
import re

__all__ = ['form_args', 'labelled', 'FORM_FIELDS', 'SCALE_UNITS', 'PARITIES']

SCALE_UNITS = [('degwidth', 'degrees wide'), ('arcminwidth', 'arcminutes wide'),
               ('arcsecperpix', 'arcseconds per pixel'), ('focalmm', 'focal length (35 mm equiv., mm)')]
PARITIES = [('2', 'try both'), ('0', 'normal (pos)'), ('1', 'mirrored (neg)')]
FORM_FIELDS = ('url', 'scale_units', 'scale_lower', 'scale_upper', 'center_ra', 'center_dec',
               'radius', 'parity', 'downsample_factor', 'tweak_order', 'publicly_visible')
LABELS = {'url': 'URL', 'scale_units': 'Scale units', 'scale_lower': 'Lower scale bound',
          'scale_upper': 'Upper scale bound', 'center_ra': 'Centre RA', 'center_dec': 'Centre Dec',
          'radius': 'Radius', 'parity': 'Parity', 'downsample_factor': 'Downsample',
          'tweak_order': 'SIP tweak order', 'publicly_visible': 'Public'}
_NUMBER = re.compile(r'[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?')


def labelled(message):
    """An argument's error (``scale_lower: ...``, ``url must ...``) with the form's
    label instead of nova's argument name."""
    for sep in (': ', ' '):
        key, found, rest = message.partition(sep)
        if found and key in LABELS:
            return f'{LABELS[key]}{sep}{rest}'
    return message


def _degrees(text, ra):
    """Degrees from decimal degrees (left for nova's cast and range check) or
    sexagesimal (h:m:s for RA, d:m:s for Dec)."""
    if _NUMBER.fullmatch(text):
        return text
    import astropy.units as u
    from astropy.coordinates import Angle
    try:
        return float(Angle(text, unit=u.hourangle if ra else u.deg).degree)
    except Exception:
        raise ValueError(f'{"Centre RA" if ra else "Centre Dec"}: {text!r} is neither degrees '
                         f'nor {"h:m:s" if ra else "d:m:s"}') from None


def form_args(form):
    """nova submission arguments from the web form's fields.

    Parameters
    ----------
    form : dict
        Field name -> text, as posted.

    Returns
    -------
    data : dict
        request-json-like arguments (nova casts and checks them).
    errors : list of str
        What the form itself gets wrong (empty when nothing).
    """
    def field(name):
        return str(form.get(name) or '').strip()
    data, errors = {'publicly_visible': 'y' if field('publicly_visible') == 'y' else 'n'}, []
    if field('url'):
        data['url'] = field('url')
    lower, upper = field('scale_lower'), field('scale_upper')
    if lower or upper:
        data.update(scale_type='ul', scale_units=field('scale_units') or 'degwidth')
        data.update({k: v for k, v in (('scale_lower', lower), ('scale_upper', upper)) if v})
        try:
            if lower and upper and float(lower) > float(upper):
                errors.append('The lower scale bound is larger than the upper one.')
        except ValueError:
            pass        # nova's cast names the bad number
    position = [field(k) for k in ('center_ra', 'center_dec', 'radius')]
    if any(position) and not all(position):
        errors.append('Give the centre RA, Dec and radius together, or none of them '
                      '(astrometry.net needs all three).')
    elif all(position):
        try:
            data.update(center_ra=_degrees(position[0], True), center_dec=_degrees(position[1], False),
                        radius=position[2])
        except ValueError as exc:
            errors.append(str(exc))
    for name in ('parity', 'downsample_factor', 'tweak_order'):
        if field(name):
            data[name] = field(name)
    return data, errors
