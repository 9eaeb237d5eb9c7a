"""The nova client under faults, against the real server on 127.0.0.1.

A `FaultProxy` (tests/fault_proxy.py) sits between the client and the real
server and spoils chosen requests: 5xx and 429 answers, connection resets,
answers slower than the client's HTTP timeout, HTML, malformed or cut
bodies, expired sessions, vanished jobs, a server restart.  Every case ends
either in a solve after bounded retries with backoff (checked on what the
proxy saw: tries and the gaps between them) or in a typed error carrying the
submission id (and job id when known), within a bound; never in a hang, and
never with an upload sent twice.  No log record and no error message may
hold the API key or a session key.
"""
import contextlib
import functools
import logging
import signal
import sqlite3
import threading
import time
import traceback

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import (AstrometryNetError, ResultNotAvailableError,
                                         ServerError, SolveFailedError, SolveTimeoutError,
                                         UploadUnconfirmedError)
from astrometry_query.nova import client as nova_client, polling
from astrometry_query.nova.client import DOWNLOAD_RETRIES
from astrometry_query.server.store import now_string
from astrometry_query.datasets import render_field
from fault_proxy import FaultProxy
from real_server import NovaServer, requires_solver

pytestmark = requires_solver

LOGGERS = ('astroquery', 'astrometry_query', 'urllib3')
#: HTTP timeout of the clients (s): long polls then ask for 1 s at most.
HTTP_TIMEOUT = 3.0
SOLVE_TIMEOUT = 30.0
JOB_PATH = r'^/api/jobs/\d+/?$'
SUB_PATH = r'^/api/submissions/\d+/?$'
UPLOAD_PATH = r'^/api/upload/?$'


class Hang(BaseException):
    """A test ran past its bound (BaseException: no client code catches it)."""


@contextlib.contextmanager
def bounded(seconds):
    """Fail with `Hang` if the block runs longer than ``seconds`` (SIGALRM)."""
    def ring(signum, frame):
        raise Hang(f'still running after {seconds} s: the client hangs')
    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def db(server, sql, *args, write=False):
    """Run one statement on the server's database; its rows."""
    path = server.data_dir / 'nova.sqlite3'
    uri = f'file:{path}' + ('' if write else '?mode=ro')
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        rows = conn.execute(sql, args).fetchall()
        if write:
            conn.commit()
    return rows


def submissions_on_server(server):
    return db(server, 'SELECT count(*) FROM submissions')[0][0]


# -- fixtures -------------------------------------------------------------------
class Watch:
    """What the leak check looks at: proxies and servers (their keys) and the
    errors the test caught."""

    def __init__(self):
        self.proxies, self.servers, self.errors = [], [], []

    def caught(self, excinfo):
        self.errors.append(excinfo.value)
        return excinfo.value


@pytest.fixture(autouse=True)
def watch(caplog):
    """Capture every log record at DEBUG; afterwards, no record and no caught
    error may contain the API key or a session key."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    w = Watch()
    yield w
    secrets = set()
    for proxy in w.proxies:
        secrets |= proxy.secrets
    for server in w.servers:
        secrets |= {server.api_key, server.other_api_key}
        secrets |= {row[0] for row in db(server, 'SELECT key FROM sessions')}
    secrets = {s for s in secrets if s}
    if not w.servers:
        return
    formatter = logging.Formatter('%(name)s %(levelname)s %(message)s')
    records = caplog.get_records('setup') + caplog.get_records('call')
    assert any(r.name.startswith('urllib3') for r in records), 'no HTTP was logged: check is void'
    texts = [formatter.format(r) for r in records]
    for exc in w.errors:
        texts += [str(exc), repr(exc), repr(exc.args),
                  ''.join(traceback.format_exception(exc))]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f'a secret leaked into: {text[:300]!r}'


@pytest.fixture(scope='module')
def server(nova_server):
    """The real server, shared by the module (two solver threads)."""
    return nova_server


@pytest.fixture(scope='module')
def field_path(tmp_path_factory):
    """A synthetic field whose header has pointing and scale hints."""
    f = render_field(SkyCoord(150.3, 25.1, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                     shape=(400, 500), rotation=37 * u.deg, fwhm=2.8, seed=1)
    return f.writeto(tmp_path_factory.mktemp('field') / 'f.fits', truth='none')


@pytest.fixture
def proxy(server, watch):
    p = FaultProxy(server.url).start()
    watch.proxies.append(p)
    watch.servers.append(server)
    yield p
    p.stop()
    assert not p.errors, p.errors


@pytest.fixture
def make_client(server):
    """Factory of nova clients (``timeout``: per HTTP request) polling every 0.05 s."""
    clients = []

    def make(url, timeout=HTTP_TIMEOUT, api_key=None):
        client = AstrometryNetClass(api_key=api_key or server.api_key, server=url,
                                    backend='nova', timeout=timeout)
        clients.append(client)
        return client
    with conf.set_temp('poll_interval', 0.05):
        yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client, proxy):
    return make_client(proxy.url)


@pytest.fixture
def brief_pauses(monkeypatch):
    """The poll loop's pauses, recorded and slept for 20 ms at most (its clock
    stays real: the solve's time limit holds).  For tests that do not time them."""
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        time.sleep(min(seconds, 0.02))
    monkeypatch.setattr(nova_client, 'wait_for_job',
                        functools.partial(polling.wait_for_job, sleep=sleep))
    return pauses


