"""Long runs: memory, open files, threads and time over many solves.

In one process (as an observatory's script or a notebook runs all night):
300 local solves of 10 rendered fields (600 x 500 px at 6"/px, ten sky
positions, header hints as a camera writes them), each solved 30 times with
the result cache off.  The process's RSS, open file descriptors and threads
are read after every solve; RSS growth is quoted from solve 50 (imports,
index headers and the first allocations done) to solve 300, and the time per
solve for each block of 50, beside bare ``solve-field`` (given the same
hints as flags) on the same fields.

Then a server (``astrometry-query serve``, 2 workers, in its own process as
deployed) given 1,000 jobs (source lists of those fields, with scale and
position hints, through our nova client; a server without API keys, so that
every page shows every job): the server's RSS (its own process,
and with its worker processes), open files and threads, and the latency of
the API's job info, the job list and the web pages, at 100, 500 and 1,000 jobs.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from astrometry_query.datasets import render_field
from astrometry_query.hints import header_hints
from astrometry_query.images import open_image

from common import bare_solve_field, ratio, serve_process, table

#: Ten sky positions (RA, Dec) of the fields.
CENTRES = [(120.0, 15.0), (83.8, -5.4), (10.7, 41.3), (280.5, -40.2), (30.2, 60.3),
           (200.0, -60.0), (186.0, 12.0), (330.0, 5.0), (250.0, 36.0), (150.0, -20.0)]
SHAPE = (500, 600)
SCALE = 6.0
N_SOLVES = 300
N_JOBS = 1000
CHECKPOINTS = (50, 100, 150, 200, 250, 300)
JOB_CHECKPOINTS = (100, 500, 1000)
API_KEY = 'longrunbenchkey1'


def make_fields(folder):
    """The ten fields (FITS with camera-like headers), rendered once."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (ra, dec) in enumerate(CENTRES):
        path = folder / f'field{i}.fits'
        if not path.is_file():
            sf = render_field(SkyCoord(ra, dec, unit='deg'), pixel_scale=SCALE * u.arcsec / u.pix,
                              shape=SHAPE, rotation=(37 * i) * u.deg, flip=bool(i % 3 == 0),
                              seed=i, hot_pixels=5, cosmic_rays=2)
            sf.writeto(path, overwrite=True, truth='extension')
        paths.append(path)
    return paths


def process_state(pid=None):
    """(RSS bytes, open file descriptors, threads) of a process (default this one)."""
    import psutil
    proc = psutil.Process(pid or os.getpid())
    return proc.memory_info().rss, proc.num_fds(), proc.num_threads()


