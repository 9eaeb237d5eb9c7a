"""Camera formats (astrometry_query.formats, image_meta): TIFF (16-bit, colour,
float, multi-page), XISF, camera RAW (a DNG written from a Bayer mosaic),
colour/16-bit/palette/alpha PNG and JPEG, each written here from a rendered
field and solved by the real local solver, in a batch, and through the real
server; their pixel grid (the stored rows, no EXIF rotation); their metadata
as the header cards the hints read."""
import shutil

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import InvalidInputError
from astrometry_query.formats import RAW_DEVELOPMENT
from astrometry_query.image_meta import exif_cards, xisf_cards
from astrometry_query.images import (IMAGE_SUFFIXES, expand_images, file_kind, luminance,
                                     open_image, read_picture)
from astrometry_query.results import job_ref
from astrometry_query.server.ingest import classify
from astrometry_query.datasets import render_field, wcs_rms_error
from real_server import requires_solver

imagecodecs = pytest.importorskip('imagecodecs')
tifffile = pytest.importorskip('tifffile')
xisf = pytest.importorskip('xisf')
rawpy = pytest.importorskip('rawpy')
PIL = pytest.importorskip('PIL.Image')

CENTRE = SkyCoord('05h35m17s -05d23m28s')
SCALE = 11.0            # arcsec/pixel
SHAPE = (400, 500)
#: solved WCS vs the truth, RMS pixels: 16-bit and float files, and 8-bit or lossy ones
FINE, COARSE = 0.15, 0.3
#: A colour camera's channel responses to the (white) stars: R, G, B.
GAINS = (0.7, 1.0, 0.55)
#: Pixel size and focal length giving SCALE: 206.265 * 4.3 / 80.63 = 11.0 arcsec/pixel.
PIXEL_UM, FOCAL_MM = 4.3, 80.63


@pytest.fixture(autouse=True)
def fast_polls():
    with conf.set_temp('poll_interval', 0.1):
        yield


@pytest.fixture(scope='module')
def field():
    return render_field(CENTRE, pixel_scale=SCALE * u.arcsec / u.pix, shape=SHAPE,
                        rotation=25 * u.deg, fwhm=2.8, seed=5)


@pytest.fixture(scope='module')
def local():
    with AstrometryNetClass(backend='local') as client:
        yield client


# -- writing a field in each format ----------------------------------------------------------
def _linear16(data, gain=1.0):
    """Counts as a 16-bit camera records them (the brightest star unclipped)."""
    return np.clip(np.round(0.4 * gain * data), 0, 65535).astype(np.uint16)


def _stretch(data, top):
    """A display stretch (asinh) to 0..top, as a picture of the sky is saved."""
    s = np.arcsinh(np.clip(data - 70.0, 0, None) / 20.0)
    return s / s.max() * top


def _rgb(data, make):
    return np.dstack([make(data * g) for g in GAINS])


def _bayer(data, black=256):
    """An RGGB mosaic of the field: each photosite sees its filter's share, plus a
    black level, as a sensor records it."""
    gain = np.empty(data.shape)
    gain[0::2, 0::2], gain[1::2, 1::2] = GAINS[0], GAINS[2]
    gain[0::2, 1::2] = gain[1::2, 0::2] = GAINS[1]
    return (black + _linear16(data, gain)).clip(0, 65535).astype(np.uint16)


