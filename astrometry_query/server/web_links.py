"""Links that show a solved field in public sky viewers, built from its
calibration (centre and field size) with each viewer's documented query
parameters.  Links only: the server itself fetches nothing from them.

* Aladin Lite (CDS): ``target`` = "RA Dec" in degrees, ``fov`` in degrees,
  ``survey`` a HiPS id.
* WorldWide Telescope, its Goto shortcut (``wwtweb/goto.aspx``): ``ra`` in
  **hours**, ``dec`` in degrees, ``zoom`` = 6 × the field of view in degrees,
  ``object`` the name shown.
* The Legacy Surveys sky viewer: ``ra``, ``dec`` in degrees, ``layer``, and
  ``zoom``, a whole number from 0 to 16 where 14 shows the survey's native
  0.262″ pixels and each step down halves the scale.
"""
import math
from functools import partial
from urllib.parse import quote, urlencode

__all__ = ['sky_links', 'ALADIN_URL', 'WWT_URL', 'LEGACY_URL']

ALADIN_URL = 'https://aladin.cds.unistra.fr/AladinLite/'
WWT_URL = 'https://worldwidetelescope.org/wwtweb/goto.aspx'
LEGACY_URL = 'https://www.legacysurvey.org/viewer'
#: Aladin Lite's colour DSS, which covers the whole sky.
ALADIN_SURVEY = 'CDS/P/DSS2/color'
LEGACY_LAYER = 'ls-dr10'
#: The viewers open at the field plus this margin around it.
_MARGIN = 1.5
#: Legacy viewer: arcsec per screen pixel at zoom 14, and a typical window width in pixels.
_LEGACY_NATIVE, _LEGACY_ZOOM, _WINDOW = 0.262, 14, 1000


#: %20 for a blank, as every viewer's query parser reads it.
_query = partial(urlencode, quote_via=quote)


def _fov_degrees(cal):
    """The field's larger side with a margin, in degrees."""
    side = max(cal.get('width_arcsec') or 0.0, cal.get('height_arcsec') or 0.0) / 3600.0
    return _MARGIN * (side or 2.0 * cal['radius'])


def sky_links(cal, name='field'):
    """[(viewer name, URL)] for a calibration (nova's dict: ``ra``, ``dec`` in
    degrees, ``width_arcsec``, ``height_arcsec``, ``radius``)."""
    ra, dec, fov = float(cal['ra']), float(cal['dec']), _fov_degrees(cal)
    aladin = _query({'target': f'{ra:.6f} {dec:.6f}', 'fov': f'{fov:.4f}',
                        'survey': ALADIN_SURVEY})
    wwt = _query({'object': name, 'ra': f'{ra / 15.0:.6f}', 'dec': f'{dec:.6f}',
                     'zoom': f'{6.0 * fov:.4f}'})
    # The zoom whose window of ~1000 pixels holds the field.
    steps = math.log2(max(fov * 3600.0 / (_LEGACY_NATIVE * _WINDOW), 1e-9))
    zoom = min(16, max(0, _LEGACY_ZOOM - math.ceil(steps)))
    legacy = _query({'ra': f'{ra:.6f}', 'dec': f'{dec:.6f}', 'layer': LEGACY_LAYER,
                        'zoom': zoom})
    return [('Aladin Lite', f'{ALADIN_URL}?{aladin}'),
            ('WorldWide Telescope', f'{WWT_URL}?{wwt}'),
            ('Legacy Surveys viewer', f'{LEGACY_URL}?{legacy}')]
