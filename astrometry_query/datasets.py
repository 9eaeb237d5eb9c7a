"""Synthetic star fields with a known true WCS, for testing plate solutions (like
``photutils.datasets``; formerly ``astrometry_query.simulate``).

The stars come from the astrometry.net index files (via ``query-starkd``), so
``solve-field`` can solve the images, and `wcs_rms_error` checks its answer.
Pixels: numpy and all astropy WCS calls here are **0-based** (``origin=0``), as are
``SyntheticField.stars['x', 'y']``; FITS (``CRPIX``) and astrometry.net source lists
are **1-based** (first pixel centre (1, 1)), as is `SyntheticField.source_list`.
"""
import math
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning, Sip
from astropy.wcs.utils import proj_plane_pixel_scales

from .index.locations import DEFAULT_INDEX_DIR, configured_index_dirs, find_config

__all__ = ['index_stars', 'make_wcs', 'SyntheticField', 'render_field', 'wcs_rms_error',
           'read_truth_wcs', 'make_example_image', 'EXAMPLE_IMAGE', 'synthetic_catalog',
           'lens_distortion', 'cluster_catalog', 'render_crowded_field', 'jitter_catalog']

EXAMPLE_IMAGE = Path(__file__).resolve().parent / 'data' / 'example.fits'
_erf = np.vectorize(math.erf, otypes=[float])


def _index_files(index_dir, index_names):
    dirs = [Path(index_dir)] if index_dir is not None else list(
        configured_index_dirs(find_config()) + (DEFAULT_INDEX_DIR,))
    files = (sorted(f for d in dirs for f in d.glob('index-tycho2-*.fits')) if index_names is None else
             [next((c for c in [Path(n)] + [d / n for d in dirs] if c.is_file()), None) for n in index_names])
    if not files or None in files:
        raise FileNotFoundError(f'no index files {index_names or "index-tycho2-*.fits"} in {dirs}')
    return files


def _parse_starkd_ascii(text):
    """(ra, dec, mag) from ``query-starkd`` ASCII: ``# RA, Dec, MAG_VT``, then ``ra, dec, mag`` lines."""
    num = r'\s*(?:[-+]?[\d.]+(?:[eE][-+]?\d+)?|nan)\s*'
    rows = [[float(v) for v in line.split(',')] + [np.nan] * (2 - line.count(','))
            for line in text.splitlines() if re.fullmatch(rf'{num}(?:,{num}){{1,2}}', line)]
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _query_one(exe, path, ra, dec, radius):
    # FITS output keeps full precision (ASCII has 6 digits); there is none when no star is found
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'stars.fits'
        cmd = [exe, '-r', f'{ra:.10f}', '-d', f'{dec:.10f}', '-R', f'{radius:.10f}', '-T', '-o', out, path]
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f'query-starkd failed on {path}: {proc.stderr.strip()[-500:]}')
        if not out.exists():
            return _parse_starkd_ascii(proc.stdout)
        tab = Table.read(out, hdu=1)
        mags = [n for n in tab.colnames if n.upper().startswith('MAG')]
        return (np.array(tab['RA'], dtype=float), np.array(tab['DEC'], dtype=float),
                np.array(tab[mags[0]], dtype=float) if mags else np.full(len(tab), np.nan))


def _unique_mask(ra, dec, tol_arcsec):
    """True for the first of each group of positions closer than ``tol_arcsec``."""
    order = np.argsort(dec, kind='stable')
    r, d = np.radians(ra[order]), np.radians(dec[order])
    xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)
    keep, tol = np.ones(len(ra), bool), np.radians(tol_arcsec / 3600.0)
    for k in range(1, len(ra)):     # compare each star with the k-th next in Dec
        i = np.nonzero(d[k:] - d[:-k] <= tol)[0]
        if not len(i):
            break
        same = np.linalg.norm(xyz[i] - xyz[i + k], axis=1) <= tol
        keep[np.maximum(order[i[same]], order[i[same] + k])] = False    # drop the later
    return keep


def index_stars(center, radius, *, index_dir=None, index_names=None, tolerance=1.0):
    """Stars of the astrometry.net index files within ``radius`` of ``center``.

    Runs ``query-starkd -r RA -d DEC -R RADIUS -T -o OUT FILE`` on each index file and
    merges the results, keeping one copy of stars found in several files.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
    radius : `~astropy.units.Quantity`
    index_dir : str or Path, optional
        Default: the ``add_path`` folders of ``/etc/astrometry.cfg``, and ``/usr/share/astrometry``.
    index_names : list of str, optional
        Index files (names in ``index_dir``, or paths). Default: all ``index-tycho2-*.fits``.
    tolerance : float, optional
        Stars closer than this (arcsec) are the same star.

    Returns
    -------
    `~astropy.table.Table`
        ``ra``, ``dec`` (deg) and ``mag`` (Tycho VT), brightest first.

    Raises
    ------
    RuntimeError
        If ``query-starkd`` is missing or fails (FileNotFoundError if there are no index files).
    """
    if (exe := shutil.which('query-starkd')) is None:
        raise RuntimeError('query-starkd not found on PATH: install astrometry.net '
                           '(apt-get install astrometry.net)')
    c, rad = center.icrs, u.Quantity(radius, u.deg).to_value(u.deg)
    parts = [_query_one(exe, f, c.ra.deg, c.dec.deg, rad) for f in _index_files(index_dir, index_names)]
    ra, dec, mag = (np.concatenate([p[i] for p in parts]) for i in range(3))
    keep = _unique_mask(ra, dec, tolerance).nonzero()[0]
    keep = keep[np.argsort(np.nan_to_num(mag[keep], nan=np.inf), kind='stable')]   # brightest first
    return Table([ra[keep] * u.deg, dec[keep] * u.deg, mag[keep]], names=('ra', 'dec', 'mag'))


def _scale_deg(pixel_scale):
    q = u.Quantity(pixel_scale)
    return q.to_value(u.deg / u.pix) if q.unit.is_equivalent(u.deg / u.pix) else q.to_value(u.deg)


def _sip_matrices(sip):
    terms = {k: float(v) for k, v in sip.items() if re.fullmatch(r'[AB]_\d+_\d+', k)}
    for key in ('A_3_0', 'A_1_2', 'B_2_1', 'B_0_3') if 'k1' in sip else ():   # k1 * (u, v) * r**2
        terms[key] = terms.get(key, 0.0) + float(sip['k1'])
    order = int(sip.get('order', max((sum(map(int, k.split('_')[1:])) for k in terms), default=2)))
    a, b = np.zeros((order + 1, order + 1)), np.zeros((order + 1, order + 1))
    for key, val in terms.items():
        name, p, q = key.split('_')
        (a if name == 'A' else b)[int(p), int(q)] = val
    return a, b


