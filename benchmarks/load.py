"""Load on `astrometry-query serve`: many clients at once, a kill -9 in the
middle, a restart; nothing accepted may be lost.

    python benchmarks/load.py                       # 1,000 submissions, 50 clients
    python benchmarks/load.py --submissions 200 --clients 20

Each client logs in and uploads source lists (nova's x/y JSON, with a scale
hint) as fast as the server answers.  A separate thread measures status-poll
latency (``/api/submissions/N``, ``/api/jobs/N``) during the load.  When half
the submissions are in, the server is killed with SIGKILL and started again
on the same data directory and port; clients retry until it answers.  At the
end every accepted submission must have a successful job.  All traffic stays
on 127.0.0.1 and every loop is bounded in count and time.
"""
import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

# Also loaded from its file by the tests (tests/test_server_lifecycle.py).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import serve_process  # noqa: E402

API_KEY = 'loadtestkeyabcde'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def serve(data_dir, port, workers=2):
    return serve_process(data_dir, port, API_KEY, workers=workers,
                         extra=('--log-level', 'warning'))


def source_lists(folder, n=4):
    """Source lists of a few synthetic fields: (x, y, width, height, scale)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from astrometry_query.datasets import render_field
    from astrometry_query.sources import extract_sources
    out = []
    specs = [((150.3, 25.1), 12.0), ((280.5, -40.2), 10.0), ((30.2, 60.3), 14.0),
             ((83.8, -5.4), 11.0)]
    for i, (center, scale) in enumerate(specs[:n]):
        field = render_field(SkyCoord(*center, unit='deg'), pixel_scale=scale * u.arcsec / u.pix,
                             shape=(500, 600), rotation=30 * i * u.deg, fwhm=2.8, seed=i)
        table = extract_sources(field.data)
        out.append((table['x'].value.tolist(), table['y'].value.tolist(), 600, 500, scale))
    return out


class Load:
    """The clients, the latency probe and the tally."""

    def __init__(self, url, lists, submissions, clients, deadline):
        self.url, self.lists = url, lists
        self.total, self.clients, self.deadline = submissions, clients, deadline
        self.lock = threading.Lock()
        self.next = 0
        self.accepted, self.unconfirmed, self.refused = [], 0, 0
        self.latencies, self.down = [], threading.Event()

    def _take(self):
        with self.lock:
            if self.next >= self.total:
                return None
            self.next += 1
            return self.next - 1

    def _post(self, session, path, payload):
        return session.post(self.url + path, data={'request-json': json.dumps(payload)},
                            timeout=30).json()

    def client(self):
        http = requests.Session()
        key = None
        while time.monotonic() < self.deadline:
            n = self._take()
            if n is None:
                return
            x, y, w, h, scale = self.lists[n % len(self.lists)]
            while time.monotonic() < self.deadline:
                try:
                    if key is None:
                        key = self._post(http, 'login', {'apikey': API_KEY})['session']
                    answer = self._post(http, 'upload', {
                        'session': key, 'x': x, 'y': y, 'image_width': w, 'image_height': h,
                        'scale_units': 'arcsecperpix', 'scale_lower': 0.9 * scale,
                        'scale_upper': 1.1 * scale})
                except (requests.ConnectionError, requests.Timeout, ValueError) as exc:
                    if isinstance(exc, requests.ReadTimeout) or 'RemoteDisconnected' in repr(exc):
                        with self.lock:       # sent, answer lost: not sent again
                            self.unconfirmed += 1
                        break
                    time.sleep(0.2)          # the server is down: try again
                    continue
                if answer.get('status') == 'success':
                    with self.lock:
                        self.accepted.append(answer['subid'])
                    break
                if 'session' in answer.get('errormessage', ''):
                    key = None
                    continue
                with self.lock:
                    self.refused += 1
                break

    def probe(self, stop):
        """Status-poll latency while the load runs (not while the server is down)."""
        http = requests.Session()
        while not stop.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                known = list(self.accepted[-20:])
            if not known or self.down.is_set():
                time.sleep(0.05)
                continue
            sub = known[len(known) // 2]
            started = time.perf_counter()
            try:
                answer = http.get(f'{self.url}submissions/{sub}', timeout=5).json()
                jobs = [j for j in answer.get('jobs', []) if j]
                if jobs:
                    http.get(f'{self.url}jobs/{jobs[0]}', timeout=5)
            except (requests.RequestException, ValueError):
                continue
            self.latencies.append((time.perf_counter() - started) * 1000 / (1 + bool(jobs)))
            time.sleep(0.02)


def finished(url, subs, deadline):
    """Wait until every submission has a finished job; (solved, failed, missing)."""
    http = requests.Session()
    pending, solved, failed = set(subs), 0, 0
    while pending and time.monotonic() < deadline:
        for sub in list(pending):
            try:
                answer = http.get(f'{url}submissions/{sub}', timeout=10).json()
                jobs = [j for j in answer.get('jobs', []) if j]
                if not jobs:
                    continue
                status = http.get(f'{url}jobs/{jobs[0]}', timeout=10).json()['status']
            except (requests.RequestException, ValueError):
                continue
            if status in ('success', 'failure'):
                pending.discard(sub)
                solved += status == 'success'
                failed += status == 'failure'
        if pending:
            time.sleep(1.0)
    return solved, failed, len(pending)


def run(submissions=1000, clients=50, workers=2, kill=True, time_limit=1800, verbose=True):
    """Run the load; returns a dict of figures (see the module docstring)."""
    say = print if verbose else (lambda *a, **k: None)
    with tempfile.TemporaryDirectory(prefix='aq-load-') as tmp:
        lists = source_lists(Path(tmp))
        port = free_port()
        url = f'http://127.0.0.1:{port}/api/'
        server = serve(Path(tmp) / 'data', port, workers)
        load = Load(url, lists, submissions, clients, time.monotonic() + time_limit)
        stop = threading.Event()
        threads = [threading.Thread(target=load.client, daemon=True) for _ in range(clients)]
        probe = threading.Thread(target=load.probe, args=(stop,), daemon=True)
        started = time.monotonic()
        probe.start()
        for t in threads:
            t.start()
        killed_at = None
        try:
            if kill:
                while len(load.accepted) < submissions // 2 and any(t.is_alive() for t in threads):
                    time.sleep(0.05)
                load.down.set()
                server.send_signal(signal.SIGKILL)
                server.wait(30)
                killed_at = len(load.accepted)
                say(f'kill -9 after {killed_at} accepted submissions; restarting')
                server = serve(Path(tmp) / 'data', port, workers)
                load.down.clear()
            for t in threads:
                t.join(max(1.0, load.deadline - time.monotonic()))
            submitted = time.monotonic() - started
            solved, failed, missing = finished(url, load.accepted, load.deadline)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            probe.join(5)
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        # What the server itself holds: uploads whose answer was lost may be there too.
        import sqlite3
        db = sqlite3.connect(str(Path(tmp) / 'data' / 'nova.sqlite3'))
        stored = db.execute('SELECT count(*) FROM submissions').fetchone()[0]
        stored_done = db.execute("SELECT count(*) FROM jobs WHERE status = 'S'").fetchone()[0]
        stored_open = db.execute('SELECT count(*) FROM jobs WHERE end_time IS NULL').fetchone()[0]
        db.close()
    lat = sorted(load.latencies)
    figures = {'submissions': submissions, 'clients': clients, 'accepted': len(load.accepted),
               'unconfirmed': load.unconfirmed, 'refused': load.refused, 'solved': solved,
               'failed': failed, 'missing': missing, 'killed_after': killed_at,
               'server_submissions': stored, 'server_jobs_solved': stored_done,
               'server_jobs_unfinished': stored_open,
               'seconds_to_submit': round(submitted, 1), 'seconds_total': round(elapsed, 1),
               'polls': len(lat),
               'poll_p50_ms': round(statistics.median(lat), 1) if lat else None,
               'poll_p95_ms': round(lat[int(0.95 * (len(lat) - 1))], 1) if lat else None,
               'poll_max_ms': round(lat[-1], 1) if lat else None}
    say(json.dumps(figures, indent=1))
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--submissions', type=int, default=1000)
    parser.add_argument('--clients', type=int, default=50)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--no-kill', action='store_true')
    args = parser.parse_args(argv)
    figures = run(args.submissions, args.clients, args.workers, kill=not args.no_kill)
    ok = (figures['missing'] == 0 and figures['failed'] == 0
          and figures['solved'] == figures['accepted']
          and figures['server_jobs_unfinished'] == 0
          and figures['server_jobs_solved'] == figures['server_submissions']
          and (figures['poll_p95_ms'] or 0) < 50)
    print('PASS' if ok else 'FAIL', '(every accepted submission, and every one the server '
          'holds, solved; none lost; status polls p95 under 50 ms)')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
