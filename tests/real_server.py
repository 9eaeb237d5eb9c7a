"""The real nova-compatible server on 127.0.0.1, for tests: `NovaServer`, and
`requires_solver` for tests that need astrometry.net and its index files.

The fixtures built on them (``nova_server``, ``open_nova_server``,
``make_nova_server``) are in conftest.py: a test names them as arguments.
"""
import json
import secrets
import shutil
import string
from pathlib import Path

import pytest
import requests

from astrometry_query.server import ServerThread

__all__ = ['NovaServer', 'requires_solver', 'have_solver', 'new_api_key', 'INDEX_DIR']

INDEX_DIR = Path('/usr/share/astrometry')


def have_solver():
    """True when solve-field and Tycho-2 index files are installed."""
    return bool(shutil.which('solve-field') and shutil.which('query-starkd')
                and list(INDEX_DIR.glob('index-tycho2-*.fits')))


requires_solver = pytest.mark.skipif(not have_solver(),
                                     reason='needs astrometry.net with Tycho-2 index files')


def new_api_key():
    """A key shaped like nova's: 16 random lowercase letters."""
    return ''.join(secrets.choice(string.ascii_lowercase) for _ in range(16))


class NovaServer:
    """A server on 127.0.0.1 (ephemeral port) over a data directory that
    outlives `stop`, so `restart` finds its submissions and jobs again.

    Attributes
    ----------
    url : str
        Root URL, e.g. ``http://127.0.0.1:41234``.
    api_url : str
        ``url + '/api/'``.
    api_key, other_api_key : str
        Two accepted keys (two users); on an open server, two of the any keys it accepts.
    open : bool
        No API keys configured: it accepts any key, and our client needs none.
    data_dir : `~pathlib.Path`
    """

    def __init__(self, data_dir, *, open=False, **options):
        self.data_dir = Path(data_dir)
        self.open = bool(open)
        self.api_key, self.other_api_key = new_api_key(), new_api_key()
        options.setdefault('workers', 2)
        options.setdefault('log_level', 'warning')
        # The tests fetch URLs from a file server on 127.0.0.1.
        self.options = dict({'allow_private_urls': True}, **options)
        self.port = 0
        self.thread = None

    @property
    def url(self):
        return f'http://127.0.0.1:{self.port}'

    @property
    def api_url(self):
        return self.url + '/api/'

    def start(self, **options):
        """Start (again), on the same port once one was bound; ``options``
        override the constructor's for this and later starts."""
        self.options.update(options)
        keys = [] if self.open else [self.api_key, self.other_api_key]
        self.thread = ServerThread(port=self.port, data_dir=self.data_dir, api_keys=keys,
                                   **self.options)
        self.thread.start()
        self.port = self.thread.port
        return self

    def stop(self):
        """Stop cleanly (running solves finish first); the data stays."""
        if self.thread is not None:
            self.thread.stop(cleanup=False)
            self.thread = None

    def restart(self, **options):
        """Stop, then start on the same data directory and port."""
        self.stop()
        return self.start(**options)

    # small conveniences for tests
    def login(self, api_key=None):
        """A session key for ``api_key`` (default: `api_key`)."""
        reply = requests.post(self.api_url + 'login', timeout=10, data={
            'request-json': json.dumps({'apikey': api_key or self.api_key})})
        return reply.json()['session']

    def call(self, path, args=None, **kw):
        """POST ``request-json`` = ``args`` to ``api_url + path``; the response."""
        data = None if args is None else {'request-json': json.dumps(args)}
        return requests.post(self.api_url + path, data=data, timeout=30, **kw)
