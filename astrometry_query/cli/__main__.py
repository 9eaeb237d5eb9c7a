"""``python -m astrometry_query.cli``: the ``astrometry-query`` command."""
import sys

from . import main

__all__ = []

if __name__ == '__main__':
    sys.exit(main())
