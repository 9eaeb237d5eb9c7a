"""Source extraction with sep, and x/y source lists as astrometry.net reads them.

`extract_sources` finds stars at full resolution with ``sep.extract`` and
measures windowed centroids (``astrometry_query.centroids``, as SExtractor's
XWIN/YWIN), which are 5-10x more precise than sep's isophotal barycentres.  The image
is processed in bands of rows, so a large file is never held in memory
whole (nor converted to float64), and a memory-mapped array is read a band
at a time.  Hot pixels and cosmic rays (sharper than any star) are dropped;
saturated stars are kept and flagged; pieces of satellite trails (far longer
than wide) are dropped.  Under light that fills the frame and varies within
the background mesh (a nebula, a galaxy's disc), stars are found, measured
and ranked on the light's sharp part (the light less its blur over a star's
width), with the threshold on that part's local noise, not on the glow.
"""
import math
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from .centroids import window_sigmas, windowed_centroids
from .exceptions import InvalidInputError
from .images import Image, open_image
from .settings import MAX_SOURCES

__all__ = ['extract_sources', 'check_source_list', 'write_xylist', 'source_list_from',
           'check_params', 'MAX_SOURCES', 'FLAG_SATURATED', 'FLAG_BLENDED', 'FLAG_CENTROID']

#: Bit of the ``flag`` column set for a star that reaches the saturation level.
FLAG_SATURATED = 1
#: Bit set for a source split from a blend (its centroid may be pulled).
FLAG_BLENDED = 2
#: Bit set when the windowed centroid wandered off (a neighbour pulled it) or saw no
#: light: the isophotal one is given.
FLAG_CENTROID = 4
#: Pixels per band: bounds the working memory to ~100 MB whatever the image size.
_BAND_PIXELS = 17_000_000
#: Above this many pixels, detection (not measurement) runs on a 2x2-binned image.
_AUTO_BIN_PIXELS = 12_000_000
#: Mesh RMS over the pixel-to-pixel noise beyond which the sky holds structure
#: (a nebula...) and is followed with a finer mesh (see `_background`).
_NEBULOUS = 2.0


def _gaussian_kernel(fwhm, reach=1.6):
    """The matched filter, a Gaussian cut at +-``reach`` sigma.  On white noise
    1.6 keeps ~99 % of the signal-to-noise (the filter's weight is its square)
    at half the cost of 2; on the sharp part of a nebula (whose noise is not
    white) the wider cut finds ~5 % more of the faint stars."""
    sigma = max(float(fwhm), 0.5) / 2.3548
    half = max(1, int(round(reach * sigma)))
    x = np.arange(-half, half + 1)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return np.outer(g, g).astype(np.float32)


