"""Fetching the official index files: parallel, resumable, atomic, verified.

Each file is written to ``<name>.part`` beside its final name (which the
solver's ``index-*.fits`` never matches), continued with an HTTP Range
request when a connection breaks or on the next call, checked (size, and
its FITS header names the expected index id and tile), and only then
renamed into place.  So the index directory never holds a partial file under
a name the solver would load.
"""
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import astropy.units as u
import numpy as np
import requests
import urllib3
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astroquery import log
from tqdm.auto import tqdm

from ..exceptions import IndexDownloadError, InvalidSettingError
from .locations import default_destination
from .series import DEFAULT_BASE_URL, SERIES, get_series
from .tiles import tiles_around

__all__ = ['download_indexes', 'planned_files', 'parse_scales', 'RETRIES', 'PART_SUFFIX']

_CHUNK = 1 << 20
#: Tries per file (each resumes where the last stopped).
RETRIES = 5
PART_SUFFIX = '.part'


def parse_scales(scales, allowed, name='scales'):
    """Scales from an int, a list, a range or a string ('3', '1-4', '0,2,5');
    checked against ``allowed``.  None: all of ``allowed``."""
    if scales is None:
        return list(allowed)
    items = [scales] if isinstance(scales, (int, np.integer, str)) else list(scales)
    out = []
    try:
        for item in items:
            if isinstance(item, bool):
                raise ValueError
            if isinstance(item, str):
                for part in item.replace(' ', '').split(','):
                    low, _, high = part.partition('-')
                    out += list(range(int(low), int(high or low) + 1))
            else:
                if int(item) != item:
                    raise ValueError
                out.append(int(item))
    except (TypeError, ValueError):
        raise InvalidSettingError(f'{name}: expected integers, a list or a range such as "1-4", '
                                  f'got {scales!r}.', setting=name,
                                  allowed=f'{min(allowed)}-{max(allowed)}') from None
    bad = [s for s in out if s not in allowed]
    if bad or not out:
        raise InvalidSettingError(f'{name}: {bad or scales!r} not available; this series has '
                                  f'scales {min(allowed)}-{max(allowed)}.', setting=name,
                                  allowed=f'{min(allowed)}-{max(allowed)}')
    return sorted(set(out))


def _position(around, radius):
    if around is None:
        if radius is not None:
            raise InvalidSettingError('radius needs around= (a SkyCoord or an (ra, dec) pair).',
                                      setting='radius', allowed='an angle, with around=')
        return None, None
    try:
        coord = around if isinstance(around, SkyCoord) else SkyCoord(
            Angle(around[0], u.deg), Angle(around[1], u.deg))
        coord = coord.icrs
    except Exception:
        raise InvalidSettingError(f'around must be a SkyCoord or an (ra, dec) pair in degrees, '
                                  f'got {around!r}.', setting='around',
                                  allowed='SkyCoord or (ra, dec)') from None
    if not coord.isscalar:
        raise InvalidSettingError('around must be one position.', setting='around',
                                  allowed='a scalar SkyCoord')
    try:
        radius = Angle(0 if radius is None else radius, u.deg)
        if not (0 <= radius.deg <= 180):
            raise ValueError
    except Exception:
        raise InvalidSettingError(f'radius must be an angle from 0 to 180 deg, got {radius!r}.',
                                  setting='radius', allowed='0-180 deg') from None
    return coord, radius


