"""Blind solves: the search split across engine processes (the first to solve
stops the others), the refit skipped where it cannot run, and nothing done
twice on the way."""
import os
import signal
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query import conf
from astrometry_query.datasets import make_wcs, render_field, wcs_rms_error
from astrometry_query.exceptions import InvalidSettingError
from astrometry_query.local import pipeline, search, solver
from astrometry_query.local.pipeline import solve
from astrometry_query.local.search import run_split_search, search_workers, split_index_files
from astrometry_query.local.solver import find_installation, solver_available
from astrometry_query.settings import check_search_workers

needs_solver = pytest.mark.skipif(not solver_available(), reason='astrometry.net not installed')


@pytest.fixture(scope='module')
def blind_field(tmp_path_factory):
    """A 1000 x 1000 field of 3"/px with no hint in its header: a blind search."""
    sf = render_field(SkyCoord(10.7, 41.3, unit='deg'), pixel_scale=3.0 * u.arcsec / u.pix,
                      shape=(1000, 1000), rotation=30 * u.deg, fwhm=3.0, hot_pixels=15,
                      cosmic_rays=3, seed=3)
    path = sf.writeto(tmp_path_factory.mktemp('blind') / 'blind.fits', truth='extension')
    return path, sf.wcs


@pytest.fixture
def started(monkeypatch):
    """Every engine process started (recorded, not replaced)."""
    procs = []
    real = solver.start_engine

    def record(*args, **kwargs):
        proc = real(*args, **kwargs)
        procs.append(proc)
        return proc
    monkeypatch.setattr(search, 'start_engine', record)
    return procs


def _group_gone(proc):
    """No process is left in the engine's process group."""
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_search_workers_rule():
    assert search_workers(1, 13) == 1
    assert search_workers(8, 3) == 3            # never more engines than index files
    assert search_workers(None, 13) == 13 and search_workers(None, 40) == search.MAX_AUTO_WORKERS
    assert search_workers(0, 13) == search_workers(None, 13)
    files = [f'index-{i}.fits' for i in range(5)]
    assert search.blind_search_plan(files, 1) is None
    groups, delays = search.blind_search_plan(files, 2)
    # Every file at once first; the shares join it if it has not solved.
    assert groups[0] == tuple(files) and sorted(groups[1] + groups[2]) == files
    assert delays == [0.0, search.ESCALATE_AFTER, search.ESCALATE_AFTER]
    assert check_search_workers(0) == 0 and check_search_workers('3') == 3
    for bad in (-1, 1.5, 'many', True, 1000):
        with pytest.raises(InvalidSettingError, match='search_workers'):
            check_search_workers(bad)


@needs_solver
def test_split_deals_index_files_by_scale():
    files = find_installation().index_files
    groups = split_index_files(files, 2)
    assert sorted(f for g in groups for f in g) == sorted(files)        # each file once
    if len(files) >= 4:
        scales = [[search._quad_scale(str(f), os.path.getmtime(f)) for f in g] for g in groups]
        # Dealt in turn: each group spans the scale range, neither is the small or the large half.
        assert min(scales[0]) < min(scales[1]) < max(scales[0]) <= max(scales[1]) or \
            min(scales[0]) < min(scales[1]) < max(scales[1]) <= max(scales[0])


@needs_solver
def test_split_engine_config_names_its_files(tmp_path):
    inst = find_installation()
    share = inst.index_files[:2]
    text = solver.write_engine_config(tmp_path / 'a.cfg', inst, inparallel=True,
                                      index_files=share).read_text()
    assert 'autoindex' not in text and 'add_path' not in text
    assert [ln.split(None, 1)[1] for ln in text.splitlines() if ln.startswith('index ')] == \
        [str(Path(f).resolve()) for f in share]


