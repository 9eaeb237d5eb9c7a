"""Writing files so that a reader (or a crash) never sees half of one."""
import os
import threading
from pathlib import Path

__all__ = ['write_atomic']


def write_atomic(path, content, *, mode=0o666):
    """Write ``content`` (bytes or str, UTF-8) to ``path`` atomically.

    The content goes to a hidden temporary file beside ``path`` (named by
    process and thread, so concurrent writers do not collide), which then
    replaces ``path`` in one step; the temporary file never outlives a failure.

    Parameters
    ----------
    mode : int
        Permissions of the new file, less the umask, from its creation on
        (0o600: a secret no one else may ever read).

    Returns
    -------
    `~pathlib.Path`
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.part')
    text = isinstance(content, str)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, 'O_BINARY', 0)
        fd = os.open(tmp, flags, mode)
        with open(fd, 'w' if text else 'wb', encoding='utf-8' if text else None) as f:
            f.write(content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
