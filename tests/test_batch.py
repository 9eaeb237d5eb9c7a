"""Batches: solve_many / iter_solve on every executor and through the real
server, failure isolation, progress, resume from a journal, and the server's
solves on a real Dask LocalCluster."""
import concurrent.futures as cf
import json
import os

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.batch import BATCH_COLUMNS, Journal
from astrometry_query.jobs import JobRunner
from astrometry_query.server import ServerThread
from astrometry_query.datasets import render_field, wcs_rms_error
from astrometry_query.sources import extract_sources
from real_server import requires_solver

pytestmark = [requires_solver, pytest.mark.filterwarnings('ignore::DeprecationWarning')]

WCS_LIMIT = 0.15
SPECS = [((150.3, 25.1), 12.0, 37.0, False), ((280.5, -40.2), 10.0, -65.0, True),
         ((30.2, 60.3), 14.0, 120.0, False), ((83.8, -5.4), 11.0, 200.0, True)]


@pytest.fixture(scope='module')
def fields(tmp_path_factory):
    """Four small fields whose headers carry a pointing and a scale."""
    folder = tmp_path_factory.mktemp('batch-fields')
    out = []
    for i, (center, scale, rot, flip) in enumerate(SPECS):
        field = render_field(SkyCoord(*center, unit='deg'), pixel_scale=scale * u.arcsec / u.pix,
                             shape=(400, 500), rotation=rot * u.deg, flip=flip, fwhm=2.8,
                             hot_pixels=5, seed=i)
        out.append((field.writeto(folder / f'field{i}.fits', truth='none'), field))
    return out


@pytest.fixture(scope='module')
def cluster():
    distributed = pytest.importorskip('distributed')
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield cluster, client


def _check_solved(table, fields):
    for row, (path, field) in zip(table, fields):
        assert row['status'] == 'success', row['error']
        assert wcs_rms_error(field.wcs, row['header'], field.data.shape) < WCS_LIMIT
        assert row['input'] == str(path)


@pytest.mark.slow
def test_rows_in_input_order_and_failures_isolated(local, fields, tmp_path):
    sources = extract_sources(fields[1][0])
    inputs = [fields[0][0], tmp_path / 'missing.fits',
              (sources['x'], sources['y'], 500, 400),
              np.zeros((5, 5)), fields[2][0]]
    table = local.solve_many(inputs, verbose=False, cache=False,
                             scale=(8, 16) * u.arcsec / u.pix)
    assert table.colnames == list(BATCH_COLUMNS)
    assert list(table['status']) == ['success', 'failure', 'success', 'failure', 'success']
    assert 'missing.fits' in table['error'][1] and 'InvalidInputError' in table['error'][1]
    assert '16x16' in table['error'][3]
    assert table['error'][0] == '' and table['header'][1] is None
    for i, field in ((0, fields[0][1]), (2, fields[1][1]), (4, fields[2][1])):
        assert wcs_rms_error(field.wcs, table['header'][i], field.data.shape) < WCS_LIMIT
        assert table['job_id'][i] == table['header'][i]['AN_JOBID']
    assert table['ra'].unit == u.deg and table['pixscale'].unit == u.arcsec / u.pix
    assert table['elapsed'].unit == u.s and np.all(table['elapsed'] >= 0)
    assert table['parity'][0] == -1.0 and table['parity'][2] == 1.0    # field 1 is flipped
    assert np.isnan(table['ra'][1]) and table['job_id'].mask[1]
    assert table.meta == {'solved': 3, 'failed': 2}
    # The jobs are in the local store like any other.
    assert local.get_calibration(table['header'][0]).parity == -1.0


@pytest.mark.slow
def test_default_executor_threads_and_process_pool_agree(local, fields):
    paths = [p for p, _ in fields]
    default = local.solve_many(paths, verbose=False, cache=False)      # worker processes
    threads = local.solve_many(paths, executor='threads', verbose=False, cache=False)
    with cf.ProcessPoolExecutor(2) as pool:
        processes = local.solve_many(paths, executor=pool, verbose=False, cache=False)
    with cf.ThreadPoolExecutor(2) as pool:
        own_threads = local.solve_many(paths, executor=pool, max_concurrency=1, verbose=False,
                                       cache=False)
    _check_solved(default, fields)
    for other in (threads, processes, own_threads):
        _check_solved(other, fields)
        np.testing.assert_allclose(other['ra'], default['ra'], atol=1e-9)
        np.testing.assert_allclose(other['orientation'], default['orientation'], atol=1e-7)
    # Each solve ran in the executor's processes or threads, as asked.
    pids = {local.backend.result(j)['worker'].split(':')[1] for j in threads['job_id']}
    assert pids == {str(os.getpid())}
    pids = {local.backend.result(j)['worker'].split(':')[1] for j in default['job_id']}
    assert str(os.getpid()) not in pids