def make_wcs(center, *, pixel_scale, shape=(1024, 1024), rotation=0 * u.deg, flip=False, sip=None):
    """A TAN (or TAN-SIP) WCS with CRVAL ``center`` at CRPIX = the image centre.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
    pixel_scale : `~astropy.units.Quantity`
        Angle per pixel (``u.arcsec / u.pix``) or angle (``u.arcsec``).
    shape : tuple of int
        ``(ny, nx)``; CRPIX is ``((nx + 1) / 2, (ny + 1) / 2)`` (FITS, 1-based).
    rotation : `~astropy.units.Quantity`
        Angle of the image +y axis East of North: astrometry.net's "up is ... E of N".
    flip : bool
        False: normal parity (East left when North is up; det(CD) < 0; astrometry.net's
        "parity: pos"). True: mirrored, det(CD) > 0.
    sip : dict, optional
        SIP terms ``'A_p_q'``, ``'B_p_q'`` (pixel units, e.g. ``{'A_2_0': 1e-6}``), ``'order'``,
        and/or ``'k1'``: radial distortion moving each pixel by ``k1 * r**2`` (pix**-2) times
        its offset from CRPIX (k1 > 0: barrel, the stars drawn nearer the centre; a camera
        lens: `lens_distortion`). No AP/BP (``all_world2pix`` iterates).

    Returns
    -------
    `~astropy.wcs.WCS`
        With ``pixel_shape = (nx, ny)``.
    """
    (ny, nx), w, xs = shape, WCS(naxis=2), 1.0 if flip else -1.0
    s, t = _scale_deg(pixel_scale), u.Quantity(rotation, u.deg).to_value(u.rad)
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    w.wcs.crval = [center.icrs.ra.deg, center.icrs.dec.deg]
    # columns: sky direction of +x and of +y ("up", at `rotation` E of N)
    w.wcs.cd = s * np.array([[xs * math.cos(t), math.sin(t)], [-xs * math.sin(t), math.cos(t)]])
    suffix = '-SIP' if sip else ''
    w.wcs.ctype, w.wcs.radesys = ['RA---TAN' + suffix, 'DEC--TAN' + suffix], 'ICRS'
    if sip:
        w.sip = Sip(*_sip_matrices(sip), None, None, w.wcs.crpix)
    w.pixel_shape = (nx, ny)
    return w


@dataclass(repr=False)
class SyntheticField:
    """A rendered image and the truth it was rendered from.

    Attributes
    ----------
    data : numpy.ndarray
        float32 image ``(ny, nx)``, in electrons (gain 1).
    wcs : `~astropy.wcs.WCS`
        The true WCS.
    stars : `~astropy.table.Table`
        In-frame stars, brightest first: ``ra``, ``dec``, ``mag``, ``x``, ``y`` (0-based), ``flux``.
    meta : dict
        Header cards (rendering parameters).
    """
    data: np.ndarray
    wcs: WCS
    stars: Table
    meta: dict = field(default_factory=dict)

    def __repr__(self):
        """What the field is, not its pixels: ``<SyntheticField 500x400 px, 12.0"/px at
        RA 56.7500 Dec +24.1200, 412 stars, seed 5>``."""
        try:
            ny, nx = self.data.shape
            ra, dec = self.wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
            scale = float(np.mean(proj_plane_pixel_scales(self.wcs.celestial))) * 3600.0
            seed = self.meta.get('SEED')
            return (f'<SyntheticField {nx}x{ny} px, {scale:.3g}"/px at RA {float(ra) % 360:.4f} '
                    f'Dec {float(dec):+.4f}, {len(self.stars)} stars'
                    + (f', seed {seed}>' if seed is not None else '>'))
        except Exception:       # a repr must help debugging, never fail it
            return f'<SyntheticField {type(self.data).__name__} {getattr(self.data, "shape", "")}>'

    def _hints(self):       # IMAGEW/IMAGEH, field centre ('RA' = '05:35:16.8', ...), meta
        ny, nx = self.data.shape
        ra, dec = (Angle(v, u.deg) for v in self.wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0))
        h = fits.Header()
        h['IMAGEW'], h['IMAGEH'] = nx, ny
        h['RA'], h['OBJCTRA'] = (ra.to_string(u.hour, sep=c, precision=1, pad=True) for c in ': ')
        h['DEC'], h['OBJCTDEC'] = (dec.to_string(sep=c, precision=0, pad=True, alwayssign=True) for c in ': ')
        h.update(self.meta)
        return h

    def header(self):
        """`~astropy.io.fits.Header`: true WCS, IMAGEW/IMAGEH, RA/DEC hints, EXPTIME etc."""
        h = self._hints()
        h.extend(self.wcs.to_header(relax=True), update=True)
        return h

    def writeto(self, path, overwrite=False, dtype=np.float32, *, truth='primary'):
        """Write the image (primary HDU) to a FITS file; returns its `~pathlib.Path`.

        Parameters
        ----------
        path : str or Path
        overwrite : bool
        dtype : {numpy.float32, numpy.int16, numpy.uint16}
            Integer types are rounded and clipped to their range.
        truth : {'primary', 'extension', 'none'}
            Where the true WCS goes: the primary header (then ``solve-field`` only verifies
            it, unless given ``--no-verify``), a data-less ``TRUEWCS`` extension (the primary
            header keeps only RA/DEC hints, like a camera's), or nowhere.
        """
        if truth not in ('primary', 'extension', 'none'):
            raise ValueError(f"truth must be 'primary', 'extension' or 'none', not {truth!r}")
        dtype, data = np.dtype(dtype), self.data
        if dtype.kind in 'iu':
            data = np.clip(np.round(data), np.iinfo(dtype).min, np.iinfo(dtype).max)
        hdr = self.header() if truth == 'primary' else self._hints()
        hdul = fits.HDUList([fits.PrimaryHDU(data.astype(dtype), header=hdr)])
        if truth == 'extension':
            hdul.append(fits.ImageHDU(header=self.header(), name='TRUEWCS'))
        hdul.writeto(path, overwrite=overwrite)
        return Path(path)

    def source_list(self, n=None):
        """True positions of the ``n`` (default: all) brightest stars, as an xylist:
        `~astropy.table.Table` of ``x``, ``y`` (**1-based**) and ``flux``, brightest first."""
        s = self.stars[np.argsort(-np.asarray(self.stars['flux']), kind='stable')][:n]
        return Table([np.asarray(s['x']) + 1.0, np.asarray(s['y']) + 1.0,
                      np.asarray(s['flux'])], names=('x', 'y', 'flux'))


