"""Images of every kind (astrometry_query.images): FITS files read in bands,
HDUs, arrays, NDData/CCDData, pictures; refusals; pickling; digests."""
import bz2
import gzip
import pickle
import shutil
import tracemalloc
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.table import Table
from astropy.wcs import WCS

from astrometry_query.exceptions import InvalidInputError
from astrometry_query.images import MIN_SIZE, Image, file_kind, open_image

PIL = pytest.importorskip('PIL.Image')


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def _astropy_data(path, hdu=0):
    """What astropy reads (scaled, BLANK -> NaN), as float32."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with fits.open(path, memmap=False) as hdul:
            return np.array(hdul[hdu].data, dtype=np.float32)


def _tan_wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [20.5, 15.5]
    w.wcs.cd = [[-1e-3, 0.0], [0.0, 1e-3]]
    return w


# -- FITS files --------------------------------------------------------------------------
def test_plain_fits_file(tmp_path, rng):
    data = rng.normal(100, 5, (30, 40)).astype(np.float32)
    header = fits.Header({'OBJECT': 'test', 'EXPTIME': 12.5})
    path = tmp_path / 'plain.fits'
    fits.PrimaryHDU(data, header=header).writeto(path)
    img = open_image(path)
    assert isinstance(img, Image)
    assert img.shape == (30, 40) and img.size == 1200
    assert img.kind == 'fits' and img.path == path.resolve() and img.hdu == 0
    assert img.name == 'plain.fits' and not img.flips_y
    assert img.header['OBJECT'] == 'test' and img.header['EXPTIME'] == 12.5
    rows = img.rows(3, 9)
    assert rows.dtype == np.float32 and rows.dtype.isnative and rows.shape == (6, 40)
    np.testing.assert_array_equal(rows, data[3:9])
    np.testing.assert_array_equal(img.pixels(), data)
    assert img.wcs() is None
    assert open_image(str(path)).shape == (30, 40)           # str paths too
    assert open_image(img) is img                             # an Image is taken as is


def test_rows_are_new_arrays(tmp_path):
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(np.ones((20, 20), np.float32)).writeto(path)
    for img in (open_image(path), open_image(np.ones((20, 20), np.float32))):
        band = img.rows(0, 5)
        band[:] = -1.0
        assert np.all(img.rows(0, 5) == 1.0)


def test_float64_and_int32_files(tmp_path, rng):
    for dtype in (np.float64, np.int32, np.uint8):
        data = rng.integers(0, 200, (20, 24)).astype(dtype)
        path = tmp_path / f'{np.dtype(dtype).name}.fits'
        fits.PrimaryHDU(data).writeto(path)
        np.testing.assert_array_equal(open_image(path).pixels(), data.astype(np.float32))


def test_gzip_fits(tmp_path, rng):
    data = rng.normal(size=(30, 40)).astype(np.float32)
    plain = tmp_path / 'a.fits'
    fits.PrimaryHDU(data, header=fits.Header({'FILTER': 'R'})).writeto(plain)
    gz = tmp_path / 'a.fits.gz'
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert file_kind(gz) == ('fits', True) and file_kind(plain) == ('fits', False)
    img = open_image(gz)
    assert img.kind == 'fits' and img.shape == (30, 40) and img.header['FILTER'] == 'R'
    np.testing.assert_array_equal(img.rows(10, 20), data[10:20])


@pytest.mark.parametrize('dtype', [np.int16, np.uint16])
def test_scaled_integer_files(tmp_path, rng, dtype):
    """int16 with BSCALE/BZERO, and uint16 (BZERO = 32768): rows are scaled as astropy scales."""
    path = tmp_path / 'scaled.fits'
    if dtype is np.uint16:
        hdu = fits.PrimaryHDU(rng.integers(0, 65535, (40, 50)).astype(np.uint16))
    else:
        hdu = fits.PrimaryHDU(rng.normal(1000.0, 50.0, (40, 50)))
        hdu.scale('int16', bscale=0.25, bzero=1000.0)
    hdu.writeto(path)
    header = fits.getheader(path)
    assert header['BITPIX'] == 16 and 'BZERO' in header
    expected = _astropy_data(path)
    img = open_image(path)
    for y0, y1 in ((0, 1), (0, 13), (13, 29), (29, 40)):
        np.testing.assert_allclose(img.rows(y0, y1), expected[y0:y1], rtol=1e-6)
    if dtype is np.uint16:
        assert img.pixels().max() > 32767      # no wrap-around into negatives


def test_blank_pixels_become_nan(tmp_path, rng):
    data = rng.integers(-100, 100, (20, 30)).astype(np.int16)
    data[3, 4] = data[15, 29] = -32768
    hdu = fits.PrimaryHDU(data)
    hdu.header['BLANK'] = -32768
    hdu.header['BSCALE'] = 2.0
    hdu.header['BZERO'] = 10.0
    path = tmp_path / 'blank.fits'
    hdu.writeto(path)
    rows = open_image(path).pixels()
    assert np.isnan(rows[3, 4]) and np.isnan(rows[15, 29]) and np.isnan(rows).sum() == 2
    np.testing.assert_allclose(rows, _astropy_data(path), equal_nan=True)
    assert rows[0, 0] == 2.0 * data[0, 0] + 10.0


def test_cube_gives_its_first_plane(tmp_path, rng):
    cube = rng.normal(size=(3, 20, 25)).astype(np.float32)
    path = tmp_path / 'cube.fits'
    fits.PrimaryHDU(cube).writeto(path)
    img = open_image(path)
    assert img.shape == (20, 25)
    np.testing.assert_array_equal(img.pixels(), cube[0])
    hdul_img = open_image(fits.HDUList([fits.PrimaryHDU(cube)]))
    np.testing.assert_array_equal(hdul_img.pixels(), cube[0])
    np.testing.assert_array_equal(open_image(cube).pixels(), cube[0])


@pytest.fixture
def multi_extension(tmp_path, rng):
    """An empty primary, a table, a 1-D HDU, then SCI and ERR images."""
    sci = rng.normal(size=(40, 50)).astype('>f4')
    err = rng.normal(size=(30, 30)).astype(np.float32)
    path = tmp_path / 'multi.fits'
    fits.HDUList([fits.PrimaryHDU(),
                  fits.BinTableHDU.from_columns([fits.Column('a', 'D', array=[1.0])]),
                  fits.ImageHDU(np.arange(100.0), name='SPEC'),
                  fits.ImageHDU(sci, name='SCI'),
                  fits.ImageHDU(err, name='ERR')]).writeto(path)
    return path, sci, err


def test_image_in_an_extension(multi_extension):
    path, sci, _ = multi_extension
    img = open_image(path)
    assert img.hdu == 3 and img.header['EXTNAME'] == 'SCI' and img.shape == (40, 50)
    np.testing.assert_array_equal(img.pixels(), sci)
    np.testing.assert_array_equal(img.rows(10, 20), _astropy_data(path, 3)[10:20])


@pytest.mark.parametrize('hdu, expect', [(3, 'SCI'), (4, 'ERR'), ('SCI', 'SCI'), ('ERR', 'ERR'),
                                         ('err', 'ERR')])
def test_hdu_by_index_and_by_name(multi_extension, hdu, expect):
    path, sci, err = multi_extension
    img = open_image(path, hdu=hdu)
    assert img.header['EXTNAME'] == expect
    assert img.hdu == (3 if expect == 'SCI' else 4)
    np.testing.assert_array_equal(img.pixels(), sci if expect == 'SCI' else err)


@pytest.mark.parametrize('hdu, match', [(0, 'holds no 2-D image'), (1, 'holds no 2-D image'),
                                        (2, 'holds no 2-D image'), (7, 'has no HDU 7'),
                                        ('NOPE', "has no HDU 'NOPE'")])
def test_hdu_without_an_image(multi_extension, hdu, match):
    path, _, _ = multi_extension
    with pytest.raises(InvalidInputError, match=match) as err:
        open_image(path, hdu=hdu)
    assert str(err.value).startswith('hdu:')


# -- banded reads of large files -----------------------------------------------------------
@pytest.fixture(scope='module')
def big_file(tmp_path_factory):
    """A 2000x2000 uint16 FITS file (8 MB, BZERO-scaled)."""
    data = np.random.default_rng(1).integers(0, 65535, (2000, 2000), dtype=np.uint16)
    path = tmp_path_factory.mktemp('big') / 'big.fits'
    fits.PrimaryHDU(data).writeto(path)
    return path


def test_bands_of_a_large_file_match_astropy(big_file):
    img = open_image(big_file)
    assert img.shape == (2000, 2000)
    with fits.open(big_file) as hdul:       # astropy's scaled data, memory-mapped
        expected = hdul[0].data
        for y0, y1 in ((0, 10), (0, 1), (517, 733), (1000, 1256), (1990, 2000), (1999, 2000)):
            np.testing.assert_array_equal(img.rows(y0, y1), expected[y0:y1].astype(np.float32))


def test_a_band_does_not_read_the_whole_file(big_file):
    tracemalloc.start()
    try:
        img = open_image(big_file)
        _, opened = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        band = img.rows(0, 10)
        _, band_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        last = img.rows(1990, 2000)
        _, last_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        img.pixels()
        _, full_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert band.shape == (10, 2000) and last.shape == (10, 2000)
    # 10 rows are 40 kB of float32; the file is 8 MB, all of it 16 MB of float32.
    assert opened < 1_000_000
    assert band_peak < 1_000_000 and last_peak < 1_000_000
    assert full_peak > 16_000_000


def test_rows_are_clipped_to_the_image(tmp_path, rng):
    data = rng.normal(size=(100, 64)).astype(np.float32)
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(data).writeto(path)
    for img in (open_image(path), open_image(data)):
        np.testing.assert_array_equal(img.rows(90, 120), data[90:])
        np.testing.assert_array_equal(img.rows(-5, 3), data[:3])
        assert img.rows(5, 5).shape == (0, 64)


def test_empty_band_past_the_end_of_a_file(tmp_path, rng):
    data = rng.normal(size=(100, 64)).astype(np.float32)
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(data).writeto(path)
    assert open_image(data).rows(200, 300).shape == (0, 64)
    assert open_image(path).rows(200, 300).shape == (0, 64)


# -- HDUs and HDULists ----------------------------------------------------------------------
def test_hdulist(multi_extension):
    path, sci, err = multi_extension
    with fits.open(path) as hdul:
        img = open_image(hdul)
        assert img.kind == 'array' and img.path is None
        assert img.header['EXTNAME'] == 'SCI' and img.shape == (40, 50)
        np.testing.assert_array_equal(img.pixels(), sci)
        img = open_image(hdul, hdu='ERR')
        np.testing.assert_array_equal(img.pixels(), err)
        with pytest.raises(InvalidInputError, match='hdu:'):
            open_image(hdul, hdu=1)
    with pytest.raises(InvalidInputError, match='image: the HDUList has no HDU with 2-D'):
        open_image(fits.HDUList([fits.PrimaryHDU()]))


def test_primary_and_image_hdus(rng):
    data = rng.normal(size=(20, 24)).astype(np.float32)
    img = open_image(fits.PrimaryHDU(data, header=fits.Header({'OBJECT': 'x'})))
    assert img.kind == 'array' and img.shape == (20, 24) and img.header['OBJECT'] == 'x'
    np.testing.assert_array_equal(img.pixels(), data)
    img = open_image(fits.ImageHDU(data.astype('>f8'), name='SCI'))
    assert img.header['EXTNAME'] == 'SCI'
    out = img.rows(0, 20)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, data)
    with pytest.raises(InvalidInputError, match='image: the HDU holds no data'):
        open_image(fits.PrimaryHDU())


def test_scaled_hdu_in_memory(rng):
    hdu = fits.PrimaryHDU(rng.integers(0, 65535, (20, 20)).astype(np.uint16))
    np.testing.assert_array_equal(open_image(hdu).pixels(), hdu.data.astype(np.float32))


# -- arrays ---------------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [np.float32, np.float64, '>f4', np.int16, np.uint16, np.int64,
                                   np.uint8])
def test_numpy_arrays(rng, dtype):
    data = rng.integers(0, 250, (20, 30)).astype(dtype)
    img = open_image(data)
    assert img.kind == 'array' and img.shape == (20, 30) and img.path is None
    assert len(img.header) == 0 and img.name == 'array (20, 30)'
    out = img.pixels()
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, data.astype(np.float32))


def test_non_finite_pixels_are_kept_as_nan(rng):
    data = rng.normal(size=(20, 20))
    data[0, 0], data[1, 1], data[2, 2] = np.nan, np.inf, -np.inf
    out = open_image(data).rows(0, 3)
    assert np.isnan(out[0, 0]) and out[1, 1] == np.inf and out[2, 2] == -np.inf
    assert np.isfinite(out).sum() == 3 * 20 - 3


def test_memmap_array_is_read_in_bands(tmp_path):
    path = tmp_path / 'raw.dat'
    mm = np.memmap(path, dtype=np.float32, mode='w+', shape=(2000, 2000))
    mm[:] = np.arange(2000, dtype=np.float32)[:, None]
    mm.flush()
    del mm
    mm = np.memmap(path, dtype=np.float32, mode='r', shape=(2000, 2000))
    tracemalloc.start()
    try:
        img = open_image(mm)
        band = img.rows(100, 110)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert img.shape == (2000, 2000)
    np.testing.assert_array_equal(band[:, 0], np.arange(100, 110))
    assert peak < 1_000_000           # not the whole 16 MB
    clone = pickle.loads(pickle.dumps(img))
    np.testing.assert_array_equal(clone.rows(1990, 2000), np.asarray(mm[1990:2000]))


# -- NDData and CCDData -----------------------------------------------------------------------
def test_nddata_wcs_meta_and_mask(rng):
    data = rng.normal(100, 1, (30, 40)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[2, 3] = mask[20, 39] = True
    w = _tan_wcs()
    nd = NDData(data, wcs=w, mask=mask,
                meta={'EXPTIME': 30.0, 'object': 'M1', 'longkeyword_x': 1, 'LIST': [1, 2]})
    img = open_image(nd)
    assert img.kind == 'array' and img.name == 'NDData' and img.shape == (30, 40)
    header = img.header
    assert header['EXPTIME'] == 30.0 and header['OBJECT'] == 'M1'
    assert 'LIST' not in header and 'LONGKEYWORD_X' not in header
    assert header['CTYPE1'] == 'RA---TAN' and header['CRVAL1'] == 150.0
    pixels = img.pixels()
    assert np.isnan(pixels[2, 3]) and np.isnan(pixels[20, 39]) and np.isnan(pixels).sum() == 2
    np.testing.assert_array_equal(pixels[~mask], data[~mask])
    solved = img.wcs()
    assert solved is not None
    np.testing.assert_allclose(solved.all_pix2world([[5, 7]], 0), w.all_pix2world([[5, 7]], 0))


def test_nddata_without_mask_keeps_the_pixels(rng):
    data = rng.integers(0, 1000, (20, 20)).astype(np.int32)
    img = open_image(NDData(data, mask=np.zeros(data.shape, bool)))
    np.testing.assert_array_equal(img.pixels(), data.astype(np.float32))
    assert img.wcs() is None


def test_ccddata(rng):
    data = rng.normal(100, 1, (25, 35))
    mask = np.zeros(data.shape, bool)
    mask[5, 5] = True
    ccd = CCDData(data, unit='adu', wcs=_tan_wcs(), mask=mask, meta={'FILTER': 'R', 'GAIN': 1.5})
    img = open_image(ccd)
    assert img.name == 'CCDData' and img.shape == (25, 35)
    assert img.header['FILTER'] == 'R' and img.header['GAIN'] == 1.5
    assert img.header['CRVAL2'] == 2.0
    assert np.isnan(img.rows(5, 6)[0, 5]) and np.isnan(img.pixels()).sum() == 1
    assert img.wcs().has_celestial


# -- pictures -------------------------------------------------------------------------------
def _gradient(ny=40, nx=50):
    """Bright at the top (row 0), dark at the bottom, some texture."""
    rows = np.linspace(250, 10, ny)[:, None]
    return np.clip(rows + (np.arange(nx) % 5)[None, :], 0, 255).astype(np.uint8)


def test_grey_png_row_0_is_the_top_row(tmp_path):
    data = _gradient()
    path = tmp_path / 'grey.png'
    PIL.fromarray(data).save(path)
    img = open_image(path)
    assert img.kind == 'png' and img.shape == (40, 50) and img.flips_y
    assert img.path == path.resolve() and len(img.header) == 0 and img.wcs() is None
    np.testing.assert_array_equal(img.rows(0, 1)[0], data[0].astype(np.float32))
    np.testing.assert_array_equal(img.pixels(), data.astype(np.float32))
    assert img.rows(0, 5).mean() > img.rows(35, 40).mean()


def test_rgb_png_becomes_the_mean_of_its_channels(tmp_path, rng):
    grey = _gradient()
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgb[10:20, 10:20] = rng.integers(0, 255, (10, 10, 3))
    path = tmp_path / 'rgb.png'
    PIL.fromarray(rgb).save(path)
    img = open_image(path)
    assert img.shape == (40, 50)
    pixels = img.pixels()
    np.testing.assert_array_equal(pixels[:10], grey[:10])           # R = G = B: that value
    # equal weights, not a perceptual luma (0.299, 0.587, 0.114): photons count alike
    mean = rgb[10:20, 10:20].astype(float).mean(axis=2)
    np.testing.assert_allclose(pixels[10:20, 10:20], mean, rtol=1e-6)


def test_sixteen_bit_png_keeps_its_levels(tmp_path, rng):
    data = rng.integers(0, 65535, (20, 30)).astype(np.uint16)
    path = tmp_path / 'deep.png'
    PIL.fromarray(data).save(path)
    np.testing.assert_array_equal(open_image(path).pixels(), data.astype(np.float32))


@pytest.mark.parametrize('mode', ['L', 'RGB'])
def test_jpeg(tmp_path, mode):
    grey = _gradient(64, 48)
    data = grey if mode == 'L' else np.repeat(grey[:, :, None], 3, axis=2)
    path = tmp_path / 'pic.jpg'
    PIL.fromarray(data).save(path, quality=95)
    img = open_image(path)
    assert img.kind == 'jpeg' and img.shape == (64, 48) and img.flips_y
    pixels = img.pixels()
    assert np.abs(pixels - grey).mean() < 2.0           # lossy, but close
    assert pixels[:4].mean() > 200 and pixels[-4:].mean() < 60


def test_gif(tmp_path):
    data = _gradient()
    path = tmp_path / 'pic.gif'
    PIL.fromarray(data).save(path)
    img = open_image(path)
    assert img.kind == 'gif' and img.shape == (40, 50)
    np.testing.assert_allclose(img.pixels(), data, atol=8)


# -- refusals -------------------------------------------------------------------------------
def _refused(image, match, **kw):
    with pytest.raises(InvalidInputError, match=match) as err:
        open_image(image, **kw)
    return str(err.value)


def test_missing_file_directory_and_empty_file(tmp_path):
    assert _refused(tmp_path / 'nope.fits', 'no such file').startswith('image:')
    assert _refused(tmp_path, 'is a directory').startswith('image:')
    empty = tmp_path / 'empty.fits'
    empty.touch()
    assert _refused(empty, 'empty.fits is empty').startswith('image:')


def test_truncated_fits(tmp_path):
    path = tmp_path / 'full.fits'
    fits.PrimaryHDU(np.ones((100, 80), np.float32)).writeto(path)
    raw = path.read_bytes()
    cut = tmp_path / 'cut.fits'
    cut.write_bytes(raw[:len(raw) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')        # astropy: "File may have been truncated"
        message = _refused(cut, 'truncated')
        assert message.startswith('image: cut.fits') and '80x100' in message
        header_only = tmp_path / 'header.fits'
        header_only.write_bytes(raw[:1000])    # not even a whole header
        assert _refused(header_only, 'header.fits').startswith('image:')
        gz = tmp_path / 'cut.fits.gz'
        gz.write_bytes(gzip.compress(raw[:len(raw) // 2]))
        assert _refused(gz, 'cut.fits.gz').startswith('image:')


def test_not_an_image(tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('SIMPLE is not how a FITS file starts in lower case\n')
    assert _refused(text, 'notes.txt is not a FITS, PNG, JPEG or GIF image, nor TIFF, '
                            'XISF, camera RAW, BMP or WebP').startswith('image:')
    fake = tmp_path / 'photo.jpg'
    fake.write_bytes(b'\xff\xd8\xff\xe0' + b'\x00' * 100)       # a JPEG magic, no JPEG
    assert _refused(fake, 'photo.jpg is not a readable JPEG').startswith('image:')
    bz = tmp_path / 'a.fits.bz2'
    bz.write_bytes(bz2.compress(b'SIMPLE  =                    T' + b' ' * 2850))
    assert _refused(bz, 'a.fits.bz2').startswith('image:')


def test_gz_that_is_not_gzip(tmp_path):
    not_gz = tmp_path / 'a.fits.gz'
    not_gz.write_bytes(b'plain text, whatever the name says')
    assert _refused(not_gz, 'a.fits.gz is not a FITS').startswith('image:')
    broken = tmp_path / 'b.fits.gz'
    broken.write_bytes(b'\x1f\x8b' + b'not really gzip data')     # gzip magic, bad stream
    assert _refused(broken, 'b.fits.gz looks gzip-compressed but cannot be read').startswith(
        'image:')


def test_fits_with_only_a_table(tmp_path):
    path = tmp_path / 'table.fits'
    Table({'x': [1.0, 2.0], 'y': [3.0, 4.0]}).write(path)
    assert _refused(path, 'no HDU with 2-D image data').startswith('image:')


def test_one_dimensional_data(tmp_path):
    path = tmp_path / 'spectrum.fits'
    fits.PrimaryHDU(np.arange(100.0)).writeto(path)
    assert _refused(path, 'no HDU with 2-D image data').startswith('image:')
    assert _refused(np.arange(100.0), 'must be 2-D').startswith('image:')
    assert _refused(fits.PrimaryHDU(np.arange(100.0)), 'must be 2-D').startswith('image:')


@pytest.mark.parametrize('shape', [(MIN_SIZE - 1, 100), (100, MIN_SIZE - 1), (5, 5)])
def test_tiny_images(tmp_path, shape):
    message = _refused(np.zeros(shape), f'at least {MIN_SIZE}x{MIN_SIZE}')
    assert message.startswith('image:')
    path = tmp_path / 'tiny.fits'
    fits.PrimaryHDU(np.zeros(shape, np.float32)).writeto(path)
    assert _refused(path, 'tiny.fits is').startswith('image:')
    png = tmp_path / 'tiny.png'
    PIL.fromarray(np.zeros(shape, np.uint8)).save(png)
    assert _refused(png, 'tiny.png is').startswith('image:')
    assert open_image(np.zeros((MIN_SIZE, MIN_SIZE))).shape == (MIN_SIZE, MIN_SIZE)


@pytest.mark.parametrize('data', [np.zeros((20, 20), bool), np.zeros((20, 20), complex),
                                  np.full((20, 20), 'a')])
def test_arrays_that_do_not_hold_numbers(data):
    assert _refused(data, 'must hold numbers').startswith('image:')


@pytest.mark.parametrize('thing', [[[1.0] * 20] * 20, 3, None, {'a': 1}, b'SIMPLE  =',
                                   fits.BinTableHDU.from_columns([fits.Column('a', 'D',
                                                                              array=[1.0])])])
def test_unsupported_object_types(thing):
    message = _refused(thing, 'image: must be a file path, an HDUList or HDU, a numpy array or '
                              'NDData/CCDData, got ' + type(thing).__name__)
    assert message.startswith('image')


def test_unsupported_object_message_is_prefixed():
    assert _refused(3, 'got int').startswith('image:')


# -- pickling ---------------------------------------------------------------------------------
def test_pickle_path_based_image_travels_as_its_path(multi_extension):
    path, _, err = multi_extension
    img = open_image(path, hdu='ERR')
    payload = pickle.dumps(img)
    assert len(payload) < 2000                     # the path, not the pixels
    clone = pickle.loads(payload)
    assert clone.path == img.path and clone.hdu == 4 and clone.kind == 'fits'
    assert clone.shape == img.shape and clone.header == img.header
    np.testing.assert_array_equal(clone.pixels(), err)
    assert clone.digest() == img.digest()


def test_pickle_array_based_image(rng):
    data = rng.normal(size=(30, 40)).astype(np.float32)
    data[1, 1] = np.nan
    img = open_image(NDData(data, wcs=_tan_wcs(), meta={'OBJECT': 'x'}))
    clone = pickle.loads(pickle.dumps(img))
    assert clone.path is None and clone.kind == 'array' and clone.shape == (30, 40)
    assert clone.name == img.name and clone.header == img.header
    assert clone.header['OBJECT'] == 'x' and clone.wcs().has_celestial
    np.testing.assert_array_equal(clone.pixels(), img.pixels())
    assert clone.digest() == img.digest()


def test_pickle_picture_before_reading(tmp_path):
    path = tmp_path / 'a.png'
    PIL.fromarray(_gradient()).save(path)
    clone = pickle.loads(pickle.dumps(open_image(path)))
    assert clone.path == path.resolve() and clone.kind == 'png'
    np.testing.assert_array_equal(clone.pixels(), _gradient())


def test_pickle_gzip_image_keeps_its_pixels(tmp_path, rng):
    data = rng.normal(size=(20, 30)).astype(np.float32)
    raw = tmp_path / 'a.fits'
    fits.PrimaryHDU(data).writeto(raw)
    gz = tmp_path / 'a.fits.gz'
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    img = open_image(gz)
    clone = pickle.loads(pickle.dumps(img))
    assert clone.shape == (20, 30) and clone.header == img.header
    np.testing.assert_array_equal(clone.pixels(), data)


def test_digest_survives_pickling_of_fits_data(rng):
    img = open_image(fits.PrimaryHDU(rng.normal(size=(20, 30)).astype('>f4')))
    clone = pickle.loads(pickle.dumps(img))
    np.testing.assert_array_equal(clone.pixels(), img.pixels())
    assert clone.digest() == img.digest()


def test_pickle_gzip_image_travels_as_its_path(tmp_path, rng):
    raw = tmp_path / 'a.fits'
    fits.PrimaryHDU(rng.normal(size=(20, 30)).astype(np.float32)).writeto(raw)
    gz = tmp_path / 'a.fits.gz'
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    clone = pickle.loads(pickle.dumps(open_image(gz)))
    assert clone.path == gz.resolve() and clone.hdu == 0


def test_pickle_picture_after_reading_travels_as_its_path(tmp_path):
    path = tmp_path / 'a.png'
    PIL.fromarray(_gradient()).save(path)
    img = open_image(path)
    img.rows(0, 10)
    clone = pickle.loads(pickle.dumps(img))
    assert clone.path == path.resolve()


# -- digest -----------------------------------------------------------------------------------
def test_digest_of_arrays(rng):
    data = rng.normal(size=(20, 20)).astype(np.float32)
    digest = open_image(data).digest()
    assert digest == open_image(data.copy()).digest()
    assert len(digest) == 40 and int(digest, 16) >= 0
    changed = data.copy()
    changed[19, 19] += 1.0
    assert open_image(changed).digest() != digest
    assert open_image(data.astype(np.float64)).digest() != digest
    assert open_image(data.reshape(16, 25)).digest() != digest


def test_digest_of_files(tmp_path, rng):
    data = rng.normal(size=(20, 30)).astype(np.float32)
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(data).writeto(path)
    img = open_image(path)
    digest = img.digest()
    img.rows(0, 20)
    assert img.digest() == digest                          # reading does not change it
    assert open_image(path).digest() == digest             # nor reopening
    copy = tmp_path / 'b.fits'
    shutil.copyfile(path, copy)
    assert open_image(copy).digest() == digest             # the name does not matter
    changed = data.copy()
    changed[10, 10] += 1.0
    fits.PrimaryHDU(changed).writeto(path, overwrite=True)
    assert open_image(path).digest() != digest


def test_digest_depends_on_the_hdu(multi_extension):
    path, _, _ = multi_extension
    assert open_image(path, hdu='SCI').digest() != open_image(path, hdu='ERR').digest()
    assert open_image(path, hdu='SCI').digest() == open_image(path).digest()


def test_digest_of_pictures(tmp_path):
    path = tmp_path / 'a.png'
    PIL.fromarray(_gradient()).save(path)
    digest = open_image(path).digest()
    assert open_image(path).digest() == digest
    changed = _gradient()
    changed[0, 0] ^= 1
    PIL.fromarray(changed).save(path)
    assert open_image(path).digest() != digest


def test_digest_of_a_picture_is_stable_after_reading(tmp_path):
    path = tmp_path / 'a.png'
    PIL.fromarray(_gradient()).save(path)
    img = open_image(path)
    digest = img.digest()
    img.pixels()
    assert img.digest() == digest


# -- data(): the pixels in their own type ------------------------------------------------------
def test_data_of_arrays_and_float_files(tmp_path, rng):
    data = rng.integers(0, 100, (20, 20)).astype(np.int16)
    out = open_image(data).data()
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, data)
    floats = rng.normal(size=(20, 20)).astype(np.float32)
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(floats).writeto(path)
    np.testing.assert_array_equal(open_image(path).data(), floats)


def test_data_of_a_uint16_file(tmp_path, rng):
    data = rng.integers(0, 65535, (20, 20)).astype(np.uint16)
    path = tmp_path / 'u16.fits'
    fits.PrimaryHDU(data).writeto(path)
    out = open_image(path).data()
    np.testing.assert_array_equal(out, data)


# -- the header's WCS -------------------------------------------------------------------------
def test_wcs_of_a_file(tmp_path):
    header = _tan_wcs().to_header()
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(np.zeros((30, 40), np.float32), header=header).writeto(path)
    w = open_image(path).wcs()
    assert w is not None and w.has_celestial
    np.testing.assert_allclose(w.wcs.crval, [150.0, 2.0])


def test_a_non_celestial_wcs_is_none(tmp_path):
    header = fits.Header({'CTYPE1': 'WAVE', 'CTYPE2': 'TIME', 'CRVAL1': 1.0, 'CDELT1': 1.0})
    path = tmp_path / 'a.fits'
    fits.PrimaryHDU(np.zeros((30, 40), np.float32), header=header).writeto(path)
    assert open_image(path).wcs() is None
