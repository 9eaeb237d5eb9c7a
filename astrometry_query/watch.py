"""A watched folder: the frames of a night solved as they land.

`FolderFeed` hands a batch (`~astrometry_query.batch.Batches`) the image files
of a folder as they arrive: the ones there at the start, then each new one
once it is complete.  A camera writes a frame over seconds, so a file is
taken only when its size and time have not changed for ``settle`` seconds
and, for a FITS file, when it holds all the data its header announces.
Files are noticed by ``watchdog`` (inotify and its peers; a polling observer on
network file systems, where change notices do not travel, or when asked).

A file is left alone when its solution is already there: a ``NAME.wcs``
beside it newer than it, or, written into the frame, an ``AN_JOBID`` card in
its header (writing the WCS in place replaces the file: without this rule the
frame would come back as a new one).  What a run submitted and what failed
is kept in a journal in the folder, so a restart resumes instead of solving
again (see `~astrometry_query.batch.Journal`).
"""
import fnmatch
import os
import queue
import threading
import time
from pathlib import Path

from astropy.io import fits

from ._log import quiet_warnings
from .batch import Journal, check_arguments
from .exceptions import InvalidInputError
from .frames import sidecar_path, store_solution, write_sidecar
from .images import file_kind, is_image_name
from .solving import check_flag

__all__ = ['FolderFeed', 'JOURNAL_NAME', 'already_solved', 'watch_folder']

#: The journal a watched folder keeps of its solves.
JOURNAL_NAME = '.astrometry-query-journal.jsonl'


def already_solved(path, output_dir=None):
    """True when a frame's solution is already kept: in its header (a WCS written
    in place by this package) or in a ``.wcs`` file newer than the frame."""
    path = Path(path)
    sidecar = (Path(output_dir) / sidecar_path(path).name) if output_dir else sidecar_path(path)
    try:
        if sidecar.is_file() and sidecar.stat().st_mtime >= path.stat().st_mtime:
            return True
        kind, gzipped = file_kind(path)
        if kind == 'fits' and not gzipped:
            with fits.open(path, disable_image_compression=True) as hdul:
                return any('AN_JOBID' in hdu.header for hdu in hdul)
    except (OSError, ValueError):
        return False
    return False


def _complete(path):
    """Whether a file holds all it says it holds (a FITS file: every HDU's data)."""
    try:
        kind, gzipped = file_kind(path)
    except (OSError, ValueError):
        return False
    if kind != 'fits' or gzipped:
        return kind is not None
    size = os.path.getsize(path)
    try:    # (astropy warns of a truncated file: that is what is asked here)
        with quiet_warnings(), fits.open(path, disable_image_compression=True,
                                         lazy_load_hdus=False) as hdul:
            return all(info['datLoc'] + info['datSpan'] <= size
                       for info in (hdul.fileinfo(i) for i in range(len(hdul))))
    except (OSError, ValueError, IndexError, TypeError):
        return False


class _Notices:
    """watchdog's events, as the paths they touch (from watchdog's thread)."""

    def __init__(self, paths):
        self.paths = paths

    def dispatch(self, event):
        if event.is_directory:
            return
        for attr in ('dest_path', 'src_path'):
            path = getattr(event, attr, None)
            if path:
                self.paths.put(Path(os.fsdecode(path)))
                return


