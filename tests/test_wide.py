"""Wide-angle lenses: 30-45 deg fields whose lens moves the corners' stars by
40-60 px.  The refit matches the stars from the centre outward, chooses the
SIP order by stars held out of the fit (up to 7), says which order it used,
and uses the user's ``tweak_order`` as given."""
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query.datasets import (index_stars, jitter_catalog, lens_distortion, make_wcs,
                                       render_field, synthetic_catalog, wcs_rms_error)
from astrometry_query.local import refine
from astrometry_query.local.refine import MAX_ORDER, refine_wcs


def corner_rms(true_wcs, header, shape, n=40, beyond=0.8):
    """RMS error (px) over the grid points farther than ``beyond`` of the
    half-diagonal from the centre: the corners."""
    from astrometry_query.datasets import _as_wcs
    ny, nx = shape
    gx, gy = (g.ravel() for g in np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n)))
    far = np.hypot(gx - (nx - 1) / 2, gy - (ny - 1) / 2) > beyond * math.hypot(nx - 1, ny - 1) / 2
    solved = _as_wcs(header)
    tx, ty = true_wcs.all_world2pix(*solved.all_pix2world(gx[far], gy[far], 0), 0)
    return float(np.sqrt(np.mean((tx - gx[far]) ** 2 + (ty - gy[far]) ** 2)))


def test_lens_distortion_is_the_camera_model():
    """The SIP series of the lens puts the corner stars where the lens does."""
    shape = (600, 900)
    sip = lens_distortion(shape, 40.0, k2_share=-0.5)
    centre = SkyCoord(30, 40, unit='deg')
    lens = make_wcs(centre, pixel_scale=180 * u.arcsec / u.pix, shape=shape, sip=sip)
    flat = make_wcs(centre, pixel_scale=180 * u.arcsec / u.pix, shape=shape)
    x, y = np.array([0.0, 899.0, 449.5]), np.array([0.0, 599.0, 299.5])
    ix, iy = flat.wcs_world2pix(*lens.all_pix2world(x, y, 0), 0)   # where no lens would put them
    np.testing.assert_allclose(np.hypot(ix - x, iy - y), [40.0, 40.0, 0.0], atol=0.01)
    # Brown-Conrady from the distortion-free position: seen = ideal * (1 - k1 r**2 - k2 r**4)
    far = math.hypot(449.5, 299.5) + 40.0
    k1, k2 = 1.5 * 40.0 / far ** 3, -0.5 * 40.0 / far ** 5
    q = np.hypot(ix - 449.5, iy - 299.5)
    np.testing.assert_allclose(np.hypot(x - 449.5, y - 299.5), q * (1 - k1 * q ** 2 - k2 * q ** 4),
                               atol=1e-3)


def _poly_matches(order, n=600, noise=1e-5, seed=0):
    """Matches whose sky positions are a polynomial of ``order`` of the pixels."""
    rng = np.random.default_rng(seed)
    u_, v_ = rng.uniform(-500, 500, (2, n))
    terms = refine._terms(order)
    coeff = rng.normal(0, 1, (len(terms), 2)) * 0.02
    coeff[terms.index((1, 0)), 0] = coeff[terms.index((0, 1)), 1] = 1.0
    sky = refine._design(u_ / 500, v_ / 500, terms) @ coeff + rng.normal(0, noise, (n, 2))
    return u_, v_, sky[:, 0], sky[:, 1]


def test_order_is_chosen_by_held_out_stars():
    orders = range(1, MAX_ORDER + 1)
    for truth in (1, 3, 7):
        u_, v_, xi, eta = _poly_matches(truth)
        assert refine._choose_order(u_, v_, xi, eta, 500.0, orders)[1] == truth
    # 5 % of false matches: the order is still the data's, not the false matches'
    u_, v_, xi, eta = _poly_matches(7, seed=1)
    wrong = np.arange(0, len(u_), 20)
    xi[wrong] += np.random.default_rng(2).normal(0, 0.01, len(wrong))
    assert refine._choose_order(u_, v_, xi, eta, 500.0, orders)[1] == 7
    # too few stars for every term of order 7: a lower order
    u_, v_, xi, eta = _poly_matches(7, n=120)
    assert refine._choose_order(u_, v_, xi, eta, 500.0, orders)[1] < 7


def test_a_tail_of_poor_centroids_does_not_buy_a_higher_order():
    """Plain TAN fields (order 1) where a tenth of the stars are 5x noisier
    (blends, faint stars): every order is judged on the same stars and must
    beat the lowest by more than the comparison's noise.  Judging each order
    on the stars its own fit kept chose order 2 or 3 in 9 of these 60."""
    chosen = []
    for seed in range(60):
        u_, v_, xi, eta = _poly_matches(1, n=120, noise=1e-4, seed=seed)
        rng = np.random.default_rng(100 + seed)
        poor = rng.choice(120, 12, replace=False)
        xi[poor] += rng.normal(0, 5e-4, 12)
        eta[poor] += rng.normal(0, 5e-4, 12)
        chosen.append(refine._choose_order(u_, v_, xi, eta, 500.0, range(1, MAX_ORDER + 1))[1])
    assert chosen == [1] * 60