def write_dng(path, mosaic, orientation=1, tags=()):
    """A DNG of a 16-bit RGGB mosaic with pidng (the mosaic's rows stored as given)."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import (CalibrationIlluminant, CFAPattern, DNGVersion,
                            PhotometricInterpretation)
    ny, nx = mosaic.shape
    t = DNGTags()
    for tag, value in [(Tag.ImageWidth, nx), (Tag.ImageLength, ny), (Tag.TileWidth, nx),
                       (Tag.TileLength, ny), (Tag.Orientation, orientation),
                       (Tag.PhotometricInterpretation,
                        PhotometricInterpretation.Color_Filter_Array),
                       (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16),
                       (Tag.CFARepeatPatternDim, [2, 2]), (Tag.CFAPattern, CFAPattern.RGGB),
                       (Tag.BlackLevel, 256), (Tag.WhiteLevel, 65535),
                       (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1],
                                           [0, 1], [0, 1], [1, 1]]),
                       (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
                       (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
                       (Tag.Make, 'Canon'), (Tag.Model, 'EOS 6D'),
                       (Tag.DNGVersion, DNGVersion.V1_4),
                       (Tag.DNGBackwardVersion, DNGVersion.V1_2), *tags]:
        t.set(tag, value)
    writer = RAW2DNG()
    writer.options(t, path=str(path.parent), compress=False)
    writer.convert(mosaic, filename=path.stem)
    return path


def _write_xisf(path, data, **meta):
    xisf.XISF.write(str(path), data if data.ndim == 3 else data[..., None], 'astrometry_query tests',
                    meta or None)
    return path


def _save(path, picture, **kw):
    (picture if isinstance(picture, PIL.Image) else PIL.fromarray(picture)).save(path, **kw)
    return path


def _multipage(path, data):
    # a reduced-resolution preview first (skipped), then the field, then another image
    with tifffile.TiffWriter(path) as tif:
        tif.write(_linear16(data)[::4, ::4], subfiletype=1)
        tif.write(_linear16(data))
        tif.write(_linear16(data)[::-1].copy())
    return path


def _tiff(path, data, **kw):
    tifffile.imwrite(path, data, **kw)
    return path


def _picture8(data):
    """An 8-bit colour picture of the field, stretched for the eye."""
    return _rgb(data, lambda a: np.round(_stretch(a, 255)).astype(np.uint8))


def _png16_rgb(path, data):
    path.write_bytes(imagecodecs.png_encode(_rgb(data, _linear16)))     # Pillow cannot
    return path


#: name -> (write the field to a file in a directory, file kind, WCS limit in pixels)
FORMATS = {
    'tiff-16bit': (lambda d, f: _tiff(d / 'f.tif', _linear16(f.data)), 'tiff', FINE),
    'tiff-rgb16': (lambda d, f: _tiff(d / 'c.tiff', _rgb(f.data, _linear16), photometric='rgb'),
                   'tiff', FINE),
    'tiff-float32': (lambda d, f: _tiff(d / 'fl.tif', f.data), 'tiff', FINE),
    'tiff-planar-lzw': (lambda d, f: _tiff(d / 'p.tif', np.moveaxis(_rgb(f.data, _linear16), -1, 0),
                                           photometric='rgb', planarconfig='separate',
                                           compression='lzw'), 'tiff', FINE),
    'tiff-multipage': (lambda d, f: _multipage(d / 'm.tif', f.data), 'tiff', FINE),
    'xisf-mono16': (lambda d, f: _write_xisf(d / 'mono.xisf', _linear16(f.data)), 'xisf', FINE),
    'xisf-rgb-float': (lambda d, f: _write_xisf(d / 'rgb.xisf',
                                                _rgb(f.data, lambda a: (a / 1e5).astype('f4'))),
                       'xisf', FINE),
    'dng': (lambda d, f: write_dng(d / 'shot.dng', _bayer(f.data)), 'raw', FINE),
    'png-grey16': (lambda d, f: _save(d / 'g16.png', _linear16(f.data)), 'png', FINE),
    'png-rgb16': (lambda d, f: _png16_rgb(d / 'c16.png', f.data), 'png', FINE),
    'png-rgb8': (lambda d, f: _save(d / 'c8.png', _picture8(f.data)), 'png', COARSE),
    'png-palette': (lambda d, f: _save(d / 'pal.png', PIL.fromarray(_picture8(f.data))
                                       .quantize(256)), 'png', COARSE),
    'png-rgba': (lambda d, f: _save(d / 'a.png', np.dstack([_picture8(f.data),
                                                            np.full(SHAPE, 200, np.uint8)])),
                 'png', COARSE),
    'jpeg-rgb': (lambda d, f: _save(d / 'c.jpg', _picture8(f.data), quality=90), 'jpeg', COARSE),
    'bmp-rgb': (lambda d, f: _save(d / 'c.bmp', _picture8(f.data)), 'bmp', COARSE),
    'webp-lossless': (lambda d, f: _save(d / 'c.webp', _picture8(f.data), lossless=True), 'webp',
                      COARSE),
}


@pytest.fixture(scope='module')
def files(field, tmp_path_factory):
    """Every format's file of the field, each in its own directory."""
    out = {}
    for name, (write, _, _) in FORMATS.items():
        folder = tmp_path_factory.mktemp(name)
        out[name] = write(folder, field)
    return out