@pytest.mark.slow
def test_dask_local_cluster_gives_identical_results(local, fields, cluster):
    _, client = cluster
    paths = [p for p, _ in fields]
    reference = local.solve_many(paths, executor='threads', verbose=False, cache=False)
    for executor in (client, client.get_executor()):
        table = local.solve_many(paths, executor=executor, verbose=False, cache=False)
        _check_solved(table, fields)
        np.testing.assert_allclose(table['ra'], reference['ra'], atol=1e-9)
        np.testing.assert_allclose(table['dec'], reference['dec'], atol=1e-9)
    worker_pids = set(client.run(os.getpid).values())
    used = {int(local.backend.result(j)['worker'].split(':')[1]) for j in table['job_id']}
    assert used <= worker_pids


@pytest.mark.slow
def test_progress_bar_and_quiet(local, fields, capsys):
    paths = [p for p, _ in fields[:2]]
    local.solve_many(paths, verbose=False, executor='threads')
    assert capsys.readouterr().err == ''
    local.solve_many(paths, verbose=True, executor='threads')      # from the cache: still a bar
    err = capsys.readouterr().err
    assert 'Solving' in err and '2/2' in err and 'solved=2' in err


@pytest.mark.slow
def test_as_completed_streams_rows(local, fields):
    paths = [p for p, _ in fields]
    seen = []
    for row in local.solve_many(paths, as_completed=True, verbose=False, cache=False,
                                executor='threads'):
        seen.append(row['index'])
        assert row['status'] == 'success' and row['header'] is not None
    assert sorted(seen) == [0, 1, 2, 3]
    rows = list(local.iter_solve(paths[:1], verbose=False))
    assert rows[0]['input'] == str(paths[0])


def test_cache_answers_a_repeated_batch(local, fields):
    paths = [p for p, _ in fields[:2]]
    first = local.solve_many(paths, verbose=False, executor='threads')
    again = local.solve_many(paths, verbose=False, executor='threads')
    assert list(again['job_id']) == list(first['job_id'])      # no new job


@pytest.mark.slow
def test_cache_is_per_job_store(fields, tmp_path):
    """A cached header names a job of the store that solved it: another
    conf.local_data_dir (read at call time) solves again, and every job id
    it returns is one its own store knows."""
    path = fields[0][0]
    with AstrometryNetClass(backend='local') as client:
        with conf.set_temp('local_data_dir', str(tmp_path / 'store-a')):
            first = client.solve_from_image(path, verbose=False)
            assert client.get_job_info(first).status == 'success'
            assert client.solve_from_image(path, verbose=False) == first    # from the cache
        with conf.set_temp('local_data_dir', str(tmp_path / 'store-b')):
            other = client.solve_from_image(path, verbose=False)
            assert client.backend.data_dir == tmp_path / 'store-b'
            assert client.get_job_info(other).status == 'success'
            assert client.get_calibration(other) is not None


@pytest.mark.slow
def test_resume_from_a_journal_local(local, fields, tmp_path):
    journal = tmp_path / 'night.jsonl'
    paths = [p for p, _ in fields]
    stream = local.iter_solve(paths, journal=journal, verbose=False, cache=False,
                              executor='threads', max_concurrency=1)
    first = next(stream)            # then the batch is interrupted
    stream.close()
    entries = Journal(journal).entries
    assert any(e.get('status') == 'success' for e in entries.values())
    jobs_before = set(local.backend.my_jobs())
    table = local.solve_many(paths, journal=journal, verbose=False, cache=False,
                             executor='threads')
    _check_solved(table, fields)
    assert table['job_id'][first['index']] == first['job_id']          # reused, not solved again
    new_jobs = set(local.backend.my_jobs()) - jobs_before
    assert first['job_id'] not in new_jobs and len(new_jobs) <= len(paths) - 1


def test_bad_batch_arguments_fail_before_any_work(local, fields):
    from astrometry_query.exceptions import InvalidInputError, InvalidSettingError
    with pytest.raises(InvalidInputError, match='max_concurrency'):
        local.solve_many([fields[0][0]], max_concurrency=0)
    with pytest.raises(InvalidSettingError):
        local.solve_many([fields[0][0]], parity='sideways')
    with pytest.raises(InvalidInputError, match='executor'):
        local.solve_many([fields[0][0]], executor='gpu', verbose=False, cache=False)


