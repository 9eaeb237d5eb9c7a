"""Tests of astrometry_query.datasets: synthetic fields with a known WCS.

Most tests need ``query-starkd`` and the Tycho-2 index files; the solver tests
also need ``solve-field``. They are skipped when those are missing.
"""
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs.utils import proj_plane_pixel_scales

from astrometry_query import datasets
from astrometry_query.datasets import (EXAMPLE_IMAGE, index_stars, make_example_image, make_wcs,
                                       read_truth_wcs, render_field, wcs_rms_error)

M42 = SkyCoord(83.82, -5.39, unit='deg')
PLEIADES = SkyCoord(56.75, 24.12, unit='deg')
INDEX_DIR = Path('/usr/share/astrometry')
INDEX_07 = 'index-tycho2-07.littleendian.fits'

try:
    datasets._index_files(None, None)
    HAVE_INDEX = shutil.which('query-starkd') is not None
except FileNotFoundError:
    HAVE_INDEX = False
needs_index = pytest.mark.skipif(not HAVE_INDEX, reason='query-starkd or index files missing')
needs_solver = pytest.mark.skipif(shutil.which('solve-field') is None or not HAVE_INDEX,
                                  reason='solve-field (astrometry.net) not installed')


def _min_separation_arcsec(table):
    c = SkyCoord(table['ra'], table['dec'])
    sep = c[:, None].separation(c[None, :]).to_value(u.arcsec)
    return (sep + np.eye(len(c)) * 1e9).min()


def test_parse_starkd_ascii():
    text = ('Searching kdtree /x.fits at RA,Dec = (83.82,-5.39), radius 1 deg.\n'
            'Got 2 results.\n# RA, Dec, MAG_VT\n84.2897, -6.10457, 10.562\n84.4031, -4.93412, 7.123\n')
    ra, dec, mag = datasets._parse_starkd_ascii(text)
    np.testing.assert_allclose(ra, [84.2897, 84.4031])
    np.testing.assert_allclose(dec, [-6.10457, -4.93412])
    np.testing.assert_allclose(mag, [10.562, 7.123])
    ra, dec, mag = datasets._parse_starkd_ascii('# RA, Dec\n1.5, -2.5\n')
    assert ra.tolist() == [1.5] and dec.tolist() == [-2.5] and np.isnan(mag).all()
    assert len(datasets._parse_starkd_ascii('Got 0 results.\n')[0]) == 0


def test_unique_mask_keeps_first_of_each_group():
    # the same star three times (one 0.3" away), a distinct star 5" away, and a pair across RA = 0
    ra = np.array([10.0, 10.0, 10.0 + 0.3 / 3600, 10.0 + 5 / 3600, 359.99999, 0.00001, 10.0])
    dec = np.array([20.0, 20.0, 20.0, 20.0, 0.0, 0.0, 20.0])
    keep = datasets._unique_mask(ra, dec, 1.0)
    assert keep.tolist() == [True, False, False, True, True, False, False]


@needs_index
def test_index_stars_columns_units_and_order():
    t = index_stars(M42, 0.5 * u.deg)
    assert t.colnames == ['ra', 'dec', 'mag']
    assert t['ra'].unit == u.deg and t['dec'].unit == u.deg
    assert 20 < len(t) < 500
    assert np.all(np.diff(t['mag']) >= 0)                 # brightest first
    assert SkyCoord(t['ra'], t['dec']).separation(M42).max() <= 0.5 * u.deg
    # theta1 Ori C, the brightest Trapezium star (V ~ 5.1), is there
    assert SkyCoord(t['ra'], t['dec']).separation(SkyCoord(83.8186, -5.3897, unit='deg')).min() < 2 * u.arcsec


@needs_index
def test_index_stars_removes_duplicates():
    one = index_stars(M42, 1 * u.deg, index_names=[INDEX_07])
    twice = index_stars(M42, 1 * u.deg, index_names=[INDEX_07, str(INDEX_DIR / INDEX_07)])
    assert len(twice) == len(one) > 50
    merged = index_stars(M42, 1 * u.deg)                   # all 13 files overlap heavily
    raw = sum(len(datasets._query_one(shutil.which('query-starkd'), f, 83.82, -5.39, 1.0)[0])
              for f in datasets._index_files(None, None))
    assert len(one) <= len(merged) < raw
    assert _min_separation_arcsec(merged) > 1.0


