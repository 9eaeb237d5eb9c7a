"""The local backend: solves on this machine, behind the same methods as the
nova backend.

A solve is `~astrometry_query.local.jobs.run_job` run on an Executor (a
thread pool by default); waiting is waiting on its Future, never polling.
Each job lives in its own directory (``<data_dir>/jobs/<id>/``) with its
request, the engine's files and ``result.json``, so results can be read
again later, from another process or after a restart.
"""
import json
import math
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from astropy.config import get_cache_dir
from astroquery import log

from ..exceptions import (IndexCoverageError, InvalidInputError, JobNotFoundError,
                          ResultNotAvailableError, SolveFailedError, SolveTimeoutError)
from ..index.coverage import check_field
from ..polling import StatusLine
from ..results import Job, Submission
from . import jobs as local_jobs
from .solver import find_installation

__all__ = ['LocalBackend', 'PrunedJobs', 'default_data_dir']

REQUEST_FILE = 'request.json'
#: In the jobs directory: the highest job id pruned, so that ids are never reused
#: (a header from the solution cache, or a script, may still name that job).
PRUNED_ID_FILE = '.highest-pruned-id'
#: Seconds a waiter allows a job whose own limit is the wait's to end by itself
#: (its engine is stopped at that limit; its outcome then says why).
_WAIT_MARGIN = 2.0


def default_data_dir():
    return Path(get_cache_dir()) / 'astrometry_query' / 'local'