@pytest.mark.slow
@needs_solver
def test_first_success_cancels_the_rest(blind_field, tmp_path, started):
    """Two engines race: the one holding the field's index files solves in a
    fraction of a second; the other (quads too large for this field, a search
    of minutes) is killed with its process group, and nothing is left."""
    path, truth = blind_field
    single = solve(path, work_dir=tmp_path / 'single', search_workers=1)
    assert single.solved
    inst = find_installation()
    files = sorted(inst.index_files, key=lambda f: search._quad_scale(str(f), 0))
    fits_field = [f for f in files if '-07' in f.name or '-08' in f.name or '-09' in f.name]
    too_large = [f for f in files if f not in fits_field]
    if not (fits_field and too_large):
        pytest.skip('needs the Tycho-2 index files 07-19')
    work = tmp_path / 'single'
    outcome = run_split_search(work / pipeline.AXY_FILE, work, [too_large, fits_field],
                               timeout=60, installation=inst)
    assert outcome.solved and outcome.elapsed < 30
    assert outcome.split == {'engines': 2, 'cancelled': 1,
                             'solved_by': [f.name for f in fits_field]}
    assert len(started) == 2 and all(p.returncode is not None for p in started)
    assert started[0].returncode == -signal.SIGKILL          # the loser was killed
    assert all(_group_gone(p) for p in started)
    assert not solver._RUNNING                               # forgotten once ended
    assert not list(work.glob(f'{search.SHARE_DIR}*'))       # their folders are gone
    assert (work / 'wcs.fits').is_file() and (work / 'corr.fits').is_file()


@pytest.mark.slow
@needs_solver
def test_split_search_gives_the_single_search_wcs(blind_field, tmp_path, started, monkeypatch):
    path, truth = blind_field
    single = solve(path, work_dir=tmp_path / 'one', search_workers=1)
    assert not started                                       # a single engine: run_engine
    monkeypatch.setattr(search, 'ESCALATE_AFTER', 0.0)       # the shares start at once
    split = solve(path, work_dir=tmp_path / 'two', search_workers=2)
    assert single.solved and split.solved
    assert split.attempts[-1]['engines'] == 3 and single.attempts[-1]['engines'] == 1
    assert len(started) == 3 and all(_group_gone(p) for p in started)
    # The same solution (refitted to the same catalogue stars), as good as the truth allows.
    assert wcs_rms_error(single.header(), split.header(), (1000, 1000)) < 0.02
    assert wcs_rms_error(truth, split.header(), (1000, 1000)) < 0.05


@pytest.mark.slow
@needs_solver
def test_split_search_time_limit_kills_every_engine(blind_field, tmp_path, started):
    path, _ = blind_field
    solve(path, work_dir=tmp_path, search_workers=1)
    inst = find_installation()
    too_large = [f for f in inst.index_files if not any(f'-0{k}' in f.name for k in (7, 8, 9))]
    if len(too_large) < 2:
        pytest.skip('needs the Tycho-2 index files 07-19')
    outcome = run_split_search(tmp_path / pipeline.AXY_FILE, tmp_path,
                               split_index_files(too_large, 2), timeout=1.0, installation=inst)
    assert not outcome.solved and outcome.timed_out and outcome.elapsed < 5
    assert outcome.split['cancelled'] == 2 and 'time limit' in outcome.log
    assert all(_group_gone(p) for p in started)
    assert not (tmp_path / 'wcs.fits').exists()


@needs_solver
def test_no_catalogue_query_for_a_refit_that_cannot_match(monkeypatch):
    """Too few usable sources for a refit: the catalogue is not queried for nothing."""
    asked = []
    monkeypatch.setattr(pipeline, 'reference_stars', lambda *a, **k: asked.append(a) or (
        np.zeros(0), np.zeros(0), np.zeros(0)))
    header = make_wcs(SkyCoord(10, 20, unit='deg'), pixel_scale=5 * u.arcsec / u.pix,
                      shape=(500, 500)).to_header()
    x = np.linspace(10, 490, 30)
    good = np.zeros(30, bool)
    good[:pipeline.MIN_REFIT - 1] = True                     # one short
    inst = find_installation()
    assert pipeline._refine(header, x, x, 500, 500, {}, inst, good) is None
    assert not asked
    pipeline._refine(header, x, x, 500, 500, {}, inst, np.ones(30, bool))
    assert len(asked) == 1                                   # enough: it is asked


@pytest.mark.slow
@needs_solver
def test_client_reads_the_image_header_twice_and_extracts_once(blind_field, local, monkeypatch):
    """Through the client: the file's header is parsed where it is submitted
    and where it is solved, not a third time to keep it; sources once."""
    import astrometry_query.images as images
    from astrometry_query.local import selection
    opened, extracted = [], []
    real_open, real_extract = images._open_fits_file, selection.extract_sources
    monkeypatch.setattr(images, '_open_fits_file',
                        lambda *a, **k: opened.append(a) or real_open(*a, **k))
    monkeypatch.setattr(selection, 'extract_sources',
                        lambda *a, **k: extracted.append(a) or real_extract(*a, **k))
    path, truth = blind_field
    with conf.set_temp('search_workers', 0):
        header = local.solve_from_image(path, verbose=False, cache=False, header_hints=False)
    assert wcs_rms_error(truth, header, (1000, 1000)) < 0.05
    assert len(extracted) == 1
    assert len(opened) == 2


