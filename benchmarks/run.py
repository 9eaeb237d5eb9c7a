"""astrometry_query benchmarks: every figure beside its reference, measured in
the same run, with the ratio.

    python benchmarks/run.py                 # everything (~25 min on 2 cores)
    python benchmarks/run.py --only speed    # one section: accuracy, speed, server,
                                             # extraction, cache, memory, polling, batch,
                                             # narrow, sequence, wide, longrun, crowded,
                                             # photographs, blind
    python benchmarks/run.py --quick         # fewer fields and repeats

Needs the ``bench`` extra (``pip install -e ".[bench]"``: photutils, psutil)
and Debian's astrometry.net with the Tycho-2 index files.  Results are printed
as tables and written to ``benchmarks/results.txt``.  The machine is noisy:
runs alternate ours and the reference, and medians are quoted.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (TreeRSS, bare_solve_field, fmt, make_fields, median_time, ratio,  # noqa: E402
                    rms, serve_process, synthetic_4k, table)

import astropy.units as u  # noqa: E402

from astrometry_query import AstrometryNetClass, conf  # noqa: E402
from astrometry_query.server import ServerThread  # noqa: E402
from astrometry_query.sources import extract_sources  # noqa: E402
from crowded import crowded  # noqa: E402
from longrun import longrun  # noqa: E402
from narrow import narrow  # noqa: E402
from photographs import photographs  # noqa: E402
from sequence import sequence  # noqa: E402
from blind import blind  # noqa: E402
from wide import wide  # noqa: E402

API_KEY = 'benchmarkkeyabcd'
OUT = []


def say(text=''):
    print(text, flush=True)
    OUT.append(text)


def _astroquery_client(server):
    from astroquery.astrometry_net import AstrometryNet as AstroqueryAstrometryNet
    client = AstroqueryAstrometryNet()
    client.api_key = API_KEY
    client.URL = server.url
    client.API_URL = server.url + '/api'
    return client


# -- accuracy ----------------------------------------------------------------------
def accuracy(fields, work):
    say('\n## Accuracy: RMS over the field against the true WCS (pixels)\n')
    say('Every path solves the same image; bare solve-field gets the same scale and '
        'position hints (its header cards) as flags.')
    rows, ours_all = [], []
    with ServerThread(workers=2, api_keys=[API_KEY]) as server, \
            AstrometryNetClass(backend='local') as local, \
            AstrometryNetClass(api_key=API_KEY, server=server.url, backend='nova') as nova:
        for f in fields:
            kw = dict(verbose=False, cache=False, solve_timeout=300)
            errs = {}
            errs['local image'] = rms(f.truth, local.solve_from_image(f.path, **kw), f.shape)
            src = extract_sources(f.path)
            ny, nx = f.shape
            errs['local list'] = rms(f.truth, local.solve_from_source_list(
                src['x'], src['y'], nx, ny, scale=(0.8 * f.scale, 1.25 * f.scale) * u.arcsec / u.pix,
                **kw), f.shape)
            errs['server list'] = rms(f.truth, nova.solve_from_image(f.path, **kw), f.shape)
            errs['server upload'] = rms(f.truth, nova.solve_from_image(
                f.path, force_image_upload=True, **kw), f.shape)
            _, bare = bare_solve_field(f.path, Path(work) / f'bare-{f.name}', hints=f.hints)
            bare_err = rms(f.truth, bare, f.shape)
            worst = max(errs.values())
            ours_all += list(errs.values())
            rows.append([f.name] + [fmt(errs[k]) for k in errs] + [fmt(bare_err),
                                                                    ratio(worst, bare_err)])
    say(table(rows, ['field', 'local image', 'local list', 'server list', 'server upload',
                     'bare solve-field', 'worst/bare']))
    say(f'\nOurs over {len(ours_all)} solves: median {np.median(ours_all):.4f} px, '
        f'max {np.max(ours_all):.4f} px (targets: median <= 0.05, max <= 0.15; '
        'worst/bare <= 1.10).')


# -- speed of the local backend ------------------------------------------------------
def speed(fields, work, repeat):
    say('\n## Speed: local backend against bare solve-field on the same images (seconds, medians)\n')
    say('Ours: `AstrometryNet.solve_from_image(path)` (defaults, header hints on), in '
        'process.  Bare default: `solve-field image.fits` (blind, with its plots).  Bare '
        'hinted: `solve-field --no-plots` with the header\'s scale and position as flags.')
    rows = []
    with AstrometryNetClass(backend='local') as local:
        for f in fields:
            ours_t, bare_t, hint_t, errs = [], [], [], []
            for _ in range(repeat):      # alternate ours and the references
                t0 = time.perf_counter()
                header = local.solve_from_image(f.path, verbose=False, cache=False)
                ours_t.append(time.perf_counter() - t0)
                errs.append(rms(f.truth, header, f.shape))
                t, bare = bare_solve_field(f.path, Path(work) / f'speed-{f.name}', hints=f.hints)
                hint_t.append(t)
            t, bare = bare_solve_field(f.path, Path(work) / f'speed-default-{f.name}',
                                       timeout=900)
            bare_t.append(t)
            ours, hinted, default = (statistics.median(v) for v in (ours_t, hint_t, bare_t))
            rows.append([f.name, f'{ours:.3f}', f'{default:.2f}', f'{default / ours:.1f}x',
                         f'{hinted:.2f}', f'{hinted / ours:.1f}x', fmt(np.median(errs)),
                         fmt(rms(f.truth, bare, f.shape))])
    say(table(rows, ['field', 'ours', 'bare default', 'speed-up', 'bare hinted', 'speed-up',
                     'ours RMS px', 'bare RMS px']))


# -- end to end through the server ---------------------------------------------------
def server_e2e(fields, work, repeat):
    say('\n## End to end through `astrometry-query serve` (seconds, medians)\n')
    say('Our client (sources extracted here, list uploaded, long polls) and astroquery\'s '
        'client (its own source extraction and 1 s polls) against the same 2-worker server, '
        'beside bare hinted and default solve-field on the same image.')
    rows = []
    with ServerThread(workers=2, api_keys=[API_KEY]) as server, \
            AstrometryNetClass(api_key=API_KEY, server=server.url, backend='nova') as nova:
        aq = _astroquery_client(server)
        for f in fields:
            ours_t, aq_t, hint_t = [], [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                nova.solve_from_image(f.path, verbose=False, cache=False)
                ours_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                try:
                    aq.solve_from_image(str(f.path), verbose=False, solve_timeout=300)
                    aq_t.append(time.perf_counter() - t0)
                except Exception:
                    aq_t.append(float('nan'))
                hint_t.append(bare_solve_field(f.path, Path(work) / f'e2e-{f.name}',
                                               hints=f.hints)[0])
            default = bare_solve_field(f.path, Path(work) / f'e2e-default-{f.name}',
                                       timeout=900)[0]
            ours, aqm, hinted = (statistics.median(v) for v in (ours_t, aq_t, hint_t))
            rows.append([f.name, f'{ours:.3f}', f'{aqm:.2f}', f'{aqm / ours:.1f}x',
                         f'{hinted:.2f}', f'{hinted / ours:.1f}x', f'{default:.2f}',
                         f'{default / ours:.1f}x'])
    say(table(rows, ['field', 'ours', 'astroquery', 'ratio', 'bare hinted', 'ratio',
                     'bare default', 'ratio']))


# -- extraction ----------------------------------------------------------------------
def extraction(work, repeat):
    say('\n## Source extraction on a 4096x4096 float32 image (seconds, medians)\n')
    from astropy.stats import sigma_clipped_stats
    from photutils.detection import DAOStarFinder
    path = Path(work) / 'stars4k.fits'
    data, xs, ys, flux = synthetic_4k(path)
    ours_t, dao_t = [], []
    ours = dao = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours = extract_sources(data)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, median, std = sigma_clipped_stats(data, sigma=3.0)
        dao = DAOStarFinder(fwhm=3.0, threshold=5.0 * std)(data - median)
        dao_t.append(time.perf_counter() - t0)
    t_from_file = median_time(lambda: extract_sources(path), repeat)[0]
    # The same stars: DAOStarFinder's brightest N against ours (N = what we keep).
    n = len(ours)
    xcol = 'x_centroid' if 'x_centroid' in dao.colnames else 'xcentroid'
    ycol = 'y_centroid' if 'y_centroid' in dao.colnames else 'ycentroid'
    dao.sort('flux', reverse=True)
    dx, dy = np.asarray(dao[xcol][:n]) + 1, np.asarray(dao[ycol][:n]) + 1
    from scipy.spatial import cKDTree
    d, _ = cKDTree(np.column_stack([ours['x'].value, ours['y'].value])).query(
        np.column_stack([dx, dy]))
    found = float(np.mean(d < 1.0))
    tx, ty = xs + 1, ys + 1
    dt, _ = cKDTree(np.column_stack([tx, ty])).query(np.column_stack([ours['x'].value,
                                                                      ours['y'].value]))
    dd, _ = cKDTree(np.column_stack([tx, ty])).query(np.column_stack([dx, dy]))
    o, p = statistics.median(ours_t), statistics.median(dao_t)
    say(table([['ours (array in memory)', f'{o:.3f}', f'{p / o:.1f}x faster', len(ours),
                f'{np.median(dt[dt < 1]):.4f}', f'{np.sqrt(np.mean(dt[dt < 1] ** 2)):.4f}'],
               ['ours (from the FITS file)', f'{t_from_file:.3f}', f'{p / t_from_file:.1f}x faster',
                '', '', ''],
               ['photutils DAOStarFinder', f'{p:.3f}', '1.0x', len(dao),
                f'{np.median(dd[dd < 1]):.4f}', f'{np.sqrt(np.mean(dd[dd < 1] ** 2)):.4f}']],
              ['extractor', 'seconds', 'vs DAOStarFinder', 'sources', 'median error px',
               'RMS px']))
    say('\n(Position errors against the true positions; the RMS is dominated by the few '
        'overlapping pairs of this random field.)')
    say(f'\nOf DAOStarFinder\'s {n} brightest detections, {100 * found:.1f} % are among ours '
        '(within 1 px).  Targets: <= 0.3 s and >= 10x faster.')


# -- repeat solves from the cache ------------------------------------------------------
def cache(fields, repeat):
    say('\n## A repeated identical solve (through the server, nova backend)\n')
    f = fields[0]
    with ServerThread(workers=2, api_keys=[API_KEY]) as server, \
            AstrometryNetClass(api_key=API_KEY, server=server.url, backend='nova') as nova:
        calls = []
        original = nova._request

        def counting(*args, **kwargs):
            calls.append(args[:2])
            return original(*args, **kwargs)
        nova._request = counting
        t0 = time.perf_counter()
        first = nova.solve_from_image(f.path, verbose=False)
        first_t, first_calls = time.perf_counter() - t0, len(calls)
        times = []
        for _ in range(max(repeat, 10)):
            del calls[:]
            t0 = time.perf_counter()
            again = nova.solve_from_image(f.path, verbose=False)
            times.append(time.perf_counter() - t0)
        assert again == first
        cached_calls = len(calls)
        del calls[:]
        t0 = time.perf_counter()
        nova.solve_from_image(f.path, verbose=False, cache=False)
        uncached_t, uncached_calls = time.perf_counter() - t0, len(calls)
    say(table([['first solve', f'{first_t:.3f}', first_calls],
               ['repeat, cache=False', f'{uncached_t:.3f}', uncached_calls],
               ['repeat, cached (median)', f'{statistics.median(times):.4f}', cached_calls]],
              ['solve', 'seconds', 'HTTP requests']))
    say(f'\nTarget: 0 requests and <= 0.05 s for a cached repeat ({f.name}, '
        f'{os.path.getsize(f.path) / 1e6:.1f} MB file).')


# -- memory ----------------------------------------------------------------------------
_MEMORY_CHILD = r'''
import sys
from astrometry_query import AstrometryNetClass
with AstrometryNetClass(backend='local') as c:
    c.solve_from_image(sys.argv[1], verbose=False, cache=False, solve_timeout=600)
'''


def memory(work):
    say('\n## Memory: an 8192x8192 float32 image (256 MB file), peak RSS of the process '
        'and all its children (summed, sampled every 5 ms)\n')
    import psutil
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astrometry_query.datasets import render_field
    path = Path(work) / 'big8k.fits'
    if not path.is_file():
        sf = render_field(SkyCoord(83.3, -1.2, unit='deg'), pixel_scale=1.5 * u.arcsec / u.pix,
                          shape=(8192, 8192), rotation=12 * u.deg, fwhm=3.0, seed=3,
                          hot_pixels=50)
        sf.writeto(path, overwrite=True, truth='extension')
        del sf
    size = path.stat().st_size
    rows = []
    for name, cmd in (('ours (local backend)', [sys.executable, '-c', _MEMORY_CHILD, str(path)]),
                      ('bare solve-field (hinted)', None),
                      ('python + astrometry_query imported, idle',
                       [sys.executable, '-c', 'import astrometry_query, scipy.spatial, sep, '
                        'time; from astrometry_query import AstrometryNetClass; time.sleep(0.5)'])):
        if cmd is None:
            from astrometry_query.hints import header_hints
            from astrometry_query.images import open_image
            img = open_image(path)
            hints = header_hints(img.header, img.shape)
            bare = Path(work) / 'mem-bare'
            bare.mkdir(exist_ok=True)
            cmd = ['solve-field', '--overwrite', '--no-plots', '--dir', str(bare),
                   '--scale-units', 'arcsecperpix', '--scale-low', str(hints.scale['scale_lower']),
                   '--scale-high', str(hints.scale['scale_upper']), '--ra',
                   str(hints.position['center_ra']), '--dec', str(hints.position['center_dec']),
                   '--radius', str(hints.position['radius']), str(path)]
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with TreeRSS(proc.pid) as sampler:
            proc.wait()
        rows.append([name, f'{sampler.peak / 1e6:.0f}', f'{sampler.peak / size:.2f}x',
                     f'{time.perf_counter() - t0:.1f}'])
    say(table(rows, ['run', 'peak RSS MB', 'of the file size', 'seconds']))
    say('\nTarget: ours <= 1.5x the file size.')


# -- polling ---------------------------------------------------------------------------
def polling(fields, work):
    say('\n## Waiting on a server job: idle time after the job finished (seconds)\n')
    say('A blind solve that takes the server a few seconds; end-to-end time minus the '
        'server\'s own solve time is the time the client spent waiting for nothing.')
    import json
    f = next(x for x in fields if x.name == 'ori_6as') if any(
        x.name == 'ori_6as' for x in fields) else fields[0]
    rows = []
    with ServerThread(workers=1, api_keys=[API_KEY]) as server, \
            AstrometryNetClass(api_key=API_KEY, server=server.url, backend='nova') as nova:
        aq = _astroquery_client(server)
        for name in ('ours', 'astroquery', 'ours', 'astroquery'):
            t0 = time.perf_counter()
            if name == 'ours':
                header = nova.solve_from_image(f.path, verbose=False, cache=False,
                                               header_hints=False)
            else:
                header = aq.solve_from_image(str(f.path), verbose=False, solve_timeout=300)
            total = time.perf_counter() - t0
            job = header.get('AN_JOBID') or max(nova.list_jobs()['job_id'])
            result = json.loads((server.data_dir / 'jobs' / str(job) / 'result.json').read_text())
            rows.append([name, f'{total:.2f}', f'{result["elapsed"]:.2f}',
                         f'{total - result["elapsed"]:.2f}'])
    say(table(rows, ['client', 'end to end', 'server solve', 'idle + transfer']))


# -- batches ---------------------------------------------------------------------------
def _serve(data_dir, port, extra=()):
    """`astrometry-query serve` in its own process (as deployed); returns the Popen."""
    return serve_process(data_dir, port, API_KEY, extra=extra, timeout=60.0)


def _server_times(data_dir, job_ids):
    """Per job: the server's own time on it (start to end, its database) and the
    pipeline's (result.json)."""
    import datetime
    import json
    import sqlite3
    db = sqlite3.connect(str(Path(data_dir) / 'nova.sqlite3'))
    stamp = lambda s: datetime.datetime.fromisoformat(s).timestamp()  # noqa: E731
    windows, pipeline = [], []
    for job in job_ids:
        start, end = db.execute('SELECT start_time, end_time FROM jobs WHERE id = ?',
                                (int(job),)).fetchone()
        windows.append(stamp(end) - stamp(start))
        pipeline.append(json.loads((Path(data_dir) / 'jobs' / str(job) / 'result.json')
                                   .read_text())['elapsed'])
    return sum(windows), sum(pipeline)