_now = local_jobs.utc_now


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
        Where job directories are kept.
    index_dir : path-like or list, optional
        Directories of index files (a string may join several with
        ``os.pathsep``); default: those of /etc/astrometry.cfg and the user's
        index directory, looked up again for each solve, so files fetched or
        built meanwhile are used.
    executor : `concurrent.futures.Executor`, optional
        Runs the solves; default one thread per core.
    job_timeout : float, optional
        Default time limit of one solve, seconds.
    """
    name = 'local'

    def __init__(self, data_dir=None, *, index_dir=None, executor=None, job_timeout=300.0):
        self.index_setting = index_dir or None
        find_installation(index_dir=self.index_setting)    # fails early when missing
        self.data_dir_setting = data_dir or None    # as asked (None: the default store)
        self.data_dir = Path(data_dir or default_data_dir())
        self.jobs_dir = self.data_dir / 'jobs'
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._executor = executor
        self._own_executor = executor is None
        self._futures = {}
        self._lock = threading.Lock()
        self._next_id = None
        self.job_timeout = job_timeout

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

    def check_coverage(self, args, width, height, hints=None):
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
        coverage = check_field(inst.index_files, int(width), int(height), args, hints,
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

    @property
    def executor(self):
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                    thread_name_prefix='astrometry-local')
            return self._executor

    def close(self):
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # -- job directories ----------------------------------------------------
    def _new_job(self):
        with self._lock:
            if self._next_id is None:     # the store is listed once, then counted on
                existing = [int(p.name) for p in self.jobs_dir.iterdir() if p.name.isdigit()]
                self._next_id = max(existing + [self._highest_pruned_id()], default=0) + 1
            job_id = self._next_id
            while True:
                try:
                    (self.jobs_dir / str(job_id)).mkdir()
                    self._next_id = job_id + 1
                    return job_id, self.jobs_dir / str(job_id)
                except FileExistsError:   # another process took it
                    job_id += 1

    def _job_dir(self, job_id):
        path = self.jobs_dir / str(int(job_id))
        if not (path / REQUEST_FILE).is_file():
            raise JobNotFoundError(f'There is no local job {job_id} in {self.jobs_dir}.',
                                   job_id=int(job_id), submission_id=int(job_id))
        return path

    def _request(self, job_id):
        return json.loads((self._job_dir(job_id) / REQUEST_FILE).read_text())

    # -- submitting ---------------------------------------------------------
    def submit(self, args, *, image=None, sources=None, width=None, height=None, hints=None,
               fwhm=3.0, detect_threshold=5.0, timeout=None, original_filename=None, url=None):
        """Start a solve; returns its `Submission` at once (its id is the job id).

        ``image`` is an `~astrometry_query.images.Image` (or anything
        `~astrometry_query.images.open_image` takes); ``sources`` a dict of
        ``x``, ``y`` [, ``flux``] arrays with ``width`` and ``height``.

        Raises
        ------
        IndexCoverageError
            Before any job exists, when the settings ask for a field no
            installed index file can solve (see `check_coverage`).
        """
        shape = getattr(image, 'shape', None)
        size = (shape[1], shape[0]) if shape is not None and len(shape) == 2 else (width, height)
        if all(size):
            self.check_coverage(args, *size, hints=hints if hasattr(hints, 'scale') else None)
        job_id = self.create_job(args, image=image, sources=sources, width=width, height=height,
                                 hints=hints, fwhm=fwhm, detect_threshold=detect_threshold,
                                 timeout=timeout, original_filename=original_filename, url=url)
        self._start(job_id, image=image, sources=sources)
        return Submission(id=job_id, jobs=[job_id], user_images=[job_id],
                          processing_started=_now())

    def create_job(self, args, *, image=None, sources=None, width=None, height=None, hints=None,
                   fwhm=3.0, detect_threshold=5.0, timeout=None, original_filename=None,
                   url=None):
        """Make a job directory with its request (nothing runs yet); its id."""
        job_id, job_dir = self._new_job()
        timeout = float(timeout) if timeout else self.job_timeout
        path = getattr(image, 'path', None)
        request = {'args': args,
                   'hints': hints.to_dict() if hasattr(hints, 'to_dict') else (hints or None),
                   'fwhm': fwhm, 'detect_threshold': detect_threshold,
                   'source_list': sources is not None, 'width': width, 'height': height,
                   'image_path': str(path) if path else None, 'hdu': getattr(image, 'hdu', None),
                   'url': url, 'original_filename': original_filename, 'timeout': timeout,
                   'submitted': str(_now())}
        if sources is not None:
            request['sources'] = {k: [float(v) for v in sources[k]]
                                  for k in ('x', 'y', 'flux') if k in sources}
        local_jobs._write_json(job_dir / REQUEST_FILE, request)
        return job_id

    def solve_kwargs(self, job_id, image=None, sources=None):
        """Keyword arguments of `~astrometry_query.local.pipeline.solve` for a job,
        to run it anywhere (a process pool, a Dask worker): no work directory, so
        its files come back in the result; `record` writes them into the job."""
        task = self._task(job_id, image, sources)
        for key in ('job_dir', 'original_filename'):
            task.pop(key)
        task['settings'] = task.pop('args')
        return task

    def record(self, job_id, solved, *, error=None, image=None):
        """Write a solve made elsewhere (a `SolveResult`, or the exception it
        raised) into the job's directory; returns its ``result.json``."""
        request = self._request(job_id)
        return local_jobs.record_result(
            self.jobs_dir / str(int(job_id)), solved, error=error,
            image=image if image is not None else request.get('image_path'),
            sources=request.get('sources'), width=request['width'], height=request['height'],
            original_filename=request['original_filename'])

    def _task(self, job_id, image=None, sources=None):
        """The keyword arguments of run_job for a job (from its request)."""
        request = self._request(job_id)
        job_dir = self.jobs_dir / str(job_id)
        if image is None and request.get('image_path'):
            image = request['image_path']
        if sources is None and request.get('sources'):
            sources = request['sources']
        return dict(image=image, sources=sources, width=request['width'],
                    height=request['height'], args=request['args'], hints=request['hints'],
                    fwhm=request['fwhm'], detect_threshold=request['detect_threshold'],
                    timeout=request['timeout'], index_dir=self.index_setting,
                    original_filename=request['original_filename'], job_dir=str(job_dir))

    def _start(self, job_id, image=None, sources=None):
        with self._lock:
            running = self._futures.get(job_id)
            if running is not None and not running.done():
                return running
        task = self._task(job_id, image, sources)
        future = self.executor.submit(_run_task, task, self._request(job_id).get('url'))
        with self._lock:
            self._futures[job_id] = future
        return future

    def submit_image(self, image, args, *, filename=None, timeout=None, hints=None, **kw):
        from ..images import open_image
        img = open_image(image)
        return self.submit(args, image=img, hints=hints, timeout=timeout,
                           original_filename=filename or (img.path.name if img.path else None),
                           **kw)

    def submit_source_list(self, x, y, args, *, width, height, timeout=None, flux=None):
        sources = {'x': x, 'y': y} if flux is None else {'x': x, 'y': y, 'flux': flux}
        return self.submit(args, sources=sources, width=int(width), height=int(height),
                           timeout=timeout, original_filename='json-xy')

    def submit_url(self, url, args, *, timeout=None):
        name = url.split('?')[0].rstrip('/').rsplit('/', 1)[-1] or 'download'
        return self.submit(args, timeout=timeout, original_filename=name, url=url)

    # -- waiting: on the Future ---------------------------------------------
    def wait(self, job_id, *, solve_timeout, verbose=True, progress=None):
        """Wait for a job's Future (or its result file); returns its `Job`.

        Raises
        ------
        SolveFailedError, SolveTimeoutError
            Carrying the job and submission ids.
        """
        job_id = int(job_id)
        ids = {'job_id': job_id, 'submission_id': job_id}
        self._job_dir(job_id)
        with self._lock:
            future = self._futures.get(job_id)
        if future is None and local_jobs.read_result(self.jobs_dir / str(job_id)) is None:
            future = self._start(job_id)       # interrupted by a restart: solve it again
        if future is not None:
            if progress is not None:
                progress('solving', job_id, job_id)
            job_limit = float(self._request(job_id).get('timeout') or math.inf)
            grace = _WAIT_MARGIN if job_limit <= solve_timeout else 0.0
            deadline = time.monotonic() + solve_timeout + grace
            with StatusLine(verbose) as line:
                while True:
                    line.update(f'job {job_id}: solving')
                    try:
                        future.result(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                        break
                    except FutureTimeout:
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
        reason = self.failure_reason(job_id)
        if self.failure_kind(job_id) == 'index_coverage':   # more telling than a timeout
            raise IndexCoverageError(reason, **ids)
        if self.timed_out(job_id):
            raise SolveTimeoutError(f'The solve was stopped: {reason}', resumable=False, **ids)
        if reason.startswith('InvalidInputError: '):    # the image itself cannot be used
            raise InvalidInputError(reason[len('InvalidInputError: '):], **ids)
        raise SolveFailedError(f'The solve failed: {reason}.', **ids)

    # -- status -------------------------------------------------------------
    def job_times(self, job_id):
        """When a job was submitted and when it ended, as naive UTC datetimes
        (nova's convention); the end is None while the job has no outcome.

        Returns
        -------
        submitted, finished : `~datetime.datetime` or None
        """
        job_dir = self._job_dir(job_id)
        submitted = self._request(job_id).get('submitted')
        submitted = (datetime.fromisoformat(submitted) if submitted
                     else _utc_mtime(job_dir / REQUEST_FILE))
        result = local_jobs.read_result(job_dir)
        if result is not None:      # written once, when the job ended
            finished = result.get('finished')
            return submitted, (datetime.fromisoformat(finished) if finished
                               else _utc_mtime(job_dir / local_jobs.RESULT_FILE))
        error = job_dir / 'error.txt'       # its input could not be fetched
        return submitted, (_utc_mtime(error) if error.exists() else None)

    def submission(self, submission_id):
        job_dir = self._job_dir(submission_id)
        error = job_dir / 'error.txt'
        started, finished = self.job_times(submission_id)
        if error.exists():
            return Submission(id=int(submission_id), processing_started=started,
                              processing_finished=finished, error_message=error.read_text())
        result = local_jobs.read_result(job_dir)
        sub = Submission(id=int(submission_id), processing_started=started,
                         processing_finished=finished,
                         user_images=[int(submission_id)], jobs=[int(submission_id)])
        if result and result.get('calibration'):
            sub.job_calibrations = [(int(submission_id), int(submission_id))]
        return sub

    def job_status(self, job_id, submission_id=None):
        job_dir = self._job_dir(job_id)
        result = local_jobs.read_result(job_dir)
        if result is not None:
            return result['status']
        if (job_dir / 'error.txt').exists():
            return 'failure'
        with self._lock:
            future = self._futures.get(int(job_id))
        if future is None or future.done():
            self._start(int(job_id))       # interrupted by a restart: solve it again
            return 'processing'
        return 'solving' if future.running() else 'processing'

    def job_info(self, job_id, submission_id=None, *, cache=False, extras=True):
        """The job as a `Job`; ``extras=False`` skips listing the objects in the
        field (plot-constellations) when they were not listed yet."""
        job_dir = self._job_dir(job_id)
        result = local_jobs.read_result(job_dir) or {}
        request = self._request(job_id)
        status = result.get('status') or self.job_status(job_id)
        objects = []
        if result.get('calibration') and (extras or (job_dir / local_jobs.EXTRAS_FILE).is_file()):
            objects = local_jobs.objects_in_field(job_dir)
        payload = {'objects_in_field': objects, 'machine_tags': objects, 'tags': objects,
                   'status': status, 'original_filename': request.get('original_filename')}
        if result.get('calibration'):
            payload['calibration'] = result['calibration']
        return Job.from_api(job_id, payload, int(job_id))

    def failure_reason(self, job_id):
        job_dir = self._job_dir(job_id)
        error = job_dir / 'error.txt'
        if error.exists():
            return error.read_text()
        result = local_jobs.read_result(job_dir) or {}
        if result.get('timed_out') and not result.get('error_kind') and not result.get('error'):
            return f'the solver ran out of time ({self._request(job_id)["timeout"]:g} s)'
        return result.get('error') or 'no solution was found'

    def failure_kind(self, job_id):
        """``'index_coverage'`` when the index files could not solve the job's field."""
        return (local_jobs.read_result(self._job_dir(job_id)) or {}).get('error_kind')

    def timed_out(self, job_id):
        """True when the solve was stopped by its time limit."""
        return bool((local_jobs.read_result(self._job_dir(job_id)) or {}).get('timed_out'))

    def result(self, job_id):
        """The job's ``result.json`` (timings, attempts, hints...), or None while running."""
        return local_jobs.read_result(self._job_dir(job_id))

    # -- results ------------------------------------------------------------
    def _solved_dir(self, job_id):
        job_dir = self._job_dir(job_id)
        result = local_jobs.read_result(job_dir)
        if not result or not result.get('calibration'):
            raise ResultNotAvailableError(f'Local job {job_id} is not solved.', job_id=int(job_id))
        return job_dir, result

    def calibration(self, job_id, *, cache=False):
        return self._solved_dir(job_id)[1]['calibration']

    def annotations(self, job_id, *, nbright=None, cache=False):
        annotations = local_jobs.annotations(self._solved_dir(job_id)[0])
        if nbright is not None:
            stars = [a for a in annotations if a.get('type') == 'bright'][:int(nbright)]
            annotations = [a for a in annotations if a.get('type') != 'bright' or a in stars]
        return annotations

    def objects_in_field(self, job_id, *, cache=False):
        return local_jobs.objects_in_field(self._solved_dir(job_id)[0])

    def tags(self, job_id, *, machine=False):
        try:
            return self.objects_in_field(job_id)
        except ResultNotAvailableError:
            return []

    def my_jobs(self):
        return sorted(int(p.name) for p in self.jobs_dir.iterdir()
                      if p.name.isdigit() and (p / REQUEST_FILE).is_file())

    # -- housekeeping -------------------------------------------------------
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
        cutoff = _now() - older_than
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
            job_dir = self.jobs_dir / str(job_id)
            size = _tree_size(job_dir)
            if not dry_run:
                self._note_pruned(job_id)
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

    def _highest_pruned_id(self):
        try:
            return int((self.jobs_dir / PRUNED_ID_FILE).read_text().strip())
        except (OSError, ValueError):
            return 0

    def _note_pruned(self, job_id):
        if job_id > self._highest_pruned_id():
            local_jobs._write_json(self.jobs_dir / PRUNED_ID_FILE, int(job_id))

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
            return local_jobs.result_file(self._job_dir(job_id), kind).read_bytes()
        except FileNotFoundError as exc:
            raise ResultNotAvailableError(f'Local job {job_id} has no {kind} file: {exc}',
                                          job_id=int(job_id)) from None
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None


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


def _run_task(task, url=None):
    """Fetch a URL input if any, then run the job (module level: it pickles)."""
    job_dir = Path(task.pop('job_dir'))
    if url and task['image'] is None:
        name = 'input' + ''.join(Path(url.split('?')[0]).suffixes[-2:]).lower()
        target = job_dir / name
        try:
            if not target.exists():
                _fetch(url, target)
        except Exception as exc:   # recorded as the submission's error, as nova does
            (job_dir / 'error.txt').write_text(f'{type(exc).__name__}: {exc}')
            return None
        task['image'] = str(target)
        task['input_name'] = name
    return local_jobs.run_job(job_dir, **task)


def _fetch(url, path, timeout=60):
    import requests
    with requests.get(url, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        with open(path, 'wb') as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
