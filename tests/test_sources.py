"""Source extraction (sep, windowed centroids, in bands of rows) and x/y source
lists.  Image reading is tested in test_images.py, header hints in test_hints.py."""
import gzip

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from astrometry_query import sources
from astrometry_query.exceptions import InvalidInputError
from astrometry_query.images import open_image
from astrometry_query.sources import (FLAG_SATURATED, check_source_list, extract_sources,
                                      source_list_from, write_xylist)

from nova_mock import grid_stars, render_stars

STARS = [(30.3, 40.7, 50000.0), (100.6, 20.2, 30000.0), (150.1, 140.9, 20000.0),
         (60.4, 160.5, 10000.0), (170.8, 60.3, 8000.0), (20.5, 110.1, 6000.0)]
COLUMNS = ['x', 'y', 'flux', 'peak', 'flag']


def _assert_finds(table, stars, tol=0.2):
    """``table`` holds exactly ``stars`` (0-based x, y), brightest first, at FITS 1-based pixels."""
    expected = sorted(stars, key=lambda s: -s[2])
    assert len(table) == len(expected)
    for (x, y, _), row in zip(expected, table):
        assert abs(row['x'] - (x + 1)) < tol and abs(row['y'] - (y + 1)) < tol


# -- extract_sources --------------------------------------------------------------------
def test_extract_sources_positions_are_fits_1_based_and_brightest_first():
    image = render_stars((200, 200), STARS)
    table = extract_sources(image)
    assert table.colnames == COLUMNS
    assert table['x'].unit == u.pix and table['y'].unit == u.pix
    expected = sorted(STARS, key=lambda s: -s[2])
    assert len(table) == len(expected)
    for (x, y, flux), row in zip(expected, table):
        assert abs(row['x'] - (x + 1)) < 0.2
        assert abs(row['y'] - (y + 1)) < 0.2
        assert row['flux'] == pytest.approx(flux, rel=0.05)
        assert row['flag'] == 0
    assert np.all(np.diff(table['flux']) <= 0)
    # peak: background-subtracted brightest pixel (sigma 1.5 px Gaussian)
    peak = STARS[0][2] / (2 * np.pi * 1.5 ** 2)
    assert table['peak'][0] == pytest.approx(peak, rel=0.1)


def test_windowed_centroids_are_precise():
    # sub-pixel positions at 0.05 px or better on bright, clean stars
    image = render_stars((200, 200), STARS, noise=0.5)
    table = extract_sources(image)
    expected = sorted(STARS, key=lambda s: -s[2])
    err = [np.hypot(row['x'] - x - 1, row['y'] - y - 1) for (x, y, _), row in zip(expected, table)]
    assert max(err) < 0.05


def test_extract_sources_meta():
    table = extract_sources(render_stars((120, 200), STARS[:2], background=250.0, noise=3.0))
    meta = table.meta
    assert meta['width'] == 200 and meta['height'] == 120
    assert meta['background'] == pytest.approx(250.0, abs=1.0)
    assert meta['rms'] == pytest.approx(3.0, rel=0.1)
    assert meta['rejected'] == 0 and meta['binning'] == 1
    assert 0 < meta['elapsed'] < 10


@pytest.mark.parametrize('kind', ['array', 'fits', 'image'])
def test_extract_sources_tolerates_non_finite_pixels(tmp_path, kind):
    image = render_stars((200, 200), STARS)
    image[5:12, 5:12] = np.nan
    image[100, 100] = np.nan
    image[:, 199] = np.inf
    image[45, 28] = np.nan          # inside the brightest star
    if kind == 'fits':
        path = tmp_path / 'nan.fits'
        fits.PrimaryHDU(image.astype(np.float32)).writeto(path)
        source = path
    else:
        source = open_image(image) if kind == 'image' else image
    # The pixels stay NaN in the image; extraction masks them.
    assert np.isnan(open_image(source).rows(5, 12)[:, 5:12]).all()
    table = extract_sources(source)
    _assert_finds(table, STARS)
    assert np.isfinite(table['flux']).all() and np.isfinite(table['x']).all()


def test_extract_sources_of_an_all_nan_image():
    with pytest.raises(InvalidInputError, match='image: .* has no finite pixel values'):
        extract_sources(np.full((20, 20), np.nan))


def test_extract_sources_keeps_at_most_max_sources_brightest():
    stars = grid_stars(8, 20)
    image = render_stars((180, 180), stars)
    table = extract_sources(image, max_sources=10)
    assert len(table) == 10
    brightest = sorted(stars, key=lambda s: -s[2])[:10]
    for (x, y, _), row in zip(brightest, table):
        assert abs(row['x'] - (x + 1)) < 0.2 and abs(row['y'] - (y + 1)) < 0.2


def test_extract_sources_default_limit_is_1000():
    image = render_stars((620, 620), grid_stars(35, 17))
    table = extract_sources(image)
    assert len(table) == 1000 == sources.MAX_SOURCES


