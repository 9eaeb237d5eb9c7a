"""The local solver: finding astrometry.net and running ``astrometry-engine``.

Only the engine runs: the source list and its directives (the .axy) are
built in process (`astrometry_query.local.axy`), so none of ``solve-field``'s
image conversion, source extraction, plotting or file copying is paid for.
Success means exactly "``wcs.fits`` was written" (the engine exits 0 when it
finds nothing too).
"""
import functools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import LocalSolverNotFoundError
from ..index.locations import (configured_index_dirs, default_index_dirs, find_config, index_dirs,
                               index_files)
from ..jobs.files import JOB_CONFIG

__all__ = ['Installation', 'find_installation', 'solver_available', 'EngineOutcome',
           'run_engine', 'engine_logodds', 'write_engine_config', 'kill_process_group', 'stop_all_engines',
           'xy_columns', 'start_engine', 'forget_engine', 'INSTALL_SOLVER', 'INSTALL_INDEXES']
# The split search (several engines racing on one field) is in `.search`.

INSTALL_SOLVER = 'sudo apt-get install astrometry.net'
INSTALL_INDEXES = ('sudo apt-get install astrometry-data-tycho2-10-19-littleendian '
                   'astrometry-data-tycho2-07-littleendian '
                   'astrometry-data-tycho2-08-littleendian '
                   'astrometry-data-tycho2-09-littleendian')

#: Seconds between SIGTERM and SIGKILL when a solve is stopped.
_KILL_GRACE = 2.0
#: prctl's option "send me this signal when my parent dies" (Linux).
_PR_SET_PDEATHSIG = 1