# -- every format solves to the truth ---------------------------------------------------------
@pytest.mark.slow
@requires_solver
@pytest.mark.parametrize('name', list(FORMATS))
def test_every_format_solves_to_the_truth(name, files, field, local):
    path, (_, kind, limit) = files[name], FORMATS[name]
    img = open_image(path)
    assert img.kind == kind and img.shape == SHAPE and img.flips_y
    assert file_kind(path) == (kind, False)
    header = local.solve_from_image(path, verbose=False, cache=False)
    assert wcs_rms_error(field.wcs, header, SHAPE) < limit


def test_the_luminance_is_the_mean_of_the_channels_as_stored(files):
    stored = tifffile.imread(files['tiff-rgb16'])
    pixels = read_picture(files['tiff-rgb16'])
    assert pixels.dtype == np.uint16 and pixels.shape == SHAPE + (3,)
    np.testing.assert_array_equal(pixels, stored)
    np.testing.assert_allclose(open_image(files['tiff-rgb16']).pixels(),
                               stored.astype(float).mean(axis=2), rtol=1e-6)
    planar = read_picture(files['tiff-planar-lzw'])
    np.testing.assert_array_equal(planar, stored)       # (3, ny, nx) on disk, (ny, nx, 3) here


def test_pictures_keep_their_depth_and_drop_alpha_and_palettes(files):
    deep = read_picture(files['png-rgb16'])
    assert deep.dtype == np.uint16 and deep.shape == SHAPE + (3,) and deep.max() > 255
    np.testing.assert_array_equal(deep, imagecodecs.png_decode(files['png-rgb16'].read_bytes()))
    rgba = read_picture(files['png-rgba'])
    assert rgba.shape == SHAPE + (3,)                           # alpha dropped
    np.testing.assert_array_equal(rgba, np.asarray(PIL.open(files['png-rgba']))[..., :3])
    palette = read_picture(files['png-palette'])
    assert palette.shape == SHAPE + (3,) and palette.dtype == np.uint8
    np.testing.assert_array_equal(palette, np.asarray(PIL.open(files['png-palette'])
                                                      .convert('RGB')))
    grey = read_picture(files['png-grey16'])
    assert grey.dtype == np.uint16 and grey.shape == SHAPE
    assert read_picture(files['tiff-float32']).dtype == np.float32
    assert read_picture(files['xisf-rgb-float']).shape == SHAPE + (3,)
    np.testing.assert_array_equal(luminance(grey), grey.astype(np.float32))


def test_grey_saved_as_colour_comes_back_grey(field, tmp_path):
    grey = np.round(_stretch(field.data, 255)).astype(np.uint8)
    for path, picture in [(tmp_path / 'g.gif', PIL.fromarray(grey).convert('P')),
                          (tmp_path / 'g.png', np.dstack([grey] * 3)),
                          (tmp_path / 'g.tif', np.dstack([grey] * 3))]:
        if path.suffix == '.tif':
            tifffile.imwrite(path, picture, photometric='rgb')
        else:
            _save(path, picture)
        pixels = read_picture(path)
        assert pixels.shape == SHAPE and pixels.dtype == np.uint8, path.name
        np.testing.assert_array_equal(pixels, grey)


def test_multipage_tiff_reads_its_first_full_size_image(files, field):
    path = files['tiff-multipage']
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 3 and tif.pages[0].shape == (100, 125)
    np.testing.assert_array_equal(read_picture(path), _linear16(field.data))
    assert open_image(path).shape == SHAPE


