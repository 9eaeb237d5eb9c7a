"""``python -m astrometry_query.cli``: the ``astrometry-query`` command."""
import sys

from . import main

if __name__ == '__main__':
    sys.exit(main())
