"""A blind search split across processes: the first engine to solve wins.

One ``astrometry-engine`` given every index file (``inparallel``) tries each
quad of the field against all of them in step: its search goes at the pace
of the index files whose quads cost the most to look up, which are seldom
the ones that hold the field (measured: a 2"/px field that index 07 alone
solves in 0.16 s takes the whole set 9.5 s).  Here a blind search starts as
that one engine; when it has not solved within `ESCALATE_AFTER` seconds
(easy fields have), more engines join it, each on its share of the index
files (dealt out in turn, in order of quad size), all on the same .axy, each
in its own folder with its own configuration.  The first engine that writes
a WCS wins; the others are killed at once (with their process groups), and
the winner's files end where a single engine writes them (the first engine
works there).  The gain comes from searching the index files apart, not only from
more cores: it holds on a single busy core too.  StellarSolver does the
same in C++ with threads.
"""
import functools
import os
import select
import shutil
import signal
import time
from pathlib import Path

from astropy.io import fits

from ..files import move_into_place
from ..jobs.files import ENGINE_LOG, ENGINE_OUTPUTS, JOB_CONFIG
from .solver import (EngineOutcome, engine_logodds, find_installation, forget_engine,
                     start_engine, write_engine_config)

__all__ = ['search_workers', 'split_index_files', 'run_split_search', 'blind_search_plan',
           'MAX_AUTO_WORKERS', 'ESCALATE_AFTER']

#: Most engines a blind search is split into by default (``workers=None``).
MAX_AUTO_WORKERS = 16
#: Seconds the single engine searches alone before the split engines join it
#: (on 8 blind fields: 0.3 cost the fields it does not solve 0.1-0.15 s more;
#: 0.1 slowed those it solves in 0.14-0.21 s to 0.28-0.78 s).
ESCALATE_AFTER = 0.2
#: Folder prefix of each engine of a split search, inside the work directory.
SHARE_DIR = 'search-'


def search_workers(workers, n_index_files):
    """How many engines a blind search is split into.

    ``workers``: None or 0 for automatic (one per index file, at most
    `MAX_AUTO_WORKERS`), 1 for a single engine, else that many; never more
    than there are index files.
    """
    n = MAX_AUTO_WORKERS if not workers else int(workers)
    return max(1, min(n, n_index_files))


def blind_search_plan(index_files, workers=None):
    """(groups, delays) of a blind search for `run_split_search`: every index
    file at once, then, after `ESCALATE_AFTER` s, each share of them apart;
    None for a single engine."""
    n = search_workers(workers, len(index_files))
    if n <= 1:
        return None
    groups = [tuple(index_files)] + split_index_files(index_files, n)
    return groups, [0.0] + [ESCALATE_AFTER] * (len(groups) - 1)


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
                     wcs_name=ENGINE_OUTPUTS['wcs'], delays=None):
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
    delays : list of float, optional
        Seconds after the start at which each group's engine starts, if no
        engine has solved by then (default: all at once).

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
    delays = list(delays) if delays is not None else [0.0] * len(groups)
    start = time.monotonic()
    deadline = start + timeout if timeout else None
    folders, procs, launched = [], [], []
    winner, timed_out, cancelled = None, False, 0
    try:
        pending = sorted(range(len(groups)), key=lambda i: delays[i])
        running = set()
        while winner is None:
            now = time.monotonic()
            # One start a pass: a winner or the time limit is seen between starts.
            if pending and now - start >= delays[pending[0]]:
                i = pending.pop(0)
                # The first engine works where a single one would; the others apart.
                folder = work_dir / f'{SHARE_DIR}{len(procs)}' if procs else work_dir
                if procs:
                    shutil.rmtree(folder, ignore_errors=True)
                    folder.mkdir(parents=True)
                left = timeout - (now - start) if timeout else 300
                config = write_engine_config(folder / JOB_CONFIG, inst, inparallel=True,
                                             cpulimit=max(1.0, left), index_files=groups[i])
                # The log goes to a file: a pipe nobody reads while waiting could fill.
                with open(folder / ENGINE_LOG, 'wb') as log:
                    proc = start_engine(config, axy_path, folder, log, inst)
                running.add(len(procs))
                folders.append(folder)
                procs.append(proc)
                launched.append(i)
            for k in sorted(running):
                if procs[k].poll() is None:
                    continue
                running.discard(k)
                # Only an engine that ended by itself has a whole WCS.
                if procs[k].returncode == 0 and (folders[k] / wcs_name).is_file():
                    winner = k
                    break
            if winner is not None or not (running or pending):
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                timed_out = True
                break
            wait = 0.5 if left is None else min(0.5, left)
            if pending:     # (0 when the next start is due)
                wait = min(wait, max(0.0, start + delays[pending[0]] - time.monotonic()))
            if running:
                _wait_any([procs[k] for k in running], wait)
            else:
                time.sleep(wait)
    finally:
        for proc in procs:
            if proc.poll() is None:
                cancelled += 1
                _kill(proc)
            forget_engine(proc)
    groups = [groups[i] for i in launched]
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
    if winner:      # not the first engine's, already in place
        for name in set(ENGINE_OUTPUTS.values()) | {wcs_name}:
            if (folders[winner] / name).is_file():
                move_into_place(folders[winner] / name, work_dir / name)
    for folder in folders[1:]:
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
