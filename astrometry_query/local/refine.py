"""Refining the engine's WCS against every catalogue star in the field.

``astrometry-engine`` tweaks its solution with the few stars of the one index
that solved it (often 15-50), so its SIP terms carry the noise of a handful
of positions and its order is fixed (2 by default).  Here the solution is
fitted again, by linear least squares, to every source matched with the
stars of the densest index files (hundreds, usually): the same TAN-SIP
model, CRVAL moved to the fitted centre, the SIP order chosen from the data
(cross-validation: the order that best predicts stars left out of the fit,
up to 7) unless the user set ``tweak_order``, and the inverse (AP/BP) terms
fitted for tools that need them.  The stars are matched from the centre of
the field outward, each ring with the fit of the ones inside it: a
wide-angle lens moves the corners' stars tens of pixels from the engine's
solution.  The header says which order was used (``AN_ORDER``).  The refit is
kept only when it fits the matched stars better than the engine's own
solution, per degree of freedom (see `refine_wcs`).
"""
import collections
import functools
import math
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
from astropy.coordinates import angular_separation
from astropy.io import fits
from astropy.wcs import WCS, Sip
from scipy.spatial import cKDTree

from ..projection import tan_deproject, tan_project
from ..results import wcs_from_header

__all__ = ['refine_wcs', 'reference_stars', 'RefineResult', 'warm_up', 'mutual_matches',
           'isolated', 'query_budget', 'note_order']

#: Index files queried for reference stars (the densest first).
MAX_INDEX_FILES = 4
#: Highest SIP order tried when the order is free (a wide-angle lens's distortion
#: is the inverse of a radial polynomial: its series needs order 5-7 over 20-60 deg).
MAX_ORDER = 7
#: Fractions of the half-diagonal matched step by step, from the centre outward:
#: where the engine's solution (order 2, from a few stars) is off by tens of
#: pixels, the fit of the middle predicts the next ring.
_REACH = (0.3, 0.45, 0.6, 0.75, 0.9)
#: Highest order fitted while growing (a higher one extrapolates wildly).
_GROW_ORDER = 3
#: Reference stars kept per usable source (the brightest): a catalogue much
#: deeper than the image (a wide field) only makes false matches.
_DEPTH = 3
#: Fewest matched stars for a refit.
MIN_MATCHES = 12
_SIP_KEY = ('A_', 'B_', 'AP_', 'BP_')


@functools.lru_cache(maxsize=256)
def _index_info(path, mtime):
    """(stars per steradian, healpix nside) of an index file, from its header."""
    try:
        header = fits.getheader(path, 0)
    except Exception:
        return 0.0, 0
    nside = int(header.get('HPNSIDE', 0) or 0)
    area = 4 * math.pi / (12 * nside * nside) if nside > 0 and header.get('HEALPIX', -1) >= 0 \
        else 4 * math.pi
    return float(header.get('NSTARS', 0) or 0) / area, nside


def _densest(index_files):
    info = [(f, _index_info(str(f), os.path.getmtime(f))) for f in index_files]
    return [f for f, (density, _) in sorted(info, key=lambda t: -t[1][0]) if density > 0]


def warm_up(index_files):
    """Read the index files' headers now (they are kept), so that a worker
    process's first refit is as fast as its next ones."""
    _densest(index_files)


def reference_stars(index_files, ra, dec, radius, *, query_starkd='query-starkd',
                    max_files=MAX_INDEX_FILES, max_stars=None):
    """RA, Dec (deg) and magnitude (NaN if unknown) of the index stars within
    ``radius`` deg of (ra, dec).

    The densest index files are queried with ``query-starkd`` (a few ms
    each); stars found in several files are kept once.  ``max_stars``: the
    files expected to hold more stars than that within the radius are left
    out (a wide field needs its bright stars, not 100 000 faint ones: they
    take seconds to read); the sparsest are queried when all do.  The
    answers are kept (per process) for the last few regions, each queried a
    little wider than asked: the frames of a sequence drift, and a frame
    whose circle lies inside a kept region is answered from it without a
    query.  The arrays are read-only.
    """
    max_stars = None if max_stars is None else int(max_stars)
    key = (tuple(str(f) for f in index_files), query_starkd, max_files, max_stars)
    ra, dec, radius = float(ra), float(dec), float(radius)
    region = _REGIONS.find(key, ra, dec, radius)
    if region is None:
        wide = radius * _REGION_MARGIN
        region = (ra, dec, wide, _stars_around(key[0], ra, dec, wide, query_starkd, max_files,
                                               max_stars, budget_radius=radius))
        _REGIONS.keep(key, region)
    stars = _within(region[3], ra, dec, radius)
    if not len(stars[0]) and len(region[3][0]):     # the densest files miss this corner
        stars = _stars_around(key[0], ra, dec, radius, query_starkd, max_files, max_stars)
    return stars