@pytest.mark.slow
@needs_solver
def test_shares_join_only_a_search_that_has_not_solved(blind_field, tmp_path, started):
    """An easy field is solved by the first engine before the others are due:
    they never start (no cost on the fields a single engine solves at once)."""
    path, _ = blind_field
    solve(path, work_dir=tmp_path, search_workers=1)
    inst = find_installation()
    outcome = run_split_search(tmp_path / pipeline.AXY_FILE, tmp_path,
                               [tuple(inst.index_files)] + split_index_files(inst.index_files, 3),
                               delays=[0.0, 60.0, 60.0, 60.0], timeout=120, installation=inst)
    assert outcome.solved and outcome.elapsed < 30
    assert outcome.split['engines'] == 1 and len(started) == 1
    assert outcome.split['solved_by'] == [f.name for f in inst.index_files]


@pytest.mark.slow
@needs_solver
def test_split_engines_die_with_the_process_that_started_them(blind_field, tmp_path):
    """kill -9 of the process searching: its engines (started through setpriv,
    not a preexec hook) end too."""
    import subprocess
    import sys
    import time
    psutil = pytest.importorskip('psutil')
    path, _ = blind_field
    solve(path, work_dir=tmp_path, search_workers=1)         # the .axy
    script = (
        'from astrometry_query.local.search import run_split_search, split_index_files\n'
        'from astrometry_query.local.solver import find_installation\n'
        'inst = find_installation()\n'
        "big = [f for f in inst.index_files if not any(f'-0{k}' in f.name for k in (7, 8, 9))]\n"
        f'run_split_search({str(tmp_path / pipeline.AXY_FILE)!r}, {str(tmp_path)!r}, '
        'split_index_files(big, 3), timeout=120, installation=inst)\n')
    searcher = subprocess.Popen([sys.executable, '-c', script], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 60
        engines = []
        while len(engines) < 3 and time.monotonic() < deadline and searcher.poll() is None:
            time.sleep(0.1)
            engines = [p for p in psutil.Process(searcher.pid).children(recursive=True)
                       if 'astrometry-engine' in ' '.join(p.cmdline())]
        if len(engines) < 3:
            pytest.skip('the index files 10-19 are needed for a long search')
    finally:
        searcher.kill()
        searcher.wait()
    gone, alive = psutil.wait_procs(engines, timeout=10)
    assert not alive, [p.pid for p in alive]


def test_batches_and_busy_servers_keep_one_engine_per_solve(tmp_path):
    """The automatic split is for a solve on its own: a batch with several
    inputs in flight, or a server with several workers, already keeps the
    cores busy, so each of their solves gets one engine; a number set is kept."""
    from astrometry_query.local.backend import LocalBatch
    from astrometry_query.server.queue import request_for

    class Store:
        def path(self, job_id):
            return tmp_path / str(job_id)

    made = []

    class Backend:
        store = Store()
        search_workers = None

        def make_request(self, settings, **kw):
            from astrometry_query.jobs import SolveRequest
            return SolveRequest(settings=dict(settings), search_workers=self.search_workers,
                                width=10, height=10, sources={'x': [1.0], 'y': [1.0]})

        def create_job(self, request):
            made.append(request)
            return len(made)

        def start(self, job_id, image=None, runner=None):
            import concurrent.futures as cf
            return cf.Future()

    from astrometry_query.backends import BatchItem
    for max_concurrency, configured, expected in ((4, None, 1), (1, None, None), (4, 3, 3)):
        backend = Backend()
        backend.search_workers = configured
        run = LocalBatch(backend, executor='threads', max_concurrency=max_concurrency,
                         timeout=10, fwhm=3.0, detect_threshold=5.0, submitted=None)
        run.submit(0, 'x', lambda i, raw: (BatchItem(index=i, label='x', width=10, height=10,
                                                     sources={'x': [1.0], 'y': [1.0]}), None))
        assert made[-1].search_workers == expected, (max_concurrency, configured)
    job = {'args': {}, 'original_filename': 'f.xy', 'kind': 'image', 'path': str(tmp_path / 'f')}
    assert request_for(job, 10, shared=True).search_workers == 1
    assert request_for(job, 10).search_workers is None
