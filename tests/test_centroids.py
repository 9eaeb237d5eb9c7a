"""Windowed centroids computed for every star at once (astrometry_query.centroids),
against sep's own ``winpos`` and against the true positions of rendered stars."""
import numpy as np
import pytest
import sep

from astrometry_query.centroids import window_sigmas, windowed_centroids


def _field(shape, x, y, sigma, peak, noise, rng):
    """Gaussian stars of (per-star) ``sigma``, integrated over each pixel, plus noise."""
    from scipy.special import erf
    ny, nx = shape
    image = np.zeros(shape)
    sigma = np.broadcast_to(sigma, np.shape(x))
    peak = np.broadcast_to(peak, np.shape(x))
    for xi, yi, si, pi in zip(x, y, sigma, peak):
        h = int(6 * si) + 2
        x0, y0 = int(xi), int(yi)
        cols = np.arange(max(0, x0 - h), min(nx, x0 + h + 1))
        rows = np.arange(max(0, y0 - h), min(ny, y0 + h + 1))
        edge = si * np.sqrt(2.0)
        fx = 0.5 * (erf((cols + 0.5 - xi) / edge) - erf((cols - 0.5 - xi) / edge))
        fy = 0.5 * (erf((rows + 0.5 - yi) / edge) - erf((rows - 0.5 - yi) / edge))
        image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] += (
            pi * 2 * np.pi * si ** 2 * np.outer(fy, fx))
    return (image + rng.normal(0, noise, shape)).astype(np.float32)


@pytest.fixture(scope='module')
def stars():
    rng = np.random.default_rng(5)
    shape, n = (400, 500), 300
    x, y = rng.uniform(10, 490, n), rng.uniform(10, 390, n)
    peak = 10 * np.exp(rng.uniform(0, np.log(300), n))     # S/N 5 to 1500
    image = _field(shape, x, y, 1.3, peak, 2.0, rng)
    # starting points as sep.extract would give them: off by up to half a pixel
    start_x = x + rng.uniform(-0.5, 0.5, n)
    start_y = y + rng.uniform(-0.5, 0.5, n)
    return image, x, y, start_x, start_y, peak


def _isolated(x, y, radius=12.0):
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1) > radius


def test_the_same_centroids_as_sep_winpos(stars):
    image, x, y, sx, sy, peak = stars
    ours_x, ours_y, ok = windowed_centroids(image, sx, sy, 1.3)
    sep_x, sep_y, flag = sep.winpos(image, sx, sy, np.full(len(sx), 1.3), subpix=0)
    lone = _isolated(x, y) & ok & (flag == 0)
    assert lone.sum() > 100
    apart = np.hypot(ours_x - sep_x, ours_y - sep_y)[lone]
    bright = (peak > 100)[lone]
    # sep weighs the window's edge pixel by its exact overlap; here the window is
    # not cut (its weight there is e^-8): a thousandth of a pixel on bright stars
    assert np.median(apart[bright]) < 5e-4 and np.max(apart[bright]) < 3e-3
    # faint stars hop by up to a few hundredths when the iterations end
    assert np.median(apart) < 2e-3


def test_as_close_to_the_truth_as_sep_winpos(stars):
    image, x, y, sx, sy, peak = stars
    lone = _isolated(x, y)
    ours_x, ours_y, _ = windowed_centroids(image, sx, sy, 1.3)
    sep_x, sep_y, _ = sep.winpos(image, sx, sy, np.full(len(sx), 1.3), subpix=0)
    ours = np.hypot(ours_x - x, ours_y - y)[lone]
    theirs = np.hypot(sep_x - x, sep_y - y)[lone]
    assert np.sqrt(np.mean(ours ** 2)) <= 1.02 * np.sqrt(np.mean(theirs ** 2))
    # and far closer than where they started
    assert np.median(ours) < 0.2 * np.median(np.hypot(sx - x, sy - y)[lone])


