"""Solving the server's jobs: a bounded pool of threads that claim queued work
from the store (`SolvePool`) and solve it here or on an executor (worker
processes, a Dask cluster: `make_executor`), queuing a solve lost with its
worker again.  Turning submissions into images is `~astrometry_query.server.ingest`.

The database is the queue: threads claim the oldest unstarted row, so work
survives a restart and no request handler ever waits for a solve.  Threads
are enough: sep releases no GIL, but the solve itself runs in an ``astrometry-engine``
subprocess and extraction is a fraction of it.
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
from .ingest import GIVEN_KEY, ingest

__all__ = ['SolvePool', 'make_executor', 'job_task', 'warm_up', 'WORKER_LOG']

log = logging.getLogger('astrometry_query.server')

WORKER_LOG = 'worker.log'


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