def solve(client, path, bound=SOLVE_TIMEOUT + 15, **kw):
    """solve_from_image through the client, within ``bound`` seconds."""
    opts = dict(solve_timeout=SOLVE_TIMEOUT, cache=False, return_submission_id=True)
    opts.update(kw)
    with bounded(bound):
        return client.solve_from_image(path, **opts)


def check_solved(header, sub_id, proxy, server, before):
    """A WCS came back, from exactly one upload that reached the server."""
    assert header['AN_SUBID'] == sub_id and header['AN_JOBID'] > 0
    assert header['CTYPE1'].startswith('RA---TAN')
    assert len(proxy.uploads(forwarded=True)) == 1
    assert submissions_on_server(server) - before == 1


def faulted_then_ok(proxy, method, path, n_faults):
    """The records of ``path``: the first ``n_faults`` spoiled, then a good one."""
    records = proxy.requests(method, path)
    assert len(records) >= n_faults + 1, records
    assert [r.fault for r in records[:n_faults + 1]] == [records[0].fault] * n_faults + [None]
    return records[:n_faults + 1]


# -- transient trouble on status polls: retried, then solved --------------------
@pytest.mark.slow
@pytest.mark.parametrize('path', [SUB_PATH, JOB_PATH], ids=['submission', 'job'])
@pytest.mark.parametrize('status', [500, 502, 503])
def test_5xx_on_status_polls_is_retried_with_backoff(client, proxy, server, field_path, status,
                                                      path):
    before = submissions_on_server(server)
    proxy.fail('GET', path, 'status', status, times=2)
    started = time.monotonic()
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', path, 2)
    gaps = FaultProxy.gaps(records)
    # backoff: 502/503 are retried by the HTTP adapter (0 s, then 1 s), 500 by
    # the poll loop (1 s, then 2 s); either way the pauses grow and are bounded.
    assert gaps[1] >= 0.9 and gaps[1] >= gaps[0] - 0.05, gaps
    assert sum(gaps) < 5, gaps
    check_solved(header, sub_id, proxy, server, before)
    assert time.monotonic() - started < 10


@pytest.mark.slow
def test_429_with_retry_after_is_honoured(client, proxy, server, field_path):
    before = submissions_on_server(server)
    proxy.fail('GET', JOB_PATH, 'status', 429, retry_after=1, times=1,
               body='{"detail": "slow down"}')
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', JOB_PATH, 1)
    assert records[0].fault == 'status'
    gap = FaultProxy.gaps(records)[0]
    assert 0.95 <= gap < 3, gap        # the next try waited as Retry-After asked
    check_solved(header, sub_id, proxy, server, before)


def test_connection_reset_on_a_status_poll_is_retried(brief_pauses, client, proxy, server,
                                                       field_path):
    """(The poll loop's pause, recorded here, is timed by the 500 cases above.)"""
    before = submissions_on_server(server)
    proxy.fail('GET', JOB_PATH, 'reset', times=1)
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', JOB_PATH, 1)
    assert records[0].forwarded
    assert FaultProxy.gaps(records)[0] < 3
    assert 1.0 in brief_pauses          # the loop backed off after the lost answer
    check_solved(header, sub_id, proxy, server, before)


