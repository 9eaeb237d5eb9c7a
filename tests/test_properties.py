"""Property-based tests (hypothesis): settings validation, and the real
nova-compatible server's reading of request-json.

Every test is deterministic (``derandomize=True``, no example database) and
keeps to at most 150 examples; examples that once failed are pinned with
``@example``.
"""
import json
import math
import string
from urllib.parse import quote

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from astrometry_query.exceptions import InvalidSettingError
from astrometry_query.server import ServerThread
from astrometry_query.settings import (ASTROPY_KEYWORDS, SCALE_UNIT_LIMITS, SETTINGS,
                                       normalize_settings, to_nova_args)


pytestmark = pytest.mark.filterwarnings('ignore::astropy.io.fits.verify.VerifyWarning')




def fuzz(n):
    """Deterministic settings with at most ``n`` examples."""
    return settings(max_examples=n, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.filter_too_much])


# =====================================================================================
# Settings: normalize_settings / to_nova_args
# =====================================================================================
UNITS = [u.deg, u.arcmin, u.arcsec, u.hourangle, u.rad, u.m, u.mm, u.pix, u.percent,
         u.arcsec / u.pix, u.deg / u.pix, u.one, u.s, u.kg]
NAMES = list(SETTINGS) + list(ASTROPY_KEYWORDS)


def _numbers(huge):
    """Numbers of every kind; ``huge``: also ints beyond float range."""
    ints = st.integers(-10 ** 300, 10 ** 300) if not huge else st.integers()
    out = [ints, st.integers(-5, 400), st.floats(), st.floats(-1e3, 1e3),
           st.sampled_from([0, 0.0, -0.0, 1, 2, 5, 9, 10, 64, 65, 90, 100, 180, 360, 1e6,
                            math.nan, math.inf, -math.inf]),
           st.builds(np.float32, st.floats(-1e3, 1e3, width=32)),
           st.builds(np.int64, st.integers(-100, 1000))]
    if huge:
        out.append(st.integers(10 ** 308, 10 ** 400) | st.integers(-10 ** 400, -10 ** 308))
    return st.one_of(out)


def _quantities():
    scalar = st.builds(lambda v, unit: v * unit, st.floats(-1e3, 1e3) | st.just(math.nan),
                       st.sampled_from(UNITS))
    array = st.builds(lambda v, unit: np.array(v) * unit,
                      st.lists(st.floats(0, 100), min_size=0, max_size=3), st.sampled_from(UNITS))
    return scalar | array


def _strings():
    choices = sorted({c for s in SETTINGS.values() if s.type is str for c in s.allowed}
                     | {'pos', 'neg', 'both', 'POS', 'x', '', ' ', '1', '2.5', 'nan'})
    return st.sampled_from(choices) | st.text(max_size=12)


def _values(huge=False, scale_strings=False):
    """Arbitrary setting values.  ``huge`` adds ints beyond float range and
    ``scale_strings`` strings inside scale pairs: both known bugs."""
    plain = (_numbers(huge) | _strings() | st.none() | st.booleans()
             | st.builds(np.bool_, st.booleans()) | _quantities())
    coords = st.builds(lambda ra, dec: SkyCoord(ra * u.deg, dec * u.deg),
                       st.floats(-10, 370), st.floats(-90, 90))
    pair_items = _numbers(False) | _quantities() | st.none() | st.booleans()
    if scale_strings:
        pair_items = pair_items | st.text(max_size=4)
    pairs = st.tuples(pair_items, pair_items) | st.lists(pair_items, max_size=3)
    return plain | coords | pairs | st.lists(plain, max_size=3)


def _names():
    return st.sampled_from(NAMES + ['raduis', 'centre', 'scale_lowr', 'x'])


def _valid_value(name):
    """A value the table allows for one setting (ranges alone: combinations may still fail)."""
    if name == 'center':
        return st.tuples(st.floats(0, 360), st.floats(-90, 90))
    if name == 'scale':
        return st.builds(lambda lo, hi, unit: (lo * unit, hi * unit), st.floats(0, 10),
                         st.floats(10, 300), st.sampled_from([u.deg, u.arcsec / u.pix, u.mm]))
    s = SETTINGS[name]
    if s.type is bool:
        return st.booleans()
    if s.type is str:
        return st.sampled_from(list(s.allowed)) if s.allowed else st.text(min_size=1, max_size=9)
    low, high = s.allowed
    return st.integers(low, high) if s.type is int else st.floats(low, high)