def test_index_stars_without_query_starkd(monkeypatch):
    monkeypatch.setattr(datasets.shutil, 'which', lambda name: None)
    with pytest.raises(RuntimeError, match='query-starkd'):
        index_stars(M42, 1 * u.deg)


@needs_index
def test_index_stars_missing_index_file():
    with pytest.raises(FileNotFoundError):
        index_stars(M42, 1 * u.deg, index_names=['no-such-index.fits'])


@pytest.mark.parametrize('flip', [False, True])
@pytest.mark.parametrize('rotation', [0, 30, -135])
def test_make_wcs_parity_rotation_scale(flip, rotation):
    w = make_wcs(M42, pixel_scale=5 * u.arcsec / u.pix, shape=(300, 400), rotation=rotation * u.deg,
                 flip=flip)
    cd = w.wcs.cd
    assert (np.linalg.det(cd) > 0) == flip
    # "up" (+y) points `rotation` degrees East of North, as astrometry.net reports it
    assert math.degrees(math.atan2(cd[0, 1], cd[1, 1])) == pytest.approx(rotation, abs=1e-9)
    np.testing.assert_allclose(proj_plane_pixel_scales(w) * 3600, [5, 5])
    assert w.pixel_shape == (400, 300)
    np.testing.assert_allclose(w.wcs.crpix, [200.5, 150.5])          # FITS, 1-based centre
    centre = w.pixel_to_world(199.5, 149.5)                            # 0-based centre
    assert centre.separation(M42) < 1e-6 * u.arcsec
    if rotation == 0:       # North up; East left (normal parity) or right (flipped)
        x, y = w.world_to_pixel(SkyCoord(83.82, -5.38, unit='deg'))
        assert x == pytest.approx(199.5, abs=1e-6) and y > 149.5
        x, y = w.world_to_pixel(SkyCoord(83.83, -5.39, unit='deg'))
        assert (x > 199.5) == flip


def test_make_wcs_pixel_scale_units():
    a = make_wcs(M42, pixel_scale=2 * u.arcsec / u.pix, shape=(10, 10))
    b = make_wcs(M42, pixel_scale=2 * u.arcsec, shape=(10, 10))
    np.testing.assert_allclose(a.wcs.cd, b.wcs.cd)


def test_make_wcs_sip_radial():
    k1 = 3e-8
    lin = make_wcs(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(512, 512), rotation=20 * u.deg)
    w = make_wcs(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(512, 512), rotation=20 * u.deg,
                 sip={'k1': k1})
    assert w.wcs.ctype[0] == 'RA---TAN-SIP' and w.sip.a_order == 3
    assert w.sip.a[3, 0] == w.sip.a[1, 2] == w.sip.b[2, 1] == w.sip.b[0, 3] == k1
    x, y = np.array([0.0, 511.0, 100.0]), np.array([0.0, 300.0, 511.0])
    uu, vv = x - 255.5, y - 255.5
    r2 = uu**2 + vv**2
    # the SIP WCS at a pixel is the linear WCS at the radially displaced pixel
    sky = w.all_pix2world(x, y, 0)
    np.testing.assert_allclose(lin.wcs_world2pix(*sky, 0), [x + k1 * r2 * uu, y + k1 * r2 * vv], atol=1e-6)
    np.testing.assert_allclose(w.all_world2pix(*sky, 0), [x, y], atol=1e-4)
    hdr = w.to_header(relax=True)
    assert hdr['A_3_0'] == k1 and 'AP_ORDER' not in hdr
    w2 = make_wcs(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(512, 512),
                  sip={'A_2_0': 1e-6, 'B_0_2': 2e-6})
    assert w2.sip.a_order == 2 and w2.sip.a[2, 0] == 1e-6 and w2.sip.b[0, 2] == 2e-6


@pytest.mark.slow
@needs_index
def test_render_is_deterministic():
    kw = dict(pixel_scale=10 * u.arcsec / u.pix, shape=(200, 300), rotation=10 * u.deg, hot_pixels=3,
              cosmic_rays=2)
    a, b = render_field(M42, seed=7, **kw), render_field(M42, seed=7, **kw)
    c = render_field(M42, seed=8, **kw)
    assert a.data.dtype == np.float32 and a.data.shape == (200, 300)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert len(a.stars) == len(c.stars) > 5
    assert a.meta['SEED'] == 7


