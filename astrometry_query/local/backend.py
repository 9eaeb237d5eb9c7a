"""The local backend: a job store on this machine and a `~astrometry_query.jobs.JobRunner`
that solves in it, behind the `~astrometry_query.backends.Backend` protocol.

A solve is a job: its directory (``<data_dir>/jobs/<id>/``) holds its
request, the engine's files and ``result.json``, so its results can be read
again later, from another process or after a restart.  Waiting is waiting on
the job's Future, never polling; a job found without an outcome and without a
Future (its process ended) is solved again when asked for.
"""
import concurrent.futures as cf
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from astropy.config import get_cache_dir
from astroquery import log

from ..exceptions import (IndexCoverageError, InvalidInputError, JobNotFoundError,
                          ResultNotAvailableError, SolveFailedError, SolveTimeoutError)
from ..index.coverage import check_field
from ..jobs import outputs
from ..jobs.files import ERROR_FILE, REQUEST_FILE, RESULT_FILE, JobStore, read_result, utc_now
from ..jobs.request import SolveRequest
from ..jobs.runner import JobRunner, error_for
from ..progress import StatusLine
from ..results import Job, Submission, make_wcs_header
from .solver import find_installation

__all__ = ['LocalBackend', 'PrunedJobs', 'default_store_dir']

#: Seconds a waiter allows a job whose own limit is the wait's to end by itself
#: (its engine is stopped at that limit; its outcome then says why).
_WAIT_MARGIN = 2.0


def default_store_dir():
    """Where the local backend keeps its jobs by default (astropy's cache directory)."""
    return Path(get_cache_dir()) / 'astrometry_query' / 'local'


@dataclass(frozen=True)
class PrunedJobs:
    """What `LocalBackend.prune` deleted (or, with ``dry_run``, would delete).

    Attributes
    ----------
    job_ids : list of int
        The jobs deleted, oldest first.
    bytes : int
        The disk space their files took.
    kept_unfinished : list of int
        Jobs older than the limit that have no outcome yet (running here or
        in another process, or interrupted and solved again when next asked
        for): never deleted.
    dry_run : bool
        True when nothing was deleted.
    """
    job_ids: list
    bytes: int
    kept_unfinished: list
    dry_run: bool = False

    @property
    def count(self):
        """How many jobs were deleted."""
        return len(self.job_ids)


