"""The one way a solve becomes a job: `JobRunner` runs a `SolveRequest` in a
job directory on an Executor and gives back a Future of its outcome.

The local backend, batches and the server all use it:

* a pool of this machine (threads or worker processes) runs `run_job` in
  place: the solve writes its files straight into the job directory;
* any other Executor (a Dask cluster, possibly elsewhere) runs
  `solve_elsewhere`, a plain picklable function whose files come back with
  its result; they are recorded into the job directory when it returns.

Either way the Future resolves to the job's ``result.json`` (a dict), or
raises `~astrometry_query.exceptions.WorkerLostError` when the work was lost
with its worker (the caller may run it again), or
`~astrometry_query.exceptions.LocalSolverNotFoundError`.  `error_for` turns a
failed outcome into the error a caller raises.
"""
import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import (IndexCoverageError, InvalidInputError, LocalSolverNotFoundError,
                          SolveFailedError, SolveTimeoutError, SubmissionError, WorkerLostError)
from ..files import write_atomic
from ..images import open_image
from ..local import pipeline
from .files import ERROR_FILE, RESULT_FILE, note_error, place_input, utc_now, write_json
from .request import SolveRequest

__all__ = ['JobRunner', 'make_executor', 'run_job', 'record_result', 'solve_elsewhere',
           'error_for', 'failure_kind', 'worker_init', 'EXECUTOR_KINDS']

log = logging.getLogger(__name__)

#: What ``executor`` may be named by.
EXECUTOR_KINDS = ('threads', 'processes')
# Header cards that describe a file's layout, not the image.
_STRUCTURE = {'SIMPLE', 'BITPIX', 'NAXIS', 'NAXIS1', 'NAXIS2', 'NAXIS3', 'EXTEND', 'XTENSION',
              'PCOUNT', 'GCOUNT', 'BZERO', 'BSCALE', 'BLANK'}
# Exceptions of the machinery, not of the solve: the work was lost with its worker.
_LOST = {'BrokenProcessPool', 'KilledWorker', 'CommClosedError', 'CancelledError',
         'FutureCancelledError', 'ConnectionError', 'StreamClosedError'}


