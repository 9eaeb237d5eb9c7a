"""Writing files so that a reader (or a crash) never sees half of one."""
import os
import threading
from pathlib import Path

__all__ = ['write_atomic']


def write_atomic(path, content, *, mode=None):
    """Write ``content`` (bytes or str, UTF-8) to ``path`` atomically.

    The content goes to a hidden temporary file beside ``path`` (named by
    process and thread, so concurrent writers do not collide), which then
    replaces ``path`` in one step; the temporary file never outlives a failure.

    Parameters
    ----------
    mode : int, optional
        Permissions of the new file (less the umask), from its creation on:
        0o600 for a secret no one else may ever read.  Default: as any new file.

    Returns
    -------
    `~pathlib.Path`
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.part')
    try:
        if mode is not None:        # created with its mode before any byte is in it
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        if isinstance(content, str):
            tmp.write_text(content, encoding='utf-8')
        else:
            tmp.write_bytes(content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
