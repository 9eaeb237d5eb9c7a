"""Solve settings: validation, astropy forms, nova arguments, solve-field flags."""
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query.exceptions import AstrometryNetError, InvalidSettingError
from astrometry_query.settings import (SETTINGS, allowed_settings_text, nova_cast,
                                       normalize_settings, to_nova_args,
                                       validate_settings)

NUMERIC = [n for n, s in SETTINGS.items() if s.type in (int, float)]
INTS = [n for n, s in SETTINGS.items() if s.type is int]
FLOATS = [n for n, s in SETTINGS.items() if s.type is float]
BOOLS = [n for n, s in SETTINGS.items() if s.type is bool]
CHOICES = [n for n, s in SETTINGS.items() if s.type is str and s.allowed]

EXPECTED_BOUNDS = {
    'scale_lower': (0, 1e6), 'scale_upper': (0, 1e6), 'scale_est': (0, 1e6),
    'scale_err': (0, 100), 'center_ra': (0, 360), 'center_dec': (-90, 90),
    'radius': (0, 180), 'downsample_factor': (1, 64), 'tweak_order': (0, 9),
    'parity': (0, 2), 'positional_error': (0, 100),
}


def _raises(settings, name=None, match=None):
    with pytest.raises(InvalidSettingError, match=match) as info:
        normalize_settings(settings)
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, AstrometryNetError)
    if name is not None:
        assert err.setting == name
        text = str(err).lower()
        assert name in text or name.replace('_', ' ') in text or name == 'scale_type'
    return err


# -- the table -----------------------------------------------------------------
def test_table_has_every_nova_argument():
    assert set(SETTINGS) == {
        'allow_commercial_use', 'allow_modifications', 'publicly_visible', 'scale_units',
        'scale_type', 'scale_lower', 'scale_upper', 'scale_est', 'scale_err', 'center_ra',
        'center_dec', 'radius', 'downsample_factor', 'tweak_order', 'use_sextractor',
        'crpix_center', 'invert', 'parity', 'positional_error', 'album'}
    assert SETTINGS['allow_modifications'].allowed == ('d', 'y', 'n', 'sa')
    assert set(SETTINGS['scale_units'].allowed) == {'degwidth', 'arcminwidth', 'arcsecperpix',
                                                    'focalmm'}
    assert set(SETTINGS['scale_type'].allowed) == {'ul', 'ev'}
    for name, bounds in EXPECTED_BOUNDS.items():
        assert tuple(SETTINGS[name].allowed) == bounds, name


def test_allowed_settings_text_lists_every_setting():
    text = allowed_settings_text()
    for name, setting in SETTINGS.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(f'{name}: type '))
        assert repr(setting.type.__name__) in line
        assert setting.describe_allowed() in line
    assert "center: a SkyCoord, an (ra, dec) pair in degrees, or a string" in text


# -- types -----------------------------------------------------------------------
@pytest.mark.parametrize('name', CHOICES)
def test_choice_setting_wrong_value(name):
    err = _raises({name: 'zzz'}, name, match='is invalid. The valid values are')
    for choice in SETTINGS[name].allowed:
        assert repr(choice) in str(err)
    assert err.allowed == SETTINGS[name].describe_allowed()


@pytest.mark.parametrize('name', CHOICES + ['album'])
def test_str_setting_wrong_type(name):
    err = _raises({name: 5}, name, match="must be of type 'str'")
    assert 'int 5' in str(err)


@pytest.mark.parametrize('name', [c for c in CHOICES if c != 'scale_type'])
def test_choice_setting_each_allowed_value_passes(name):
    for choice in SETTINGS[name].allowed:
        assert validate_settings({name: choice}) == {name: choice}


@pytest.mark.parametrize('name', BOOLS)
@pytest.mark.parametrize('value', ['yes', 'false', 1, 0, 1.0])
def test_bool_setting_rejects_non_bools(name, value):
    err = _raises({name: value}, name, match=f"Value for {name} must be of type 'bool'")
    assert err.allowed == 'True or False'


@pytest.mark.parametrize('name', BOOLS)
def test_bool_setting_accepts_bool_and_numpy_bool(name):
    assert validate_settings({name: True}) == {name: True}
    out = validate_settings({name: np.bool_(False)})
    assert out == {name: False} and type(out[name]) is bool


