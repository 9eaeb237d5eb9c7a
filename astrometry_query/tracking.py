"""Following one field through a sequence of frames, without a new search.

A frame of a sequence shows the field of the frame before it, drifted by a
few pixels (tracking errors, dithers) and at most a little rotated.  `track`
checks a frame against a solved one: the catalogue stars of the solved
frame's field are projected through its WCS, the offset that lines the most
of them up with the frame's stars is found by voting, the stars are matched,
and the pointing (a shift of the tangent point) and the roll are fitted.  The
optics do not move with the sky, so the solved WCS keeps its reference pixel,
its pixel scale and its distortion terms: only where it points changes.

Three stars are enough (a frame under thick cloud), yet a wrong match is
refused: the votes must stand out from chance (the number of coincidences
expected from the density of catalogue stars), the fit must leave residuals
of a fraction of the star size, the roll must stay small, and most of the
frame's stars that fall on the sky the catalogue covers must find their star.

Given the solved frame's own sources, the accepted solution is then
registered on them: the stars seen in both frames are paired and the shift
and roll refitted, so each catalogue star's own error, the same in every
frame, drops out (what is left is the solved frame's WCS error and the
centroids' noise).
A frame that does not pass is searched as any other (see
`astrometry_query.local.pipeline.solve`'s ``reference``).
"""
import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from .local.refine import mutual_matches
from .results import wcs_from_header

__all__ = ['track', 'TrackResult', 'Sequence', 'MIN_TRACKED']

#: Fewest matched stars a tracked solution rests on.
MIN_TRACKED = 3
#: Largest roll between two frames of a sequence, degrees (a meridian flip is a new field).
MAX_ROLL = 2.0
#: Brightest frame sources used (the faint ones add coincidences, not information).
MAX_SOURCES = 60


@dataclass
class TrackResult:
    """A frame solved by tracking.

    Attributes
    ----------
    header : `~astropy.io.fits.Header`
        The frame's WCS: the reference's, pointing where this frame points.
    matches : int
        Frame stars matched with catalogue stars.
    rms : float
        RMS of their residuals, pixels.
    shift : tuple of float
        How far the field moved on the detector since the reference (pixels).
    roll : float
        How far it turned (degrees, positive from +x towards +y).
    pairs : list
        (source index, catalogue index) of the matches.
    registered : int
        Frame stars paired with the reference frame's own (0: the fit rests
        on the catalogue alone).
    """
    header: fits.Header
    matches: int
    rms: float
    shift: tuple
    roll: float
    pairs: list = field(default_factory=list)
    registered: int = 0

    def to_dict(self):
        return {'matches': self.matches, 'rms': round(self.rms, 4), 'registered': self.registered,
                'shift': [round(float(v), 3) for v in self.shift], 'roll': round(self.roll, 5)}


class _Pointing:
    """The reference WCS pointed and rolled: one WCS changed in place for each
    trial of the fit (a copy per trial cost most of a tracked frame's time)."""

    def __init__(self, reference):
        self.reference = reference
        self.crpix = reference.wcs.crpix.copy()
        self.wcs = reference.deepcopy()
        self.has_cd = self.wcs.wcs.has_cd()
        self.base = (self.wcs.wcs.cd if self.has_cd else self.wcs.wcs.get_pc()).copy()

    def __call__(self, params):
        """The WCS for ``params`` = (dx, dy, roll): the sky the reference saw at
        ``crpix - (dx, dy)`` is at ``crpix`` now, turned by ``roll`` (deg) on
        the sky about it.  The same object each call: copy it to keep it."""
        dx, dy, roll = params
        c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        rotated = np.array([[c, -s], [s, c]]) @ self.base
        if self.has_cd:
            self.wcs.wcs.cd = rotated
        else:
            self.wcs.wcs.pc = rotated
        point = [[self.crpix[0] - dx, self.crpix[1] - dy]]
        self.wcs.wcs.crval = self.reference.all_pix2world(point, 1)[0]
        self.wcs.wcs.set()
        return self.wcs


