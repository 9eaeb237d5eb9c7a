"""Our AstrometryNet as a drop-in for astroquery.astrometry_net.AstrometryNet.

Runs the spirit of astroquery's own tests/test_astrometry_net.py against our
class, and runs those very test functions with our instance swapped in.
"""
import inspect
import json

import numpy as np
import pytest
from astropy.io import fits

import astroquery.astrometry_net.core as aq_core
import astroquery.astrometry_net.tests.test_astrometry_net as aq_tests
from astroquery.astrometry_net import AstrometryNetClass as AqClass

from astrometry_query import AstrometryNet, AstrometryNetClass, conf
from astrometry_query.exceptions import InvalidSettingError

from nova_mock import API_KEY, FakeNova, attach


class _NoHTTP:
    """Records any request; a test that must not reach the server checks it."""

    def __init__(self):
        self.calls = []

    def __call__(self, method, url, **kwargs):
        self.calls.append((method, url))
        raise AssertionError(f'unexpected request {method} {url}')


# -- astroquery's own test functions, with our instance ------------------------------------
AQ_TESTS = sorted(name for name, fn in inspect.getmembers(aq_tests, inspect.isfunction)
                  if name.startswith('test_'))
#: astroquery's test_setting_validation_basic expects every str setting to
#: refuse 'asdiuhiuas'; our extra free-text setting ``album`` accepts it.
AQ_KNOWN_DIFFERENCES = {'test_setting_validation_basic'}


@pytest.mark.parametrize('name', AQ_TESTS)
def test_astroquerys_own_tests_pass_with_our_class(name, monkeypatch, capsys):
    monkeypatch.setattr(aq_tests, 'AstrometryNet', AstrometryNet)
    fn = getattr(aq_tests, name)
    if name in AQ_KNOWN_DIFFERENCES:
        pytest.skip('album (free text) is an extra str setting; see test_setting_validation_basic')
    params = inspect.signature(fn).parameters
    if 'scale_type' in params:
        for scale_type, keys in [('ev', ('scale_est', 'scale_err')),
                                 ('ul', ('scale_upper', 'scale_lower'))]:
            fn(scale_type, keys)
    elif 'capsys' in params:
        fn(capsys)
    else:
        fn()


def test_astroquery_test_list_is_what_we_expect():
    assert {'test_api_key_property', 'test_empty_settings_property', 'test_show_allowed_settings',
            'test_login_fails_with_no_api_key', 'test_construct_payload',
            'test_setting_validation_basic', 'test_setting_validation_with_float_values',
            'test_setting_validation_with_bool_values',
            'test_setting_validation_with_no_upper_bound', 'test_setting_validation_scale_type',
            'test_invalid_setting_in_solve_from_source_list_name_raises_error'} <= set(AQ_TESTS)


# -- the same, in our words -----------------------------------------------------------------
def test_calling_the_instance_gives_a_fresh_instance():
    anet = AstrometryNet()
    assert isinstance(AstrometryNet, AstrometryNetClass)
    assert isinstance(anet, AstrometryNetClass) and anet is not AstrometryNet
    other = AstrometryNet()
    anet.api_key = 'abcabcabcabcabca'
    assert anet.api_key == 'abcabcabcabcabca'
    with pytest.raises(RuntimeError):
        other.api_key
    with pytest.raises(RuntimeError):
        AstrometryNet.api_key


def test_api_key_property():
    anet = AstrometryNet()
    with pytest.raises(RuntimeError, match='Astrometry.net API key not set'):
        anet.api_key
    with conf.set_temp('api_key', API_KEY):
        assert anet.api_key == API_KEY


def test_login_fails_with_no_api_key():
    anet = AstrometryNet()
    anet.api_key = ''
    with pytest.raises(RuntimeError, match='Astrometry.net API key not set'):
        anet._login()


def test_empty_settings():
    anet = AstrometryNet()
    empty = anet.empty_settings
    assert empty
    assert set(empty) == set(anet._constraints)
    assert empty['tweak_order'] == 2 and empty['use_sextractor'] is False
    assert empty['allow_commercial_use'] == 'd' and empty['publicly_visible'] == 'n'
    assert all(empty[k] == v['default'] for k, v in anet._constraints.items())


