"""Internal: writing files so that a reader (or a crash) never sees half of one."""
import contextlib
import os
import threading
from pathlib import Path

__all__ = ['write_atomic', 'atomic_path', 'move_into_place']


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path``, which replaces ``path`` when the block succeeds.

    For writers that need a file name (astropy's ``writeto``, Pillow's
    ``save``, a program's output option).  The temporary file is hidden and
    named by process and thread, so concurrent writers do not collide; it
    never outlives the block, whether the block succeeds or fails.

    Parameters
    ----------
    path : str or `~pathlib.Path`
        The file to write.

    Yields
    ------
    `~pathlib.Path`
        Where to write.

    Examples
    --------
    >>> from astropy.io import fits
    >>> with atomic_path('empty.fits') as tmp:               # doctest: +SKIP
    ...     fits.PrimaryHDU().writeto(tmp)
    """
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.part')
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path, content, *, mode=None):
    """Write ``content`` (bytes or str, UTF-8) to ``path`` atomically.

    The content goes to a hidden temporary file beside ``path`` (see
    `atomic_path`), which then replaces ``path`` in one step.

    Parameters
    ----------
    mode : int, optional
        Permissions of the new file (less the umask), from its creation on:
        0o600 for a secret no one else may ever read.  Default: as any new file.

    Returns
    -------
    `~pathlib.Path`
    """
    with atomic_path(path) as tmp:
        if mode is not None:        # created with its mode before any byte is in it
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        if isinstance(content, str):
            tmp.write_text(content, encoding='utf-8')
        else:
            tmp.write_bytes(content)
    return Path(path)


def move_into_place(source, path):
    """Move a finished file to ``path`` (same file system: one rename, so a
    reader sees the old file or the whole new one).  Returns ``path``."""
    os.replace(source, path)
    return Path(path)