def _stamps(shape, x, y, flux, sigma):
    """Sum of pixel-integrated Gaussians, each evaluated on a small stamp."""
    ny, nx = shape
    peak = float(np.max(flux, initial=1.0)) / (2 * math.pi * sigma**2)
    h = math.ceil(sigma * min(max(math.sqrt(2 * math.log(max(peak, 1.0) / 0.05)), 4.0), 12.0))
    off = np.arange(-h, h + 1)
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)

    def profile(c, ic):     # fraction of the flux in each pixel of the stamp, per axis
        edges = ic[:, None] - h - 0.5 + np.arange(2 * h + 2) - c[:, None]
        return np.diff(0.5 * _erf(edges / (math.sqrt(2) * sigma)), axis=1)

    vals = flux[:, None, None] * profile(y, iy)[:, :, None] * profile(x, ix)[:, None, :]
    yy = np.broadcast_to((iy[:, None] + off)[:, :, None], vals.shape)
    xx = np.broadcast_to((ix[:, None] + off)[:, None, :], vals.shape)
    ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
    return np.bincount(yy[ok] * nx + xx[ok], weights=vals[ok], minlength=ny * nx).reshape(ny, nx)


def render_field(center, *, pixel_scale, shape=(1024, 1024), rotation=0 * u.deg, flip=False, sip=None,
                 fwhm=3.0, mag_limit=None, max_stars=None, zeropoint=20.0, background=100.0, noise=True,
                 read_noise=5.0, hot_pixels=0, cosmic_rays=0, hot_level=None, saturation=None, seed=None,
                 index_dir=None, index_names=None, catalog=None, extinction=0.0):
    """Render the index stars around ``center`` through a known WCS.

    Stars are projected with the true WCS (with SIP) and drawn as pixel-integrated Gaussians.

    Parameters
    ----------
    center, pixel_scale, shape, rotation, flip, sip
        The true WCS; see `make_wcs`.
    fwhm : float
        Gaussian PSF FWHM in pixels.
    mag_limit, max_stars : float, int, optional
        Leave out stars fainter than ``mag_limit``; keep the ``max_stars`` brightest in frame.
    zeropoint : float
        ``flux = 10**(-0.4 * (mag - zeropoint))`` electrons.
    background, noise, read_noise : float, bool, float
        Sky (electrons per pixel); add Poisson and Gaussian read noise (electrons RMS).
    hot_pixels, cosmic_rays, hot_level : int, int, float
        Numbers of single bright pixels and of short (1-8 px) streaks, which add 0.1-1
        and 0.1-0.5 times ``hot_level`` (default: ``saturation``, else 30000).
    saturation, seed, index_dir, index_names : optional
        Clip level; seed of `numpy.random.default_rng` (same seed, same image); for `index_stars`.
    catalog : `~astropy.table.Table`, optional
        Stars to draw (``ra``, ``dec`` in deg, ``mag``) instead of the index files'
        (e.g. `synthetic_catalog`, or the catalogue an index was built from).
    extinction : float or callable
        Cloud: magnitudes lost by every star, or ``extinction(x, y)`` (0-based
        pixels, arrays) for clouds that vary over the field.

    Returns
    -------
    SyntheticField
    """
    (ny, nx), sigma = shape, fwhm / (2 * math.sqrt(2 * math.log(2)))
    wcs = make_wcs(center, pixel_scale=pixel_scale, shape=shape, rotation=rotation, flip=flip, sip=sip)
    margin = 6 * sigma + 2
    corners = wcs.all_pix2world([-margin, nx - 1 + margin] * 2, [-margin] * 2 + [ny - 1 + margin] * 2, 0)
    radius = SkyCoord(*corners, unit='deg').separation(center).max() * 1.02 + 1 * u.arcmin
    if catalog is None:
        cat = index_stars(center, radius, index_dir=index_dir, index_names=index_names)
    else:
        ra, dec = (u.Quantity(catalog[c], u.deg).to_value(u.deg) for c in ('ra', 'dec'))
        near = SkyCoord(ra, dec, unit='deg').separation(center) <= radius
        mag = np.asarray(catalog['mag'], dtype=float)[near]
        order = np.argsort(np.nan_to_num(mag, nan=np.inf), kind='stable')
        cat = Table([ra[near][order] * u.deg, dec[near][order] * u.deg, mag[order]],
                    names=('ra', 'dec', 'mag'))
    if mag_limit is not None:
        cat = cat[~(np.asarray(cat['mag']) > mag_limit)]
    x, y = wcs.all_world2pix(np.asarray(cat['ra']), np.asarray(cat['dec']), 0)
    near = (x > -margin) & (x < nx - 1 + margin) & (y > -margin) & (y < ny - 1 + margin)
    cat, x, y = cat[near], x[near], y[near]
    inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    if max_stars is not None:       # the catalogue is sorted brightest first
        rank = np.cumsum(inside)    # in-frame stars so far, this one included
        keep = np.where(inside, rank <= max_stars, rank < max_stars)
        cat, x, y, inside = cat[keep], x[keep], y[keep], inside[keep]
    mag = np.asarray(cat['mag'], dtype=float)
    lost = extinction(x, y) if callable(extinction) else extinction
    flux = 10 ** (-0.4 * (np.nan_to_num(mag, nan=np.nanmax(mag, initial=15.0)) + lost - zeropoint))
    image = background + _stamps(shape, x, y, flux, sigma)
    rng = np.random.default_rng(seed)
    if noise:
        image = rng.poisson(image).astype(float) + rng.normal(0.0, read_noise, image.shape)
    level = hot_level or (saturation if saturation is not None else 30000.0)
    if hot_pixels:
        hy, hx = rng.integers(0, ny, hot_pixels), rng.integers(0, nx, hot_pixels)
        image[hy, hx] += rng.uniform(0.1, 1.0, hot_pixels) * level
    for _ in range(int(cosmic_rays)):      # short straight streaks
        length, angle = rng.uniform(1, 8), rng.uniform(0, 2 * math.pi)
        t = np.linspace(0.0, length, int(2 * length) + 2)
        cx, cy = (np.clip(np.round(rng.uniform(0, m - 1) + t * f(angle)), 0, m - 1).astype(int)
                  for m, f in ((nx, math.cos), (ny, math.sin)))
        image.flat[np.unique(cy * nx + cx)] += rng.uniform(0.1, 0.5) * level
    if saturation is not None:
        image = np.minimum(image, saturation)
    stars = cat[inside]
    stars['x'], stars['y'], stars['flux'] = x[inside], y[inside], flux[inside]
    meta = {'EXPTIME': 1.0, 'GAIN': 1.0, 'RDNOISE': float(read_noise) if noise else 0.0,
            'SKYLEVEL': float(background), 'FWHM': float(fwhm), 'ZEROPT': float(zeropoint),
            'PIXSCALE': (_scale_deg(pixel_scale) * 3600, '[arcsec/pixel]'), 'NSTARS': len(stars),
            'SIMULATD': True, 'CREATOR': 'astrometry_query.datasets', 'SEED': seed}
    meta = {k: v for k, v in meta.items() if v is not None}
    return SyntheticField(image.astype(np.float32), wcs, stars, meta)


