"""Bad input is refused before any I/O, with a typed error that names the
argument and says what is allowed.

"Before any I/O" is proved two ways:

* nova backend: the client's ``requests.Session.request`` is replaced by a
  recorder that raises `NetworkUsed`; every test asserts it was never called
  (the `nova` fixture checks it once more at teardown);
* local backend: no job directory appears under ``conf.local_data_dir``
  (see the `local` fixture).

Every refusal is an `InvalidInputError` or `InvalidSettingError`: both are
`ValueError` and `AstrometryNetError` (see `refused`).

"""
import gzip
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import NDData

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import (AstrometryNetError, InvalidInputError,
                                         InvalidSettingError)
from astrometry_query.local.solver import solver_available
from astrometry_query.results import Job
from astrometry_query.settings import normalize_settings

pytestmark = pytest.mark.filterwarnings('ignore:File may have been truncated')

requires_local = pytest.mark.skipif(not solver_available(),
                                    reason='needs astrometry.net and index files')

KEY = 'abcdefghijklmnop'
GOOD_X = [10.0, 20.5, 30.0, 40.0, 55.0]
GOOD_Y = [12.0, 22.0, 35.5, 48.0, 60.0]


class NetworkUsed(Exception):
    """Raised by the recording request hook: a request was attempted."""




def refused(call, match, *args, **kwargs):
    """Run ``call``; it must raise a typed ValueError whose message matches."""
    with pytest.raises(AstrometryNetError, match=match) as info:
        call(*args, **kwargs)
    exc = info.value
    assert isinstance(exc, ValueError), type(exc)
    assert isinstance(exc, (InvalidInputError, InvalidSettingError)), type(exc)
    return exc


# -- clients ------------------------------------------------------------------------------
def _expected_to_fail(request):
    return request.node.get_closest_marker('xfail') is not None


@pytest.fixture
def nova(request):
    """A nova client whose every HTTP request is recorded and refused (checked
    at teardown, except for cases marked xfail: they fail in their body)."""
    client = AstrometryNetClass(api_key=KEY, server='http://127.0.0.1:9', backend='nova')
    calls = []

    def record(method, url, *args, **kwargs):
        calls.append((method, url))
        raise NetworkUsed(f'{method} {url}')
    client._session.request = record
    client.calls = calls
    yield client
    client.close()
    if not _expected_to_fail(request):
        assert calls == [], f'HTTP requests were made: {calls}'


def _job_dirs():
    jobs = Path(conf.local_data_dir) / 'jobs'
    return sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []


@pytest.fixture
def local(request):
    """A local-backend client; no job directory may be created."""
    if not solver_available():
        pytest.skip('needs astrometry.net and index files')
    client = AstrometryNetClass(backend='local')
    assert client.backend.name == 'local'
    yield client
    client.close()
    if not _expected_to_fail(request):
        assert _job_dirs() == [], 'a local job was created for a refused input'


@pytest.fixture
def local_may_run():
    """A local-backend client for inputs found bad while solving."""
    if not solver_available():
        pytest.skip('needs astrometry.net and index files')
    client = AstrometryNetClass(backend='local')
    yield client
    client.close()


