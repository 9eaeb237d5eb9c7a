"""Internal: solving many images at once: `Batches`, which the facade gives
the backend in use (``solve_many`` and ``iter_solve``).

What is the same on every backend lives here: checking each input, the
solution cache, the journal that lets an interrupted batch resume without
submitting anything twice (and remembers what failed), the rows and the
table, the progress bar.  How inputs are solved at once is the backend's
`~astrometry_query.backends.BatchRun`: local jobs on any Executor (worker
processes by default, a Dask cluster too), or concurrent submissions to a
nova server and one adaptive loop polling them.  One bad input never stops
the rest.
"""
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from ._text import plural
from .backends import BatchItem
from .cache import source_digest
from .exceptions import AstrometryNetError, InvalidInputError, SolveTimeoutError
from .frames import store_solution
from .hints import check_header_hints, header_hints
from .images import expand_images
from .progress import BatchProgress
from .results import calibration_from_wcs
from .settings import normalize_settings, to_nova_args
from .solving import check_flag
from .sources import source_list_from
from .tracking import Sequence

__all__ = ['Batches', 'Journal', 'ListFeed', 'check_arguments', 'rows_table', 'BATCH_COLUMNS',
           'ORIGINS', 'FAILURES']

#: The columns of ``solve_many``'s Table, in order.
BATCH_COLUMNS = ('input', 'status', 'ra', 'dec', 'pixscale', 'orientation', 'parity', 'job_id',
                 'submission_id', 'error', 'elapsed', 'origin', 'tracked', 'wcs_file', 'header')
#: Where a row's outcome comes from: solved (or failed) in this run, the
#: solution cache, or the journal of an earlier run.
ORIGINS = ('new', 'cache', 'journal')
#: Why an input failed, as the journal keeps it.  An input that failed for want
#: of a solution (or of time, when no more time is given) is not searched again.
FAILURES = ('no_solution', 'timeout', 'coverage', 'error')
#: A failed job's kind (see `~astrometry_query.jobs.runner.failure_kind`) -> its `FAILURES` class.
_FAILURE_OF_KIND = {'no_solution': 'no_solution', 'too_few_sources': 'no_solution',
                    'timeout': 'timeout', 'index_coverage': 'coverage'}


