"""`astrometry-query serve` as deployed (its own process, worker processes):
SIGTERM during solves, kill -9 and restart.  Nothing outlives the server,
nothing submitted is lost."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import requests

from astrometry_query import AstrometryNetClass
from real_server import requires_solver

pytestmark = requires_solver
KEY = 'lifecyclekeyabcd'


def _serve(data_dir, port):
    proc = subprocess.Popen([sys.executable, '-m', 'astrometry_query.cli', 'serve', '--port',
                             str(port), '--workers', '2', '--data-dir', str(data_dir),
                             '--api-key', KEY, '--log-level', 'warning'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f'http://127.0.0.1:{port}/', timeout=1)
            return proc
        except requests.ConnectionError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError('the server did not start')


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _submit_hard_lists(port, n=2):
    """Blind source lists of random points: the engine searches until stopped."""
    url = f'http://127.0.0.1:{port}/api/'
    session = requests.post(url + 'login', data={'request-json': json.dumps(
        {'apikey': KEY})}).json()['session']
    rng = np.random.default_rng(3)
    for _ in range(n):
        x, y = rng.uniform(1, 2000, 300).tolist(), rng.uniform(1, 2000, 300).tolist()
        answer = requests.post(url + 'upload', data={'request-json': json.dumps(
            {'session': session, 'x': x, 'y': y, 'image_width': 2000,
             'image_height': 2000})}).json()
        assert answer['status'] == 'success'


def _engines(pid):
    try:
        return [c for c in psutil.Process(pid).children(recursive=True)
                if c.name().startswith('astrometry-eng')]
    except psutil.NoSuchProcess:
        return []


def _jobs(data_dir):
    import sqlite3
    db = sqlite3.connect(str(data_dir / 'nova.sqlite3'))
    try:
        return db.execute('SELECT id, start_time, end_time FROM jobs ORDER BY id').fetchall()
    finally:
        db.close()


def _wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


@pytest.mark.slow
def test_sigterm_stops_solves_and_requeues_them(tmp_path):
    port = _free_port()
    server = _serve(tmp_path, port)
    try:
        _submit_hard_lists(port)
        engines = _wait_for(lambda: len(_engines(server.pid)) == 2 and _engines(server.pid), 30)
        assert len(engines) == 2
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(15)
        assert time.monotonic() - started < 10
        assert not [e for e in engines if e.is_running() and e.status() != psutil.STATUS_ZOMBIE]
        # Stopped, not failed: both jobs are queued again (no end, no start).
        assert [(start, end) for _, start, end in _jobs(tmp_path)] == [(None, None)] * 2
    finally:
        if server.poll() is None:
            server.kill()
    # The next start takes them up again.
    server = _serve(tmp_path, port)
    try:
        assert _wait_for(lambda: all(start for _, start, _ in _jobs(tmp_path)), 30)
        server.send_signal(signal.SIGTERM)
        server.wait(15)
    finally:
        if server.poll() is None:
            server.kill()


@pytest.mark.slow
def test_kill_9_and_restart_loses_nothing(tmp_path, fields_for_lifecycle):
    port = _free_port()
    server = _serve(tmp_path, port)
    try:
        with AstrometryNetClass(api_key=KEY, server=f'http://127.0.0.1:{port}') as client:
            subs = [client.submit_image(path, verbose=False) for path in fields_for_lifecycle]
            _submit_hard_lists(port, 1)       # keeps a worker busy when the server dies
            _wait_for(lambda: _engines(server.pid), 30)
            # Everything the server started: its worker processes and their engines.
            tree = psutil.Process(server.pid).children(recursive=True)
            server.kill()                      # kill -9
            server.wait(10)
            # The worker processes die with the server, and their engines too.
            alive = lambda: [p for p in tree if p.is_running()  # noqa: E731
                             and p.status() != psutil.STATUS_ZOMBIE]
            _wait_for(lambda: not alive(), 15)
            assert not alive(), [(p.pid, p.name()) for p in alive()]
            server = _serve(tmp_path, port)
            for sub in subs:
                job = client.wait(sub.id, solve_timeout=60, verbose=False)
                assert job.solved
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(15)


@pytest.fixture(scope='module')
def fields_for_lifecycle(tmp_path_factory):
    """Two fields, rendered once (the tests only submit them)."""
    tmp_path = tmp_path_factory.mktemp('lifecycle')
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astrometry_query.datasets import render_field
    paths = []
    for i, (center, rot) in enumerate((((150.3, 25.1), 37.0), ((280.5, -40.2), -65.0))):
        field = render_field(SkyCoord(*center, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                             shape=(400, 500), rotation=rot * u.deg, fwhm=2.8, seed=i)
        paths.append(field.writeto(tmp_path / f'life{i}.fits', truth='none'))
    return paths


@pytest.mark.slow
def test_small_load_with_a_kill_9_loses_nothing():
    """CI's version of benchmarks/load.py: 40 submissions from 8 clients, the
    server killed -9 half way and restarted; every submission the server
    accepted (or holds) is solved."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        'load', Path(__file__).resolve().parent.parent / 'benchmarks' / 'load.py')
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    figures = load.run(submissions=40, clients=8, workers=2, kill=True, time_limit=240,
                       verbose=False)
    assert figures['accepted'] >= 20 and figures['missing'] == 0 and figures['failed'] == 0
    assert figures['solved'] == figures['accepted']
    assert figures['server_jobs_unfinished'] == 0
    assert figures['server_jobs_solved'] == figures['server_submissions']
    assert figures['poll_p95_ms'] < 50