@pytest.mark.slow
@needs_index
def test_field_repr_says_what_it_is_not_its_pixels():
    field = render_field(M42, pixel_scale=12 * u.arcsec / u.pix, shape=(450, 600), seed=7)
    text = repr(field)
    assert text == (f'<SyntheticField 600x450 px, 12"/px at RA 83.8200 Dec -5.3900, '
                    f'{len(field.stars)} stars, seed 7>')
    assert len(field.stars) > 5 and str(field) == text
    unseeded = render_field(M42, pixel_scale=0.5 * u.arcsec / u.pix, shape=(40, 50))
    assert repr(unseeded).startswith('<SyntheticField 50x40 px, 0.5"/px at RA 83.8200 ')
    assert repr(unseeded).endswith(' stars>')


@pytest.mark.slow
@needs_index
def test_render_options():
    kw = dict(pixel_scale=10 * u.arcsec / u.pix, shape=(256, 256), noise=False, seed=1)
    clean = render_field(M42, **kw)
    hot = render_field(M42, hot_pixels=5, hot_level=1000.0, **kw)
    diff = hot.data - clean.data
    assert 1 <= np.count_nonzero(diff) <= 5 and diff.max() <= 1000.0 and diff.min() >= 0
    assert clean.data.min() == pytest.approx(100.0, abs=0.01)     # background, no noise
    sat = render_field(M42, saturation=2000.0, **kw)
    assert sat.data.max() == 2000.0
    bright = render_field(M42, max_stars=5, **kw)
    assert len(bright.stars) == 5
    assert list(bright.stars['ra']) == list(clean.stars['ra'][:5])
    limited = render_field(M42, mag_limit=9.0, **kw)
    assert len(limited.stars) < len(clean.stars) and np.all(limited.stars['mag'] <= 9.0)
    s = clean.stars
    assert np.all((s['x'] >= -0.5) & (s['x'] < 255.5) & (s['y'] >= -0.5) & (s['y'] < 255.5))
    np.testing.assert_allclose(s['flux'], 10 ** (-0.4 * (s['mag'] - 20.0)))


@needs_index
def test_render_1024():
    f = render_field(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(1024, 1024), rotation=15 * u.deg,
                     seed=3, hot_pixels=20)
    assert len(f.stars) > 200 and f.data.shape == (1024, 1024)


@needs_index
def test_stars_land_where_the_wcs_says():
    sep = pytest.importorskip('sep')
    f = render_field(M42, pixel_scale=8 * u.arcsec / u.pix, shape=(400, 500), rotation=37 * u.deg,
                     fwhm=3.0, seed=11)
    data = f.data.astype(np.float64)
    bkg = sep.Background(data)
    sub = data - bkg.back()
    s = f.stars
    x, y = np.asarray(s['x']), np.asarray(s['y'])
    # isolated, bright, away from the edges
    d = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(s)) * 1e9
    ok = (d.min(axis=1) > 12) & (x > 8) & (x < 491) & (y > 8) & (y < 391) & (np.asarray(s['flux']) > 20000)
    assert ok.sum() >= 10
    xw, yw, flag = sep.winpos(sub, x[ok], y[ok], np.full(ok.sum(), 3.0 / 2.3548))
    err = np.hypot(xw - x[ok], yw - y[ok])
    assert np.all(flag == 0)
    assert err.max() < 0.1, err
    assert abs(np.mean(xw - x[ok])) < 0.02 and abs(np.mean(yw - y[ok])) < 0.02     # no bias
    # and the catalogue positions are the WCS projection of ra, dec (0-based)
    px, py = f.wcs.all_world2pix(np.asarray(s['ra']), np.asarray(s['dec']), 0)
    np.testing.assert_allclose([px, py], [x, y], atol=1e-8)


@needs_index
def test_source_list_is_one_based_and_sorted():
    f = render_field(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(256, 256), noise=False)
    xy = f.source_list()
    assert xy.colnames == ['x', 'y', 'flux']
    assert np.all(np.diff(xy['flux']) <= 0)
    np.testing.assert_allclose(xy['x'][0], f.stars['x'][np.argmax(f.stars['flux'])] + 1)
    np.testing.assert_allclose(xy['y'][0], f.stars['y'][np.argmax(f.stars['flux'])] + 1)
    assert len(f.source_list(3)) == 3