# -- the job itself ----------------------------------------------------------------------------
def run_job(job_dir, request, image=None):
    """Solve one request in ``job_dir`` and record the outcome (``result.json``).

    A plain, picklable function: pools of this machine run it in place.  An
    image given as data (not a file) is saved in the job as ``input.fits``
    afterwards, for ``new_fits``; a file is copied in.

    Parameters
    ----------
    job_dir : str or `~pathlib.Path`
    request : `SolveRequest` or dict
    image : optional
        The image, when the request does not name it as a file (in memory).

    Returns
    -------
    dict
        What is also written to ``result.json``: ``status`` ("success" or
        "failure"), ``calibration`` (nova's JSON, or None), ``width``,
        ``height``, ``elapsed``, ``timings``, ``attempts``, ``hints``,
        ``timed_out``, ``error``, ``error_kind`` (see ``failure_kind``),
        ``n_sources``, ``source_list``, ``input``, ``original_filename``,
        ``worker``, ``command_line`` (the equivalent ``solve-field`` command,
        see `~astrometry_query.solve_field`), ``finished`` (naive UTC,
        as ``str(datetime)``).  An input
        that could not be fetched is no job: its reason goes to ``error.txt``
        (the submission's error, as nova has it) and no ``result.json`` is
        written.

    Raises
    ------
    LocalSolverNotFoundError
        When astrometry.net or its index files are not installed.  Anything
        else (a bad input, no solution, the time limit) is a "failure".
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    request = request if isinstance(request, SolveRequest) else SolveRequest.from_json(request)
    started = time.perf_counter()
    if request.url and image is None and request.image_path is None:
        try:
            request.image_path, request.input_name = _fetched(job_dir, request.url)
        except Exception as exc:    # the submission's error, as nova records it
            reason = f'{type(exc).__name__}: {exc}'
            (job_dir / ERROR_FILE).write_text(reason)
            return {'status': 'failure', 'error': reason, 'error_kind': 'fetch'}
    solved = error = None
    try:
        solved = pipeline.solve(**request.solve_kwargs(image), work_dir=job_dir)
    except LocalSolverNotFoundError:
        raise
    except Exception as exc:   # a failed job, never an exception (as on nova)
        error = exc
    return record_result(job_dir, solved, request, error=error, image=image,
                         elapsed=time.perf_counter() - started)


def _fetched(job_dir, url):
    """Fetch a URL input into the job: (its path, its name there)."""
    from ..urls import fetch_url
    name = 'input' + ''.join(Path(url.split('?')[0]).suffixes[-2:]).lower()
    target = Path(job_dir) / name
    if not target.exists():
        # The user's own machine asks: private and loopback addresses are allowed.
        fetch_url(url, target, timeout=60, allow_private=True, deadline=None)
    return str(target), name


def solve_elsewhere(request, image=None):
    """Run a request's solve anywhere (a Dask worker): no job directory, its
    files come back in the `~astrometry_query.local.pipeline.SolveResult`."""
    request = request if isinstance(request, SolveRequest) else SolveRequest.from_json(request)
    if request.url and image is None and request.image_path is None:
        import tempfile
        with tempfile.TemporaryDirectory(prefix='aq-fetch-') as folder:
            path, _ = _fetched(folder, request.url)
            return pipeline.solve(**request.solve_kwargs(path))
    return pipeline.solve(**request.solve_kwargs(image))


def failure_kind(solved=None, error=None):
    """Why a solve failed, in one word (``error_kind`` of ``result.json``):
    'index_coverage' (the index files cannot serve the field), 'timeout' (its
    time limit stopped it), 'invalid_input' (the input cannot be used),
    'too_few_sources', 'engine' (the engine failed to run), 'no_solution'
    (the search ended without a match), or 'error' (anything else).  Outside
    a job: 'fetch' (its input could not be fetched) and 'submission' (a
    server could not process the submission)."""
    if error is not None:
        return 'invalid_input' if isinstance(error, InvalidInputError) else 'error'
    if solved.error_kind:
        return solved.error_kind
    return 'timeout' if solved.timed_out else 'no_solution'


def record_result(job_dir, solved, request, *, error=None, image=None, elapsed=None):
    """Write the outcome of a solve into ``job_dir``: the files it made
    elsewhere (``SolveResult.files``), ``result.json``, and the image for
    ``new_fits``.

    Parameters
    ----------
    solved : `~astrometry_query.local.pipeline.SolveResult` or None
        None when the solve raised ``error``.
    request : `SolveRequest`

    Returns
    -------
    dict
        The content of ``result.json`` (see `run_job`).
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    result = {'status': 'failure', 'calibration': None, 'width': request.width or 0,
              'height': request.height or 0, 'elapsed': 0.0, 'timings': {}, 'attempts': [],
              'hints': [], 'refit': None, 'timed_out': False, 'error': None, 'error_kind': None,
              'n_sources': 0, 'source_list': request.source_list, 'input': request.input_name,
              'original_filename': request.original_filename or request.input_name,
              'worker': None}
    if error is not None:
        result['error'] = f'{type(error).__name__}: {error}'
        note_error(job_dir, error)
    if solved is not None:
        for name, content in solved.files.items():
            write_atomic(job_dir / name, content)
        record = solved.to_dict()
        result.update({k: record[k] for k in ('calibration', 'width', 'height', 'timings',
                                              'attempts', 'hints', 'refit', 'tracking',
                                              'timed_out', 'error', 'n_sources', 'worker')})
        result['status'] = 'success' if solved.solved else 'failure'
    if result['status'] != 'success':
        result['error_kind'] = failure_kind(solved, error)
    # The image, for new_fits (not when it failed to open: it may be the fault).
    keep = image if image is not None else (request.image_path if not request.input_name else None)
    if keep is not None and error is None:
        try:
            result['input'] = _save_image(job_dir, keep)
        except Exception as exc:
            note_error(job_dir, exc)
    result['command_line'] = _command_line(request, solved)
    result['elapsed'] = round(elapsed if elapsed is not None
                              else (solved.elapsed if solved is not None else 0.0), 4)
    result['finished'] = str(utc_now())
    write_json(job_dir / RESULT_FILE, result)
    return result


def _command_line(request, solved):
    """The solve-field command equivalent to the job (None if it cannot be said)."""
    from ..solve_field import command_of_request
    hints = getattr(solved, 'search_hints', None) or {}
    try:
        return command_of_request(request, hints=hints, hint_sources=[
            hints.get(k) for k in ('scale_source', 'position_source') if hints.get(k)])
    except Exception as exc:        # never the reason a job's outcome is lost
        log.debug(f'no command line for the job: {exc}')
        return None