def _vote(x, y, px, py, max_shift, cell):
    """The offset (dx, dy) most frame/catalogue pairs agree on, its votes, and the
    votes of the best other offset."""
    dx = x[:, None] - px[None, :]
    dy = y[:, None] - py[None, :]
    near = (np.abs(dx) <= max_shift) & (np.abs(dy) <= max_shift)
    dx, dy = dx[near], dy[near]
    if len(dx) < MIN_TRACKED:
        return None, 0, 0
    bins = max(3, int(math.ceil(2 * max_shift / cell)))
    counts, xe, ye = np.histogram2d(dx, dy, bins=bins, range=[[-max_shift, max_shift]] * 2)
    # Votes of a 2x2 block of cells: an offset on a cell edge is not split.
    blocks = counts[:-1, :-1] + counts[1:, :-1] + counts[:-1, 1:] + counts[1:, 1:]
    i, j = np.unravel_index(np.argmax(blocks), blocks.shape)
    best = blocks[i, j]
    centre = (xe[i + 1], ye[j + 1])
    inside = np.hypot(dx - centre[0], dy - centre[1]) <= 1.5 * cell
    if not inside.any():
        return None, 0, 0
    offset = (float(np.median(dx[inside])), float(np.median(dy[inside])))
    others = blocks.copy()
    others[max(0, i - 2):i + 3, max(0, j - 2):j + 3] = 0
    return offset, int(best), int(others.max())