def test_extract_sources_threshold():
    image = render_stars((200, 200), STARS, noise=2.0)
    # a very high threshold keeps only the brightest stars
    table = extract_sources(image, detect_threshold=300)
    assert 0 < len(table) < len(STARS)
    assert abs(table['x'][0] - 31.3) < 0.2


@pytest.mark.parametrize('kwargs', [{'fwhm': 0}, {'fwhm': -1}, {'fwhm': 1000}, {'fwhm': np.nan},
                                    {'fwhm': '3'}, {'fwhm': True},
                                    {'detect_threshold': 0}, {'detect_threshold': np.nan},
                                    {'max_sources': 0}, {'max_sources': 2.5},
                                    {'downsample': 5}, {'downsample': True}])
def test_extract_sources_bad_parameters(kwargs):
    with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
        extract_sources(np.zeros((50, 50)), **kwargs)


def test_extract_sources_bad_parameters_are_checked_before_the_image():
    with pytest.raises(InvalidInputError, match='fwhm'):
        extract_sources('/no/such/file.fits', fwhm=-1)


def test_extract_sources_empty_field():
    table = extract_sources(np.random.default_rng(0).normal(100, 1, (64, 64)), detect_threshold=50)
    assert len(table) == 0 and table.colnames == COLUMNS
    assert table.meta['width'] == 64 and table.meta['rms'] > 0


def test_extract_sources_refuses_what_open_image_refuses(tmp_path):
    with pytest.raises(InvalidInputError, match='^image:'):
        extract_sources(np.zeros((5, 100)))
    with pytest.raises(InvalidInputError, match='no such file'):
        extract_sources(tmp_path / 'nope.fits')
    path = tmp_path / 'table.fits'
    Table({'x': [1.0, 2.0], 'y': [3.0, 4.0]}).write(path)
    with pytest.raises(InvalidInputError, match='no HDU with 2-D image data'):
        extract_sources(path)


def test_extract_sources_from_an_extension_and_by_hdu(tmp_path):
    first = render_stars((100, 120), STARS[:1])
    second = render_stars((100, 120), [(80.2, 70.6, 20000.0)])
    path = tmp_path / 'multi.fits'
    fits.HDUList([fits.PrimaryHDU(),
                  fits.BinTableHDU.from_columns([fits.Column('a', 'D', array=[1.0])]),
                  fits.ImageHDU(first.astype('>f4'), name='SCI'),
                  fits.ImageHDU(second.astype(np.float32), name='OTHER')]).writeto(path)
    _assert_finds(extract_sources(path), STARS[:1])
    _assert_finds(extract_sources(path, hdu='OTHER'), [(80.2, 70.6, 20000.0)])
    _assert_finds(extract_sources(str(path), hdu=3), [(80.2, 70.6, 20000.0)])


def test_extract_sources_from_gzip_and_scaled_integers(tmp_path):
    image = render_stars((150, 180), STARS[:3], background=1000.0)
    hdu = fits.PrimaryHDU(np.round(image).astype(np.uint16))
    path = tmp_path / 'u16.fits'
    hdu.writeto(path)
    assert fits.getheader(path)['BZERO'] == 32768
    gz = tmp_path / 'u16.fits.gz'
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for source in (path, gz):
        table = extract_sources(source)
        _assert_finds(table, STARS[:3])
        assert table.meta['background'] == pytest.approx(1000.0, abs=2)


def test_extract_sources_of_a_picture_row_0_is_y_1(tmp_path):
    pil = pytest.importorskip('PIL.Image')
    image = render_stars((200, 200), STARS[:3], background=20.0, noise=1.0)
    pixels = np.clip(image * 255.0 / image.max() * 4, 0, 255).astype(np.uint8)
    path = tmp_path / 'stars.png'
    pil.fromarray(pixels).save(path)
    # row 0 of the PNG is the top row, solve-field's y = 1: no flip of the pixels
    _assert_finds(extract_sources(path), STARS[:3], tol=0.3)


def test_hot_pixels_and_cosmic_rays_are_rejected():
    image = render_stars((200, 200), STARS)
    hot = [(50, 50), (120, 30), (10, 190)]
    for y, x in hot:
        image[y, x] += 20000.0
    image[80, 80:86] += 8000.0          # a 1-pixel-wide cosmic-ray track
    table = extract_sources(image)
    assert table.meta['rejected'] >= 3
    _assert_finds(table, STARS)


def test_saturated_stars_are_kept_and_flagged():
    image = np.minimum(render_stars((200, 200), STARS), 2000.0)   # the two brightest clip
    table = extract_sources(image, saturation=2000.0)
    _assert_finds(table, STARS, tol=0.3)
    flags = {round(float(r['x'])): int(r['flag']) for r in table}
    assert flags[31] & FLAG_SATURATED and flags[102] & FLAG_SATURATED
    assert sum(1 for f in flags.values() if f & FLAG_SATURATED) == 2
    # the SATURATE card of a header does the same
    header = fits.Header({'SATURATE': 2000.0})
    from_header = extract_sources(fits.PrimaryHDU(image, header=header))
    assert list(from_header['flag']) == list(table['flag'])


