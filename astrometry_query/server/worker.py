"""Background work of the nova-compatible server: turning submissions into
images (download, gunzip, untar, recognise the file) and solving jobs in a
bounded pool of threads.

The database is the queue: threads claim the oldest unstarted row, so work
survives a restart and no request handler ever waits for a solve.  Threads
are enough: sep releases no GIL, but the solve itself runs in an ``astrometry-engine``
subprocess and extraction is a fraction of it.
"""
import gzip
import hashlib
import io
import ipaddress
import logging
import math
import os
import queue
import shutil
import socket
import struct
import tarfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlparse

import numpy as np
import requests
from astropy.io import fits

from ..settings import MAX_SOURCES, SETTINGS, nova_cast
from .._text import plural

__all__ = ['SolvePool', 'NOVA_DEFAULTS', 'submission_args', 'source_list_bytes', 'ingest',
           'save_upload', 'brightest_stars', 'make_executor', 'job_task']

log = logging.getLogger('astrometry_query.server')

#: The values nova's models give absent submission arguments (protocol §2), less
#: downsample_factor (2 on nova): absent, we bin only images large enough to gain.
NOVA_DEFAULTS = {
    'publicly_visible': 'y', 'allow_commercial_use': 'd', 'allow_modifications': 'd',
    'scale_units': 'degwidth', 'scale_type': 'ul', 'scale_lower': 0.1, 'scale_upper': 180.0,
    'tweak_order': 2, 'parity': 2, 'use_sextractor': False,
    'crpix_center': False, 'invert': False, 'image_width': 0, 'image_height': 0,
}
#: Key of the stored arguments that lists the names the request gave.
GIVEN_KEY = '_given'
NOT_SUPPORTED = "This file's type is not supported"
NOT_POSITIVE = 'Source list must contain POSITIVE x,y coordinates'
MAX_DOWNLOAD = 500_000_000   # nova's uWSGI --limit-post
WORKER_LOG = 'worker.log'


def submission_args(data):
    """Submission arguments from request-json, cast as nova casts them, over
    nova's defaults, and checked against the allowed ranges.

    Raises
    ------
    ValueError
        Naming the argument and what it allows, where nova would crash (HTTP
        500) or accept a value that can only fail the job later.

    The names the request gave are kept under `GIVEN_KEY`, so that header
    hints fill only what the submitter left open (see `job_task`).
    """
    args = dict(NOVA_DEFAULTS)
    cast = {}
    for key, value in data.items():
        setting = SETTINGS.get(key)
        if setting is None:
            continue
        try:
            cast.update(nova_cast({key: value}))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f'{key}: {value!r} is not a valid {setting.type.__name__}; '
                             f'allowed: {setting.describe_allowed()}') from None
        _check_range(key, cast[key], setting)
    args.update(cast)
    for key in ('image_width', 'image_height'):     # int() in nova, not in our settings table
        if key in data:
            try:
                args[key] = int(data[key])
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f'{key}: {data[key]!r} is not a whole number of pixels') from None
            if not 0 <= args[key] <= 1_000_000:
                raise ValueError(f'{key}: {args[key]} is not in 0..1000000 pixels '
                                 '(0: from the sources)')
    args.pop('album', None)
    args[GIVEN_KEY] = sorted(cast)
    return args


def _check_range(key, value, setting):
    if key == 'downsample_factor' and value == 0:      # nova's "none"
        return
    if setting.type in (int, float) and setting.allowed:
        low, high = setting.allowed
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f'{key}: {value!r} is out of range; allowed: '
                             f'{setting.describe_allowed()}')
    elif setting.type is str and setting.allowed and value not in setting.allowed:
        raise ValueError(f'{key}: {value!r} is not allowed; allowed: {setting.describe_allowed()}')


def url_problem(url):
    """Why an url_upload URL cannot be fetched, or '' when it looks fetchable."""
    if not isinstance(url, str) or not url:
        return 'url: give the http(s) URL of an image'
    if len(url) > 200:
        return 'url: at most 200 characters'
    parts = urlparse(url)
    if parts.scheme.lower() not in ('http', 'https') or not parts.hostname:
        return 'url: only http and https URLs with a host name can be fetched'
    if any(c.isspace() or ord(c) < 32 for c in url):
        return 'url: blanks and control characters are not allowed'
    return ''


