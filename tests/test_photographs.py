"""Photographs (issue 18): colour pictures of nebulae, galaxies and clusters,
stretched, vignetted, with gradients, trails and hot pixels, in every
encoding they come in (`astrometry_query.datasets.render_photograph`,
`write_photograph`).

Source extraction under a nebula that fills the frame (the sky is followed
finely and stars are found on the light's sharp part, thresholded on its
local noise), trails not taken for rows of stars, transparent pixels as no
data, BMP and WebP read; and the pictures solved by the real local solver
against the true WCS of the pixels as stored (EXIF orientation never
applied)."""
import math

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query import sources
from astrometry_query.datasets import (PHOTO_ENCODINGS, render_photograph, wcs_rms_error,
                                       write_photograph)
from astrometry_query.formats import file_kind, read_picture
from astrometry_query.images import open_image
from astrometry_query.sources import extract_sources
from real_server import requires_solver

PIL = pytest.importorskip('PIL.Image')
pytest.importorskip('imagecodecs')

#: Solved WCS vs the truth, RMS pixels: under a bright nebula, in 256 colours (a palette
#: quantises the nebula's light and the stars' in steps), and otherwise.
NEBULA_RMS, PALETTE_RMS, PHOTO_RMS = 1.0, 1.0, 0.5
FRAME = dict(pixel_scale=3 * u.arcsec / u.pix, shape=(800, 1000), rotation=25 * u.deg,
             sip={'A_2_0': 2e-7, 'B_0_2': -1.5e-7}, hot_pixels=40)


def _smooth(shape, rng, scale):
    """Random light varying over ``scale`` pixels, 0-1."""
    from scipy.ndimage import gaussian_filter
    light = gaussian_filter(rng.normal(size=shape), scale)
    return (light - light.min()) / (light.max() - light.min())


def _stars(shape, rng, n, peak, fwhm=3.0):
    ny, nx = shape
    x, y = rng.uniform(20, nx - 20, n), rng.uniform(20, ny - 20, n)
    yy, xx = np.mgrid[0:ny, 0:nx]
    image = np.zeros(shape)
    s2 = 2 * (fwhm / 2.3548) ** 2
    for xi, yi in zip(x, y):
        sl = slice(int(yi) - 8, int(yi) + 9), slice(int(xi) - 8, int(xi) + 9)
        image[sl] += peak * np.exp(-((xx[sl] - xi) ** 2 + (yy[sl] - yi) ** 2) / s2)
    return image, x, y


def _found(table, x, y, tol=1.0):
    """How many of the stars at 0-based (x, y) are among the sources (1-based)."""
    sx, sy = table['x'].value - 1, table['y'].value - 1
    return sum(np.min(np.hypot(sx - xi, sy - yi)) < tol for xi, yi in zip(x, y)) if len(sx) else 0


# -- extraction under a nebula ----------------------------------------------------------------
def test_pixel_noise_is_blind_to_smooth_light():
    rng = np.random.default_rng(1)
    shape = (400, 500)
    image = (rng.normal(0, 2.0, shape) + 1000 * _smooth(shape, rng, 20)).astype(np.float32)
    assert sources._pixel_noise(image) == pytest.approx(2.0, rel=0.1)
    import sep
    assert sep.Background(image, bw=64, bh=64).globalrms > 10      # what the mesh sees


def test_stars_are_found_under_a_nebula_filling_the_frame():
    """Light 100x the noise varying over ~20 px: the coarse mesh's RMS measured
    the nebula and kept a handful of the 60 stars; all are found now."""
    rng = np.random.default_rng(2)
    shape = (500, 600)
    stars, x, y = _stars(shape, rng, 60, peak=30.0)
    nebula = 200 * _smooth(shape, rng, 12) ** 2 + 100 * _smooth(shape, rng, 40)
    image = (50 + nebula + stars + rng.normal(0, 2.0, shape)).astype(np.float32)
    found = extract_sources(image)
    assert _found(found, x, y) >= 54
    assert _found(found[:60], x, y) >= 54     # and they are the brightest sources
    assert found.meta['rms'] < 4.0      # the threshold sits on the noise, not on the glow
    # detected on 2x2 bins (as large images are): the noise map is binned as the light
    # (3-px stars lose half their contrast in 2x2 bins: the brighter half is found)
    assert _found(extract_sources(image, downsample=2), x, y) >= 20