def query_budget(n_sources):
    """How many reference stars to ask `reference_stars` for, for a field of
    ``n_sources`` sources: ten per source (a wide field's catalogue is much
    deeper than its image), never fewer than 5000."""
    return max(5000, 10 * int(n_sources))


def _within_budget(files, radius, max_stars):
    """The densest files whose stars within ``radius`` deg number at most
    ``max_stars`` (expected from their headers), or the sparsest ones."""
    if max_stars is None or not files:
        return files
    cap = 2 * math.pi * (1 - math.cos(math.radians(min(radius, 180.0))))      # steradians
    fit = [f for f in files if _index_info(f, os.path.getmtime(f))[0] * cap <= max_stars]
    return fit or files[-MAX_INDEX_FILES:]


#: A region is queried this much wider than asked (a sequence's drift).
_REGION_MARGIN = 1.25


class _RegionCache:
    """The last few regions' catalogue stars, shared by the threads of a process."""

    def __init__(self, size=16):
        self._regions = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def find(self, key, ra, dec, radius):
        with self._lock:
            for k, region in reversed(self._regions):
                if k == key and _separation(ra, dec, region[0], region[1]) + radius <= region[2]:
                    return region
        return None

    def keep(self, key, region):
        with self._lock:
            self._regions.append((key, region))

    def clear(self):
        with self._lock:
            self._regions.clear()


_REGIONS = _RegionCache()


def _separation(ra1, dec1, ra2, dec2):
    """Angular distance (deg) between positions in degrees (astropy's formula)."""
    return np.degrees(angular_separation(*map(np.radians, (ra1, dec1, ra2, dec2))))


def _within(stars, ra, dec, radius):
    ras, decs, mags = stars
    keep = _separation(ras, decs, ra, dec) <= radius
    out = ras[keep], decs[keep], mags[keep]
    for array in out:       # kept for the next caller: nobody may change them
        array.flags.writeable = False
    return out


def _stars_around(index_files, ra, dec, radius, query_starkd, max_files, max_stars=None, *,
                  budget_radius=None):
    """The stars of the densest index files within ``radius`` of (ra, dec);
    ``budget_radius``: the radius ``max_stars`` is counted over (default ``radius``)."""
    ras, decs, mags = [], [], []
    files = _within_budget(_densest(index_files), budget_radius or radius, max_stars)
    # The densest files first; the others only when those hold nothing here
    # (index files that cover a few healpix tiles).
    for group in (files[:max_files], files[max_files:]):
        _query(group, ra, dec, radius, query_starkd, ras, decs, mags)
        if ras:
            break
    if not ras:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    ra, dec, mag = np.concatenate(ras), np.concatenate(decs), np.concatenate(mags)
    # Keep one of each star (the files share the catalogue): round to ~0.04".
    key = np.round(ra * 1e5).astype(np.int64) * 100_000_000 + np.round(dec * 1e5).astype(np.int64)
    _, first = np.unique(key, return_index=True)
    out = ra[first], dec[first], mag[first]
    for array in out:       # kept for the next caller: nobody may change them
        array.flags.writeable = False
    return out


