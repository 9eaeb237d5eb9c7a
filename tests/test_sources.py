"""Source extraction, image reading, header position hints, source lists."""
import gzip

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from astrometry_query.exceptions import InvalidInputError
from astrometry_query.sources import (check_source_list, extract_sources, header_position,
                                      read_image, write_xylist)

from nova_mock import grid_stars, render_stars

STARS = [(30.3, 40.7, 50000.0), (100.6, 20.2, 30000.0), (150.1, 140.9, 20000.0),
         (60.4, 160.5, 10000.0), (170.8, 60.3, 8000.0), (20.5, 110.1, 6000.0)]


# -- header_position ------------------------------------------------------------------
def _header(ra, dec, ra_comment='', dec_comment=''):
    header = fits.Header()
    header['OBJCTRA'] = (ra, ra_comment)
    header['OBJCTDEC'] = (dec, dec_comment)
    return header


def test_header_position_sexagesimal_strings():
    ra, dec = header_position(_header('05:35:17.3', '-05:23:28'), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(83.8220833, abs=1e-6)
    assert dec == pytest.approx(-5.3911111, abs=1e-6)


def test_header_position_space_and_hms_strings():
    ra, dec = header_position(_header('05 35 17.3', '-05 23 28'), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.8220833, abs=1e-6), pytest.approx(-5.3911111, abs=1e-6))
    ra, dec = header_position(_header('5h35m17.3s', '-5d23m28s'), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.8220833, abs=1e-6), pytest.approx(-5.3911111, abs=1e-6))


def test_header_position_float_degrees():
    ra, dec = header_position(_header(83.822, -5.391), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.822), pytest.approx(-5.391))


def test_header_position_numeric_string_is_degrees():
    ra, dec = header_position(_header('83.822', '-5.391'), 'OBJCTRA', 'OBJCTDEC')
    assert (ra, dec) == (pytest.approx(83.822), pytest.approx(-5.391))


@pytest.mark.parametrize('comment', ['RA in hours', '[h] right ascension', 'RA (hours, J2000)',
                                     '[hr] pointing'])
