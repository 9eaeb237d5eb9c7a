"""Internal: windowed centroids of many stars at once, and the size of each star's window.

The windowed centroid (SExtractor's XWIN/YWIN, sep's ``winpos``) is the
position where a Gaussian window of the star's own width, centred on it,
sees the light balanced on every side.  It is 5-10x more precise than an
isophotal barycentre.  Here every star is iterated in step, on small
stamps cut once from the image with numpy: for a field of ~1400 stars this
costs a third of ``sep.winpos`` plus ``sep.flux_radius`` (which sized the
windows) and gives the same positions (to ~1e-3 px on isolated stars, see
tests/test_centroids.py).  The window of each star is the PSF width of the
well-measured stars around it, measured from their windowed second moments:
a faint star's own size is mostly noise, and a wide lens's PSF changes over
the field.

Pure functions of arrays (0-based pixel coordinates, as sep's).
"""
import math

import numpy as np
from scipy.spatial import cKDTree

__all__ = ['windowed_centroids', 'window_sigmas']

#: Iterations at most, and the shift (pixels) below which a star has converged.
MAX_ITERATIONS = 16
TOLERANCE = 2e-4
#: Stamps reach this many window sigmas (plus the distance a centre may move):
#: the weight is e^-8 there.
_REACH = 4.0
#: Bright stars sizing the windows, and how many of them around each star.
_SIZERS = 300
_NEIGHBOURS = 7


def _stamps(data, ix, iy, half):
    """(n, 2h+1, 2h+1) cut-outs centred on integer pixels (pixels outside the
    image are 0: no light, so no weight), and the offsets of their rows and
    columns from the centre."""
    ny, nx = data.shape
    offsets = np.arange(-half, half + 1)
    cols = ix[:, None] + offsets
    rows = iy[:, None] + offsets
    inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :]
    stamps = data[rows.clip(0, ny - 1)[:, :, None], cols.clip(0, nx - 1)[:, None, :]]
    return np.where(inside, stamps, 0.0).astype(np.float64), offsets


def _iterate(stamps, offsets, x0, y0, ix, iy, sigma, max_shift):
    """Windowed centroids on the stamps: (x, y, True where the centre stayed
    within ``max_shift`` of its start)."""
    x, y = x0.astype(float).copy(), y0.astype(float).copy()
    # Pixel coordinates of each stamp's columns and rows.
    px = ix[:, None] + offsets
    py = iy[:, None] + offsets
    active = np.ones(len(x), bool)
    far = np.zeros(len(x), bool)
    a, sub = np.arange(len(x)), stamps
    for _ in range(MAX_ITERATIONS):
        live = active[a]
        if not live.any():
            break
        if live.sum() < 0.5 * len(a):      # fewer stamps to carry: copy them once
            a = a[live]
            sub = stamps[a]
        dx, dy, gx, gy = _window(px[a], py[a], x[a], y[a], sigma[a])
        rows = np.einsum('nij,nj->ni', sub, gx)                 # window x light, by row
        total = np.einsum('ni,ni->n', rows, gy)
        sx = np.einsum('ni,ni->n', np.einsum('nij,nj->ni', sub, gx * dx), gy)
        sy = np.einsum('ni,ni->n', rows, gy * dy)
        with np.errstate(divide='ignore', invalid='ignore'):
            # The factor 2 makes a Gaussian star converge in a few steps (SExtractor's).
            step_x, step_y = 2.0 * sx / total, 2.0 * sy / total
        bad = ~(np.isfinite(step_x) & np.isfinite(step_y) & (total > 0))
        # Stars already done keep their place (they are carried until compacted).
        still = active[a] & ~bad
        step_x, step_y = np.where(still, step_x, 0.0), np.where(still, step_y, 0.0)
        x[a] += step_x
        y[a] += step_y
        far[a] |= active[a] & ((np.hypot(x[a] - x0[a], y[a] - y0[a]) > max_shift) | bad)
        active[a[far[a] | (np.hypot(step_x, step_y) < TOLERANCE)]] = False
    # As sep's: the last step counts when the iterations run out (a faint
    # star's centre may still hop by a hundredth of a pixel).
    return x, y, ~far


def _window(px, py, x, y, sigma):
    """Offsets of the stamps' columns and rows from (x, y), and the Gaussian
    window's weights along them (the window is their product)."""
    dx, dy = px - x[:, None], py - y[:, None]
    inv = 1.0 / (2.0 * sigma[:, None] ** 2)
    return dx, dy, np.exp(-dx * dx * inv), np.exp(-dy * dy * inv)


def _second_moments(stamps, offsets, x, y, ix, iy, sigma):
    """Windowed second moment (pixels^2, mean of the two axes) about (x, y)."""
    dx, dy, gx, gy = _window(ix[:, None] + offsets, iy[:, None] + offsets, x, y, sigma)
    rows = np.einsum('nij,nj->ni', stamps, gx)
    total = np.einsum('ni,ni->n', rows, gy)
    mxx = np.einsum('nij,nj,ni->n', stamps, gx * dx * dx, gy)
    myy = np.einsum('ni,ni->n', rows, gy * dy * dy)
    with np.errstate(divide='ignore', invalid='ignore'):
        return 0.5 * (mxx + myy) / total