def _query(paths, ra, dec, radius, query_starkd, ras, decs, mags):
    """Run query-starkd on ``paths`` at once (each is a few ms, mostly start-up)."""
    if not paths:
        return
    with tempfile.TemporaryDirectory(prefix='aq-ref-') as tmp:
        running = []
        for i, path in enumerate(paths):
            out = Path(tmp) / f'{i}.fits'
            proc = subprocess.Popen([query_starkd, '-r', repr(float(ra)), '-d', repr(float(dec)),
                                     '-R', repr(float(radius)), '-T', '-o', str(out), str(path)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            running.append((proc, out))
        for proc, out in running:
            if proc.wait() != 0 or not out.is_file():
                continue
            with fits.open(out) as hdul:
                data = hdul[1].data if len(hdul) > 1 else None
                if data is None or not len(data):
                    continue
                ras.append(np.array(data['RA'], float))
                decs.append(np.array(data['DEC'], float))
                mag = next((c for c in data.columns.names if c.upper().startswith('MAG')), None)
                mags.append(np.array(data[mag], float) if mag else np.full(len(data), np.nan))


def _terms(order, min_order=0):
    return [(p, t - p) for t in range(min_order, order + 1) for p in range(t, -1, -1)]


def _design(u, v, terms):
    top = max(max(t) for t in terms)
    up, vp = [np.ones_like(u)], [np.ones_like(v)]
    for _ in range(top):        # powers by products: ** on arrays is far slower
        up.append(up[-1] * u)
        vp.append(vp[-1] * v)
    return np.stack([up[p] * vp[q] for p, q in terms], axis=1)


def _lstsq(m, rhs):
    """Least squares by the normal equations: the coordinates are scaled to
    [-1, 1] and orders are low, so they are well conditioned, and this is
    ~50x faster than an SVD for these small systems."""
    try:
        return np.linalg.solve(m.T @ m, m.T @ rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(m, rhs, rcond=None)[0]


def mutual_matches(x, y, rx, ry, radius):
    """Mutual nearest neighbours closer than ``radius``: (source index, reference index)."""
    if not len(x) or not len(rx):
        return np.zeros(0, int), np.zeros(0, int)
    sources, refs = np.column_stack([x, y]), np.column_stack([rx, ry])
    d, nearest_ref = cKDTree(refs).query(sources, distance_upper_bound=radius)
    found = np.isfinite(d)
    _, nearest_src = cKDTree(sources).query(refs[nearest_ref[found]])
    s = np.nonzero(found)[0]
    mutual = nearest_src == s
    return s[mutual], nearest_ref[found][mutual]


class RefineResult:
    """A refitted WCS header and how it was obtained."""

    def __init__(self, header, order, matches, rms, engine_rms, engine_matches,
                 order_from='data'):
        self.header, self.order, self.matches, self.rms = header, order, matches, rms
        self.engine_rms, self.engine_matches = engine_rms, engine_matches
        #: 'data' (chosen by held-out stars) or 'tweak_order' (the user's).
        self.order_from = order_from

    def to_dict(self):
        return {'order': self.order, 'order_from': self.order_from, 'matches': self.matches,
                'rms_px': round(self.rms, 5), 'engine_rms_px': round(self.engine_rms, 5),
                'engine_matches': self.engine_matches}


def _fit(u, v, xi, eta, order, scale):
    """Polynomial fit of (xi, eta) in (u, v) of total ``order``, sigma-clipped.

    Returns (coefficients xi, coefficients eta, terms, kept mask, rss).
    """
    terms = _terms(order)
    keep = np.ones(len(u), bool)
    full = _design(u / scale, v / scale, terms)
    for _ in range(3):
        cx, cy = _lstsq(full[keep], np.column_stack([xi[keep], eta[keep]])).T
        res = np.hypot(full @ cx - xi, full @ cy - eta)
        sigma = 1.4826 * np.median(res[keep]) + 1e-12
        new = res < max(4.0 * sigma, 1e-12)
        if new.sum() < len(terms) + 3 or np.array_equal(new, keep):
            break
        keep = new
    resid = full[keep] @ np.stack([cx, cy], 1) - np.stack([xi[keep], eta[keep]], 1)
    return cx, cy, terms, keep, float(np.sum(resid ** 2))


def _cross_validated(u, v, xi, eta, order, scale, keep, folds=5):
    """Mean square of held-out residuals (degrees^2) of a fit of ``order``, and
    its standard error: what the fit is worth where no star pinned it down.

    The fits leave out the stars the order's own fit clipped (``keep``
    False), but every star is held out and judged, so that all orders are
    compared on the same stars: one that clips a star it fits badly does
    not win by it."""
    terms = _terms(order)
    idx = np.arange(len(u))
    full = _design(u / scale, v / scale, terms)
    rhs = np.column_stack([xi, eta])
    # Each fold's normal equations are the kept stars' less the fold's own.
    normal, right = full[keep].T @ full[keep], full[keep].T @ rhs[keep]
    errors = []
    for k in range(folds):
        test = idx % folds == k
        out = test & keep
        try:
            coeff = np.linalg.solve(normal - full[out].T @ full[out],
                                    right - full[out].T @ rhs[out])
        except np.linalg.LinAlgError:
            coeff = _lstsq(full[~test & keep], rhs[~test & keep])
        errors.append(np.hypot(*(full[test] @ coeff - rhs[test]).T))
    errors = np.concatenate(errors)
    # A false match left in must not decide the order: its error counts no
    # more than five times the typical one.
    cap = 5.0 * 1.4826 * np.median(errors) + 1e-15
    squared = np.minimum(errors, cap) ** 2
    return float(np.mean(squared)), float(np.std(squared) / math.sqrt(len(squared)))


def _choose_order(u, v, xi, eta, scale, orders):
    """The fit of the lowest order whose held-out error is within one standard
    error of the smallest one (a higher order must beat the noise of the
    comparison, not just the number), on the stars that survive clipping:
    (RMS held-out error, order, coefficients xi, eta, terms, kept).  The
    search stops after two orders that do not help (a lens's radial
    distortion needs odd orders: an even one alone may not help)."""
    fits_, best, misses = [], None, 0
    for order in orders:
        n_terms = (order + 1) * (order + 2) // 2
        if len(u) < 5 * n_terms or misses == 2:    # too few stars to pin every term down
            break
        cx, cy, terms, keep, rss = _fit(u, v, xi, eta, order, scale)
        mse, se = _cross_validated(u, v, xi, eta, order, scale, keep)
        fits_.append((mse, se, order, cx, cy, terms, keep))
        if best is None or mse < 0.97 * best[0]:
            best, misses = fits_[-1], 0
        else:
            misses += 1
    if best is None:
        return None
    chosen = next(f for f in fits_ if f[0] <= best[0] + best[1])
    return (math.sqrt(chosen[0]),) + chosen[2:]


def _grow(x, y, rx, ry, xi, eta, centre, half, tolerance=3.0):
    """Sources matched with reference stars from the centre of the field outward.

    The first matches are with the engine's positions (``rx``, ``ry``) near
    the centre, where they are good even when a wide-angle lens puts them tens
    of pixels off at the corners; then, ring after ring (`_REACH`), with the
    positions predicted by a polynomial of (``xi``, ``eta``) fitted to the
    matches so far.  Returns (source index, reference index) over the field.
    """
    cx, cy = centre
    seen = np.hypot(x - cx, y - cy) / half
    s, r = mutual_matches(x, y, rx, ry, tolerance)
    sky = max(float(np.max(np.hypot(xi, eta))), 1e-9)
    for reach in _REACH + (np.inf,):
        near = np.nonzero(np.hypot(rx - cx, ry - cy) / half <= reach)[0]
        close = np.nonzero(seen <= reach + tolerance / half)[0]
        a, b = mutual_matches(x[close], y[close], rx[near], ry[near], tolerance)
        if len(a) < MIN_MATCHES:
            continue
        s, r = close[a], near[b]
        top = MAX_ORDER if reach == np.inf else _GROW_ORDER
        best = _choose_order(xi[r], eta[r], x[s] - cx, y[s] - cy, sky, range(1, top + 1))
        if best is None:
            continue
        cv, _, px, py, terms, _ = best
        m = _design(xi / sky, eta / sky, terms)
        rx, ry = m @ px + cx, m @ py + cy
        tolerance = max(3.0, 5.0 * cv)
    return s, r


def _linear_and_sip(cx, cy, terms, scale):
    """The fitted polynomial as a CD matrix and SIP terms (pixel offsets)."""
    coeff = {t: (cx[i] / scale ** sum(t), cy[i] / scale ** sum(t)) for i, t in enumerate(terms)}
    cd = np.array([[coeff[(1, 0)][0], coeff[(0, 1)][0]], [coeff[(1, 0)][1], coeff[(0, 1)][1]]])
    inv = np.linalg.inv(cd)
    return cd, {t: inv @ np.array(coeff[t]) for t in terms if sum(t) >= 2}


def _model_wcs(crval, cx, cy, terms, scale, order, crpix):
    """The fitted solution as a WCS object, for matching (no header: building
    and parsing one costs more than the fit)."""
    cd, a = _linear_and_sip(cx, cy, terms, scale)
    w = WCS(naxis=2)
    sip = order >= 2
    w.wcs.ctype = ['RA---TAN-SIP', 'DEC--TAN-SIP'] if sip else ['RA---TAN', 'DEC--TAN']
    w.wcs.crval, w.wcs.crpix, w.wcs.cd = list(crval), list(crpix), cd
    if sip:
        am, bm = np.zeros((order + 1, order + 1)), np.zeros((order + 1, order + 1))
        for (p, q), value in a.items():
            am[p, q], bm[p, q] = value
        w.sip = Sip(am, bm, None, None, list(crpix))
    w.wcs.set()
    return w


def _sip_header(header, crval, cx, cy, terms, scale, order, width, height, crpix):
    """The engine header with the refitted TAN(-SIP) solution written in."""
    cd, a = _linear_and_sip(cx, cy, terms, scale)
    out = header.copy()
    for key in [k for k in out if k.startswith(_SIP_KEY) or k in ('A_ORDER', 'B_ORDER', 'AP_ORDER',
                                                                    'BP_ORDER')]:
        del out[key]
    sip = order >= 2
    out['CTYPE1'] = 'RA---TAN-SIP' if sip else 'RA---TAN'
    out['CTYPE2'] = 'DEC--TAN-SIP' if sip else 'DEC--TAN'
    out['CRVAL1'], out['CRVAL2'] = float(crval[0]), float(crval[1])
    out['CRPIX1'], out['CRPIX2'] = float(crpix[0]), float(crpix[1])
    out['CD1_1'], out['CD1_2'] = float(cd[0, 0]), float(cd[0, 1])
    out['CD2_1'], out['CD2_2'] = float(cd[1, 0]), float(cd[1, 1])
    if not sip:
        return out
    out['A_ORDER'] = (order, 'Polynomial order, axis 1')
    for (p, q), value in a.items():
        out[f'A_{p}_{q}'] = float(value[0])
    out['B_ORDER'] = (order, 'Polynomial order, axis 2')
    for (p, q), value in a.items():
        out[f'B_{p}_{q}'] = float(value[1])
    # The inverse polynomials, fitted on a grid over the image.
    gu, gv = (g.ravel() for g in np.meshgrid(np.linspace(1, width, 25) - crpix[0],
                                             np.linspace(1, height, 25) - crpix[1]))
    fu = gu + sum(val[0] * gu ** p * gv ** q for (p, q), val in a.items())
    fv = gv + sum(val[1] * gu ** p * gv ** q for (p, q), val in a.items())
    inv_order = order + 1
    inv_terms = _terms(inv_order)
    m = _design(fu / scale, fv / scale, inv_terms)
    ap, bp = _lstsq(m, np.column_stack([gu - fu, gv - fv])).T
    out['AP_ORDER'] = (inv_order, 'Inv polynomial order, axis 1')
    for i, (p, q) in enumerate(inv_terms):
        out[f'AP_{p}_{q}'] = float(ap[i] / scale ** (p + q))
    out['BP_ORDER'] = (inv_order, 'Inv polynomial order, axis 2')
    for i, (p, q) in enumerate(inv_terms):
        out[f'BP_{p}_{q}'] = float(bp[i] / scale ** (p + q))
    return out


def _parameters(order):
    """Free parameters of a TAN-SIP solution of ``order`` (both axes; order 1
    is CRVAL and the CD matrix)."""
    return (order + 1) * (order + 2)


def _order_of(header):
    return int(header.get('A_ORDER', 1)) if 'SIP' in str(header.get('CTYPE1', '')) else 1


def _per_freedom(rms, n, parameters):
    """An RMS of n residuals (2 coordinates each) per degree of freedom."""
    free = 2 * n - parameters
    return rms * math.sqrt(2 * n / free) if free > 0 else math.inf


def note_order(header, tweak_order=None):
    """A copy of the engine's ``header`` saying its SIP order (``AN_ORDER``):
    for a solution the refit did not improve on."""
    out = header.copy()
    order = _order_of(out)
    out['AN_ORDER'] = (order, 'SIP order: the engine\'s ' + (
        '(tweak_order)' if tweak_order is not None else 'default'))
    return out


def isolated(x, y, radius, mag=None, contrast=2.5):
    """True for points with no other point within ``radius`` (with magnitudes:
    no other point brighter than ``contrast`` magnitudes fainter than it)."""
    if len(x) < 2:
        return np.ones(len(x), bool)
    points = np.column_stack([x, y])
    pairs = cKDTree(points).query_pairs(radius, output_type='ndarray')
    alone = np.ones(len(x), bool)
    if not len(pairs):
        return alone
    i, j = pairs[:, 0], pairs[:, 1]
    if mag is None or not np.isfinite(mag).any():
        alone[i] = alone[j] = False
        return alone
    m = np.where(np.isfinite(mag), mag, np.nanmax(mag))
    alone[i[m[j] < m[i] + contrast]] = False      # j is bright enough to pull i
    alone[j[m[i] < m[j] + contrast]] = False
    return alone


def refine_wcs(header, x, y, width, height, ref_ra, ref_dec, *, order=None, good=None,
               isolation=6.0, ref_mag=None):
    """Refit a solved WCS to the field sources matched with reference stars.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        The engine's solution (TAN or TAN-SIP).
    x, y : array-like
        Field sources, FITS 1-based pixels.
    width, height : int
    ref_ra, ref_dec : array-like
        Reference stars, degrees.
    ref_mag : array-like, optional
        Their magnitudes: a much fainter neighbour does not spoil a star.
    order : int, optional
        SIP order (1: pure TAN), used as given.  Default: chosen from the
        data (1 to `MAX_ORDER`), the order whose fit best predicts stars
        left out of it (cross-validation).
    good : array of bool, optional
        Sources fit to use (e.g. not blended nor saturated); default all.
    isolation : float
        Pixels: stars or sources with a neighbour this close are left out
        (a blend's centroid is pulled by its neighbour).

    Returns
    -------
    RefineResult or None
        None when too few stars match, or the refit is not better: its residual
        variance per degree of freedom on the matched stars (a blend or false
        match beyond 3x the median residual left out) is over the engine's,
        whose SIP terms were fitted to much the same stars.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ref_ra, ref_dec = np.asarray(ref_ra, float), np.asarray(ref_dec, float)
    if len(x) < MIN_MATCHES or len(ref_ra) < MIN_MATCHES:
        return None
    engine = wcs_from_header(header)
    # Stars far outside the field may not convert: NaN, no warning (a warnings
    # filter would not be thread-safe, and batches refit in threads).
    with np.errstate(all='ignore'):
        rx, ry = engine.all_world2pix(ref_ra, ref_dec, 1, quiet=True)
    inside = np.isfinite(rx) & np.isfinite(ry) & (rx > -5) & (rx < width + 5) & (ry > -5) \
        & (ry < height + 5)
    ref_mag = (np.full(len(ref_ra), np.nan) if ref_mag is None
               else np.asarray(ref_mag, float)[inside])
    ref_ra, ref_dec, rx, ry = ref_ra[inside], ref_dec[inside], rx[inside], ry[inside]
    lonely = isolated(rx, ry, isolation, ref_mag)
    ref_ra, ref_dec, rx, ry = ref_ra[lonely], ref_dec[lonely], rx[lonely], ry[lonely]
    ref_mag = ref_mag[lonely]
    usable = isolated(x, y, isolation) & (np.ones(len(x), bool) if good is None
                                           else np.asarray(good, bool))
    x, y = x[usable], y[usable]
    if len(ref_ra) > _DEPTH * len(x) and np.isfinite(ref_mag).any():
        # As deep as the image, no deeper (the brightest, unknown magnitudes last).
        kept = np.argsort(np.nan_to_num(ref_mag, nan=np.inf), kind='stable')[:_DEPTH * len(x)]
        ref_ra, ref_dec, rx, ry = ref_ra[kept], ref_dec[kept], rx[kept], ry[kept]
    crpix = (float(header['CRPIX1']), float(header['CRPIX2']))
    crval = (float(header['CRVAL1']), float(header['CRVAL2']))
    scale = max(width, height) / 2.0
    orders = [order] if order is not None else list(range(1, MAX_ORDER + 1))
    engine_rx, engine_ry = rx, ry
    engine_matches = len(mutual_matches(x, y, rx, ry, 3.0)[0])
    if engine_matches < MIN_MATCHES:
        return None
    s, r = _grow(x, y, rx, ry, *tan_project(ref_ra, ref_dec, *crval)[:2],
                 ((width + 1) / 2.0, (height + 1) / 2.0), math.hypot(width, height) / 2.0)
    if len(s) < MIN_MATCHES:
        return None
    best = None
    for _ in range(3):       # match, fit, match again with the better solution
        u, v = x[s] - crpix[0], y[s] - crpix[1]
        for step in range(3):   # move CRVAL onto the fitted centre
            xi, eta, ok = tan_project(ref_ra[r], ref_dec[r], *crval)
            if not ok.all():
                return None
            if step == 0:       # the order, from held-out stars
                best = _choose_order(u, v, xi, eta, scale, orders)
                if best is None:
                    return None
                _, chosen, cx, cy, terms, keep = best
            else:
                cx, cy, terms, keep, _ = _fit(u, v, xi, eta, chosen, scale)
            const = (cx[terms.index((0, 0))], cy[terms.index((0, 0))])
            if math.hypot(*const) * 3600 < 1e-6:
                break
            crval = tan_deproject(const[0], const[1], *crval)
        fitted = _model_wcs(crval, cx, cy, terms, scale, chosen, crpix)
        with np.errstate(all='ignore'):
            rx, ry = fitted.all_world2pix(ref_ra, ref_dec, 1, quiet=True)
        res = np.hypot(x[s] - rx[r], y[s] - ry[r])
        sigma = 1.4826 * np.median(res) + 1e-3
        s_new, r_new = mutual_matches(x, y, rx, ry, max(1.0, 5.0 * sigma))
        if len(s_new) < MIN_MATCHES or (np.array_equal(s_new, s) and np.array_equal(r_new, r)):
            break
        s, r = s_new, r_new
    # Judge both solutions on the same stars, with the same clipping, each by
    # its residual variance per degree of freedom (the engine's SIP terms were
    # fitted to much the same stars: with few stars, more terms always fit
    # them closer, and predict the rest of the field worse).
    res = np.hypot(x[s] - rx[r], y[s] - ry[r])
    engine_res = np.hypot(x[s] - engine_rx[r], y[s] - engine_ry[r])
    # Distances of 2-D residuals follow a Rayleigh law (median 1.18 sigma):
    # beyond 3x the median lie 2 in 1000 of the good matches.
    clip = max(3.0 * np.median(res), 0.05)
    keep = res < clip
    n = int(keep.sum())
    rms = float(np.sqrt(np.mean(res[keep] ** 2)))
    engine_rms = float(np.sqrt(np.mean(np.minimum(engine_res[keep], 3.0) ** 2)))
    if n < MIN_MATCHES or not (_per_freedom(rms, n, _parameters(chosen))
                               <= _per_freedom(engine_rms, n, _parameters(_order_of(header)))):
        return None
    candidate = _sip_header(header, crval, cx, cy, terms, scale, chosen, width, height, crpix)
    candidate['AN_REFIT'] = (n, 'stars in the astrometry_query refit')
    candidate['AN_RMS'] = (round(rms, 5), '[pix] RMS of the refit residuals')
    order_from = 'data' if order is None else 'tweak_order'
    candidate['AN_ORDER'] = (int(chosen), 'SIP order: ' + (
        'chosen by held-out stars' if order is None else 'set by tweak_order'))
    return RefineResult(candidate, chosen, n, rms, engine_rms, engine_matches, order_from)