def _as_wcs(obj):
    if isinstance(obj, WCS):
        return obj
    obj = fits.getheader(obj) if isinstance(obj, (str, Path)) else obj
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        w = WCS(obj, relax=True)
    nx, ny = obj.get('IMAGEW', obj.get('NAXIS1')), obj.get('IMAGEH', obj.get('NAXIS2'))
    if w.pixel_shape is None and nx and ny:
        w.pixel_shape = (int(nx), int(ny))
    return w


def read_truth_wcs(path):
    """The true WCS of a `SyntheticField.writeto` file (``TRUEWCS`` extension, else primary)."""
    with fits.open(path) as hdul:
        return _as_wcs(hdul['TRUEWCS' if 'TRUEWCS' in hdul else 0].header.copy())


def wcs_rms_error(true_wcs, solved_wcs, shape=None, *, n=20):
    """RMS position error (pixels) of ``solved_wcs`` over the whole image.

    An ``n`` x ``n`` grid of 0-based pixels from ``(0, 0)`` to ``(nx - 1, ny - 1)`` goes to
    the sky with ``solved_wcs`` and back with ``true_wcs``, both with full SIP.

    Parameters
    ----------
    true_wcs, solved_wcs : `~astropy.wcs.WCS`, `~astropy.io.fits.Header`, str or Path
        WCS, header (e.g. of ``solve-field``'s header-only ``wcs.fits``) or FITS file.
    shape : tuple of int, optional
        ``(ny, nx)``; default from either WCS (``pixel_shape``, NAXISn or IMAGEW/IMAGEH).
    n : int
        Grid points per axis.

    Returns
    -------
    float
    """
    tw, sw = _as_wcs(true_wcs), _as_wcs(solved_wcs)
    if (shape or tw.pixel_shape or sw.pixel_shape) is None:
        raise ValueError('shape not given and not found in either WCS')
    ny, nx = shape or (tw.pixel_shape or sw.pixel_shape)[::-1]
    gx, gy = (g.ravel() for g in np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n)))
    tx, ty = tw.all_world2pix(*sw.all_pix2world(gx, gy, 0), 0)
    return float(np.sqrt(np.mean((tx - gx)**2 + (ty - gy)**2)))


def synthetic_catalog(center, radius, n_stars, *, mag_range=(10.0, 17.0), slope=0.3, seed=None):
    """A random star catalogue: uniform over a cone, magnitudes counted as the sky's.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
    radius : `~astropy.units.Quantity`
        Cone radius.
    n_stars : int
    mag_range : (float, float)
        Brightest and faintest magnitudes.
    slope : float
        Star counts grow as ``10**(slope * mag)`` (about 0.3 at these magnitudes).
    seed : int, optional

    Returns
    -------
    `~astropy.table.Table`
        ``ra``, ``dec`` (deg) and ``mag``, brightest first.
    """
    rng = np.random.default_rng(seed)
    c, rad = center.icrs, u.Quantity(radius, u.deg).to_value(u.rad)
    # uniform on the sphere's cap: cos(separation) uniform in [cos(rad), 1]
    sep = np.arccos(rng.uniform(math.cos(rad), 1.0, n_stars)) * u.rad
    pos = c.directional_offset_by(rng.uniform(0, 360, n_stars) * u.deg, sep)
    a = slope * math.log(10)
    lo, hi = np.exp(a * np.asarray(mag_range, float))
    mag = np.log(lo + rng.uniform(0, 1, n_stars) * (hi - lo)) / a
    order = np.argsort(mag)
    return Table([pos.ra.deg[order] * u.deg, pos.dec.deg[order] * u.deg, mag[order]],
                 names=('ra', 'dec', 'mag'))


def make_example_image(path=None, *, overwrite=True, index_dir=None):
    """Write the bundled example image; returns its path (default `EXAMPLE_IMAGE`).

    600 x 450 uint16 pixels of 9"/pix centred on M42 (RA 83.82, Dec -5.39), up 20 deg
    E of N, normal parity, FWHM 2.6 px, sky 300 e-, 5 hot pixels and a cosmic ray; the
    true WCS is in a ``TRUEWCS`` extension (see `read_truth_wcs`).
    """
    sf = render_field(SkyCoord(83.82, -5.39, unit='deg'), pixel_scale=9.0 * u.arcsec / u.pix,
                      shape=(450, 600), rotation=20 * u.deg, fwhm=2.6, zeropoint=19.5,
                      background=300.0, read_noise=8.0, hot_pixels=5, cosmic_rays=1, hot_level=5000.0,
                      saturation=60000.0, seed=20240942, index_dir=index_dir)
    sf.meta['OBJECT'] = 'M42 (simulated)'
    return sf.writeto(path or EXAMPLE_IMAGE, overwrite=overwrite, dtype=np.uint16, truth='extension')


# -- photographs ------------------------------------------------------------------------------
# Rendered fields made to look like amateur deep-sky photographs (colour, a nebula or a
# galaxy filling the frame, vignetting, a gradient, satellite trails, hot pixels, a
# non-linear stretch to 8 or 16 bits), and writers for the encodings such pictures come in.

__all__ += ['Photograph', 'render_photograph', 'write_photograph', 'PHOTO_ENCODINGS']

#: Encodings `write_photograph` writes: name -> file suffix.
PHOTO_ENCODINGS = {'jpeg': '.jpg', 'png': '.png', 'png16': '.png', 'palette': '.png',
                   'rgba': '.png', 'grey16': '.png', 'jpeg-exif': '.jpg', 'tiff16': '.tif',
                   'bmp': '.bmp'}