@st.composite
def any_settings(draw, **known_bugs):
    """Arbitrary settings: per name, a value in its range or anything at all."""
    names = draw(st.lists(_names(), max_size=6, unique=True))
    return {name: draw(_valid_value(name) if name in NAMES and draw(st.integers(0, 3))
                       else _values(**known_bugs)) for name in names}


@st.composite
def valid_settings(draw):
    """Settings that are valid by the documentation (every way to give them)."""
    out = draw(st.fixed_dictionaries({}, optional={
        'allow_commercial_use': st.sampled_from(['d', 'y', 'n']),
        'allow_modifications': st.sampled_from(['d', 'y', 'n', 'sa']),
        'publicly_visible': st.sampled_from(['y', 'n']),
        'downsample_factor': st.integers(1, 64) | st.sampled_from([2.0, np.int64(4)]),
        'tweak_order': st.integers(0, 9),
        'use_sextractor': st.booleans(), 'crpix_center': st.booleans(),
        'invert': st.booleans() | st.builds(np.bool_, st.booleans()),
        'parity': st.integers(0, 2) | st.sampled_from(['pos', 'neg', 'both', 'Neg']),
        'positional_error': st.floats(0, 100) | st.builds(lambda v: v * u.pix, st.floats(0, 100)),
        'album': st.text(string.ascii_letters + ' ', min_size=1, max_size=20).filter(str.strip),
    }))
    centre = draw(st.sampled_from(['none', 'numbers', 'quantities', 'skycoord', 'pair']))
    ra, dec = draw(st.floats(0, 360)), draw(st.floats(-90, 90))
    if centre == 'numbers':
        out.update(center_ra=ra, center_dec=dec)
    elif centre == 'quantities':
        out.update(center_ra=(ra * u.deg).to(u.hourangle), center_dec=dec * u.deg)
    elif centre == 'skycoord':
        out['center'] = SkyCoord(ra * u.deg, dec * u.deg)
    elif centre == 'pair':
        out['center'] = (ra, dec)
    if centre != 'none' and draw(st.booleans()):
        radius = draw(st.floats(1e-6, 180))
        out['radius'] = draw(st.sampled_from([radius, radius * u.deg,
                                              (radius * u.deg).to(u.arcmin)]))
    scale = draw(st.sampled_from(['none', 'ul', 'ev', 'pair', 'estimate']))
    units = draw(st.sampled_from(sorted(SCALE_UNIT_LIMITS)))
    limit = SCALE_UNIT_LIMITS[units]
    low = draw(st.floats(0, limit))
    high = draw(st.floats(low, limit))
    if scale == 'ul':
        out.update(scale_units=units, scale_lower=low, scale_upper=high)
        if draw(st.booleans()):
            out['scale_type'] = 'ul'
    elif scale == 'ev':
        out.update(scale_units=units, scale_est=draw(st.floats(1e-6, limit)))
        if draw(st.booleans()):
            out['scale_err'] = draw(st.floats(0, 100))
    elif scale == 'pair':
        unit = draw(st.sampled_from([u.arcsec / u.pix, u.deg, u.mm]))
        out['scale'] = (min(low, 300.0) * unit, min(high, 300.0) * unit)
    elif scale == 'estimate':
        out['scale'] = draw(st.floats(0.01, 300)) * draw(st.sampled_from([u.arcsec / u.pix,
                                                                          u.deg, u.arcmin]))
    return out


def check_normalized(out):
    """``out`` is what normalize_settings may return: plain values, in range, consistent."""
    assert isinstance(out, dict)
    json.dumps(out, allow_nan=False)
    for key, value in out.items():
        setting = SETTINGS[key]                       # only table names come out
        assert type(value) in (bool, int, float, str), (key, value)
        if setting.type is bool:
            assert type(value) is bool, (key, value)
        elif setting.type is str:
            assert type(value) is str and (value in setting.allowed if setting.allowed
                                           else value.strip()), (key, value)
        else:
            assert type(value) is setting.type, (key, value)
            low, high = setting.allowed
            assert math.isfinite(value) and low <= value <= high, (key, value)
    assert ('center_ra' in out) == ('center_dec' in out)
    if 'radius' in out:
        assert 'center_ra' in out and out['radius'] > 0
    scale = [k for k in ('scale_lower', 'scale_upper', 'scale_est', 'scale_err') if k in out]
    if scale:
        assert out['scale_units'] in SCALE_UNIT_LIMITS
        limit = SCALE_UNIT_LIMITS[out['scale_units']]
        if out.get('scale_type', 'ul') == 'ul':      # one bound is enough, as on nova
            assert set(scale) and set(scale) <= {'scale_lower', 'scale_upper'}
            assert out.get('scale_lower', 0) <= out.get('scale_upper', limit) <= limit
        else:
            assert set(scale) == {'scale_est', 'scale_err'}
            assert 0 < out['scale_est'] <= limit