@pytest.mark.slow
def test_status_answer_slower_than_the_http_timeout_is_retried(make_client, proxy, server,
                                                               field_path):
    timeout = 1.5        # below 2 s: no long polls, so a held answer is a slow one
    client = make_client(proxy.url, timeout=timeout)
    before = submissions_on_server(server)
    proxy.fail('GET', JOB_PATH, 'slow', delay=timeout + 1.5, times=1)
    started = time.monotonic()
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', JOB_PATH, 1)
    gap = FaultProxy.gaps(records)[0]
    assert timeout - 0.1 <= gap < timeout + 3, gap    # given up after the timeout, then again
    check_solved(header, sub_id, proxy, server, before)
    assert time.monotonic() - started < 10


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['html', 'garbled', 'truncated'])
def test_html_garbled_or_cut_status_answer_is_retried(client, proxy, server, field_path, kind):
    before = submissions_on_server(server)
    proxy.fail('GET', JOB_PATH, kind, times=1)
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', JOB_PATH, 1)
    assert 0.2 <= FaultProxy.gaps(records)[0] < 3     # after a pause, not at once
    check_solved(header, sub_id, proxy, server, before)


@pytest.mark.slow
def test_one_500_on_job_info_is_retried(client, proxy, server, field_path):
    before = submissions_on_server(server)
    proxy.fail('GET', r'^/api/jobs/\d+/info/?$', 'status', 500, times=1)
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', r'^/api/jobs/\d+/info/?$', 1)
    assert 0.4 <= FaultProxy.gaps(records)[0] < 3
    check_solved(header, sub_id, proxy, server, before)


# -- result downloads -----------------------------------------------------------
WCS_PATH = r'^/wcs_file/\d+/?$'


@pytest.mark.slow
def test_wcs_download_500_twice_is_retried(client, proxy, server, field_path):
    before = submissions_on_server(server)
    proxy.fail('GET', WCS_PATH, 'status', 500, times=2)
    header, sub_id = solve(client, field_path)
    records = faulted_then_ok(proxy, 'GET', WCS_PATH, 2)
    gaps = FaultProxy.gaps(records)
    assert 0.2 <= gaps[0] < gaps[1] < 2, gaps     # growing pauses (0.25 s, 0.5 s, ...)
    check_solved(header, sub_id, proxy, server, before)


def test_wcs_download_500_three_times_is_retried(fake_clock, client, proxy, server, field_path,
                                                 watch):
    """Three failures are tolerated (the pauses, on a fake clock here, are
    timed in the tests above)."""
    before = submissions_on_server(server)
    proxy.fail('GET', WCS_PATH, 'status', 500, times=3)
    try:
        header, sub_id = solve(client, field_path)
    except AstrometryNetError as exc:
        watch.errors.append(exc)
        raise
    faulted_then_ok(proxy, 'GET', WCS_PATH, 3)
    assert fake_clock.sleeps == list(DOWNLOAD_RETRIES[:3])
    check_solved(header, sub_id, proxy, server, before)


@pytest.mark.slow
def test_wcs_download_failing_for_good_gives_a_typed_error_with_the_job_id(
        client, proxy, server, field_path, watch):
    proxy.fail('GET', WCS_PATH, 'status', 500, times=None)
    started = time.monotonic()
    with pytest.raises(ResultNotAvailableError) as info:
        solve(client, field_path)
    exc = watch.caught(info)
    elapsed = time.monotonic() - started
    tries = proxy.requests('GET', WCS_PATH)
    job_id = int(tries[0].path.rstrip('/').rsplit('/', 1)[1])
    assert exc.job_id == job_id
    assert f'job {job_id}' in str(exc)
    assert len(tries) == 5 and all(t.fault == 'status' for t in tries)
    assert elapsed < 10
    assert len(proxy.uploads(forwarded=True)) == 1


def test_wcs_download_failing_for_good_names_the_submission_too(fake_clock, client, proxy, server,
                                                                 field_path, watch):
    """(On a fake clock: the pauses are timed in the test above.)"""
    proxy.fail('GET', WCS_PATH, 'status', 500, times=None)
    with pytest.raises(ResultNotAvailableError) as info:
        solve(client, field_path)
    exc = watch.caught(info)
    assert fake_clock.sleeps == list(DOWNLOAD_RETRIES)
    sub_id = int(proxy.requests('GET', SUB_PATH)[0].path.rstrip('/').rsplit('/', 1)[1])
    assert exc.submission_id == sub_id


