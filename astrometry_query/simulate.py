"""Deprecated: the old name of `astrometry_query.datasets` (kept so that code using it runs).

Import from `astrometry_query.datasets` instead; this module warns once, on import.
"""
import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning

from . import datasets as _datasets
from .datasets import *  # noqa: F401,F403

__all__ = list(_datasets.__all__)

warnings.warn('astrometry_query.simulate is deprecated: import from astrometry_query.datasets '
              'instead.', AstropyDeprecationWarning, stacklevel=2)