def check_nova_args(out):
    args = to_nova_args(out)
    json.dumps(args, allow_nan=False)
    assert {'publicly_visible', 'allow_commercial_use', 'allow_modifications'} <= set(args)
    if 'center_ra' in out:
        assert args['center_ra'] != 0 and args['center_dec'] != 0
        assert args['radius'] > 0
    # nova arguments are valid settings themselves, and a fixed point.
    again = normalize_settings(args)
    assert to_nova_args(again) == args
    return args


def _normalize_or_refuse(raw):
    before = {k: v for k, v in raw.items()}
    try:
        out = normalize_settings(raw)
    except InvalidSettingError as exc:
        assert isinstance(exc, ValueError) and str(exc)
        return None
    finally:
        assert list(raw) == list(before)      # the caller's dict is left alone
    check_normalized(out)
    return out


@pytest.mark.slow
@fuzz(150)
@given(raw=any_settings())
@example(raw={'center': (10, 95)})
@example(raw={'scale': (1 * u.deg, 2 * u.arcsec / u.pix)})
@example(raw={'parity': 'sideways', 'center_ra': True})
def test_normalize_settings_returns_valid_settings_or_refuses(raw):
    out = _normalize_or_refuse(raw)
    if out is not None:
        assert normalize_settings(out) == out         # normalising again changes nothing
        check_nova_args(out)


def _one_scale_bound(raw):
    """scale_lower or scale_upper alone (not both), without scale or scale_type."""
    given = {k for k, v in raw.items() if v is not None}
    return (len(given & {'scale_lower', 'scale_upper'}) == 1
            and not given & {'scale', 'scale_type', 'scale_est', 'scale_err'})


@fuzz(60)
@given(raw=st.fixed_dictionaries(
    {'scale_units': st.sampled_from(sorted(SCALE_UNIT_LIMITS))},
    optional={'center_ra': st.floats(0, 360), 'center_dec': st.floats(-90, 90)}).flatmap(
    lambda base: st.sampled_from(['scale_lower', 'scale_upper']).flatmap(
        lambda key: st.floats(0, 300).map(lambda v: {**base, key: v}))))
@example(raw={'scale_units': 'degwidth', 'scale_lower': 0.0})
@example(raw={'scale_upper': 2 * u.deg})
def test_one_scale_bound_is_refused_or_completed(raw):
    assert _one_scale_bound(raw)
    out = _normalize_or_refuse(raw)
    if out is not None:
        assert normalize_settings(out) == out


@pytest.mark.slow
@fuzz(150)
@given(raw=any_settings(huge=True, scale_strings=True))
@example(raw={'center_ra': 10 ** 400, 'center_dec': 0})
@example(raw={'tweak_order': -10 ** 400})
@example(raw={'scale': 'ab'})
@example(raw={'scale': ('0', '')})
@example(raw={'center': SkyCoord(10 * u.deg, 20 * u.deg, frame='altaz')})
def test_normalize_settings_never_raises_another_type(raw):
    _normalize_or_refuse(raw)


@pytest.mark.slow
@fuzz(150)
@given(raw=valid_settings())
@example(raw={'center_ra': 0, 'center_dec': 0})
@example(raw={'center': (360.0, -0.0), 'radius': 180})
@example(raw={'center_ra': 0 * u.deg, 'center_dec': 0 * u.deg})
@example(raw={'scale_units': 'degwidth', 'scale_lower': 0, 'scale_upper': 360})
def test_valid_settings_are_accepted_and_round_trip(raw):
    out = normalize_settings(raw)
    check_normalized(out)
    assert normalize_settings(out) == out
    args = check_nova_args(out)
    if 'center_ra' in out:                         # a zero centre is not dropped by nova
        assert args['center_ra'] % 360 == pytest.approx(out['center_ra'] % 360, abs=1e-9)
        assert args['center_dec'] == pytest.approx(out['center_dec'], abs=1e-8)