# -- uploads: never sent twice -------------------------------------------------
@pytest.mark.parametrize('upload', [False, True], ids=['source-list', 'image'])
@pytest.mark.parametrize('kind', ['reset', pytest.param('slow', marks=pytest.mark.slow)])
def test_lost_upload_answer_is_unconfirmed_and_not_resent(make_client, proxy, server, field_path,
                                                          watch, kind, upload):
    client = make_client(proxy.url, timeout=1.5)
    before = submissions_on_server(server)
    proxy.fail('POST', UPLOAD_PATH, kind, delay=3.0, times=1)
    started = time.monotonic()
    with pytest.raises(UploadUnconfirmedError) as info:
        solve(client, field_path, force_image_upload=upload)
    exc = watch.caught(info)
    assert time.monotonic() - started < 6
    # the server did get it, once; the client did not send it again
    assert len(proxy.uploads()) == 1 and len(proxy.uploads(forwarded=True)) == 1
    assert proxy.uploads()[0].upstream_status == 200
    assert submissions_on_server(server) - before == 1
    assert 'list_jobs()' in str(exc)
    time.sleep(0.3)        # nothing comes after the error either
    assert len(proxy.uploads()) == 1


def test_upload_reset_before_reaching_the_server_is_a_typed_error_and_not_resent(
        client, proxy, server, field_path, watch):
    before = submissions_on_server(server)
    proxy.fail('POST', UPLOAD_PATH, 'reset', forward=False, times=1)
    with pytest.raises((ServerError, UploadUnconfirmedError)) as info:
        solve(client, field_path, bound=10)
    watch.caught(info)
    assert len(proxy.uploads()) == 1 and not proxy.uploads(forwarded=True)
    assert submissions_on_server(server) == before


@pytest.mark.slow
def test_upload_connection_refused_is_a_server_error_and_not_resent(
        client, proxy, server, field_path, watch):
    """Nothing listens when the upload is made: a ServerError ('cannot reach'),
    not UploadUnconfirmedError; after the proxy is back, one solve, one upload."""
    before = submissions_on_server(server)
    with bounded(10):
        client.login()                      # the session exists; the upload is next
    proxy.pause()
    try:
        started = time.monotonic()
        with pytest.raises(ServerError) as info:
            solve(client, field_path, bound=15)
        exc = watch.caught(info)
        assert not isinstance(exc, UploadUnconfirmedError)
        assert 'reach' in str(exc)
        assert time.monotonic() - started < 10
    finally:
        proxy.resume()
    assert not proxy.uploads() and submissions_on_server(server) == before
    header, sub_id = solve(client, field_path)
    check_solved(header, sub_id, proxy, server, before)


# -- sessions -------------------------------------------------------------------
@pytest.mark.slow
def test_session_expired_at_upload_logs_in_again(client, proxy, server, field_path):
    before = submissions_on_server(server)
    with bounded(10):
        client.login()
    proxy.fail('POST', UPLOAD_PATH, 'session_expired', times=1)
    header, sub_id = solve(client, field_path, force_image_upload=True)
    logins = proxy.requests('POST', r'^/api/login/?$')
    assert len(logins) == 2
    uploads = proxy.uploads()
    assert [u.fault for u in uploads] == ['session_expired', None]
    assert logins[1].time > uploads[0].time        # logged in again after the refusal
    check_solved(header, sub_id, proxy, server, before)   # the file was re-sent whole
    assert len(proxy.secrets) >= 3         # the API key and two session keys


@pytest.mark.slow
def test_session_expired_at_myjobs_logs_in_again(client, proxy, server, field_path):
    with bounded(10):
        client.login()
    proxy.fail('POST', r'^/api/myjobs', 'session_expired', times=1)
    with bounded(20):
        jobs = client.list_jobs()
    assert len(proxy.requests('POST', r'^/api/login/?$')) == 2
    assert [r.fault for r in proxy.requests('POST', r'^/api/myjobs')] == ['session_expired', None]
    # every job on this server was submitted with this key
    assert len(jobs) == db(server, 'SELECT count(*) FROM jobs')[0][0]