@needs_index
@pytest.mark.parametrize('dtype', [np.float32, np.int16, np.uint16])
def test_writeto_and_header(tmp_path, dtype):
    f = render_field(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(120, 160), rotation=5 * u.deg,
                     seed=2, saturation=40000.0, sip={'k1': 1e-8})
    path = f.writeto(tmp_path / 'img.fits', dtype=dtype)
    with fits.open(path) as hdul:
        hdr, data = hdul[0].header, hdul[0].data
        assert len(hdul) == 1
        assert (data.dtype.kind, data.dtype.itemsize) == (np.dtype(dtype).kind, np.dtype(dtype).itemsize)
    assert data.shape == (120, 160)
    expected = f.data
    if dtype != np.float32:             # rounded and clipped to the integer range
        expected = np.clip(np.round(f.data), np.iinfo(dtype).min, np.iinfo(dtype).max)
    np.testing.assert_allclose(data, expected, atol=1e-3)
    assert (data.max() == 32767) == (dtype == np.int16)
    assert hdr['IMAGEW'] == 160 and hdr['IMAGEH'] == 120
    assert hdr['RA'] == '05:35:16.8' and hdr['DEC'] == '-05:23:24'
    assert hdr['OBJCTRA'] == '05 35 16.8' and hdr['OBJCTDEC'] == '-05 23 24'
    assert hdr['EXPTIME'] == 1.0 and hdr['CTYPE1'] == 'RA---TAN-SIP'
    assert wcs_rms_error(f.wcs, hdr) < 1e-6
    with pytest.raises(OSError):
        f.writeto(path)
    f.writeto(path, overwrite=True)


@needs_index
def test_writeto_truth_extension(tmp_path):
    f = render_field(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(100, 100), seed=2)
    path = f.writeto(tmp_path / 'img.fits', dtype=np.uint16, truth='extension')
    assert 'CTYPE1' not in fits.getheader(path) and 'RA' in fits.getheader(path)
    truth = read_truth_wcs(path)
    assert truth.pixel_shape == (100, 100)
    assert wcs_rms_error(f.wcs, truth) < 1e-6
    f.writeto(tmp_path / 'none.fits', truth='none')
    assert 'CTYPE1' not in fits.getheader(tmp_path / 'none.fits')
    with pytest.raises(ValueError):
        f.writeto(tmp_path / 'x.fits', truth='somewhere')


def test_wcs_rms_error_identity_and_shift():
    w = make_wcs(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(300, 400), rotation=25 * u.deg)
    assert wcs_rms_error(w, w) == pytest.approx(0.0, abs=1e-9)
    shifted = w.deepcopy()
    shifted.wcs.crpix = w.wcs.crpix + [3.0, 4.0]
    assert wcs_rms_error(w, shifted) == pytest.approx(5.0, abs=1e-6)
    assert wcs_rms_error(w, shifted, (300, 400), n=5) == pytest.approx(5.0, abs=1e-6)
    # a header-only solution (like solve-field's wcs.fits): NAXIS = 0, size in IMAGEW/IMAGEH
    hdr = shifted.to_header()
    hdr['IMAGEW'], hdr['IMAGEH'] = 400, 300
    assert wcs_rms_error(fits.Header(hdr), w) == pytest.approx(5.0, abs=1e-6)
    # a SIP distortion of known size: k1 * r**3 at the corners
    sip = make_wcs(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(300, 400), rotation=25 * u.deg,
                   sip={'k1': 1e-8})
    assert 0.05 < wcs_rms_error(w, sip) < 1e-8 * 250**3


def test_example_image_is_bundled():
    assert EXAMPLE_IMAGE.is_file()
    assert EXAMPLE_IMAGE.stat().st_size < 600 * 1024
    with fits.open(EXAMPLE_IMAGE) as hdul:
        assert hdul[0].data.shape == (450, 600) and hdul[0].data.dtype.kind == 'u'
        assert 'CTYPE1' not in hdul[0].header and 'TRUEWCS' in hdul
    truth = read_truth_wcs(EXAMPLE_IMAGE)
    assert truth.pixel_shape == (600, 450)
    assert truth.pixel_to_world(299.5, 224.5).separation(M42) < 0.1 * u.arcsec


@needs_index
def test_make_example_image_reproduces(tmp_path):
    path = make_example_image(tmp_path / 'example.fits')
    with fits.open(path) as new, fits.open(EXAMPLE_IMAGE) as old:
        np.testing.assert_array_equal(new[0].data, old[0].data)


# ---------------------------------------------------------------- real solves