class LocalBackend:
    """Solve with the local astrometry.net installation.

    Parameters
    ----------
    data_dir : path-like, optional
        Where job directories are kept (default `default_store_dir`).
    index_dir : path-like or list, optional
        Directories of index files (a string may join several with
        ``os.pathsep``); default: those of /etc/astrometry.cfg and the user's
        index directory, looked up again for each solve, so files fetched or
        built meanwhile are used.
    executor : optional
        Where single solves run (see `~astrometry_query.jobs.make_executor`);
        default one thread per core.  Batches bring their own.
    job_timeout : float, optional
        Default time limit of one solve, seconds.
    """
    name = 'local'
    long_poll = 0.0
    #: Header hints are read where the job runs (in parallel, in a batch).
    reads_header_hints = True

    def __init__(self, data_dir=None, *, index_dir=None, executor='threads', job_timeout=300.0):
        self.index_setting = index_dir or None
        find_installation(index_dir=self.index_setting)    # fails early when missing
        self.data_dir_setting = data_dir or None    # as asked (None: the default store)
        self.data_dir = Path(data_dir or default_store_dir())
        self.store = JobStore(self.data_dir / 'jobs')
        self.jobs_dir = self.store.root
        self._executor_choice = executor
        self._runner = None
        self._futures = {}
        self._lock = threading.Lock()
        self.job_timeout = job_timeout
        #: Engines a blind search is split across (None: automatic; see
        #: `~astrometry_query.local.pipeline.solve`).
        self.search_workers = None

    def __repr__(self):
        return f'<LocalBackend data_dir={str(self.data_dir)!r}>'

    @property
    def installation(self):
        """The `~astrometry_query.local.solver.Installation` in use now."""
        return find_installation(index_dir=self.index_setting)

    @property
    def index_dir(self):
        """The index directories in use now (list of str)."""
        return [str(d) for d in self.installation.index_dirs]

    @property
    def runner(self):
        """The `~astrometry_query.jobs.JobRunner` of single solves (made when first needed)."""
        with self._lock:
            if self._runner is None:
                self._runner = JobRunner(self._executor_choice)
            return self._runner

    def close(self):
        with self._lock:
            if self._runner is not None:
                self._runner.shutdown()
                self._runner = None

    def cache_scope(self):
        # A cached header names a job of this store, solved with these index files.
        return {'backend': 'local', 'index': self.index_dir, 'store': str(self.data_dir)}

    def hint_attempts(self, settings, hints):
        # One job tries the hints narrowest first and falls back by itself.
        return [(settings, hints)]

    def check_coverage(self, settings, width, height, hints=None):
        """Refuse, before any job exists, a field that no installed index file
        can solve (`~astrometry_query.index.coverage.check_field`), from the
        settings or from trusted header hints.  When a hint that may be wrong
        (``header_hints='verify'``) points outside the installed files, warn
        now and let the solve search without it.

        Raises
        ------
        IndexCoverageError
            Saying what to fetch and the command that fetches it.
        """
        inst = self.installation
        coverage = check_field(inst.index_files, int(width), int(height), settings, hints,
                               index_dirs=inst.index_dirs,
                               explicit_dirs=self.index_setting is not None)
        if coverage.ok:
            return coverage
        if coverage.hard:
            raise IndexCoverageError(coverage.message, command=coverage.command,
                                     needed_scales=coverage.needed_scales)
        log.warning(f'{coverage.reason} Searching without that header hint, in case the header '
                    f'is wrong. {coverage.fix}')
        return coverage

    # -- jobs ---------------------------------------------------------------------------------
    def _job_dir(self, job_id):
        path = self.store.path(job_id)
        if not (path / REQUEST_FILE).is_file():
            raise JobNotFoundError(f'There is no local job {job_id} in {self.jobs_dir}.',
                                   job_id=int(job_id), submission_id=int(job_id))
        return path

    def request(self, job_id):
        """The `~astrometry_query.jobs.SolveRequest` of a job."""
        return SolveRequest.read(self._job_dir(job_id))

    def result(self, job_id):
        """The job's ``result.json`` (timings, attempts, hints...), or None while running."""
        return read_result(self._job_dir(job_id))

    def make_request(self, settings, *, image=None, sources=None, width=None, height=None,
                     hints=None, fwhm=3.0, detect_threshold=5.0, timeout=None,
                     original_filename=None, url=None, reference=None, reference_sources=None):
        """A `~astrometry_query.jobs.SolveRequest` for this store's solves."""
        path = getattr(image, 'path', None)
        return SolveRequest(
            settings=dict(settings), hints=hints, fwhm=fwhm, detect_threshold=detect_threshold,
            timeout=float(timeout) if timeout else self.job_timeout, index_dir=self.index_setting,
            width=width, height=height, image_path=str(path) if path else None,
            search_workers=self.search_workers,
            hdu=getattr(image, 'hdu', None), sources=sources, url=url, reference=reference,
            reference_sources=reference_sources,
            original_filename=original_filename or (path.name if path else None))

    def create_job(self, request):
        """A new job directory holding ``request`` (nothing runs yet); its id."""
        job_id, job_dir = self.store.new()
        request.write(job_dir)
        return job_id

    def start(self, job_id, image=None, runner=None):
        """Run a job on ``runner`` (default this backend's); the Future of its
        outcome.  A job running is not started twice, and a job that has its
        outcome already is not run again (its Future is done)."""
        with self._lock:
            running = self._futures.get(int(job_id))
        if running is not None and not running.done():
            return running
        job_dir = self._job_dir(job_id)
        if self._finished(job_id):
            future = cf.Future()
            future.set_result(self.outcome(job_id))
            return future
        request = SolveRequest.read(job_dir)
        request.index_dir = self.index_setting    # as configured now: files may have been added
        future = (runner or self.runner).submit(job_dir, request, image=_in_memory(image))
        with self._lock:
            self._futures[int(job_id)] = future
        future.add_done_callback(lambda done: self._forget(int(job_id), done))
        return future

    def _forget(self, job_id, future):
        """Drop a job's Future once its outcome is on disk: a process that solves
        all night must not keep every job's request and outcome in memory.  (A
        Future that failed is kept: waiting on it again says why.)"""
        if future.cancelled() or future.exception() is not None:
            return
        with self._lock:
            if self._futures.get(job_id) is future:
                del self._futures[job_id]

    def future(self, job_id):
        """The Future of a job's outcome: the running one, or, for a job found
        without an outcome nor a Future (interrupted by a restart), a new run."""
        with self._lock:
            future = self._futures.get(int(job_id))
        if future is None and not self._finished(job_id):
            future = self.start(job_id)
        return future

    def _finished(self, job_id):
        job_dir = self._job_dir(job_id)
        return (job_dir / RESULT_FILE).is_file() or (job_dir / ERROR_FILE).is_file()

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, request, image=None):
        """Check a request's field against the installed index files, then start
        it as a new job; its `Submission` at once (its id is the job id).

        Raises
        ------
        IndexCoverageError
            Before any job exists, when the field is one no installed index
            file can solve (see `check_coverage`).
        """
        shape = getattr(image, 'shape', None)
        size = (shape[1], shape[0]) if shape is not None and len(shape) == 2 else (
            request.width, request.height)
        hints = request.hints
        if all(size):
            from ..hints import SolveHints
            self.check_coverage(request.settings, *size,
                                hints=SolveHints.from_dict(hints) if isinstance(hints, dict) else None)
        job_id = self.create_job(request)
        self.start(job_id, image=image)
        return Submission(id=job_id, jobs=[job_id], user_images=[job_id],
                          processing_started=utc_now())

    def submit_image(self, image, settings, *, hints=None, fwhm=3.0, detect_threshold=5.0,
                     timeout=None, force_image_upload=False, verbose=True, cpu_slot=None,
                     filename=None):
        # Extracted here, where it is solved: force_image_upload and cpu_slot play no part.
        from ..images import open_image
        img = open_image(image)
        request = self.make_request(settings, image=img, hints=hints, fwhm=fwhm,
                                    detect_threshold=detect_threshold, timeout=timeout,
                                    original_filename=filename)
        return self.submit(request, image=img)

    def submit_source_list(self, x, y, settings, *, width, height, timeout=None, flux=None):
        sources = {'x': x, 'y': y} if flux is None else {'x': x, 'y': y, 'flux': flux}
        return self.submit(self.make_request(settings, sources=sources, width=int(width),
                                             height=int(height), timeout=timeout,
                                             original_filename='json-xy'))

    def submit_url(self, url, settings, *, timeout=None):
        name = url.split('?')[0].rstrip('/').rsplit('/', 1)[-1] or 'download'
        return self.submit(self.make_request(settings, timeout=timeout, original_filename=name,
                                             url=url))

    # -- waiting: on the Future ---------------------------------------------------------------
    def wait(self, submission_id=None, *, job_id=None, solve_timeout, verbose=True,
             progress=None):
        """Wait for a job's Future (or its result file); returns its `Job`.

        Raises
        ------
        SolveFailedError, SolveTimeoutError, IndexCoverageError, InvalidInputError
            Carrying the job and submission ids.
        """
        job_id = int(job_id if job_id is not None else submission_id)
        ids = {'job_id': job_id, 'submission_id': job_id}
        future = self.future(job_id)
        if future is not None:
            if progress is not None:
                progress('solving', job_id, job_id)
            job_limit = float(self.request(job_id).timeout or math.inf)
            # A job whose own limit is (about) the wait's says itself why it stopped.
            grace = _WAIT_MARGIN if job_limit <= solve_timeout + _WAIT_MARGIN else 0.0
            deadline = time.monotonic() + solve_timeout + grace
            with StatusLine(verbose) as line:
                while True:
                    line.update(f'job {job_id}: solving')
                    try:
                        future.result(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                        break
                    except cf.TimeoutError:
                        if time.monotonic() >= deadline:
                            raise SolveTimeoutError(
                                f'Solve timed out after {solve_timeout:g} s (job {job_id} '
                                'is still running)', **ids) from None
                    except Exception as exc:
                        raise SolveFailedError(f'The solve failed: {type(exc).__name__}: {exc}',
                                               **ids) from exc
        status = self.job_status(job_id)
        if progress is not None:
            progress(status, job_id, job_id)
        if status == 'success':
            return self.job_info(job_id, extras=False)
        raise error_for(self.outcome(job_id), **ids)

    def outcome(self, job_id):
        """A finished job's outcome: its ``result.json``, or, for an input that
        could not be had, the submission's error as a failed outcome."""
        job_dir = self._job_dir(job_id)
        if (job_dir / ERROR_FILE).exists():
            return {'status': 'failure', 'error': (job_dir / ERROR_FILE).read_text(),
                    'error_kind': 'fetch'}
        return read_result(job_dir) or {'status': 'failure', 'error': 'the job has no outcome'}

    # -- status ---------------------------------------------------------------------------------
    def job_times(self, job_id):
        """When a job was submitted and when it ended, as naive UTC datetimes
        (nova's convention); the end is None while the job has no outcome.

        Returns
        -------
        submitted, finished : `~datetime.datetime` or None
        """
        job_dir = self._job_dir(job_id)
        submitted = SolveRequest.read(job_dir).submitted
        submitted = (datetime.fromisoformat(submitted) if submitted
                     else _utc_mtime(job_dir / REQUEST_FILE))
        result = read_result(job_dir)
        if result is not None:      # written once, when the job ended
            finished = result.get('finished')
            return submitted, (datetime.fromisoformat(finished) if finished
                               else _utc_mtime(job_dir / RESULT_FILE))
        error = job_dir / ERROR_FILE       # its input could not be fetched
        return submitted, (_utc_mtime(error) if error.exists() else None)

    def submission(self, submission_id):
        job_dir = self._job_dir(submission_id)
        started, finished = self.job_times(submission_id)
        if (job_dir / ERROR_FILE).exists():
            return Submission(id=int(submission_id), processing_started=started,
                              processing_finished=finished,
                              error_message=(job_dir / ERROR_FILE).read_text())
        result = read_result(job_dir)
        sub = Submission(id=int(submission_id), processing_started=started,
                         processing_finished=finished,
                         user_images=[int(submission_id)], jobs=[int(submission_id)])
        if result and result.get('calibration'):
            sub.job_calibrations = [(int(submission_id), int(submission_id))]
        return sub

    def submission_id_of(self, job_id):
        return int(job_id)        # one submission, one job, one id

    def job_status(self, job_id, submission_id=None):
        job_dir = self._job_dir(job_id)
        result = read_result(job_dir)
        if result is not None:
            return result['status']
        if (job_dir / ERROR_FILE).exists():
            return 'failure'
        future = self.future(job_id)
        return 'solving' if future is not None and future.running() else 'processing'

    def job_info(self, job_id, submission_id=None, *, cache=False, extras=True):
        """The job as a `Job`; ``extras=False`` skips listing the objects in the
        field (plot-constellations) when they were not listed yet."""
        job_dir = self._job_dir(job_id)
        result = read_result(job_dir) or {}
        status = result.get('status') or self.job_status(job_id)
        objects = []
        if result.get('calibration') and (extras or (job_dir / 'extras.json').is_file()):
            objects = outputs.objects_in_field(job_dir)
        payload = {'objects_in_field': objects, 'machine_tags': objects, 'tags': objects,
                   'status': status, 'original_filename': self.request(job_id).original_filename}
        if result.get('calibration'):
            payload['calibration'] = result['calibration']
        payload['command_line'] = result.get('command_line')
        if status == 'failure':
            payload['error_message'] = self.failure_reason(job_id)
        return Job.from_api(job_id, payload, int(job_id))

    def failure_reason(self, job_id):
        """Why a job failed, in words."""
        return self.outcome(job_id).get('error') or 'no solution was found'

    # -- results --------------------------------------------------------------------------------
    def _solved_dir(self, job_id):
        job_dir = self._job_dir(job_id)
        result = read_result(job_dir)
        if not result or not result.get('calibration'):
            raise ResultNotAvailableError(f'Local job {job_id} is not solved.', job_id=int(job_id))
        return job_dir, result

    def calibration(self, job_id, *, cache=False):
        return self._solved_dir(job_id)[1]['calibration']

    def annotations(self, job_id, *, nbright=None, cache=False):
        annotations = outputs.annotations(self._solved_dir(job_id)[0])
        if nbright is not None:
            stars = [a for a in annotations if a.get('type') == 'bright'][:int(nbright)]
            annotations = [a for a in annotations if a.get('type') != 'bright' or a in stars]
        return annotations

    def objects_in_field(self, job_id, *, cache=False):
        return outputs.objects_in_field(self._solved_dir(job_id)[0])

    def tags(self, job_id, *, machine=False):
        try:
            return self.objects_in_field(job_id)
        except ResultNotAvailableError:
            return []

    def my_jobs(self):
        return self.store.ids()

    def jobs_by_tag(self, tag, exact=False):
        wanted = tag.strip().lower()
        found = []
        for job_id in self.my_jobs():
            tags = [t.lower() for t in self.tags(job_id)]
            if (wanted in tags) if exact else any(wanted in t for t in tags):
                found.append(job_id)
        return found

    def download(self, job_id, kind, *, cache=False):
        try:
            return outputs.result_file(self._job_dir(job_id), kind).read_bytes()
        except FileNotFoundError as exc:
            raise ResultNotAvailableError(f'Local job {job_id} has no {kind} file: {exc}',
                                          job_id=int(job_id)) from None
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None

    # -- housekeeping ----------------------------------------------------------------------------
    def prune(self, older_than, *, dry_run=False):
        """Delete the jobs that ended more than ``older_than`` ago.

        A job's age is counted from when it ended (see `job_times`).  A job
        with no outcome yet is never deleted, however old: it may be running
        here or in another process, or be solved again when next asked for.
        Ids of deleted jobs are never given to new jobs.

        Parameters
        ----------
        older_than : `~datetime.timedelta`
            Jobs that ended before ``now - older_than`` are deleted.
        dry_run : bool
            Only say what would be deleted.

        Returns
        -------
        PrunedJobs
            The jobs deleted and the disk space their files took.
        """
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidInputError(f'older_than must be a timedelta of 0 or more, got '
                                    f'{older_than!r}.')
        cutoff = utc_now() - older_than
        old, unfinished = [], []
        for job_id in self.my_jobs():
            try:
                submitted, finished = self.job_times(job_id)
            except (JobNotFoundError, OSError, ValueError):      # pruned meanwhile, or damaged
                continue
            if finished is None:
                if submitted < cutoff:
                    unfinished.append(job_id)
            elif finished < cutoff:
                old.append((finished, job_id))
        freed, deleted = 0, []
        for _, job_id in sorted(old):
            job_dir = self.store.path(job_id)
            size = _tree_size(job_dir)
            if not dry_run:
                self.store.note_pruned(job_id)
                # Renamed first: the job is gone at once for every reader, never half there.
                doomed = self.jobs_dir / f'.pruning-{job_id}'
                try:
                    job_dir.rename(doomed)
                except OSError:     # deleted meanwhile by another prune
                    continue
                shutil.rmtree(doomed, ignore_errors=True)
            freed += size
            deleted.append(job_id)
        if deleted and not dry_run:
            log.debug(f'Deleted {len(deleted)} local jobs that ended before {cutoff:%Y-%m-%d %H:%M} '
                      f'UTC, {freed / 1e6:.1f} MB, from {self.jobs_dir}.')
        return PrunedJobs(job_ids=deleted, bytes=freed, kept_unfinished=unfinished,
                          dry_run=bool(dry_run))

    # -- batches ----------------------------------------------------------------------------------
    def batch(self, *, executor=None, max_concurrency=None, timeout, fwhm=3.0,
              detect_threshold=5.0, force_image_upload=None, submitted=None):
        """A `~astrometry_query.backends.BatchRun` solving in this store on
        ``executor`` (default: worker processes, one per core, see
        `default_batch_executor`)."""
        return LocalBatch(self, executor=executor, max_concurrency=max_concurrency,
                          timeout=timeout, fwhm=fwhm, detect_threshold=detect_threshold,
                          submitted=submitted)


def default_batch_executor(n_items, workers=None):
    """Where a local batch solves when no executor is given: worker processes.

    sep (the extraction) and the WCS refit hold the GIL, so threads overlap
    only the engine runs (measured: 1.3-1.4x on 2 cores, against 1.9x for
    processes).  Workers are forked (no re-import, no ``__main__`` guard
    needed in scripts) where the platform can; one input, or one core, runs
    in a thread.
    """
    workers = workers or os.cpu_count() or 1
    return 'threads' if n_items < 2 or workers < 2 else 'processes'


class LocalBatch:
    """Many inputs solved in a local job store: each a job on the batch's
    `~astrometry_query.jobs.JobRunner`, at most ``window`` in flight."""

    def __init__(self, backend, *, executor, max_concurrency, timeout, fwhm, detect_threshold,
                 submitted):
        self.backend, self.timeout = backend, timeout
        self.fwhm, self.detect_threshold, self.submitted = fwhm, detect_threshold, submitted
        self._executor, self._max = executor, max_concurrency
        self._runner = None
        self._running, self._ready = {}, []

    @property
    def window(self):
        workers = self._runner.workers if self._runner is not None else (os.cpu_count() or 1)
        return self._max or 2 * workers

    @property
    def in_flight(self):
        return len(self._running) + len(self._ready)

    def _runner_for(self, n_items=2):
        if self._runner is None:
            choice = self._executor or default_batch_executor(n_items, self._max)
            self._runner = JobRunner(choice, self._max)
        return self._runner

    def submit(self, index, raw, prepare):
        item, known = prepare(index, raw)
        if known is not None:
            self._ready.append((item, known))
            return
        backend = self.backend
        if item.job_id is None or not (backend.store.path(item.job_id) / REQUEST_FILE).is_file():
            request = backend.make_request(
                item.settings, image=item.image, sources=item.sources, width=item.width,
                height=item.height, hints=item.hints, fwhm=self.fwhm,
                detect_threshold=self.detect_threshold, timeout=self.timeout,
                reference=item.reference, reference_sources=item.reference_sources)
            if request.search_workers is None and self.window > 1:
                request.search_workers = 1      # the batch keeps every core busy already
            item.job_id = backend.create_job(request)
        item.submission_id = item.job_id
        if self.submitted is not None:
            self.submitted(item)
        item.started = time.monotonic()
        self._running[backend.start(item.job_id, image=item.image, runner=self._runner_for())] = item

    def done(self, timeout=None):
        if self._ready or not self._running:
            ready, self._ready = self._ready, []
            return ready
        finished, _ = cf.wait(list(self._running), timeout=timeout,
                              return_when=cf.FIRST_COMPLETED)
        out = []
        for future in finished:
            item = self._running.pop(future)
            ids = {'job_id': item.job_id, 'submission_id': item.job_id}
            try:
                result = future.result()
            except Exception as exc:       # a lost worker, a broken input...
                out.append((item, exc))
                continue
            error = error_for(result, **ids)
            if error is not None:
                out.append((item, error))
            else:
                out.append((item, make_wcs_header(self.backend.download(item.job_id, 'wcs'),
                                                  item.job_id, item.job_id)))
        return out

    def close(self):
        """Stop: what is still running is abandoned (its engines stopped)."""
        running = bool(self._running)
        for future in self._running:
            future.cancel()
        self._running.clear()
        if self._runner is not None:
            # A batch left early (stopped, interrupted) must not keep engines busy.
            self._runner.terminate() if running else self._runner.shutdown()


def _in_memory(image):
    """The image to send with a job: only one that is not a file (a file is
    named by the request and read where the job runs)."""
    if image is None or getattr(image, 'path', None) is not None:
        return None
    return image


def _utc_mtime(path):
    """A file's modification time as a naive UTC datetime."""
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).replace(tzinfo=None)


def _tree_size(folder):
    """Bytes taken by the files under a folder."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