@fuzz(100)
@given(ra=st.floats(-1e-300, 1e-300) | st.sampled_from([0, 0.0, -0.0, 360, 360.0]),
       dec=st.floats(-1e-300, 1e-300) | st.sampled_from([0, 0.0, -0.0]))
def test_to_nova_args_never_sends_a_zero_centre(ra, dec):
    try:
        out = normalize_settings({'center_ra': ra, 'center_dec': dec})
    except InvalidSettingError:
        assert ra < 0 or dec < -90      # only a negative RA can be refused here
        return
    args = to_nova_args(out)
    assert args['center_ra'] != 0 and args['center_dec'] != 0
    assert 0 < args['center_ra'] <= 360 and -90 <= args['center_dec'] <= 90


# =====================================================================================
# The server's request-json parsing, against the real server (workers=0: queued only)
# =====================================================================================
HOME_TITLE = 'Plate solving · astrometry_query'     # the web page's upload form
GENERIC_ERROR = 'the server could not process this request'


@pytest.fixture(scope='module')
def server():
    thread = ServerThread(workers=0).start()
    http = requests.Session()
    reply = http.post(thread.api_url + 'login',
                      data={'request-json': json.dumps({'apikey': 'abcdefghijklmnop'})})
    thread.session = reply.json()['session']
    thread.http = http
    yield thread
    http.close()
    thread.stop()


def check_answer(reply, *, method='POST'):
    """nova's JSON (text/plain, an object; errors as HTTP 200 with status and
    errormessage; HTTP 404 for an unknown path or id under /api/), an HTML 4xx page, or
    (GET of an unrouted path outside /api/) the home page."""
    assert reply.status_code < 500, (reply.status_code, reply.text[:300])
    ctype = reply.headers.get('content-type', '')
    if ctype.startswith('text/plain'):
        payload = json.loads(reply.text)
        assert isinstance(payload, dict), reply.text[:300]
        assert reply.status_code in (200, 404, 429), reply.status_code
        # Unknown paths and ids under /api/: HTTP 404 with nova's JSON error body.
        assert reply.status_code != 404 or payload.get('status') == 'error', payload
        if payload.get('status') == 'error':
            assert list(payload) == ['status', 'errormessage'], payload
            assert isinstance(payload['errormessage'], str) and payload['errormessage']
        return payload
    assert ctype.startswith('text/html'), (reply.status_code, ctype, reply.text[:300])
    if reply.status_code == 200:
        assert method == 'GET' and f'<title>{HOME_TITLE}</title>' in reply.text, reply.text[:300]
    else:
        assert 400 <= reply.status_code < 500, reply.status_code
    return None


def check_specific(payload):
    """A refusal says what is wrong: never the generic 'could not process' fallback
    (an unexpected exception in the server)."""
    if payload is not None and payload.get('status') == 'error':
        assert not payload['errormessage'].startswith(GENERIC_ERROR), payload['errormessage']


def check_alive(server):
    """The server still answers (a request after the fuzzed one)."""
    reply = server.http.get(server.api_url + 'jobs/0', timeout=10)
    assert reply.status_code == 404 and reply.headers['content-type'] == 'text/plain'
    assert json.loads(reply.text)['status'] == 'error'


# -- request-json strategies --------------------------------------------------------------
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-10 ** 400, 10 ** 400)
                | st.floats() | st.text(max_size=30)
                | st.sampled_from(['1', '2.5', 'abc', '', 'nan', 'inf', '-1', '1e400', '0x10',
                                   ' 3 ', 'True', 'null', 'degwidth', 'ul', 'y']))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=10)
coordinates = st.one_of(
    st.lists(st.floats(-1e4, 1e4), max_size=30),
    st.lists(st.floats() | st.integers() | st.integers(-10 ** 400, 10 ** 400), max_size=8),
    st.lists(json_values, max_size=5),
    st.lists(st.lists(st.floats(0, 100), max_size=3), max_size=4),
    json_scalars)
ARG_NAMES = sorted(SETTINGS) + ['image_width', 'image_height', 'url', 'subid', 'apikey', 'x', 'y',
                                'session', 'scale', 'center']