def planned_files(series, scales=None, *, around=None, radius=None, base_url=None):
    """The files `download_indexes` would fetch: a list of dicts with
    ``name``, ``url``, ``scale``, ``tile`` (None: all-sky), ``index_id``,
    ``nside`` and ``estimate`` (bytes, or None)."""
    try:
        series = get_series(series)
    except ValueError:
        raise InvalidSettingError(f'series must be one of {", ".join(SERIES)}, got {series!r}.',
                                  setting='series', allowed=list(SERIES)) from None
    scales = parse_scales(scales, series.scales)
    coord, radius = _position(around, radius)
    base_url = base_url or DEFAULT_BASE_URL
    if not isinstance(base_url, str) or urlsplit(base_url).scheme not in ('http', 'https') \
            or not urlsplit(base_url).netloc:
        raise InvalidSettingError(f'base_url must be an http(s) URL, got {base_url!r}.',
                                  setting='base_url', allowed='http(s)://host[/path]')
    files = []
    for scale in scales:
        nside = series.nside[scale]
        if not nside:
            tiles = [None]
        elif coord is not None:
            tiles = tiles_around(coord, radius, nside)
        else:
            tiles = list(range(12 * nside * nside))
        for tile in tiles:
            files.append({'name': series.filename(scale, tile), 'url': series.url(base_url, scale, tile),
                          'scale': scale, 'tile': tile, 'nside': nside,
                          'index_id': series.index_base + scale,
                          'estimate': series.tile_size.get(scale)})
    return files