def test_constraints_cover_astroquerys():
    ours = AstrometryNet._constraints
    for key, theirs in AqClass._constraints.items():
        assert key in ours, key
        assert ours[key]['type'] is theirs['type'], key
        if theirs['type'] is str:
            assert set(theirs['allowed']) <= set(ours[key]['allowed']), key
        elif key != 'publicly_visible':
            assert ours[key]['default'] == theirs['default'], key
        if theirs['type'] in (int, float) and theirs['allowed']:
            assert ours[key]['allowed'][0] == theirs['allowed'][0], key
    # the one deliberate difference: uploads are private by default
    assert ours['publicly_visible']['default'] == 'n'


def test_show_allowed_settings(capsys):
    anet = AstrometryNet()
    anet.show_allowed_settings()
    out = capsys.readouterr().out
    for key, info in anet._constraints.items():
        assert f'{key}: type ' in out
        line = next(ln for ln in out.splitlines() if ln.startswith(f'{key}: type '))
        assert f"type '{info['type'].__name__}'" in line
        assert f"default value {info['default']}" in line


def test_construct_payload():
    anet = AstrometryNet()
    settings = anet.empty_settings
    payload = anet._construct_payload(settings)
    assert list(payload) == ['request-json']
    assert payload['request-json'] == json.dumps(settings)
    assert payload == AqClass()._construct_payload(settings)


def test_setting_validation_basic():
    anet = AstrometryNet()
    for constraint, vals in anet._constraints.items():
        if vals['type'] is str and not vals['allowed']:
            continue        # album: free text
        if vals['type'] in (str, bool):
            settings = {constraint: 'asdiuhiuas'}
            with pytest.raises(ValueError) as e:
                anet._validate_settings(settings)
            if vals['type'] is str:
                assert 'asdiuhiuas' in str(e.value)
                assert 'is invalid. The valid values' in str(e.value)
            else:
                assert 'must be of type' in str(e.value) and "'bool'" in str(e.value)
        else:
            settings = {constraint: vals['allowed'][0] - 10}
            with pytest.raises(ValueError) as e:
                anet._validate_settings(settings)
            assert str(settings[constraint]) in str(e.value)
            assert 'The valid values are' in str(e.value)
        assert isinstance(e.value, InvalidSettingError)


def test_setting_validation_with_float_values():
    anet = AstrometryNet()
    with pytest.raises(ValueError) as e:
        anet._validate_settings({'center_ra': 'seven'})
    assert 'Value for center_ra must be of type ' in str(e.value)
    anet._validate_settings({'center_ra': 7})
    anet._validate_settings({'center_ra': 7.5})


def test_setting_validation_with_bool_values():
    anet = AstrometryNet()
    with pytest.raises(ValueError) as e:
        anet._validate_settings({'crpix_center': 'seven'})
    assert 'Value for crpix_center must be of type ' in str(e.value)
    anet._validate_settings({'crpix_center': True})


def test_setting_validation_with_no_upper_bound_in_astroquery():
    anet = AstrometryNet()
    anet._validate_settings({'scale_lower': 1})
    anet._validate_settings({'scale_upper': 1000})


@pytest.mark.parametrize('scale_type,required_keys', [('ev', ('scale_est', 'scale_err')),
                                                      ('ul', ('scale_upper', 'scale_lower'))])
def test_setting_validation_scale_type(scale_type, required_keys):
    anet = AstrometryNet()
    settings = {'scale_type': scale_type}
    for key, value in zip(required_keys, [1, 0.1]):
        settings[key] = value
    with pytest.raises(ValueError) as e:
        anet._validate_settings(settings)
    assert f'Scale type {scale_type} requires values for ' in str(e.value)
    settings['scale_units'] = 'arcsecperpix'
    anet._validate_settings(settings)


def test_invalid_setting_name_in_solve_from_source_list_before_anything():
    anet = AstrometryNet()
    anet.api_key = 'nonsensekey'
    anet._request = _NoHTTP()
    with pytest.raises(ValueError) as e:
        anet.solve_from_source_list([], [], [], [], im_a_bad_setting_name=5)
    assert 'im_a_bad_setting_name is not allowed' in str(e.value)
    assert anet._request.calls == []