@pytest.mark.slow
def test_session_deleted_on_the_server_logs_in_again(client, proxy, server, field_path):
    """The real thing: the server forgets every session between two solves."""
    before = submissions_on_server(server)
    solve(client, field_path)
    db(server, 'DELETE FROM sessions', write=True)
    header, sub_id = solve(client, field_path)
    assert len(proxy.requests('POST', r'^/api/login/?$')) == 2
    assert len(proxy.uploads()) == 3 and len(proxy.uploads(forwarded=True)) == 3
    assert submissions_on_server(server) - before == 2   # the refused one made nothing
    assert header['AN_SUBID'] == sub_id


# -- jobs that fail, vanish or wait out a restart --------------------------------
@pytest.mark.slow
def test_failed_job_raises_solve_failed_with_both_ids(client, proxy, server, watch):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(1, 500, 60), rng.uniform(1, 400, 60)
    with pytest.raises(SolveFailedError) as info, bounded(40):
        client.solve_from_source_list(
            x, y, 500, 400, solve_timeout=SOLVE_TIMEOUT, cache=False,
            scale=(11.9, 12.1) * u.arcsec / u.pix, center=SkyCoord(150.3, 25.1, unit='deg'),
            radius=0.5 * u.deg)
    exc = watch.caught(info)
    sub_id = int(proxy.requests('GET', SUB_PATH)[0].path.rstrip('/').rsplit('/', 1)[1])
    assert exc.submission_id == sub_id
    job_ids = [row[0] for row in db(server, 'SELECT j.id FROM jobs j JOIN user_images ui ON '
                                            'ui.id = j.user_image_id WHERE ui.submission_id = ?',
                                    sub_id)]
    assert exc.job_id == job_ids[0]
    assert len(proxy.uploads(forwarded=True)) == 1


def test_vanished_job_replaced_by_a_new_one(client, proxy, server, field_path):
    """As nova does after a worker restart: job N is gone (404) and the
    submission names a new job (here N + 100000, served by N's data)."""
    before = submissions_on_server(server)
    ids = {}

    def vanish(path):
        old = int(path.rstrip('/').rsplit('/', 1)[1])
        new = old + 100000
        ids.update(old=old, new=new)
        proxy.fail('*', rf'^/(api/jobs|wcs_file)/{old}(/|$)', 'status', 404, times=None)
        proxy.fail('GET', SUB_PATH, 'json', times=None, transform=lambda d: dict(
            d, jobs=[new if j == old else j for j in d.get('jobs', [])],
            job_calibrations=[[new if j == old else j, c] for j, c in
                              d.get('job_calibrations', [])]))
        proxy.alias(rf'^/(api/jobs|wcs_file)/{new}(?=/|$)', rf'/\g<1>/{old}')

    proxy.fail('GET', JOB_PATH, 'status', 404, times=1, on_fire=vanish)
    header, sub_id = solve(client, field_path)
    assert header['AN_JOBID'] == ids['new']
    assert proxy.requests('GET', rf'^/api/jobs/{ids["new"]}/?$')
    check_solved(header, sub_id, proxy, server, before)


@pytest.mark.slow
def test_vanished_job_never_replaced_gives_a_typed_error(client, proxy, server, field_path,
                                                          watch):
    """The job is gone and the submission still names it: no hang, a typed
    error with the ids once solve_timeout has passed."""
    proxy.fail('*', r'^/api/jobs/\d+', 'status', 404, times=None)
    started = time.monotonic()
    with pytest.raises(AstrometryNetError) as info:
        solve(client, field_path, solve_timeout=3, bound=15)
    exc = watch.caught(info)
    assert time.monotonic() - started < 3 + HTTP_TIMEOUT + 1
    sub_id = int(proxy.requests('GET', SUB_PATH)[0].path.rstrip('/').rsplit('/', 1)[1])
    assert exc.submission_id == sub_id
    assert isinstance(exc, SolveTimeoutError), repr(exc)
    assert len(proxy.uploads(forwarded=True)) == 1