def test_invert_finds_dark_stars_on_a_bright_sky():
    negative = 3000.0 - render_stars((200, 200), STARS)
    assert len(extract_sources(negative, detect_threshold=10)) == 0
    _assert_finds(extract_sources(negative, invert=True), STARS)


@pytest.mark.parametrize('downsample', [2, 4])
def test_downsampled_detection_measures_at_full_resolution(downsample):
    table = extract_sources(render_stars((200, 200), STARS), downsample=downsample)
    assert table.meta['binning'] == downsample
    _assert_finds(table, STARS)


def test_bands_give_the_same_sources(monkeypatch):
    """A tall image read in several bands finds each star once, also across the seams."""
    ys = [10.2, 120.7, 250.3, 255.6, 256.4, 300.1, 511.2, 512.8, 600.3, 690.5]
    stars = [(15 + (k * 23) % 70, y, 20000.0 - 10 * y) for k, y in enumerate(ys)]
    image = render_stars((700, 100), stars)
    whole = extract_sources(image)
    calls = []
    real_rows = sources.Image.rows

    def spy(self, y0, y1):
        calls.append((y0, y1))
        return real_rows(self, y0, y1)
    monkeypatch.setattr(sources, '_BAND_PIXELS', 100)      # 256-row bands
    monkeypatch.setattr(sources.Image, 'rows', spy)
    banded = extract_sources(image)
    assert len(calls) == 3 and all(y1 - y0 < 700 for y0, y1 in calls)
    _assert_finds(banded, stars)
    np.testing.assert_allclose(banded['x'], whole['x'], atol=1e-3)
    np.testing.assert_allclose(banded['y'], whole['y'], atol=1e-3)


# -- source lists ------------------------------------------------------------------------
def test_check_source_list_accepts_quantities_and_lists():
    x, y = check_source_list([1, 2, 3, 4] * u.pix, [5, 6, 7, 8])
    assert x.dtype == float and list(x) == [1, 2, 3, 4] and list(y) == [5, 6, 7, 8]


@pytest.mark.parametrize('x,y,match', [
    ([1, 2, 3, 4], [1, 2, 3], 'same length'),
    ([1, 2, 3], [1, 2, 3], 'at least 4'),
    ([1, 2, np.nan, 4], [1, 2, 3, 4], 'finite'),
    ([1, 2, 3, 4], [1, 2, np.inf, 4], 'finite'),
    ([-1, -2, 0, -4], [1, 2, 3, 4], 'positive'),
    ([1, 2, 3, 4], [0, 0, 0, 0], 'positive'),
    ([[1, 2], [3, 4]], [[1, 2], [3, 4]], '1-D'),
    (['a', 'b', 'c', 'd'], [1, 2, 3, 4], 'numbers'),
    ([1, 2, 3, 4] * u.deg, [1, 2, 3, 4], 'numbers'),
])
def test_check_source_list_refuses(x, y, match):
    with pytest.raises(InvalidInputError, match=match):
        check_source_list(x, y)


def test_source_list_from_an_extracted_table_and_a_tuple():
    table = extract_sources(render_stars((120, 200), STARS[:2]))
    x, y, width, height = source_list_from(table)
    assert (width, height) == (200, 120) and len(x) == 2
    np.testing.assert_array_equal(np.asarray(x), np.asarray(table['x']))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(table['y']))
    named = Table({'X': [1.0, 2.0], 'Y': [3.0, 4.0]}, meta={'IMAGEW': 50, 'IMAGEH': 40})
    x, y, width, height = source_list_from(named)
    assert list(x) == [1.0, 2.0] and list(y) == [3.0, 4.0] and (width, height) == (50, 40)
    assert source_list_from(([1.0], [2.0], 10, 20)) == ([1.0], [2.0], 10, 20)
    with pytest.raises(InvalidInputError, match='x and y columns'):
        source_list_from(Table({'a': [1.0]}))
    with pytest.raises(InvalidInputError, match='source list'):
        source_list_from([1.0, 2.0])


def test_write_xylist_round_trip(tmp_path):
    path = write_xylist(tmp_path / 'xy.fits', [1.5, 2.5], [3.5, 4.5], flux=[10, 5])
    with fits.open(path) as hdul:
        table = hdul[1].data
        assert hdul[1].columns.names == ['X', 'Y', 'FLUX']
        assert list(table['X']) == [1.5, 2.5] and list(table['FLUX']) == [10.0, 5.0]
    path = write_xylist(tmp_path / 'xy.fits', [1.0], [2.0])
    with fits.open(path) as hdul:
        assert hdul[1].columns.names == ['X', 'Y']
