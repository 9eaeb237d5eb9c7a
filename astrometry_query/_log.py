"""The package's log lines always say where they come from, and its warning
filters never leak between threads.

Modules log through ``logging.getLogger(__name__)`` (under ``astrometry_query``)
or astroquery's ``log``; both print ``LEVEL: message [origin]``.  The handler
here serves the former only while the application has configured no logging
of its own (no handler on the root logger): then Python's last-resort handler
would print the bare message.  An application's own configuration (or
``astrometry-query serve``'s) takes over as soon as it exists.
"""
import contextlib
import logging
import sys
import threading
import warnings

__all__ = ['install_default_handler', 'quiet_warnings', 'LOGGER_NAME']

LOGGER_NAME = 'astrometry_query'
FORMAT = '%(levelname)s: %(message)s [%(name)s]'


class _DefaultHandler(logging.StreamHandler):
    """stderr, in astropy's format, while the root logger has no handler."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))

    @property
    def stream(self):       # the current sys.stderr (pytest and notebooks replace it)
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass

    def filter(self, record):
        return not logging.getLogger().handlers and super().filter(record)


def install_default_handler():
    """Give the package logger its default handler (once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _DefaultHandler) for h in logger.handlers):
        logger.addHandler(_DefaultHandler())


# warnings.catch_warnings saves and restores the process's filters: two of them
# overlapping in two threads (batches read headers and refit in threads) can
# leave a filter of one in place for good.  Ours take turns.
_QUIET = threading.RLock()


@contextlib.contextmanager
def quiet_warnings(category=Warning):
    """Ignore warnings of ``category`` within the block, one thread at a time."""
    with _QUIET, warnings.catch_warnings():
        warnings.simplefilter('ignore', category)
        yield