def test_bright_stars_to_a_few_thousandths_of_a_pixel(stars):
    image, x, y, sx, sy, peak = stars
    cx, cy, ok = windowed_centroids(image, sx, sy, 1.3)
    good = _isolated(x, y) & (peak > 500)
    assert ok[good].all()
    assert np.median(np.hypot(cx - x, cy - y)[good]) < 0.005


def test_window_sigmas_are_the_psf_of_the_bright_stars_nearby():
    """A PSF growing from the centre to the edges (a lens's): each star's window
    is the width of its bright neighbours, faint stars included."""
    rng = np.random.default_rng(8)
    shape, n = (500, 500), 500
    x, y = rng.uniform(10, 490, n), rng.uniform(10, 490, n)
    true = 1.0 + 1.0 * np.hypot(x - 250, y - 250) / 350      # sigma 1 to 2 px
    peak = 10 * np.exp(rng.uniform(0, np.log(200), n))
    image = _field(shape, x, y, true, peak, 2.0, rng)
    bright = peak > 200
    sigma = window_sigmas(image, x, y, bright, fwhm=3.0)
    lone = _isolated(x, y, 8.0)
    assert np.median(np.abs(sigma / true - 1)[lone]) < 0.1
    faint = lone & ~bright
    assert np.median(np.abs(sigma / true - 1)[faint]) < 0.12
    # far from the FWHM given (3 px, sigma 1.27): found, not assumed
    wide = _field((300, 300), x[:80] * 0.6, y[:80] * 0.6, 3.0, 500.0, 2.0, rng)
    got = window_sigmas(wide, x[:80] * 0.6, y[:80] * 0.6, np.ones(80, bool), fwhm=3.0)
    lone = _isolated(x[:80] * 0.6, y[:80] * 0.6, 18.0)
    assert np.median(got[lone]) == pytest.approx(3.0, rel=0.1)


def test_too_few_bright_stars_keep_the_fwhm_given():
    image = np.zeros((50, 50), np.float32)
    sigma = window_sigmas(image, [10.0, 20.0, 30.0], [10.0, 20.0, 30.0],
                          [True, False, False], fwhm=4.0)
    np.testing.assert_allclose(sigma, 4.0 / 2.3548)


def test_edges_empty_input_and_stars_pulled_away():
    rng = np.random.default_rng(3)
    # stars cut by the image's edge: pixels outside it carry no weight, as in sep
    # (whose flag 16 says so); 3 px inside, the window sees the whole star
    true_x, true_y = [1.2, 40.0, 3.0], [30.0, 58.6, 3.0]
    start_x, start_y = np.array([1.5, 40.3, 3.2]), np.array([30.4, 58.2, 3.3])
    image = _field((60, 60), true_x, true_y, 1.3, 1000.0, 0.5, rng)
    cx, cy, ok = windowed_centroids(image, start_x, start_y, 1.3)
    sep_x, sep_y, _ = sep.winpos(image, start_x, start_y, np.full(3, 1.3), subpix=0)
    assert ok.all()
    assert np.hypot(cx - sep_x, cy - sep_y).max() < 1e-4
    assert np.hypot(cx[2] - 3.0, cy[2] - 3.0) < 0.01
    # nothing to measure
    cx, cy, ok = windowed_centroids(image, [], [], 1.3)
    assert len(cx) == len(cy) == len(ok) == 0
    # a faint source beside a bright star is pulled onto it: given back unchanged
    image = _field((60, 60), [30.0, 32.5], [30.0, 30.0], 1.3, [5000.0, 20.0], 0.5, rng)
    cx, cy, ok = windowed_centroids(image, [33.0], [30.0], 1.3, max_shift=0.5)
    assert not ok[0] and cx[0] == 33.0 and cy[0] == 30.0
    # a blank patch: no light, no centroid
    cx, cy, ok = windowed_centroids(np.zeros((20, 20), np.float32), [10.0], [10.0], 1.3)
    assert not ok[0] and cx[0] == 10.0