def test_raw_is_developed_linearly_without_white_balance(files, field):
    path = files['dng']
    assert RAW_DEVELOPMENT['demosaic_algorithm'] == 'LINEAR' and RAW_DEVELOPMENT['gamma'] == (1, 1)
    rgb = read_picture(path)
    assert rgb.dtype == np.uint16 and rgb.shape == SHAPE + (3,)
    with rawpy.imread(str(path)) as raw:
        mosaic = raw.raw_image_visible.astype(float)
    # LibRaw keeps the photosites it measured: a red site's R is its count, black
    # subtracted, scaled to 16 bits by one factor for every channel (no white balance).
    factor = 65535 / (65535 - 256)
    np.testing.assert_allclose(rgb[0::2, 0::2, 0], (mosaic[0::2, 0::2] - 256) * factor, atol=1)
    np.testing.assert_allclose(rgb[1::2, 1::2, 2], (mosaic[1::2, 1::2] - 256) * factor, atol=1)
    np.testing.assert_allclose(rgb[0::2, 1::2, 1], (mosaic[0::2, 1::2] - 256) * factor, atol=1)
    # linear: the sky and a star's peak keep the ratio of the field's
    img = open_image(path)
    plane = img.pixels()
    star = field.stars[np.argmax(field.stars['flux'])]
    px, py = int(round(star['x'])), int(round(star['y']))
    assert np.unravel_index(np.argmax(plane[py - 3:py + 4, px - 3:px + 4]), (7, 7)) == (3, 3)
    assert img.header['INSTRUME'] == 'Canon EOS 6D'


# -- orientation: the stored rows, never an EXIF rotation -------------------------------------
def _exif(orientation=6, **tags):
    from PIL.TiffImagePlugin import IFDRational
    exif = PIL.Exif()
    exif[0x0112] = orientation
    exif[0x010F], exif[0x0110] = 'Canon', 'Canon EOS 6D'
    ifd = exif.get_ifd(0x8769)
    for code, value in tags.items():
        ifd[int(code[1:], 16)] = IFDRational(*value) if isinstance(value, tuple) else value
    return exif