def _save_image(job_dir, image):
    """Keep the image in the job (for new_fits): its name there."""
    if isinstance(image, (str, os.PathLike)) and Path(image).is_file():
        return place_input(job_dir, image).name        # not opened (and parsed) once more
    img = open_image(image)
    if img.path is not None:
        return place_input(job_dir, img.path).name
    header = img.header.copy()
    for key in [k for k in header if k in _STRUCTURE]:
        del header[key]
    path = Path(job_dir) / 'input.fits'
    fits.PrimaryHDU(np.asarray(img.data()), header=header).writeto(path, overwrite=True,
                                                                    output_verify='silentfix')
    return path.name


def error_for(result, *, submission_id=None, job_id=None):
    """The error a failed job's outcome means (None when it solved).

    Parameters
    ----------
    result : dict
        ``status``, ``error`` (the reason, in words) and ``error_kind`` (see
        ``failure_kind``): a local job's ``result.json``, or what a server says
        of a failed job.

    Returns
    -------
    `~astrometry_query.exceptions.AstrometryNetError` or None
    """
    if result.get('status') == 'success':
        return None
    ids = {'submission_id': submission_id, 'job_id': job_id}
    reason = result.get('error') or 'no solution was found'
    kind = result.get('error_kind')
    if kind == 'index_coverage':
        error = IndexCoverageError(reason, **ids)
    elif kind == 'timeout':
        error = SolveTimeoutError(f'The solve was stopped: {reason}', resumable=False, **ids)
    elif kind == 'invalid_input':     # the image itself cannot be used
        reason = reason.removeprefix('InvalidInputError: ')
        error = InvalidInputError(reason, **ids)
    elif kind in ('fetch', 'submission'):
        error = SubmissionError(f'The server could not process the submission: {reason}', **ids)
    else:
        error = SolveFailedError(f'The solve failed: {reason.rstrip(".")}.', **ids)
    # Batches show the reason alone in their table, and sort failures by kind.
    error.reason, error.error_kind = reason, kind
    return error


# -- executors -------------------------------------------------------------------------------
def make_executor(executor='threads', workers=None, *, start_method=None, initializer=None,
                  initargs=()):
    """An Executor for solves, and whether the caller owns (and shuts) it.

    Parameters
    ----------
    executor : {'threads', 'processes'}, `concurrent.futures.Executor` or ``distributed.Client``
        'threads': a thread pool of this process; 'processes': worker
        processes (every core used: extraction and the WCS refit hold the
        GIL); an Executor is used as it is; a ``distributed.Client`` gives its
        executor (each solve a task of its own, retried when a worker is lost).
    workers : int, optional
        Threads or processes (default one per core).
    start_method : str, optional
        How worker processes start: 'fork' (default where the platform has
        it: nothing is imported again) or 'forkserver' (a process full of
        threads, such as a server, must not fork).
    initializer, initargs
        Run in each worker process as it starts (default ``worker_init``).

    Returns
    -------
    (executor, owned)
    """
    workers = max(1, int(workers or os.cpu_count() or 1))
    if executor == 'threads':
        return cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix='astrometry-solve'), True
    if executor == 'processes':
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ('fork' if 'fork' in methods else 'spawn')
        if method not in methods:
            method = 'spawn'
        return cf.ProcessPoolExecutor(max_workers=workers,
                                      mp_context=multiprocessing.get_context(method),
                                      initializer=initializer or worker_init,
                                      initargs=initargs if initializer else (os.getpid(),)), True
    if hasattr(executor, 'get_executor') and not isinstance(executor, cf.Executor):
        return executor.get_executor(pure=False, retries=2), False
    if isinstance(executor, str) or not hasattr(executor, 'submit'):
        raise InvalidInputError("executor must be 'threads', 'processes', a "
                                'concurrent.futures.Executor or a distributed.Client, got '
                                f'{executor!r}.')
    return executor, False


def worker_init(parent_pid=None):
    """Set a solve worker process up: its first solve as fast as the next ones
    (the pipeline imported, the index headers read), and its engines ended
    with it when it is terminated or its parent dies (even by kill -9)."""
    from ..local import refine
    from ..local.solver import find_installation
    signal.signal(signal.SIGTERM, _on_sigterm)
    if parent_pid is not None:
        _end_with(parent_pid)
    try:
        refine.warm_up(find_installation().index_files)
    except Exception:       # no solver: the jobs will say so
        pass


def _on_sigterm(signum, frame):
    """A worker process told to stop: its engines go with it."""
    from ..local.solver import stop_all_engines
    stop_all_engines()
    os._exit(1)