def test_invalid_setting_name_in_solve_from_image_before_anything(tmp_path):
    anet = AstrometryNet()
    anet.api_key = 'nonsensekey'
    anet._request = _NoHTTP()
    path = tmp_path / 'img.fits'
    path.write_bytes(b'not even read')
    with pytest.raises(ValueError, match='im_a_bad_setting_name is not allowed'):
        anet.solve_from_image(path, im_a_bad_setting_name=5)
    with pytest.raises(ValueError, match='im_a_bad_setting_name is not allowed'):
        anet.solve_from_image(path, force_image_upload=True, im_a_bad_setting_name=5)
    assert anet._request.calls == []


# -- class attributes and signatures ----------------------------------------------------------
def test_url_attributes():
    anet = AstrometryNet()
    assert anet.URL == conf.server == 'https://nova.astrometry.net'
    assert anet.API_URL == 'https://nova.astrometry.net/api/'
    assert anet.TIMEOUT == float(conf.timeout)
    assert AqClass.URL == anet.URL                          # same default server as astroquery
    assert AqClass.API_URL.rstrip('/') == anet.API_URL.rstrip('/')


def test_url_is_settable_and_used():
    fake = FakeNova(script=['success'])
    anet = AstrometryNet()
    anet.URL = fake.base
    anet.api_key = fake.api_key
    assert anet.API_URL == fake.base + '/api/'
    attach(anet, fake)
    anet.submit_url('http://example.org/a.fits')
    assert [r.url for r in fake.requests] == [f'{fake.base}/api/login', f'{fake.base}/api/url_upload']
    other = AstrometryNet()
    other.API_URL = 'http://other.test/api/'
    assert other.URL == 'http://other.test' and other.server == 'http://other.test'
    assert AstrometryNet.URL == 'https://nova.astrometry.net'    # the shared instance untouched


def test_conf_server_and_timeout_are_read_at_call_time():
    anet = AstrometryNet()
    with conf.set_temp('server', 'http://elsewhere.test/'), conf.set_temp('timeout', 33.0):
        assert anet.URL == 'http://elsewhere.test/'
        assert anet.API_URL == 'http://elsewhere.test/api/'
        assert anet.TIMEOUT == 33.0


def test_timeout_attribute_is_settable():
    anet = AstrometryNet()
    anet.TIMEOUT = 300
    assert anet.TIMEOUT == 300.0


@pytest.mark.parametrize('method', ['solve_from_image', 'solve_from_source_list',
                                    'monitor_submission'])
def test_signatures_are_a_superset_of_astroquerys(method):
    theirs = inspect.signature(getattr(AqClass, method)).parameters
    ours = inspect.signature(getattr(AstrometryNetClass, method)).parameters
    for name, param in theirs.items():
        if name in ('self', 'ra_dec_units'):
            continue
        assert name in ours, name
        assert ours[name].kind == param.kind, name
    assert list(ours)[:len([p for p in theirs.values()
                            if p.kind == p.POSITIONAL_OR_KEYWORD])] == \
        [n for n, p in theirs.items() if p.kind == p.POSITIONAL_OR_KEYWORD]


def test_deprecated_ra_dec_units_is_accepted(tmp_path):
    fake = FakeNova(script=['success'])
    anet = attach(AstrometryNetClass(api_key=fake.api_key, server=fake.base), fake)
    path = tmp_path / 'img.fits'
    header = fits.Header()
    header['RA'] = '05:35:17.3'
    header['DEC'] = '-05:23:28'
    fits.PrimaryHDU(np.arange(32 * 32.0).reshape(32, 32), header).writeto(path)
    anet.submit_image(path, force_image_upload=True, ra_key='RA', dec_key='DEC',
                      ra_dec_units=('hour', 'degree'))
    assert fake.calls('upload')[0].json['center_ra'] == pytest.approx(83.822083, abs=1e-5)


def test_timeout_error_is_astroquerys():
    from astrometry_query.exceptions import SolveTimeoutError
    assert issubclass(SolveTimeoutError, aq_core.TimeoutError)
    err = SolveTimeoutError('Solve timed out without success or failure', submission_id=12)
    assert err.args == ('Solve timed out without success or failure', 12)
