"""Index files: list the installed ones, check a field against them, fetch
the official series, build new ones from a star catalogue.

>>> from astrometry_query.index import installed_indexes
>>> table = installed_indexes()

- `installed_indexes`: a Table of the index files a local solve would use.
- `check_field`: can they solve a field?  (Local solves ask before solving.)
- `download_indexes`: fetch series 4100, 4200 or 5200, only the sky tiles
  around a position if asked.
- `build_index`: build index files from an astropy Table of stars.

Its modules (``installed``, ``coverage``, ``download``, ``build``, ``series``,
``tiles``, ``locations``: where index files are) are internal: the public
names are this package's.  They take their directories as arguments:
``conf.index_dir`` is read by the facade and the command line.
"""
from .build import STARS_PER_QUAD, build_index, catalog_extent, choose_scales
from .coverage import Coverage, check_field
from .download import download_indexes, planned_files
from .installed import IndexInfo, installed_indexes, read_index_header
from .series import QUAD_SCALES, SERIES, Series, get_series, quad_range

__all__ = ['installed_indexes', 'read_index_header', 'IndexInfo', 'check_field', 'Coverage',
           'download_indexes', 'planned_files', 'build_index', 'choose_scales',
           'catalog_extent', 'STARS_PER_QUAD', 'QUAD_SCALES', 'SERIES', 'Series', 'get_series',
           'quad_range']