def _field(ny=64, nx=64, seed=1):
    """A small image with a few stars on noise (valid input)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 3.0, (ny, nx)).astype(np.float32)
    yy, xx = np.mgrid[:ny, :nx]
    for x0, y0, f in rng.uniform([5, 5, 200], [nx - 5, ny - 5, 2000], (8, 3)):
        data += f * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 4.5)
    return data


# -- files --------------------------------------------------------------------------------
def _write(path, content):
    path.write_bytes(content)
    return path


def _fits_file(path, data=None, hdus=()):
    fits.HDUList([fits.PrimaryHDU(data), *hdus]).writeto(path)
    return path


def _truncated(path):
    _fits_file(path, np.ones((100, 100), np.float32))
    raw = path.read_bytes()
    return _write(path, raw[:2880 + 4000])         # header + a fraction of the pixels


def _table_hdu():
    return fits.BinTableHDU.from_columns([fits.Column('X', 'D', array=np.arange(10.0))])


def _gzip_cut(path):
    full = gzip.compress(_fits_file(path.with_suffix('.tmp'), _field()).read_bytes())
    return _write(path, full[:len(full) // 2])


def _png(path, size):
    from PIL import Image as PILImage
    PILImage.fromarray(np.zeros(size, np.uint8)).save(path)
    return path


#: name -> (make the file in a directory, regex the message must match)
BAD_FILES = {
    'missing': (lambda d: d / 'missing.fits', r'image: no such file'),
    'directory': (lambda d: (d / 'folder.fits').mkdir() or d / 'folder.fits', r'is a directory'),
    'empty': (lambda d: _write(d / 'empty.fits', b''), r'image: empty\.fits is empty'),
    'truncated': (lambda d: _truncated(d / 'cut.fits'), r'truncated.*promises 100x100'),
    'text': (lambda d: _write(d / 'notes.fits', b'hello, this is not an image\n' * 10),
             r'not a FITS, PNG, JPEG or GIF'),
    'gz_not_gzip': (lambda d: _write(d / 'bad.fits.gz', b'\x1f\x8b' + b'\x00garbage' * 50),
                    r'gzip'),
    'gz_named_text': (lambda d: _write(d / 'text.fits.gz', b'plain text, no gzip\n' * 10),
                      r'not a FITS, PNG, JPEG or GIF'),
    'gz_cut_in_half': (lambda d: _gzip_cut(d / 'half.fits.gz'), r'image: half\.fits\.gz'),
    'fits_magic_garbage': (lambda d: _write(d / 'magic.fits', b'SIMPLE  =' + b'\xff' * 3000),
                           r'not a readable FITS'),
    'table_only': (lambda d: _fits_file(d / 'table.fits', None, [_table_hdu()]),
                   r'no HDU with 2-D image data'),
    'one_dimensional': (lambda d: _fits_file(d / 'spectrum.fits', np.arange(500, dtype='f4')),
                        r'no HDU with 2-D image data'),
    'tiny': (lambda d: _fits_file(d / 'tiny.fits', np.ones((10, 10), 'f4')),
             r'10x10 pixels; at least 16x16'),
    'thin_strip': (lambda d: _fits_file(d / 'strip.fits', np.ones((8, 1000), 'f4')),
                   r'1000x8 pixels; at least 16x16'),
    'png_garbage': (lambda d: _write(d / 'x.png', b'\x89PNG' + b'\x00' * 100),
                    r'not a readable PNG'),
    'png_tiny': (lambda d: _png(d / 'small.png', (8, 8)), r'at least 16x16'),
}


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bad_files')
    return {name: (make(folder), match) for name, (make, match) in BAD_FILES.items()}


@pytest.fixture(scope='module')
def good_file(tmp_path_factory):
    return _fits_file(tmp_path_factory.mktemp('good') / 'field.fits', _field(),
                      [fits.ImageHDU(_field(seed=2), name='SCI'), _table_hdu()])


@pytest.mark.parametrize('name', list(BAD_FILES))
@pytest.mark.parametrize('method', ['solve_from_image', 'submit_image'])
def test_bad_file_nova(nova, bad_files, name, method):
    path, match = bad_files[name]
    refused(getattr(nova, method), match, path, verbose=False)
    refused(getattr(nova, method), match, str(path), verbose=False, force_image_upload=True)


@requires_local
@pytest.mark.parametrize('name', list(BAD_FILES))
def test_bad_file_local(local, bad_files, name):
    path, match = bad_files[name]
    refused(local.solve_from_image, match, path, verbose=False)
    refused(local.submit_image, match, path)


#: Images in memory that can never be solved.
BAD_OBJECTS = {
    'array_1d': (np.arange(100.0), r'must be 2-D'),
    'array_tiny': (np.ones((8, 40)), r'at least 16x16'),
    'array_complex': (np.ones((32, 32), complex), r'must hold numbers'),
    'array_strings': (np.full((32, 32), 'a'), r'must hold numbers'),
    'array_bool': (np.ones((32, 32), bool), r'must hold numbers'),
    'array_object': (np.full((32, 32), None, object), r'must hold numbers'),
    'hdu_without_data': (fits.PrimaryHDU(), r'holds no data'),
    'hdulist_table_only': (fits.HDUList([fits.PrimaryHDU(), _table_hdu()]),
                           r'no HDU with 2-D image data'),
    'nddata_1d': (NDData(np.arange(50.0)), r'must be 2-D'),
    'nested_list': ([[1.0, 2.0], [3.0, 4.0]], r'must be a file path, an HDUList'),
    'dict': ({'data': 1}, r'must be a file path, an HDUList'),
    'none': (None, r'must be a file path, an HDUList'),
    'number': (42, r'must be a file path, an HDUList'),
    'bytes': (b'SIMPLE  = T', r'must be a file path, an HDUList'),
}


@pytest.mark.parametrize('name', list(BAD_OBJECTS))
def test_bad_image_object(nova, name):
    image, match = BAD_OBJECTS[name]
    refused(nova.solve_from_image, match, image, verbose=False)
    refused(nova.submit_image, match, image, verbose=False, force_image_upload=True)


@requires_local
@pytest.mark.parametrize('name', ['array_1d', 'array_tiny', 'array_complex', 'hdu_without_data',
                                  'none'])
def test_bad_image_object_local(local, name):
    image, match = BAD_OBJECTS[name]
    refused(local.solve_from_image, match, image, verbose=False)


@pytest.mark.parametrize('hdu, match', [
    (5, r'hdu: .* has no HDU 5 \(it has 3\)'),
    ('NOPE', r"hdu: .* has no HDU 'NOPE'"),
    (2, r'hdu: HDU 2 of field\.fits holds no 2-D image'),
])
def test_bad_hdu(nova, good_file, hdu, match):
    refused(nova.solve_from_image, match, good_file, hdu=hdu, verbose=False)


@pytest.mark.parametrize('kwargs, match', [
    (dict(ra_key='RA'), r'ra_key and dec_key together'),
    (dict(dec_key='DEC'), r'ra_key and dec_key together'),
    (dict(ra_key='NOPE', dec_key='NOPE2'), r'ra_key/dec_key'),
    (dict(header_hints='yes'), r"header_hints must be True .*'verify'.* or False"),
    (dict(header_hints=None), r"header_hints must be True .*'verify'.* or False"),
    (dict(fwhm=-1), r'fwhm must be a number in \[0\.5, 100\.0\]'),
    (dict(fwhm=float('nan')), r'fwhm must be a number'),
    (dict(detect_threshold=0), r'detect_threshold must be a number in \[0\.5'),
    (dict(detect_threshold='5'), r'detect_threshold must be a number'),
])
def test_bad_image_options_nova(nova, good_file, kwargs, match):
    refused(nova.solve_from_image, match, good_file, verbose=False, **kwargs)


@requires_local
@pytest.mark.parametrize('kwargs, match', [
    (dict(ra_key='RA'), r'ra_key and dec_key together'),
    (dict(ra_key='NOPE', dec_key='NOPE2'), r'ra_key/dec_key'),
    (dict(header_hints=1), r"header_hints must be True .*'verify'.* or False"),
    pytest.param(dict(fwhm=-1), r'fwhm must be a number'),
    pytest.param(dict(detect_threshold=0), r'detect_threshold must be a number'),
])
def test_bad_image_options_local(local, good_file, kwargs, match):
    refused(local.solve_from_image, match, good_file, verbose=False, solve_timeout=30, **kwargs)
    assert _job_dirs() == [], 'a local job was created for a refused input'


def test_cache_flag_is_checked(nova, good_file):
    refused(nova.solve_from_image, r'cache must be True or False', good_file, cache='no',
            verbose=False)


# -- pixels that cannot be solved: found when the pixels are read ------------------------------
@pytest.fixture(scope='module')
def hopeless_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('hopeless')
    masked = NDData(_field(), mask=np.ones((64, 64), bool))
    return {
        'all_nan_file': (_fits_file(folder / 'nan.fits', np.full((64, 64), np.nan, 'f4')),
                         r'has no finite pixel values'),
        'all_zero_file': (_fits_file(folder / 'zero.fits', np.zeros((64, 64), 'f4')),
                          r'is constant \(every pixel is 0\)'),
        'all_seven_file': (_fits_file(folder / 'seven.fits', np.full((64, 64), 7.0, 'f4')),
                           r'is constant \(every pixel is 7\)'),
        'all_seven_int16_file': (_fits_file(folder / 'seven16.fits',
                                            np.full((64, 64), 7, '>i2')),
                                 r'is constant \(every pixel is 7\)'),
        'all_nan_array': (np.full((64, 64), np.nan), r'has no finite pixel values'),
        'all_zero_array': (np.zeros((40, 50)), r'is constant'),
        'all_inf_array': (np.full((64, 64), np.inf), r'constant|no finite'),
        'fully_masked_nddata': (masked, r'has no finite pixel values'),
    }


HOPELESS = ['all_nan_file', 'all_zero_file', 'all_seven_file', 'all_seven_int16_file',
            'all_nan_array', 'all_zero_array', 'all_inf_array', 'fully_masked_nddata']


@pytest.mark.parametrize('name', HOPELESS)
@pytest.mark.parametrize('method', ['solve_from_image', 'submit_image'])
def test_hopeless_pixels_nova(nova, hopeless_images, name, method):
    image, match = hopeless_images[name]
    refused(getattr(nova, method), match, image, verbose=False)


@pytest.mark.parametrize('name', [
    pytest.param(n)
    for n in ['all_nan_file', 'all_seven_file', 'all_zero_array']])
def test_hopeless_pixels_nova_forced_upload(nova, hopeless_images, name):
    image, match = hopeless_images[name]
    refused(nova.solve_from_image, match, image, verbose=False, force_image_upload=True)


@requires_local
@pytest.mark.parametrize('name', ['all_nan_file', 'all_zero_file', 'all_seven_file',
                                  'all_nan_array', 'fully_masked_nddata'])
def test_hopeless_pixels_local(local_may_run, hopeless_images, name):
    image, match = hopeless_images[name]
    exc = refused(local_may_run.solve_from_image, match, image, verbose=False,
                  solve_timeout=60)
    assert exc.job_id is not None        # found by the solve: it may be resumed/inspected


# -- source lists -----------------------------------------------------------------------------
BAD_SOURCES = {
    'different_lengths': (GOOD_X, GOOD_Y[:4], r'same length, got 5 and 4'),
    'empty': ([], [], r'at least 4 sources, got 0'),
    'three': (GOOD_X[:3], GOOD_Y[:3], r'at least 4 sources, got 3'),
    'one_scalar': (5.0, 6.0, r'1-D'),
    'nan': (GOOD_X[:4] + [np.nan], GOOD_Y, r'finite'),
    'inf': (GOOD_X, GOOD_Y[:4] + [np.inf], r'finite'),
    'minus_inf': ([-np.inf] + GOOD_X[1:], GOOD_Y, r'finite'),
    'strings': (['a', 'b', 'c', 'd'], [1, 2, 3, 4], r'sequences of numbers'),
    'one_string': ('abcd', 'efgh', r'sequences of numbers'),
    'none_inside': ([1, 2, None, 4], [1, 2, 3, 4], r'finite \(no NaN or inf\)'),
    'complex': ([1j, 2j, 3j, 4j], [1, 2, 3, 4], r'sequences of numbers'),
    'ragged': ([[1, 2], [3]], [1, 2], r'sequences of numbers'),
    'two_dimensional': (np.ones((5, 2)), np.ones((5, 2)), r'1-D'),
    'dict': ({'a': 1}, {'b': 2}, r'sequences of numbers|1-D'),
    'all_zero': ([0.0] * 5, GOOD_Y, r'positive x, y'),
    'all_negative': ([-1.0, -2.0, -3.0, -4.0], [-5.0, -6.0, -7.0, -8.0], r'positive x, y'),
    'y_non_positive': (GOOD_X, [0, -1, -2, -3, -4], r'positive x, y'),
    'quantity_deg': (np.array(GOOD_X) * u.deg, np.array(GOOD_Y) * u.deg, r'numbers \(pixels\)'),
    'quantity_m': (np.array(GOOD_X) * u.pix, np.array(GOOD_Y) * u.m, r'numbers \(pixels\)'),
}


@pytest.mark.parametrize('name', list(BAD_SOURCES))
@pytest.mark.parametrize('method', ['solve_from_source_list', 'submit_source_list'])
def test_bad_source_list_nova(nova, name, method):
    x, y, match = BAD_SOURCES[name]
    kwargs = {'verbose': False} if method.startswith('solve') else {}
    refused(getattr(nova, method), match, x, y, 100, 80, **kwargs)


@requires_local
@pytest.mark.parametrize('name', ['different_lengths', 'empty', 'three', 'nan', 'strings',
                                  'two_dimensional', 'all_negative', 'quantity_deg'])
def test_bad_source_list_local(local, name):
    x, y, match = BAD_SOURCES[name]
    refused(local.solve_from_source_list, match, x, y, 100, 80, verbose=False)


BAD_SIZES = [0, -1, -100, 0.5, 99.5, True, False, '100', None, float('nan'), float('inf'),
             -float('inf'), 1e6 + 1, 10 ** 7, 10 ** 400, [100], 100 * u.pix, 1 + 2j]


@pytest.mark.parametrize('value', BAD_SIZES, ids=repr)
@pytest.mark.parametrize('which', ['image_width', 'image_height'])
def test_bad_image_size_nova(nova, value, which):
    size = {'image_width': 100, 'image_height': 80, which: value}
    refused(nova.solve_from_source_list, rf'{which} must be a positive whole number of pixels',
            GOOD_X, GOOD_Y, size['image_width'], size['image_height'], verbose=False)


@requires_local
@pytest.mark.parametrize('value', [0, -1, 2.5, True, 'wide', float('nan'), 2e6], ids=repr)
def test_bad_image_size_local(local, value):
    refused(local.solve_from_source_list, r'image_width must be a positive whole number',
            GOOD_X, GOOD_Y, value, 80, verbose=False)
    refused(local.submit_source_list, r'image_height must be a positive whole number',
            GOOD_X, GOOD_Y, 100, value)


# -- settings -------------------------------------------------------------------------------------
#: (settings, regex the message must match)
BAD_SETTINGS = [
    # a bool where a number is asked
    ({'center_ra': True, 'center_dec': 10}, r"center_ra must be of type 'float'"),
    ({'radius': False, 'center': (10, 10)}, r"radius must be of type 'float'"),
    ({'tweak_order': True}, r"tweak_order must be of type 'int'"),
    ({'downsample_factor': np.bool_(True)}, r"downsample_factor must be of type 'int'"),
    ({'parity': False}, r"parity must be of type 'int'"),
    # strings where numbers are asked
    ({'scale_lower': '1', 'scale_upper': 2, 'scale_units': 'degwidth'},
     r"scale_lower must be of type 'float'"),
    ({'positional_error': 'small'}, r"positional_error must be of type 'float'"),
    ({'tweak_order': '2'}, r"tweak_order must be of type 'int'"),
    # numbers (or other things) where strings or bools are asked
    ({'publicly_visible': True}, r"publicly_visible must be of type 'str'"),
    ({'publicly_visible': 'yes'}, r"'y', 'n'"),
    ({'allow_commercial_use': 'maybe'}, r"allow_commercial_use.*one of 'd', 'y', 'n'"),
    ({'allow_modifications': 1}, r"allow_modifications must be of type 'str'"),
    ({'use_sextractor': 1}, r"use_sextractor must be of type 'bool'"),
    ({'crpix_center': 'True'}, r"crpix_center must be of type 'bool'"),
    ({'invert': 0.0}, r"invert must be of type 'bool'"),
    ({'album': ''}, r'album.*non-empty string'),
    ({'album': '   '}, r'album.*non-empty string'),
    ({'album': 'a' * 201}, r'album.*non-empty string'),
    ({'album': 5}, r"album must be of type 'str'"),
    # None-like: NaN, inf, empty containers
    ({'center_ra': float('nan'), 'center_dec': 0}, r'center_ra.*0 <= center_ra <= 360'),
    ({'radius': float('inf'), 'center': (1, 1)}, r'radius.*0 <= radius <= 180'),
    ({'positional_error': np.nan}, r'positional_error.*0 <= positional_error <= 100'),
    ({'scale_err': [], 'scale_est': 1, 'scale_units': 'degwidth'}, r"scale_err must be of type"),
    ({'tweak_order': ()}, r"tweak_order must be of type 'int'"),
    ({'radius': {}, 'center': (1, 1)}, r"radius must be of type 'float'"),
    # Quantities in the wrong unit
    ({'radius': 1 * u.m, 'center': (1, 1)}, r'radius has incompatible units'),
    ({'center_ra': 10 * u.s, 'center_dec': 5 * u.deg}, r'center_ra has incompatible units'),
    ({'scale_err': 3 * u.deg, 'scale_est': 1, 'scale_units': 'degwidth'},
     r'scale_err has incompatible units'),
    ({'positional_error': 1 * u.deg}, r'positional_error has incompatible units'),
    ({'tweak_order': 2 * u.one}, r'tweak_order has incompatible units'),
    ({'scale_lower': 1 * u.kg, 'scale_upper': 2 * u.kg}, r'scale_lower must be an angle'),
    ({'scale_est': 1 * u.s}, r'scale_est must be an angle'),
    ({'scale': (1 * u.deg, 2 * u.arcsec / u.pix)}, r'mix incompatible kinds'),
    ({'scale': 5}, r'scale: 5 has no unit. Did you mean arcsec/pix'),
    ({'scale': (1, 2)}, r'scale: 1 has no unit. Did you mean arcsec/pix'),
    ({'scale': 'fast'}, r'scale must be a Quantity estimate or a \(low, high\) pair'),
    ({'scale': 2 * u.deg, 'scale_units': 'arcsecperpix'}, r'scale_units=.*contradicts'),
    # out of range
    ({'center_ra': 400, 'center_dec': 0}, r'center_ra.*0 <= center_ra <= 360'),
    ({'center_ra': -1, 'center_dec': 0}, r'center_ra.*0 <= center_ra <= 360'),
    ({'center_ra': 10, 'center_dec': 95}, r'center_dec.*-90 <= center_dec <= 90'),
    ({'center_ra': 10 * u.deg, 'center_dec': -91 * u.deg}, r'center_dec.*-90 <= center_dec'),
    ({'center': (10, 10), 'radius': 0}, r'radius is invalid: it must be > 0'),
    ({'center': (10, 10), 'radius': 181}, r'radius.*0 <= radius <= 180'),
    ({'center': (10, 10), 'radius': -2 * u.deg}, r'radius.*0 <= radius <= 180'),
    ({'scale_est': 1, 'scale_err': 150, 'scale_units': 'degwidth'},
     r'scale_err.*0 <= scale_err <= 100'),
    ({'scale_est': 0, 'scale_units': 'degwidth'}, r'scale_est is invalid: it must be > 0'),
    ({'scale_lower': -1, 'scale_upper': 2, 'scale_units': 'degwidth'},
     r'scale_lower.*0 <= scale_lower'),
    ({'scale_lower': 1, 'scale_upper': 400, 'scale_units': 'degwidth'},
     r'scale_upper is invalid: at most 360\.0 degwidth'),
    ({'scale_lower': 1, 'scale_upper': 4e4, 'scale_units': 'arcsecperpix'},
     r'scale_upper is invalid: at most 36000\.0 arcsecperpix'),
    ({'parity': 5}, r'parity.*0 <= parity <= 2'),
    ({'parity': -1}, r'parity.*0 <= parity <= 2'),
    ({'parity': 'sideways'}, r"parity must be of type 'int'"),
    ({'tweak_order': 10}, r'tweak_order.*0 <= tweak_order <= 9'),
    ({'tweak_order': 2.5}, r"tweak_order must be of type 'int', got 2\.5"),
    ({'downsample_factor': 0}, r'downsample_factor.*1 <= downsample_factor <= 64'),
    ({'downsample_factor': 65}, r'downsample_factor.*1 <= downsample_factor <= 64'),
    ({'positional_error': 101}, r'positional_error.*0 <= positional_error <= 100'),
    ({'scale_units': 'furlongs'}, r"scale_units.*one of 'degwidth', 'arcminwidth'"),
    ({'scale_units': 'DEGWIDTH'}, r"scale_units.*one of 'degwidth'"),
    ({'scale_type': 'both'}, r"scale_type.*one of 'ul', 'ev'"),
    # unknown names, with a suggestion
    ({'raduis': 2}, r"Setting raduis is not allowed\. Did you mean 'radius'\?"),
    ({'scale_lowr': 2}, r"Did you mean 'scale_lower'\?"),
    ({'centre': (1, 2)}, r"Did you mean 'center'\?"),
    ({'tweakorder': 3}, r"Did you mean 'tweak_order'\?"),
    ({'zzz_unknown': 1}, r'Setting zzz_unknown is not allowed.*show_allowed_settings'),
    # inconsistent combinations
    ({'scale_lower': 5, 'scale_upper': 1, 'scale_units': 'degwidth'},
     r'scale_lower \(5\.0\) is greater than scale_upper \(1\.0\)'),
    ({'scale': (5 * u.deg, 1 * u.deg)}, r'scale_lower .* is greater than scale_upper'),
    ({'scale_type': 'ev', 'scale_units': 'degwidth'}, r"Scale type ev requires values for"),
    ({'scale_type': 'ul', 'scale_est': 2, 'scale_units': 'degwidth'}, r'Scale type ul requires'),
    ({'scale_type': 'ul', 'scale_lower': 2, 'scale_units': 'degwidth'}, r'Scale type ul requires'),
    ({'scale_type': 'ul', 'scale_lower': 1, 'scale_upper': 2, 'scale_est': 1.5,
      'scale_units': 'degwidth'}, r'scale_lower/scale_upper or scale_est/scale_err, not both'),
    ({'scale_err': 5, 'scale_units': 'degwidth'}, r'scale_err needs scale_est'),
    ({'scale_lower': 1, 'scale_upper': 2}, r'need scale_units'),
    ({'scale': (1 * u.deg, 2 * u.deg), 'scale_lower': 1}, r'Give either scale or scale_lower'),
    ({'center': (10, 10), 'center_ra': 10}, r'Give either center or center_ra/center_dec'),
    ({'center_ra': 10}, r'center_ra and center_dec must be given together'),
    ({'center_dec': 10}, r'center_ra and center_dec must be given together'),
    ({'radius': 2}, r'radius needs a centre'),
    ({'radius': 2 * u.deg}, r'radius needs a centre'),
    ({'center': 'M42'}, r"center: cannot read a position from 'M42'.*'05h35m17s -05d23m28s'"),
    ({'center': (10, 95)}, r'center must be a SkyCoord, a string or an \(ra, dec\) pair'),
    ({'center': SkyCoord([1, 2] * u.deg, [3, 4] * u.deg)}, r'center must be a single position'),
    # bugs: another exception type escapes
    pytest.param({'center_ra': 10 ** 400, 'center_dec': 0}, r'center_ra'),
    pytest.param({'tweak_order': -10 ** 400}, r'tweak_order'),
    pytest.param({'scale': 'ab'}, r'scale'),
    pytest.param({'scale': ('wide', 'narrow')}, r'scale'),
    pytest.param({'center': SkyCoord(10 * u.deg, 20 * u.deg, frame='altaz')}, r'center'),
]
SETTING_IDS = [f'{i}-' + ','.join(p.values[0] if hasattr(p, 'values') else p[0])
               for i, p in enumerate(BAD_SETTINGS)]


def _entry_points(client, good_file):
    """Every way settings reach a client (each must check them first)."""
    return {
        'solve_from_source_list': lambda **s: client.solve_from_source_list(
            GOOD_X, GOOD_Y, 100, 80, verbose=False, **s),
        'submit_source_list': lambda **s: client.submit_source_list(GOOD_X, GOOD_Y, 100, 80, **s),
        'solve_from_image': lambda **s: client.solve_from_image(good_file, verbose=False, **s),
        'submit_url': lambda **s: client.submit_url('http://example.com/a.fits', **s),
        'solve_many': lambda **s: client.solve_many([good_file], verbose=False, **s),
    }


@pytest.mark.parametrize('settings, match', BAD_SETTINGS, ids=SETTING_IDS)
def test_bad_settings_normalize(settings, match):
    refused(normalize_settings, match, settings)


@pytest.mark.parametrize('entry', ['solve_from_source_list', 'submit_source_list',
                                   'solve_from_image', 'submit_url', 'solve_many'])
@pytest.mark.parametrize('settings, match', BAD_SETTINGS, ids=SETTING_IDS)
def test_bad_settings_nova(nova, good_file, entry, settings, match):
    refused(_entry_points(nova, good_file)[entry], match, **settings)


@requires_local
@pytest.mark.parametrize('entry', ['solve_from_source_list', 'solve_from_image', 'submit_url',
                                   'solve_many'])
@pytest.mark.parametrize('settings, match', BAD_SETTINGS[::7], ids=SETTING_IDS[::7])
def test_bad_settings_local(local, good_file, entry, settings, match):
    refused(_entry_points(local, good_file)[entry], match, **settings)


def test_center_without_radius_is_allowed():
    out = normalize_settings({'center': SkyCoord(10 * u.deg, 20 * u.deg)})
    assert out['center_ra'] == pytest.approx(10) and out['radius'] == 5.0
    out = normalize_settings({'center_ra': 0, 'center_dec': 0})
    assert out['radius'] == 5.0


def test_setting_error_attributes():
    exc = refused(normalize_settings, r'center_dec', {'center_ra': 1, 'center_dec': 95})
    assert exc.setting == 'center_dec' and '-90 <= center_dec <= 90' in exc.allowed
    exc = refused(normalize_settings, 'Did you mean', {'raduis': 1})
    assert exc.setting == 'raduis' and 'radius' in exc.allowed


# -- URLs -------------------------------------------------------------------------------------
BAD_URLS = [
    (5, r'url must be a string, got int'),
    (None, r'url must be a string, got NoneType'),
    (b'http://example.com/a.fits', r'url must be a string, got bytes'),
    (['http://example.com/a.fits'], r'url must be a string, got list'),
    ('example.com/a.fits', r'url must be an http or https URL'),
    ('ftp://example.com/a.fits', r'url must be an http or https URL'),
    ('file:///etc/passwd', r'url must be an http or https URL'),
    ('javascript:alert(1)', r'url must be an http or https URL'),
    ('', r'url must be an http or https URL'),
    ('http://', r'url has no host name'),
    ('https:///a.fits', r'url has no host name'),
    ('http://@/a.fits', r'url has no host name'),
    ('http://exa mple.com/a.fits', r'url must not hold blanks or control characters'),
    (' http://example.com/a.fits', r'blanks or control characters'),
    ('http://example.com/a.fits\n', r'blanks or control characters'),
    ('http://example.com/\x00a.fits', r'blanks or control characters'),
    ('http://example.com/\x1b[31m.fits', r'blanks or control characters'),
    ('http://example.com/a\tb.fits', r'blanks or control characters'),
    ('http://example.com/a\r\nX-Injected: 1', r'blanks or control characters'),
    ('http://example.com/' + 'a' * 190, r'url must be at most 200 characters.*got 209'),
    pytest.param('http://example.com/a\x7f.fits', r'control characters'),
    pytest.param('http://example.com:abc/a.fits', r'url'),
    pytest.param('http://example.com:99999/a.fits', r'url'),
]


@pytest.mark.parametrize('url, match', BAD_URLS, ids=[repr(p.values[0] if hasattr(p, 'values')
                                                           else p[0])[:40] for p in BAD_URLS])
@pytest.mark.parametrize('method', ['submit_url', 'solve_from_url'])
def test_bad_url_nova(nova, url, match, method):
    kwargs = {'verbose': False} if method == 'solve_from_url' else {}
    refused(getattr(nova, method), match, url, **kwargs)


@requires_local
@pytest.mark.parametrize('url, match', BAD_URLS[:20:3])
def test_bad_url_local(local, url, match):
    refused(local.submit_url, match, url)
    refused(local.solve_from_url, match, url, verbose=False)


# -- downloads and job ids ----------------------------------------------------------------------
@pytest.mark.parametrize('kind', ['nope', 'WCS', '', None, 3, 'wcs_file', 'annotated_full'],
                         ids=repr)
def test_bad_download_kind(nova, kind):
    refused(nova.download, r"kind must be one of \['annotated', 'axy', 'corr'", 1, kind)


def test_download_destination_must_be_a_folder(nova, tmp_path):
    refused(nova.download, r'destination_dir is not a directory', 1, 'wcs',
            destination_dir=tmp_path / 'nope')
    (tmp_path / 'file').write_text('x')
    refused(nova.download, r'destination_dir is not a directory', 1, 'wcs',
            destination_dir=tmp_path / 'file')


BAD_JOBS = [
    (0, r'job id must be a positive integer \(ids start at 1\), got 0'),
    (-3, r'job id must be a positive integer'),
    (np.int64(0), r'job id must be a positive integer'),
    ('0', r'job id must be a positive integer'),
    ('abc', r"A job must be an id, a Job, a Header or a Table row, not 'abc'"),
    ('', r'A job must be an id, a Job, a Header or a Table row'),
    ('-3', r'A job must be an id'),
    ('1.0', r'A job must be an id'),
    (1.5, r'A job must be an id, a Job, a Header or a Table row, not 1\.5'),
    (2.0, r'A job must be an id'),
    (True, r'A job must be an id, a Job, a Header or a Table row, not True'),
    (np.True_, r'A job must be an id'),
    (None, r'A job must be an id, a Job, a Header or a Table row, not None'),
    ([1], r'A job must be an id'),
    (fits.Header(), r'This header has no AN_JOBID/AN_SUBID card'),
    (fits.Header({'OBJECT': 'M42'}), r'This header has no AN_JOBID/AN_SUBID card'),
]
JOB_IDS = [repr(j)[:30] for j, _ in BAD_JOBS]


@pytest.mark.parametrize('job, match', BAD_JOBS, ids=JOB_IDS)
@pytest.mark.parametrize('method', ['get_wcs_header', 'get_calibration', 'download',
                                    'get_annotations', 'get_objects_in_field', 'get_tags',
                                    'get_job_info', 'wait_job_id'])
def test_bad_job_id_nova(nova, job, match, method):
    if method == 'wait_job_id':
        if job is None:     # no job_id is the same as not giving one
            refused(nova.wait, r'wait\(\) needs a submission \(or job_id=\)', job_id=None)
            return
        refused(nova.wait, match, job_id=job, verbose=False)
    else:
        refused(getattr(nova, method), match, job)


@requires_local
@pytest.mark.parametrize('job, match', BAD_JOBS[::3], ids=JOB_IDS[::3])
def test_bad_job_id_local(local, job, match):
    refused(local.get_wcs_header, match, job)
    refused(local.download, match, job, 'wcs')
    if job is not None:
        refused(local.wait, match, job_id=job, verbose=False)


@pytest.mark.parametrize('submission, match', [
    (0, r'job id must be a positive integer'),
    (-1, r'job id must be a positive integer'),
    ('x1', r'A job must be an id'),
    (1.5, r'A job must be an id'),
    (fits.Header(), r'This header has no AN_JOBID'),
])
def test_bad_submission_id_nova(nova, submission, match):
    refused(nova.wait, match, submission, verbose=False)
    refused(nova.monitor_submission, match, submission, verbose=False)


def test_wait_job_id_header_without_job_card(nova):
    header = fits.Header({'AN_SUBID': 5})
    refused(nova.wait, r'job_id', job_id=header, verbose=False)


@pytest.mark.parametrize('nbright', [-1, 'abc', True, 2.5], ids=repr)
def test_bad_nbright(nova, nbright):
    refused(nova.get_annotations, r'nbright must be a non-negative int', 1, nbright=nbright)


@pytest.mark.parametrize('tag', ['', '   ', None, 5], ids=repr)
def test_bad_tag(nova, tag):
    refused(nova.find_jobs_by_tag, r'tag must be a non-empty string', tag)


# -- timeouts ---------------------------------------------------------------------------------
BAD_SOLVE_TIMEOUTS = [0, -1, True, False, 'ten', float('nan'), float('inf'), -float('inf'),
                      [10], 10 * u.s]


@pytest.mark.parametrize('value', BAD_SOLVE_TIMEOUTS, ids=repr)
@pytest.mark.parametrize('entry', ['solve_from_source_list', 'submit_source_list',
                                   'solve_from_image', 'submit_url', 'solve_many'])
def test_bad_solve_timeout_nova(nova, good_file, entry, value):
    refused(_entry_points(nova, good_file)[entry],
            r'solve_timeout must be a positive number of seconds', solve_timeout=value)


@pytest.mark.parametrize('value', BAD_SOLVE_TIMEOUTS[:7], ids=repr)
def test_bad_solve_timeout_wait(nova, value):
    refused(nova.wait, r'solve_timeout must be a positive number', 12, solve_timeout=value,
            verbose=False)
    refused(nova.wait, r'solve_timeout must be a positive number', job_id=Job(id=3,
            status='solving'), solve_timeout=value, verbose=False)
    refused(nova.solve_from_url, r'solve_timeout must be a positive number',
            'http://example.com/a.fits', solve_timeout=value, verbose=False)


@requires_local
@pytest.mark.parametrize('value', [0, -1, True, 'ten', float('nan'), float('inf')], ids=repr)
def test_bad_solve_timeout_local(local, good_file, value):
    for entry in _entry_points(local, good_file).values():
        refused(entry, r'solve_timeout must be a positive number', solve_timeout=value)


@pytest.mark.parametrize('value', [0, -1, 'x', True, float('nan'), float('inf'), 1e9, [5]],
                         ids=repr)
def test_bad_http_timeout(value):
    refused(AstrometryNetClass, r'timeout must be a positive number of seconds', timeout=value)
    client = AstrometryNetClass(backend='nova')
    refused(setattr, r'timeout must be a positive number', client, 'timeout', value)
    assert client.timeout == conf.timeout


# -- API keys, servers, backends --------------------------------------------------------------
BAD_KEYS = [12345, b'abcdefghijklmnop', 'has space', 'tab\there', 'new\nline', '   ',
            'a' * 300, ['abcdefghijklmnop'], 1.5, True,
            pytest.param('abc\x00def\x1bghijklm')]


@pytest.mark.parametrize('key', BAD_KEYS, ids=lambda k: repr(k)[:20])
def test_bad_api_key(nova, key):
    refused(AstrometryNetClass, r'api_key must be a string without blanks', api_key=key)
    refused(setattr, r'api_key must be a string without blanks', nova, 'api_key', key)
    assert nova.api_key == KEY
    refused(nova.login, r'api_key must be a string', key)


def test_setting_api_key_to_a_number(nova):
    refused(setattr, r'api_key must be a string without blanks.*got int', nova, 'api_key', 3)
    assert nova.api_key == KEY


@pytest.mark.parametrize('server', ['not a url', 'ftp://x', 'ftp://nova.astrometry.net', '',
                                    'http://', 'https://exa mple.com', 'nova.astrometry.net',
                                    5, b'http://x', 'file:///tmp/x'], ids=repr)
def test_bad_server(server):
    refused(AstrometryNetClass, r'server must be an http\(s\) URL such as '
            r'https://nova\.astrometry\.net', server=server)
    client = AstrometryNetClass(backend='nova')
    refused(setattr, r'server must be an http\(s\) URL', client, 'server', server)


@pytest.mark.parametrize('backend', ['gpu', '', 'Local', 1], ids=repr)
def test_bad_backend(backend):
    exc = refused(AstrometryNetClass, r"backend must be one of \('auto', 'nova', 'local'\)",
                  backend=backend)
    assert exc.setting == 'backend'


# -- batches ------------------------------------------------------------------------------------
@pytest.mark.parametrize('kwargs, match', [
    (dict(max_concurrency=0), r'max_concurrency must be a positive int, got 0'),
    (dict(max_concurrency=-2), r'max_concurrency must be a positive int'),
    (dict(max_concurrency=1.5), r'max_concurrency must be a positive int'),
    (dict(max_concurrency=True), r'max_concurrency must be a positive int'),
    (dict(max_concurrency='4'), r'max_concurrency must be a positive int'),
    (dict(radius=3), r'radius needs a centre'),
    (dict(raduis=3), r"Did you mean 'radius'"),
    (dict(scale_units='furlongs'), r"scale_units.*one of"),
    (dict(solve_timeout=0), r'solve_timeout must be a positive number'),
    pytest.param(dict(executor='gpu'), r'executor must be a concurrent\.futures\.Executor'),
])
@pytest.mark.parametrize('as_completed', [False, True])
def test_bad_batch_arguments_nova(nova, good_file, kwargs, match, as_completed):
    def run():
        out = nova.solve_many([good_file, good_file], verbose=False,
                              as_completed=as_completed, **kwargs)
        if as_completed:
            list(out)
    refused(run, match)


@requires_local
@pytest.mark.parametrize('kwargs, match', [
    (dict(max_concurrency=0), r'max_concurrency must be a positive int'),
    (dict(executor='gpu'), r"executor must be a concurrent\.futures\.Executor.*got 'gpu'"),
    (dict(executor=42), r'executor must be a concurrent\.futures\.Executor'),
    (dict(center_dec=95, center_ra=1), r'center_dec.*-90 <= center_dec <= 90'),
    (dict(solve_timeout=-1), r'solve_timeout must be a positive number'),
])
def test_bad_batch_arguments_local(local, good_file, kwargs, match):
    refused(local.solve_many, match, [good_file, good_file], verbose=False, **kwargs)


@pytest.mark.parametrize('images', [
    pytest.param(5),
    pytest.param(None),
    pytest.param('field.fits'),
], ids=repr)
def test_bad_batch_images(nova, images):
    refused(nova.solve_many, r'images', images, verbose=False)
