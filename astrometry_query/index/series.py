"""Facts about astrometry.net's index files: scales, official series, tiles.

An index file holds quads (four-star shapes) of one size range, its
*scale*: scale 0 has quads 2.0-2.8 arcmin across, and each next scale is
sqrt(2) larger, up to scale 19 (1400-2000 arcmin).  A field is solved by
quads of about 10-100 % of its size, so a 10 arcmin field needs scales 0-4.

The official series (files at ``http://data.astrometry.net``):

- ``4100``: Tycho-2, scales 7-19, one all-sky file per scale (Debian packages
  the same files as ``astrometry-data-tycho2-*``).
- ``4200``: 2MASS, scales 0-19; scales 0-4 are split into 48 healpix tiles,
  5-7 into 12.
- ``5200``: Tycho-2 and Gaia-DR2 ("LITE"), scales 0-6 in 48 tiles each: the
  series for narrow fields.  ``5200-heavy`` is the same with Gaia's
  photometry, parallaxes and proper motions tagged along (larger files).

Sizes are the published files' (bytes, a mean tile per scale), used to say
how much a download is before it starts; `download_indexes` measures the
real sizes from the server.
"""
from dataclasses import dataclass

__all__ = ['QUAD_SCALES', 'quad_range', 'scale_of_quads', 'Series', 'SERIES', 'get_series',
           'DEFAULT_BASE_URL', 'ARCMIN_PER_RADIAN']

ARCMIN_PER_RADIAN = 10800.0 / 3.141592653589793

#: Quad diameters (arcmin) of each preset scale of ``build-astrometry-index -P``.
QUAD_SCALES = {
    0: (2.0, 2.8), 1: (2.8, 4.0), 2: (4.0, 5.6), 3: (5.6, 8.0), 4: (8.0, 11.0),
    5: (11.0, 16.0), 6: (16.0, 22.0), 7: (22.0, 30.0), 8: (30.0, 42.0), 9: (42.0, 60.0),
    10: (60.0, 85.0), 11: (85.0, 120.0), 12: (120.0, 170.0), 13: (170.0, 240.0),
    14: (240.0, 340.0), 15: (340.0, 480.0), 16: (480.0, 680.0), 17: (680.0, 1000.0),
    18: (1000.0, 1400.0), 19: (1400.0, 2000.0),
}

DEFAULT_BASE_URL = 'http://data.astrometry.net'


def quad_range(scale):
    """(smallest, largest) quad diameter in arcmin of a preset scale."""
    try:
        return QUAD_SCALES[int(scale)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f'scale must be an integer from 0 to 19, not {scale!r}') from None


def scale_of_quads(low_arcmin, high_arcmin, tolerance=0.02):
    """The preset scale with this quad range, or None (a custom index)."""
    for scale, (low, high) in QUAD_SCALES.items():
        if abs(low_arcmin / low - 1) < tolerance and abs(high_arcmin / high - 1) < tolerance:
            return scale
    return None


@dataclass(frozen=True)
class Series:
    """One official series of index files.

    Attributes
    ----------
    name : str
        ``'4100'``, ``'4200'``, ``'5200'`` or ``'5200-heavy'``.
    description : str
    scales : tuple of int
    nside : dict
        Healpix Nside of the tiles of each scale (0: one all-sky file).
    tile_size : dict
        Bytes of a typical file (tile) of each scale; None when not known.
    path : str
        File path under the base URL, with ``{scale}`` and ``{tile}`` fields.
    index_base : int
        The index ids are ``index_base + scale``.
    """
    name: str
    description: str
    scales: tuple
    nside: dict
    tile_size: dict
    path: str
    index_base: int

    def tiles(self, scale):
        """Number of files of a scale."""
        nside = self.nside[scale]
        return 12 * nside * nside if nside else 1

    def filename(self, scale, tile=None):
        """File name of one scale (and tile)."""
        return self.path.format(scale=f'{scale:02d}',
                                tile='' if tile is None else f'-{tile:02d}').rsplit('/', 1)[-1]

    def url(self, base_url, scale, tile=None):
        return base_url.rstrip('/') + '/' + self.path.format(
            scale=f'{scale:02d}', tile='' if tile is None else f'-{tile:02d}')

    def size(self, scales=None, tiles_per_scale=None):
        """Estimated bytes of ``scales`` (all by default), whole sky unless
        ``tiles_per_scale`` ({scale: number of tiles}) says how many tiles;
        None when a size is not known."""
        total = 0
        for scale in self.scales if scales is None else scales:
            each = self.tile_size.get(scale)
            if each is None:
                return None
            count = (tiles_per_scale or {}).get(scale, self.tiles(scale))
            total += each * count
        return total


