"""Deprecated: the old name of `astrometry_query.datasets` (kept so that code using it runs).

Import from `astrometry_query.datasets` instead; this module warns once, on import.
"""
import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning

from .datasets import *  # noqa: F401,F403
from .datasets import __all__  # noqa: F401

warnings.warn('astrometry_query.simulate is deprecated: import from astrometry_query.datasets '
              'instead.', AstropyDeprecationWarning, stacklevel=2)