def source_list_bytes(x, y):
    """A FITS binary table with float64 ``X``, ``Y`` columns, in the given
    order, truncated to the solver's first 1000 sources."""
    x, y = np.asarray(x, dtype=float)[:MAX_SOURCES], np.asarray(y, dtype=float)[:MAX_SOURCES]
    table = fits.BinTableHDU.from_columns([fits.Column('X', 'D', array=x),
                                          fits.Column('Y', 'D', array=y)])
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(buf)
    return buf.getvalue()


def _check_public(host):
    """Refuse hosts that resolve to this machine or a private network (SSRF)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ValueError(f'url: cannot resolve {host!r} ({exc})') from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split('%')[0])
        if (address.is_private or address.is_loopback or address.is_link_local
                or address.is_reserved or address.is_multicast or address.is_unspecified):
            raise ValueError(f'url: {host!r} is a local or private address ({address}); '
                             'this server fetches public URLs only (--allow-private-urls)')


def fetch_url(url, dest, timeout=10.0, *, allow_private=False, max_bytes=None, deadline=120.0):
    """Download ``url`` to ``dest`` as nova's worker does (GET, Mozilla/5.0,
    inactivity timeout, redirects followed, HTTP errors raised), with limits:
    http(s) only, no local or private addresses (each redirect checked)
    unless ``allow_private``, at most ``max_bytes``, ``deadline`` seconds."""
    started = time.monotonic()
    for _ in range(6):
        problem = url_problem(url)
        if problem:
            raise ValueError(problem)
        if not allow_private:
            _check_public(urlparse(url).hostname)
        with requests.get(url, headers={'User-Agent': 'Mozilla/5.0'}, timeout=timeout,
                          stream=True, allow_redirects=False) as resp:
            if resp.is_redirect:
                url = urljoin(url, resp.headers.get('Location', ''))
                continue
            resp.raise_for_status()
            with open(dest, 'wb') as out:
                _copy(resp.iter_content(1 << 16), out, max_bytes, started + deadline)
            return
    raise ValueError('url: too many redirects')


def _copy(chunks, out, max_bytes=None, deadline=None):
    """Write chunks, refusing more than ``max_bytes`` (default MAX_DOWNLOAD;
    downloads, gzip bombs) or going on past ``deadline`` (monotonic time)."""
    limit, size = max_bytes or MAX_DOWNLOAD, 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ValueError(f'data larger than {limit} bytes')
        if deadline is not None and time.monotonic() > deadline:
            raise ValueError('the download took too long')
        out.write(chunk)


def _image_size(head):
    """(kind, width, height) of a PNG/GIF/JPEG from its first bytes, or None."""
    if head.startswith(b'\x89PNG\r\n\x1a\n') and len(head) >= 24:
        return ('png',) + struct.unpack('>II', head[16:24])
    if head[:6] in (b'GIF87a', b'GIF89a'):
        return ('gif',) + struct.unpack('<HH', head[6:10])
    if head.startswith(b'\xff\xd8'):
        i = 2
        while i + 9 < len(head) and head[i] == 0xFF:
            marker, length = head[i + 1], struct.unpack('>H', head[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack('>HH', head[i + 5:i + 9])
                return 'jpeg', w, h
            i += 2 + length
        return 'jpeg', None, None
    return None


def _fits_content(path):
    """('image', w, h) or ('xy', x, y) for a FITS file, else None."""
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        for hdu in hdul:
            shape = [hdu.header.get(k, 0) for k in ('NAXIS', 'NAXIS1', 'NAXIS2')]
            if hdu.is_image and shape[0] >= 2 and shape[1] * shape[2]:
                return 'image', int(shape[1]), int(shape[2])
        for hdu in hdul:
            if isinstance(hdu, fits.BinTableHDU):
                names = {n.lower(): n for n in hdu.columns.names}
                if 'x' in names and 'y' in names:   # nova matches the names case-insensitively
                    x, y = hdu.data[names['x']], hdu.data[names['y']]
                    return 'xy', np.array(x, float), np.array(y, float)
    return None


def _text_source_list(path):
    """x, y arrays from a text file of 'x y' lines, or None."""
    if path.stat().st_size > 50_000_000:
        return None
    try:
        rows = [line.split() for line in path.read_text('ascii').splitlines() if line.strip()]
        values = np.array([[float(a), float(b)] for a, b in rows], dtype=float)
    except (UnicodeDecodeError, ValueError):
        return None
    return (values[:, 0], values[:, 1]) if len(values) else None


def _as_source_list(x, y, out, name, args):
    x, y = np.asarray(x, float)[:MAX_SOURCES], np.asarray(y, float)[:MAX_SOURCES]
    if not len(x) or not (np.nanmax(x) > 0 and np.nanmax(y) > 0):
        raise ValueError(NOT_POSITIVE)
    out.write_bytes(source_list_bytes(x, y))
    # The image's size when the submitter gave it (our client always does), else
    # ceil(max x/y) as on nova.  nova records ceil(max x/y) even when given the size,
    # so its calibration of a source list differs from the image's; here both agree.
    width = args.get('image_width') or int(math.ceil(np.nanmax(x)))
    height = args.get('image_height') or int(math.ceil(np.nanmax(y)))
    return {'path': str(out), 'kind': 'xyls', 'original_filename': name,
            'width': width, 'height': height, 'solve_width': width, 'solve_height': height}


def classify(path, name, args, index=0):
    """Recognise one decoded file: an image, or a source list (FITS table or text).

    Raises
    ------
    ValueError
        "This file's type is not supported", or a non-positive source list.
    """
    path = Path(path)
    with open(path, 'rb') as f:
        head = f.read(65536)
    xyls, picture = path.with_name(f'{index}-sources.xyls'), _image_size(head)
    if head.startswith(b'SIMPLE  ='):
        try:
            content = _fits_content(path)
        except Exception:
            content = None
        if content and content[0] == 'xy':
            return _as_source_list(content[1], content[2], xyls, name, args)
        picture = ('fits',) + content[1:] if content else None
    if picture:
        return {'path': str(path), 'kind': picture[0], 'original_filename': name,
                'width': picture[1], 'height': picture[2]}
    text = None if head.startswith(b'SIMPLE') else _text_source_list(path)
    if text is not None:
        return _as_source_list(text[0], text[1], xyls, name, args)
    raise ValueError(NOT_SUPPORTED)


def _decompress(path, name):
    with open(path, 'rb') as f:
        if f.read(2) != b'\x1f\x8b':
            return path, name
    out = path.with_name(path.name + '.gunzip')
    with gzip.open(path, 'rb') as src, open(out, 'wb') as dst:
        _copy(iter(lambda: src.read(1 << 20), b''), dst)
    return out, (name[:-3] if name.endswith('.gz') else name)


def _members(path, name):
    """The files of a tar archive, else the file itself."""
    with open(path, 'rb') as f:
        if f.read(9) == b'SIMPLE  =' or not tarfile.is_tarfile(path):
            return [(path, name)]
    out = []
    with tarfile.open(path) as tar:
        for i, member in enumerate(m for m in tar if m.isfile()):
            # Member names are never used as paths: no traversal out of the upload dir.
            dest = path.with_name(f'member-{i}')
            with tar.extractfile(member) as src, open(dest, 'wb') as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            out.append((dest, member.name))
    if not out:
        raise ValueError(NOT_SUPPORTED)
    return out


def ingest(sub, uploads_dir, fetch_timeout=10.0, allow_private=False, max_bytes=None):
    """Turn a claimed submission into image records (nova's first stage)."""
    if sub['source'] in ('file', 'xy'):
        path, name = Path(sub['upload']), sub['original_filename']
    else:
        work = Path(uploads_dir) / f'sub-{sub["id"]}'
        work.mkdir(parents=True, exist_ok=True)
        path = work / 'download'
        # url is None for an upload with neither file nor x/y: requests then
        # fails with "Invalid URL 'None'", as nova's worker does.
        fetch_url(sub['url'], path, fetch_timeout, allow_private=allow_private,
                  max_bytes=max_bytes)
        name = urlparse(sub['url']).path.rstrip('/').rsplit('/', 1)[-1]
    path, name = _decompress(path, name)
    return [classify(p, n, sub['args'], i) for i, (p, n) in enumerate(_members(path, name))]


def _error_text(exc):
    return ''.join(traceback.format_exception_only(type(exc), exc)).strip()


#: How often a job whose solve was lost with its worker is queued again.
MAX_REQUEUES = 3


def _lost_worker(exc):
    """True for failures of the machinery rather than of the solve."""
    from concurrent.futures.process import BrokenProcessPool
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return isinstance(exc, (BrokenProcessPool, ConnectionError, OSError)) or bool(
        names & {'KilledWorker', 'CommClosedError', 'CancelledError', 'FutureCancelledError'})


def _on_sigterm(signum, frame):
    """A worker process told to stop: its engines go with it."""
    from ..local.solver import stop_all_engines
    stop_all_engines()
    os._exit(1)


def _end_with(server_pid):
    """End this worker and its engines when the server process is gone, even
    after a kill -9.  (Its parent is the forkserver, which the workers themselves
    keep alive: the server's pid is what must be watched.)"""
    def alive():
        try:
            os.kill(server_pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def watch():
        from ..local.solver import stop_all_engines
        while alive():
            time.sleep(0.5)
        stop_all_engines()
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name='server-watchdog').start()


def warm_up(server_pid=None):
    """Import the solving pipeline and read the index headers, so that a worker
    process's first solve is as fast as its next ones; and make the worker end
    its engines when it is terminated or the server dies."""
    import signal
    from ..local import pipeline, refine
    from ..local.solver import find_installation
    signal.signal(signal.SIGTERM, _on_sigterm)
    if server_pid is not None:
        _end_with(server_pid)
    try:
        refine._densest(find_installation().index_files)
    except Exception:       # no solver: the jobs will say so
        pass
    return pipeline.__name__


def _ready():
    return os.getpid()


def _terminate(pool):
    """Stop a pool of worker processes now: each ends its engines (SIGTERM)."""
    processes = list((getattr(pool, '_processes', None) or {}).values())
    for process in processes:
        try:
            process.terminate()
        except Exception:
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=3)


