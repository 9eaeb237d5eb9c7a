"""The server's work: threads that claim queued submissions and jobs from the
store (`SolveQueue`) and hand each job to a `~astrometry_query.jobs.JobRunner`
(this process's threads, worker processes, or a Dask cluster: `make_runner`),
queuing a job lost with its worker again.  Turning submissions into images is
`~astrometry_query.server.ingest`'s.

The database is the queue: threads claim the oldest unstarted row, so work
survives a restart and no request handler ever waits for a solve.
"""
import logging
import os
import queue
import shutil
import threading
import time
import traceback
from pathlib import Path

import numpy as np
from astropy.io import fits

from .._text import plural
from ..exceptions import WorkerLostError
from ..jobs import outputs
from ..jobs.files import EXTRAS_FILE, WORKER_LOG
from ..jobs.request import SolveRequest
from ..jobs.runner import JobRunner, worker_init
from .ingest import GIVEN_KEY, ingest

__all__ = ['SolveQueue', 'make_runner', 'request_for', 'MAX_REQUEUES']

log = logging.getLogger('astrometry_query.server')

#: How often a job whose solve was lost with its worker is queued again.
MAX_REQUEUES = 3


def _error_text(exc):
    return ''.join(traceback.format_exception_only(type(exc), exc)).strip()


def make_runner(kind, workers, dask_scheduler=None):
    """The `~astrometry_query.jobs.JobRunner` of the server's solves, and its
    number of solves at once.

    Parameters
    ----------
    kind : {'threads', 'processes'}
        'threads': in the server process (light, for tests and notebooks);
        'processes': ``workers`` worker processes, so solves use every core
        (sep and the WCS refit hold the GIL), started from a forkserver (the
        server process is full of threads) and ended with the server.
    workers : int
        Solves at once (default for a Dask cluster: its thread count).
    dask_scheduler : str, optional
        Address of a Dask scheduler: solves become tasks on its cluster.

    Returns
    -------
    runner : `~astrometry_query.jobs.JobRunner`
    workers : int
    closer : callable
        Ends the runner (and the Dask client).
    """
    if dask_scheduler:
        from distributed import Client
        client = Client(dask_scheduler)
        workers = workers or sum(client.nthreads().values())
        runner = JobRunner(client)

        def close():
            runner.shutdown()
            client.close()
        return runner, workers, close
    if kind not in ('threads', 'processes'):
        raise ValueError(f"executor must be 'threads' or 'processes', got {kind!r}")
    runner = JobRunner(kind, max(1, workers), start_method='forkserver',
                       initializer=worker_init, initargs=(os.getpid(),))
    return runner, workers, runner.terminate


def request_for(job, solve_timeout, index_dir=None, *, shared=False):
    """The `~astrometry_query.jobs.SolveRequest` of one job row of the store.

    Images are solved with the hints of their headers for whatever the
    request left open (nova's default scale range, 0.1-180 degrees wide,
    means "anything", so it is dropped when the request did not give it).
    ``shared``: other solves run beside this one and keep the cores busy, so
    a blind search keeps one engine (no split search).
    """
    settings = dict(job['args'])
    given = set(settings.pop(GIVEN_KEY, settings))
    if not given & {'scale_lower', 'scale_upper', 'scale_est', 'scale_units', 'scale_type'}:
        for key in ('scale_units', 'scale_type', 'scale_lower', 'scale_upper'):
            settings.pop(key, None)
    if 'tweak_order' not in given:      # nova's default 2: we choose the order from the data
        settings.pop('tweak_order', None)
    request = SolveRequest(settings=settings, timeout=solve_timeout, index_dir=index_dir,
                           original_filename=job['original_filename'],
                           search_workers=1 if shared else None)
    if job['kind'] == 'xyls':
        with fits.open(job['path']) as hdul:
            table = hdul[1].data
            request.sources = {'x': np.array(table['X'], float).tolist(),
                               'y': np.array(table['Y'], float).tolist()}
        request.width, request.height = job['solve_width'], job['solve_height']
    else:
        request.image_path, request.hints = str(job['path']), 'header'
    return request


class SolveQueue:
    """Threads that process submissions and run at most ``workers`` solves at once.

    Parameters
    ----------
    store : `~astrometry_query.server.store.Store`
    data_dir : path-like
        Uploads go to ``data_dir/uploads``, job directories to ``data_dir/jobs/<id>``.
    runner : `~astrometry_query.jobs.JobRunner`
        Runs the solves (see `make_runner`).
    workers : int
        Concurrent solves; 0 accepts and queues work without solving it.
    solve_timeout : float
        Per-solve limit, seconds.
    """

    def __init__(self, store, data_dir, *, runner, workers=2, solve_timeout=300.0,
                 fetch_timeout=10.0, ingest_threads=2, index_dir=None, allow_private_urls=False,
                 max_download=None):
        self.store, self.data_dir, self.runner = store, Path(data_dir), runner
        self.jobs_dir, self.uploads_dir = self.data_dir / 'jobs', self.data_dir / 'uploads'
        self.workers, self.solve_timeout = int(workers), solve_timeout
        self.fetch_timeout, self.index_dir = fetch_timeout, index_dir
        self.allow_private_urls, self.max_download = allow_private_urls, max_download
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
            job_id = self._to_tag.get()
            if job_id is None:      # the stop's wake-up
                break
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
        self._to_tag.put(None)
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
        job_dir = self.jobs_dir / str(job['id'])
        started = time.monotonic()
        lines = [f'job {job["id"]} started, input {job["kind"]} {job["original_filename"]!r}']
        try:    # any exception fails the job (as on nova) instead of leaving it "solving"
            if job_dir.exists():    # a re-run after a restart starts clean
                shutil.rmtree(job_dir)
            job_dir.mkdir(parents=True)
            request = request_for(job, self.solve_timeout, self.index_dir,
                                  shared=self.workers > 1)
            request.write(job_dir)
            result = self.runner.submit(job_dir, request).result()
        except WorkerLostError as exc:
            # Its worker ended (killed, or stopped with the server): queued again.
            if self.store.requeue_job(job['id'], MAX_REQUEUES):
                log.warning('job %d: %s; queued again', job['id'], exc)
                self.wake()
                return
            result = {'status': 'failure', 'error': _error_text(exc)}
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
        lines.append(f'solved by {result.get("worker")}, status {result.get("status")}, '
                     f'error {result.get("error")!r}, timings {result.get("timings")}, '
                     f'{time.monotonic() - started:.2f} s')
        (job_dir / WORKER_LOG).write_text('\n'.join(lines) + '\n')
        log.info('job %d: %s in %.2f s', job['id'], result.get('status'),
                 time.monotonic() - started)
        if result.get('status') == 'success':
            self._to_tag.put(job['id'])

    def fill_objects(self, job_id):
        """List the objects in a solved job's field (nova's tags) once, and store them."""
        job_dir = self.jobs_dir / str(job_id)
        try:
            fresh = not (job_dir / EXTRAS_FILE).is_file()
            objects = outputs.objects_in_field(job_dir)
            if fresh or not self.store.has_objects(job_id):
                self.store.set_objects(job_id, objects)
        except Exception as exc:
            log.warning('job %s: listing the objects in the field failed: %s', job_id, exc)
