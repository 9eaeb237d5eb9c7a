"""Fixtures shared by the test modules: a test names them as arguments.

Real servers on 127.0.0.1 (`real_server.NovaServer`):

``nova_server`` (module scope)
    one server with two workers and two API keys;
``open_nova_server`` (module scope)
    one without keys (open: any key, or none, is accepted);
``make_nova_server``
    a factory of servers with other options (workers, solve_timeout,
    open=True, ...), stopped after the test.

Clients and clocks:

``local``
    a client of the local backend, closed after the test;
``fake_clock``
    a `FakeClock` the nova client's retry pauses go to: they are recorded
    (``fake_clock.sleeps``), not slept.  Tests of the pauses themselves run
    on the real clock (test_faults.py, marked slow).

The repository's conftest.py (one level up) isolates every test's
configuration, cache and job store.
"""
import functools

import pytest

from astrometry_query import AstrometryNetClass, core
from astrometry_query.nova.client import NovaClient
from real_server import NovaServer


class FakeClock:
    """Time that passes only when slept: ``sleep`` advances ``clock()`` and
    records the pause."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


@pytest.fixture
def fake_clock(monkeypatch):
    """The nova client's retry pauses on a `FakeClock` (for clients made
    after this fixture)."""
    fc = FakeClock()
    monkeypatch.setattr(core, 'NovaClient', functools.partial(NovaClient, sleep=fc.sleep))
    return fc


@pytest.fixture
def local():
    """A client of the local backend, closed after the test."""
    with AstrometryNetClass(backend='local') as client:
        yield client


@pytest.fixture(scope='module')
def nova_server(tmp_path_factory):
    """A running server shared by the tests of a module."""
    server = NovaServer(tmp_path_factory.mktemp('nova-server')).start()
    yield server
    server.stop()


@pytest.fixture(scope='module')
def open_nova_server(tmp_path_factory):
    """A running open server (no API keys, as ``astrometry-query serve`` without
    ``--api-key``) shared by the tests of a module."""
    server = NovaServer(tmp_path_factory.mktemp('open-nova-server'), open=True).start()
    yield server
    server.stop()


@pytest.fixture
def make_nova_server(tmp_path_factory):
    """Factory: ``make_nova_server(workers=0, solve_timeout=30)`` -> a started
    `NovaServer` with its own data directory, stopped after the test."""
    servers = []

    def make(**options):
        server = NovaServer(tmp_path_factory.mktemp('nova-server'), **options).start()
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.stop()