def make_executor(kind, workers, dask_scheduler=None):
    """The executor of the server's solves.

    Parameters
    ----------
    kind : {'threads', 'processes'}
        'threads': in the server process (light, for tests and notebooks);
        'processes': ``workers`` worker processes, so solves use every core
        (sep and the WCS refit hold the GIL).
    dask_scheduler : str, optional
        Address of a Dask scheduler: solves become tasks on its cluster.

    Returns
    -------
    (executor or None, closer)
    """
    if dask_scheduler:
        from distributed import Client
        client = Client(dask_scheduler)
        return client.get_executor(pure=False, retries=2), client.close
    if kind == 'processes':
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        methods = multiprocessing.get_all_start_methods()
        # A fresh interpreter per worker: the server process is full of threads.
        context = multiprocessing.get_context('forkserver' if 'forkserver' in methods
                                              else 'spawn')
        pool = ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                                   initializer=warm_up, initargs=(os.getpid(),))
        # Start and warm every worker now, not on the first jobs (the server
        # waits for this before it answers requests).
        pool.warming = [pool.submit(_ready) for _ in range(max(1, workers))]
        return pool, lambda: _terminate(pool)
    if kind == 'threads':
        return None, lambda: None
    raise ValueError(f"executor must be 'threads' or 'processes', got {kind!r}")


