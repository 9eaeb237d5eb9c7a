"""Synthetic star fields with a known true WCS, for testing plate solutions.

The stars are taken from the astrometry.net index files themselves (through
``query-starkd``), so an image rendered here can be solved by ``solve-field``
with those same index files, and the answer can be checked against the truth.

Pixel conventions
-----------------
* numpy arrays and every astropy WCS call made here use **0-based** pixels
  (``origin=0``): the centre of the first pixel is ``(x, y) = (0, 0)``.
* FITS headers (``CRPIX``) and astrometry.net source lists (xyls) use
  **1-based** pixels: the same pixel centre is ``(1, 1)``.
  `SyntheticField.source_list` returns 1-based coordinates; the ``x`` and
  ``y`` columns of `SyntheticField.stars` are 0-based.
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

__all__ = ['index_stars', 'make_wcs', 'SyntheticField', 'render_field',
           'wcs_rms_error', 'read_truth_wcs', 'make_example_image',
           'example_field', 'EXAMPLE_IMAGE']

EXAMPLE_IMAGE = Path(__file__).resolve().parent / 'data' / 'example.fits'
_CONFIG_FILES = ('/etc/astrometry.cfg', '/usr/local/astrometry/etc/astrometry.cfg',
                 '/usr/local/etc/astrometry.cfg')
_erf = np.vectorize(math.erf, otypes=[float])


def _index_dirs():
    dirs = []
    for cfg in _CONFIG_FILES:
        try:
            text = Path(cfg).read_text()
        except OSError:
            continue
        dirs += re.findall(r'^\s*add_path\s+(\S+)', text, flags=re.M)
    return list(dict.fromkeys(dirs + ['/usr/share/astrometry']))


def _index_files(index_dir, index_names):
    dirs = [Path(index_dir)] if index_dir is not None else [Path(d) for d in _index_dirs()]
    if index_names is not None:
        files = []
        for name in index_names:
            cands = [Path(name)] + [d / name for d in dirs]
            found = [c for c in cands if c.is_file()]
            if not found:
                raise FileNotFoundError(f'index file {name!r} not found in {[str(d) for d in dirs]}')
            files.append(found[0])
        return files
    files = sorted(f for d in dirs for f in d.glob('index-tycho2-*.fits'))
    if not files:
        raise FileNotFoundError('no index-tycho2-*.fits files found in '
                                f'{[str(d) for d in dirs]}')
    return files


def _parse_starkd_ascii(text):
    """Parse ``query-starkd`` ASCII output into (ra, dec, mag) arrays.

    The output is a ``# RA, Dec[, MAG_VT]`` header line and then one
    ``ra, dec[, mag]`` line per star; other lines (progress messages) are skipped.
    Note that these numbers are printed with only 6 significant digits.
    """
    rows = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(',')]
        if line.startswith('#') or len(parts) < 2:
            continue
        try:
            vals = [float(p) for p in parts[:3]]
        except ValueError:
            continue
        rows.append(vals + [np.nan] * (3 - len(vals)))
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _query_one(exe, path, ra, dec, radius):
    # The FITS output (-o) keeps full double precision; the ASCII listing on
    # stdout only has 6 significant digits (up to 3.6" in RA), so it is used
    # only when no FITS file was written (no stars found, or an old version).
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / 'stars.fits'
        cmd = [exe, '-r', f'{ra:.10f}', '-d', f'{dec:.10f}', '-R', f'{radius:.10f}',
               '-T', '-o', str(out), str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f'query-starkd failed on {path} (exit {proc.returncode}): '
                               f'{proc.stderr.strip()[-500:]}')
        if not out.exists():
            return _parse_starkd_ascii(proc.stdout)
        with fits.open(out) as hdul:
            tab = hdul[1].data
            names = [n.upper() for n in tab.columns.names]
            ra_, dec_ = (np.array(tab[n], dtype=float) for n in ('RA', 'DEC'))
            magcol = 'MAG_VT' if 'MAG_VT' in names else next(
                (n for n in names if n.startswith('MAG')), None)
            mag = (np.array(tab[magcol], dtype=float) if magcol
                   else np.full(len(ra_), np.nan))
    return ra_, dec_, mag


def _unique_mask(ra, dec, tol_arcsec):
    """True for the first of every group of positions closer than ``tol_arcsec``."""
    n = len(ra)
    order = np.argsort(dec, kind='stable')
    r, d = np.radians(ra[order]), np.radians(dec[order])
    xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=1)
    tol = np.radians(tol_arcsec / 3600.0)
    keep = np.ones(n, bool)
    for k in range(1, n):
        close = d[k:] - d[:-k] <= tol
        if not close.any():
            break
        i = np.nonzero(close)[0]
        j = i + k
        same = np.linalg.norm(xyz[i] - xyz[j], axis=1) <= tol
        # drop whichever of the pair came later in the input (lower priority)
        keep[np.maximum(order[i[same]], order[j[same]])] = False
    return keep


def index_stars(center, radius, *, index_dir=None, index_names=None, tolerance=1.0):
    """Stars of the astrometry.net index files within ``radius`` of ``center``.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
        Centre of the search.
    radius : `~astropy.units.Quantity`
        Search radius (angle).
    index_dir : str or Path, optional
        Folder of the index files. Default: the ``add_path`` folders of
        ``/etc/astrometry.cfg`` and ``/usr/share/astrometry``.
    index_names : list of str, optional
        Index files to use (names in ``index_dir`` or paths). Default: every
        ``index-tycho2-*.fits`` found.
    tolerance : float, optional
        Positions closer than this (arcsec) are one star seen in several index
        files; only one copy is kept.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``ra``, ``dec`` (deg) and ``mag`` (Tycho VT), brightest first.

    Raises
    ------
    RuntimeError
        If ``query-starkd`` is not installed or fails.
    """
    exe = shutil.which('query-starkd')
    if exe is None:
        raise RuntimeError('query-starkd was not found on PATH; install astrometry.net '
                           '(e.g. `apt-get install astrometry.net`)')
    c = center.icrs
    rad = u.Quantity(radius, u.deg).to_value(u.deg)
    parts = [_query_one(exe, f, c.ra.deg, c.dec.deg, rad)
             for f in _index_files(index_dir, index_names)]
    ra, dec, mag = (np.concatenate([p[i] for p in parts]) for i in range(3))
    keep = _unique_mask(ra, dec, tolerance)
    ra, dec, mag = ra[keep], dec[keep], mag[keep]
    order = np.argsort(np.where(np.isnan(mag), np.inf, mag), kind='stable')
    return Table([ra[order] * u.deg, dec[order] * u.deg, mag[order]],
                 names=('ra', 'dec', 'mag'))


def _scale_deg(pixel_scale):
    q = u.Quantity(pixel_scale)
    if q.unit == u.dimensionless_unscaled:
        return float(q.value) / 3600.0          # bare number: arcsec per pixel
    try:
        return q.to_value(u.deg / u.pix)
    except u.UnitConversionError:
        return q.to_value(u.deg)


def _sip_matrices(sip, ny, nx):
    """Forward (A, B) and fitted inverse (AP, BP) SIP matrices from a dict."""
    sip = dict(sip)
    k1 = float(sip.pop('k1', 0.0))
    terms = {k: float(v) for k, v in sip.items() if re.fullmatch(r'[AB]_\d+_\d+', k)}
    for key in ('A_3_0', 'A_1_2', 'B_2_1', 'B_0_3'):
        terms[key] = terms.get(key, 0.0) + k1
    order = int(sip.get('order', max(sum(map(int, k.split('_')[1:])) for k in terms)))
    a, b = np.zeros((order + 1, order + 1)), np.zeros((order + 1, order + 1))
    for key, val in terms.items():
        name, p, q = key.split('_')
        (a if name == 'A' else b)[int(p), int(q)] = val
    # least-squares inverse polynomial of higher order on a grid over the frame
    iorder = min(order + 2, 9)
    uu, vv = np.meshgrid(np.linspace(-0.55 * nx, 0.55 * nx, 40),
                         np.linspace(-0.55 * ny, 0.55 * ny, 40))
    uu, vv = uu.ravel(), vv.ravel()
    poly = lambda m, x, y: sum(m[p, q] * x**p * y**q for p in range(order + 1)
                               for q in range(order + 1 - p))
    U, V = uu + poly(a, uu, vv), vv + poly(b, uu, vv)
    pq = [(p, q) for p in range(iorder + 1) for q in range(iorder + 1 - p)]
    design = np.stack([U**p * V**q for p, q in pq], axis=1)
    ap, bp = np.zeros((iorder + 1, iorder + 1)), np.zeros((iorder + 1, iorder + 1))
    for mat, target in ((ap, uu - U), (bp, vv - V)):
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
        for (p, q), cval in zip(pq, coef):
            mat[p, q] = cval
    return a, b, ap, bp


def make_wcs(center, *, pixel_scale, shape=(1024, 1024), rotation=0 * u.deg,
             flip=False, sip=None):
    """A TAN (or TAN-SIP) WCS centred on ``center``.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
        Sky position of the image centre (CRVAL, at CRPIX = image centre:
        FITS pixel ``((nx + 1) / 2, (ny + 1) / 2)``, 0-based ``((nx - 1) / 2, (ny - 1) / 2)``).
    pixel_scale : `~astropy.units.Quantity`
        Angle per pixel (``u.arcsec / u.pix``) or angle (``u.arcsec``); a bare
        number is arcsec per pixel.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    rotation : `~astropy.units.Quantity`
        Angle of the image +y axis ("up") East of North, i.e. astrometry.net's
        "up is N degrees E of N".
    flip : bool
        False: normal sky parity (North up, East left at rotation 0;
        det(CD) < 0). True: mirrored (East right; det(CD) > 0).
    sip : dict, optional
        SIP distortion, with keys ``'A_p_q'`` / ``'B_p_q'`` (coefficients in
        pixel units, e.g. ``{'A_2_0': 1e-6}``), optionally ``'order'``, and/or
        ``'k1'``: a radial term (pix**-2) that moves every pixel by
        ``k1 * r**2`` times its offset from CRPIX (k1 > 0: pincushion). The
        inverse (AP, BP) is fitted.

    Returns
    -------
    `~astropy.wcs.WCS`
        With ``pixel_shape = (nx, ny)``.
    """
    ny, nx = shape
    s = _scale_deg(pixel_scale)
    t = u.Quantity(rotation, u.deg).to_value(u.rad)
    xsign = 1.0 if flip else -1.0
    w = WCS(naxis=2)
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    c = center.icrs
    w.wcs.crval = [c.ra.deg, c.dec.deg]
    w.wcs.cd = s * np.array([[xsign * math.cos(t), math.sin(t)],
                             [-xsign * math.sin(t), math.cos(t)]])
    w.wcs.radesys = 'ICRS'
    w.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    if sip:
        w.wcs.ctype = ['RA---TAN-SIP', 'DEC--TAN-SIP']
        w.sip = Sip(*_sip_matrices(sip, ny, nx), w.wcs.crpix)
    w.wcs.set()
    w.pixel_shape = (nx, ny)
    return w


@dataclass
class SyntheticField:
    """A rendered image and the truth it was rendered from.

    Attributes
    ----------
    data : numpy.ndarray
        float32 image, shape ``(ny, nx)``, in electrons (gain 1).
    wcs : `~astropy.wcs.WCS`
        The true WCS.
    stars : `~astropy.table.Table`
        Stars whose centres fall inside the frame: ``ra``, ``dec``, ``mag``,
        ``x``, ``y`` (0-based pixels) and ``flux`` (total electrons), brightest first.
    meta : dict
        Rendering parameters, written to the header.
    """
    data: np.ndarray
    wcs: WCS
    stars: Table
    meta: dict = field(default_factory=dict)

    def _hints(self):
        ny, nx = self.data.shape
        ra, dec = self.wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        ra, dec = Angle(ra, u.deg), Angle(dec, u.deg)
        h = fits.Header()
        h['IMAGEW'], h['IMAGEH'] = nx, ny
        h['RA'] = (ra.to_string(u.hour, sep=':', precision=1, pad=True), 'field centre, hours')
        h['DEC'] = (dec.to_string(u.deg, sep=':', precision=0, pad=True, alwayssign=True),
                    'field centre, degrees')
        h['OBJCTRA'] = ra.to_string(u.hour, sep=' ', precision=1, pad=True)
        h['OBJCTDEC'] = dec.to_string(u.deg, sep=' ', precision=0, pad=True, alwayssign=True)
        for key, val in self.meta.items():
            h[key] = val
        return h

    def header(self):
        """FITS header: the true WCS, IMAGEW/IMAGEH, RA/DEC hints and rendering cards.

        Returns
        -------
        `~astropy.io.fits.Header`
        """
        h = self._hints()
        h.extend(self.wcs.to_header(relax=True), update=True)
        for i in (1, 2):                  # CDi_j rather than PCi_j + CDELTi
            del h[f'CDELT{i}']
            for j in (1, 2):
                h.pop(f'PC{i}_{j}', None)
                h[f'CD{i}_{j}'] = self.wcs.wcs.cd[i - 1, j - 1]
        return h

    def writeto(self, path, overwrite=False, dtype=np.float32, *, truth='primary'):
        """Write the image to a FITS file.

        Parameters
        ----------
        path : str or Path
            Output file.
        overwrite : bool
            Replace an existing file.
        dtype : {numpy.float32, numpy.int16, numpy.uint16}
            Data type on disk; integer types are rounded and clipped to range.
        truth : {'primary', 'extension', 'none'}
            Where the true WCS goes: in the primary header (note that
            ``solve-field`` then verifies it unless given ``--no-verify``), in a
            data-less extension named ``TRUEWCS`` (the primary header keeps only
            the RA/DEC hints, as from a camera), or nowhere.

        Returns
        -------
        Path
        """
        dtype = np.dtype(dtype)
        data = self.data
        if dtype.kind in 'iu':
            info = np.iinfo(dtype)
            data = np.clip(np.round(data), info.min, info.max)
        primary = fits.PrimaryHDU(data.astype(dtype),
                                  header=self.header() if truth == 'primary' else self._hints())
        hdul = fits.HDUList([primary])
        if truth == 'extension':
            hdul.append(fits.ImageHDU(header=self.header(), name='TRUEWCS'))
        elif truth not in ('primary', 'none'):
            raise ValueError(f"truth must be 'primary', 'extension' or 'none', not {truth!r}")
        hdul.writeto(path, overwrite=overwrite)
        return Path(path)

    def source_list(self, n=None):
        """True star positions as an astrometry.net source list.

        Parameters
        ----------
        n : int, optional
            Keep only the ``n`` brightest.

        Returns
        -------
        `~astropy.table.Table`
            ``x``, ``y`` (**1-based** FITS pixels) and ``flux``, brightest first.
        """
        s = self.stars[np.argsort(-np.asarray(self.stars['flux']), kind='stable')][:n]
        return Table([np.asarray(s['x']) + 1.0, np.asarray(s['y']) + 1.0,
                      np.asarray(s['flux'])], names=('x', 'y', 'flux'))


def _stamps(shape, x, y, flux, sigma):
    """Sum of pixel-integrated Gaussians, each evaluated on a small stamp."""
    ny, nx = shape
    peak = float(np.max(flux, initial=1.0)) / (2 * math.pi * sigma**2)
    h = int(math.ceil(sigma * min(max(math.sqrt(2 * math.log(max(peak, 1.0) / 0.05)), 4.0), 12.0)))
    off = np.arange(-h, h + 1)
    ix, iy = np.round(x).astype(int), np.round(y).astype(int)

    def profile(c, ic):
        edges = (ic[:, None] + off[0] - 0.5 + np.arange(2 * h + 2)) - c[:, None]
        return np.diff(0.5 * _erf(edges / (math.sqrt(2) * sigma)), axis=1)

    vals = flux[:, None, None] * profile(y, iy)[:, :, None] * profile(x, ix)[:, None, :]
    yy = np.broadcast_to((iy[:, None] + off)[:, :, None], vals.shape)
    xx = np.broadcast_to((ix[:, None] + off)[:, None, :], vals.shape)
    ok = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
    img = np.bincount(yy[ok] * nx + xx[ok], weights=vals[ok], minlength=ny * nx)
    return img.reshape(ny, nx)


def render_field(center, *, pixel_scale, shape=(1024, 1024), rotation=0 * u.deg,
                 flip=False, sip=None, fwhm=3.0, mag_limit=None, max_stars=None,
                 zeropoint=20.0, background=100.0, noise=True, read_noise=5.0,
                 hot_pixels=0, cosmic_rays=0, saturation=None, seed=None,
                 index_dir=None, index_names=None):
    """Render a star field from the index stars, with a known WCS.

    Parameters
    ----------
    center, pixel_scale, shape, rotation, flip, sip
        The true WCS; see `make_wcs`.
    fwhm : float
        Gaussian PSF FWHM in pixels.
    mag_limit : float, optional
        Leave out stars fainter than this.
    max_stars : int, optional
        Keep only the brightest in-frame stars.
    zeropoint : float
        Magnitude of a star of 1 electron: ``flux = 10**(-0.4 * (mag - zeropoint))``.
    background : float
        Sky level (electrons per pixel).
    noise : bool
        Add Poisson noise and Gaussian read noise.
    read_noise : float
        Read noise (electrons RMS).
    hot_pixels, cosmic_rays : int
        Numbers of single bright pixels and of short bright streaks.
    saturation : float, optional
        Clip the image at this level.
    seed : int, optional
        Seed of `numpy.random.default_rng`; the same seed gives the same image.
    index_dir, index_names
        Passed to `index_stars`.

    Returns
    -------
    SyntheticField
    """
    ny, nx = shape
    wcs = make_wcs(center, pixel_scale=pixel_scale, shape=shape, rotation=rotation,
                   flip=flip, sip=sip)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    margin = 6 * sigma + 2
    bx = np.array([-margin, nx - 1 + margin, nx - 1 + margin, -margin, (nx - 1) / 2])
    by = np.array([-margin, -margin, ny - 1 + margin, ny - 1 + margin, 0.0])
    edge = SkyCoord(*wcs.all_pix2world(bx, by, 0), unit='deg')
    radius = edge.separation(center).max() * 1.02 + 1 * u.arcmin
    cat = index_stars(center, radius, index_dir=index_dir, index_names=index_names)
    if mag_limit is not None:
        cat = cat[~(np.asarray(cat['mag']) > mag_limit)]
    x, y = wcs.all_world2pix(cat['ra'].quantity.to_value(u.deg),
                           cat['dec'].quantity.to_value(u.deg), 0)
    near = (x > -margin) & (x < nx - 1 + margin) & (y > -margin) & (y < ny - 1 + margin)
    cat, x, y = cat[near], x[near], y[near]
    inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    if max_stars is not None:       # catalogue is sorted brightest first
        rank = np.cumsum(inside)    # in-frame stars so far, this one included
        keep = np.where(inside, rank <= max_stars, rank < max_stars)
        cat, x, y, inside = cat[keep], x[keep], y[keep], inside[keep]
    mag = np.asarray(cat['mag'], dtype=float)
    flux = 10 ** (-0.4 * (np.nan_to_num(mag, nan=np.nanmax(mag, initial=15.0)) - zeropoint))
    image = background + _stamps(shape, x, y, flux, sigma)
    rng = np.random.default_rng(seed)
    if noise:
        image = rng.poisson(image).astype(float) + rng.normal(0.0, read_noise, image.shape)
    level = saturation if saturation is not None else 30000.0
    if hot_pixels:
        hy, hx = rng.integers(0, ny, hot_pixels), rng.integers(0, nx, hot_pixels)
        image[hy, hx] += rng.uniform(0.2, 1.0, hot_pixels) * level
    for _ in range(int(cosmic_rays)):
        length, angle = rng.uniform(1, 8), rng.uniform(0, 2 * math.pi)
        t = np.linspace(0.0, length, int(2 * length) + 2)
        cx = np.round(rng.uniform(0, nx - 1) + t * math.cos(angle)).astype(int)
        cy = np.round(rng.uniform(0, ny - 1) + t * math.sin(angle)).astype(int)
        ok = (cx >= 0) & (cx < nx) & (cy >= 0) & (cy < ny)
        image.flat[np.unique(cy[ok] * nx + cx[ok])] += rng.uniform(0.1, 0.5) * level
    if saturation is not None:
        image = np.minimum(image, saturation)
    stars = cat[inside]
    stars['x'], stars['y'], stars['flux'] = x[inside], y[inside], flux[inside]
    meta = {'EXPTIME': 1.0, 'GAIN': 1.0, 'RDNOISE': float(read_noise) if noise else 0.0,
            'SKYLEVEL': float(background), 'FWHM': float(fwhm), 'ZEROPT': float(zeropoint),
            'PIXSCALE': (_scale_deg(pixel_scale) * 3600, 'arcsec/pixel'),
            'NSTARS': (len(stars), 'catalogue stars in frame'), 'SIMULATD': True,
            'CREATOR': 'astrometry_query.simulate'}
    if seed is not None:
        meta['SEED'] = seed
    return SyntheticField(image.astype(np.float32), wcs, stars, meta)


def _as_wcs(obj):
    if isinstance(obj, WCS):
        return obj
    if isinstance(obj, (str, Path)):
        obj = fits.getheader(obj)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        w = WCS(obj, relax=True)
    if w.pixel_shape is None:
        for a, b in (('IMAGEW', 'IMAGEH'), ('NAXIS1', 'NAXIS2')):
            if obj.get(a) and obj.get(b):
                w.pixel_shape = (int(obj[a]), int(obj[b]))
                break
    return w


def read_truth_wcs(path):
    """The true WCS of a file written by `SyntheticField.writeto`.

    Taken from the ``TRUEWCS`` extension if there is one, else the primary header.
    """
    with fits.open(path) as hdul:
        hdr = hdul['TRUEWCS'].header if 'TRUEWCS' in hdul else hdul[0].header
        return _as_wcs(hdr.copy())


def wcs_rms_error(true_wcs, solved_wcs, shape=None, *, n=20):
    """RMS position error of a solution, in pixels, over the whole image.

    An ``n`` x ``n`` grid of pixels spanning the image (0-based centres from
    ``0`` to ``nx - 1`` / ``ny - 1``) is mapped to the sky with ``solved_wcs``
    and back to pixels with ``true_wcs``, both with full SIP distortion
    (``all_pix2world`` / ``all_world2pix``); the RMS pixel displacement is returned.

    Parameters
    ----------
    true_wcs, solved_wcs : `~astropy.wcs.WCS`, `~astropy.io.fits.Header`, str or Path
        WCS objects, headers (e.g. the header-only ``wcs.fits`` of
        ``solve-field``) or FITS file names (primary header).
    shape : tuple of int, optional
        Image shape ``(ny, nx)``. Default: ``pixel_shape`` of ``true_wcs``,
        else of ``solved_wcs`` (from NAXISn or IMAGEW/IMAGEH).
    n : int
        Grid points per axis.

    Returns
    -------
    float
    """
    tw, sw = _as_wcs(true_wcs), _as_wcs(solved_wcs)
    if shape is None:
        pshape = tw.pixel_shape or sw.pixel_shape
        if pshape is None:
            raise ValueError('shape not given and not found in either WCS')
        shape = (pshape[1], pshape[0])
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    ra, dec = sw.all_pix2world(gx.ravel(), gy.ravel(), 0)
    tx, ty = tw.all_world2pix(ra, dec, 0)
    return float(np.sqrt(np.mean((tx - gx.ravel())**2 + (ty - gy.ravel())**2)))


_EXAMPLE = dict(center=(83.82, -5.39), pixel_scale=8.0, shape=(450, 600), rotation=12.0,
                fwhm=2.6, background=300.0, read_noise=8.0, hot_pixels=8, cosmic_rays=3,
                zeropoint=19.5, saturation=60000.0, seed=20240942)


def example_field(index_dir=None):
    """The `SyntheticField` of the bundled example image (Orion's sword, M42).

    Returns
    -------
    SyntheticField
    """
    p = dict(_EXAMPLE)
    center = SkyCoord(*p.pop('center'), unit='deg')
    return render_field(center, pixel_scale=p.pop('pixel_scale') * u.arcsec / u.pix,
                        rotation=p.pop('rotation') * u.deg, index_dir=index_dir, **p)


def make_example_image(path=None, *, overwrite=True, index_dir=None):
    """Write the bundled example image (uint16, true WCS in a ``TRUEWCS`` extension).

    Parameters
    ----------
    path : str or Path, optional
        Default: `EXAMPLE_IMAGE` (``astrometry_query/data/example.fits``).

    Returns
    -------
    Path
    """
    sf = example_field(index_dir=index_dir)
    sf.meta['OBJECT'] = 'M42 (simulated)'
    return sf.writeto(path or EXAMPLE_IMAGE, overwrite=overwrite, dtype=np.uint16,
                      truth='extension')