# -- through the real server ----------------------------------------------------------
@pytest.fixture
def server():
    with conf.set_temp('poll_interval', 0.1), ServerThread(workers=2) as srv:
        yield srv


def _uploads(srv):
    import sqlite3
    db = sqlite3.connect(str(srv.data_dir / 'nova.sqlite3'))
    return db.execute('SELECT count(*) FROM submissions').fetchone()[0]


@pytest.mark.slow
def test_nova_batch_through_the_server(server, fields, tmp_path):
    inputs = [p for p, _ in fields] + [tmp_path / 'missing.fits']
    with AstrometryNetClass(api_key='batchkeyabcdefgh', server=server.url) as nova:
        table = nova.solve_many(inputs, verbose=False, cache=False)
        listed = nova.solve_many([fields[0][0]], verbose=False, cache=False,
                                 force_image_upload=False)
    _check_solved(table[:4], fields)
    assert table['status'][4] == 'failure' and table['submission_id'].mask[4]
    assert all(table['submission_id'][:4] > 0) and len(set(table['job_id'][:4])) == 4
    assert listed['status'][0] == 'success'
    assert _uploads(server) == 5


@pytest.mark.slow
def test_nova_resume_never_submits_again(server, fields, tmp_path):
    journal = tmp_path / 'resume.jsonl'
    paths = [p for p, _ in fields]
    with AstrometryNetClass(api_key='batchkeyabcdefgh', server=server.url) as nova:
        stream = nova.iter_solve(paths, journal=journal, verbose=False, cache=False)
        next(stream)
        stream.close()              # interrupted: every input was already submitted
        submitted = _uploads(server)
        assert submitted == len(paths)
        assert all(e.get('submission_id') for e in Journal(journal).entries.values())
        table = nova.solve_many(paths, journal=journal, verbose=False, cache=False)
    _check_solved(table, fields)
    assert _uploads(server) == submitted


@pytest.mark.slow
def test_server_solves_on_a_dask_cluster(cluster, fields, tmp_path):
    dask_cluster, client = cluster
    with ServerThread(workers=0, dask_scheduler=dask_cluster.scheduler_address) as srv, \
            AstrometryNetClass(api_key='daskkeyabcdefghi', server=srv.url) as nova:
        table = nova.solve_many([p for p, _ in fields], verbose=False, cache=False)
        _check_solved(table, fields)
        worker_pids = set(client.run(os.getpid).values())
        for job in table['job_id']:
            result = json.loads((srv.data_dir / 'jobs' / str(job) / 'result.json').read_text())
            assert int(result['worker'].split(':')[1]) in worker_pids
            assert (srv.data_dir / 'jobs' / str(job) / 'wcs.fits').is_file()


@pytest.mark.slow
def test_a_lost_solve_is_queued_again(fields, monkeypatch):
    """A solve lost with its worker process is retried on another, never lost."""
    from concurrent.futures.process import BrokenProcessPool

    import astrometry_query.server as server_module
    real = cf.ThreadPoolExecutor(2)

    class Flaky(cf.Executor):
        """Loses the first solve, as a killed worker process would (an executor
        of another machine, such as a Dask cluster's: the solve is sent there)."""
        lost = 0

        def submit(self, fn, *args, **kwargs):
            if Flaky.lost == 0 and getattr(fn, '__name__', '') == 'solve_elsewhere':
                Flaky.lost += 1
                future = cf.Future()
                future.set_exception(BrokenProcessPool('worker killed'))
                return future
            return real.submit(fn, *args, **kwargs)
    monkeypatch.setattr(server_module, 'make_runner',
                        lambda kind, workers, dask=None: (JobRunner(Flaky()), workers,
                                                          real.shutdown))
    with ServerThread(workers=1) as srv, \
            AstrometryNetClass(api_key='flakykeyabcdefgh', server=srv.url) as nova:
        header = nova.solve_from_image(fields[0][0], verbose=False, cache=False,
                                       solve_timeout=60)
        assert Flaky.lost == 1
        assert wcs_rms_error(fields[0][1].wcs, header, fields[0][1].data.shape) < WCS_LIMIT
        import sqlite3
        db = sqlite3.connect(str(srv.data_dir / 'nova.sqlite3'))
        assert db.execute('SELECT requeued FROM jobs').fetchone()[0] == 1