class FolderFeed:
    """The image files of a folder, as a batch can take them (see the module notes).

    Parameters
    ----------
    directory : path-like
    recursive : bool
        Watch its subfolders too.
    patterns : list of str, optional
        File name patterns (``'*.fits'``, ``'M42_*'``); default: every image
        file (`~astrometry_query.images.IMAGE_SUFFIXES`).
    settle : float
        Seconds a file must stay unchanged before it is taken.
    poll : bool
        Look for changes by listing the folder every second instead of being
        told (network file systems).  When the system cannot tell, polling is
        used anyway.
    stop : `threading.Event`, optional
        Set it to stop: nothing new is taken, and the batch stops what is
        running (a later watch solves it).
    output_dir : path-like, optional
        Where the ``.wcs`` files of the frames go (for `already_solved`).
    """
    #: How long a batch waits for a frame before it looks at its running solves.
    idle_wait = 0.5
    #: A folder has no count: the progress bar counts up.
    total = None

    def __init__(self, directory, *, recursive=False, patterns=None, settle=1.0, poll=False,
                 stop=None, output_dir=None):
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InvalidInputError(f'directory: {str(self.directory)!r} is not a directory.')
        self.recursive, self.patterns = bool(recursive), list(patterns or [])
        self.settle, self.output_dir = float(settle), output_dir
        self.stop = stop or threading.Event()
        self.skipped = []           # frames found solved already
        self._notices = queue.Queue()
        self._candidates = {}       # path -> (size, mtime, since)
        self._given, self._index = {}, 0
        self.observer = PollingObserver(timeout=1.0) if poll else Observer()
        try:
            self.observer.schedule(_Notices(self._notices), str(self.directory),
                                   recursive=self.recursive)
            self.observer.start()
        except OSError:     # no inotify here (or out of watches): list the folder instead
            self.observer = PollingObserver(timeout=1.0)
            self.observer.schedule(_Notices(self._notices), str(self.directory),
                                   recursive=self.recursive)
            self.observer.start()
        self.polling = isinstance(self.observer, PollingObserver)
        # What is there already (watching started before the listing: nothing slips by).
        listing = self.directory.rglob('*') if self.recursive else self.directory.iterdir()
        for path in sorted(listing):
            self._notices.put(path)

    def __repr__(self):
        return f'<FolderFeed {str(self.directory)!r}: {len(self._given)} frames taken>'

    @property
    def finished(self):
        return self.stop.is_set()

    #: Stopped, the batch leaves at once: what is running is abandoned.
    stopped = finished

    def _wanted(self, path):
        name = path.name
        if name.startswith('.') or not path.is_file():
            return False
        if self.patterns:
            return any(fnmatch.fnmatch(name, p) for p in self.patterns)
        return is_image_name(name)

    def take(self, wait=0.0):
        """The next complete, unchanged frame as (index, path), or None when none is
        ready within ``wait`` seconds (or the feed is stopped)."""
        deadline = time.monotonic() + (wait or 0.0)
        while not self.stop.is_set():
            while True:
                try:
                    path = self._notices.get_nowait()
                except queue.Empty:
                    break
                if self._wanted(path):
                    self._candidates.setdefault(path, (-1, -1.0, time.monotonic()))
            now = time.monotonic()
            for path, (size, mtime, since) in sorted(self._candidates.items()):
                try:
                    stat = path.stat()
                except OSError:             # gone (moved away, deleted)
                    del self._candidates[path]
                    continue
                if (stat.st_size, stat.st_mtime) != (size, mtime):
                    self._candidates[path] = (stat.st_size, stat.st_mtime, now)
                    continue
                # Unchanged for ``settle`` seconds: watched that long, or older.
                settled = now - since >= self.settle or time.time() - stat.st_mtime >= self.settle
                if not settled or not _complete(path):
                    continue
                del self._candidates[path]
                # A frame is taken once; again only if it was written anew (the
                # same name reused by the camera), not when we wrote its WCS.
                key, seen = path.resolve(), (stat.st_size, stat.st_mtime)
                if self._given.get(key) == seen or already_solved(path, self.output_dir):
                    if key not in self._given:
                        self.skipped.append(path)
                    self._given[key] = seen
                    continue
                self._given[key] = seen
                index, self._index = self._index, self._index + 1
                return index, path
            if now >= deadline:
                return None
            time.sleep(min(0.1, max(0.0, deadline - now)))
        return None

    def close(self):
        """Stop watching."""
        self.stop.set()
        self.observer.stop()
        self.observer.join(timeout=5)


def watch_folder(batches, directory, *, timeout, recursive=False, patterns=None, in_place=False,
                 output_dir=None, track=True, poll=False, settle=1.0, stop=None, verbose=True,
                 journal=True, cache=True, executor=None, max_concurrency=None,
                 header_hints=True, fwhm=3, detect_threshold=5, retry_failed=False,
                 settings=None):
    """The rows of a watched folder's frames as they are solved (see the facade's
    ``watch``); the arguments are checked at once, the folder watched once
    the first row is asked for."""
    settings = dict(settings or {})
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise InvalidInputError(f'directory: {str(directory)!r} is not a directory.')
    if isinstance(patterns, str):
        patterns = [patterns]
    if patterns is not None and not all(isinstance(p, str) and p for p in patterns):
        raise InvalidInputError(f'patterns must be file name patterns (str), got {patterns!r}.')
    for value, name in ((recursive, 'recursive'), (in_place, 'in_place'), (poll, 'poll')):
        check_flag(value, name)
    if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not 0 <= settle < 3600:
        raise InvalidInputError(f'settle must be seconds, 0 to 3600, got {settle!r}.')
    if stop is not None and not (hasattr(stop, 'is_set') and hasattr(stop, 'set')):
        raise InvalidInputError(f'stop must be a threading.Event, got {stop!r}.')
    if in_place and output_dir is not None:
        raise InvalidInputError('in_place and output_dir exclude each other: the WCS goes into '
                                'the frames, or into .wcs files in output_dir.')
    check_arguments(max_concurrency=max_concurrency, header_hints=header_hints,
                    retry_failed=retry_failed, write_wcs=in_place, track=track,
                    executor=executor, settings=settings)
    if output_dir is not None:
        output_dir = Path(output_dir).expanduser()
        if output_dir.exists() and not output_dir.is_dir():
            raise InvalidInputError(f'output_dir: {str(output_dir)!r} is not a directory.')
        output_dir.mkdir(parents=True, exist_ok=True)
    if journal is True:
        journal = directory / JOURNAL_NAME
    journal = Journal(journal) if journal not in (None, False) else None
    keep = store_solution if in_place else _sidecar_writer(output_dir)

    def rows():
        feed = FolderFeed(directory, recursive=recursive, patterns=patterns, settle=settle,
                          poll=poll, stop=stop, output_dir=output_dir)
        try:
            yield from batches.rows(
                feed, timeout=timeout, executor=executor, max_concurrency=max_concurrency,
                verbose=verbose, cache=cache, journal=journal, header_hints=header_hints,
                fwhm=fwhm, detect_threshold=detect_threshold, force_image_upload=None,
                retry_failed=retry_failed, keep=keep, track=track, settings=settings)
        finally:
            feed.close()
    return rows()


def _sidecar_writer(output_dir):
    """``keep`` for a batch: a frame's WCS in NAME.wcs, beside it or in ``output_dir``."""
    def keep(path, header, hdu=None):
        target = sidecar_path(path)
        if output_dir is not None:
            target = Path(output_dir) / target.name
        return write_sidecar(target, header), False
    return keep