class Journal:
    """A JSON-lines file of what a batch submitted and finished, keyed by
    input content and settings, so a rerun resumes instead of resubmitting.

    Parameters
    ----------
    path : path-like
        Created if missing; appended to.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.entries = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding='utf-8').splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue       # a line cut by a crash
                self.entries.setdefault(entry['key'], {}).update(entry)

    def __repr__(self):
        return f'<Journal {str(self.path)!r}: {len(self.entries)} inputs>'

    def get(self, key):
        return self.entries.get(key)

    def write(self, key, **entry):
        entry['key'] = key
        with self._lock:
            self.entries.setdefault(key, {}).update(entry)
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(entry, default=str) + '\n')
                f.flush()
                os.fsync(f.fileno())



def _label(item):
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, Table):
        return f'Table of {plural(len(item), "source")}'
    if isinstance(item, tuple):
        return f'source list of {plural(len(item[0]), "source") if len(item) == 4 else "? sources"}'
    if isinstance(item, np.ndarray):
        return f'array {item.shape}'
    return type(item).__name__


def _is_source_list(item):
    return isinstance(item, Table) or (isinstance(item, tuple) and len(item) == 4)


def _failed_for_good(entry, timeout):
    """Whether a journal's failure would only repeat itself: no solution
    with these settings, or out of time with no more time given now."""
    failure = entry.get('failure')
    if failure == 'no_solution':
        return True
    return failure == 'timeout' and timeout <= float(entry.get('solve_timeout') or 0)


def _header_cell(header):
    """How a header shows in the table (a module-level function: the table pickles)."""
    if header is None:
        return '--'
    return f"<Header {len(header)} cards, job {header.get('AN_JOBID', '?')}>"



def rows_table(rows):
    """The Table of ``solve_many`` from its rows (in input order)."""
    rows = sorted(rows, key=lambda r: r['index'])
    table = Table()
    table['input'] = np.array([r['input'] for r in rows], dtype=str)
    table['status'] = np.array([r['status'] for r in rows], dtype='<U7')
    for name, unit in (('ra', 'deg'), ('dec', 'deg'), ('pixscale', 'arcsec / pix'),
                       ('orientation', 'deg')):
        table[name] = np.array([r[name] for r in rows], dtype=float)
        table[name].unit = unit
    table['parity'] = np.array([r['parity'] for r in rows], dtype=float)
    for name in ('job_id', 'submission_id'):
        values = [r[name] for r in rows]
        table[name] = MaskedColumn([v if v is not None else 0 for v in values],
                                   mask=[v is None for v in values], dtype=int)
    table['error'] = np.array([r['error'] or '' for r in rows], dtype=str)
    table['elapsed'] = np.array([r['elapsed'] for r in rows], dtype=float)
    table['elapsed'].unit = 's'
    table['origin'] = np.array([r.get('origin', 'new') for r in rows], dtype='<U7')
    table['tracked'] = np.array([r.get('tracked', False) for r in rows], dtype=bool)
    table['wcs_file'] = np.array([r.get('wcs_file') or '' for r in rows], dtype=str)
    headers = np.empty(len(rows), dtype=object)
    headers[:] = [r['header'] for r in rows]
    table['header'] = headers
    table['header'].info.format = _header_cell     # not every card in every row
    table.meta['solved'] = int(sum(r['status'] == 'success' for r in rows))
    table.meta['failed'] = len(rows) - table.meta['solved']
    return table


def _row(item, status, *, header=None, error='', elapsed=0.0, origin='new', failure=None):
    """One result row; ``failure`` (one of `FAILURES`) says why a failed input failed."""
    row = {'index': item.index, 'input': item.label, 'status': status, 'ra': np.nan,
           'dec': np.nan, 'pixscale': np.nan, 'orientation': np.nan, 'parity': np.nan,
           'job_id': item.job_id, 'submission_id': item.submission_id, 'error': error,
           'elapsed': round(float(elapsed), 4), 'origin': origin, 'wcs_file': '',
           'header': header, 'failure': (failure or 'error') if status != 'success' else None}
    row['tracked'] = header is not None and 'AN_TRACK' in header
    if header is not None:
        try:
            cal = calibration_from_wcs(header)
            row.update(ra=cal['ra'], dec=cal['dec'], pixscale=cal['pixscale'],
                       orientation=cal['orientation'], parity=cal['parity'])
        except Exception:
            pass
        row['job_id'] = header.get('AN_JOBID', item.job_id)
        row['submission_id'] = header.get('AN_SUBID', item.submission_id)
    return row


def _failure_row(item, error, elapsed):
    """The row of an input whose solve failed with ``error``."""
    kind = getattr(error, 'error_kind', None)
    failure = _FAILURE_OF_KIND.get(kind) or ('timeout' if isinstance(error, SolveTimeoutError)
                                             else 'error')
    reason = getattr(error, 'reason', None) or (
        error.message if isinstance(error, AstrometryNetError)
        else f'{type(error).__name__}: {error}')
    if isinstance(error, InvalidInputError):     # as the rows of inputs refused before a job
        reason = f'InvalidInputError: {reason}'
    if isinstance(error, AstrometryNetError):
        item.submission_id = item.submission_id or error.submission_id
        item.job_id = item.job_id or error.job_id
    return _row(item, 'failure', error=reason, elapsed=elapsed, failure=failure)


class Batches:
    """Many inputs solved on one backend.

    Parameters
    ----------
    backend : `~astrometry_query.backends.Backend`
    solver : Solver
        Of the same backend (``solving.Solver``): it checks images and source
        lists and keys them.
    """

    def __init__(self, backend, solver):
        self.backend, self.solver = backend, solver

    def iter_solve(self, images, *, timeout, executor=None, max_concurrency=None, verbose=True,
                   cache=True, journal=None, header_hints=True, fwhm=3, detect_threshold=5,
                   force_image_upload=None, retry_failed=False, write_wcs=False, track=False,
                   **settings):
        """Yield each input's row as soon as it is known (see the facade's method)."""
        check_arguments(max_concurrency=max_concurrency, header_hints=header_hints,
                        retry_failed=retry_failed, write_wcs=write_wcs, track=track,
                        executor=executor, settings=settings)
        if isinstance(images, (str, os.PathLike)):
            inputs = expand_images(images)      # a directory or a glob pattern, as the CLI
        elif isinstance(images, bytes) or not hasattr(images, '__iter__'):
            raise InvalidInputError('images must be a directory, a glob pattern, or a list (or '
                                    f'any iterable) of inputs, got {type(images).__name__}.')
        else:
            inputs = list(images)
        return self.rows(ListFeed(inputs), timeout=timeout, executor=executor,
                         max_concurrency=max_concurrency, verbose=verbose, cache=cache,
                         journal=journal, header_hints=header_hints, fwhm=fwhm,
                         detect_threshold=detect_threshold, force_image_upload=force_image_upload,
                         retry_failed=retry_failed, keep=store_solution if write_wcs else None,
                         track=track, settings=settings)

    def rows(self, feed, *, timeout, executor, max_concurrency, verbose, cache, journal,
             header_hints, fwhm, detect_threshold, force_image_upload, retry_failed, keep,
             track, settings):
        """Rows of the inputs of a feed (`ListFeed`, or a watched folder's), as
        they finish; the arguments checked (see `iter_solve`).  ``keep``: None,
        or ``keep(path, header, hdu=)`` writes a solved image file's WCS
        (`~astrometry_query.frames.store_solution`) and returns the path written."""
        journal = Journal(journal) if journal is not None and not isinstance(journal, Journal) \
            else journal
        use_cache = bool(cache) and self.solver.cache is not None
        sequence = Sequence() if track else None
        progress = BatchProgress(feed.total, verbose)
        keyed = use_cache or journal is not None

        def prepare(index, raw):
            """(item, None) to solve, or (item, row) when it is known or refused."""
            item = BatchItem(index=index, label=_label(raw))
            try:
                self._check(item, raw, settings, header_hints, fwhm, detect_threshold,
                            force_image_upload, keyed)
            except Exception as exc:    # one bad input never stops the rest
                return item, _row(item, 'failure', error=f'{type(exc).__name__}: {exc}')
            if sequence is not None and item.image is not None:
                item.reference, item.reference_sources = _reference(sequence, item)
            return item, self._known(item, use_cache, journal, timeout, retry_failed)

        def submitted(item):
            if journal is not None and item.key is not None:
                journal.write(item.key, index=item.index, input=item.label, status='submitted',
                              submission_id=item.submission_id, job_id=item.job_id)
        run = self.backend.batch(executor=executor, max_concurrency=max_concurrency,
                                 timeout=timeout, fwhm=fwhm, detect_threshold=detect_threshold,
                                 force_image_upload=force_image_upload, submitted=submitted)
        try:
            # Inputs are checked as they are submitted, so work starts at once.
            while (not feed.finished or run.in_flight) and not feed.stopped:
                while run.in_flight < run.window:
                    if sequence is not None and not len(sequence) and run.in_flight:
                        break       # the first solve of a sequence gives the others a field
                    taken = feed.take(wait=0.0 if run.in_flight else feed.idle_wait)
                    if taken is None:
                        break
                    run.submit(*taken, prepare)
                for item, outcome in run.done(timeout=feed.idle_wait):
                    row = self._row_of(item, outcome, journal, timeout)
                    if sequence is not None and row['header'] is not None and item.width:
                        sequence.solved(row['header'], item.width, item.height,
                                        sources=self._frame_sources(row))
                    if row['origin'] == 'new' and use_cache and row['header'] is not None:
                        self.solver.cache.put(item.key, row['header'], job_id=row['job_id'],
                                              submission_id=row['submission_id'])
                    if keep is not None and row['header'] is not None:
                        _keep_with_image(item, row, keep)
                    progress.done(row)
                    yield row
        finally:
            run.close()
            progress.close()

    def _frame_sources(self, row, n=300):
        """A solved frame's brightest sources (``x``, ``y``), from its job's
        .axy, for the frames that follow it; None when the job has none."""
        if row['job_id'] is None:
            return None
        try:
            with fits.open(io.BytesIO(self.backend.download(row['job_id'], 'axy'))) as hdul:
                table = hdul[1].data
                names = {name.upper(): name for name in table.columns.names}
                x, y = (np.asarray(table[names[k]], float) for k in ('X', 'Y'))
                if 'FLUX' in names:
                    order = np.argsort(-np.asarray(table[names['FLUX']], float), kind='stable')
                    x, y = x[order], y[order]
        except Exception:       # a remote job, a job without its sources: catalogue only
            return None
        return {'x': x[:n].tolist(), 'y': y[:n].tolist()}

    def _row_of(self, item, outcome, journal, timeout):
        """The row of a finished input: a known row as it is; a solve's outcome
        (its WCS Header, or its error) recorded in the journal."""
        if isinstance(outcome, dict):
            return outcome
        import time
        elapsed = time.monotonic() - item.started if item.started else 0.0
        if isinstance(outcome, fits.Header):
            row = _row(item, 'success', header=outcome, elapsed=elapsed)
        else:
            row = _failure_row(item, outcome, elapsed)
        if journal is not None and item.key is not None:
            journal.write(item.key, index=item.index, input=item.label, status=row['status'],
                          submission_id=row['submission_id'], job_id=row['job_id'],
                          error=row['error'], elapsed=row['elapsed'], failure=row['failure'],
                          solve_timeout=timeout,
                          header=row['header'].tostring() if row['header'] is not None else None)
        return row

    # -- checking inputs ----------------------------------------------------------------
    def _check(self, item, raw, settings, header_hints, fwhm, detect_threshold,
               force_image_upload, keyed=True):
        """Check one input; ``keyed``: also hash its data for the cache and journal."""
        if _is_source_list(raw):
            x, y, width, height = source_list_from(raw)
            if width is None or height is None:
                raise InvalidInputError('a source Table needs width and height in its meta.')
            x, y, width, height = self.solver.checked_source_list(x, y, width, height)
            item.sources = {'x': x, 'y': y}
            item.width, item.height = width, height
            item.settings = to_nova_args(normalize_settings(dict(settings)))
            if keyed:
                item.key = self.solver.cache_key(source_digest(x, y, width, height),
                                                 args=item.settings)
            return
        # A backend that reads header hints where it solves reads them there, in parallel.
        there = self.backend.reads_header_hints
        img, args, hints = self.solver.prepare_image(
            raw, header_hints=header_hints and not there, settings=dict(settings), fwhm=fwhm,
            detect_threshold=detect_threshold)
        item.image, item.settings = img, args
        item.hints = ({True: 'header', 'verify': 'verify'}.get(header_hints) if there
                      else hints)
        item.height, item.width = img.shape
        if keyed:
            item.key = self.solver.cache_key(img.digest(), args=args, hints=bool(header_hints),
                                             fwhm=fwhm, detect_threshold=detect_threshold,
                                             upload=bool(force_image_upload), hdu=img.hdu)

    def _known(self, item, use_cache, journal, timeout, retry_failed):
        """A row for an input already solved (cache or journal) or that failed
        for want of a solution in an earlier run (journal), else None; an
        input already submitted gets its ids back from the journal."""
        if item.key is None:
            return None
        if use_cache:
            entry = self.solver.cache.get(item.key)
            if entry is not None:
                return _row(item, 'success', header=entry['header'], origin='cache')
        if journal is not None:
            entry = journal.get(item.key)
            if entry and entry.get('status') == 'success' and entry.get('header'):
                return _row(item, 'success', header=fits.Header.fromstring(entry['header']),
                            elapsed=entry.get('elapsed', 0.0), origin='journal')
            if entry and entry.get('status') == 'failure':
                if not retry_failed and _failed_for_good(entry, timeout):
                    item.submission_id, item.job_id = (entry.get('submission_id'),
                                                       entry.get('job_id'))
                    return _row(item, 'failure', elapsed=entry.get('elapsed', 0.0),
                                origin='journal', failure=entry.get('failure'),
                                error=f"{entry.get('error') or 'no solution was found'} (not "
                                      f'searched again: it failed so in an earlier run, '
                                      f'journal {journal.path.name}; retry_failed=True '
                                      'searches again)')
            elif entry:     # submitted: waited for, never submitted again
                item.submission_id = entry.get('submission_id')
                item.job_id = entry.get('job_id')
        return None


class ListFeed:
    """The inputs of a batch given as a list: all there from the start."""
    #: A list never makes the batch wait for inputs.
    idle_wait = None
    #: Nor is it stopped (a feed that is abandons what is running).
    stopped = False

    def __init__(self, inputs):
        self._inputs = list(enumerate(inputs))
        self.total = len(self._inputs)

    @property
    def finished(self):
        return not self._inputs

    def take(self, wait=0.0):
        """The next input as (index, input), or None when there is none."""
        return self._inputs.pop(0) if self._inputs else None


def _reference(sequence, item):
    """The solved frame an input of a sequence follows: (its WCS header text,
    its sources), or (None, None)."""
    hints = header_hints(item.image.header, item.image.shape, item.image.wcs())
    position = hints.position if hints else None
    pointing = (position['center_ra'], position['center_dec']) if position else None
    header, sources = sequence.reference_for(item.width, item.height, pointing,
                                             with_sources=True)
    return (header.tostring(), sources) if header is not None else (None, None)


def _keep_with_image(item, row, keep):
    """Write a solved row's WCS with its image file (``keep``: see `Batches.rows`)."""
    path = getattr(item.image, 'path', None)
    if path is None:
        return          # a source list, or an image in memory: nowhere to write it
    try:
        row['wcs_file'] = str(keep(path, row['header'], hdu=item.image.hdu)[0])
    except (OSError, AstrometryNetError) as exc:     # solved: the row says it, not written
        row['error'] = f'solved, but the WCS could not be written: {type(exc).__name__}: {exc}'


def check_arguments(*, max_concurrency, header_hints, retry_failed, write_wcs, track, executor,
                    settings):
    """Check a batch's arguments, before any work (the executor for every backend)."""
    if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(
            max_concurrency, int) or max_concurrency < 1):
        raise InvalidInputError(f'max_concurrency must be a positive int, got {max_concurrency!r}.')
    to_nova_args(normalize_settings(dict(settings)))
    check_header_hints(header_hints)
    for value, name in ((retry_failed, 'retry_failed'), (write_wcs, 'write_wcs'),
                        (track, 'track')):
        check_flag(value, name)
    _check_executor(executor)


def _check_executor(executor):
    if executor is None or executor in ('threads', 'processes'):
        return
    if isinstance(executor, str) or not (hasattr(executor, 'submit')
                                         or hasattr(executor, 'get_executor')):
        raise InvalidInputError("executor must be a concurrent.futures.Executor, a "
                                "distributed.Client, 'threads' or 'processes', got "
                                f'{executor!r}.')