def _arguments():
    valid = st.one_of([st.sampled_from(list(s.allowed)) if s.type is str and s.allowed
                       else st.booleans() if s.type is bool
                       else st.integers(*s.allowed) if s.type is int and s.allowed
                       else st.floats(*s.allowed) if s.allowed else st.text(max_size=10)
                       for s in SETTINGS.values()])
    return st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=10),
                           json_values | valid, max_size=6)


@st.composite
def request_jsons(draw, session_needed=True, extra=None):
    """(raw request-json text, the dict when it is one).  Mostly an object with the
    module's session key (filled in by the test: ``"$SESSION"``), arbitrary arguments
    and odd x/y lists; sometimes any JSON, or text that is not JSON."""
    kind = draw(st.sampled_from(['object'] * 6 + ['json', 'text', 'fixed']))
    if kind == 'json':
        return json.dumps(draw(json_values))
    if kind == 'text':
        return draw(st.text(max_size=40))
    if kind == 'fixed':
        return draw(st.sampled_from(['', '{', 'null', '[]', '[1, 2]', 'NaN', '"x"', '1e400',
                                     '{"session": Infinity}', '{"session": "$SESSION"',
                                     'true', '0', '{}', '{"session": ["$SESSION"]}']))
    data = draw(_arguments())
    if session_needed and draw(st.integers(0, 9)) > 0:
        data['session'] = '$SESSION'
    if draw(st.booleans()):
        data['x'], data['y'] = draw(coordinates), draw(coordinates)
    if extra is not None:
        data.update(draw(extra))
    return json.dumps(data)


def _fill(raw, server):
    return raw.replace('$SESSION', server.session)


def _post(server, path, raw, *, multipart=False, file=None):
    url = server.api_url + path
    if multipart or file is not None:
        files = {'request-json': (None, raw)}
        if file is not None:
            files['file'] = file
        return server.http.post(url, files=files, timeout=30)
    return server.http.post(url, data={'request-json': raw}, timeout=30)


def _s(obj):
    return json.dumps(obj)


# Known answers that were HTML 500s (nova's crashes): each must be nova's JSON now.
FORMER_500S = [_s([1, 2]), _s({'session': '$SESSION', 'scale_lower': 'abc'}),
               _s({'session': '$SESSION', 'scale_lower': None}),
               _s({'session': '$SESSION', 'parity': 'x'}),
               _s({'session': '$SESSION', 'center_ra': [1, 2]}),
               _s({'session': '$SESSION', 'x': [1, 2], 'y': [1, 2], 'image_width': 'wide'}),
               _s({'session': '$SESSION', 'x': [10 ** 400], 'y': [1]}),
               _s({'session': '$SESSION', 'tweak_order': float('inf')}),
               _s({'session': '$SESSION', 'downsample_factor': '2.5'}),
               _s({'session': '$SESSION', 'url': 'http://a/' + 'b' * 200})]


def _with_examples(**fixed):
    """Pin every former HTML 500 as an explicit example."""
    def decorate(fn):
        for raw in FORMER_500S:
            fn = example(raw=raw, **fixed)(fn)
        return fn
    return decorate


@pytest.mark.slow
@fuzz(120)
@given(raw=request_jsons(session_needed=False,
                         extra=st.fixed_dictionaries({}, optional={'apikey': json_values})))
@example(raw=_s({'apikey': {}}))
@example(raw=_s({'apikey': 'x\x00y'}))
@example(raw='[1, 2]')
def test_login_answers_any_request_json(server, raw):
    payload = check_answer(_post(server, 'login', raw))
    check_specific(payload)
    check_alive(server)


@pytest.mark.slow
@fuzz(150)
@given(raw=request_jsons(), multipart=st.booleans())
@_with_examples(multipart=False)
@_with_examples(multipart=True)
def test_upload_without_file_answers_any_request_json(server, raw, multipart):
    payload = check_answer(_post(server, 'upload', _fill(raw, server), multipart=multipart))
    check_specific(payload)
    check_alive(server)


files = st.tuples(st.text(max_size=30), st.binary(max_size=300)) | st.tuples(
    st.sampled_from(['a.fits', 'x.png', '../../etc/passwd', 'C:\\dir\\n.fits', '', 'a\r\nb"c']),
    st.sampled_from([b'', b'SIMPLE  =' + b' ' * 100, b'\x1f\x8b\x00', b'\x89PNG\r\n\x1a\n']))