_MB = 1_000_000
SERIES = {s.name: s for s in (
    Series('4100', 'Tycho-2 (all-sky files; fields wider than about 30 arcmin)',
           tuple(range(7, 20)), dict.fromkeys(range(7, 20), 0),
           {7: 165.0 * _MB, 8: 94.6 * _MB, 9: 49.8 * _MB, 10: 24.9 * _MB, 11: 10.2 * _MB,
            12: 5.30 * _MB, 13: 2.73 * _MB, 14: 1.38 * _MB, 15: 0.74 * _MB, 16: 0.41 * _MB,
            17: 0.25 * _MB, 18: 0.19 * _MB, 19: 0.14 * _MB},
           '4100/index-41{scale}{tile}.fits', 4100),
    Series('4200', '2MASS (near infrared; thin at the faint end)',
           tuple(range(0, 20)), {**dict.fromkeys(range(0, 5), 2), **dict.fromkeys(range(5, 8), 1),
                                 **dict.fromkeys(range(8, 20), 0)},
           {0: 290 * _MB, 1: 195 * _MB, 2: 104 * _MB, 3: 54.7 * _MB, 4: 27.4 * _MB,
            5: 54.9 * _MB, 6: 27.4 * _MB, 7: 13.8 * _MB, 8: 81.8 * _MB, 9: 41.2 * _MB,
            10: 20.5 * _MB, 11: 8.0 * _MB, 12: 4.2 * _MB, 13: 2.2 * _MB, 14: 1.1 * _MB,
            15: 0.60 * _MB, 16: 0.34 * _MB, 17: 0.21 * _MB, 18: 0.16 * _MB, 19: 0.13 * _MB},
           '4200/index-42{scale}{tile}.fits', 4200),
    Series('5200', 'Tycho-2 + Gaia-DR2, LITE (fields narrower than about 1 degree)',
           tuple(range(0, 7)), dict.fromkeys(range(0, 7), 2),
           {0: 360 * _MB, 1: 197 * _MB, 2: 101 * _MB, 3: 51.0 * _MB, 4: 25.4 * _MB,
            5: 12.8 * _MB, 6: 6.41 * _MB},
           '5200/LITE/index-52{scale}{tile}.fits', 5200),
    Series('5200-heavy', 'Tycho-2 + Gaia-DR2 with Gaia photometry, parallax and proper '
           'motion tagged along (larger than LITE)',
           tuple(range(0, 7)), dict.fromkeys(range(0, 7), 2), dict.fromkeys(range(0, 7)),
           '5200/index-52{scale}{tile}.fits', 5200),
)}

_ALIASES = {'4100': '4100', '4200': '4200', '5200': '5200', '5200-lite': '5200',
            '5200lite': '5200', 'lite': '5200', '5200-heavy': '5200-heavy',
            '5200heavy': '5200-heavy', 'heavy': '5200-heavy'}


def get_series(name):
    """The `Series` called ``name`` (``4100``, ``4200``, ``5200`` or ``'5200-heavy'``)."""
    key = str(name).strip().lower().replace('_', '-')
    if isinstance(name, bool) or key not in _ALIASES:
        raise ValueError(f'series must be one of {", ".join(SERIES)}, not {name!r}')
    return SERIES[_ALIASES[key]]
