"""Running the examples of the pages: ``python -m pytest --doctest-rst docs``.

Each page is one doctest.  On top of the repository's own ``conftest.py``
(default ``conf`` values, no API key, private cache and job directories),
each page runs in its own empty working directory, with an in-memory keyring
(nothing touches the real one), and without the INFO status lines of waits
(they depend on timing).  A process a page starts (``astrometry-query
serve`` in cli.rst) and has not stopped is killed after it, even when an
example failed, and ``sys.stdin`` is restored.
"""
import logging
import os
import subprocess
import sys

import keyring
import pytest
from keyring.backend import KeyringBackend

# The Sphinx build's own files hold no examples.
collect_ignore = ['conf.py', '_ext', '_build', 'api']
#: Variables a page may set; each is restored after it.
ENV_VARS = ('ASTROMETRY_NET_API_KEY',)


def pytest_configure(config):
    """``--doctest-rst`` alone runs the pages with doctestplus (FLOAT_CMP...):
    this hook runs before the plugin's own, which needs ``--doctest-plus``."""
    if getattr(config.option, 'doctest_rst', False):
        config.option.doctest_plus = True


class MemoryKeyring(KeyringBackend):
    """A keyring that keeps passwords in a dict, for one page."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.passwords = {}

    def get_password(self, service, username):
        return self.passwords.get((service, username))

    def set_password(self, service, username, password):
        self.passwords[(service, username)] = password

    def delete_password(self, service, username):
        self.passwords.pop((service, username), None)


def _fresh_module_instance():
    """Each page starts as a new session would: the module-level
    ``AstrometryNet`` closes what earlier pages left open."""
    from astrometry_query import AstrometryNet

    AstrometryNet.close()


def _track_processes(monkeypatch):
    """The processes started with ``subprocess.Popen`` while a page runs."""
    started = []

    class TrackedPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(subprocess, 'Popen', TrackedPopen)
    return started


def _stop_processes(started):
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(autouse=True)
def _page_environment(tmp_path, monkeypatch):
    from astroquery import log

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'stdin', sys.stdin)
    started = _track_processes(monkeypatch)
    _fresh_module_instance()
    previous_keyring = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    level = log.level
    log.setLevel(logging.WARNING)
    saved_env = {k: os.environ.get(k) for k in ENV_VARS}
    try:
        yield
    finally:
        _stop_processes(started)
        log.setLevel(level)
        keyring.set_keyring(previous_keyring)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _fresh_module_instance()
