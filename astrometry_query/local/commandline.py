"""Deprecated: the old name of `astrometry_query.solve_field` (kept so that code using it runs).

Import from `astrometry_query.solve_field` instead; this module warns once, on import.
"""
import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning

from .. import solve_field as _solve_field
from ..solve_field import *  # noqa: F401,F403

__all__ = list(_solve_field.__all__)

warnings.warn('astrometry_query.local.commandline is deprecated: import from '
              'astrometry_query.solve_field instead.', AstropyDeprecationWarning, stacklevel=2)
