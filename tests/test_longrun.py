"""Long runs keep memory, open files and threads flat.

Shorter versions of ``benchmarks/longrun.py`` (300 solves in one process, a
server given 1,000 jobs): many local solves in one process, and a server
given a few hundred cheap jobs, with the Python heap (tracemalloc), the RSS,
the open file descriptors and the threads read before and after.
"""
import gc
import os
import threading
import tracemalloc

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass
from astrometry_query.datasets import render_field
from astrometry_query.exceptions import SolveFailedError
from real_server import requires_solver

FIELDS = [(120.0, 15.0), (83.8, -5.4), (10.7, 41.3)]


def _state():
    """(open file descriptors, threads, RSS bytes) of this process."""
    fds = len(os.listdir('/proc/self/fd'))
    with open('/proc/self/statm') as f:
        rss = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    return fds, threading.active_count(), rss


def _solve_pool():
    """Threads of the local backend's solve pool (bounded: one per core)."""
    return sum(t.name.startswith('astrometry-solve') for t in threading.enumerate())


def _heap():
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@requires_solver
@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir('/proc/self/fd'), reason='reads /proc')
def test_many_local_solves_in_one_process_stay_flat(local, tmp_path):
    paths = []
    for i, (ra, dec) in enumerate(FIELDS):
        sf = render_field(SkyCoord(ra, dec, unit='deg'), pixel_scale=6 * u.arcsec / u.pix,
                          shape=(400, 500), rotation=30 * i * u.deg, seed=i)
        paths.append(sf.writeto(tmp_path / f'field{i}.fits', truth='extension'))

    def solve(n, start=0):
        for k in range(start, start + n):
            assert local.solve_from_image(paths[k % len(paths)], cache=False, verbose=False,
                                          solve_timeout=60) is not None
    solve(6)        # imports, index headers, pools and caches: warmed up
    tracemalloc.start()
    try:
        before, (fds, threads, rss) = _heap(), _state()
        threads -= _solve_pool()
        n = 30
        solve(n, 6)
        grown = _heap() - before
        after_fds, after_threads, after_rss = _state()
        after_pool = _solve_pool()
        after_threads -= after_pool
    finally:
        tracemalloc.stop()
    # Each job's request and outcome were kept with its Future (some 6 kB a solve,
    # without bound); what is left fills bounded caches.
    assert grown < 4000 * n, f"the heap grew {grown / n:.0f} bytes a solve"
    # No file nor thread per solve.  The solve pool starts a thread when a solve is
    # submitted before the last one's thread is idle again (one per core at most).
    assert after_fds == fds and after_threads == threads
    assert after_pool <= (os.cpu_count() or 1)
    assert after_rss < 1.10 * rss


@requires_solver
@pytest.mark.slow
def test_a_server_given_many_jobs_keeps_its_threads_files_and_heap(make_nova_server):
    server = make_nova_server(open=True)
    # Four sources: each a job that fails at once (too few to search), but a job all
    # the same, with its directory, outcome and command line.
    x, y = np.array([10.0, 50.0, 90.0, 130.0]), np.array([20.0, 80.0, 40.0, 120.0])
    with AstrometryNetClass(server=server.url, backend='nova') as client:
        def run(n):
            subs = [client.submit_source_list(x, y, 200, 200) for _ in range(n)]
            for sub in subs:
                with pytest.raises(SolveFailedError, match='only 4 sources were found'):
                    client.wait(sub, solve_timeout=60, verbose=False)
        run(20)
        tracemalloc.start()
        try:
            before, (fds, threads, _) = _heap(), _state()
            names = [t.name for t in threading.enumerate()]
            n = 100
            run(n)
            grown = _heap() - before
            after_fds, after_threads, _ = _state()
        finally:
            tracemalloc.stop()
        assert len(client.list_job_records()) == n + 20
    # No thread nor file per job (the web server's thread pool may add one of its bounded few).
    assert after_fds <= fds + 1 and after_threads <= threads + 2, (
        names, [t.name for t in threading.enumerate()])
    assert grown < 3000 * n, f'the heap grew {grown / n:.0f} bytes a job'
