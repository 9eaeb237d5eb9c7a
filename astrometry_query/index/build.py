"""Index files built from any star catalogue with ``build-astrometry-index``.

An observatory that knows where it points can solve narrow fields offline
from a catalogue of a few thousand stars (a Gaia cone, a local list): the
official narrow-field series are tens of gigabytes for the whole sky.
"""
import contextlib
import math
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astroquery import log

from ..exceptions import IndexBuildError, InvalidInputError, InvalidSettingError
from ..files import atomic_path
from .download import parse_scales
from .installed import CONE_CARDS, index_infos
from .locations import default_destination
from .series import QUAD_SCALES

__all__ = ['build_index', 'choose_scales', 'catalog_extent', 'MIN_STARS']

#: Fewer stars than this cannot make an index worth solving with.
MIN_STARS = 20
#: Stars a quad-sized disc must hold on average for a scale to be built.
STARS_PER_QUAD = 6.0
#: Largest quads kept, as a fraction of the catalogue's diameter.
EXTENT_FRACTION = 0.5
#: First id of the series build_index numbers its files in (id = base + scale).
FIRST_BASE, LAST_BASE = 9000, 9900


def _column(table, name, what):
    if name in table.colnames:
        return table[name]
    folded = {c.lower(): c for c in table.colnames}
    if str(name).lower() in folded:
        return table[folded[str(name).lower()]]
    raise InvalidInputError(f'{what}: the catalogue has no column {name!r}; its columns are '
                            f'{", ".join(table.colnames)}.')


def _degrees(column, what):
    """Values of an RA or Dec column in degrees (NaN where masked)."""
    if isinstance(column, SkyCoord):
        raise InvalidInputError(f'{what}: give the RA and Dec columns, not a SkyCoord column.')
    try:
        if isinstance(column, u.Quantity):
            return np.asarray(column.to_value(u.deg), dtype=float)
        values = np.ma.filled(np.ma.asarray(column, dtype=float), np.nan)
        unit = getattr(column, 'unit', None)
        return (values * u.Unit(unit)).to_value(u.deg) if unit not in (None, '') else values
    except (ValueError, TypeError, u.UnitsError):
        raise InvalidInputError(f'{what}: the column must hold angles (degrees).') from None


def catalog_extent(ra, dec):
    """(centre SkyCoord, radius in deg) of the smallest cone around the mean
    position that holds every star."""
    r, d = np.radians(ra), np.radians(dec)
    xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)]).mean(axis=1)
    centre = SkyCoord(*xyz, representation_type='cartesian', frame='icrs')
    centre = SkyCoord(centre.spherical.lon, centre.spherical.lat, frame='icrs')
    radius = centre.separation(SkyCoord(ra, dec, unit='deg')).deg.max()
    return centre, float(radius)


def choose_scales(n_stars, radius_deg):
    """Preset scales a catalogue of ``n_stars`` over a cone of ``radius_deg``
    can support: its quads must hold `STARS_PER_QUAD` stars on average, and
    be no larger than the catalogue."""
    area = math.pi * (max(radius_deg, 1e-6) * 60.0) ** 2        # arcmin^2
    density = n_stars / area
    diameter = 2.0 * radius_deg * 60.0
    return [s for s, (low, high) in QUAD_SCALES.items()
            if density * math.pi * high ** 2 / 4 >= STARS_PER_QUAD
            and low <= EXTENT_FRACTION * diameter]


def _free_base(destination, n_scales):
    """The first id base (9000, 9100 ...) none of whose ids is used in ``destination``."""
    used = {i.index_id for i in index_infos(destination.glob('index-*.fits'))}
    for base in range(FIRST_BASE, LAST_BASE + 1, 100):
        if not any(base + s in used for s in range(20)):
            return base
    raise IndexBuildError(f'Every index id from {FIRST_BASE} to {LAST_BASE + 19} is used in '
                          f'{destination}; pass index_id=.')


def _run(exe, catalogue, output, scale, index_id, sweeps, jitter, timeout):
    with tempfile.TemporaryDirectory(prefix='aq-build-') as tmp:
        cmd = [exe, '-i', str(catalogue), '-o', str(output), '-P', str(scale), '-S', 'MAG',
               '-A', 'RA', '-D', 'DEC', '-E', '-I', str(index_id), '-n', str(int(sweeps)),
               '-j', f'{float(jitter):g}', '-t', tmp]
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise IndexBuildError(f'build-astrometry-index took more than {timeout:g} s on scale '
                                  f'{scale}.') from None
        if proc.returncode != 0 or not output.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise IndexBuildError(f'build-astrometry-index failed on scale {scale} '
                                  f'(exit {proc.returncode}): {" / ".join(tail)}')
        return time.perf_counter() - started


