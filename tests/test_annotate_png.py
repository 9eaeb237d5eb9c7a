"""The annotated PNG and the image reading behind it (astrometry_query.local.annotate):
pictures decoded with Pillow, FITS data shown through astropy.visualization, and
plot-constellations drawing the objects on top, for a real local solve.
"""
import io

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import InvalidInputError
from astrometry_query.local import annotate
from astrometry_query.display import display_levels
from astrometry_query.drawing import draw_overlay
from astrometry_query.datasets import render_field

from real_server import requires_solver

Image = pytest.importorskip('PIL.Image')
pytest.importorskip('matplotlib')       # astropy.visualization needs it

pytestmark = [pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning'), requires_solver]

SHAPE = (400, 500)       # ny, nx
GOLD = (0xff, 0xd4, 0x3b)     # named stars (plotting.TYPE_COLORS['bright'])


@pytest.fixture(scope='module')
def field():
    return render_field(SkyCoord(56.75, 24.12, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                        shape=SHAPE, rotation=20 * u.deg, fwhm=2.5, background=50.0, seed=5)


@pytest.fixture
def wcs_file(field, tmp_path):
    """The true WCS of the field as a header-only file, as the solver writes wcs.fits."""
    path = tmp_path / 'wcs.fits'
    fits.PrimaryHDU(header=field.header()).writeto(path)
    return path


def _grey(field):
    return np.clip((field.data - 30.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)


def _open_png(data):
    im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    assert im.format == 'PNG'
    im.load()           # decodes every row: a truncated file fails here
    return im


@pytest.mark.slow
def test_annotated_png_of_a_solved_fits_image(field, tmp_path):
    path = field.writeto(tmp_path / 'pleiades.fits', truth='none')
    with conf.set_temp('local_data_dir', str(tmp_path / 'local')), \
            AstrometryNetClass(backend='local') as client:
        header = client.solve_from_image(path, scale=(11, 13) * u.arcsec / u.pix, verbose=False,
                                         cache=False, solve_timeout=60)
        png = client.download(header, 'annotated')
        saved = client.download(header, 'annotated', destination_dir=tmp_path)
        wcs_path = client.download(header, 'wcs', destination_dir=tmp_path)
    assert saved.read_bytes() == png
    im = _open_png(png)
    assert im.size == (SHAPE[1], SHAPE[0])
    rgb = np.asarray(im.convert('RGB')).astype(int)
    assert rgb.std() > 20
    # Under the drawing: the data through display_levels, with y = 1 at the bottom as
    # plot_annotations shows a FITS image (the PNG's row 0 is its top row, y = ny); the
    # drawing: coloured (not grey) pixels.
    levels = display_levels(field.data).astype(int)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    assert np.mean(grey & (np.abs(rgb[..., 0] - levels[::-1]) <= 1)) > 0.8
    assert np.mean(grey & (np.abs(rgb[..., 0] - levels) <= 1)) < 0.2      # not upside down
    assert np.sum(~grey) > 200
    # the sky is dark (its noise still shows), the brightest stars white
    assert 0 < np.median(levels) < 60 and levels.max() == 255
    # The brightest star (Atlas, 27 Tau) where the solution puts it: at FITS (x, y), it is
    # at column x - 1, row ny - y of the PNG (whose row 0 is the top one).
    star = field.stars[0]
    x, y = WCS(header).all_world2pix(star['ra'], star['dec'], 1)
    column, row = x - 1, SHAPE[0] - y
    near = np.hypot(*(np.indices(SHAPE) - np.array([row, column])[:, None, None])) < 2
    assert rgb[near].min(axis=1).max() == 255                            # white: the star
    mirrored = np.hypot(*(np.indices(SHAPE) - np.array([y - 1, column])[:, None, None])) < 2
    assert rgb[mirrored].max() < 200
    # ...and circled in gold there: 1.5 % of 500 px = 7.5 px in radius (its label is
    # beyond 9 px)
    gold = np.argwhere(np.all(np.abs(rgb - GOLD) <= 40, axis=2))          # (row, column)
    ring = gold[np.hypot(gold[:, 0] - row, gold[:, 1] - column) < 9]
    assert len(ring) > 20
    assert ring.mean(axis=0) == pytest.approx([row, column], abs=1.0)
    assert np.ptp(np.hypot(ring[:, 0] - row, ring[:, 1] - column)) < 4
    # ...and labelled, by its side (the drawing annotated_png lays over the image)
    fig = draw_overlay(annotate.annotations(wcs_path), (SHAPE[1], SHAPE[0]))
    labels = {t.get_text(): t for t in fig.axes[0].texts if t.get_gid() == 'annotation-label'}
    assert labels['Atlas'].xy == pytest.approx((x - 1, y - 1), abs=0.05)


@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_annotated_png_draws_8bit_pictures_as_they_are(field, wcs_file, tmp_path, mode):
    grey = _grey(field)
    pixels = np.dstack([grey, (grey * 0.8).astype(np.uint8), (grey * 0.6).astype(np.uint8)]) \
        if mode == 'RGB' else grey
    picture = tmp_path / 'field.png'
    Image.fromarray(pixels).save(picture)
    out = annotate.annotated_png(wcs_file, tmp_path / 'annotated.png', image_path=picture)
    im = _open_png(out)
    assert im.size == (SHAPE[1], SHAPE[0])
    rgb = np.asarray(im.convert('RGB')).astype(int)
    expected = pixels if mode == 'RGB' else np.dstack([grey] * 3)
    unchanged = np.all(rgb == expected, axis=2)
    assert 0.8 < unchanged.mean() < 1.0            # the picture, with the objects drawn on it


def test_annotated_png_of_a_source_list_is_a_black_canvas(wcs_file, tmp_path):
    out = annotate.annotated_png(wcs_file, tmp_path / 'annotated.png', image_path=None)
    rgb = np.asarray(_open_png(out).convert('RGB'))
    assert rgb.shape == (SHAPE[0], SHAPE[1], 3)
    assert np.mean(rgb.sum(axis=2) == 0) > 0.9 and rgb.max() > 0


@pytest.mark.parametrize('mode, dtype, ndim', [('L', np.uint8, 2), ('RGB', np.uint8, 3),
                                               ('RGBA', np.uint8, 3), ('I;16', np.uint16, 2),
                                               ('P', np.uint8, 2)])
def test_read_image_decodes_pictures_with_pillow(field, tmp_path, mode, dtype, ndim):
    grey = _grey(field)
    if mode == 'I;16':
        im = Image.fromarray(grey.astype(np.uint16) * 200)
    elif mode == 'RGB':
        im = Image.fromarray(np.dstack([grey, 255 - grey, grey // 2]))
    elif mode == 'RGBA':
        im = Image.fromarray(np.dstack([grey, 255 - grey, grey // 2, np.full_like(grey, 7)]))
    else:
        im = Image.fromarray(grey).convert(mode)
    path = tmp_path / ('field.gif' if mode == 'P' else 'field.png')
    im.save(path)
    pixels = annotate.read_image(path)
    assert pixels.dtype == dtype and pixels.ndim == ndim
    assert pixels.shape[:2] == SHAPE
    if mode == 'I;16':
        np.testing.assert_array_equal(pixels, grey.astype(np.uint16) * 200)
    elif mode in ('RGB', 'RGBA'):        # alpha dropped, colours kept, top row first
        np.testing.assert_array_equal(pixels, np.dstack([grey, 255 - grey, grey // 2]))
    else:                                # a grey palette (GIF) comes back as grey levels
        np.testing.assert_array_equal(pixels, grey)


def test_read_image_of_a_jpeg(field, tmp_path):
    grey = _grey(field)
    path = tmp_path / 'field.jpg'
    Image.fromarray(grey).save(path, quality=95)
    pixels = annotate.read_image(path)
    assert pixels.shape == SHAPE and pixels.dtype == np.uint8
    assert np.mean(np.abs(pixels.astype(int) - grey)) < 3


def test_read_image_refuses_what_it_cannot_decode(tmp_path):
    (tmp_path / 'notes.txt').write_text('not an image')
    with pytest.raises(InvalidInputError, match='not a FITS, PNG, JPEG or GIF'):
        annotate.read_image(tmp_path / 'notes.txt')
    buf = io.BytesIO()
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(buf, format='PNG')
    (tmp_path / 'cut.png').write_bytes(buf.getvalue()[:40])
    with pytest.raises(InvalidInputError, match='cannot be decoded'):
        annotate.read_image(tmp_path / 'cut.png')


def test_new_fits_of_a_colour_picture_is_its_mean_grey(field, wcs_file, tmp_path):
    grey = _grey(field)
    rgb = np.dstack([grey, 255 - grey, grey // 2])
    Image.fromarray(rgb).save(tmp_path / 'field.png')
    out = annotate.new_fits(tmp_path / 'field.png', wcs_file, tmp_path / 'new.fits')
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul[0].data, np.round(rgb.mean(axis=2)).astype(np.uint8))
        assert hdul[0].header['CTYPE1'].startswith('RA---TAN')


def test_display_levels():
    rng = np.random.default_rng(2)
    data = rng.normal(100.0, 5.0, (200, 300)).astype(np.float32)
    data[50:60, 50:90] = np.linspace(1e3, 3e4, 400).reshape(10, 40)      # stars: 0.7 % of pixels
    data[0, :5] = np.nan
    levels = display_levels(data)
    assert levels.dtype == np.uint8 and levels.shape == data.shape
    assert np.all(levels[0, :5] == 0)
    good = np.isfinite(data)
    order = np.argsort(data[good])
    assert np.all(np.diff(levels[good][order].astype(int)) >= 0)      # monotonic
    assert levels[59, 89] == 255 and np.median(levels) < 60
    assert not display_levels(np.full((20, 20), 3.0)).any()
    assert not display_levels(np.full((20, 20), np.nan)).any()


def test_annotated_png_labels_do_not_overlap(tmp_path):
    """The bundled example (near M42): the Trapezium's stars crowd M 42's centre."""
    from astrometry_query.cli import example_image_path
    image = example_image_path()
    with conf.set_temp('local_data_dir', str(tmp_path / 'local')), \
            AstrometryNetClass(backend='local') as client:
        header = client.solve_from_image(image, verbose=False, cache=False, solve_timeout=60)
        wcs_path = client.download(header, 'wcs', destination_dir=tmp_path)
        objects = client.get_annotations(header)
        png = _open_png(client.download(header, 'annotated'))
    # the drawing annotated_png lays over the image
    fig = draw_overlay(annotate.annotations(wcs_path), png.size)
    ax = fig.axes[0]
    assert tuple(png.size) == tuple(fig.canvas.get_width_height()) == (header['IMAGEW'],
                                                                       header['IMAGEH'])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_gid() == 'annotation-label']
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), 'labels overlap'
    # every label on the picture, every object circled, a label left out where crowded
    frame = fig.bbox
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
               for b in boxes)
    (circles,) = [c for c in ax.collections if c.get_gid() == 'annotations']
    assert len(circles.get_paths()) == len(objects)
    named = [n for n in objects['name'] if n]
    assert 5 <= len(labels) < len(named)
    # the most important are kept: the Messier objects and the brightest named star
    texts = [t.get_text() for t in labels]
    assert {'M 42 (NGC 1976)', 'M 43 (NGC 1982)'} <= set(texts)
    brightest = next(r['name'] for r in objects if r['type'] == 'bright')
    assert brightest in texts
    # readable: at least 11 px high (2 % of the larger side here)
    assert min(b.height for b in boxes) >= 11