def test_header_position_comment_says_hours(comment):
    ra, dec = header_position(_header(5.5, -5.25, comment), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(82.5)
    assert dec == pytest.approx(-5.25)


def test_header_position_sexagesimal_in_degrees_when_comment_says_so():
    ra, _ = header_position(_header('83:49:19.2', '-05:23:28', '[deg] RA'), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(83.822, abs=1e-6)


def test_header_position_wraps_ra():
    ra, _ = header_position(_header(-10.0, 0.5), 'OBJCTRA', 'OBJCTDEC')
    assert ra == pytest.approx(350.0)


def test_header_position_missing_card():
    with pytest.raises(InvalidInputError, match="ra_key: the header has no 'RA' card"):
        header_position(_header(1.0, 2.0), 'RA', 'OBJCTDEC')
    with pytest.raises(InvalidInputError, match='dec_key'):
        header_position(_header(1.0, 2.0), 'OBJCTRA', 'DEC')


def test_header_position_unreadable_and_out_of_range():
    with pytest.raises(InvalidInputError, match='OBJCTRA'):
        header_position(_header('somewhere', 2.0), 'OBJCTRA', 'OBJCTDEC')
    with pytest.raises(InvalidInputError, match='out of range'):
        header_position(_header(10.0, 95.0), 'OBJCTRA', 'OBJCTDEC')


# -- extract_sources --------------------------------------------------------------------
def test_extract_sources_positions_are_fits_1_based_and_brightest_first():
    image = render_stars((200, 200), STARS)
    table = extract_sources(image)
    assert table.colnames == ['x', 'y', 'flux']
    assert table['x'].unit == u.pix and table['y'].unit == u.pix
    expected = sorted(STARS, key=lambda s: -s[2])
    assert len(table) == len(expected)
    for (x, y, flux), row in zip(expected, table):
        assert abs(row['x'] - (x + 1)) < 0.2
        assert abs(row['y'] - (y + 1)) < 0.2
        assert row['flux'] == pytest.approx(flux, rel=0.05)
    assert np.all(np.diff(table['flux']) <= 0)


def test_extract_sources_tolerates_nan_pixels():
    image = render_stars((200, 200), STARS)
    image[5:12, 5:12] = np.nan
    image[100, 100] = np.nan
    image[:, 199] = np.inf
    table = extract_sources(read_image(image)[0])
    expected = sorted(STARS, key=lambda s: -s[2])
    assert len(table) == len(expected)
    for (x, y, _), row in zip(expected, table):
        assert abs(row['x'] - (x + 1)) < 0.2 and abs(row['y'] - (y + 1)) < 0.2


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
    assert len(table) == 1000


def test_extract_sources_threshold():
    image = render_stars((200, 200), STARS, noise=2.0)
    # a very high threshold keeps only the brightest stars
    table = extract_sources(image, detect_threshold=300)
    assert 0 < len(table) < len(STARS)
    assert abs(table['x'][0] - 31.3) < 0.2


@pytest.mark.parametrize('kwargs', [{'fwhm': 0}, {'fwhm': -1}, {'fwhm': 1000}, {'fwhm': np.nan},
                                    {'detect_threshold': 0}, {'detect_threshold': np.nan}])
def test_extract_sources_bad_parameters(kwargs):
    with pytest.raises(InvalidInputError):
        extract_sources(np.zeros((50, 50)), **kwargs)


def test_extract_sources_empty_field():
    table = extract_sources(np.random.default_rng(0).normal(100, 1, (64, 64)), detect_threshold=50)
    assert len(table) == 0 and table.colnames == ['x', 'y', 'flux']


# -- read_image --------------------------------------------------------------------------
def test_read_image_first_2d_hdu(tmp_path):
    data = render_stars((40, 50), STARS[:1])
    path = tmp_path / 'multi.fits'
    hdus = fits.HDUList([fits.PrimaryHDU(),
                         fits.BinTableHDU.from_columns([fits.Column('a', 'D', array=[1.0])]),
                         fits.ImageHDU(np.arange(10.0)),
                         fits.ImageHDU(data.astype('>f4'), name='SCI'),
                         fits.ImageHDU(np.zeros((30, 30)))])
    hdus.writeto(path)
    out, header = read_image(path)
    assert out.shape == (40, 50) and out.dtype == np.float64
    assert out.dtype.byteorder in ('=', '<') or out.dtype.isnative
    assert header['EXTNAME'] == 'SCI'
    np.testing.assert_allclose(out, data.astype('f4'), rtol=1e-6)
    out, header = read_image(str(path), hdu=4)
    assert out.shape == (30, 30)


def test_read_image_rejects_tables_and_1d(tmp_path):
    path = tmp_path / 'table.fits'
    Table({'x': [1.0, 2.0], 'y': [3.0, 4.0]}).write(path)
    with pytest.raises(InvalidInputError, match='no HDU with 2-D image data'):
        read_image(path)
    path = tmp_path / 'spectrum.fits'
    fits.PrimaryHDU(np.arange(100.0)).writeto(path)
    with pytest.raises(InvalidInputError, match='2-D'):
        read_image(path)
    with pytest.raises(InvalidInputError, match='2-D'):
        read_image(np.arange(100.0))


def test_read_image_cube_gives_first_plane():
    cube = np.stack([np.full((20, 20), 1.0), np.full((20, 20), 2.0)])
    data, _ = read_image(fits.HDUList([fits.PrimaryHDU(cube)]))
    assert data.shape == (20, 20) and np.all(data == 1.0)


def test_read_image_replaces_non_finite_with_median():
    data = np.arange(100.0).reshape(10, 10)
    data[0, 0] = np.nan
    data[1, 1] = np.inf
    out, header = read_image(data)
    assert np.isfinite(out).all()
    finite = np.arange(100.0).reshape(10, 10)[np.isfinite(data)]
    assert out[0, 0] == np.median(finite) and out[1, 1] == np.median(finite)
    assert isinstance(header, fits.Header) and len(header) == 0


@pytest.mark.parametrize('data', [np.zeros((5, 100)), np.full((20, 20), np.nan)])
def test_read_image_too_small_or_empty(data):
    with pytest.raises(InvalidInputError):
        read_image(data)


def test_read_image_hdu_objects_and_gzip(tmp_path):
    data = np.ones((16, 16))
    assert read_image(fits.PrimaryHDU(data))[0].shape == (16, 16)
    assert read_image(fits.ImageHDU(data, name='X'))[1]['EXTNAME'] == 'X'
    raw = tmp_path / 'a.fits'
    fits.PrimaryHDU(data).writeto(raw)
    gz = tmp_path / 'a.fits.gz'
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    assert read_image(gz)[0].shape == (16, 16)


def test_read_image_missing_or_not_fits(tmp_path):
    with pytest.raises(InvalidInputError, match='no such file'):
        read_image(tmp_path / 'nope.fits')
    bad = tmp_path / 'photo.jpg'
    bad.write_bytes(b'\xff\xd8\xff\xe0' + b'\x00' * 100)
    with pytest.raises(InvalidInputError, match='photo.jpg'):
        read_image(bad)


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


def test_write_xylist_round_trip(tmp_path):
    path = write_xylist(tmp_path / 'xy.fits', [1.5, 2.5], [3.5, 4.5], flux=[10, 5])
    with fits.open(path) as hdul:
        table = hdul[1].data
        assert hdul[1].columns.names == ['X', 'Y', 'FLUX']
        assert list(table['X']) == [1.5, 2.5] and list(table['FLUX']) == [10.0, 5.0]
    path = write_xylist(tmp_path / 'xy.fits', [1.0], [2.0])
    with fits.open(path) as hdul:
        assert hdul[1].columns.names == ['X', 'Y']
