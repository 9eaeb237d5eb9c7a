"""The one job runner: a SolveRequest run as a job on any Executor, with the
real solver; the job store; the one table of result kinds; error_for."""
import concurrent.futures as cf
import json
import os
import signal
import time

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query.exceptions import (IndexCoverageError, InvalidInputError, SolveFailedError,
                                         SolveTimeoutError, SubmissionError, WorkerLostError)
from astrometry_query.jobs import (DOWNLOAD_KINDS, KIND_OF_ROUTE, RESULT_KINDS, JobRunner,
                                   JobStore, SolveRequest, error_for, read_result)
from astrometry_query.jobs.files import ENGINE_OUTPUTS, REQUEST_FILE
from astrometry_query.jobs.runner import make_executor
from astrometry_query.datasets import render_field, wcs_rms_error
from real_server import requires_solver

pytestmark = requires_solver

SCALE = {'scale_units': 'arcsecperpix', 'scale_lower': 10.0, 'scale_upper': 14.0}


@pytest.fixture(scope='module')
def field(tmp_path_factory):
    folder = tmp_path_factory.mktemp('jobs')
    field = render_field(SkyCoord(150.3, 25.1, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                         shape=(300, 400), rotation=37 * u.deg, fwhm=2.8, hot_pixels=4, seed=3)
    return field.writeto(folder / 'field.fits', truth='none'), field


class Elsewhere(cf.Executor):
    """An executor of "another machine" (as a Dask cluster's is to the runner):
    not a pool of this machine, so the solve runs without its job directory."""

    def __init__(self):
        self._pool = cf.ThreadPoolExecutor(2)
        self.calls = []

    def submit(self, fn, *args, **kwargs):
        self.calls.append(fn.__name__)
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, **kw):
        self._pool.shutdown(wait=wait)


# -- SolveRequest -------------------------------------------------------------------------------
def test_a_request_is_json_and_reads_older_jobs(tmp_path):
    request = SolveRequest(settings=SCALE, hints='verify', fwhm=2.5, timeout=30, width=400,
                           height=300, sources={'x': np.arange(3.0), 'y': [1, 2, 3]},
                           original_filename='json-xy')
    request.write(tmp_path)
    again = SolveRequest.read(tmp_path)
    assert again == request and again.source_list
    assert json.loads((tmp_path / REQUEST_FILE).read_text())['sources']['x'] == [0.0, 1.0, 2.0]
    # a request.json from before the class: the settings were 'args'
    old = {'args': SCALE, 'hints': None, 'fwhm': 3, 'detect_threshold': 5, 'source_list': False,
           'width': None, 'height': None, 'image_path': '/x.fits', 'hdu': None, 'url': None,
           'original_filename': 'x.fits', 'timeout': 300.0, 'submitted': '2026-01-01 00:00:00'}
    (tmp_path / REQUEST_FILE).write_text(json.dumps(old))
    read = SolveRequest.read(tmp_path)
    assert read.settings == SCALE and read.image_path == '/x.fits' and not read.source_list
    kwargs = read.solve_kwargs()
    assert kwargs['image'] == '/x.fits' and kwargs['settings'] == SCALE and kwargs['sources'] is None


# -- the job store ------------------------------------------------------------------------------
def test_job_ids_are_never_given_twice(tmp_path):
    store = JobStore(tmp_path / 'jobs')
    first, path = store.new()
    assert first == 1 and path.is_dir()
    SolveRequest().write(path)
    (store.root / '7').mkdir()          # taken by another process meanwhile
    other = JobStore(store.root)
    assert other.new()[0] == 8
    store.note_pruned(20)
    assert JobStore(store.root).new()[0] == 21
    assert store.ids() == [1]           # only jobs with a request count as jobs


# -- the table of result kinds ------------------------------------------------------------------
def test_one_table_of_result_kinds():
    assert set(DOWNLOAD_KINDS) <= set(RESULT_KINDS)
    assert all(KIND_OF_ROUTE[route] == name for name, kind in RESULT_KINDS.items()
               for route in kind.routes)
    assert len(KIND_OF_ROUTE) == sum(len(k.routes) for k in RESULT_KINDS.values())  # none shared
    assert RESULT_KINDS['wcs'].file == ENGINE_OUTPUTS['wcs']
    from astrometry_query.local.axy import OUTPUT_FILES
    assert OUTPUT_FILES is ENGINE_OUTPUTS          # the engine names its files from the table
    from astrometry_query.server.web import DOWNLOADS
    assert [r for r, _, _ in DOWNLOADS] == [k.routes[0] for k in RESULT_KINDS.values() if k.listed]


