"""A blind search split across processes: the first engine to solve wins.

One ``astrometry-engine`` is single-threaded: a blind search (no scale
hint) uses one core however many the machine has.  Here the index files
are dealt out in turn, in order of quad size, to a few engines that run at
once on the same .axy, each in its own folder with its own configuration
(``inparallel`` over its share).  Every engine thus covers the whole scale
range with every other index file, so a field that two neighbouring index
scales can solve is within reach of several of them.  The first engine
that writes a WCS wins; the others are killed at once (with their process
groups), and the winner's files are moved to where a single engine would
have written them.  This is what StellarSolver does in C++ with threads.
"""
import functools
import os
import select
import shutil
import signal
import time
from pathlib import Path

from astropy.io import fits

from ..jobs.files import ENGINE_LOG, ENGINE_OUTPUTS, JOB_CONFIG
from .solver import (EngineOutcome, engine_logodds, find_installation, forget_engine,
                     start_engine, write_engine_config)

__all__ = ['search_workers', 'split_index_files', 'run_split_search', 'MAX_AUTO_WORKERS']

#: Most engines a blind search is split into by default (``workers=None``).
MAX_AUTO_WORKERS = 4
#: Folder prefix of each engine of a split search, inside the work directory.
SHARE_DIR = 'search-'


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def search_workers(workers, n_index_files):
    """How many engines a blind search is split into.

    ``workers``: None or 0 for automatic (the cores this process may use, at
    most `MAX_AUTO_WORKERS`), 1 for a single engine, else that many; never
    more than there are index files.
    """
    n = min(_cores(), MAX_AUTO_WORKERS) if not workers else int(workers)
    return max(1, min(n, n_index_files))


@functools.lru_cache(maxsize=512)
def _quad_scale(path, mtime):
    """Smallest quad of an index file (radians, its header's SCALE_L); inf if unknown."""
    try:
        return float(fits.getheader(path, 0).get('SCALE_L', float('inf')))
    except Exception:
        return float('inf')


def split_index_files(index_files, n):
    """Deal the index files out to ``n`` groups in turn, in order of quad size
    (each group spans the whole scale range); empty groups are left out."""
    def scale(f):
        try:
            return _quad_scale(str(f), os.path.getmtime(f)), str(f)
        except OSError:
            return float('inf'), str(f)
    ordered = sorted(index_files, key=scale)
    groups = [ordered[i::n] for i in range(max(1, int(n)))]
    return [tuple(g) for g in groups if g]


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _wait_any(procs, timeout):
    """Block until one of ``procs`` may have exited, or ``timeout`` seconds."""
    fds = []
    try:
        for proc in procs:
            fds.append(os.pidfd_open(proc.pid))
    except (AttributeError, OSError):        # no pidfd: poll
        for fd in fds:
            os.close(fd)
        time.sleep(min(timeout, 0.005))
        return
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        poller.poll(max(0, timeout) * 1000)
    finally:
        for fd in fds:
            os.close(fd)


def run_split_search(axy_path, work_dir, groups, *, timeout=None, installation=None,
                     wcs_name=ENGINE_OUTPUTS['wcs']):
    """Run one engine per group of index files on the same .axy; the first
    that solves wins and the others are killed.

    Parameters
    ----------
    axy_path : path-like
        The .axy (its output names are relative to each engine's folder).
    work_dir : path-like
        Where the winner's outputs (WCS, corr, rdls, solved) end up, as a
        single `~astrometry_query.local.solver.run_engine` would leave them.
    groups : list of tuple of path
        The index files of each engine (see `split_index_files`).
    timeout : float, optional
        Wall-clock seconds for the whole search; each engine's CPU limit too.
    installation : `~astrometry_query.local.solver.Installation`, optional

    Returns
    -------
    `~astrometry_query.local.solver.EngineOutcome`
        Its ``log`` holds every engine's log; ``split`` says how many
        engines ran, which one solved (its index files) and how many were
        cancelled.
    """
    inst = installation or find_installation()
    work_dir = Path(work_dir).resolve()
    axy_path = Path(axy_path).resolve()
    wcs_path = work_dir / wcs_name
    wcs_path.unlink(missing_ok=True)
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    folders, procs = [], []
    winner, timed_out, cancelled = None, False, 0
    try:
        for i, group in enumerate(groups):
            folder = work_dir / f'{SHARE_DIR}{i}'
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            config = write_engine_config(folder / JOB_CONFIG, inst, inparallel=True,
                                         cpulimit=timeout or 300, index_files=group)
            # The log goes to a file: a pipe nobody reads while waiting could fill.
            with open(folder / ENGINE_LOG, 'wb') as log:
                proc = start_engine(config, axy_path, folder, log, inst)
            folders.append(folder)
            procs.append(proc)
        running = set(range(len(procs)))
        while running and winner is None:
            for i in sorted(running):
                if procs[i].poll() is None:
                    continue
                running.discard(i)
                # Only an engine that ended by itself has a whole WCS.
                if procs[i].returncode == 0 and (folders[i] / wcs_name).is_file():
                    winner = i
                    break
            if winner is not None or not running:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            _wait_any([procs[i] for i in running], 0.5 if left is None else min(0.5, left))
    finally:
        for proc in procs:
            if proc.poll() is None:
                cancelled += 1
                _kill(proc)
            forget_engine(proc)
    elapsed = time.monotonic() - start
    log_parts = []
    for i, folder in enumerate(folders):
        try:
            text = (folder / ENGINE_LOG).read_text('utf-8', 'replace')
        except OSError:
            text = ''
        names = ', '.join(Path(f).name for f in groups[i])
        state = 'solved' if i == winner else 'cancelled' if procs[i].returncode < 0 else 'ended'
        log_parts.append(f'--- engine {i + 1}/{len(folders)} ({state}): {names}\n{text}')
    log = '\n'.join(log_parts)
    if timed_out:
        log += f'\nastrometry_query: stopped after the time limit of {timeout:g} s\n'
    if winner is not None:
        for name in set(ENGINE_OUTPUTS.values()) | {wcs_name}:
            if (folders[winner] / name).is_file():
                os.replace(folders[winner] / name, work_dir / name)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    solved = winner is not None and wcs_path.is_file()
    returncode = procs[winner].returncode if winner is not None else (
        0 if timed_out else max((p.returncode or 0 for p in procs), default=0))
    return EngineOutcome(solved=solved, wcs_path=wcs_path if solved else None, elapsed=elapsed,
                         timed_out=timed_out and not solved, returncode=returncode, log=log,
                         logodds=engine_logodds(wcs_path, log) if solved else None,
                         split={'engines': len(folders), 'cancelled': cancelled,
                                'solved_by': [Path(f).name for f in groups[winner]]
                                if solved else None})