@dataclass(repr=False)
class Photograph:
    """A rendered photograph and the truth it was rendered from.

    Attributes
    ----------
    rgb : numpy.ndarray
        ``(ny, nx, 3)`` float32 in [0, 1]: the stretched colour picture
        (`write_photograph` quantises it to 8 or 16 bits).
    wcs : `~astropy.wcs.WCS`
        The true WCS of the picture's pixel grid (row 0 = the top row, as
        decoders give it).
    stars : `~astropy.table.Table`
        Catalogue stars in the frame (as `SyntheticField.stars`).
    meta : dict
        What was drawn (nebula, galaxy, cluster stars, trails, hot pixels).
    """
    rgb: np.ndarray
    wcs: WCS
    stars: Table
    meta: dict = field(default_factory=dict)

    def __repr__(self):
        ny, nx = self.rgb.shape[:2]
        return (f'<Photograph {nx}x{ny} px, {len(self.stars)} catalogue stars, '
                + ', '.join(f'{k} {v}' for k, v in self.meta.items() if v) + '>')


def jitter_catalog(stars, jitter, rng, *, mag_jitter=0.0):
    """A copy of a catalogue with each star moved by ``jitter`` arcsec RMS (and
    its magnitude by ``mag_jitter`` RMS): a sky drawn from it fits the
    catalogue no better than a real sky fits its own.

    Parameters
    ----------
    stars : `~astropy.table.Table`
        ``ra``, ``dec`` (deg) and, with ``mag_jitter``, ``mag`` (e.g. `index_stars`).
    jitter : float
        Arcseconds RMS in each coordinate.
    rng : `numpy.random.Generator`
        Declinations are drawn first, then right ascensions, then magnitudes.
    mag_jitter : float
        Magnitudes RMS (0: kept).

    Returns
    -------
    `~astropy.table.Table`
    """
    out = stars.copy()
    n = len(out)
    dec = np.asarray(out['dec'], float) + rng.normal(0, jitter, n) / 3600
    ra = np.asarray(out['ra'], float) + rng.normal(0, jitter, n) / 3600 / np.cos(np.radians(dec))
    out['ra'], out['dec'] = ra * u.deg, dec * u.deg
    if mag_jitter:
        out['mag'] = np.asarray(out['mag'], float) + rng.normal(0, mag_jitter, n)
    return out


def _fractal(shape, rng, slope=3.0, smallest=3.0):
    """Smooth random structure (power spectrum ~ k**-slope, nothing below ``smallest``
    pixels), scaled to [0, 1]."""
    ny, nx = shape
    ky, kx = np.fft.fftfreq(ny)[:, None], np.fft.rfftfreq(nx)[None, :]
    k = np.hypot(kx, ky)
    k[0, 0] = 1.0
    amp = k ** (-slope / 2) * np.exp(-(k * smallest) ** 2)
    amp[0, 0] = 0.0
    phase = rng.normal(size=amp.shape) + 1j * rng.normal(size=amp.shape)
    field_ = np.fft.irfft2(amp * phase, s=shape)
    lo, hi = np.percentile(field_, [1, 99.5])
    return np.clip((field_ - lo) / (hi - lo), 0, 1.2)


def _nebula(shape, rng, brightness):
    """Emission filling the frame: fractal filaments in red (H-alpha) and teal (OIII),
    large glowing blobs, dark lanes of dust; (ny, nx, 3) linear."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    glow = np.zeros(shape)
    for _ in range(4):
        cx, cy = rng.uniform(0.2, 0.8) * nx, rng.uniform(0.2, 0.8) * ny
        s = rng.uniform(0.15, 0.35) * max(nx, ny)
        glow += rng.uniform(0.5, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    glow /= glow.max()
    ha = (0.25 + glow) * _fractal(shape, rng) ** 1.5
    oiii = (0.15 + glow) * _fractal(shape, rng, slope=3.6) ** 2
    dust = 1.0 - 0.7 * np.clip(_fractal(shape, rng, slope=3.0) - 0.5, 0, None) / 0.7
    rgb = np.stack([ha + 0.1 * oiii, 0.25 * ha + 0.7 * oiii, 0.1 * ha + 0.9 * oiii], axis=-1)
    return brightness * rgb * dust[..., None] / max(float(rgb.max()), 1e-9)


def _galaxy(shape, rng, brightness):
    """A large spiral seen at a slant (exponential disc, bulge, arms), and a few small
    galaxies; (ny, nx, 3) linear."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    out = np.zeros((ny, nx, 3))
    cx, cy, pa, q = nx * 0.5, ny * 0.5, rng.uniform(0, np.pi), 0.35
    for i in range(6):
        if i:
            cx, cy = rng.uniform(0.05, 0.95) * nx, rng.uniform(0.05, 0.95) * ny
            pa, q = rng.uniform(0, np.pi), rng.uniform(0.3, 1.0)
        size = 0.18 * min(nx, ny) if not i else rng.uniform(4, 12)
        dx, dy = xx - cx, yy - cy
        a = dx * np.cos(pa) + dy * np.sin(pa)
        b = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
        r = np.hypot(a, b) / size
        disc = np.exp(-r) * (1 + 0.6 * np.cos(2 * np.arctan2(b, a) - 4 * np.log(r + 0.05))
                             * (r > 0.2))
        bulge = np.exp(-7.67 * ((r * 4) ** 0.25 - 1))
        level = brightness * (1.0 if not i else rng.uniform(0.1, 0.4))
        out += level * (np.stack([0.9 * disc, 0.95 * disc, 1.1 * disc], -1)
                        + np.stack([1.2, 1.0, 0.7]) * 0.02 * bulge[..., None])
    return out


def _trail(image, rng, level, width=1.5):
    """A satellite trail: a straight line across the frame (all channels)."""
    ny, nx = image.shape[:2]
    yy, xx = np.mgrid[0:ny, 0:nx]
    x0, y0, angle = rng.uniform(0, nx), rng.uniform(0, ny), rng.uniform(0, np.pi)
    d = np.abs((xx - x0) * np.sin(angle) - (yy - y0) * np.cos(angle))
    # flickers along its length, as a tumbling satellite's
    along = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
    flicker = 0.6 + 0.4 * np.sin(along / rng.uniform(20, 80)) ** 2
    image += (level * flicker * np.exp(-0.5 * (d / (width / 2.3548)) ** 2))[..., None]