@pytest.mark.slow
@fuzz(100)
@given(raw=request_jsons(), file=files)
@_with_examples(file=('a.fits', b'SIMPLE  = T'))
def test_upload_with_file_answers_any_request_json(server, raw, file):
    payload = check_answer(_post(server, 'upload', _fill(raw, server), file=file))
    check_specific(payload)
    check_alive(server)


urls = (json_values | st.text(max_size=40)
        | st.builds(lambda s: 'http://example.com/' + s, st.text(max_size=250))
        | st.sampled_from(['http://', 'ftp://x/a.fits', 'http://127.0.0.1/a.fits',
                           'http://exa mple.com/a', 'http://example.com/\x00', 'javascript:x',
                           'http://[::1]/a.fits', 'http://example.com:abc/a.fits']))


@pytest.mark.slow
@fuzz(120)
@given(raw=request_jsons(extra=st.fixed_dictionaries({'url': urls})))
@_with_examples()
def test_url_upload_answers_any_request_json(server, raw):
    payload = check_answer(_post(server, 'url_upload', _fill(raw, server)))
    check_specific(payload)
    check_alive(server)


@pytest.mark.slow
@fuzz(80)
@given(raw=request_jsons(), multipart=st.booleans())
@example(raw='[1, 2]', multipart=False)
@example(raw=_s({'session': ['$SESSION']}), multipart=True)
def test_myjobs_answers_any_request_json(server, raw, multipart):
    payload = check_answer(_post(server, 'myjobs', _fill(raw, server), multipart=multipart))
    check_specific(payload)
    if payload is not None and payload.get('status') == 'success':
        assert all(type(j) is int for j in payload['jobs'])
    check_alive(server)


subids = json_values | st.integers(-10, 50) | st.sampled_from(['1', '1.5', ' 2 ', '-1'])


def _submission_images(server, raw):
    payload = check_answer(_post(server, 'submission_images', _fill(raw, server)))
    check_alive(server)
    return payload


@pytest.mark.slow
@fuzz(100)
@given(raw=request_jsons(extra=st.fixed_dictionaries({'subid': subids})))
@example(raw=_s({'session': '$SESSION', 'subid': 'abc'}))
@example(raw=_s({'session': '$SESSION', 'subid': 10 ** 30}))
@example(raw=_s({'session': '$SESSION', 'subid': float('inf')}))
def test_submission_images_answers_any_request_json(server, raw):
    _submission_images(server, raw)


@pytest.mark.slow
@fuzz(100)
@given(raw=request_jsons(extra=st.fixed_dictionaries({'subid': subids})))
@example(raw=_s({'session': '$SESSION', 'subid': 'abc'}))
@example(raw=_s({'session': '$SESSION', 'subid': 10 ** 30}))
@example(raw=_s({'session': '$SESSION', 'subid': float('nan')}))
def test_submission_images_refusals_are_specific(server, raw):
    check_specific(_submission_images(server, raw))


# -- GET /api/jobs/<id>..., /api/submissions/<id> ---------------------------------------------
ids = st.one_of(st.integers(-10 ** 25, 10 ** 25).map(str),
                st.from_regex(r'[0-9-]{1,25}', fullmatch=True),
                st.text(alphabet='0123456789-+abc%./ _', min_size=0, max_size=12),
                st.sampled_from(['1', '12-3', '-', '0', '007', '99999999999999999999',
                                 '9223372036854775808', '1e3', ' 1']))
JOB_SUFFIXES = ['', '/', '/info', '/calibration', '/tags', '/machine_tags', '/objects_in_field',
                '/annotations', '/info/', '/unknown']
queries = st.one_of(st.just(''), st.builds(lambda v: '?nbright=' + quote(v, safe=''),
                                           st.text(max_size=8) | st.sampled_from(
                                               ['abc', '-1', '3', '1.5', '', '10000000000'])))


def _get(server, path):
    reply = server.http.get(server.api_url + path, timeout=30)
    payload = check_answer(reply, method='GET')
    check_alive(server)
    return reply, payload


@pytest.mark.slow
@fuzz(150)
@given(job=ids, suffix=st.sampled_from(JOB_SUFFIXES), query=queries)
@example(job='12-3', suffix='', query='')
@example(job='99999999999999999999', suffix='/info', query='')
@example(job='1', suffix='/annotations', query='?nbright=abc')
def test_job_paths_answer_any_id(server, job, suffix, query):
    _get(server, f'jobs/{quote(job, safe="")}{suffix}{query}')