@pytest.mark.slow
@requires_solver
@pytest.mark.parametrize('kind', ['jpeg', 'png', 'tiff', 'dng'])
def test_orientation_tags_are_not_applied(kind, field, local, tmp_path):
    """A camera held upright writes Orientation 6 (turn 90 degrees to view):
    the solution is for the rows as stored, as Pillow, tifffile and rawpy's
    ``raw_image_visible`` give them."""
    picture = np.round(_stretch(field.data, 255)).astype(np.uint8)
    if kind == 'jpeg':
        path = _save(tmp_path / 'up.jpg', picture, quality=92, exif=_exif())
        stored = np.asarray(PIL.open(path))
    elif kind == 'png':
        path = _save(tmp_path / 'up.png', _linear16(field.data), exif=_exif())
        stored = np.asarray(PIL.open(path))
    elif kind == 'tiff':
        path = tmp_path / 'up.tif'
        tifffile.imwrite(path, _linear16(field.data), extratags=[(274, 'H', 1, 6, True)])
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].tags['Orientation'].value == 6
        stored = tifffile.imread(path)
    else:
        path = write_dng(tmp_path / 'up.dng', _bayer(field.data), orientation=6)
        with rawpy.imread(str(path)) as raw:
            stored = raw.raw_image_visible.copy()
            assert raw.sizes.flip != 0                  # rawpy's default would turn it...
            assert raw.postprocess(half_size=True).shape[:2] == (SHAPE[1] // 2, SHAPE[0] // 2)
    if kind in ('jpeg', 'png'):
        assert PIL.open(path).getexif()[0x0112] == 6
    assert stored.shape[:2] == SHAPE
    img = open_image(path)
    assert img.shape == SHAPE                           # ...we do not
    if kind != 'dng':
        np.testing.assert_array_equal(read_picture(path), stored)
    header = local.solve_from_image(path, verbose=False, cache=False)
    assert wcs_rms_error(field.wcs, header, SHAPE) < COARSE


# -- metadata become the cards the hints read --------------------------------------------------
def _scale_tags():
    """EXIF for a 4.3 micron pixel behind an 80.63 mm lens (11 arcsec/pixel)."""
    return dict(x920A=(8063, 100), xA20E=(100000, 43), xA20F=(100000, 43), xA210=3,
                x829A=(120, 1), x9003='2024:01:02 03:04:05', x9011='+02:00')


@requires_solver
@pytest.mark.parametrize('kind', ['jpeg', 'tiff', 'dng'])
def test_exif_focal_length_and_pixel_size_give_the_scale_hint(kind, field, local, tmp_path):
    if kind == 'jpeg':
        path = _save(tmp_path / 'hint.jpg', np.round(_stretch(field.data, 255)).astype(np.uint8),
                     quality=92, exif=_exif(1, **_scale_tags()))
    elif kind == 'tiff':
        path = tmp_path / 'hint.tif'
        tifffile.imwrite(path, _linear16(field.data), extratags=[
            (37386, 5, 1, (8063, 100), True), (41486, 5, 1, (10000, 43), True),
            (41487, 5, 1, (10000, 43), True), (41488, 'H', 1, 4, True),       # pixels per mm
            (33434, 5, 1, (120, 1), True), (271, 's', 0, 'ZWO', True),
            (272, 's', 0, 'ASI1600MM', True), (36867, 's', 0, '2024:01:02 03:04:05', True)])
    else:
        from pidng.core import Tag
        path = write_dng(tmp_path / 'hint.dng', _bayer(field.data), tags=[
            (Tag.FocalLength, [[8063, 100]]), (Tag.ExposureTime, [[120, 1]]),
            (Tag.FocalPlaneXResolution, [[10000, 43]]), (Tag.FocalPlaneYResolution, [[10000, 43]]),
            (Tag.FocalPlaneResolutionUnit, 4), (Tag.DateTimeOriginal, '2024:01:02 03:04:05')])
    h = open_image(path).header
    assert h['FOCALLEN'] == pytest.approx(FOCAL_MM) and h['XPIXSZ'] == pytest.approx(PIXEL_UM)
    assert h['EXPTIME'] == 120.0 and h['DATE-OBS'].startswith('2024-01-02T0')
    assert h['INSTRUME'] in ('Canon EOS 6D', 'ZWO ASI1600MM')
    header = local.solve_from_image(path, verbose=False, cache=False)
    assert wcs_rms_error(field.wcs, header, SHAPE) < COARSE
    result = local.backend.result(job_ref(header)[0])
    assert result['hints'] == ['FOCALLEN/XPIXSZ']
    first = result['attempts'][0]
    assert first['solved'] and 'scale_lower' in first['hints']


def test_exif_cards():
    cards = exif_cards({'FocalLength': (500, 1), 'FocalPlaneXResolution': 2000.0,
                        'FocalPlaneResolutionUnit': 2, 'ExposureTime': 0.5,
                        'Make': 'NIKON CORPORATION', 'Model': 'NIKON D810',
                        'DateTimeOriginal': '2023:08:12 23:59:58', 'SubsecTimeOriginal': '25',
                        'OffsetTimeOriginal': '-04:00'}, (4912, 7360))
    assert cards['FOCALLEN'] == 500 and cards['XPIXSZ'] == pytest.approx(12.7)   # 25400/2000
    assert cards['YPIXSZ'] == cards['XPIXSZ'] and cards['EXPTIME'] == 0.5
    assert cards['INSTRUME'] == 'NIKON D810'
    assert cards['DATE-OBS'] == '2023-08-13T03:59:58.250' and 'UTC' in cards.comments['DATE-OBS']
    # no focal-plane resolution: the 35 mm equivalent over the image's own diagonal
    cards = exif_cards({'FocalLength': 4.25, 'FocalLengthIn35mmFilm': 26}, (3000, 4000))
    assert cards['XPIXSZ'] == pytest.approx(43266.6 * 4.25 / (26 * 5000), rel=1e-4)
    assert cards['FOCALLEN'] == 4.25
    cards = exif_cards({'FocalLength': (0, 0), 'FocalPlaneResolutionUnit': 1,
                        'FocalPlaneXResolution': 100.0, 'DateTimeOriginal': 'garbage'}, (10, 10))
    assert 'XPIXSZ' not in cards and 'FOCALLEN' not in cards and 'DATE-OBS' not in cards
    # a camera JPEG scaled down to half its width: twice the pixel size
    cards = exif_cards({'FocalLength': 500.0, 'FocalPlaneXResolution': 2000.0,
                        'PixelXDimension': 7360}, (2456, 3680))
    assert cards['XPIXSZ'] == pytest.approx(25.4)
    existing = fits.Header({'EXPTIME': 300.0})
    assert exif_cards({'ExposureTime': 1.0}, (10, 10), existing)['EXPTIME'] == 300.0


def test_xisf_keeps_its_fits_keywords_and_properties(field, tmp_path):
    def prop(name, kind, value):
        return {'id': name, 'type': kind, 'value': value}
    meta = {'FITSKeywords': {'OBJECT': [{'value': "'M42'", 'comment': 'target'}],
                             'EXPTIME': [{'value': '300.', 'comment': 'from the keyword'}],
                             'BZERO': [{'value': '32768', 'comment': ''}],
                             'HISTORY': [{'value': '', 'comment': 'calibrated'}]},
            'XISFProperties': {
                p['id']: p for p in [
                    prop('Instrument:Telescope:FocalLength', 'Float32', FOCAL_MM / 1000),
                    prop('Instrument:Sensor:XPixelSize', 'Float32', PIXEL_UM),
                    prop('Instrument:ExposureTime', 'Float32', 10.0),
                    prop('Instrument:Camera:Name', 'String', 'ZWO ASI294MC Pro'),
                    prop('Observation:Time:Start', 'TimePoint', '2024-02-03T04:05:06+01:00'),
                    prop('Observation:Center:RA', 'Float64', 83.82),
                    prop('Observation:Center:Dec', 'Float64', -5.39)]}}
    path = _write_xisf(tmp_path / 'meta.xisf', _linear16(field.data), **meta)
    img = open_image(path)
    h = img.header
    assert h['OBJECT'] == 'M42' and h['EXPTIME'] == 300.0       # the keyword wins
    assert 'BZERO' not in h and 'calibrated' in str(h['HISTORY'])
    assert h['FOCALLEN'] == pytest.approx(FOCAL_MM, rel=1e-5)    # metres -> mm
    assert h['XPIXSZ'] == pytest.approx(PIXEL_UM, rel=1e-5)
    assert h['INSTRUME'] == 'ZWO ASI294MC Pro' and h['DATE-OBS'] == '2024-02-03T03:05:06'
    assert (h['RA'], h['DEC']) == (83.82, -5.39)
    assert img.meta['xisf_properties']['Instrument:Camera:Name'] == 'ZWO ASI294MC Pro'
    assert img.meta['fits_keywords']['OBJECT'][0]['comment'] == 'target'
    from astrometry_query.hints import header_hints
    hints = header_hints(h, img.shape)
    assert hints.scale_source == 'FOCALLEN/XPIXSZ' and hints.position_source == 'RA/DEC'
    assert xisf_cards({}, {}) == fits.Header()


def test_astrotiff_header_is_read(field, tmp_path):
    astro = fits.Header({'SIMPLE': True, 'BITPIX': 16, 'NAXIS': 2, 'NAXIS1': 500, 'NAXIS2': 400,
                         'FOCALLEN': 400.0, 'XPIXSZ': 3.76, 'OBJECT': 'M42'})
    path = tmp_path / 'astro.tif'
    tifffile.imwrite(path, _linear16(field.data), description=astro.tostring(sep='\n'),
                     metadata=None)
    h = open_image(path).header
    assert h['FOCALLEN'] == 400.0 and h['OBJECT'] == 'M42' and 'NAXIS1' not in h


# -- recognising the files ---------------------------------------------------------------------
def test_file_kinds_from_first_bytes(files, tmp_path):
    for name, (_, kind, _) in FORMATS.items():
        assert file_kind(files[name])[0] == kind, name
    # a DNG named .tif is still RAW (DNGVersion), a CR2 by its marker; other RAW by magic
    dng_as_tif = tmp_path / 'renamed.tif'
    shutil.copy(files['dng'], dng_as_tif)
    assert file_kind(dng_as_tif)[0] == 'raw'
    for head, name in [(b'II*\x00\x10\x00\x00\x00CR\x02\x00', 'x.bin'), (b'IIRO\x08\x00', 'x.bin'),
                       (b'IIU\x00\x18\x00', 'x.bin'), (b'FUJIFILMCCD-RAW 0201', 'x.bin'),
                       (b'\x00\x00\x00\x18ftypcrx \x00\x00', 'x.bin'),
                       (b'whatever the maker wrote', 'x.NEF')]:
        (tmp_path / name).write_bytes(head + b'\x00' * 64)
        assert file_kind(tmp_path / name) == ('raw', False), head
    (tmp_path / 'x.txt').write_bytes(b'II' + b'\x00' * 64)
    assert file_kind(tmp_path / 'x.txt') == (None, False)


def test_directories_list_the_new_endings(files, tmp_path):
    for suffix in ('.xisf', '.cr2', '.cr3', '.nef', '.arw', '.dng', '.orf', '.rw2', '.raf',
                   '.tif', '.tiff'):
        assert suffix in IMAGE_SUFFIXES
    for name in ('tiff-16bit', 'xisf-mono16', 'dng', 'jpeg-rgb'):
        shutil.copy(files[name], tmp_path / files[name].name)
    (tmp_path / 'notes.txt').write_text('seeing 2"')
    assert sorted(p.name for p in expand_images(tmp_path)) == ['c.jpg', 'f.tif', 'mono.xisf',
                                                               'shot.dng']


def test_unreadable_files_say_why(files, tmp_path):
    bad = tmp_path / 'bad.tif'
    bad.write_bytes(files['tiff-16bit'].read_bytes()[:200])
    with pytest.raises(InvalidInputError, match=r'^image: bad\.tif .*TIFF'):
        open_image(bad).pixels()
    fake = tmp_path / 'fake.cr2'
    fake.write_bytes(b'not a raw file at all' * 10)
    with pytest.raises(InvalidInputError, match=r'^image: fake\.cr2 is not a readable camera RAW'):
        open_image(fake)
    broken = tmp_path / 'broken.xisf'
    broken.write_bytes(b'XISF0100' + b'\x00' * 100)
    with pytest.raises(InvalidInputError, match=r'^image: broken\.xisf is not a readable XISF'):
        open_image(broken)
    import gzip
    packed = tmp_path / 'f.tif.gz'
    packed.write_bytes(gzip.compress(files['tiff-16bit'].read_bytes()))
    with pytest.raises(InvalidInputError, match='gzip-compressed TIFF file: only FITS'):
        open_image(packed)
    cmyk = tmp_path / 'cmyk.tif'
    tifffile.imwrite(cmyk, np.zeros((20, 20, 4), np.uint8), photometric='separated')
    with pytest.raises(InvalidInputError, match='SEPARATED TIFF'):
        open_image(cmyk).pixels()


def test_pictures_pickle_as_their_path(files):
    import pickle
    img = open_image(files['xisf-mono16'])
    clone = pickle.loads(pickle.dumps(img))
    assert clone.kind == 'xisf' and clone.path == img.path and clone.shape == SHAPE
    np.testing.assert_array_equal(clone.pixels(), img.pixels())


# -- batches and the server --------------------------------------------------------------------
@requires_solver
def test_solve_many_takes_a_folder_of_camera_formats(files, field, local, tmp_path):
    names = ['tiff-rgb16', 'xisf-mono16', 'dng', 'png-rgb8']
    for name in names:
        shutil.copy(files[name], tmp_path / files[name].name)
    table = local.solve_many(tmp_path, verbose=False, cache=False, executor='threads',
                             scale=(9, 13) * u.arcsec / u.pix)
    assert len(table) == len(names)
    for row in table:
        assert row['status'] == 'success', row['error']
        assert wcs_rms_error(field.wcs, row['header'], SHAPE) < COARSE


@pytest.mark.parametrize('name', ['tiff-16bit', 'tiff-rgb16', 'xisf-rgb-float', 'dng', 'bmp-rgb',
                                  'webp-lossless'])
def test_server_sniffing_recognises_the_formats(name, files, tmp_path):
    path = tmp_path / 'upload'          # stored under the uploaded name; a tar member has none
    shutil.copy(files[name], path)
    found = classify(path, files[name].name, {})
    assert found['kind'] == FORMATS[name][1]
    assert (found['width'], found['height']) == (SHAPE[1], SHAPE[0])
    bad = tmp_path / 'bad.tif'
    bad.write_bytes(files['tiff-16bit'].read_bytes()[:100])
    with pytest.raises(ValueError, match='bad.tif'):
        classify(bad, 'bad.tif', {})


@requires_solver
@pytest.mark.parametrize('name', ['tiff-16bit', 'xisf-mono16', 'dng', 'webp-lossless'])
def test_server_solves_uploaded_camera_files(name, files, field, nova_server):
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url,
                            backend='nova') as nova:
        header = nova.solve_from_image(files[name], force_image_upload=True, verbose=False,
                                       cache=False, scale=(9, 13) * u.arcsec / u.pix)
        assert wcs_rms_error(field.wcs, header, SHAPE) < FORMATS[name][2]
        job = nova.get_job_info(header)
        assert job.solved and job.original_filename == files[name].name