def batches(work, n=32):
    say(f'\n## Batches of {n} distinct images (seconds)\n')
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astrometry_query.datasets import render_field
    folder = Path(work) / 'batch'
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(n):
        path = folder / f'b{i:02d}.fits'
        if not path.is_file():
            ra, dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-0.9, 0.9)))
            render_field(SkyCoord(ra, dec, unit='deg'), pixel_scale=rng.uniform(8, 20) * u.arcsec / u.pix,
                         shape=(600, 700), rotation=rng.uniform(0, 360) * u.deg,
                         flip=bool(i % 2), fwhm=3.0, hot_pixels=10, seed=i).writeto(
                path, truth='extension')
        paths.append(path)
    rows = []
    # Local: sequential loop, the default batch (worker processes), threads, a Dask cluster.
    with AstrometryNetClass(backend='local') as local:
        local.solve_from_image(paths[0], verbose=False, cache=False)       # warm
        t0 = time.perf_counter()
        for p in paths:
            local.solve_from_image(p, verbose=False, cache=False)
        sequential = time.perf_counter() - t0
        rows.append(['local, sequential solve_from_image loop', f'{sequential:.2f}', '1.00x', ''])
        t0 = time.perf_counter()
        default = local.solve_many(paths, verbose=False, cache=False)
        t = time.perf_counter() - t0
        rows.append(['local solve_many (default: 2 worker processes)', f'{t:.2f}',
                     f'{sequential / t:.2f}x', f'{default.meta["solved"]}/{n} solved'])
        t0 = time.perf_counter()
        threads = local.solve_many(paths, executor='threads', verbose=False, cache=False)
        t = time.perf_counter() - t0
        rows.append(["local solve_many(executor='threads')", f'{t:.2f}', f'{sequential / t:.2f}x',
                     f'{threads.meta["solved"]}/{n} solved'])
        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            dask = local.solve_many(paths, executor=client, verbose=False, cache=False)
            t = time.perf_counter() - t0
            same = bool(np.allclose(dask['ra'], default['ra'], atol=1e-9)
                        and np.allclose(dask['dec'], default['dec'], atol=1e-9))
            rows.append(['local solve_many on a Dask LocalCluster (2 processes)', f'{t:.2f}',
                         f'{sequential / t:.2f}x',
                         f'results identical to the default: {same}'])
    say(table(rows, ['run', 'seconds', 'vs sequential', 'note']))
    say('\nTarget: a local batch at least 1.8x faster than the sequential loop.')
    # Through the server: ours against the ideal and against astroquery's loop.
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        server = _serve(Path(tmp) / 'data', 8791)
        try:
            with AstrometryNetClass(api_key=API_KEY, server='http://127.0.0.1:8791') as nova:
                nova.login()
                t0 = time.perf_counter()
                table_ = nova.solve_many(paths, verbose=False, cache=False)
                ours = time.perf_counter() - t0
            windows, pipeline = _server_times(Path(tmp) / 'data', table_['job_id'])
            rows.append(['ours: solve_many', f'{ours:.2f}', f'{ours / (windows / 2):.2f}x',
                         f'{ours / (pipeline / 2):.2f}x', f'{table_.meta["solved"]}/{n} solved'])

            class _Server:
                url = 'http://127.0.0.1:8791'
            aq = _astroquery_client(_Server())
            t0 = time.perf_counter()
            solved = 0
            for p in paths:
                try:
                    aq.solve_from_image(str(p), verbose=False, solve_timeout=300)
                    solved += 1
                except Exception:
                    pass
            aq_t = time.perf_counter() - t0
            rows.append(["astroquery's sequential loop", f'{aq_t:.2f}', '', '',
                         f'{solved}/{n} solved; ours is {aq_t / ours:.1f}x faster'])
        finally:
            server.terminate()
            server.wait()
        say(table(rows, ['client (2-worker `astrometry-query serve`)', 'seconds',
                         'vs ideal (job windows)', 'vs ideal (pipeline)', 'note']))
        say('\nIdeal = the server\'s time on the jobs / 2 workers: "job windows" is each '
            'job\'s start-to-end in the server\'s database, "pipeline" the solve function alone. '
            'Targets: at most 1.15x the ideal, at least 3x faster than astroquery\'s loop.')
        # The server on a Dask cluster: every solve a task on the cluster's workers.
        from distributed import Client, LocalCluster
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            server = _serve(Path(tmp) / 'dask-data', 8792,
                            ['--dask-scheduler', cluster.scheduler_address])
            try:
                with AstrometryNetClass(api_key=API_KEY, server='http://127.0.0.1:8792') as nova:
                    t0 = time.perf_counter()
                    on_dask = nova.solve_many(paths, verbose=False, cache=False)
                    t = time.perf_counter() - t0
                import json
                pids = set(client.run(os.getpid).values())
                used = {int(json.loads((Path(tmp) / 'dask-data' / 'jobs' / str(j) / 'result.json')
                                       .read_text())['worker'].split(':')[1])
                        for j in on_dask['job_id']}
            finally:
                server.terminate()
                server.wait()
        say(f'\nServer on a Dask LocalCluster (2 worker processes): {on_dask.meta["solved"]}/{n} '
            f'solved in {t:.2f} s; solves ran in {len(used)} processes, all of them the '
            f'cluster\'s workers: {used <= pids}.')