@pytest.mark.slow
@fuzz(100)
@given(sub=ids, suffix=st.sampled_from(['', '/']))
@example(sub='12-3', suffix='')
@example(sub='99999999999999999999', suffix='/')
def test_submission_paths_answer_any_id(server, sub, suffix):
    _get(server, f'submissions/{quote(sub, safe="")}{suffix}')


@pytest.mark.slow
@fuzz(100)
@given(job=ids, suffix=st.sampled_from(JOB_SUFFIXES + ['/annotations']), query=queries)
@example(job='12-3', suffix='', query='')
@example(job='99999999999999999999', suffix='/info', query='')
@example(job='1', suffix='/annotations', query='?nbright=abc')
def test_job_paths_unknown_ids_are_404(server, job, suffix, query):
    reply, payload = _get(server, f'jobs/{quote(job, safe="")}{suffix}{query}')
    check_specific(payload)


@pytest.mark.slow
@fuzz(60)
@given(sub=ids)
@example(sub='12-3')
@example(sub='99999999999999999999')
def test_submission_paths_unknown_ids_are_404(server, sub):
    reply, payload = _get(server, f'submissions/{quote(sub, safe="")}')
    check_specific(payload)


def test_server_still_works_after_fuzzing(server):
    """Runs last in this module: a login and a valid upload still succeed."""
    reply = server.http.post(server.api_url + 'login',
                             data={'request-json': _s({'apikey': 'qrstuvwxyzabcdef'})})
    session = check_answer(reply)['session']
    reply = _post(server, 'upload', _s({'session': session, 'x': [1.0, 2.0, 3.0, 4.0],
                                        'y': [4.0, 3.0, 2.0, 1.0]}))
    payload = check_answer(reply)
    assert payload['status'] == 'success' and type(payload['subid']) is int


def test_calibration_of_a_plain_tan_header_equals_astropys():
    """calibration_from_wcs computes a solver's TAN by hand (a WCS object costs
    milliseconds a frame): the same numbers as astropy's WCS, near the pole,
    across RA 0, flipped, in CD or PC + CDELT form."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from astrometry_query import results
    rng = np.random.default_rng(4)
    for i in range(200):
        ra0, dec0 = rng.uniform(0, 360), rng.uniform(-89.9, 89.9)
        if i % 10 == 0:
            dec0 = 89.99 * rng.choice([-1, 1])
        scale = 10 ** rng.uniform(-4, -1)
        turn = rng.uniform(0, 2 * np.pi)
        flip = rng.choice([-1, 1])
        cd = scale * np.array([[-np.cos(turn), flip * np.sin(turn)],
                               [np.sin(turn), flip * np.cos(turn)]])
        header = fits.Header({'CTYPE1': 'RA---TAN-SIP', 'CTYPE2': 'DEC--TAN-SIP',
                              'CRVAL1': ra0, 'CRVAL2': dec0, 'CRPIX1': rng.uniform(-500, 1500),
                              'CRPIX2': rng.uniform(-500, 1500), 'IMAGEW': 1000, 'IMAGEH': 800})
        if i % 2:
            for (a, b), value in np.ndenumerate(cd):
                header[f'CD{a + 1}_{b + 1}'] = value
        else:
            header['CDELT1'], header['CDELT2'] = scale, scale * 1.01
            for (a, b), value in np.ndenumerate(cd / scale):
                header[f'PC{a + 1}_{b + 1}'] = value
        fast = results.calibration_from_wcs(header)
        assert results._plain_tan(header) is not None
        wcs = WCS(fits.Header([c for c in header.cards if not c.keyword.startswith('IMAGE')]))
        wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
        ra, dec = wcs.wcs_pix2world([[500.5, 400.5]], 1)[0]
        assert fast['ra'] == pytest.approx(ra % 360.0, abs=1e-9) or \
            abs(fast['ra'] - ra % 360.0) > 359.9999
        assert fast['dec'] == pytest.approx(dec, abs=1e-9)
    # anything else goes through astropy's WCS
    header['LONPOLE'] = 170.0
    assert results._plain_tan(header) is None
    assert results.calibration_from_wcs(header)['dec'] == pytest.approx(
        WCS(header).wcs_pix2world([[500.5, 400.5]], 1)[0][1], abs=1e-9)