@pytest.mark.parametrize('name', NUMERIC)
@pytest.mark.parametrize('value', [True, False, np.bool_(True)])
def test_bool_is_not_a_number(name, value):
    _raises({name: value}, name, match="must be of type '(int|float)', got bool")


@pytest.mark.parametrize('name', NUMERIC)
@pytest.mark.parametrize('value', ['abc', '7', [1], 1 + 2j])
def test_numeric_setting_wrong_type(name, value):
    _raises({name: value}, name, match='must be of type')


@pytest.mark.parametrize('name', INTS)
def test_int_setting_rejects_fractional_float(name):
    err = _raises({name: 1.5}, name, match="must be of type 'int'")
    assert '1.5' in str(err)


@pytest.mark.parametrize('name', INTS)
def test_int_setting_gives_python_int(name):
    out = validate_settings({name: np.int64(1)})
    assert out[name] == 1 and type(out[name]) is int


@pytest.mark.parametrize('name', FLOATS)
def test_float_setting_accepts_int_and_gives_float(name):
    low, high = SETTINGS[name].allowed
    value = int(math.ceil(max(low, 0))) + 1
    out = validate_settings({name: value})
    assert out[name] == float(value) and type(out[name]) is float


# -- ranges --------------------------------------------------------------------
@pytest.mark.parametrize('name', NUMERIC)
def test_below_lower_bound(name):
    low, high = SETTINGS[name].allowed
    err = _raises({name: low - 1}, name, match='is invalid. The valid values are')
    assert f'{low} <= {name} <= {high}' in str(err)


@pytest.mark.parametrize('name', NUMERIC)
def test_above_upper_bound(name):
    low, high = SETTINGS[name].allowed
    value = high + 1
    err = _raises({name: value}, name, match='is invalid. The valid values are')
    assert f'{low} <= {name} <= {high}' in str(err)
    assert err.allowed == SETTINGS[name].describe_allowed()


