"""Synthetic star fields with a known true WCS, for testing plate solutions.

The stars come from the astrometry.net index files themselves (via
``query-starkd``), so ``solve-field`` can solve the images and its answer can
be checked against the truth with `wcs_rms_error`.

Pixel conventions: numpy arrays and all astropy WCS calls here are **0-based**
(``origin=0``; the first pixel centre is (0, 0)), as are ``SyntheticField.stars['x', 'y']``.
FITS (``CRPIX``) and astrometry.net source lists are **1-based** (the same
centre is (1, 1)), as is `SyntheticField.source_list`.
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


def _index_files(index_dir, index_names):
    if index_dir is not None:
        dirs = [Path(index_dir)]
    else:           # the add_path folders of the astrometry.net config files
        text = ''.join(Path(c).read_text() for c in _CONFIG_FILES if Path(c).is_file())
        dirs = [Path(d) for d in dict.fromkeys(re.findall(r'^\s*add_path\s+(\S+)', text, re.M)
                                               + ['/usr/share/astrometry'])]
    if index_names is None:
        files = sorted(f for d in dirs for f in d.glob('index-tycho2-*.fits'))
    else:
        files = [next((c for c in [Path(n)] + [d / n for d in dirs] if c.is_file()), None)
                 for n in index_names]
    if not files or None in files:
        raise FileNotFoundError(f'index files {index_names or "index-tycho2-*.fits"} not '
                                f'found in {[str(d) for d in dirs]}')
    return files


def _parse_starkd_ascii(text):
    """(ra, dec, mag) arrays from ``query-starkd`` ASCII output.

    That is a ``# RA, Dec[, MAG_VT]`` line, then ``ra, dec[, mag]`` lines
    (6 significant digits only); other lines are skipped.
    """
    rows = []
    for line in text.splitlines():
        try:
            vals = [float(p) for p in line.split(',')[:3]]
        except ValueError:
            continue
        if len(vals) >= 2:
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
            mags = [n for n in tab.columns.names if n.upper().startswith('MAG')]
            return (np.array(tab['RA'], dtype=float), np.array(tab['DEC'], dtype=float),
                    np.array(tab[mags[0]], dtype=float) if mags else np.full(len(tab), np.nan))


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

    Runs ``query-starkd -r RA -d DEC -R RADIUS -T -o out.fits FILE`` on each
    index file (reading its FITS output, which keeps full precision, or else
    parsing its ASCII listing) and merges the results.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
    radius : `~astropy.units.Quantity`
        Search radius (angle).
    index_dir : str or Path, optional
        Folder of the index files. Default: the ``add_path`` folders of
        ``/etc/astrometry.cfg`` and ``/usr/share/astrometry``.
    index_names : list of str, optional
        Index files (names in ``index_dir``, or paths). Default: all ``index-tycho2-*.fits``.
    tolerance : float, optional
        Positions closer than this (arcsec) are one star found in several index
        files; one copy is kept.

    Returns
    -------
    `~astropy.table.Table`
        ``ra``, ``dec`` (deg) and ``mag`` (Tycho VT), brightest first.

    Raises
    ------
    RuntimeError
        If ``query-starkd`` is not installed or fails.
    FileNotFoundError
        If there are no index files.
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


def _sip_matrices(sip):
    """Forward SIP matrices (A, B) from a dict of 'A_p_q'/'B_p_q'/'k1'/'order'."""
    terms = {k: float(v) for k, v in sip.items() if re.fullmatch(r'[AB]_\d+_\d+', k)}
    for key in ('A_3_0', 'A_1_2', 'B_2_1', 'B_0_3'):     # k1 * (u, v) * (u**2 + v**2)
        terms[key] = terms.get(key, 0.0) + float(sip.get('k1', 0.0))
    order = int(sip.get('order', max(sum(map(int, k.split('_')[1:])) for k in terms)))
    a, b = np.zeros((order + 1, order + 1)), np.zeros((order + 1, order + 1))
    for key, val in terms.items():
        name, p, q = key.split('_')
        (a if name == 'A' else b)[int(p), int(q)] = val
    return a, b


def make_wcs(center, *, pixel_scale, shape=(1024, 1024), rotation=0 * u.deg,
             flip=False, sip=None):
    """A TAN (or TAN-SIP) WCS centred on ``center``.

    Parameters
    ----------
    center : `~astropy.coordinates.SkyCoord`
        CRVAL, at CRPIX = the image centre: FITS pixel ``((nx + 1) / 2, (ny + 1) / 2)``,
        0-based ``((nx - 1) / 2, (ny - 1) / 2)``.
    pixel_scale : `~astropy.units.Quantity`
        ``u.arcsec / u.pix`` or ``u.arcsec``; a bare number is arcsec per pixel.
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
        ``k1 * r**2`` times its offset from CRPIX (k1 > 0: pincushion). No
        inverse (AP, BP) is written: astropy's ``all_world2pix`` iterates.

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
        w.sip = Sip(*_sip_matrices(sip), None, None, w.wcs.crpix)
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
        """`~astropy.io.fits.Header`: true WCS, IMAGEW/IMAGEH, RA/DEC hints, rendering cards."""
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
        overwrite : bool
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
        """True positions of the ``n`` (default all) brightest stars, as an xylist.

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
                 hot_pixels=0, cosmic_rays=0, hot_level=None, saturation=None, seed=None,
                 index_dir=None, index_names=None):
    """Render a star field from the index stars, with a known WCS.

    Stars are queried over the whole field (plus a margin), projected with
    the true WCS (``all_world2pix``, so with SIP), and drawn as pixel-integrated
    Gaussians on small stamps; in electrons, gain 1.

    Parameters
    ----------
    center, pixel_scale, shape, rotation, flip, sip
        The true WCS; see `make_wcs`.
    fwhm : float
        Gaussian PSF FWHM in pixels.
    mag_limit, max_stars : float, int, optional
        Leave out stars fainter than ``mag_limit``; keep only the ``max_stars``
        brightest in the frame.
    zeropoint : float
        ``flux = 10**(-0.4 * (mag - zeropoint))`` electrons.
    background, read_noise : float
        Sky level (electrons per pixel) and read noise (electrons RMS).
    noise : bool
        Add Poisson noise and Gaussian read noise.
    hot_pixels, cosmic_rays : int
        Numbers of single bright pixels and of short (1-8 px) bright streaks.
    hot_level : float, optional
        Hot pixels add 0.1-1 times this, cosmic rays 0.1-0.5 times it.
        Default: ``saturation``, else 30000.
    saturation : float, optional
        Clip the image at this level.
    seed : int, optional
        Seed of `numpy.random.default_rng`: the same seed gives the same image.
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
    bx = np.array([-margin, nx - 1 + margin, nx - 1 + margin, -margin])
    by = np.array([-margin, -margin, ny - 1 + margin, ny - 1 + margin])
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
    level = hot_level or (saturation if saturation is not None else 30000.0)
    if hot_pixels:
        hy, hx = rng.integers(0, ny, hot_pixels), rng.integers(0, nx, hot_pixels)
        image[hy, hx] += rng.uniform(0.1, 1.0, hot_pixels) * level
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
        WCS objects, headers (e.g. of the header-only ``wcs.fits`` written by
        ``solve-field``) or FITS file names (primary header).
    shape : tuple of int, optional
        ``(ny, nx)``. Default: from ``true_wcs``, else ``solved_wcs``
        (``pixel_shape``, NAXISn or IMAGEW/IMAGEH).
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