def _solve(tmp_path, image, *args):
    """Run solve-field on a FITS file; returns the path of wcs.fits (or fails)."""
    cmd = ['solve-field', '--overwrite', '--no-plots', '--new-fits', 'none', '--index-xyls', 'none',
           '--match', 'none', '--rdls', 'none', '--corr', 'none', '--cpulimit', '60', '--dir', str(tmp_path),
           '--out', 'job', '--wcs', 'wcs.fits', *args, str(image)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    wcs_path = tmp_path / 'wcs.fits'
    assert wcs_path.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return wcs_path


def _scale_hint(arcsec):
    return ['--scale-units', 'arcsecperpix', '--scale-low', str(0.9 * arcsec),
            '--scale-high', str(1.1 * arcsec)]


def _render_and_solve(tmp_path, center, *args, **kwargs):
    f = render_field(center, pixel_scale=10 * u.arcsec / u.pix, shape=(512, 512), fwhm=2.5, **kwargs)
    image = f.writeto(tmp_path / 'field.fits', dtype=np.uint16, truth='none')   # no WCS to "verify"
    return f, _solve(tmp_path, image, *_scale_hint(10), *args)


@pytest.mark.slow
@needs_solver
def test_solve_normal_field(tmp_path):
    f, solved = _render_and_solve(tmp_path, M42, rotation=30 * u.deg, hot_pixels=10, seed=1)
    assert wcs_rms_error(f.wcs, solved) < 0.15
    assert np.linalg.det(datasets._as_wcs(solved).wcs.cd) < 0


@pytest.mark.slow
@needs_solver
def test_solve_flipped_field(tmp_path):
    f, solved = _render_and_solve(tmp_path, PLEIADES, rotation=-120 * u.deg, flip=True, hot_pixels=10,
                                  seed=1)
    assert wcs_rms_error(f.wcs, solved) < 0.15
    assert np.linalg.det(datasets._as_wcs(solved).wcs.cd) > 0


@pytest.mark.slow
@needs_solver
def test_solve_sip_field(tmp_path):
    f, solved = _render_and_solve(tmp_path, M42, '--tweak-order', '3', '--quad-size-max', '0.4',
                                  rotation=-50 * u.deg, sip={'k1': 3e-8}, hot_pixels=5, seed=3)
    linear = make_wcs(M42, pixel_scale=10 * u.arcsec / u.pix, shape=(512, 512), rotation=-50 * u.deg)
    assert wcs_rms_error(f.wcs, linear) > 0.4        # the distortion matters (up to 1.4 px)...
    assert wcs_rms_error(f.wcs, solved) < 0.15       # ...and the SIP solution recovers it


@pytest.mark.slow
@needs_solver
def test_solve_bundled_example(tmp_path):
    solved = _solve(tmp_path, EXAMPLE_IMAGE, *_scale_hint(9))
    assert wcs_rms_error(read_truth_wcs(EXAMPLE_IMAGE), solved) < 0.15


def test_jitter_catalog_moves_a_copy_by_the_rms_given():
    from astropy.coordinates import angular_separation

    from astropy.table import Table

    from astrometry_query.datasets import jitter_catalog
    rng = np.random.default_rng(0)
    n = 20000
    stars = Table({'ra': rng.uniform(0, 360, n) * u.deg, 'dec': rng.uniform(-80, 80, n) * u.deg,
                   'mag': rng.uniform(5, 12, n)})
    before = np.asarray(stars['ra'], float).copy()
    moved = jitter_catalog(stars, 2.0, np.random.default_rng(1), mag_jitter=0.3)
    apart = angular_separation(*(np.radians(np.asarray(t[c], float)) for t in (stars, moved)
                                 for c in ('ra', 'dec')))
    # 2" RMS in each coordinate: the distance is 2 * sqrt(2) RMS
    assert np.degrees(np.sqrt(np.mean(apart ** 2))) * 3600 == pytest.approx(2 * np.sqrt(2),
                                                                           rel=0.02)
    assert np.std(np.asarray(moved['mag']) - np.asarray(stars['mag'])) == pytest.approx(0.3,
                                                                                       rel=0.02)
    np.testing.assert_array_equal(np.asarray(stars['ra'], float), before)   # a copy is moved
    kept = jitter_catalog(stars, 2.0, np.random.default_rng(1))
    np.testing.assert_array_equal(kept['mag'], stars['mag'])
    np.testing.assert_array_equal(kept['ra'], moved['ra'])      # the same draws first