@pytest.mark.parametrize('name', FLOATS)
@pytest.mark.parametrize('value', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_floats(name, value):
    _raises({name: value}, name, match='is invalid')


@pytest.mark.parametrize('name,value', [('center_ra', 0), ('center_ra', 360), ('center_dec', -90),
                                        ('center_dec', 90), ('tweak_order', 0), ('tweak_order', 9),
                                        ('parity', 0), ('parity', 2), ('downsample_factor', 1),
                                        ('downsample_factor', 64), ('scale_err', 100),
                                        ('positional_error', 0)])
def test_bounds_are_inclusive(name, value):
    assert validate_settings({name: value})[name] == value


@pytest.mark.parametrize('name', ['radius', 'scale_est'])
def test_zero_radius_or_estimate_refused(name):
    _raises({name: 0}, name, match='must be > 0')


@pytest.mark.parametrize('word,code', [('pos', 0), ('positive', 0), ('NEG', 1), ('negative', 1),
                                       ('both', 2)])
def test_parity_words(word, code):
    assert validate_settings({'parity': word}) == {'parity': code}


def test_parity_unknown_word():
    _raises({'parity': 'sideways'}, 'parity', match="must be of type 'int'")


@pytest.mark.parametrize('value', ['', '   ', 'x' * 201])
def test_album_must_be_a_sensible_title(value):
    _raises({'album': value}, 'album', match='is invalid')


def test_album_accepted():
    assert validate_settings({'album': 'My album'}) == {'album': 'My album'}


# -- names -----------------------------------------------------------------------
@pytest.mark.parametrize('bad,hint', [('scale_lowr', 'scale_lower'), ('centre_ra', 'center_ra'),
                                      ('downsample', 'downsample_factor'),
                                      ('publicly_visble', 'publicly_visible'), ('centr', 'center')])
def test_unknown_name_with_did_you_mean(bad, hint):
    err = _raises({bad: 1}, bad, match=f'Setting {bad} is not allowed')
    assert f"Did you mean {hint!r}?" in str(err)
    assert 'AstrometryNet.show_allowed_settings()' in str(err)
    assert set(err.allowed) == set(SETTINGS)


def test_unknown_name_without_hint():
    err = _raises({'im_a_bad_setting_name': 5}, 'im_a_bad_setting_name')
    assert 'Did you mean' not in str(err)


def test_none_values_are_ignored():
    assert normalize_settings({'center_ra': None, 'parity': None, 'album': None}) == {}
    assert validate_settings({'parity': None}) == {}


# -- astropy forms ----------------------------------------------------------------
def test_center_skycoord_icrs():
    out = normalize_settings({'center': SkyCoord(83.82 * u.deg, -5.39 * u.deg)})
    assert out['center_ra'] == pytest.approx(83.82)
    assert out['center_dec'] == pytest.approx(-5.39)
    assert out['radius'] == 5.0           # a centre without a radius gets one


def test_center_galactic_skycoord_is_converted_to_icrs():
    gc = SkyCoord(l=0 * u.deg, b=0 * u.deg, frame='galactic')
    out = normalize_settings({'center': gc, 'radius': 2 * u.deg})
    assert out['center_ra'] == pytest.approx(266.40499, abs=1e-4)
    assert out['center_dec'] == pytest.approx(-28.93617, abs=1e-4)
    assert out['radius'] == 2.0


def test_center_ra_wraps_into_range():
    out = normalize_settings({'center': SkyCoord(-10 * u.deg, 5 * u.deg), 'radius': 1.0})
    assert out['center_ra'] == pytest.approx(350.0)


def test_center_pair():
    out = normalize_settings({'center': (10.5, -20.25), 'radius': 1})
    assert (out['center_ra'], out['center_dec'], out['radius']) == (10.5, -20.25, 1.0)


@pytest.mark.parametrize('center', ['M42', 5, SkyCoord([1, 2] * u.deg, [3, 4] * u.deg)])
def test_center_bad(center):
    _raises({'center': center}, 'center')


def test_center_and_center_ra_together_refused():
    _raises({'center': SkyCoord(1 * u.deg, 2 * u.deg), 'center_ra': 1.0, 'center_dec': 2.0},
            'center', match='not both')


def test_radius_quantity_in_arcmin():
    out = normalize_settings({'center_ra': 10, 'center_dec': 20, 'radius': 30 * u.arcmin})
    assert out['radius'] == pytest.approx(0.5)


def test_center_ra_quantity_in_hourangle():
    out = normalize_settings({'center_ra': 5.5 * u.hourangle, 'center_dec': -5 * u.deg,
                              'radius': 1})
    assert out['center_ra'] == pytest.approx(82.5)
    assert out['center_dec'] == pytest.approx(-5.0)


@pytest.mark.parametrize('name,value', [('radius', 3 * u.kg), ('center_ra', 1 * u.m),
                                        ('positional_error', 2 * u.deg),
                                        ('scale_err', 5 * u.arcsec)])
def test_quantity_with_incompatible_units(name, value):
    settings = {name: value}
    if name in ('radius', 'center_ra'):
        settings.update({'center_ra': 1.0, 'center_dec': 1.0})
        settings[name] = value
    _raises(settings, name, match='incompatible units')


def test_positional_error_in_pixels_and_scale_err_in_percent():
    out = normalize_settings({'positional_error': 2 * u.pix})
    assert out['positional_error'] == 2.0
    assert validate_settings({'scale_err': 0.2 * u.one})['scale_err'] == pytest.approx(20.0)


def test_radius_needs_a_centre():
    _raises({'radius': 1.0}, 'radius', match='needs a centre')


@pytest.mark.parametrize('given', ['center_ra', 'center_dec'])
def test_center_ra_dec_together(given):
    _raises({given: 10.0}, given, match='together')


def test_scale_pair_in_degrees():
    out = normalize_settings({'scale': (1 * u.deg, 2 * u.deg)})
    assert out == {'scale_lower': 1.0, 'scale_upper': 2.0, 'scale_units': 'degwidth',
                   'scale_type': 'ul'}


def test_scale_pair_in_arcmin_becomes_degwidth():
    out = normalize_settings({'scale': (30 * u.arcmin, 90 * u.arcmin)})
    assert out['scale_units'] == 'degwidth'
    assert out['scale_lower'] == pytest.approx(0.5)
    assert out['scale_upper'] == pytest.approx(1.5)


def test_scale_pair_in_arcmin_with_arcminwidth():
    out = normalize_settings({'scale': (30 * u.arcmin, 1.5 * u.deg), 'scale_units': 'arcminwidth'})
    assert out['scale_units'] == 'arcminwidth'
    assert out['scale_lower'] == pytest.approx(30.0)
    assert out['scale_upper'] == pytest.approx(90.0)


def test_scale_pair_in_arcsec_per_pixel():
    out = normalize_settings({'scale': (1.0 * u.arcsec / u.pix, 1.2 * u.arcsec / u.pix)})
    assert out == {'scale_lower': 1.0, 'scale_upper': pytest.approx(1.2),
                   'scale_units': 'arcsecperpix', 'scale_type': 'ul'}


def test_scale_pair_in_deg_per_pixel_is_converted_to_arcsec():
    out = normalize_settings({'scale': (1 * u.arcmin / u.pix, 2 * u.arcmin / u.pix)})
    assert out['scale_units'] == 'arcsecperpix'
    assert (out['scale_lower'], out['scale_upper']) == (pytest.approx(60.0), pytest.approx(120.0))


def test_scale_focal_length():
    out = normalize_settings({'scale': (50 * u.mm, 10 * u.cm)})
    assert out['scale_units'] == 'focalmm'
    assert (out['scale_lower'], out['scale_upper']) == (pytest.approx(50.0), pytest.approx(100.0))


def test_single_scale_quantity_is_an_estimate():
    out = normalize_settings({'scale': 1.5 * u.arcsec / u.pix})
    assert out == {'scale_est': 1.5, 'scale_err': 10.0, 'scale_units': 'arcsecperpix',
                   'scale_type': 'ev'}


def test_single_scale_quantity_keeps_given_error():
    out = normalize_settings({'scale': 2 * u.deg, 'scale_err': 25})
    assert out == {'scale_est': 2.0, 'scale_err': 25.0, 'scale_units': 'degwidth',
                   'scale_type': 'ev'}


def test_scale_lower_upper_as_quantities():
    out = normalize_settings({'scale_lower': 1 * u.arcsec / u.pix,
                              'scale_upper': 3 * u.arcsec / u.pix})
    assert out['scale_units'] == 'arcsecperpix'
    assert (out['scale_lower'], out['scale_upper']) == (1.0, 3.0)


@pytest.mark.parametrize('scale', [(1 * u.kg, 2 * u.kg), 3 * u.s, 'wide', (1 * u.deg,)])
def test_scale_incompatible_units_or_form(scale):
    err = _raises({'scale': scale})
    assert err.setting.startswith('scale')
    assert 'Quantit' in str(err) or 'angle' in str(err)


def test_scale_mixing_kinds():
    _raises({'scale': (1 * u.deg, 2 * u.arcsec / u.pix)}, 'scale', match='incompatible kinds')


def test_scale_units_contradict_quantity():
    _raises({'scale': (1 * u.arcsec / u.pix, 2 * u.arcsec / u.pix), 'scale_units': 'degwidth'},
            'scale_units', match='contradicts')


def test_scale_and_scale_lower_together():
    _raises({'scale': (1 * u.deg, 2 * u.deg), 'scale_lower': 1.0}, 'scale', match='not both')


# -- consistency of the scale settings ---------------------------------------------
def test_lower_greater_than_upper():
    _raises({'scale_lower': 2, 'scale_upper': 1, 'scale_units': 'degwidth'}, 'scale_lower',
            match='greater than')


def test_lower_greater_than_upper_in_quantities():
    _raises({'scale': (2 * u.deg, 60 * u.arcmin)}, 'scale_lower', match='greater than')


def test_ul_and_ev_mixed():
    err = _raises({'scale_lower': 1, 'scale_est': 2, 'scale_units': 'degwidth'}, 'scale_type',
                  match='not both')
    assert 'scale_lower' in str(err) and 'scale_est' in str(err)


@pytest.mark.parametrize('settings', [
    {'scale_type': 'ev', 'scale_lower': 1, 'scale_upper': 2, 'scale_units': 'degwidth'},
    {'scale_type': 'ul', 'scale_est': 1, 'scale_err': 10, 'scale_units': 'degwidth'},
    {'scale_type': 'ev', 'scale': (1 * u.deg, 2 * u.deg)},
    {'scale_type': 'ul', 'scale': 1 * u.deg},
])
def test_scale_type_contradicting_values(settings):
    _raises(settings, 'scale_type')


def test_scale_type_requires_its_values():
    err = _raises({'scale_type': 'ul'}, 'scale_type', match='Scale type ul requires values for')
    assert err.allowed == ['scale_lower', 'scale_upper', 'scale_units']
    err = _raises({'scale_type': 'ev', 'scale_est': 1, 'scale_units': 'degwidth'}, 'scale_type')
    assert err.allowed == ['scale_est', 'scale_err', 'scale_units']


def test_missing_scale_units():
    err = _raises({'scale_lower': 1, 'scale_upper': 2}, 'scale_units', match='need scale_units')
    assert set(err.allowed) == set(SETTINGS['scale_units'].allowed)
    _raises({'scale_est': 1}, 'scale_units')


def test_scale_err_alone():
    _raises({'scale_err': 10, 'scale_units': 'degwidth'}, 'scale_est', match='needs scale_est')


def test_scale_type_inferred():
    assert normalize_settings({'scale_lower': 1, 'scale_upper': 2,
                               'scale_units': 'degwidth'})['scale_type'] == 'ul'
    out = normalize_settings({'scale_est': 3, 'scale_units': 'arcminwidth'})
    assert out['scale_type'] == 'ev' and out['scale_err'] == 10.0


def test_only_one_bound_is_fine():
    out = normalize_settings({'scale_upper': 2, 'scale_units': 'degwidth'})
    assert out == {'scale_upper': 2.0, 'scale_units': 'degwidth'}     # nova's type: 'ul'
    assert normalize_settings(out) == out


@pytest.mark.parametrize('units,limit', [('degwidth', 360.0), ('arcminwidth', 21600.0),
                                         ('arcsecperpix', 36000.0)])
def test_scale_upper_bound_depends_on_units(units, limit):
    assert normalize_settings({'scale_upper': limit, 'scale_units': units})['scale_upper'] == limit
    err = _raises({'scale_upper': limit * 1.01, 'scale_units': units}, 'scale_upper',
                  match=f'at most {limit}')
    assert units in str(err)
    _raises({'scale_est': limit * 2, 'scale_units': units}, 'scale_est', match='at most')


# -- nova arguments ------------------------------------------------------------------
def test_to_nova_args_private_by_default_with_licence_flags():
    assert to_nova_args({}) == {'publicly_visible': 'n', 'allow_commercial_use': 'd',
                                'allow_modifications': 'd'}


def test_to_nova_args_keeps_explicit_choices():
    args = to_nova_args(normalize_settings({'publicly_visible': 'y', 'allow_commercial_use': 'n',
                                            'allow_modifications': 'sa', 'tweak_order': 3}))
    assert args == {'publicly_visible': 'y', 'allow_commercial_use': 'n',
                    'allow_modifications': 'sa', 'tweak_order': 3}


def test_to_nova_args_zero_centre_is_not_sent_as_zero():
    args = to_nova_args(normalize_settings({'center_ra': 0, 'center_dec': 0, 'radius': 1}))
    # nova drops a false-y coordinate together with the whole position hint
    assert args['center_ra'] and args['center_dec'] and args['radius'] == 1.0
    assert args['center_ra'] % 360.0 == 0.0
    assert abs(args['center_dec']) < 1e-6
    # and the result still validates
    assert normalize_settings(args)['center_ra'] == args['center_ra']


def test_to_nova_args_nonzero_centre_untouched():
    args = to_nova_args(normalize_settings({'center_ra': 12.5, 'center_dec': -3.25, 'radius': 2}))
    assert (args['center_ra'], args['center_dec'], args['radius']) == (12.5, -3.25, 2.0)


# -- nova_cast ------------------------------------------------------------------------
def test_nova_cast_like_nova():
    out = nova_cast({'scale_lower': '0.5', 'scale_upper': 10, 'downsample_factor': 2.7,
                     'tweak_order': '3', 'parity': 1.0, 'use_sextractor': 'false',
                     'crpix_center': 0, 'invert': 'yes', 'scale_units': 'arcsecperpix',
                     'album': 12, 'center_ra': 0})
    assert out == {'scale_lower': 0.5, 'scale_upper': 10.0, 'downsample_factor': 2,
                   'tweak_order': 3, 'parity': 1, 'use_sextractor': True, 'crpix_center': False,
                   'invert': True, 'scale_units': 'arcsecperpix', 'album': '12',
                   'center_ra': 0.0}
    assert type(out['scale_upper']) is float and type(out['downsample_factor']) is int


def test_nova_cast_drops_unknown_keys():
    assert nova_cast({'session': 'abc', 'foo': 1, 'x': [1], 'url': 'http://a'}) == {}


@pytest.mark.parametrize('raw', [{'scale_lower': None}, {'parity': None}, {'center_ra': 'abc'},
                                 {'tweak_order': '2.5'}])
def test_nova_cast_fails_where_nova_gives_500(raw):
    with pytest.raises((TypeError, ValueError)):
        nova_cast(raw)