def test_a_clean_field_keeps_the_coarse_background():
    rng = np.random.default_rng(3)
    shape = (400, 500)
    stars, x, y = _stars(shape, rng, 40, peak=50.0)
    image = (100 + stars + rng.normal(0, 3.0, shape)).astype(np.float32)
    bkg, rms, err = sources._background(image.copy(), None, 3.0)
    assert err == rms == pytest.approx(3.0, rel=0.1)        # one threshold, on the mesh RMS
    assert _found(extract_sources(image), x, y) >= 38       # two overlap


def test_a_satellite_trail_is_not_a_row_of_stars():
    rng = np.random.default_rng(4)
    shape = (400, 500)
    stars, x, y = _stars(shape, rng, 40, peak=60.0)
    yy, xx = np.mgrid[0:400, 0:500]
    distance = np.abs((xx - 30) * math.sin(0.5) - (yy - 20) * math.cos(0.5))
    along = (xx - 30) * math.cos(0.5) + (yy - 20) * math.sin(0.5)
    trail = 40 * (0.6 + 0.4 * np.sin(along / 15) ** 2) * np.exp(-0.5 * (distance / 0.7) ** 2)
    image = (100 + stars + trail + rng.normal(0, 3.0, shape)).astype(np.float32)
    found = extract_sources(image)
    sx, sy = found['x'].value - 1, found['y'].value - 1
    on_trail = np.abs((sx - 30) * math.sin(0.5) - (sy - 20) * math.cos(0.5)) < 3
    near_star = np.array([np.min(np.hypot(x - a, y - b)) < 2 for a, b in zip(sx, sy)])
    assert (on_trail & ~near_star).sum() <= 2
    clear = np.abs((x - 30) * math.sin(0.5) - (y - 20) * math.cos(0.5)) > 8   # not on it
    assert _found(found, x[clear], y[clear]) >= clear.sum() - 2      # a pair overlaps


# -- decoding ---------------------------------------------------------------------------------
def _star_picture(rng, shape=(200, 300)):
    stars, x, y = _stars(shape, rng, 25, peak=150.0)
    return np.clip(40 + stars + rng.normal(0, 3, shape), 0, 255).astype(np.uint8), x, y


def test_transparent_pixels_are_no_data(tmp_path):
    """A mosaic's transparent edges hold black or white: they are NaN, not sky."""
    rng = np.random.default_rng(5)
    grey, x, y = _star_picture(rng)
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :100] = 0
    rgb = np.dstack([grey, grey, grey])
    rgb[:, :100] = 0
    white = grey.copy()
    white[:, :100] = 255
    PIL.fromarray(np.dstack([rgb, alpha]), 'RGBA').save(tmp_path / 'rgba.png')
    PIL.fromarray(np.dstack([white, alpha]), 'LA').save(tmp_path / 'la.png')
    for name in ('rgba.png', 'la.png'):
        data = read_picture(tmp_path / name)
        assert data.dtype == np.float32 and np.isnan(data[:, :100]).all()
        assert np.isfinite(data[:, 100:]).all()
        found = extract_sources(tmp_path / name)
        assert found['x'].min() > 100
        right = x > 104
        assert _found(found, x[right], y[right]) == right.sum()
    # alpha nowhere 0, or transparent pixels that hold the picture's colours (a
    # palette entry made transparent): the pixels as stored
    PIL.fromarray(np.dstack([rgb, np.full_like(alpha, 200)]), 'RGBA').save(tmp_path / 'a.png')
    PIL.fromarray(np.dstack([grey, alpha]), 'LA').save(tmp_path / 'b.png')
    for name in ('a.png', 'b.png'):
        assert read_picture(tmp_path / name).dtype == np.uint8