@pytest.mark.slow
def test_server_restart_mid_job_requeues_and_solves(make_client, tmp_path, field_path, watch,
                                                    caplog):
    """The client waits through a restart: the job, interrupted while running,
    is requeued (same id) by the new server on the same port and data_dir."""
    server = NovaServer(tmp_path / 'restarting', workers=0).start()    # queues, never solves
    watch.servers.append(server)
    proxy = FaultProxy(server.url).start()
    watch.proxies.append(proxy)
    trouble = []

    def restart():
        try:
            deadline = time.monotonic() + 15
            while not proxy.requests('GET', JOB_PATH) and time.monotonic() < deadline:
                time.sleep(0.02)
            server.stop()
            # as a crash mid-solve leaves it: started, never ended
            db(server, 'UPDATE jobs SET start_time = ? WHERE end_time IS NULL', now_string(),
               write=True)
            time.sleep(0.5)
            server.start(workers=2)
        except Exception as exc:       # reported below
            trouble.append(exc)
    thread = threading.Thread(target=restart, daemon=True)
    try:
        client = make_client(proxy.url, api_key=server.api_key)
        thread.start()
        header, sub_id = solve(client, field_path)
        thread.join(20)
        assert not trouble and not thread.is_alive()
        polls = proxy.requests('GET', JOB_PATH)
        job_id = int(polls[0].path.rstrip('/').rsplit('/', 1)[1])
        assert header['AN_JOBID'] == job_id         # the same job, requeued
        assert any(r.upstream_status is None for r in proxy.requests('GET'))   # it was down
        assert any('requeued 0 submissions and 1 job after a restart' in r.getMessage()
                   for r in caplog.records)
        assert len(proxy.uploads(forwarded=True)) == 1 and submissions_on_server(server) == 1
    finally:
        thread.join(20)
        proxy.stop()
        server.stop()
    assert not proxy.errors, proxy.errors


# -- a fault that never ends -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('path', [SUB_PATH, JOB_PATH], ids=['submission', 'job'])
def test_endless_503_ends_in_a_typed_error_with_the_submission_id(client, proxy, server,
                                                                   field_path, watch, path):
    solve_timeout = 4.0
    proxy.fail('GET', path, 'status', 503, times=None)
    started = time.monotonic()
    with pytest.raises((ServerError, SolveTimeoutError)) as info:
        solve(client, field_path, solve_timeout=solve_timeout, bound=30)
    exc = watch.caught(info)
    elapsed = time.monotonic() - started
    sub_id = int(proxy.requests('GET', SUB_PATH)[0].path.rstrip('/').rsplit('/', 1)[1])
    assert exc.submission_id == sub_id
    assert f'submission {sub_id}' in str(exc)
    assert len(proxy.uploads(forwarded=True)) == 1
    tries = proxy.requests('GET', path)
    assert len(tries) >= 4 and all(t.fault == 'status' for t in tries)
    gaps = FaultProxy.gaps(tries)
    assert max(gaps) >= 0.9, gaps           # it backed off, it did not hammer
    # bounded: solve_timeout plus one poll's retry cycle in the HTTP adapter (~3 s)
    assert elapsed <= solve_timeout + 4, f'{elapsed:.1f} s for solve_timeout={solve_timeout}'


@pytest.mark.slow
@pytest.mark.parametrize('kind,status,timeout', [('status', 503, HTTP_TIMEOUT),
                                                 ('slow', None, 1.5)], ids=['503', 'slow'])
def test_endless_fault_ends_within_solve_timeout(make_client, proxy, server, field_path, watch,
                                                 kind, status, timeout):
    """solve_timeout is kept, give or take the one request in flight."""
    client = make_client(proxy.url, timeout=timeout)
    solve_timeout = 2.0
    proxy.fail('GET', JOB_PATH, kind, status, delay=timeout + 3, times=None)
    in_flight = (timeout if kind == 'slow' else 0.0) + 0.5
    started = time.monotonic()
    with pytest.raises((ServerError, SolveTimeoutError)) as info:
        solve(client, field_path, solve_timeout=solve_timeout, bound=30)
    watch.caught(info)
    elapsed = time.monotonic() - started
    assert elapsed <= solve_timeout + in_flight, (
        f'{elapsed:.1f} s for solve_timeout={solve_timeout}; tries at '
        f'{[round(r.time - started, 2) for r in proxy.requests("GET", JOB_PATH)]}')
