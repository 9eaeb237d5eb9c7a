"""Healpix tiles as astrometry.net numbers them.

Tiled index files (``index-5203-17.fits``) cover one healpix of a coarse grid
(Nside 1 or 2) plus a margin.  astrometry.net numbers the pixels in its own
"XY" scheme: ``base * Nside**2 + x * Nside + y``, with the same 12 base
pixels as HEALPix and ``x``, ``y`` the two coordinates inside a base pixel.
In the standard NESTED scheme the same pixel's number interleaves the bits of
``x`` (even bits) and ``y`` (odd bits), so astropy-healpix does the geometry
and only the numbering is converted here (checked against ``get-healpix``).
"""
import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy_healpix import HEALPix

__all__ = ['nested_to_xy', 'tile_of', 'tiles_around', 'tile_center']


def nested_to_xy(pixel, nside):
    """astrometry.net's number of a NESTED healpix."""
    base, local = divmod(int(pixel), nside * nside)
    x = y = 0
    for bit in range(max(1, int(nside).bit_length())):
        x |= ((local >> (2 * bit)) & 1) << bit
        y |= ((local >> (2 * bit + 1)) & 1) << bit
    return base * nside * nside + x * nside + y


def _xy_to_nested(pixel, nside):
    base, local = divmod(int(pixel), nside * nside)
    x, y = divmod(local, nside)
    nested = 0
    for bit in range(max(1, int(nside).bit_length())):
        nested |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    return base * nside * nside + nested


def _icrs(position):
    coord = position if isinstance(position, SkyCoord) else SkyCoord(*position, unit='deg')
    return coord.icrs


def tile_of(position, nside):
    """The tile (astrometry.net number) holding ``position`` (SkyCoord or (ra, dec) deg)."""
    coord = _icrs(position)
    nested = HEALPix(nside, order='nested').lonlat_to_healpix(coord.ra, coord.dec)
    return nested_to_xy(int(nested), nside)


def tiles_around(position, radius, nside):
    """Sorted tiles (astrometry.net numbers) that touch the cone ``radius``
    (Quantity or degrees) around ``position``."""
    coord = _icrs(position)
    radius = u.Quantity(radius, u.deg)
    hp = HEALPix(nside, order='nested')
    # cone_search finds pixels whose centre or corner lies inside; a small cone inside
    # one pixel touches only that one, which lonlat_to_healpix gives.
    found = set(int(p) for p in np.atleast_1d(hp.cone_search_lonlat(coord.ra, coord.dec, radius)))
    found.add(int(hp.lonlat_to_healpix(coord.ra, coord.dec)))
    if radius > 0 * u.deg:      # pixels an edge of the cone crosses between their corners
        angles = np.linspace(0, 360, 72, endpoint=False) * u.deg
        ring = coord.directional_offset_by(angles, radius)
        found.update(int(p) for p in hp.lonlat_to_healpix(ring.ra, ring.dec))
    return sorted(nested_to_xy(p, nside) for p in found)


def tile_center(tile, nside):
    """The centre of a tile (astrometry.net number) as a SkyCoord."""
    lon, lat = HEALPix(nside, order='nested').healpix_to_lonlat(_xy_to_nested(tile, nside))
    return SkyCoord(lon, lat, frame='icrs')