def track(x, y, reference, ref_ra, ref_dec, *, width, height, ref_mag=None, max_shift=None,
          fwhm=3.0, flux=None, ref_sources=None):
    """Solve a frame by following the field of a solved one.

    Parameters
    ----------
    x, y : array
        The frame's sources (FITS 1-based pixels), brightest first.
    reference : `~astropy.io.fits.Header`
        The WCS of a solved frame of the same field (TAN or TAN-SIP).
    ref_ra, ref_dec : array
        Catalogue stars around that field (degrees); ``ref_mag`` their
        magnitudes (NaN when unknown), brightest first when given.
    width, height : int
        The frame in pixels.
    max_shift : float, optional
        How far the field may have moved, pixels (default a tenth of the
        frame's longer side, at least 30).
    fwhm : float
        The stars' size, pixels: it sets the match radius.
    flux : array, optional
        The sources' fluxes: the fit weighs each star by its signal (a faint
        star's centroid is the less certain).
    ref_sources : tuple of array, optional
        (x, y) of the reference frame's own sources (FITS 1-based).  The
        field found through the catalogue is then registered on them: the
        same stars measured in both frames, so each catalogue star's own
        error (a few tenths of an arcsecond, the same in every frame) drops
        out, and stars the catalogue lacks count too.

    Returns
    -------
    TrackResult or None
        None when the frame does not show that field, or not clearly enough.
    """
    x, y = np.asarray(x, float)[:MAX_SOURCES], np.asarray(y, float)[:MAX_SOURCES]
    # Centroid errors go as 1/SNR, and the SNR of a faint star as its flux.
    weight = np.ones(len(x)) if flux is None else np.clip(
        np.sqrt(np.asarray(flux, float)[:MAX_SOURCES] / np.median(flux[:MAX_SOURCES])), 0.3, 3.0)
    if len(x) < MIN_TRACKED or len(ref_ra) < MIN_TRACKED:
        return None
    max_shift = float(max_shift or max(30.0, 0.1 * max(width, height)))
    radius = max(2.0, 1.0 * fwhm)
    ref_wcs = wcs_from_header(reference)
    pointed = _Pointing(ref_wcs)
    with np.errstate(all='ignore'):
        px, py = ref_wcs.all_world2pix(np.asarray(ref_ra, float), np.asarray(ref_dec, float), 1,
                                       quiet=True)
    margin = max_shift + radius
    on = np.isfinite(px) & np.isfinite(py) & (px > 0.5 - margin) & (px < width + 0.5 + margin) \
        & (py > 0.5 - margin) & (py < height + 0.5 + margin)
    order = np.argsort(np.where(np.isfinite(ref_mag), ref_mag, 99.0)[on], kind='stable') \
        if ref_mag is not None else np.arange(on.sum())
    cat = np.nonzero(on)[0][order][:max(40, 8 * len(x))]     # the brightest catalogue stars
    px, py = px[cat], py[cat]
    offset, votes, rival = _vote(x, y, px, py, max_shift, cell=radius)
    # Votes one offset gets by chance: each frame star meets a catalogue star in a block of
    # the offset plane as often as the catalogue's density over the frame says.
    chance = len(x) * len(px) * (2 * radius) ** 2 / ((width + 2 * margin) * (height + 2 * margin))
    if offset is None or votes < MIN_TRACKED or votes < rival + 2 \
            or votes < chance + 3 * math.sqrt(chance) + 1:
        return None
    params = np.array([offset[0], offset[1], 0.0])
    pairs = (np.zeros(0, int), np.zeros(0, int))
    for _ in range(3):        # match, fit, match again with the better model
        model = pointed(params)
        with np.errstate(all='ignore'):
            mx, my = model.all_world2pix(np.asarray(ref_ra, float)[cat],
                                         np.asarray(ref_dec, float)[cat], 1, quiet=True)
        s, c = mutual_matches(x, y, mx, my, radius)
        if len(s) < MIN_TRACKED:
            return None
        if pairs[0].shape == s.shape and np.array_equal(pairs[0], s) and \
                np.array_equal(pairs[1], c):
            break
        pairs = (s, c)
        ra_m, dec_m = np.asarray(ref_ra, float)[cat][c], np.asarray(ref_dec, float)[cat][c]
        params = _fit_pointing(pointed, params, x[s], y[s], weight[s], ra_m, dec_m)
    s, c = pairs
    model = pointed(params)
    fx, fy = model.all_world2pix(np.asarray(ref_ra, float)[cat][c],
                                 np.asarray(ref_dec, float)[cat][c], 1, quiet=True)
    res = np.hypot(x[s] - fx, y[s] - fy)
    rms = float(np.sqrt(np.mean(res ** 2)))
    registered = 0
    if ref_sources is not None and rms <= max(0.6, 0.3 * fwhm):
        params, registered = _register(x, y, weight, ref_wcs, pointed, params, ref_sources,
                                       radius=max(0.5, 3 * rms))
        model = pointed(params)
    # The frame's stars that the catalogue could have matched: those on its sky.
    with np.errstate(all='ignore'):
        ax, ay = model.all_world2pix(np.asarray(ref_ra, float)[cat], np.asarray(ref_dec, float)[cat],
                                     1, quiet=True)
    covered = cKDTree(np.column_stack([ax, ay])).query(np.column_stack([x, y]))[0] < 4 * max_shift
    if rms > max(0.6, 0.3 * fwhm) or abs(params[2]) > MAX_ROLL \
            or len(s) < max(MIN_TRACKED, 0.5 * min(covered.sum(), 12)):
        return None
    header = reference.copy()
    solved = model.to_header(relax=True)
    for key in ('CRVAL1', 'CRVAL2'):
        header[key] = solved[key]
    cd = model.wcs.cd if model.wcs.has_cd() else model.wcs.get_pc() * model.wcs.cdelt[:, None]
    for (i, j), value in np.ndenumerate(cd):
        header[f'CD{i + 1}_{j + 1}'] = float(value)
    for key in ('PC1_1', 'PC1_2', 'PC2_1', 'PC2_2', 'CDELT1', 'CDELT2', 'AN_REFIT', 'AN_RMS'):
        header.remove(key, ignore_missing=True)
    header['AN_TRACK'] = (len(s), 'stars matched, following the reference field')
    header['AN_TRKRM'] = (round(rms, 4), '[pix] RMS of the tracked matches')
    if registered:
        header['AN_TRREG'] = (registered, 'stars registered on the reference frame')
    return TrackResult(header=header, matches=len(s), rms=rms, shift=(params[0], params[1]),
                       roll=float(params[2]), pairs=list(zip(s.tolist(), cat[c].tolist())),
                       registered=registered)


def _fit_pointing(pointed, start, x, y, weight, ra, dec):
    """The (dx, dy, roll) of `_Pointing` that puts the stars at (ra, dec) on
    the frame's (x, y), each weighed by ``weight``: least squares from ``start``."""
    def residuals(p):
        fx, fy = pointed(p).all_world2pix(ra, dec, 1, quiet=True)
        return np.concatenate([(x - fx) * weight, (y - fy) * weight])
    return least_squares(residuals, start, x_scale=[1.0, 1.0, 0.01]).x