class SolvePool:
    """Threads that process submissions and run at most ``workers`` solves at once.

    Parameters
    ----------
    store : `~astrometry_query.server.store.Store`
    data_dir : path-like
        Uploads go to ``data_dir/uploads``, job directories to ``data_dir/jobs/<id>``.
    workers : int
        Concurrent solves; 0 accepts and queues work without solving it.
    solve_timeout : float
        Per-solve limit passed to ``solve_job``, seconds.
    """

    def __init__(self, store, data_dir, *, workers=2, solve_timeout=300.0, fetch_timeout=10.0,
                 ingest_threads=2, index_dir=None, executor=None, allow_private_urls=False,
                 max_download=None):
        self.store, self.data_dir = store, Path(data_dir)
        self.jobs_dir, self.uploads_dir = self.data_dir / 'jobs', self.data_dir / 'uploads'
        self.workers, self.solve_timeout = int(workers), solve_timeout
        self.fetch_timeout, self.index_dir = fetch_timeout, index_dir
        self.allow_private_urls, self.max_download = allow_private_urls, max_download
        #: Where solves run: None (this process's threads), or an Executor
        #: (worker processes, a Dask cluster); see `make_executor`.
        self.executor = executor
        self._ingest_threads = max(1, int(ingest_threads))
        self._cv, self._gen, self._stopping, self._threads = threading.Condition(), 0, False, []
        #: Called (from any thread) whenever work changes state: long polls wake on it.
        self.on_change = None
        #: Called by an interrupting stop: ends solves running elsewhere (worker processes).
        self.on_stop = None
        # Solved jobs whose objects in field are still to be listed (when idle).
        self._to_tag = queue.Queue()

    def start(self):
        """Requeue interrupted work, then start the threads."""
        subs, jobs = self.store.recover()
        self.store.purge_sessions()
        if subs or jobs:
            log.info('requeued %s and %s after a restart', plural(subs, 'submission'),
                     plural(jobs, 'job'))
        loops = ([(self.store.claim_submission, self._ingest)] * self._ingest_threads
                 + [(self.store.claim_job, self._solve)] * self.workers)
        for i, (claim, run) in enumerate(loops):
            t = threading.Thread(target=self._loop, args=(claim, run), daemon=True,
                                 name=f'nova-{run.__name__.strip("_")}-{i}')
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._tag_loop, daemon=True, name='nova-tagger')
        t.start()
        self._threads.append(t)

    def _tag_loop(self):
        """List objects in the field of solved jobs, but only while no solve
        waits: a solver slot is never spent on it (a request for them lists
        them at once anyway)."""
        while not self._stopping:
            try:
                job_id = self._to_tag.get(timeout=0.5)
            except queue.Empty:
                continue
            while not self._stopping:
                counts = self.store.counts()
                if not (counts['queued'] or counts['running']):
                    break
                with self._cv:
                    self._cv.wait(timeout=0.5)
            if not self._stopping:
                self.fill_objects(job_id)
    def wake(self):
        """Tell idle threads that new work may be waiting, and waiting clients
        that something changed."""
        with self._cv:
            self._gen += 1
            self._cv.notify_all()
        if self.on_change is not None:
            self.on_change()

    def stop(self, timeout=None, *, interrupt=False):
        """Take no new work and wait for running work (at most ``timeout`` s).

        ``interrupt``: stop running solves now (their engines are killed); they
        stay started in the store, so the next start queues them again.

        Returns
        -------
        bool
            True when every thread has ended.
        """
        self._stopping = True
        self.wake()
        if interrupt:
            from ..local.solver import stop_all_engines
            stop_all_engines()
            if self.on_stop is not None:
                self.on_stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning('stopping with work still running in %s; it will be re-run', alive)
        return not alive

    def _loop(self, claim, run):
        while not self._stopping:
            seen = self._gen
            try:
                item = claim()
            except Exception:
                log.exception('could not read the queue')
                item = None
            if item is None:
                with self._cv:
                    # Polling every 5 s as nova does also catches missed wake-ups.
                    self._cv.wait_for(lambda: self._gen != seen or self._stopping, timeout=5.0)
                continue
            try:
                run(item)
            except Exception:
                if not self._stopping:
                    log.exception('%s of %s failed', run.__name__, item.get('id'))
            self.wake()

    def _ingest(self, sub):
        try:
            images = ingest(sub, self.uploads_dir, self.fetch_timeout, self.allow_private_urls,
                            self.max_download)
        except Exception as exc:
            log.info('submission %d failed: %s', sub['id'], type(exc).__name__)
            self.store.finish_submission(sub['id'], [], error=_error_text(exc))
            return
        self.store.finish_submission(sub['id'], images)

    def _solve(self, job):
        from ..local import jobs as local_jobs   # late: the server starts even without it
        job_dir = self.jobs_dir / str(job['id'])
        started = time.monotonic()
        lines = [f'job {job["id"]} started, input {job["kind"]} {job["original_filename"]!r}']
        try:    # any exception fails the job (as on nova) instead of leaving it "solving"
            if job_dir.exists():    # a re-run after a restart starts clean
                shutil.rmtree(job_dir)
            job_dir.mkdir(parents=True)
            task = job_task(job, self.solve_timeout, self.index_dir)
            if self.executor is None:
                result = local_jobs.run_job(job_dir, **task)
            else:
                result = self._solve_elsewhere(job, job_dir, task, lines)
                if result is None:
                    return      # requeued: the solve was lost with its worker
        except Exception as exc:
            result = {'status': 'failure', 'error': _error_text(exc)}
            lines.append(traceback.format_exc())
        if self._stopping and result.get('status') != 'success':
            # Stopped by a shutdown, not failed: left started, queued again on restart.
            log.info('job %d stopped by the shutdown; it will be solved again', job['id'])
            return
        self.store.finish_job(job['id'], result.get('status') == 'success',
                              calibration=result.get('calibration'),
                              image_size=(result.get('width'), result.get('height')))
        self.wake()     # before anything slower: clients waiting on this job go on now
        lines.append(f'status {result.get("status")}, error {result.get("error")!r}, '
                     f'timings {result.get("timings")}, {time.monotonic() - started:.2f} s')
        (job_dir / WORKER_LOG).write_text('\n'.join(lines) + '\n')
        log.info('job %d: %s in %.2f s', job['id'], result.get('status'),
                 time.monotonic() - started)
        if result.get('status') == 'success':
            self._to_tag.put(job['id'])

    def _solve_elsewhere(self, job, job_dir, task, lines):
        """Run the solve function on the executor (worker processes or a Dask
        cluster) and write what it returns into the job directory.  None when
        the solve was lost (its worker died, the cluster went away): the job
        is then queued again, up to `MAX_REQUEUES` times."""
        from ..local import jobs as local_jobs
        from ..local.pipeline import solve
        kwargs = {k: v for k, v in task.items() if k not in ('original_filename', 'input_name')}
        kwargs['settings'] = kwargs.pop('args')
        started = time.perf_counter()
        try:
            solved = self.executor.submit(solve, **kwargs).result()
        except Exception as exc:
            if _lost_worker(exc) and self.store.requeue_job(job['id'], MAX_REQUEUES):
                log.warning('job %d: its solve was lost (%s); queued again', job['id'],
                            type(exc).__name__)
                self.wake()
                return None
            raise
        lines.append(f'solved by {solved.worker}')
        return local_jobs.record_result(job_dir, solved, image=task.get('image'),
                                        sources=task.get('sources'), width=task.get('width'),
                                        height=task.get('height'),
                                        original_filename=task.get('original_filename'),
                                        elapsed=time.perf_counter() - started)

    def fill_objects(self, job_id):
        """List the objects in a solved job's field (nova's tags) once, and store them."""
        from ..local import jobs as local_jobs
        job_dir = self.jobs_dir / str(job_id)
        try:
            fresh = not (job_dir / local_jobs.EXTRAS_FILE).is_file()
            objects = local_jobs.objects_in_field(job_dir)
            if fresh or not self.store.has_objects(job_id):
                self.store.set_objects(job_id, objects)
        except Exception as exc:
            log.warning('job %s: listing the objects in the field failed: %s', job_id, exc)


