"""Where index files are: the directories a setting names, astrometry.net's
configuration (its ``add_path`` entries) and the user's index directory.

Every function takes the directories as arguments: reading ``conf.index_dir``
is the business of the callers (the `~astrometry_query.AstrometryNetClass`
facade and the command line), which pass its value down.
"""
import os
import re
import shutil
from pathlib import Path

__all__ = ['DEFAULT_INDEX_DIR', 'SYSTEM_CONFIGS', 'user_index_dir', 'index_dirs', 'find_config',
           'configured_index_dirs', 'default_index_dirs', 'resolve_index_dirs',
           'default_destination', 'index_files', 'INDEX_GLOB']

#: Where Debian's index files are, and where astrometry.net looks without a configuration.
DEFAULT_INDEX_DIR = Path('/usr/share/astrometry')
#: The astrometry.net configuration files looked for first (Debian's).
SYSTEM_CONFIGS = (Path('/etc/astrometry.cfg'),)
#: How index files are named (a download in progress, ``*.fits.part``, never matches).
INDEX_GLOB = 'index-*.fits'


def user_index_dir():
    """Where `~astrometry_query.index.download_indexes` and
    `~astrometry_query.index.build_index` put index files by default
    (astropy's cache directory + ``astrometry_query/indexes``); searched by
    default beside the astrometry.net configuration's directories."""
    from astropy.config import get_cache_dir
    return Path(get_cache_dir()) / 'astrometry_query' / 'indexes'


def index_dirs(value):
    """Index directories from a setting: None or '' (the default), a path, a
    string of several paths joined by ``os.pathsep`` (as ``conf.index_dir``
    may hold), or a list of paths.  Returns a tuple of resolved Paths, or None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    out = []
    for item in items:
        parts = item.split(os.pathsep) if isinstance(item, str) else [item]
        out += [Path(p).expanduser().resolve() for p in parts if str(p).strip()]
    return tuple(dict.fromkeys(out)) or None


def find_config(engine=None):
    """The astrometry.net configuration file in use, or None.

    Debian's ``/etc/astrometry.cfg``, else the one under the install prefix
    of ``engine`` (the path of ``astrometry-engine``; default: found on PATH).
    """
    engine = engine or shutil.which('astrometry-engine')
    prefix = (Path(engine).resolve().parent.parent / 'etc' / 'astrometry.cfg',) if engine else ()
    return next((c for c in SYSTEM_CONFIGS + prefix if c.is_file()), None)


def _directives(config, name):
    """Values of directive ``name`` in an astrometry.net config file."""
    try:
        text = Path(config).read_text(errors='replace')
    except OSError:
        return []
    return re.findall(rf'^[ \t]*{name}[ \t]+(\S+)', text, flags=re.M)


def configured_index_dirs(config):
    """The ``add_path`` directories of an astrometry.net configuration file
    (relative ones taken from its directory); `DEFAULT_INDEX_DIR` when there
    is no file (None) or it names none."""
    found = _directives(config, 'add_path') if config else []
    base = Path(config).parent if config else Path.cwd()
    return tuple(dict.fromkeys(base / d for d in found)) or (DEFAULT_INDEX_DIR,)


def default_index_dirs(configured=None):
    """The directories searched when none are given: ``configured`` (default: those of
    `find_config`'s file) and `user_index_dir` when it holds index files."""
    configured = configured_index_dirs(find_config()) if configured is None else tuple(configured)
    user = user_index_dir()
    return configured + ((user,) if user.is_dir() and any(user.glob(INDEX_GLOB)) else ())


def resolve_index_dirs(index_dir=None):
    """The index directories of a setting (see `index_dirs`), else `default_index_dirs`."""
    return index_dirs(index_dir) or default_index_dirs()


def default_destination(index_dir=None):
    """Where new index files go: the first directory of ``index_dir`` (a setting, as
    `index_dirs` reads it), else `user_index_dir` (which local solves search by default)."""
    dirs = index_dirs(index_dir)
    return dirs[0] if dirs else user_index_dir()


def index_files(dirs):
    """The index files (``index-*.fits``) of some directories, sorted; missing directories
    are skipped."""
    return tuple(sorted(f for d in dirs if Path(d).is_dir() for f in Path(d).glob(INDEX_GLOB)
                        if f.is_file()))
