"""The index files installed here, read from their own headers."""
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from ..exceptions import InvalidInputError
from .locations import index_files, resolve_index_dirs
from .series import ARCMIN_PER_RADIAN, scale_of_quads

__all__ = ['IndexInfo', 'read_index_header', 'installed_indexes', 'index_infos',
           'describe_scales', 'CONE_CARDS']

#: Cards `build_index` adds: the catalogue's cone (deg), for the coverage check.
CONE_CARDS = ('AQ_RA', 'AQ_DEC', 'AQ_RAD')


@dataclass(frozen=True)
class IndexInfo:
    """One index file, as its primary header describes it.

    Attributes
    ----------
    path : `~pathlib.Path`
    index_id : int
        ``INDEXID`` (e.g. 5203: series 5200, scale 3).
    series : int
        ``index_id`` rounded down to hundreds.
    scale : int or None
        The preset scale whose quad range this is (None: a custom range).
    quad_min, quad_max : float
        Quad diameters, arcmin (``SCALE_L``, ``SCALE_U``).
    healpix, nside : int
        The tile covered; -1 and 0 for an all-sky file.
    nstars, nquads : int
    size : int
        Bytes.
    cone : tuple or None
        (ra, dec, radius) in degrees of the catalogue an index was built from
        by `build_index` (its stars lie there only).
    """
    path: Path
    index_id: int
    series: int
    scale: int | None
    quad_min: float
    quad_max: float
    healpix: int
    nside: int
    nstars: int
    nquads: int
    size: int
    cone: tuple | None = None

    @property
    def all_sky(self):
        return self.healpix < 0 or self.nside <= 0


def _card(header, key, kind, default=None):
    try:
        return kind(header[key])
    except (KeyError, TypeError, ValueError):
        return default


@functools.lru_cache(maxsize=4096)
def _read(path, mtime_ns, size):
    try:
        header = fits.getheader(path, 0)
    except (OSError, ValueError, IndexError) as exc:
        raise InvalidInputError(f'{path} is not a readable FITS index file: {exc}') from None
    low, high = _card(header, 'SCALE_L', float), _card(header, 'SCALE_U', float)
    index_id = _card(header, 'INDEXID', int)
    if low is None or high is None or index_id is None:
        raise InvalidInputError(f'{path} is not an astrometry.net index file '
                                '(its header has no INDEXID, SCALE_L or SCALE_U).')
    quad_min, quad_max = low * ARCMIN_PER_RADIAN, high * ARCMIN_PER_RADIAN
    cone = tuple(_card(header, k, float) for k in CONE_CARDS)
    return IndexInfo(path=Path(path), index_id=index_id, series=index_id // 100 * 100,
                     scale=scale_of_quads(quad_min, quad_max), quad_min=quad_min,
                     quad_max=quad_max, healpix=_card(header, 'HEALPIX', int, -1),
                     nside=_card(header, 'HPNSIDE', int, 0), nstars=_card(header, 'NSTARS', int, 0),
                     nquads=_card(header, 'NQUADS', int, 0), size=size,
                     cone=cone if None not in cone else None)


def read_index_header(path):
    """The `IndexInfo` of one index file (cached while the file is unchanged).

    Raises
    ------
    InvalidInputError
        When the file is not an astrometry.net index file.
    """
    path = Path(path)
    stat = path.stat()
    return _read(str(path), stat.st_mtime_ns, stat.st_size)


def index_infos(files):
    """`IndexInfo` of each readable index file of ``files`` (others are skipped)."""
    out = []
    for path in files:
        try:
            out.append(read_index_header(path))
        except (OSError, InvalidInputError):
            continue
    return out


def installed_indexes(index_dir=None):
    """The index files a local solve would use, read from their headers.

    Parameters
    ----------
    index_dir : str, `~pathlib.Path` or list of them, optional
        Directories to look in (a string may join several with
        ``os.pathsep``, as ``conf.index_dir`` does: pass ``conf.index_dir``
        to list what the local backend uses when it is set).  Default: the
        ``add_path`` entries of ``/etc/astrometry.cfg`` and the user's index
        directory, where a local solve looks when ``conf.index_dir`` is empty.

    Returns
    -------
    `~astropy.table.Table`
        One row per ``index-*.fits`` file, sorted by scale: ``path``,
        ``index_id``, ``series``, ``scale`` (masked for a custom quad range),
        ``quad_min`` and ``quad_max`` (arcmin), ``healpix`` and ``nside``
        (-1 and 0 for all-sky files), ``nstars``, ``nquads``, ``size``
        (bytes).  ``meta['index_dirs']`` lists the directories searched.

    Examples
    --------
    >>> from astrometry_query.index import installed_indexes
    >>> table = installed_indexes()
    >>> table['index_id', 'quad_min', 'quad_max'][:2]    # doctest: +SKIP
    """
    dirs = resolve_index_dirs(index_dir)
    infos = index_infos(index_files(dirs))
    infos = sorted(infos, key=lambda i: (i.quad_min, i.index_id, i.healpix))
    table = Table()
    table['path'] = [str(i.path) for i in infos] if infos else np.array([], dtype=str)
    table['index_id'] = np.array([i.index_id for i in infos], dtype=int)
    table['series'] = np.array([i.series for i in infos], dtype=int)
    table['scale'] = MaskedColumn([-1 if i.scale is None else i.scale for i in infos], dtype=int,
                                  mask=[i.scale is None for i in infos])
    table['quad_min'] = np.array([i.quad_min for i in infos], dtype=float) * u.arcmin
    table['quad_max'] = np.array([i.quad_max for i in infos], dtype=float) * u.arcmin
    table['healpix'] = np.array([i.healpix for i in infos], dtype=int)
    table['nside'] = np.array([i.nside for i in infos], dtype=int)
    table['nstars'] = np.array([i.nstars for i in infos], dtype=int)
    table['nquads'] = np.array([i.nquads for i in infos], dtype=int)
    table['size'] = np.array([i.size for i in infos], dtype=np.int64) * u.byte
    table.meta['index_dirs'] = [str(d) for d in dirs]
    return table


def describe_scales(infos):
    """Short text of the quad ranges of some index files, e.g. '22-2000 arcmin (4107-4119)'."""
    if not infos:
        return 'none'
    low = min(i.quad_min for i in infos)
    high = max(i.quad_max for i in infos)
    ids = sorted({i.index_id for i in infos})
    named = f'{ids[0]}' if len(ids) == 1 else f'{ids[0]}-{ids[-1]}'
    return f'{_fmt(low)}-{_fmt(high)} arcmin (index {named})'


def _fmt(value):
    return f'{value:.3g}' if value < 100 else f'{math.floor(value + 0.5):d}'