def render_photograph(center, *, pixel_scale, shape=(800, 1000), rotation=0 * u.deg, flip=False,
                      sip=None, fwhm=3.0, nebula=0.0, galaxy=0.0, cluster=0, trails=0,
                      hot_pixels=0, vignetting=0.35, gradient=0.3, faint_stars=600,
                      background=100.0, zeropoint=21.0, stretch=0.2, jitter=0.5, seed=None):
    """A field of the index's stars made to look like a deep-sky photograph.

    The stars are the index files' (each moved by ``jitter`` arcsec RMS and
    0.3 mag, as a real sky differs from a catalogue), with fainter
    uncatalogued stars, each in its own colour; then, in linear light: a
    nebula or a galaxy, a globular cluster of uncatalogued stars in the
    centre, sky glow with a gradient, photon and read noise per channel,
    satellite trails and hot pixels (single coloured pixels, as a colour
    sensor's), vignetting; and an asinh stretch (black point at the sky,
    stars saturate at 1).

    Parameters
    ----------
    center, pixel_scale, shape, rotation, flip, sip, fwhm
        The true WCS and the star size; see `render_field`.
    nebula, galaxy : float
        Peak brightness of a nebula filling the frame / of a large galaxy in
        its centre, in units of the sky level (0: none; ~30 is bright).
    cluster : int
        Uncatalogued stars of a globular cluster in the centre (Plummer profile).
    trails, hot_pixels : int
        Satellite trails across the frame; hot pixels.
    vignetting : float
        Fraction of the light lost in the corners.
    gradient : float
        Sky glow across the frame, as a fraction of the sky level.
    faint_stars : int
        Uncatalogued stars, 1-4 mag fainter than the catalogue's faintest.
    background, zeropoint : float
        Sky (electrons per pixel) and flux of magnitude 0 (see `render_field`).
    stretch : float
        Where the sky's median lands (0-1) after the asinh stretch (larger:
        a harder stretch, fainter light shown).
    jitter : float
        RMS offset of each star from its catalogue position, arcsec.
    seed : int, optional

    Returns
    -------
    Photograph
    """
    rng = np.random.default_rng(seed)
    (ny, nx), sigma = shape, fwhm / (2 * math.sqrt(2 * math.log(2)))
    scale = _scale_deg(pixel_scale)
    radius = 0.75 * math.hypot(nx, ny) * scale * u.deg
    # Each star as a real sky differs from its catalogue: moved, and re-coloured 0.3 mag.
    catalog = jitter_catalog(index_stars(center, radius), jitter,
                             np.random.default_rng(rng.integers(1 << 30)), mag_jitter=0.3)
    faintest = float(np.nanmax(np.asarray(catalog['mag']))) if len(catalog) else 12.0
    extra = synthetic_catalog(center, radius, int(faint_stars * (radius.to_value(u.deg) ** 2)
                                                  / (nx * ny * scale ** 2 / math.pi)),
                              mag_range=(faintest + 0.5, faintest + 4.0), seed=rng.integers(1 << 30))
    wcs = make_wcs(center, pixel_scale=pixel_scale, shape=shape, rotation=rotation, flip=flip,
                   sip=sip)
    x, y = wcs.all_world2pix(np.asarray(catalog['ra']), np.asarray(catalog['dec']), 0)
    seen = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    stars = catalog[seen]
    stars['x'], stars['y'] = x[seen], y[seen]
    stars['flux'] = 10 ** (-0.4 * (np.asarray(stars['mag'], float) - zeropoint))
    ex, ey = wcs.all_world2pix(np.asarray(extra['ra']), np.asarray(extra['dec']), 0)
    mags = np.concatenate([np.asarray(catalog['mag'], float), np.asarray(extra['mag'], float)])
    x, y = np.concatenate([x, ex]), np.concatenate([y, ey])
    if cluster:
        # Plummer sphere, core radius 1/25 of the frame: unresolved in its centre
        a = min(nx, ny) / 25.0
        r = a / np.sqrt(rng.uniform(0.0, 0.97, cluster) ** (-2 / 3) - 1)
        t = rng.uniform(0, 2 * np.pi, cluster)
        x = np.concatenate([x, nx / 2 + r * np.cos(t)])
        y = np.concatenate([y, ny / 2 + r * np.sin(t)])
        mags = np.concatenate([mags, rng.uniform(faintest - 2.0, faintest + 3.0, cluster)])
    inside = (x > -10) & (x < nx + 10) & (y > -10) & (y < ny + 10)
    x, y, mags = x[inside], y[inside], mags[inside]
    flux = 10 ** (-0.4 * (np.nan_to_num(mags, nan=faintest) - zeropoint))
    colour = rng.normal(0.0, 0.25, len(flux))            # redder > 0, bluer < 0
    weights = np.stack([1 + colour, np.ones_like(colour), 1 - colour])
    linear = np.stack([_stamps(shape, x, y, flux * w, sigma) for w in weights], axis=-1)
    if nebula:
        linear += _nebula(shape, rng, nebula * background)
    if galaxy:
        linear += _galaxy(shape, rng, galaxy * background)
    yy, xx = np.mgrid[0:ny, 0:nx]
    ramp = ((xx - nx / 2) * math.cos(rng.uniform(0, 2 * np.pi))
            + (yy - ny / 2) * math.sin(rng.uniform(0, 2 * np.pi))) / max(nx, ny)
    glow = background * (1 + gradient * (ramp + 0.5))
    linear += glow[..., None] * np.array([1.1, 1.0, 0.8])        # sodium-orange light pollution
    linear = rng.poisson(np.clip(linear, 0, None)).astype(float) + rng.normal(0, 5.0, linear.shape)
    for _ in range(int(trails)):
        _trail(linear, rng, rng.uniform(3, 10) * background)
    if hot_pixels:
        hy, hx = rng.integers(0, ny, hot_pixels), rng.integers(0, nx, hot_pixels)
        channel = rng.integers(0, 3, hot_pixels)
        linear[hy, hx, channel] += rng.uniform(5, 50, hot_pixels) * background
    r2 = ((xx - (nx - 1) / 2) ** 2 + (yy - (ny - 1) / 2) ** 2) / ((nx / 2) ** 2 + (ny / 2) ** 2)
    linear *= (1 - vignetting * r2 ** 1.5)[..., None]
    # Stretch: black point 3 sigma under the darkest sky, white at 200 sky levels,
    # asinh strong enough to bring the sky's median up to ``stretch``
    black = np.percentile(linear, 1, axis=(0, 1)) - 3 * math.sqrt(background)
    norm = np.clip((linear - black) / (200.0 * background), 0, None)
    level = float(np.median(norm.mean(axis=-1)))
    lo, hi = 1.0, 1e6
    for _ in range(40):         # asinh(a * level) / asinh(a) = stretch, for a
        a = math.sqrt(lo * hi)
        lo, hi = (a, hi) if math.asinh(a * level) / math.asinh(a) < stretch else (lo, a)
    rgb = np.clip(np.arcsinh(a * norm) / math.asinh(a), 0, 1).astype(np.float32)
    meta = {'nebula': nebula, 'galaxy': galaxy, 'cluster': cluster, 'trails': trails,
            'hot_pixels': hot_pixels, 'faint_stars': int((~np.isin(np.arange(len(x)),
                                                                   np.arange(len(catalog)))).sum())}
    return Photograph(rgb, wcs, stars, meta)