@pytest.fixture(scope='module')
def lens_matches():
    """A 44 x 33 deg field through a lens moving the corners 60 px, its
    1200 brightest stars measured to 0.05 px, and the engine's kind of
    solution: a plain TAN, its scale 2 % off."""
    shape, centre = (750, 1000), SkyCoord(120, -30, unit='deg')
    truth = make_wcs(centre, pixel_scale=160 * u.arcsec / u.pix, shape=shape,
                     rotation=30 * u.deg, sip=lens_distortion(shape, 60.0))
    engine = make_wcs(centre, pixel_scale=163 * u.arcsec / u.pix, shape=shape,
                      rotation=30 * u.deg)
    header = fits.Header({'CTYPE1': 'RA---TAN', 'CTYPE2': 'DEC--TAN',
                          'CRPIX1': engine.wcs.crpix[0], 'CRPIX2': engine.wcs.crpix[1],
                          'CRVAL1': engine.wcs.crval[0], 'CRVAL2': engine.wcs.crval[1]})
    for i in range(2):
        for j in range(2):
            header[f'CD{i + 1}_{j + 1}'] = engine.wcs.cd[i, j]
    cat = synthetic_catalog(centre, 30 * u.deg, 20000, mag_range=(2, 9), seed=1)
    ra, dec, mag = (np.asarray(cat[k], float) for k in ('ra', 'dec', 'mag'))
    x, y = truth.all_world2pix(ra, dec, 0)
    seen = np.nonzero((x > 0) & (x < shape[1] - 1) & (y > 0) & (y < shape[0] - 1))[0][:1200]
    rng = np.random.default_rng(2)
    sx, sy = (c[seen] + 1 + rng.normal(0, 0.05, len(seen)) for c in (x, y))
    return truth, header, shape, sx, sy, ra, dec, mag


@pytest.mark.slow
def test_wide_lens_refit_over_the_whole_field(lens_matches):
    truth, header, shape, sx, sy, ra, dec, mag = lens_matches
    assert wcs_rms_error(truth, header, shape) > 10       # the engine's kind of solution
    result = refine_wcs(header, sx, sy, shape[1], shape[0], ra, dec, ref_mag=mag)
    assert result is not None
    assert wcs_rms_error(truth, result.header, shape) < 0.3
    assert corner_rms(truth, result.header, shape) < 0.3
    # the order is the data's, and said
    assert result.order >= 5 and result.order_from == 'data'
    assert result.header['AN_ORDER'] == result.header['A_ORDER'] == result.order
    assert result.to_dict()['order'] == result.order
    assert 'held-out' in result.header.comments['AN_ORDER']


@pytest.mark.slow
@pytest.mark.parametrize('order', [3, 5])
def test_tweak_order_is_used_as_given(lens_matches, order):
    truth, header, shape, sx, sy, ra, dec, mag = lens_matches
    result = refine_wcs(header, sx, sy, shape[1], shape[0], ra, dec, ref_mag=mag, order=order)
    assert result is not None and result.order == order
    assert result.order_from == 'tweak_order' and result.header['AN_ORDER'] == order
    assert result.header['A_ORDER'] == order
    assert 'tweak_order' in result.header.comments['AN_ORDER']


@pytest.fixture(scope='module')
def wide_field(tmp_path_factory):
    """A 45 x 30 deg field (900 x 600 px at 180"/px) through a "moustache" lens
    moving the corners' stars 40 px, the index stars moved by 0.5" (the
    catalogue fits them no better than a real sky)."""
    centre = SkyCoord(83.8, 60.0, unit='deg')
    stars = jitter_catalog(index_stars(centre, 30 * u.deg), 0.5, np.random.default_rng(5))
    shape = (600, 900)
    field = render_field(centre, pixel_scale=180 * u.arcsec / u.pix, shape=shape,
                         rotation=10 * u.deg, sip=lens_distortion(shape, 40.0, k2_share=-0.5),
                         catalog=stars, fwhm=2.5, max_stars=1500, seed=3, hot_pixels=10)
    return field, field.writeto(tmp_path_factory.mktemp('wide') / 'wide.fits', truth='extension')


@pytest.mark.slow
def test_wide_field_solves_within_a_third_of_a_pixel(local, wide_field):
    field, path = wide_field
    shape = field.data.shape
    header = local.solve_from_image(path, verbose=False, cache=False, solve_timeout=120)
    assert wcs_rms_error(field.wcs, header, shape) < 0.3
    assert corner_rms(field.wcs, header, shape) < 0.3
    assert header['AN_ORDER'] >= 5 and header['A_ORDER'] == header['AN_ORDER']


@pytest.mark.slow
def test_wide_field_tweak_order_is_honoured(local, wide_field):
    field, path = wide_field
    header = local.solve_from_image(path, verbose=False, cache=False, solve_timeout=120,
                                    tweak_order=3)
    assert header['A_ORDER'] == 3 and header['AN_ORDER'] == 3
    assert 'tweak_order' in header.comments['AN_ORDER']


def test_the_engine_solution_says_its_order():
    sip = fits.Header({'CTYPE1': 'RA---TAN-SIP', 'CTYPE2': 'DEC--TAN-SIP', 'A_ORDER': 2})
    noted = refine.note_order(sip)
    assert noted['AN_ORDER'] == 2 and 'default' in noted.comments['AN_ORDER']
    assert 'AN_ORDER' not in sip
    tan = refine.note_order(fits.Header({'CTYPE1': 'RA---TAN', 'CTYPE2': 'DEC--TAN'}), 0)
    assert tan['AN_ORDER'] == 1 and 'tweak_order' in tan.comments['AN_ORDER']