def tree_rss(pid):
    """Summed RSS of a process and its descendants."""
    import psutil
    proc = psutil.Process(pid)
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _cpu():
    """CPU seconds of this process and its waited-for children (the engines): less
    sensitive than wall time to what else the machine runs."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def local_run(paths, n, store, out=None):
    """``n`` local solves in this process, cycling over ``paths``; one record per
    solve: seconds, RSS, fds, threads (and written as JSON lines to ``out``)."""
    from astrometry_query import AstrometryNetClass, conf
    conf.local_data_dir = str(store)
    records = []
    sink = open(out, 'w') if out else None
    try:
        with AstrometryNetClass(backend='local') as client:
            for i in range(n):
                t0, c0 = time.perf_counter(), _cpu()
                header = client.solve_from_image(paths[i % len(paths)], cache=False,
                                                 verbose=False, solve_timeout=120)
                seconds, cpu = time.perf_counter() - t0, _cpu() - c0
                rss, fds, threads = process_state()
                record = {'i': i + 1, 'seconds': seconds, 'cpu': cpu, 'rss': rss, 'fds': fds,
                          'threads': threads, 'solved': header is not None}
                records.append(record)
                if sink:
                    sink.write(json.dumps(record) + '\n')
                    sink.flush()
    finally:
        if sink:
            sink.close()
    return records


def _block_times(records, key='seconds', size=50):
    return [statistics.median(r[key] for r in records[k:k + size])
            for k in range(0, len(records), size)]


def local_section(work, say, n=N_SOLVES):
    paths = make_fields(Path(work) / 'longrun-fields')
    say(f'\n### {n} local solves in one process (10 fields x {n // 10}, result cache off)\n')
    out = Path(work) / 'longrun-local.jsonl'
    # A process of its own: nothing of the benchmark's other sections in its memory.
    code = ('import sys, json; sys.path.insert(0, sys.argv[1]); from longrun import local_run; '
            'local_run([__import__("pathlib").Path(p) for p in json.loads(sys.argv[2])], '
            'int(sys.argv[3]), sys.argv[4], sys.argv[5])')
    def run(count, out):
        subprocess.run([sys.executable, '-c', code, str(Path(__file__).parent),
                        json.dumps([str(p) for p in paths]), str(count),
                        str(Path(work) / 'longrun-store'), str(out)], check=True)
        return [json.loads(line) for line in out.read_text().splitlines()]
    t0 = time.perf_counter()
    records = run(n, out)
    total = time.perf_counter() - t0
    # Then a fresh process, on the same store, at once: the time a solve takes on the
    # machine as it is now, for the long run's last block to be read against.
    fresh = run(50, Path(work) / 'longrun-fresh.jsonl')
    # The reference: bare solve-field on the same fields, given the header's hints.
    bare = []
    for path in paths:
        img = open_image(path)
        hints = header_hints(img.header, img.shape, img.wcs())
        bare.append(bare_solve_field(path, Path(work) / 'longrun-bare' / path.stem,
                                     hints=hints)[0])
    bare_median = statistics.median(bare)
    blocks, cpu = _block_times(records), _block_times(records, 'cpu')
    rows = []
    for k, at in enumerate(c for c in CHECKPOINTS if c <= len(records)):
        rec = records[at - 1]
        block = blocks[k]
        rows.append([at, f'{rec["rss"] / 1e6:.1f}', rec['fds'], rec['threads'],
                     f'{block:.3f}', f'{cpu[k]:.3f}', f'{bare_median:.3f}',
                     ratio(block, bare_median)])
    fresh_wall, fresh_cpu = _block_times(fresh)[0], _block_times(fresh, 'cpu')[0]
    rows.append(['50 in a fresh process', f'{fresh[-1]["rss"] / 1e6:.1f}', fresh[-1]['fds'],
                 fresh[-1]['threads'], f'{fresh_wall:.3f}', f'{fresh_cpu:.3f}',
                 f'{bare_median:.3f}', ratio(fresh_wall, bare_median)])
    say(table(rows, ['after solve', 'RSS MB', 'open fds', 'threads', 'wall s/solve',
                     'CPU s/solve', 'bare solve-field s', 'ratio (wall)']))
    say('\n(s/solve: medians over the block of 50 solves ending there; CPU: the process and '
        'its engines.  The last row: a new process solving the same fields right after, on '
        'the same job store.)')
    first = records[min(49, len(records) - 1)]
    last = records[-1]
    growth = 100.0 * (last['rss'] - first['rss']) / first['rss']
    slow = 100.0 * (blocks[-1] - blocks[0]) / blocks[0]
    slow_cpu = 100.0 * (cpu[-1] - cpu[0]) / cpu[0]
    against_fresh = 100.0 * (cpu[-1] - fresh_cpu) / fresh_cpu
    solved = sum(r['solved'] for r in records)
    say(f'\n{solved}/{len(records)} solved in {total:.0f} s.  RSS from solve {first["i"]} to '
        f'{last["i"]}: {first["rss"] / 1e6:.1f} -> {last["rss"] / 1e6:.1f} MB, growth '
        f'{growth:+.1f} % (target < 10 %); open fds {first["fds"]} -> {last["fds"]}, threads '
        f'{first["threads"]} -> {last["threads"]}; median time of the last block of 50 against '
        f'the first: {slow:+.1f} % wall, {slow_cpu:+.1f} % CPU; against a fresh process '
        f'solving the same fields right after: {against_fresh:+.1f} % CPU, '
        f'{100.0 * (blocks[-1] - fresh_wall) / fresh_wall:+.1f} % wall.  Bare solve-field is a process '
        f'per solve (nothing to grow): median {bare_median:.3f} s on the same fields.')
    return growth, against_fresh


def _timed_get(session, url, repeat=5, **kw):
    """Median seconds of a GET (and its status)."""
    times, status = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        resp = session.get(url, timeout=60, **kw)
        times.append(time.perf_counter() - t0)
        status = resp.status_code
    return statistics.median(times), status


def server_section(work, say, n_jobs=N_JOBS, port=8791):
    import requests
    from astrometry_query import AstrometryNetClass
    from astrometry_query.sources import extract_sources
    paths = make_fields(Path(work) / 'longrun-fields')
    lists = []
    for path in paths:
        img = open_image(path)
        hints = header_hints(img.header, img.shape, img.wcs())
        table_ = extract_sources(path)
        lists.append((np.asarray(table_['x'], float)[:200], np.asarray(table_['y'], float)[:200],
                      dict(hints.scale, **hints.position)))
    say(f'\n### A server given {n_jobs:,} jobs (source lists with hints, 2 worker processes)\n')
    data_dir = Path(work) / 'longrun-server'
    server = serve_process(data_dir, port, None)   # open: every page shows every job
    url = f'http://127.0.0.1:{port}'
    rows, done = [], 0
    started = time.perf_counter()
    try:
        with AstrometryNetClass(api_key=API_KEY, server=url, backend='nova') as client, \
                requests.Session() as web:
            client.login()
            for at in JOB_CHECKPOINTS:
                if at > n_jobs:
                    break
                while done < at:
                    chunk = min(50, at - done)
                    subs = []
                    for k in range(chunk):
                        x, y, hints = lists[(done + k) % len(lists)]
                        subs.append(client.submit_source_list(x, y, SHAPE[1], SHAPE[0],
                                                              solve_timeout=120, **hints))
                    for sub in subs:
                        client.wait(sub, solve_timeout=300, verbose=False)
                    done += chunk
                job_ids = client.list_job_records()
                last = max(j.id for j in job_ids)
                info, ok1 = _timed_get(web, f'{url}/api/jobs/{last}/info')
                home, ok2 = _timed_get(web, f'{url}/')
                page, ok3 = _timed_get(web, f'{url}/job/{last}')
                assert (ok1, ok2, ok3) == (200, 200, 200), (ok1, ok2, ok3)
                t0 = time.perf_counter()
                n_listed = len(client.list_job_records())
                listing = time.perf_counter() - t0
                rss, fds, threads = process_state(server.pid)
                rows.append([at, n_listed, f'{rss / 1e6:.1f}', f'{tree_rss(server.pid) / 1e6:.1f}',
                             fds, threads, f'{1000 * info:.1f}', f'{1000 * home:.1f}',
                             f'{1000 * page:.1f}', f'{1000 * listing:.0f}'])
    finally:
        server.terminate()
        server.wait()
    elapsed = time.perf_counter() - started
    say(table(rows, ['jobs', 'listed', 'server RSS MB', 'with workers MB', 'open fds', 'threads',
                     'job info ms', 'home page ms', 'job page ms', 'list_jobs ms']))
    first, last = rows[0], rows[-1]
    growth = 100.0 * (float(last[2]) - float(first[2])) / float(first[2])
    say(f'\n{done:,} jobs in {elapsed:.0f} s.  Server RSS from {first[0]} to {last[0]} jobs: '
        f'{first[2]} -> {last[2]} MB ({growth:+.1f} %); open fds {first[4]} -> {last[4]}, '
        f'threads {first[5]} -> {last[5]}; job info {first[6]} -> {last[6]} ms, home page '
        f'{first[7]} -> {last[7]} ms.  (list_jobs fetches every job\'s info: it grows with the '
        'jobs by design.)')
    return growth


def longrun(work, repeat, say, n_solves=N_SOLVES, n_jobs=N_JOBS):
    say('\n## Long runs: memory, files and time over many solves\n')
    say('RSS, open file descriptors and threads of one process over many local solves, and of '
        'a server over many jobs; time per solve beside bare solve-field on the same fields.')
    local_section(work, say, n_solves)
    server_section(work, say, n_jobs)