def _check_file(path, plan, expected_size=None):
    """Why a downloaded file is not the index file planned ('' when it is)."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f'{size} bytes instead of {expected_size}'
    if size == 0 or size % 2880:
        return f'{size} bytes is not a whole FITS file (a multiple of 2880)'
    try:
        header = fits.getheader(path, 0)
    except Exception as exc:
        return f'not a FITS file ({exc})'
    if header.get('INDEXID') != plan['index_id']:
        return f'its INDEXID is {header.get("INDEXID")!r}, not {plan["index_id"]}'
    if plan['tile'] is not None and (header.get('HEALPIX'), header.get('HPNSIDE')) != (
            plan['tile'], plan['nside']):
        return (f'it covers healpix {header.get("HEALPIX")!r} (Nside {header.get("HPNSIDE")!r}), '
                f'not {plan["tile"]} (Nside {plan["nside"]})')
    return ''


class _Fetcher:
    """Fetches planned files into one directory, on several threads."""

    def __init__(self, destination, *, timeout, retries, bar):
        self.destination = destination
        self.timeout = timeout
        self.retries = retries
        self.bar = bar
        self._local = threading.local()

    @property
    def session(self):
        if getattr(self._local, 'session', None) is None:
            self._local.session = requests.Session()
            self._local.session.headers['User-Agent'] = 'astrometry_query index download'
        return self._local.session

    def head(self, plan):
        """Size and validators of the file on the server (None when it does not say)."""
        try:
            response = self.session.head(plan['url'], timeout=self.timeout, allow_redirects=True)
        except requests.RequestException:
            return None, None
        if response.status_code != 200:
            return None, None
        length = response.headers.get('Content-Length')
        validator = response.headers.get('ETag') or response.headers.get('Last-Modified')
        return (int(length) if length and length.isdigit() else None), validator

    def fetch(self, plan, overwrite):
        started = time.monotonic()
        final = self.destination / plan['name']
        part = self.destination / (plan['name'] + PART_SUFFIX)
        size, validator = plan.get('size'), plan.get('validator')
        if final.exists() and not overwrite:
            if not _check_file(final, plan, size):
                return dict(status='present', size=final.stat().st_size,
                            seconds=time.monotonic() - started)
            log.warning(f'{final} fails its check: fetching it again.')
        resumed = part.exists() and part.stat().st_size > 0
        error = ''
        for attempt in range(self.retries):
            try:
                total = self._stream(plan, part, size, validator)
            except requests.HTTPError as exc:
                error = f'HTTP {exc.response.status_code} from {plan["url"]}'
                if exc.response.status_code < 500 and exc.response.status_code not in (408, 429):
                    break       # not there, or not for us: trying again will not help
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
                continue
            except (requests.RequestException, OSError, urllib3.exceptions.HTTPError) as exc:
                error = f'{type(exc).__name__}: {exc}'
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
                continue
            problem = _check_file(part, plan, total)
            if problem:
                part.unlink(missing_ok=True)      # corrupt: never resumed from
                raise IndexDownloadError(f'{plan["name"]}: {problem}',
                                         failed={plan['name']: problem})
            # Not files.atomic_path: the partial file must keep one name across calls
            # (and processes), so that the next call resumes it instead of starting over.
            with open(part, 'rb+') as handle:
                os.fsync(handle.fileno())
            os.replace(part, final)
            return dict(status='resumed' if resumed else 'downloaded', size=final.stat().st_size,
                        seconds=time.monotonic() - started)
        kept = f'; {part.name} is kept and the next call resumes it' if part.exists() else ''
        raise IndexDownloadError(f'{plan["name"]}: {error} (after {attempt + 1} tries{kept})',
                                 failed={plan['name']: error})

    def _stream(self, plan, part, size, validator):
        """Append the rest of the file to ``part``; returns the full size (or None)."""
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset == size:
            return size
        headers = {'Accept-Encoding': 'identity'}     # byte ranges of the file itself
        if offset:
            headers['Range'] = f'bytes={offset}-'
            if validator:
                headers['If-Range'] = validator
        with self.session.get(plan['url'], headers=headers, stream=True,
                              timeout=self.timeout) as response:
            if response.status_code == 416:       # nothing left: a size check decides
                return size
            response.raise_for_status()
            if response.status_code == 206:
                content_range = response.headers.get('Content-Range', '')
                start = content_range.split(' ')[-1].split('-')[0]
                if not start.isdigit() or int(start) != offset:
                    raise requests.ConnectionError(f'unexpected Content-Range {content_range!r}')
                total = content_range.rsplit('/', 1)[-1]
                size = int(total) if total.isdigit() else size
                mode = 'ab'
            else:       # the whole file again (no Range support, or it changed)
                if offset:
                    self.bar.update(-offset)
                offset, mode = 0, 'wb'
                length = response.headers.get('Content-Length')
                size = int(length) if length and length.isdigit() else size
            with open(part, mode) as handle:
                # read1 hands over bytes as they arrive: when the connection breaks,
                # all that came is on disk and the next request continues after it.
                while chunk := response.raw.read1(_CHUNK):
                    handle.write(chunk)
                    self.bar.update(len(chunk))
        got = part.stat().st_size
        if size is not None and got < size:
            raise requests.ConnectionError(f'the connection closed after {got} of {size} bytes')
        return size


def download_indexes(series, scales=None, destination_dir=None, *, around=None, radius=None,
                     base_url=None, overwrite=False, max_workers=4, verbose=True, timeout=60.0,
                     retries=RETRIES):
    """Fetch official astrometry.net index files.

    Parameters
    ----------
    series : str or int
        ``'4100'`` (Tycho-2, scales 7-19), ``'4200'`` (2MASS, 0-19),
        ``'5200'`` (Tycho-2 + Gaia-DR2 LITE, 0-6) or ``'5200-heavy'``.
    scales : int, list, range or str, optional
        Which scales (``3``, ``[1, 2]``, ``'1-4'``); default all of the
        series.  Scale 0 has quads 2-2.8 arcmin and each next one is sqrt(2)
        larger: a field needs quads of about 10-100 % of its size.
    destination_dir : path, optional
        Default: the user's index directory (which local solves search when
        ``conf.index_dir`` is empty; ``astrometry-query index download``
        defaults to the first directory of ``conf.index_dir``).
    around : `~astropy.coordinates.SkyCoord` or (ra, dec), optional
        Fetch only the healpix tiles of the tiled scales that touch the cone
        of ``radius`` around this position (all-sky scales are one file).
    radius : `~astropy.units.Quantity` or float (deg), optional
        With ``around``; default 0 (the tile holding the position).
    base_url : str, optional
        Server holding the series' directories (default
        ``http://data.astrometry.net``), e.g. a local mirror.
    overwrite : bool
        Fetch again files already there (else they are checked and kept).
    max_workers : int
        Files fetched at once.
    verbose : bool
        A progress bar (bytes) on a terminal or in a notebook.
    timeout : float
        Seconds without data before a connection is retried.
    retries : int
        Tries per file; each resumes where the previous one stopped.

    Returns
    -------
    `~astropy.table.Table`
        One row per file: ``name``, ``path``, ``url``, ``scale``, ``tile``
        (-1: all-sky), ``size`` (bytes), ``status`` ('downloaded',
        'resumed' or 'present'), ``seconds``.

    Raises
    ------
    InvalidSettingError
        For a bad argument, before any request.
    IndexDownloadError
        When files could not be fetched or fail their check, after the
        others are done (``failed`` names them; partial files are kept and
        resumed by the next call), or when the disk has too little room.

    Examples
    --------
    The tiles of scales 1-4 (10 arcmin fields) within 2 degrees of M101:

    >>> from astropy.coordinates import SkyCoord
    >>> import astropy.units as u
    >>> from astrometry_query.index import download_indexes
    >>> download_indexes('5200', '1-4', around=SkyCoord.from_name('M101'),
    ...                  radius=2 * u.deg)          # doctest: +SKIP
    """
    plans = planned_files(series, scales, around=around, radius=radius, base_url=base_url)
    if isinstance(max_workers, bool) or not isinstance(max_workers, (int, np.integer)) \
            or max_workers < 1:
        raise InvalidSettingError(f'max_workers must be a positive integer, got {max_workers!r}.',
                                  setting='max_workers', allowed='>= 1')
    destination = Path(destination_dir).expanduser() if destination_dir else default_destination()
    destination.mkdir(parents=True, exist_ok=True)
    with tqdm(total=0, unit='B', unit_scale=True, unit_divisor=1024, disable=not verbose,
              desc='index files', leave=True) as bar:
        fetcher = _Fetcher(destination, timeout=timeout, retries=max(1, int(retries)), bar=bar)
        with ThreadPoolExecutor(max_workers=int(max_workers)) as pool:
            for plan, (size, validator) in zip(plans, pool.map(fetcher.head, plans)):
                plan['size'], plan['validator'] = size, validator
            needed = 0
            for plan in plans:
                final = destination / plan['name']
                part = destination / (plan['name'] + PART_SUFFIX)
                if final.exists() and not overwrite:
                    continue
                have = part.stat().st_size if part.exists() else 0
                needed += max(0, (plan['size'] or plan['estimate'] or 0) - have)
                bar.update(have)
                bar.total += have
            bar.total += needed
            bar.refresh()
            free = shutil.disk_usage(destination).free
            if needed > free:
                raise IndexDownloadError(f'{needed / 1e9:.2f} GB are needed in {destination}, '
                                         f'which has {free / 1e9:.2f} GB free.')
            if verbose:
                log.info(f'Fetching {len(plans)} index files of series {get_series(series).name} '
                         f'({needed / 1e6:.1f} MB) into {destination}.')
            futures = [pool.submit(fetcher.fetch, plan, overwrite) for plan in plans]
            outcomes, failed = [], {}
            for plan, future in zip(plans, futures):
                try:
                    outcomes.append(future.result())
                except IndexDownloadError as exc:
                    failed.update(exc.failed)
                    outcomes.append(dict(status='failed', size=0, seconds=0.0))
    table = Table(rows=[(p['name'], str(destination / p['name']), p['url'], p['scale'],
                         -1 if p['tile'] is None else p['tile'], o['size'], o['status'],
                         round(o['seconds'], 3)) for p, o in zip(plans, outcomes)],
                  names=('name', 'path', 'url', 'scale', 'tile', 'size', 'status', 'seconds'),
                  dtype=(str, str, str, int, int, np.int64, str, float))
    table['size'].unit = u.byte
    table['seconds'].unit = u.s
    table.meta['destination'] = str(destination)
    if failed:
        lines = '; '.join(f'{name}: {why}' for name, why in failed.items())
        error = IndexDownloadError(f'{len(failed)} of {len(plans)} index files failed ({lines}). '
                                   'Call again to resume them.', failed=failed)
        error.results = table
        raise error
    return table