def _end_with_parent_hook():
    """A ``preexec_fn`` for an engine: killed when the process that started it
    dies, however it dies (kill -9 of a whole command and its workers, an
    out-of-memory kill), so an engine never runs on alone.  None where the
    system cannot tell (not Linux)."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook():
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:      # it died before the request was made
            os._exit(1)
    return hook


@dataclass(frozen=True)
class Installation:
    """Where the local astrometry.net programs and index files are.

    Attributes
    ----------
    engine : str
        Path of the ``astrometry-engine`` program.
    plot_constellations : str or None
        Path of ``plot-constellations`` (needed for objects in field and
        annotations), None when it is not installed.
    query_starkd : str or None
        Path of ``query-starkd`` (reference stars for the WCS refit).
    config : `~pathlib.Path` or None
        The astrometry.net configuration file the index directories came from.
    index_dirs : tuple of `~pathlib.Path`
        Directories searched for index files.
    index_files : tuple of `~pathlib.Path`
        The ``index-*.fits`` files found there.
    """
    engine: str
    plot_constellations: str | None
    query_starkd: str | None
    config: Path | None
    index_dirs: tuple[Path, ...]
    index_files: tuple[Path, ...]


@functools.lru_cache(maxsize=32)
def _locate(config, path_env):
    """(engine, config, the config's index directories); path_env is part of the
    cache key so that a changed PATH is seen."""
    engine = shutil.which('astrometry-engine', path=path_env)
    if engine is None:
        raise LocalSolverNotFoundError(
            'The astrometry.net solver (astrometry-engine) was not found on PATH. '
            f'Install it with: {INSTALL_SOLVER}')
    if config is not None:
        config = Path(config)
        if not config.is_file():
            raise LocalSolverNotFoundError(f'The astrometry.net config file {config} '
                                           'does not exist.')
    else:
        config = find_config(engine)
    return engine, config, configured_index_dirs(config)


def _stamp(directory):
    try:
        return directory.stat().st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def _installation(engine, config, dirs, stamps, path_env):
    # stamps (the directories' mtimes) are part of the key: a file added to a
    # directory (a download, a build) is seen by the next solve in this process.
    files = index_files(dirs)
    if not files:
        searched = ', '.join(str(d) for d in dirs)
        raise LocalSolverNotFoundError(
            f'No astrometry.net index files (index-*.fits) were found in {searched}. '
            f'Install the Tycho-2 index files with: {INSTALL_INDEXES}, or fetch others with '
            '`astrometry-query index download`, or pass index_dir= a directory holding '
            'index files.')
    return Installation(engine=engine,
                        plot_constellations=shutil.which('plot-constellations', path=path_env),
                        query_starkd=shutil.which('query-starkd', path=path_env),
                        config=config, index_dirs=dirs, index_files=files)


def find_installation(index_dir=None, config=None):
    """Find ``astrometry-engine`` and the index files it will use.

    Parameters
    ----------
    index_dir : str, `~pathlib.Path` or list of them, optional
        Directories holding ``index-*.fits`` files (a string may join several
        with ``os.pathsep``). Default: the ``add_path`` entries of the config
        file, else ``/usr/share/astrometry``, and the user's index directory
        (`~astrometry_query.index.locations.user_index_dir`) when it holds
        index files.
    config : str or `~pathlib.Path`, optional
        astrometry.net config file. Default: ``/etc/astrometry.cfg`` if it
        exists (or the one under the solver's install prefix).

    Returns
    -------
    Installation

    Raises
    ------
    LocalSolverNotFoundError
        When ``astrometry-engine`` or the index files are missing; the message says
        which ``apt-get install`` command fixes it.
    """
    dirs = index_dirs(index_dir)
    if config is not None:
        config = str(Path(config).expanduser())
    path_env = os.environ.get('PATH', os.defpath)
    engine, config, configured = _locate(config, path_env)
    if dirs is None:
        dirs = default_index_dirs(configured)
    return _installation(engine, config, dirs, tuple(_stamp(d) for d in dirs), path_env)


def solver_available(index_dir=None):
    """Whether a local solve is possible (solver and index files found).

    Never raises.
    """
    try:
        find_installation(index_dir)
    except Exception:
        return False
    return True


@dataclass
class EngineOutcome:
    """What one ``astrometry-engine`` run gave.

    Attributes
    ----------
    solved : bool
        True exactly when the WCS file was written.
    wcs_path : `~pathlib.Path` or None
    elapsed : float
        Wall-clock seconds.
    timed_out : bool
        The run was stopped because it exceeded its time limit.
    returncode : int or None
        Exit status (negative: killed by that signal).
    log : str
        What the engine printed.
    logodds : float or None
        The solution's log-odds (natural log of the odds that the match is
        true, as the engine wrote it into the WCS file); None when unsolved.
    split : dict or None
        For a search split across engines (`~astrometry_query.local.search`):
        ``engines``, ``cancelled`` and ``solved_by`` (the winner's index files).
    """
    solved: bool
    wcs_path: Path | None
    elapsed: float
    timed_out: bool
    returncode: int | None
    log: str
    logodds: float | None = None
    split: dict | None = None


#: The engine writes the match's properties as COMMENT cards of wcs.fits ("log odds: 191.367");
#: its log prints every verified match ("log-odds ratio 163.455 (9.7e+70), 30 match, ...").
_WCS_LOGODDS = re.compile(rb'COMMENT +log odds: *([-+0-9.eE]+)')
_LOG_LOGODDS = re.compile(r'log-odds ratio ([-+0-9.eE]+)')


def engine_logodds(wcs_path, log=''):
    """The log-odds of a solution: the one in the WCS file the engine wrote, else
    the last match its log printed; None when neither says."""
    try:
        found = _WCS_LOGODDS.search(Path(wcs_path).read_bytes()[:2880 * 40])
    except OSError:
        found = None
    text = found.group(1).decode('ascii') if found else (_LOG_LOGODDS.findall(log) or [None])[-1]
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def write_engine_config(path, installation, *, inparallel=False, cpulimit=300,
                        index_files=None):
    """Write an engine configuration; return its path.

    ``inparallel`` loads every index at once and searches them together:
    the engine stays single-threaded, and a blind search is much faster
    (measured: 25 s against 42 s), but it touches every index file, so it
    is used only when the scale is unknown.  ``index_files``: only these
    (one share of a split search), instead of every file of the
    installation's directories.
    """
    lines = ['# astrometry.net engine config written by astrometry_query']
    if inparallel:
        lines.append('inparallel')
    lines.append(f'cpulimit {max(1, math.ceil(cpulimit))}')
    if index_files is not None:
        lines += [f'index {Path(f).resolve()}' for f in index_files]
    else:
        lines += [f'add_path {d}' for d in installation.index_dirs]
        lines.append('autoindex')
    path = Path(path)
    path.write_text('\n'.join(lines) + '\n')
    return path


def xy_columns(names):
    """The (x, y) column names of a source list, or (None, None).

    X/Y (any case) as the solver reads by default, else Source Extractor's
    or photutils' names.
    """
    upper = {n.upper(): n for n in names}
    for x, y in (('X', 'Y'), ('X_IMAGE', 'Y_IMAGE'), ('XWIN_IMAGE', 'YWIN_IMAGE'),
                 ('XCENTROID', 'YCENTROID'), ('FIELD_X', 'FIELD_Y')):
        if x in upper and y in upper:
            return upper[x], upper[y]
    return None, None


def kill_process_group(proc, grace=_KILL_GRACE):
    """SIGTERM, then SIGKILL, the whole process group of ``proc``."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if wait is None:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        try:        # the leader is gone; its children may not be
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    proc.wait()


#: coreutils' stdbuf, to make the engine's output line-buffered (None: not installed).
_STDBUF = shutil.which('stdbuf')
#: The engines running in this process, so that a shutdown can stop them all.
_RUNNING = set()
_RUNNING_LOCK = threading.Lock()


def stop_all_engines():
    """Kill every engine this process started that is still running (and its
    process group); returns how many.  For a server's shutdown: an engine
    must not outlive the server."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(procs)


@functools.lru_cache(maxsize=4)
def _setpriv(path_env):
    return shutil.which('setpriv', path=path_env) if sys.platform.startswith('linux') else None


def start_engine(config, axy_path, work_dir, log_file, installation):
    """Start ``astrometry-engine`` on a .axy in ``work_dir``, its output going
    to ``log_file`` (an open file), as the leader of its own process group
    and killed with this process; it is known to `stop_all_engines` until
    `forget_engine` is called.  Returns the Popen."""
    cmd = [installation.engine, '--config', str(config), str(axy_path)]
    setpriv = _setpriv(os.environ.get('PATH', os.defpath))
    # setpriv asks for the kill-with-parent signal and becomes the engine: no
    # preexec_fn, so the start is a vfork (0.2 ms), not a fork of this whole
    # process (20-40 ms from a 400 MB one, more under load; a split search
    # starts a dozen engines at once).
    proc = subprocess.Popen([setpriv, '--pdeathsig', 'KILL', *cmd] if setpriv else cmd,
                            cwd=work_dir, stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=None if setpriv else _end_with_parent_hook())
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    return proc


def forget_engine(proc):
    """An engine started by `start_engine` has ended: `stop_all_engines` may forget it."""
    with _RUNNING_LOCK:
        _RUNNING.discard(proc)


def run_engine(axy_path, work_dir, *, timeout=None, installation=None, inparallel=False,
               wcs_name='wcs.fits'):
    """Run ``astrometry-engine`` on one .axy in ``work_dir``.

    Parameters
    ----------
    axy_path : str or `~pathlib.Path`
        The .axy (its output names are relative to ``work_dir``).
    work_dir : str or `~pathlib.Path`
        Where the engine runs and writes its outputs.
    timeout : float, optional
        Wall-clock seconds; the engine's own CPU limit is set to the same.
        Then its whole process group is killed.
    installation : Installation, optional
        Default: `find_installation()`.
    inparallel : bool
        Search all indexes together (for blind solves).

    Returns
    -------
    EngineOutcome
    """
    inst = installation or find_installation()
    work_dir = Path(work_dir).resolve()
    wcs_path = work_dir / wcs_name
    wcs_path.unlink(missing_ok=True)   # success is "the WCS exists": no stale one
    config = write_engine_config(work_dir / JOB_CONFIG, inst, inparallel=inparallel,
                                 cpulimit=timeout or 300)
    # -v: the log then names the index files tried and the best matches (failures say
    # them); line-buffered (stdbuf), so that what it said survives a kill at the time limit.
    cmd = [inst.engine, '-v', '--config', str(config), str(Path(axy_path).resolve())]
    if _STDBUF:
        cmd = [_STDBUF, '-oL', *cmd]
    timed_out = False
    start = time.monotonic()
    # A new session makes the engine the leader of its own process group, so
    # one killpg stops it and anything it started.
    proc = subprocess.Popen(cmd, cwd=work_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_end_with_parent_hook())
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_process_group(proc)
        out, _ = proc.communicate()
    except BaseException:        # KeyboardInterrupt, a cancelled worker: leave nothing running
        kill_process_group(proc)
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)
    elapsed = time.monotonic() - start
    log = (out or b'').decode('utf-8', 'replace')
    if timed_out:
        log += f'\nastrometry_query: stopped after the time limit of {timeout:g} s\n'
        wcs_path.unlink(missing_ok=True)   # a half-written file is no solution
    solved = wcs_path.is_file()
    return EngineOutcome(solved=solved, wcs_path=wcs_path if solved else None, elapsed=elapsed,
                         timed_out=timed_out, returncode=proc.returncode, log=log,
                         logodds=engine_logodds(wcs_path, log) if solved else None)