def _end_with(parent_pid):
    """End this worker and its engines when ``parent_pid`` is gone.  (With a
    forkserver the worker's own parent is the forkserver, which the workers
    keep alive: the pid that matters is watched.)"""
    def alive():
        try:
            os.kill(parent_pid, 0)
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
    threading.Thread(target=watch, daemon=True, name='parent-watchdog').start()


def _lost(exc):
    """True for failures of the machinery rather than of the solve."""
    from concurrent.futures.process import BrokenProcessPool
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return isinstance(exc, (BrokenProcessPool, ConnectionError)) or bool(names & _LOST)


class _Outcome(cf.Future):
    """The Future a runner gives: the outcome of the job, chained to the
    Future of the work (cancelling it cancels the work)."""

    def __init__(self, work=None):
        super().__init__()
        self.work = work

    def cancel(self):
        if self.work is not None:
            self.work.cancel()
        return super().cancel()


class JobRunner:
    """Runs solves as jobs on an Executor.

    Parameters
    ----------
    executor : see `make_executor`
        Default: a pool of ``workers`` threads.
    workers : int, optional
        Pool size (default one per core).
    start_method, initializer, initargs
        Of worker processes (see `make_executor`).

    Attributes
    ----------
    in_place : bool
        The executor is a pool of this machine: jobs run in their directory.
    """

    def __init__(self, executor='threads', workers=None, *, start_method=None, initializer=None,
                 initargs=()):
        self.executor, self._owned = make_executor(executor, workers, start_method=start_method,
                                                   initializer=initializer, initargs=initargs)
        self.in_place = isinstance(self.executor, (cf.ThreadPoolExecutor,
                                                   cf.ProcessPoolExecutor))
        self.workers = getattr(self.executor, '_max_workers', None) or (os.cpu_count() or 1)

    def __repr__(self):
        return f'<JobRunner {type(self.executor).__name__} x{self.workers}>'

    def submit(self, job_dir, request, image=None):
        """Run a request in a job directory; a Future of its ``result.json``.

        Parameters
        ----------
        job_dir : path-like
            The job's directory (its ``request.json`` already written, or not:
            the request travels with the work).
        request : `SolveRequest`
        image : optional
            The image when the request does not name it as a file.

        Returns
        -------
        `concurrent.futures.Future`
            Resolves to the outcome (dict), or raises `WorkerLostError` or
            `LocalSolverNotFoundError`.
        """
        job_dir = Path(job_dir)
        if self.in_place:
            work = self.executor.submit(run_job, str(job_dir), request, image)
        else:
            work = self.executor.submit(solve_elsewhere, request, image)
        outcome = _Outcome(work)
        started = time.perf_counter()

        def done(future):
            if outcome.cancelled():
                return
            try:
                value = future.result()
            except BaseException as exc:     # noqa: B036 (a cancelled Dask future raises BaseException)
                if isinstance(exc, LocalSolverNotFoundError):
                    outcome.set_exception(exc)
                elif _lost(exc) or future.cancelled():
                    outcome.set_exception(WorkerLostError(
                        f'The solve of job {job_dir.name} was lost with its worker '
                        f'({type(exc).__name__})'))
                elif self.in_place:
                    outcome.set_exception(exc)
                else:       # the solve raised where it ran: a failed job, recorded here
                    outcome.set_result(record_result(job_dir, None, request, error=exc,
                                                     image=image))
                return
            if not self.in_place:
                try:
                    value = record_result(job_dir, value, request, image=image,
                                          elapsed=time.perf_counter() - started)
                except Exception as exc:
                    outcome.set_exception(exc)
                    return
            outcome.set_result(value)
        work.add_done_callback(done)
        return outcome

    def warm_up(self):
        """Start every worker process now, not with the first jobs."""
        if isinstance(self.executor, cf.ProcessPoolExecutor):
            cf.wait([self.executor.submit(os.getpid) for _ in range(self.workers)])

    def terminate(self):
        """Stop now: worker processes end their engines (SIGTERM); queued work is
        cancelled.  A thread pool or a foreign executor is only shut down."""
        processes = list((getattr(self.executor, '_processes', None) or {}).values())
        for process in processes:
            try:
                process.terminate()
            except Exception:
                pass
        self.shutdown()
        for process in processes:
            process.join(timeout=3)

    def shutdown(self, wait=False):
        """Shut the executor down if this runner made it (queued work is cancelled)."""
        if self._owned:
            self.executor.shutdown(wait=wait, cancel_futures=True)