def job_task(job, solve_timeout, index_dir=None):
    """run_job's keyword arguments for one job row of the store.

    FITS images are solved with the hints of their headers for whatever the
    request left open (nova's default scale range, 0.1-180 degrees wide,
    means "anything", so it is dropped when the request did not give it).
    """
    from ..hints import header_hints
    from ..images import open_image
    args = dict(job['args'])
    given = set(args.pop(GIVEN_KEY, args))
    if not given & {'scale_lower', 'scale_upper', 'scale_est', 'scale_units', 'scale_type'}:
        for key in ('scale_units', 'scale_type', 'scale_lower', 'scale_upper'):
            args.pop(key, None)
    if 'tweak_order' not in given:      # nova's default 2: we choose the order from the data
        args.pop('tweak_order', None)
    task = dict(args=args, timeout=solve_timeout, index_dir=index_dir,
                original_filename=job['original_filename'])
    if job['kind'] == 'xyls':
        with fits.open(job['path']) as hdul:
            table = hdul[1].data
            sources = {'x': np.array(table['X'], float), 'y': np.array(table['Y'], float)}
        return dict(task, sources=sources, width=job['solve_width'], height=job['solve_height'])
    image = open_image(job['path'])
    hints = header_hints(image.header, image.shape, image.wcs()) if image.kind == 'fits' else None
    return dict(task, image=image, hints=hints or None,
                input_name=None)


