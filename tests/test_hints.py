"""Header hints: pointing and pixel scale read from a FITS header
(astrometry_query.hints), and the order in which they are tried."""
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrometry_query.exceptions import InvalidInputError
from astrometry_query.hints import SolveHints, header_hints, header_position

SHAPE = (400, 600)          # (ny, nx)
M42 = (83.8220833, -5.3911111)     # 05:35:17.3 -05:23:28


def _header(**cards):
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    return header


# -- header_position (moved from test_sources.py) ---------------------------------------
def _pos_header(ra, dec, ra_comment='', dec_comment=''):
    header = fits.Header()
    header['OBJCTRA'] = (ra, ra_comment)
    header['OBJCTDEC'] = (dec, dec_comment)
    return header


def test_header_position_sexagesimal_strings():
    ra, dec = header_position(_pos_header('05:35:17.3', '-05:23:28'), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(83.8220833, abs=1e-6)
    assert dec == pytest.approx(-5.3911111, abs=1e-6)


def test_header_position_space_and_hms_strings():
    ra, dec = header_position(_pos_header('05 35 17.3', '-05 23 28'), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.8220833, abs=1e-6), pytest.approx(-5.3911111, abs=1e-6))
    ra, dec = header_position(_pos_header('5h35m17.3s', '-5d23m28s'), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.8220833, abs=1e-6), pytest.approx(-5.3911111, abs=1e-6))


def test_header_position_float_degrees():
    ra, dec = header_position(_pos_header(83.822, -5.391), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.822), pytest.approx(-5.391))


def test_header_position_numeric_string_is_degrees():
    ra, dec = header_position(_pos_header('83.822', '-5.391'), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.822), pytest.approx(-5.391))


@pytest.mark.parametrize('comment', ['RA in hours', '[h] right ascension', 'RA (hours, J2000)',
                                     '[hr] pointing'])