def _bin2(data):
    """2x2 sum (odd last row/column dropped): fast, float32."""
    ny, nx = (data.shape[0] // 2) * 2, (data.shape[1] // 2) * 2
    d = data[:ny, :nx]
    return d[0::2, 0::2] + d[1::2, 0::2] + d[0::2, 1::2] + d[1::2, 1::2]


def check_params(fwhm, detect_threshold, max_sources, downsample):
    """Check the extraction parameters (before any work), naming the one that is wrong."""
    for name, value, low, high in (('fwhm', fwhm, 0.5, 100.0),
                                   ('detect_threshold', detect_threshold, 0.5, 1e4)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not (math.isfinite(value) and low <= value <= high):
            raise InvalidInputError(f'{name} must be a number in [{low}, {high}], got {value!r}.')
    if isinstance(max_sources, bool) or not isinstance(max_sources, (int, np.integer)) \
            or max_sources < 1:
        raise InvalidInputError(f'max_sources must be a positive int, got {max_sources!r}.')
    if downsample is not None and (isinstance(downsample, bool) or downsample not in (1, 2, 3, 4)):
        raise InvalidInputError(f'downsample must be None (automatic), 1, 2, 3 or 4, '
                                f'got {downsample!r}.')


def _saturation_level(header, saturation):
    if saturation is not None:
        return float(saturation)
    for key in ('SATURATE', 'SATLEVEL', 'MAXLIN'):
        value = header.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _band_sources(band, core, fwhm, threshold, binning, saturation):
    """Sources of one band (rows ``band``, keeping those in ``core``): a record array."""
    import sep
    bad = ~np.isfinite(band)
    mask = bad if bad.any() else None
    if mask is not None:
        band[bad] = 0.0
    sat_map = (band >= 0.98 * saturation) if saturation is not None else None
    bkg, rms, err = _background(band, mask, fwhm)
    bkg.subfrom(band)
    if mask is not None:
        band[bad] = 0.0
    sharp = None
    if err is None:     # under a nebula: stars are found and ranked on the light's sharp
        sharp = _sharp_part(band, fwhm)       # part only, where knots count little
        err = _sharp_noise(sharp, mask, rms)
        rms = float(np.median(err))
    detect = band if sharp is None else sharp
    reach = 1.6 if sharp is None else 2.0
    if binning > 1:
        for _ in range(binning // 2):
            detect = _bin2(detect)
            err = err if np.ndim(err) == 0 else _bin2(err) / 4.0    # a map: its mean
        # The sum of b*b pixels has b times the noise of one.
        objects = sep.extract(np.ascontiguousarray(detect), threshold, err=err * binning,
                              minarea=3, filter_kernel=_gaussian_kernel(fwhm / binning, reach),
                              deblend_nthresh=16)
        scale = float(binning)
        x0 = (objects['x'] + 0.5) * scale - 0.5
        y0 = (objects['y'] + 0.5) * scale - 0.5
    else:
        objects = sep.extract(detect, threshold, err=err, minarea=3,
                              filter_kernel=_gaussian_kernel(fwhm, reach), deblend_nthresh=16)
        x0, y0 = objects['x'], objects['y']
    keep = (y0 >= core[0]) & (y0 < core[1]) & ~_streaks(objects, fwhm / binning)
    objects, x0, y0 = objects[keep], x0[keep], y0[keep]
    return objects, x0, y0, rms, bkg.globalback, sat_map, sharp


def _pixel_noise(band):
    """Noise of one pixel from second differences of pixels two apart (~50 000
    of them, in rows spread over the band): blind to light that varies
    smoothly (a nebula, a galaxy, a gradient: a slope cancels), and to stars
    (a median)."""
    rows = band[::max(1, band.size // 50_000)]
    d = rows[:, 4:] - 2 * rows[:, 2:-2] + rows[:, :-4]
    d = d[np.isfinite(d) & (d != 0)]
    return float(np.median(np.abs(d))) * 1.4826 / math.sqrt(6) if d.size > 100 else 0.0


def _background(band, mask, fwhm):
    """The sky of a band (a `sep.Background`), its RMS, and the noise to
    threshold on (the RMS; None under a nebula, see `_sharp_noise`).

    A coarse mesh (64 or 128 px) suits a star field.  When light that fills
    the frame (a nebula, a galaxy's disc) varies within the mesh's boxes, the
    boxes' RMS measures that light, not the noise, and a threshold on it
    leaves only the brightest stars.  The pixel-to-pixel noise tells: when
    the mesh RMS is well over it, the sky is followed with a mesh a few star
    widths wide, stars are detected on the light's sharp part, and the
    threshold is set on that part's own local fluctuations.
    """
    import sep
    box = 64 if band.shape[1] * band.shape[0] <= 4_000_000 else 128
    bkg = sep.Background(band, mask=mask, bw=box, bh=box)
    rms = bkg.globalrms if bkg.globalrms > 0 else (float(np.std(band)) or 1.0)
    local = _pixel_noise(band)
    if not (local > 0 and rms > _NEBULOUS * local):
        return bkg, rms, rms
    fine = max(12, int(round(6 * fwhm)))
    return sep.Background(band, mask=mask, bw=fine, bh=fine, fw=3, fh=3), local, None


def _sharp_noise(sharp, mask, local):
    """A map of the noise of `_sharp_part` (its fluctuations, stars clipped), which
    is where the threshold sits under a nebula."""
    import sep
    box = 32 if sharp.shape[1] * sharp.shape[0] <= 4_000_000 else 64
    noise = sep.Background(sharp, mask=mask, bw=box, bh=box, fw=3, fh=3).rms()
    return np.maximum(noise, 0.5 * local).astype(np.float32)


def _sharp_part(band, fwhm):
    """The band less its light smoothed over a star's width: stars stay, a nebula's
    structure wider than a few stars goes."""
    from scipy.ndimage import gaussian_filter
    return band - gaussian_filter(band, sigma=max(1.0, 0.5 * float(fwhm)), mode='nearest')


def _streaks(objects, fwhm):
    """True for detections far longer than wide and longer than a star: pieces of
    satellite and aircraft trails."""
    if not len(objects):
        return np.zeros(0, bool)
    a, b = objects['a'], np.maximum(objects['b'], 1e-3)
    return (a > 4.0 * b) & (a > 1.5 * fwhm)


def _spread(band, x0, y0):
    """Peak value, position, and how much light its 4 neighbours hold (0-1)."""
    ny, nx = band.shape
    peak, px, py = _local_peak(band, x0, y0, 2)
    # A star spreads light into all 4 neighbours of its brightest pixel; a hot
    # pixel or a cosmic-ray track (1 pixel wide) leaves some of them dark.
    neighbours = np.min([band[py, np.clip(px + d, 0, nx - 1)] for d in (-1, 1)]
                        + [band[np.clip(py + d, 0, ny - 1), px] for d in (-1, 1)], axis=0)
    return peak, px, py, neighbours / np.maximum(peak, 1e-30)


def _measure(band, objects, x0, y0, fwhm, sat_map, max_keep, rms, sharp=None):
    """Artifacts removed, then windowed centroids and fluxes at full resolution
    (on ``sharp``, the sharp part of the light, when given)."""
    import sep
    n = len(objects)
    if n == 0:
        return {}
    order = np.argsort(-objects['flux'], kind='stable')[:max_keep]
    objects, x0, y0 = objects[order], x0[order], y0[order]
    peak, px, py, spread = _spread(band, x0, y0)
    saturated = sat_map[py, px] if sat_map is not None else np.zeros(len(x0), bool)
    typical = _typical_spread(peak, spread, rms)
    artifact = _artifacts(peak, spread, saturated, rms, typical)
    if artifact.any():
        # Blank each artifact's brightest pixel, so it pulls no centroid; a star
        # that merely had a hot pixel beside it then looks like a star again.
        band[py[artifact], px[artifact]] = 0.0
        idx = np.nonzero(artifact)[0]
        p2, px2, py2, s2 = _spread(band, x0[idx], y0[idx])
        star = ~_artifacts(p2, s2, saturated[idx], rms, typical) & (p2 > 5.0 * rms) \
            & (s2 >= 0.5 * typical)
        artifact[idx[star]] = False
        peak[idx[star]], px[idx[star]], py[idx[star]] = p2[star], px2[star], py2[star]
    keep = ~artifact
    objects, x0, y0 = objects[keep], x0[keep], y0[keep]
    peak, px, py, saturated = peak[keep], px[keep], py[keep], saturated[keep]
    radius = np.full(len(x0), max(2.0, 1.5 * fwhm))
    light = band if sharp is None else sharp
    flux, _, _ = sep.sum_circle(light, x0, y0, radius, subpix=1)
    # Windows the width of the well-measured stars around each star (a faint
    # star's own width is mostly noise; the brightest's cores may be clipped or
    # compressed by a stretch: their own width where wider), all stars
    # iterated in step (see `centroids`).
    snr = peak / max(rms, 1e-30)
    sizers = (snr > 20.0) & (snr < 200.0) & ~saturated
    if sizers.sum() < 3:
        sizers = (snr > 20.0) & ~saturated
    sigma = window_sigmas(light, x0, y0, sizers, fwhm, own=(snr >= 200.0) | saturated)
    xw, yw, ok = windowed_centroids(light, x0, y0, sigma, max_shift=max(1.0, fwhm))
    flag = np.zeros(len(xw), dtype=np.int16)
    flag[(objects['flag'] & sep.OBJ_MERGED) > 0] |= FLAG_BLENDED
    flag[~ok] |= FLAG_CENTROID
    flag[saturated] |= FLAG_SATURATED
    return dict(x=xw, y=yw, flux=np.where(np.isfinite(flux), flux, objects['flux']),
                peak=peak, flag=flag, rejected=int(artifact.sum()))


def _local_peak(data, x, y, half):
    """Value and position of the brightest pixel within +-half of (x, y)."""
    ny, nx = data.shape
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)
    best = np.full(len(ix), -np.inf, dtype=np.float32)
    bx, by = ix.clip(0, nx - 1), iy.clip(0, ny - 1)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            cx, cy = (ix + dx).clip(0, nx - 1), (iy + dy).clip(0, ny - 1)
            value = data[cy, cx]
            better = value > best
            best = np.where(better, value, best)
            bx, by = np.where(better, cx, bx), np.where(better, cy, by)
    return best, bx, by


def _typical_spread(peak, spread, rms):
    significant = peak > 20.0 * rms
    return float(np.median(spread[significant][:300])) if significant.sum() >= 3 else 0.5


def _artifacts(peak, spread, saturated, rms, typical):
    """True for hot pixels and cosmic rays: bright, and far sharper than a star.

    A star lights all 4 neighbours of its peak pixel (to ~0.7 of the peak at
    FWHM 3 px, ~0.15 at FWHM 1.2 px); a hot pixel or a 1-pixel-wide track
    leaves at least one of them near the background.
    """
    if not len(peak):
        return np.zeros(0, bool)
    significant = peak > 20.0 * rms
    too_sharp = significant & (spread < min(0.1, 0.3 * typical))
    return too_sharp & ~saturated


def extract_sources(image, *, fwhm=3.0, detect_threshold=5.0, max_sources=MAX_SOURCES,
                    downsample=None, saturation=None, invert=False, hdu=None):
    """Find stars: windowed centroids at full resolution, brightest first.

    Parameters
    ----------
    image : path, HDUList, HDU, `~numpy.ndarray`, NDData or `~astrometry_query.images.Image`
        The image (see `~astrometry_query.images.open_image`).
    fwhm : float
        Typical star FWHM in pixels (the matched filter; centroid windows
        adapt to each star's measured size).
    detect_threshold : float
        Detection threshold in units of the background RMS.
    max_sources : int
        Keep at most this many (astrometry.net uses 1000).
    downsample : {None, 1, 2, 4}
        Detect on an image binned by this factor (measurement stays at full
        resolution).  None: 2 for images over 12 million pixels, else 1.
    saturation : float, optional
        Saturation level; default the header's SATURATE, if any.
    invert : bool
        Find dark stars on a bright sky (a negative).
    hdu : int or str, optional
        Which HDU of a FITS file.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``x``, ``y`` (FITS 1-based pixels, as astrometry.net wants),
        ``flux``, ``peak`` (background-subtracted) and ``flag``
        (bits `FLAG_SATURATED`, `FLAG_BLENDED`, `FLAG_CENTROID`), brightest
        first.  ``meta`` holds the image size
        (``width``, ``height``), ``background``, ``rms``, ``rejected`` (hot
        pixels and cosmic rays dropped) and ``elapsed`` (s).
    """
    check_params(fwhm, detect_threshold, max_sources, downsample)
    started = time.perf_counter()
    img = open_image(image, hdu=hdu) if not isinstance(image, Image) else image
    ny, nx = img.shape
    binning = downsample or (2 if img.size > _AUTO_BIN_PIXELS and fwhm >= 2.5 else 1)
    binning = 2 if binning == 3 else binning
    saturation = _saturation_level(img.header, saturation)
    # Bands overlap by a margin wider than a star; each keeps the stars of its core.
    margin = int(math.ceil(max(16.0, 6.0 * fwhm)))
    margin += margin % 2        # even, so binned pixels line up in every band
    rows = max(256, (_BAND_PIXELS // nx) // 2 * 2)
    found, rms_all, back_all, rejected = [], [], [], 0
    low, high = np.inf, -np.inf
    for y_start in range(0, ny, rows):
        y_end = min(ny, y_start + rows)
        lo, hi = max(0, y_start - margin), min(ny, y_end + margin)
        band = img.rows(lo, hi)
        if not np.isfinite(band).any():
            continue
        if invert:
            np.negative(band, out=band)
        b_low, b_high = band.min(), band.max()
        if not (np.isfinite(b_low) and np.isfinite(b_high)):
            b_low, b_high = np.nanmin(band), np.nanmax(band)
        low, high = min(low, b_low), max(high, b_high)
        objects, x0, y0, rms, back, sat_map, sharp = _band_sources(
            band, (y_start - lo, y_end - lo), fwhm, detect_threshold, binning, saturation)
        rms_all.append(rms)
        back_all.append(back)
        m = _measure(band, objects, x0, y0, fwhm, sat_map, max_sources + 300, rms, sharp)
        if not m:
            continue
        rejected += m.pop('rejected')
        m['y'] = m['y'] + lo
        found.append(m)
    if not rms_all:
        raise InvalidInputError(f'image: {img.name} has no finite pixel values.')
    if low == high:
        raise InvalidInputError(f'image: {img.name} is constant (every pixel is {low:g}): '
                                'there is nothing to solve.')
    cols = {k: np.concatenate([f[k] for f in found]) if found else np.zeros(0)
            for k in ('x', 'y', 'flux', 'peak', 'flag')}
    order = np.argsort(-cols['flux'], kind='stable')[:max_sources]
    table = Table()
    # sep is 0-based; astrometry.net's x/y lists are FITS 1-based.
    table['x'] = (cols['x'][order] + 1.0) * u.pix
    table['y'] = (cols['y'][order] + 1.0) * u.pix
    table['flux'] = cols['flux'][order].astype(np.float64)
    table['peak'] = cols['peak'][order].astype(np.float64)
    table['flag'] = cols['flag'][order].astype(np.int16)
    table.meta.update(width=nx, height=ny, background=float(np.median(back_all)),
                      rms=float(np.median(rms_all)), rejected=rejected, binning=binning,
                      elapsed=time.perf_counter() - started)
    return table


def check_source_list(x, y):
    """x, y as float arrays, checked as nova would check them, before any I/O."""
    try:
        x = np.asarray(u.Quantity(x, u.pix).value if isinstance(x, u.Quantity) else x, dtype=float)
        y = np.asarray(u.Quantity(y, u.pix).value if isinstance(y, u.Quantity) else y, dtype=float)
    except (TypeError, ValueError, u.UnitsError):
        raise InvalidInputError('x and y must be sequences of numbers (pixels).') from None
    if x.ndim != 1 or y.ndim != 1:
        raise InvalidInputError('x and y must be 1-D sequences.')
    if len(x) != len(y):
        raise InvalidInputError(f'x and y must have the same length, got {len(x)} and {len(y)}.')
    if len(x) < 4:
        raise InvalidInputError(f'A source list needs at least 4 sources, got {len(x)}.')
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError('x and y must be finite (no NaN or inf).')
    if x.max() <= 0 or y.max() <= 0:
        raise InvalidInputError('Source lists must contain positive x, y coordinates (FITS 1-based).')
    return x, y


def source_list_from(sources):
    """(x, y, width, height) from a Table with x/y columns (and width/height
    in its meta, as `extract_sources` leaves them) or an (x, y, w, h) tuple."""
    if isinstance(sources, Table):
        names = {n.lower(): n for n in sources.colnames}
        if 'x' not in names or 'y' not in names:
            raise InvalidInputError('A source Table needs x and y columns.')
        meta = {k.lower(): v for k, v in sources.meta.items()}
        width = meta.get('width') or meta.get('imagew')
        height = meta.get('height') or meta.get('imageh')
        return sources[names['x']], sources[names['y']], width, height
    try:
        x, y, width, height = sources
    except (TypeError, ValueError):
        raise InvalidInputError('A source list is a Table with x, y columns or an '
                                '(x, y, width, height) tuple.') from None
    return x, y, width, height


def write_xylist(path, x, y, flux=None):
    """Write an x/y list as the FITS binary table astrometry.net reads (X, Y[, FLUX])."""
    columns = [fits.Column('X', 'D', array=np.asarray(x, float)),
               fits.Column('Y', 'D', array=np.asarray(y, float))]
    if flux is not None:
        columns.append(fits.Column('FLUX', 'D', array=np.asarray(flux, float)))
    fits.BinTableHDU.from_columns(columns).writeto(path, overwrite=True)
    return Path(path)
