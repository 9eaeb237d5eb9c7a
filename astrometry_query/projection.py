"""Internal: the gnomonic (TAN) projection about a tangent point, both ways.

Plain formulae (Calabretta & Greisen 2002, eqs. 54-55 and their inverse), in
degrees, for the few places that need a TAN without building a WCS: the
refit's intermediate coordinates and the calibration of a header's plain
TAN part.
"""
import math

import numpy as np

__all__ = ['tan_project', 'tan_deproject']


def tan_project(ra, dec, ra0, dec0):
    """Intermediate coordinates (xi, eta, degrees) of (ra, dec) about (ra0, dec0),
    and True where the point is on the near hemisphere (projectable)."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    return np.degrees(xi), np.degrees(eta), cos_c > 0


def tan_deproject(xi, eta, ra0, dec0):
    """(RA, Dec) in degrees, RA in [0, 360), of intermediate coordinates (xi, eta,
    degrees) about (ra0, dec0)."""
    x, y = math.radians(xi), math.radians(eta)
    d0 = math.radians(dec0)
    across = math.cos(d0) - y * math.sin(d0)
    ra = math.radians(ra0) + math.atan2(x, across)
    dec = math.atan2(math.sin(d0) + y * math.cos(d0), math.hypot(x, across))
    return math.degrees(ra) % 360.0, math.degrees(dec)
