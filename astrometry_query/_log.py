"""The package's log lines always say where they come from.

Modules log through ``logging.getLogger(__name__)`` (under ``astrometry_query``)
or astroquery's ``log``; both print ``LEVEL: message [origin]``.  The handler
here serves the former only while the application has configured no logging
of its own (no handler on the root logger): then Python's last-resort handler
would print the bare message.  An application's own configuration (or
``astrometry-query serve``'s) takes over as soon as it exists.
"""
import logging
import sys

__all__ = ['install_default_handler', 'LOGGER_NAME']

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