_EXAMPLE = dict(center=(83.82, -5.39), pixel_scale=9.0, shape=(450, 600), rotation=20.0,
                fwhm=2.6, zeropoint=19.5, background=300.0, read_noise=8.0, hot_pixels=5,
                cosmic_rays=1, hot_level=5000.0, saturation=60000.0, seed=20240942)


def example_field(index_dir=None):
    """The `SyntheticField` of the bundled example image (Orion's sword, M42)."""
    p = dict(_EXAMPLE)
    center = SkyCoord(*p.pop('center'), unit='deg')
    return render_field(center, pixel_scale=p.pop('pixel_scale') * u.arcsec / u.pix,
                        rotation=p.pop('rotation') * u.deg, index_dir=index_dir, **p)


def make_example_image(path=None, *, overwrite=True, index_dir=None):
    """Write the bundled example image (uint16, true WCS in a ``TRUEWCS`` extension).

    600 x 450 pixels of 9"/pix around M42, rotated 20 deg (up is 20 deg E of N),
    normal parity; ``path`` defaults to `EXAMPLE_IMAGE`. Returns the path.
    """
    sf = example_field(index_dir=index_dir)
    sf.meta['OBJECT'] = 'M42 (simulated)'
    return sf.writeto(path or EXAMPLE_IMAGE, overwrite=overwrite, dtype=np.uint16,
                      truth='extension')
