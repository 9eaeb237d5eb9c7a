"""The local backend: solves on this machine with solve-field, behind the
same methods as the nova backend.

Each job lives in its own directory (``<data_dir>/jobs/<id>/``) with the
input, the request, the solver's files and ``result.json``, so results can
be read again after the solve and after a restart.  Solves run on an
Executor (a seam: threads by default).
"""
import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from astropy.config import get_cache_dir

from ..exceptions import InvalidInputError, JobNotFoundError, ResultNotAvailableError
from ..results import Job, Submission
from ..settings import MAX_SOURCES
from ..sources import write_xylist
from . import jobs as local_jobs
from .solver import find_installation

__all__ = ['LocalBackend', 'default_data_dir']

REQUEST_FILE = 'request.json'


def default_data_dir():
    return Path(get_cache_dir()) / 'astrometry_query' / 'local'


class LocalBackend:
    """Solve with the local astrometry.net installation.

    Parameters
    ----------
    data_dir : path-like, optional
        Where job directories are kept.
    index_dir : path-like, optional
        Index files to use (default: those of /etc/astrometry.cfg).
    executor : `concurrent.futures.Executor`, optional
        Runs the solves; default one thread per core.
    job_timeout : float, optional
        CPU-time bound of one solve (solve-field's --cpulimit), seconds.
    """
    name = 'local'

    def __init__(self, data_dir=None, *, index_dir=None, executor=None, job_timeout=300.0):
        self.installation = find_installation(index_dir=index_dir or None)
        self.data_dir = Path(data_dir or default_data_dir())
        self.jobs_dir = self.data_dir / 'jobs'
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._executor = executor
        self._own_executor = executor is None
        self._futures = {}
        self._lock = threading.Lock()
        self.job_timeout = job_timeout

    def __repr__(self):
        return f'<LocalBackend data_dir={str(self.data_dir)!r}>'

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
        existing = [int(p.name) for p in self.jobs_dir.iterdir() if p.name.isdigit()]
        job_id = max(existing, default=0) + 1
        while True:
            try:
                (self.jobs_dir / str(job_id)).mkdir()
                return job_id, self.jobs_dir / str(job_id)
            except FileExistsError:   # another process took it
                job_id += 1

    def _job_dir(self, job_id):
        path = self.jobs_dir / str(int(job_id))
        if not (path / REQUEST_FILE).is_file():
            raise JobNotFoundError(f'There is no local job {job_id} in {self.jobs_dir}.',
                                   job_id=int(job_id), submission_id=int(job_id))
        return path

    def _start(self, args, *, input_name, source_list=False, width=None, height=None,
               original_filename=None, url=None, job=None, timeout=None):
        job_id, job_dir = job or self._new_job()
        request = {'args': args, 'input': input_name, 'source_list': source_list,
                   'width': width, 'height': height, 'url': url,
                   'original_filename': original_filename or input_name,
                   'timeout': float(timeout) if timeout else self.job_timeout,
                   'submitted': str(datetime.utcnow())}
        tmp = job_dir / (REQUEST_FILE + '.tmp')
        tmp.write_text(json.dumps(request))
        os.replace(tmp, job_dir / REQUEST_FILE)
        self._run(job_id)
        return Submission(id=job_id, jobs=[job_id], user_images=[job_id],
                          processing_started=datetime.utcnow())

    def _run(self, job_id):
        with self._lock:
            if job_id in self._futures and not self._futures[job_id].done():
                return
        future = self.executor.submit(self._solve, job_id)
        with self._lock:
            self._futures[job_id] = future

    def _solve(self, job_id):
        job_dir = self.jobs_dir / str(job_id)
        request = json.loads((job_dir / REQUEST_FILE).read_text())
        if request.get('url') and not (job_dir / request['input']).exists():
            try:
                _fetch(request['url'], job_dir / request['input'])
            except Exception as exc:   # recorded as the submission's error, as nova does
                (job_dir / 'error.txt').write_text(f'{type(exc).__name__}: {exc}')
                return None
        return local_jobs.solve_job(job_dir, job_dir / request['input'], request['args'],
                                    source_list=request['source_list'], width=request['width'],
                                    height=request['height'], timeout=self._time_limit(request),
                                    installation=self.installation,
                                    original_filename=request['original_filename'])

    # -- submitting ---------------------------------------------------------
    def submit_image(self, image, args, *, filename=None, timeout=None):
        if not isinstance(image, (str, os.PathLike)):
            raise InvalidInputError('The local backend takes an image file path.')
        source = Path(image)
        name = 'input' + ''.join(source.suffixes[-2:]).lower()
        job = self._new_job()
        shutil.copyfile(source, job[1] / name)
        return self._start(args, input_name=name, original_filename=filename or source.name, job=job,
                           timeout=timeout)

    def submit_source_list(self, x, y, args, *, width, height, timeout=None):
        job = self._new_job()
        write_xylist(job[1] / 'input.xyls', x[:MAX_SOURCES], y[:MAX_SOURCES])
        return self._start(args, input_name='input.xyls', source_list=True, width=int(width),
                           height=int(height), original_filename='json-xy', job=job,
                           timeout=timeout)

    def submit_url(self, url, args, *, timeout=None):
        name = 'input' + ''.join(Path(url.split('?')[0]).suffixes[-2:]).lower()
        return self._start(args, input_name=name, url=url, timeout=timeout,
                           original_filename=url.rstrip('/').rsplit('/', 1)[-1])

    # -- status -------------------------------------------------------------
    def submission(self, submission_id):
        job_dir = self._job_dir(submission_id)
        error = job_dir / 'error.txt'
        started = datetime.fromtimestamp((job_dir / REQUEST_FILE).stat().st_mtime)
        if error.exists():
            return Submission(id=int(submission_id), processing_started=started,
                              processing_finished=started, error_message=error.read_text())
        result = local_jobs.read_result(job_dir)
        sub = Submission(id=int(submission_id), processing_started=started,
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
        if future is None or (future.done() and local_jobs.read_result(job_dir) is None):
            self._run(int(job_id))       # interrupted by a restart: solve it again
            return 'processing'
        return 'solving' if future.running() else 'processing'

    def job_info(self, job_id, submission_id=None, *, cache=False):
        job_dir = self._job_dir(job_id)
        result = local_jobs.read_result(job_dir) or {}
        request = json.loads((job_dir / REQUEST_FILE).read_text())
        status = result.get('status') or self.job_status(job_id)
        payload = {'objects_in_field': result.get('objects_in_field', []),
                   'machine_tags': result.get('machine_tags', []),
                   'tags': result.get('machine_tags', []), 'status': status,
                   'original_filename': request.get('original_filename')}
        if result.get('calibration'):
            payload['calibration'] = result['calibration']
        return Job.from_api(job_id, payload, int(job_id))

    def failure_reason(self, job_id):
        job_dir = self._job_dir(job_id)
        error = job_dir / 'error.txt'
        if error.exists():
            return error.read_text()
        result = local_jobs.read_result(job_dir) or {}
        if result.get('timed_out'):
            request = json.loads((job_dir / REQUEST_FILE).read_text())
            return f'solve-field ran out of time ({self._time_limit(request):g} s)'
        return result.get('error') or ('solve-field found no solution: give scale and position '
                                       'hints, or check the image has stars')

    def _time_limit(self, request):
        # Job directories written before per-job limits existed lack 'timeout'.
        return request.get('timeout') or self.job_timeout

    def timed_out(self, job_id):
        """True when the solve was stopped by its time limit."""
        return bool((local_jobs.read_result(self._job_dir(job_id)) or {}).get('timed_out'))

    # -- results ------------------------------------------------------------
    def _solved_result(self, job_id):
        result = local_jobs.read_result(self._job_dir(job_id))
        if not result or not result.get('calibration'):
            raise ResultNotAvailableError(f'Local job {job_id} is not solved.', job_id=int(job_id))
        return result

    def calibration(self, job_id, *, cache=False):
        return self._solved_result(job_id)['calibration']

    def annotations(self, job_id, *, nbright=None, cache=False):
        annotations = self._solved_result(job_id).get('annotations', [])
        if nbright is not None:
            stars = [a for a in annotations if a.get('type') == 'bright'][:int(nbright)]
            annotations = [a for a in annotations if a.get('type') != 'bright' or a in stars]
        return annotations

    def objects_in_field(self, job_id, *, cache=False):
        return self._solved_result(job_id).get('objects_in_field', [])

    def tags(self, job_id, *, machine=False):
        result = local_jobs.read_result(self._job_dir(job_id)) or {}
        return list(result.get('machine_tags', []))

    def my_jobs(self):
        return sorted(int(p.name) for p in self.jobs_dir.iterdir()
                      if p.name.isdigit() and (p / REQUEST_FILE).is_file())

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


def _fetch(url, path, timeout=60):
    import requests
    with requests.get(url, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        with open(path, 'wb') as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