def _rotated_wcs(wcs, shape, k):
    """The WCS of ``numpy.rot90(pixels, k)``: fitted (TAN-SIP order 3) to the
    original on a grid of pixels, exact to far below 0.01 px."""
    from astropy.wcs.utils import fit_wcs_from_points
    ny, nx = shape
    gx, gy = (g.ravel() for g in np.meshgrid(np.linspace(0, nx - 1, 25), np.linspace(0, ny - 1, 25)))
    # rot90 (counter-clockwise, k times): where each original pixel lands
    rx, ry, rnx, rny = gx, gy, nx, ny
    for _ in range(k % 4):
        rx, ry, rnx, rny = ry, rnx - 1 - rx, rny, rnx
    world = SkyCoord(*wcs.all_pix2world(gx, gy, 0), unit='deg')
    fitted = fit_wcs_from_points((rx, ry), world, projection='TAN',
                                 sip_degree=3 if wcs.sip is not None else None)
    fitted.pixel_shape = (rnx, rny)
    return fitted


def write_photograph(photo, path, encoding='jpeg', *, quality=90):
    """Write a `Photograph` in one of the encodings pictures come in.

    Parameters
    ----------
    photo : Photograph
    path : str or Path
    encoding : str
        ``'jpeg'`` (8-bit RGB, 4:2:0 chroma), ``'png'`` (8-bit RGB),
        ``'png16'`` (16-bit RGB), ``'grey16'`` (16-bit grey PNG),
        ``'palette'`` (PNG of 256 indexed colours), ``'rgba'`` (8-bit RGB
        PNG with an alpha channel: transparent corners, as a cropped
        mosaic), ``'jpeg-exif'`` (a JPEG whose pixels are stored turned a
        quarter turn, with the EXIF Orientation tag 6 that tells viewers to
        turn them upright, as cameras write portrait shots), ``'tiff16'``
        (16-bit RGB TIFF), ``'bmp'`` (8-bit RGB Windows bitmap).
    quality : int
        JPEG quality.

    Returns
    -------
    path : `~pathlib.Path`
    truth : `~astropy.wcs.WCS`
        The true WCS of the pixels as stored in the file (row 0 the first
        stored row; astrometry_query and solve-field never apply EXIF
        orientation, so for ``'jpeg-exif'`` it is not ``photo.wcs``).
    """
    from PIL import Image as PILImage
    if encoding not in PHOTO_ENCODINGS:
        raise ValueError(f'encoding must be one of {", ".join(PHOTO_ENCODINGS)}, not {encoding!r}')
    path, rgb, truth = Path(path), photo.rgb, photo.wcs
    eight = np.round(rgb * 255).astype(np.uint8)
    sixteen = np.round(rgb * 65535).astype(np.uint16)
    if encoding == 'jpeg':
        PILImage.fromarray(eight).save(path, quality=quality)
    elif encoding in ('png', 'bmp'):
        PILImage.fromarray(eight).save(path, format=encoding.upper())
    elif encoding in ('png16', 'grey16'):
        import imagecodecs
        data = sixteen if encoding == 'png16' else np.round(
            rgb.mean(axis=-1) * 65535).astype(np.uint16)
        path.write_bytes(imagecodecs.png_encode(data))
    elif encoding == 'tiff16':
        import tifffile
        tifffile.imwrite(path, sixteen, photometric='rgb')
    elif encoding == 'palette':
        PILImage.fromarray(eight).quantize(256, dither=PILImage.Dither.NONE).save(path)
    elif encoding == 'rgba':
        ny, nx = eight.shape[:2]
        yy, xx = np.mgrid[0:ny, 0:nx]
        corner = (np.minimum(xx, nx - 1 - xx) + np.minimum(yy, ny - 1 - yy)) < 0.15 * (nx + ny)
        alpha = np.where(corner, 0, 255).astype(np.uint8)
        eight = np.where(corner[..., None], 0, eight).astype(np.uint8)     # black, as exported
        PILImage.fromarray(np.dstack([eight, alpha]), mode='RGBA').save(path)
    else:       # 'jpeg-exif': stored turned (viewers turn it back 90 deg clockwise)
        stored = np.rot90(eight, 1)
        exif = PILImage.Exif()
        exif[0x0112] = 6
        PILImage.fromarray(np.ascontiguousarray(stored)).save(path, quality=quality,
                                                                exif=exif.tobytes())
        truth = _rotated_wcs(photo.wcs, rgb.shape[:2], 1)
    return path, truth