def _register(x, y, weight, ref_wcs, pointed, params, ref_sources, radius):
    """(params, pairs): the pointing and roll refitted on the stars measured in
    both frames, or the catalogue's when too few of them pair up.

    The reference frame's stars go to the sky through its own WCS, then into
    this frame through the trial one.  The match radius starts at three times
    the catalogue fit's RMS and tightens: a hot pixel sits still on the
    detector while the field moves, and falls out."""
    rx, ry = (np.asarray(v, float) for v in ref_sources)
    with np.errstate(all='ignore'):
        sky_ra, sky_dec = ref_wcs.all_pix2world(rx, ry, 1)
    best, pairs = params, 0
    for _ in range(3):
        with np.errstate(all='ignore'):
            mx, my = pointed(best).all_world2pix(sky_ra, sky_dec, 1, quiet=True)
        s, r = mutual_matches(x, y, mx, my, radius)
        if len(s) < MIN_TRACKED:
            break
        fitted = _fit_pointing(pointed, best, x[s], y[s], weight[s], sky_ra[r], sky_dec[r])
        fx, fy = pointed(fitted).all_world2pix(sky_ra[r], sky_dec[r], 1, quiet=True)
        rms = float(np.sqrt(np.mean((x[s] - fx) ** 2 + (y[s] - fy) ** 2)))
        best, pairs = fitted, len(s)
        tighter = max(0.3, 3 * rms)
        if tighter >= radius:
            break
        radius = tighter
    return best, pairs


class Sequence:
    """The fields of a sequence of frames, as solved so far, and which solved
    frame a new frame should follow.

    A sequence is split into fields by where the frames point: a solution
    whose centre lies within the field of a known one replaces it (the field
    drifted), any other starts a new field.  A new frame follows the field its
    header points into (RA/DEC, OBJCTRA/OBJCTDEC cards...), else the field
    solved last: a frame that does not show that field is searched, and its
    solution becomes a field of its own (a pointing jump, a meridian flip, the
    next target).  Frames of another size (binning, another camera) never
    follow.  Thread-safe.

    Parameters
    ----------
    max_fields : int
        How many fields to remember (the most recently solved).
    """

    def __init__(self, max_fields=4):
        import threading
        self._fields = []   # newest first: (header, width, height, centre, radius, sources)
        self._lock = threading.Lock()
        self.max_fields = max_fields

    def __len__(self):
        return len(self._fields)

    def __repr__(self):
        return f'<Sequence of {len(self._fields)} fields>'

    def reference_for(self, width, height, pointing=None, *, with_sources=False):
        """The WCS header a frame of this size should follow, or None.

        Parameters
        ----------
        pointing : tuple of float, optional
            (ra, dec) in degrees where the frame's header says it points.
        with_sources : bool
            Return (header, sources): the sources kept with that solution
            (see `solved`), or None.
        """
        from astropy.coordinates import SkyCoord
        with self._lock:
            fields = [f for f in self._fields if (f[1], f[2]) == (int(width), int(height))]
        found = None
        if fields and pointing is None:
            found = fields[0]
        elif fields:
            where = SkyCoord(*pointing, unit='deg')
            found = next((f for f in fields if f[3].separation(where).deg <= 1.5 * f[4]), None)
        if with_sources:
            return (found[0], found[5]) if found else (None, None)
        return found[0] if found else None

    def solved(self, header, width, height, sources=None):
        """Remember a frame's solution as the latest of its field (with its
        sources, ``x`` and ``y`` lists, when given: frames that follow it are
        registered on them)."""
        from astropy.coordinates import SkyCoord

        from .results import calibration_from_wcs
        cal = calibration_from_wcs(header, width, height)
        centre = SkyCoord(cal['ra'], cal['dec'], unit='deg')
        with self._lock:
            kept = [f for f in self._fields
                    if not ((f[1], f[2]) == (int(width), int(height))
                            and f[3].separation(centre).deg <= f[4])]
            self._fields = [(header, int(width), int(height), centre, cal['radius'],
                             sources)] + kept
            del self._fields[self.max_fields:]