SECTIONS = ('accuracy', 'speed', 'server', 'extraction', 'cache', 'memory', 'polling', 'batch',
            'narrow', 'sequence', 'wide', 'longrun', 'crowded', 'photographs', 'blind')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', choices=SECTIONS, action='append')
    parser.add_argument('--quick', action='store_true', help='three fields, one repeat')
    parser.add_argument('--work', default=None, help='folder for fields and solver output')
    args = parser.parse_args(argv)
    sections = args.only or SECTIONS
    repeat = 1 if args.quick else 3
    work = Path(args.work or tempfile.mkdtemp(prefix='aq-bench-'))
    work.mkdir(parents=True, exist_ok=True)     # a --work folder that does not exist yet
    conf.poll_interval = 0.5
    names = ['and_3as', 'sco_10as_flip', 'cas_11as_radial'] if args.quick else None
    needs_fields = {'accuracy', 'speed', 'server', 'cache', 'polling'} & set(sections)
    fields = make_fields(work / 'fields', names) if needs_fields else []
    say(f'# astrometry_query benchmarks ({time.strftime("%Y-%m-%d %H:%M")}, '
        f'{os.cpu_count()} cores, work dir {work})')
    runners = {'accuracy': lambda: accuracy(fields, work),
               'speed': lambda: speed(fields, work, repeat),
               'server': lambda: server_e2e(fields, work, repeat),
               'extraction': lambda: extraction(work, repeat),
               'cache': lambda: cache(fields, repeat),
               'memory': lambda: memory(work),
               'polling': lambda: polling(fields, work),
               'batch': lambda: batches(work),
               'narrow': lambda: narrow(work, repeat, say),
               'sequence': lambda: sequence(work, repeat, say),
               'wide': lambda: wide(work, repeat, say),
               'longrun': lambda: longrun(work, repeat, say),
               'crowded': lambda: crowded(work, repeat, say),
               'photographs': lambda: photographs(work, repeat, say),
               'blind': lambda: blind(work, repeat, say)}
    for name in sections:
        runners[name]()
    name = 'results.txt' if sections == SECTIONS else f'results-{"-".join(sections)}.txt'
    (Path(__file__).parent / name).write_text('\n'.join(OUT) + '\n')


if __name__ == '__main__':
    main()