@pytest.mark.parametrize('fmt', ['BMP', 'WEBP'])
def test_bmp_and_webp_are_read(fmt, tmp_path):
    rng = np.random.default_rng(6)
    grey, x, y = _star_picture(rng)
    path = tmp_path / f'stars.{fmt.lower()}'
    PIL.fromarray(np.dstack([grey, grey // 2, grey])).save(path, format=fmt, lossless=True)
    assert file_kind(path)[0] == fmt.lower()
    image = open_image(path)
    assert image.shape == grey.shape and image.flips_y
    assert _found(extract_sources(path), x, y) >= 24


def test_no_encoding_is_refused(tmp_path):
    """Grey + alpha, 1-bit, a palette with a transparent entry, 16-bit grey, CMYK
    and progressive JPEG, a GIF, 32-bit integer and float TIFF: each read, its
    stars found."""
    rng = np.random.default_rng(7)
    grey, x, y = _star_picture(rng)
    rgb = np.dstack([grey, grey // 2 + 10, grey])
    pictures = {
        'la.png': (PIL.fromarray(np.dstack([grey, np.full_like(grey, 255)]), 'LA'), {}),
        'bits.png': (PIL.fromarray(grey > 100), {}),
        'trns.png': (PIL.fromarray(rgb).quantize(64), {'transparency': 0}),
        'grey16.png': (PIL.fromarray(grey.astype(np.uint16) * 250), {}),
        'cmyk.jpg': (PIL.fromarray(rgb).convert('CMYK'), {'quality': 95}),
        'progressive.jpg': (PIL.fromarray(rgb), {'progressive': True, 'quality': 95}),
        'palette.gif': (PIL.fromarray(rgb).quantize(128), {}),
        'int32.tif': (PIL.fromarray(grey.astype(np.int32) * 1000), {}),
        'float.tif': (PIL.fromarray(grey.astype(np.float32)), {}),
    }
    for name, (picture, options) in pictures.items():
        picture.save(tmp_path / name, **options)
        assert _found(extract_sources(tmp_path / name), x, y) >= 20, name     # of 25


# -- rendered photographs, solved -------------------------------------------------------------
@pytest.fixture(scope='module')
def bright_nebula():
    """The frame filled by a bright nebula: 13 sources with the coarse mesh."""
    return render_photograph(SkyCoord(83.8, -5.4, unit='deg'), nebula=400.0, stretch=0.3,
                             trails=1, seed=3, **FRAME)


@pytest.fixture(scope='module')
def pleiades():
    """A moderate nebula, in every encoding."""
    return render_photograph(SkyCoord(56.75, 24.12, unit='deg'), nebula=60.0, trails=1, seed=8,
                             **FRAME)


@requires_solver
@pytest.mark.slow
def test_a_bright_nebula_photograph_solves_blind(bright_nebula, local, tmp_path):
    path, truth = write_photograph(bright_nebula, tmp_path / 'nebula.jpg', 'jpeg')
    found = extract_sources(path)
    stars = bright_nebula.stars
    assert _found(found, np.asarray(stars['x']), np.asarray(stars['y']), tol=2.0) \
        >= 0.6 * len(stars)
    header = local.solve_from_image(path, cache=False, verbose=False)
    assert wcs_rms_error(truth, header, (800, 1000)) < NEBULA_RMS


@requires_solver
@pytest.mark.slow
@pytest.mark.parametrize('encoding', sorted(PHOTO_ENCODINGS))
def test_every_encoding_decodes_and_solves(encoding, pleiades, local, tmp_path):
    path, truth = write_photograph(pleiades, tmp_path / f'p{PHOTO_ENCODINGS[encoding]}', encoding)
    image = open_image(path)
    assert image.shape == truth.pixel_shape[::-1]       # EXIF orientation not applied
    header = local.solve_from_image(path, cache=False, verbose=False, scale_units='arcsecperpix',
                                    scale_lower=2.5, scale_upper=3.5)
    assert wcs_rms_error(truth, header, image.shape) < (
        PALETTE_RMS if encoding == 'palette' else PHOTO_RMS)