# -- camera lenses ---------------------------------------------------------------------
def lens_distortion(shape, corner, *, k2_share=0.0, order=11):
    """The radial distortion of a camera lens, as ``sip`` terms for `make_wcs` and
    `render_field`.

    The lens (Brown-Conrady, as camera calibration tools model it) draws a star
    whose distortion-free position is ``r`` pixels from the image centre at
    ``r * (1 - k1 * r**2 - k2 * r**4)``.  The SIP polynomial (pixels to sky) is
    the inverse of that, which no polynomial holds exactly: it is the series
    expansion of the inverse, fitted to order ``order`` (11: within 0.001 px of
    the lens over the image for corners of up to 60 px).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    corner : float
        Pixels the lens moves a star seen in the corners (positive: barrel, the
        stars drawn toward the centre, as most wide-angle lenses; negative:
        pincushion).
    k2_share : float
        Share of ``corner`` from the ``r**5`` term (negative with a positive
        ``corner``: a "moustache" lens, whose barrel turns back at the corners).
    order : int
        Odd SIP order of the series.

    Returns
    -------
    dict
        ``A_p_q``, ``B_p_q`` and ``order`` (pixel units).
    """
    ny, nx = shape
    reach = math.hypot((nx - 1) / 2.0, (ny - 1) / 2.0)
    far = reach + corner        # where a star seen in the corner would be with no lens
    k1, k2 = (1.0 - k2_share) * corner / far ** 3, k2_share * corner / far ** 5
    ideal = np.linspace(0.0, 1.2 * max(far, reach), 2000)
    seen = ideal * (1.0 - k1 * ideal ** 2 - k2 * ideal ** 4)
    # ideal = seen * (1 + sum_j c_j (seen / reach)**(2 j)), j = 1 .. (order - 1) / 2
    powers = np.arange(1, (order - 1) // 2 + 1)
    design = (seen / reach)[:, None] ** (2 * powers) * seen[:, None]
    c = np.linalg.lstsq(design, ideal - seen, rcond=None)[0] / reach ** (2 * powers)
    terms = {}
    for j, cj in zip(powers, c):      # u * (u**2 + v**2)**j, expanded
        for i in range(j + 1):
            times = cj * math.comb(j, i)
            terms[f'A_{2 * i + 1}_{2 * (j - i)}'] = terms.get(f'A_{2 * i + 1}_{2 * (j - i)}', 0.0) \
                + times
            terms[f'B_{2 * (j - i)}_{2 * i + 1}'] = terms.get(f'B_{2 * (j - i)}_{2 * i + 1}', 0.0) \
                + times
    return dict(terms, order=int(2 * powers[-1] + 1))


# -- Crowded fields: star clusters that no catalogue holds ------------------------------
def cluster_catalog(center, n_stars, *, core_radius, tidal_radius=None, profile='plummer',
                    mag_range=(8.0, 12.5), slope=0.3, seed=None):
    """Stars of a star cluster (open or globular) that no index holds.

    Positions follow a projected King (1962) or Plummer profile about
    ``center``, so the core is as dense as a real cluster's: at a few
    arcsec per pixel its stars blend there.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
    n_stars : int
    core_radius : `~astropy.units.Quantity`
        King core radius, or Plummer scale radius (half the stars lie within it).
    tidal_radius : `~astropy.units.Quantity`, optional
        No star beyond it (default 15 core radii; King's profile falls to zero there).
    profile : {'plummer', 'king'}
        Surface density ``(1 + R**2/a**2)**-2``, or King's
        ``(1/sqrt(1 + R**2/rc**2) - 1/sqrt(1 + rt**2/rc**2))**2``.
    mag_range : (float, float)
        Brightest and faintest magnitudes.
    slope : float
        Star counts grow as ``10**(slope * mag)``.
    seed : int, optional

    Returns
    -------
    `~astropy.table.Table`
        ``ra``, ``dec`` (deg) and ``mag``, brightest first.
    """
    if profile not in ('plummer', 'king'):
        raise ValueError(f"profile must be 'plummer' or 'king', not {profile!r}")
    rng = np.random.default_rng(seed)
    rc = u.Quantity(core_radius, u.deg).to_value(u.deg)
    rt = 15 * rc if tidal_radius is None else u.Quantity(tidal_radius, u.deg).to_value(u.deg)
    r = np.linspace(0.0, rt, 4001)
    if profile == 'plummer':
        density = (1 + (r / rc) ** 2) ** -2
    else:
        density = np.clip(1 / np.sqrt(1 + (r / rc) ** 2) - 1 / math.sqrt(1 + (rt / rc) ** 2),
                          0, None) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] * r[1:]
                                                          + density[:-1] * r[:-1]))])
    radius = np.interp(rng.uniform(0, cumulative[-1], n_stars), cumulative, r)
    pos = center.icrs.directional_offset_by(rng.uniform(0, 360, n_stars) * u.deg, radius * u.deg)
    a = slope * math.log(10)
    lo, hi = np.exp(a * np.asarray(mag_range, float))
    mag = np.log(lo + rng.uniform(0, 1, n_stars) * (hi - lo)) / a
    order = np.argsort(mag, kind='stable')
    return Table([pos.ra.deg[order] * u.deg, pos.dec.deg[order] * u.deg, mag[order]],
                 names=('ra', 'dec', 'mag'))


def render_crowded_field(center, *, cluster, pixel_scale, shape=(1024, 1024), jitter=0.5,
                         seed=None, index_dir=None, index_names=None, **kwargs):
    """A field with a star cluster no index holds (`cluster_catalog`) in front
    of the index's stars.

    The index stars are each moved by ``jitter`` arcsec RMS and re-coloured
    (0.3 mag RMS), as a real sky fits its catalogue.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
        The field centre.
    cluster : `~astropy.table.Table`
        The cluster's stars (``ra``, ``dec``, ``mag``), e.g. `cluster_catalog`.
    pixel_scale, shape, seed, index_dir, index_names
        See `render_field` (``kwargs`` go there too: rotation, fwhm, saturation...).
    jitter : float
        Arcsec RMS of the index stars' positions drawn (0: exactly the catalogue's).

    Returns
    -------
    SyntheticField
        ``stars`` has a ``member`` column: True for the cluster's stars
        (not in any index).
    """
    wcs = make_wcs(center, pixel_scale=pixel_scale, shape=shape)
    ny, nx = shape
    corners = wcs.all_pix2world([0, nx - 1] * 2, [0] * 2 + [ny - 1] * 2, 0)
    radius = SkyCoord(*corners, unit='deg').separation(center).max() * 1.1 + 2 * u.arcmin
    stars = jitter_catalog(index_stars(center, radius, index_dir=index_dir,
                                       index_names=index_names),
                           jitter, np.random.default_rng(None if seed is None else seed + 7919),
                           mag_jitter=0.3)
    ra, dec, mag = (np.asarray(stars[c], float) for c in ('ra', 'dec', 'mag'))
    c_ra, c_dec = (u.Quantity(cluster[c], u.deg).to_value(u.deg) for c in ('ra', 'dec'))
    catalog = Table([np.concatenate([ra, c_ra]) * u.deg, np.concatenate([dec, c_dec]) * u.deg,
                     np.concatenate([mag, np.asarray(cluster['mag'], float)])],
                    names=('ra', 'dec', 'mag'))
    sf = render_field(center, pixel_scale=pixel_scale, shape=shape, seed=seed, catalog=catalog,
                      **kwargs)
    members = set(np.round(c_ra, 9) + 1j * np.round(c_dec, 9))
    key = np.round(np.asarray(sf.stars['ra'], float), 9) + 1j * np.round(
        np.asarray(sf.stars['dec'], float), 9)
    sf.stars['member'] = np.array([k in members for k in key], bool)
    sf.meta['NCLUSTER'] = int(sf.stars['member'].sum())
    return sf