def test_header_position_comment_says_hours(comment):
    ra, dec = header_position(_pos_header(5.5, -5.25, comment), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(82.5)
    assert dec == pytest.approx(-5.25)


def test_header_position_sexagesimal_in_degrees_when_comment_says_so():
    ra, _ = header_position(_pos_header('83:49:19.2', '-05:23:28', '[deg] RA'),
                            'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(83.822, abs=1e-6)


def test_header_position_wraps_ra():
    ra, _ = header_position(_pos_header(-10.0, 0.5), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(350.0)


def test_header_position_missing_card():
    with pytest.raises(InvalidInputError, match="ra_key: the header has no 'RA' card"):
        header_position(_pos_header(1.0, 2.0), 'RA', 'OBJCTDEC')
    with pytest.raises(InvalidInputError, match='dec_key'):
        header_position(_pos_header(1.0, 2.0), 'OBJCTRA', 'DEC')


def test_header_position_unreadable_and_out_of_range():
    with pytest.raises(InvalidInputError, match='OBJCTRA'):
        header_position(_pos_header('somewhere', 2.0), 'OBJCTRA', 'OBJCTDEC')
    with pytest.raises(InvalidInputError, match='out of range'):
        header_position(_pos_header(10.0, 95.0), 'OBJCTRA', 'OBJCTDEC')


# -- header_hints: position -------------------------------------------------------------
def test_position_from_objctra_objctdec_sexagesimal_hours():
    hints = header_hints(_header(OBJCTRA='05 35 17.3', OBJCTDEC='-05 23 28'), SHAPE)
    assert hints.position['center_ra'] == pytest.approx(M42[0], abs=1e-6)
    assert hints.position['center_dec'] == pytest.approx(M42[1], abs=1e-6)
    assert hints.sources == ['OBJCTRA/OBJCTDEC'] and not hints.scale
    # Without a scale the field size is unknown: a wide (but bounded) radius.
    assert 1.0 <= hints.position['radius'] <= 30.0
    assert bool(hints)


@pytest.mark.parametrize('ra, dec', [(83.822, -5.391), ('83.822', '-5.391')])
def test_position_from_ra_dec_degrees(ra, dec):
    hints = header_hints(_header(RA=ra, DEC=dec), SHAPE)
    assert hints.position['center_ra'] == pytest.approx(83.822)
    assert hints.position['center_dec'] == pytest.approx(-5.391)
    assert hints.sources == ['RA/DEC']


def test_objctra_is_preferred_to_ra():
    hints = header_hints(_header(RA=10.0, DEC=20.0, OBJCTRA='05:35:17.3',
                                 OBJCTDEC='-05:23:28'), SHAPE)
    assert hints.position['center_ra'] == pytest.approx(M42[0], abs=1e-6)
    assert hints.sources == ['OBJCTRA/OBJCTDEC']


def test_unreadable_position_cards_are_skipped_for_the_next_pair():
    hints = header_hints(_header(OBJCTRA='garbage', OBJCTDEC='x', RA=10.0, DEC=20.0), SHAPE)
    assert (hints.position['center_ra'], hints.position['center_dec']) == (10.0, 20.0)
    assert hints.sources == ['RA/DEC']


@pytest.mark.parametrize('cards', [
    {'OBJCTRA': 'garbage', 'OBJCTDEC': 'nowhere'},
    {'OBJCTRA': '05:35:17', 'OBJCTDEC': '+95:00:00'},     # declination out of range
    {'RA': 10.0},                                           # RA without Dec
    {'DEC': 10.0},
])
def test_unreadable_or_incomplete_position_is_ignored(cards):
    hints = header_hints(_header(**cards), SHAPE)
    assert hints.position == {} and hints.sources == [] and not hints


def test_position_at_zero_is_kept_non_zero():
    # nova drops a position hint holding a zero: the hint must stay usable.
    hints = header_hints(_header(RA=0.0, DEC=0.0), SHAPE)
    ra, dec = hints.position['center_ra'], hints.position['center_dec']
    assert ra and dec
    assert ra % 360.0 == pytest.approx(0.0) and dec == pytest.approx(0.0, abs=1e-6)


def _tan_wcs(ra, dec, scale_arcsec, shape=SHAPE):
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    w.wcs.cd = np.array([[-1.0, 0.0], [0.0, 1.0]]) * scale_arcsec / 3600
    return w


def test_position_and_scale_from_a_wcs_win_over_the_cards():
    w = _tan_wcs(150.0, 2.0, 2.0)
    header = w.to_header()
    header['PIXSCALE'] = 9.0
    header['OBJCTRA'], header['OBJCTDEC'] = '01:00:00', '+10:00:00'
    hints = header_hints(header, SHAPE, w)
    assert hints.position['center_ra'] == pytest.approx(150.0, abs=1e-6)
    assert hints.position['center_dec'] == pytest.approx(2.0, abs=1e-6)
    assert hints.scale == {'scale_units': 'arcsecperpix', 'scale_lower': pytest.approx(1.8),
                           'scale_upper': pytest.approx(2.2)}
    assert hints.sources == ['WCS']
    # The search radius covers the field with slack (at least one degree).
    field_radius = 2.2 * math.hypot(600, 400) / 2 / 3600
    assert hints.position['radius'] >= max(1.0, field_radius)


def test_a_wcs_gives_the_position_at_the_image_centre():
    w = _tan_wcs(150.0, 2.0, 2.0)
    w.wcs.crpix = [1, 1]            # reference pixel in a corner
    hints = header_hints(w.to_header(), SHAPE, w)
    centre = w.all_pix2world([[299.5, 199.5]], 0)[0]
    assert hints.position['center_ra'] == pytest.approx(centre[0], abs=1e-9)
    assert hints.position['center_dec'] == pytest.approx(centre[1], abs=1e-9)


def test_the_radius_shrinks_with_a_known_scale():
    wide = header_hints(_header(OBJCTRA='05:35:17', OBJCTDEC='-05:23:28'), SHAPE)
    narrow = header_hints(_header(OBJCTRA='05:35:17', OBJCTDEC='-05:23:28', SECPIX=1.0), SHAPE)
    assert narrow.position['radius'] < wide.position['radius']
    assert narrow.position['radius'] >= 1.0


# -- header_hints: scale ------------------------------------------------------------------
@pytest.mark.parametrize('key', ['SECPIX', 'PIXSCALE', 'SCALE'])
def test_scale_cards(key):
    hints = header_hints(_header(**{key: 2.0}), SHAPE)
    assert hints.scale == {'scale_units': 'arcsecperpix', 'scale_lower': pytest.approx(1.8),
                           'scale_upper': pytest.approx(2.2)}
    assert hints.sources == [key] and hints.position == {}


def test_scale_card_as_a_string():
    hints = header_hints(_header(PIXSCALE=' 1.5 '), SHAPE)
    assert hints.scale['scale_lower'] < 1.5 < hints.scale['scale_upper']


def test_scale_from_focal_length_and_pixel_size():
    hints = header_hints(_header(FOCALLEN=500.0, XPIXSZ=3.76), SHAPE)
    scale = 206.264806 * 3.76 / 500.0           # 1.551 arcsec/pixel
    assert hints.scale['scale_units'] == 'arcsecperpix'
    assert hints.scale['scale_lower'] < scale < hints.scale['scale_upper']
    assert hints.scale['scale_lower'] == pytest.approx(0.85 * scale)
    assert hints.scale['scale_upper'] == pytest.approx(1.15 * scale)
    assert hints.sources == ['FOCALLEN/XPIXSZ']


def test_binning_widens_the_focal_length_range():
    plain = header_hints(_header(FOCALLEN=500.0, XPIXSZ=3.76), SHAPE).scale
    binned = header_hints(_header(FOCALLEN=500.0, XPIXSZ=3.76, XBINNING=2), SHAPE).scale
    scale = 206.264806 * 3.76 / 500.0
    # Writers differ on whether XPIXSZ includes the binning: both are covered.
    assert binned['scale_lower'] == pytest.approx(plain['scale_lower'])
    assert binned['scale_lower'] < scale and binned['scale_upper'] > 2 * scale
    assert binned['scale_upper'] == pytest.approx(2 * plain['scale_upper'])


def test_a_scale_card_wins_over_the_optics():
    hints = header_hints(_header(FOCALLEN=500.0, XPIXSZ=3.76, SECPIX=9.0), SHAPE)
    assert hints.scale['scale_lower'] == pytest.approx(8.1)
    assert hints.sources == ['SECPIX']


@pytest.mark.parametrize('cards', [
    {'SECPIX': 'fast'}, {'SECPIX': -1.0}, {'SECPIX': 0}, {'SECPIX': True}, {'SECPIX': 'nan'},
    {'PIXSCALE': 5000.0},                  # not an arcsec/pixel scale
    {'FOCALLEN': 'abc', 'XPIXSZ': 3.76}, {'FOCALLEN': 500.0}, {'XPIXSZ': 3.76},
    {'FOCALLEN': 0.0, 'XPIXSZ': 3.76},
])
def test_unreadable_scale_cards_are_ignored(cards):
    hints = header_hints(_header(**cards), SHAPE)
    assert hints.scale == {} and hints.sources == [] and not hints


def test_an_unreadable_scale_card_falls_through_to_the_next():
    hints = header_hints(_header(SECPIX='n/a', PIXSCALE=3.0), SHAPE)
    assert hints.scale['scale_lower'] == pytest.approx(2.7)
    assert hints.sources == ['PIXSCALE']


def test_empty_header_gives_no_hints():
    hints = header_hints(fits.Header(), SHAPE)
    assert not hints and hints.sources == []
    assert hints.to_dict() == {'position': {}, 'scale': {}, 'position_source': '',
                               'scale_source': '', 'verify': False}
    assert hints.attempts({'parity': 0}) == [{'parity': 0}]


def test_to_dict_and_from_dict_round_trip():
    import json
    hints = header_hints(_header(OBJCTRA='05:35:17', OBJCTDEC='-05:23:28', PIXSCALE=10.0), SHAPE)
    data = json.loads(json.dumps(hints.to_dict()))      # through JSON, as in a job's request
    assert SolveHints.from_dict(data) == hints
    assert SolveHints.from_dict(None) == SolveHints()


# -- SolveHints.attempts ------------------------------------------------------------------
@pytest.fixture
def both():
    """Hints with a position (M42) and a scale (9-11 arcsec/pixel)."""
    return header_hints(_header(OBJCTRA='05 35 17.3', OBJCTDEC='-05 23 28', PIXSCALE=10.0), SHAPE)


def test_attempts_all_hints_then_scale_only_then_none(both):
    attempts = both.attempts({'parity': 1})
    assert len(attempts) == 3
    first, second, last = attempts
    assert first == {'parity': 1, **both.position, **both.scale, 'scale_type': 'ul'}
    assert second == {'parity': 1, **both.scale, 'scale_type': 'ul'}
    assert last == {'parity': 1}


def test_attempts_with_only_a_position_or_only_a_scale():
    position = header_hints(_header(OBJCTRA='05:35:17', OBJCTDEC='-05:23:28'), SHAPE)
    assert position.attempts({}) == [position.position, {}]
    scale = header_hints(_header(PIXSCALE=10.0), SHAPE)
    assert scale.attempts({}) == [{**scale.scale, 'scale_type': 'ul'}, {}]


def test_a_user_scale_is_never_overridden(both):
    user = {'scale_units': 'degwidth', 'scale_lower': 1.0, 'scale_upper': 2.0}
    attempts = both.attempts(user)
    assert attempts == [{**user, **both.position}, user]
    for attempt in attempts:
        assert {k: attempt[k] for k in user} == user and 'scale_type' not in attempt


def test_a_user_scale_estimate_is_never_overridden(both):
    user = {'scale_units': 'arcsecperpix', 'scale_type': 'ev', 'scale_est': 5.0, 'scale_err': 10}
    attempts = both.attempts(user)
    assert attempts == [{**user, **both.position}, user]


def test_a_user_position_is_never_overridden(both):
    user = {'center_ra': 1.0, 'center_dec': 2.0, 'radius': 3.0}
    attempts = both.attempts(user)
    assert attempts == [{**user, **both.scale, 'scale_type': 'ul'}, user]
    assert all(a['center_ra'] == 1.0 and a['radius'] == 3.0 for a in attempts)


def test_user_position_and_scale_leave_a_single_attempt(both):
    user = {'center_ra': 1.0, 'center_dec': 2.0, 'radius': 3.0, 'scale_units': 'arcsecperpix',
            'scale_lower': 1.0, 'scale_upper': 2.0}
    assert both.attempts(user) == [user]


def test_attempts_do_not_modify_the_settings(both):
    user = {'parity': 0}
    both.attempts(user)
    assert user == {'parity': 0}
