"""Internal: a cache of solutions: the same pixels (or source list) solved with the same
settings on the same backend give the same WCS, so it is kept and returned
again without a request or a solver run.

The key is a hash of the data and of everything that shapes the solve
(normalised settings, extraction parameters, backend and server or index
files).  An entry holds the WCS header and the ids of the job that made it,
never a key or a session: a cache directory can be shared or inspected.
"""
import hashlib
import json
import threading
from pathlib import Path

from astropy.io import fits

from .files import write_atomic

__all__ = ['SolutionCache', 'solution_key']

_VERSION = 1


def solution_key(data_digest, **parts):
    """The cache key of a solve: the data's hash and the normalised ``parts``."""
    text = json.dumps({'v': _VERSION, 'data': data_digest, **parts}, sort_keys=True,
                      default=str, separators=(',', ':'))
    return hashlib.blake2b(text.encode('utf-8'), digest_size=20).hexdigest()


def source_digest(x, y, width, height, flux=None):
    """A hash of a source list (positions, their order, and the field size)."""
    import numpy as np
    h = hashlib.blake2b(digest_size=20)
    for values in (x, y) + (() if flux is None else (flux,)):
        h.update(np.ascontiguousarray(values, dtype='<f8').tobytes())
    h.update(f'{int(width)}x{int(height)}'.encode())
    return h.hexdigest()


class SolutionCache:
    """Solutions on disk, one small JSON file each.

    Parameters
    ----------
    directory : path-like
        Created on first write.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def __repr__(self):
        return f'<SolutionCache {str(self.directory)!r}>'

    def _path(self, key):
        return self.directory / key[:2] / f'{key}.json'

    def get(self, key):
        """The cached entry (``header``: a Header, plus ids), or None."""
        try:
            entry = json.loads(self._path(key).read_text(encoding='utf-8'))
        except (FileNotFoundError, ValueError, OSError):
            return None
        try:
            entry['header'] = fits.Header.fromstring(entry['header'])
        except Exception:
            return None
        return entry

    def put(self, key, header, **ids):
        """Store a solution (its Header and ids such as job_id, submission_id)."""
        path = self._path(key)
        entry = {'header': header.tostring(), **{k: v for k, v in ids.items() if v is not None}}
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(entry))

    def clear(self):
        """Forget every solution."""
        import shutil
        shutil.rmtree(self.directory, ignore_errors=True)