# -- running jobs ---------------------------------------------------------------------------
@pytest.mark.parametrize('executor', ['threads', 'processes'])
def test_pools_of_this_machine_run_the_job_in_place(field, tmp_path, executor):
    path, truth = field
    runner = JobRunner(executor, 2)
    try:
        assert runner.in_place
        request = SolveRequest(settings=SCALE, image_path=str(path), timeout=60)
        result = runner.submit(tmp_path / 'job', request).result(timeout=120)
    finally:
        runner.shutdown(wait=True)
    assert result['status'] == 'success', result['error']
    assert read_result(tmp_path / 'job') == result
    pid = int(result['worker'].split(':')[1])
    assert (pid == os.getpid()) == (executor == 'threads')
    assert wcs_rms_error(truth.wcs, tmp_path / 'job' / 'wcs.fits', truth.data.shape) < 0.15
    assert (tmp_path / 'job' / 'field.fits').is_file()        # the input, kept for new_fits


def test_other_executors_run_the_solve_and_the_result_is_recorded(field, tmp_path):
    path, truth = field
    elsewhere = Elsewhere()
    runner = JobRunner(elsewhere)
    assert not runner.in_place
    request = SolveRequest(settings=SCALE, image_path=str(path), timeout=60)
    result = runner.submit(tmp_path / 'job', request).result(timeout=120)
    elsewhere.shutdown()
    assert elsewhere.calls == ['solve_elsewhere']
    assert result['status'] == 'success' and read_result(tmp_path / 'job') == result
    for name in ('wcs.fits', 'corr.fits', 'rdls.fits', 'job.axy', 'log'):
        assert (tmp_path / 'job' / name).is_file(), name      # came back with the result
    assert wcs_rms_error(truth.wcs, tmp_path / 'job' / 'wcs.fits', truth.data.shape) < 0.15


def test_an_image_in_memory_travels_with_the_job(field, tmp_path):
    _, truth = field
    runner = JobRunner(Elsewhere())
    result = runner.submit(tmp_path / 'job', SolveRequest(settings=SCALE, timeout=60),
                           image=truth.data).result(timeout=120)
    assert result['status'] == 'success' and result['input'] == 'input.fits'


@pytest.mark.slow
def test_a_worker_killed_mid_solve_is_a_worker_lost_error(tmp_path):
    """A process pool whose worker dies: the job is lost, not failed."""
    runner = JobRunner('processes', 1)
    rng = np.random.default_rng(2)
    sources = {'x': rng.uniform(1, 2000, 400), 'y': rng.uniform(1, 2000, 400)}
    request = SolveRequest(sources=sources, width=2000, height=2000, timeout=60)
    future = runner.submit(tmp_path / 'job', request)
    pid = next(iter(runner.executor._processes))
    deadline = time.monotonic() + 30
    while not future.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match='lost with its worker'):
        future.result(timeout=60)
    runner.shutdown()
    assert read_result(tmp_path / 'job') is None             # no outcome was made up


def test_make_executor_names_what_it_takes():
    pool, owned = make_executor('threads', 2)
    assert owned and isinstance(pool, cf.ThreadPoolExecutor)
    pool.shutdown()
    mine = cf.ThreadPoolExecutor(1)
    assert make_executor(mine) == (mine, False)
    mine.shutdown()
    with pytest.raises(InvalidInputError, match="executor must be 'threads', 'processes'"):
        make_executor('gpu')


# -- outcomes as errors ---------------------------------------------------------------------
@pytest.mark.parametrize('kind, error', [
    ('index_coverage', IndexCoverageError), ('timeout', SolveTimeoutError),
    ('invalid_input', InvalidInputError), ('fetch', SubmissionError),
    ('submission', SubmissionError), ('no_solution', SolveFailedError),
    ('engine', SolveFailedError), (None, SolveFailedError)])
def test_error_for_maps_each_kind(kind, error):
    exc = error_for({'status': 'failure', 'error': 'InvalidInputError: why', 'error_kind': kind},
                    submission_id=3, job_id=4)
    assert type(exc) is error and (exc.submission_id, exc.job_id) == (3, 4)
    assert exc.error_kind == kind and 'why' in exc.reason
    if kind == 'timeout':
        assert not exc.resumable and 'resume with' not in str(exc)
    assert error_for({'status': 'success'}) is None


def test_failed_jobs_say_their_kind(tmp_path):
    runner = JobRunner('threads', 1)
    rng = np.random.default_rng(4)
    few = {'x': rng.uniform(1, 100, 2), 'y': rng.uniform(1, 100, 2)}
    result = runner.submit(tmp_path / 'few', SolveRequest(sources=few, width=100, height=100)
                           ).result(timeout=60)
    assert result['error_kind'] == 'too_few_sources'
    (tmp_path / 'notes.txt').write_text('not an image')
    result = runner.submit(tmp_path / 'bad', SolveRequest(image_path=str(tmp_path / 'notes.txt'))
                           ).result(timeout=60)
    assert result['error_kind'] == 'invalid_input'
    assert isinstance(error_for(result), InvalidInputError)
    runner.shutdown()
