"""astrometry_query: plate solving with astrometry.net, the astroquery way.

>>> from astrometry_query import AstrometryNet
>>> header = AstrometryNet.solve_from_image('m42.fits')      # doctest: +SKIP

Solves through the nova.astrometry.net web API (or any server that speaks it,
including ``astrometry-query serve``) or offline with a local astrometry.net.
"""
from astropy import config as _config

__version__ = '0.1.0'

#: The public modules: their ``__all__`` is the package's API, and the API
#: reference (docs/api.rst) documents exactly these.  Every other module is
#: internal and says so (its name or its docstring), so that it can move.
PUBLIC_MODULES = (
    'astrometry_query',                 # the facade: AstrometryNet, AstrometryNetClass, conf
    'astrometry_query.exceptions',
    'astrometry_query.results',
    'astrometry_query.settings',
    'astrometry_query.backends',
    'astrometry_query.jobs',
    'astrometry_query.local.pipeline',  # one solve as one function, for any Executor
    'astrometry_query.solve_field',     # the solve-field command equivalent to a solve
    'astrometry_query.index',
    'astrometry_query.images',
    'astrometry_query.formats',         # TIFF, XISF, camera RAW, colour pictures -> luminance
    'astrometry_query.image_meta',      # their metadata as FITS cards (the hints)
    'astrometry_query.sources',
    'astrometry_query.hints',
    'astrometry_query.frames',          # a solution written into the frame, or beside it
    'astrometry_query.tracking',        # a sequence's frames followed without a search
    'astrometry_query.watch',           # a folder's frames solved as they land
    'astrometry_query.datasets',
    'astrometry_query.plotting',
    'astrometry_query.server',
    'astrometry_query.cli',
)


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `astrometry_query`.

    Every item is read when a call needs it, so changing ``conf`` takes effect
    at once, also for the module-level ``AstrometryNet`` instance.
    """
    api_key = _config.ConfigItem(
        '', 'The astrometry.net API key. Prefer the keyring (login(store_api_key=True)) '
        'or the ASTROMETRY_NET_API_KEY environment variable to writing it here.')
    server = _config.ConfigItem('https://nova.astrometry.net',
                                'The nova server: its root URL (or its /api/ URL).')
    timeout = _config.ConfigItem(120.0, 'Timeout of one HTTP request, in seconds.')
    solve_timeout = _config.ConfigItem(120.0, 'Default time to wait for a solve, in seconds.')
    poll_interval = _config.ConfigItem(
        0.5, 'Interval between status polls of a young job, in seconds (it grows after '
        '5 s; servers that offer long polls are asked to answer on change instead).')
    backend = _config.ConfigItem(
        'auto', "Solver backend: 'nova', 'local', or 'auto' (nova when an API key or a "
        "server is set, else the local solver when installed).")
    index_dir = _config.ConfigItem(
        '', 'Directory of astrometry.net index files for the local backend '
        '(default: the add_path entries of /etc/astrometry.cfg).')
    search_workers = _config.ConfigItem(
        0, 'Local backend: engine processes that join a blind search (no scale hint) '
        'one engine has not solved within 0.2 s, each on its share of the index files, '
        'the first to solve stopping the others; 0 = one per index file (at most 16), '
        '1 = a single engine.')
    local_data_dir = _config.ConfigItem(
        '', 'Where the local backend keeps its job directories '
        '(default: astropy cache dir/astrometry_query/local).')


conf = Conf()

from ._log import install_default_handler  # noqa: E402

install_default_handler()

from .exceptions import *  # noqa: E402,F401,F403
from .core import AstrometryNet, AstrometryNetClass  # noqa: E402
# The records' notebook views register themselves (results.HTML_VIEWS) on import.
from . import reprs  # noqa: E402,F401

__all__ = ['AstrometryNet', 'AstrometryNetClass', 'conf', 'Conf', 'PUBLIC_MODULES']