def save_upload(uploads_dir, name, content):
    """Store upload bytes or a stream in a new directory under ``uploads_dir``.

    Returns
    -------
    path : str
    sha1 : str
        Hex SHA-1 of the stored bytes (nova's upload ``hash``).
    """
    dest = Path(uploads_dir) / uuid.uuid4().hex / name
    dest.parent.mkdir(parents=True)
    digest = hashlib.sha1()
    stream = io.BytesIO(content) if isinstance(content, bytes) else content
    with open(dest, 'wb') as out:
        for chunk in iter(lambda: stream.read(1 << 20), b''):
            digest.update(chunk)
            out.write(chunk)
    return str(dest), digest.hexdigest()


def brightest_stars(annotations, nbright):
    """nova's ``nbright``: keep the N brightest named ("bright") stars, in V
    order, where the stars were in the list; 0 or None keeps all."""
    annotations = list(annotations)
    if not nbright:
        return annotations
    bright = sorted((a for a in annotations if a.get('type') == 'bright'),
                    key=lambda a: a.get('vmag', 99.0))[:nbright]
    first = next((i for i, a in enumerate(annotations) if a.get('type') == 'bright'),
                 len(annotations))
    rest = [a for a in annotations if a.get('type') != 'bright']
    return rest[:first] + bright + rest[first:]