def build_index(catalog, destination_dir=None, *, ra='ra', dec='dec', mag='mag', scales=None,
                index_id=None, overwrite=False, sweeps=10, jitter=1.0, verbose=True,
                timeout=1800.0):
    """Build astrometry.net index files from a star catalogue.

    Parameters
    ----------
    catalog : `~astropy.table.Table` or path
        Stars with RA and Dec (degrees, or columns with angle units) and a
        magnitude; any file `~astropy.table.Table.read` reads.
    destination_dir : path, optional
        Default: the user's index directory (which local solves search when
        ``conf.index_dir`` is empty; ``astrometry-query index build``
        defaults to the first directory of ``conf.index_dir``).
    ra, dec, mag : str
        Column names.  ``mag=None`` keeps the catalogue's order (brightest
        first).
    scales : int, list or str, optional
        Preset scales to build (0-19).  Default: those the catalogue's extent
        and density support (`choose_scales`).
    index_id : int, optional
        Base of the index ids (each file's id is ``index_id + scale``);
        default the first free one of 9000, 9100, ... 9900.
    overwrite : bool
        Replace existing files of the same name.
    sweeps : int
        Stars kept per cell of the index's grid (``-n``); more makes larger,
        denser files.
    jitter : float
        Positional error of the catalogue, arcsec (``-j``).
    verbose : bool
        Log a line per file.
    timeout : float
        Seconds allowed per scale.

    Returns
    -------
    list of `~pathlib.Path`
        The new files (``index-<id>.fits``), by scale.  Each header also
        records the catalogue's cone (cards AQ_RA, AQ_DEC, AQ_RAD), so the
        pre-solve check knows where they can solve.

    Raises
    ------
    InvalidInputError
        A missing column, non-numeric values, or too few stars.
    InvalidSettingError
        Bad scales, index_id, sweeps or jitter.
    IndexBuildError
        ``build-astrometry-index`` is missing or failed.
    """
    if isinstance(catalog, (str, os.PathLike)):
        try:
            catalog = Table.read(catalog)
        except Exception as exc:
            raise InvalidInputError(f'catalog: cannot read {catalog}: {exc}') from None
    if not isinstance(catalog, Table):
        raise InvalidInputError(f'catalog must be an astropy Table or a table file, '
                                f'got {type(catalog).__name__}.')
    for name, value, low in (('sweeps', sweeps, 1), ('jitter', jitter, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not np.isfinite(value) or value < low:
            raise InvalidSettingError(f'{name} must be a number >= {low}, got {value!r}.',
                                      setting=name, allowed=f'>= {low}')
    ra_deg = _degrees(_column(catalog, ra, 'ra'), 'ra')
    dec_deg = _degrees(_column(catalog, dec, 'dec'), 'dec')
    if mag is None:
        mags = np.arange(len(catalog), dtype=float)
    else:
        column = _column(catalog, mag, 'mag')
        try:
            mags = np.ma.filled(np.ma.asarray(getattr(column, 'value', column), dtype=float),
                                np.nan)
        except (TypeError, ValueError):
            raise InvalidInputError(f'mag: column {mag!r} must hold numbers.') from None
    good = np.isfinite(ra_deg) & np.isfinite(dec_deg) & (np.abs(dec_deg) <= 90)
    if good.sum() < MIN_STARS:
        raise InvalidInputError(f'catalog: {int(good.sum())} stars with valid RA/Dec; at least '
                                f'{MIN_STARS} are needed.')
    ra_deg, dec_deg, mags = ra_deg[good] % 360.0, dec_deg[good], mags[good]
    mags = np.where(np.isfinite(mags), mags, np.nanmax(mags, initial=0.0) + 1.0)  # unknown: last
    centre, radius = catalog_extent(ra_deg, dec_deg)
    if scales is None:
        chosen = choose_scales(len(ra_deg), radius)
        if not chosen:
            raise InvalidInputError(f'catalog: {len(ra_deg)} stars over a {radius * 60:.3g} '
                                    'arcmin radius are too few for any index scale; give more '
                                    'stars or scales=.')
    else:
        chosen = parse_scales(scales, list(QUAD_SCALES))
    exe = shutil.which('build-astrometry-index')
    if exe is None:
        raise IndexBuildError('build-astrometry-index was not found on PATH: install '
                              'astrometry.net (sudo apt-get install astrometry.net).')
    destination = Path(destination_dir).expanduser() if destination_dir else default_destination()
    destination.mkdir(parents=True, exist_ok=True)
    if index_id is None:
        base = _free_base(destination, len(chosen))
    elif isinstance(index_id, bool) or not isinstance(index_id, (int, np.integer)) \
            or not (1 <= index_id <= 999_980):
        raise InvalidSettingError(f'index_id must be a positive integer, got {index_id!r}.',
                                  setting='index_id', allowed='1-999980')
    else:
        base = int(index_id)
    targets = {s: destination / f'index-{base + s}.fits' for s in chosen}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise InvalidInputError(f'{", ".join(existing)} exist; pass overwrite=True or another '
                                'index_id.')
    # Each file is built under a temporary name beside its own (atomic_path) and put in
    # place only when every scale is built: a failed build leaves the directory as it was.
    with tempfile.TemporaryDirectory(prefix='.aq-build-', dir=destination) as tmp, \
            contextlib.ExitStack() as placing:
        catalogue = Path(tmp) / 'catalog.fits'
        order = np.argsort(mags, kind='stable')
        fits.BinTableHDU(Table([ra_deg[order], dec_deg[order], mags[order]],
                               names=('RA', 'DEC', 'MAG'))).writeto(catalogue)
        outputs = {s: placing.enter_context(atomic_path(targets[s])) for s in chosen}
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            seconds = dict(zip(chosen, pool.map(
                lambda s: _run(exe, catalogue, outputs[s], s, base + s, sweeps, jitter, timeout),
                chosen)))
        for scale in chosen:
            with fits.open(outputs[scale], mode='update') as hdul:
                cards = dict(zip(CONE_CARDS, (centre.ra.deg, centre.dec.deg, radius)))
                for key, value in cards.items():
                    hdul[0].header[key] = (round(float(value), 8), 'astrometry_query: catalogue '
                                           'cone (deg)')
    if verbose:
        for scale in chosen:
            info = index_infos([targets[scale]])[0]
            log.info(f'Built {targets[scale].name}: scale {scale} (quads '
                     f'{info.quad_min:.3g}-{info.quad_max:.3g} arcmin), {info.nstars} stars, '
                     f'{info.nquads} quads, {seconds[scale]:.2f} s.')
    return [targets[s] for s in chosen]