def windowed_centroids(data, x, y, sigma, *, max_shift=1.0):
    """Windowed centroids of stars near (x, y) (0-based pixels).

    Parameters
    ----------
    data : 2-D array
        The image, background subtracted.
    x, y : array-like
        First positions (e.g. sep's isophotal barycentres).
    sigma : float or array-like
        Window sigma of each star, pixels (the PSF's: FWHM / 2.3548).
    max_shift : float
        A centre that wanders further than this from its first position has
        not converged (a neighbour pulled it): it is given back unchanged.

    Returns
    -------
    x, y : `~numpy.ndarray`
        The centroids (the first positions where ``ok`` is False).
    ok : `~numpy.ndarray` of bool
        False where the centre wandered off or no light was seen.
    """
    x0, y0 = np.asarray(x, float), np.asarray(y, float)
    sigma = np.broadcast_to(np.asarray(sigma, float), x0.shape).clip(0.3, None)
    xs, ys, ok = x0.copy(), y0.copy(), np.zeros(len(x0), bool)
    if not len(x0):
        return xs, ys, ok
    # Stamps as wide as each star's window: grouped by size, so a few wide
    # (saturated) stars do not widen every stamp.
    halves = np.ceil(_REACH * sigma + max_shift + 0.5).astype(int)
    for half in np.unique(halves):
        pick = np.nonzero(halves == half)[0]
        ix, iy = np.round(x0[pick]).astype(int), np.round(y0[pick]).astype(int)
        stamps, offsets = _stamps(data, ix, iy, int(half))
        gx, gy, conv = _iterate(stamps, offsets, x0[pick], y0[pick], ix, iy, sigma[pick],
                                max_shift)
        xs[pick] = np.where(conv, gx, x0[pick])
        ys[pick] = np.where(conv, gy, y0[pick])
        ok[pick] = conv
    return xs, ys, ok


def _own_sizes(data, x, y, window):
    """Each star's Gaussian sigma, from its windowed second moment about its
    windowed centroid (NaN where that cannot be read)."""
    half = int(math.ceil(_REACH * float(np.max(window)) + 1.5))
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    stamps, offsets = _stamps(data, ix, iy, half)
    cx, cy, ok = _iterate(stamps, offsets, x, y, ix, iy, window, 1.0)
    m2 = _second_moments(stamps, offsets, cx, cy, ix, iy, window)
    # A Gaussian star (sigma s) seen through a Gaussian window (sigma w) has
    # the second moment s^2 w^2 / (s^2 + w^2): solved for s.
    w2 = window * window
    with np.errstate(divide='ignore', invalid='ignore'):
        s2 = m2 * w2 / (w2 - m2)
    good = ok & np.isfinite(s2) & (s2 > 0.09) & (m2 < 0.9 * w2)
    return np.where(good, np.sqrt(np.where(good, s2, 1.0)), np.nan)


def window_sigmas(data, x, y, sizers, fwhm, own=None):
    """The window sigma of each star: the PSF sigma of the well-measured stars
    near it, or its own where it is wider (a saturated or stretched core).

    Parameters
    ----------
    data : 2-D array
        The image, background subtracted.
    x, y : array-like
        Star positions (0-based).
    sizers : array of bool
        Stars bright enough to measure their width, and faint enough that
        their core is not clipped or compressed (a stretched photograph).
    fwhm : float
        The expected FWHM (pixels): the first window, and every star's when
        fewer than 3 stars could be measured.
    own : array of bool, optional
        Stars whose own width is used where it is wider than their
        neighbours' (the brightest and the saturated).

    Returns
    -------
    `~numpy.ndarray`
        Sigma per star, pixels.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    first = max(float(fwhm), 0.7) / 2.3548
    sigma = np.full(len(x), first)
    idx = np.nonzero(np.asarray(sizers, bool))[0][:_SIZERS]
    if len(idx) >= 3:
        window = first
        for _ in range(2):      # again through a window of the size found, if it is far off
            sizes = _own_sizes(data, x[idx], y[idx], np.full(len(idx), window))
            good = np.isfinite(sizes)
            if good.sum() < 3:
                break
            typical = float(np.median(sizes[good]))
            if abs(typical / window - 1.0) < 0.2:
                break
            window = min(typical, 10.0)
        if good.sum() >= 3:
            k = min(_NEIGHBOURS, int(good.sum()))
            _, near = cKDTree(np.column_stack([x[idx][good], y[idx][good]])).query(
                np.column_stack([x, y]), k=k)
            sigma = np.median(sizes[good][near.reshape(len(x), k)], axis=1).clip(0.3, 10.0)
    if own is not None and np.any(own):
        pick = np.nonzero(np.asarray(own, bool))[0]
        sizes = _own_sizes(data, x[pick], y[pick], sigma[pick])
        wider = np.isfinite(sizes) & (sizes > sigma[pick])
        sigma[pick[wider]] = np.minimum(sizes[wider], 10.0)
    return sigma
