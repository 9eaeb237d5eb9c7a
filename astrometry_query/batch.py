"""Solving many images at once: `BatchMixin.solve_many` and `BatchMixin.iter_solve`.

Local backend: the solve function runs on any `concurrent.futures.Executor`
(threads by default, a process pool, or a Dask cluster through
``distributed.Client(...).get_executor()``); files come back with the result
and are written into the local job store.  nova backend: submissions go out
concurrently (gently for nova.astrometry.net itself), then one adaptive loop
polls every pending job.  One bad input never stops the rest; a journal file
lets an interrupted batch resume without submitting anything twice.
"""
import concurrent.futures as cf
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astroquery import cache_conf

from .cache import source_digest
from .exceptions import AstrometryNetError, InvalidInputError, JobNotFoundError, ServerError
from .hints import check_header_hints
from .images import expand_images
from .results import calibration_from_wcs, make_wcs_header
from .settings import normalize_settings, to_nova_args
from .sources import source_list_from
from ._text import plural

__all__ = ['BatchMixin', 'Journal', 'BATCH_COLUMNS', 'default_executor']

#: The columns of `BatchMixin.solve_many`'s Table, in order.
BATCH_COLUMNS = ('input', 'status', 'ra', 'dec', 'pixscale', 'orientation', 'parity', 'job_id',
                 'submission_id', 'error', 'elapsed', 'origin', 'header')
#: Where a row's outcome comes from: solved (or failed) in this run, the
#: solution cache, or the journal of an earlier run.
ORIGINS = ('new', 'cache', 'journal')
#: Why an input failed, as the journal keeps it.  An input that failed for want
#: of a solution (or of time, when no more time is given) is not searched again.
FAILURES = ('no_solution', 'timeout', 'coverage', 'error')
#: Submissions in flight at once: nova.astrometry.net is shared by everyone.
NOVA_CONCURRENCY = 2
OTHER_SERVER_CONCURRENCY = 8
#: Interval between looks at a young job in a batch, and its ceiling.
BATCH_POLL = 0.25
BATCH_POLL_MAX = 2.0


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


@dataclass
class _Item:
    """One input of a batch, checked."""
    index: int
    label: str
    image: object = None           # an Image
    sources: dict | None = None    # x, y arrays
    width: int | None = None
    height: int | None = None
    args: dict = field(default_factory=dict)
    hints: object = None
    key: str | None = None
    started: float = 0.0
    next_look: float = 0.0
    submission_id: int | None = None
    job_id: int | None = None


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


def _row(item, status, *, header=None, error='', elapsed=0.0, calibration=None, origin='new',
         failure=None):
    """One result row; ``failure`` (one of `FAILURES`) says why a failed input failed."""
    row = {'index': item.index, 'input': item.label, 'status': status, 'ra': np.nan,
           'dec': np.nan, 'pixscale': np.nan, 'orientation': np.nan, 'parity': np.nan,
           'job_id': item.job_id, 'submission_id': item.submission_id, 'error': error,
           'elapsed': round(float(elapsed), 4), 'origin': origin, 'header': header,
           'failure': (failure or 'error') if status != 'success' else None}
    if header is not None:
        try:
            cal = calibration or calibration_from_wcs(header)
            row.update(ra=cal['ra'], dec=cal['dec'], pixscale=cal['pixscale'],
                       orientation=cal['orientation'], parity=cal['parity'])
        except Exception:
            pass
        row['job_id'] = header.get('AN_JOBID', item.job_id)
        row['submission_id'] = header.get('AN_SUBID', item.submission_id)
    return row


def _flag(value, name='retry_failed'):
    if not isinstance(value, bool):
        raise InvalidInputError(f'{name} must be True or False, got {value!r}.')
    return value


def _local_failure(result):
    """Why a local job failed (one of `FAILURES`), from its result.json."""
    if result.get('error_kind') == 'index_coverage':
        return 'coverage'
    if result.get('timed_out'):
        return 'timeout'
    return 'no_solution' if result.get('attempts') else 'error'


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
    """The Table of `BatchMixin.solve_many` from its rows (in input order)."""
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
    headers = np.empty(len(rows), dtype=object)
    headers[:] = [r['header'] for r in rows]
    table['header'] = headers
    table['header'].info.format = _header_cell     # not every card in every row
    table.meta['solved'] = int(sum(r['status'] == 'success' for r in rows))
    table.meta['failed'] = len(rows) - table.meta['solved']
    return table


class _Progress:
    """One tqdm bar for a batch (a notebook widget in Jupyter), counting
    solved and failed; silent with ``verbose=False``."""

    def __init__(self, total, verbose):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, desc='Solving', unit='image', disable=not verbose,
                        leave=True)
        self.solved = self.failed = 0

    def done(self, row):
        if row['status'] == 'success':
            self.solved += 1
        else:
            self.failed += 1
        self.bar.set_postfix(solved=self.solved, failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def default_executor(n_items, max_workers=None):
    """The executor of a local batch when none is given: worker processes.

    sep (the extraction) and the WCS refit hold the GIL, so threads overlap
    only the engine runs (measured: 1.3-1.4x on 2 cores, against 1.9x for
    processes).  Workers are forked (no re-import, no ``__main__`` guard
    needed in scripts) where the platform can; one input, or one core, runs
    in a thread.
    """
    import multiprocessing
    workers = max_workers or os.cpu_count() or 1
    if n_items < 2 or workers < 2:
        return cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix='astrometry-batch')
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _long_poll(backend, submitting):
    """Seconds to hold the look at the oldest job: short while submissions are
    still going out (their answers must be collected), else up to 1 s."""
    offered = getattr(backend, 'long_poll', 0) or 0
    return 0.0 if not offered else min(offered, 0.2 if submitting else 1.0)


def _check_executor(executor):
    if executor is None or executor in ('threads', 'processes'):
        return
    if isinstance(executor, str) or not (hasattr(executor, 'submit')
                                         or hasattr(executor, 'get_executor')):
        raise InvalidInputError("executor must be a concurrent.futures.Executor, a "
                                "distributed.Client, 'threads' or 'processes', got "
                                f'{executor!r}.')


def _as_executor(executor, n_items, max_workers):
    """An Executor from an Executor, a ``distributed.Client``, 'threads' or 'processes'."""
    if executor is None:
        return default_executor(n_items, max_workers), True
    if executor == 'threads':
        return cf.ThreadPoolExecutor(max_workers=max_workers or os.cpu_count() or 1,
                                     thread_name_prefix='astrometry-batch'), True
    if executor == 'processes':
        return default_executor(max(n_items, 2), max_workers), True
    if hasattr(executor, 'get_executor') and not isinstance(executor, cf.Executor):
        # Every input is its own job (pure=False), retried if a worker is lost.
        return executor.get_executor(pure=False, retries=2), False
    if isinstance(executor, str) or not hasattr(executor, 'submit'):
        raise InvalidInputError("executor must be a concurrent.futures.Executor, a "
                                "distributed.Client, 'threads' or 'processes', got "
                                f'{executor!r}.')
    return executor, False


class BatchMixin:
    """Batch methods of `AstrometryNetClass`."""

    def solve_many(self, images, *, executor=None, max_concurrency=None, verbose=True,
                   cache=True, as_completed=False, journal=None, solve_timeout=None,
                   header_hints=True, fwhm=3, detect_threshold=5, force_image_upload=None,
                   retry_failed=False, **settings):
        """Solve many images (or source lists); one row per input, in input order.

        Parameters
        ----------
        images : str, path-like or iterable
            A directory (its image files, sorted by name) or a glob pattern
            (``'night/*.fits'``, ``'night/**/*.fit'``), as the command line
            takes them; or an iterable of inputs: paths, HDULists, HDUs,
            arrays, NDData, or source lists: a Table with x, y columns and the
            image size in its meta (``width``, ``height``), or an
            ``(x, y, width, height)`` tuple.
        executor : `concurrent.futures.Executor`, ``distributed.Client``, 'threads' or 'processes', optional
            Local backend: where the solves run.  Default: one worker process
            per core (see `default_executor`; 'threads' for a thread pool).
            Any Executor works, a Dask cluster too
            (``Client(...).get_executor()`` or the Client itself): each
            worker needs astrometry.net and the index files, and the image
            files (or pass arrays).
        max_concurrency : int, optional
            Solves (local) or submissions (nova) in flight at once.  Default:
            the pool's size (local); 2 for nova.astrometry.net, 8 for other
            servers (nova).
        verbose : bool
            One progress bar counting solved and failed inputs.
        cache : bool
            Answer repeated inputs from the solution cache, and fill it.
        as_completed : bool
            Return an iterator of result rows (dicts) as they complete,
            instead of the Table at the end (see `iter_solve`).
        journal : path-like, optional
            A journal file: what was submitted, solved and failed is recorded
            there as it happens, and a rerun with the same journal resumes: it
            waits for what was submitted instead of submitting it again,
            reuses what was solved, and does not search again for an input
            that failed for want of a solution with the same settings (nor
            for one that ran out of time, unless given more); other failures
            (errors, missing index files) are tried again.
        retry_failed : bool
            Search again for the inputs the journal says failed.
        solve_timeout : float, optional
            Per input, seconds; default ``conf.solve_timeout``.
        force_image_upload : bool, optional
            nova backend: upload the images instead of source lists extracted
            here.  Default: images to our own server (it extracts the same
            way, in parallel worker processes), source lists to others.
        header_hints, fwhm, detect_threshold, **settings
            As for `solve_from_image`, applied to every input.

        Returns
        -------
        `~astropy.table.Table`
            Columns input, status ('success' or 'failure'), ra, dec (deg),
            pixscale (arcsec/pix), orientation (deg), parity, job_id,
            submission_id, error (empty when solved), elapsed (s), origin
            ('new': this run; 'cache': the solution cache; 'journal': an
            earlier run, solved or failed) and header (the WCS
            `~astropy.io.fits.Header` of each solved input).
        """
        rows = self.iter_solve(images, executor=executor, max_concurrency=max_concurrency,
                               verbose=verbose, cache=cache, journal=journal,
                               solve_timeout=solve_timeout, header_hints=header_hints,
                               fwhm=fwhm, detect_threshold=detect_threshold,
                               force_image_upload=force_image_upload,
                               retry_failed=retry_failed, **settings)
        return rows if as_completed else rows_table(list(rows))

    def iter_solve(self, images, *, executor=None, max_concurrency=None, verbose=True, cache=True,
                   journal=None, solve_timeout=None, header_hints=True, fwhm=3,
                   detect_threshold=5, force_image_upload=None, retry_failed=False, **settings):
        """Like `solve_many`, but yields each result (a dict with the Table's
        columns and ``index``, the input's position) as soon as it is known."""
        from .solving import _solve_timeout
        timeout = _solve_timeout(solve_timeout)
        if max_concurrency is not None and (isinstance(max_concurrency, bool) or not isinstance(
                max_concurrency, int) or max_concurrency < 1):
            raise InvalidInputError(f'max_concurrency must be a positive int, got {max_concurrency!r}.')
        base_args = to_nova_args(normalize_settings(dict(settings)))   # fails before any work
        check_header_hints(header_hints)
        if isinstance(images, (str, os.PathLike)):
            inputs = expand_images(images)      # a directory or a glob pattern, as the CLI
        elif isinstance(images, bytes) or not hasattr(images, '__iter__'):
            raise InvalidInputError('images must be a directory, a glob pattern, or a list (or '
                                    f'any iterable) of inputs, got {type(images).__name__}.')
        else:
            inputs = list(images)
        _check_executor(executor)       # here, for every backend

        journal = Journal(journal) if journal is not None and not isinstance(journal, Journal) \
            else journal
        backend = self.backend
        use_cache = cache and cache_conf.cache_active
        return self._iter_solve(inputs, backend, base_args, settings, timeout, executor,
                                max_concurrency, verbose, use_cache, journal, header_hints, fwhm,
                                detect_threshold, force_image_upload, _flag(retry_failed))

    def _iter_solve(self, inputs, backend, base_args, settings, timeout, executor,
                    max_concurrency, verbose, use_cache, journal, header_hints, fwhm,
                    detect_threshold, force_image_upload, retry_failed):
        progress = _Progress(len(inputs), verbose)

        def prepare(index, raw):
            """(item, None) to solve, or (item, row) when it is known or refused."""
            item = _Item(index=index, label=_label(raw))
            try:
                self._check_item(item, raw, settings, header_hints, fwhm, detect_threshold,
                                 force_image_upload, backend,
                                 keyed=use_cache or journal is not None)
            except Exception as exc:    # one bad input never stops the rest
                return item, _row(item, 'failure', error=f'{type(exc).__name__}: {exc}')
            return item, self._known(item, use_cache, journal, timeout, retry_failed)
        try:
            # Inputs are checked as they are submitted, so work starts at once.
            if backend.name == 'local':
                run = self._run_local(inputs, prepare, backend, timeout, executor,
                                      max_concurrency, fwhm, detect_threshold, journal)
            else:
                run = self._run_nova(inputs, prepare, backend, timeout, max_concurrency, fwhm,
                                     detect_threshold, force_image_upload, journal)
            for item, row, fresh in run:
                if fresh and use_cache and row['header'] is not None:
                    self.solutions.put(item.key, row['header'], job_id=row['job_id'],
                                       submission_id=row['submission_id'])
                progress.done(row)
                yield row
        finally:
            progress.close()

    # -- checking inputs ----------------------------------------------------------------
    def _check_item(self, item, raw, settings, header_hints, fwhm, detect_threshold,
                    force_image_upload, backend, keyed=True):
        """Check one input; ``keyed``: also hash its data for the cache and journal."""
        if _is_source_list(raw):
            x, y, width, height = source_list_from(raw)
            if width is None or height is None:
                raise InvalidInputError('a source Table needs width and height in its meta.')
            x, y, width, height = self._checked_source_list(x, y, width, height)
            item.sources = {'x': x, 'y': y}
            item.width, item.height = width, height
            item.args = to_nova_args(normalize_settings(dict(settings)))
            if keyed:
                item.key = self._cache_key(backend, source_digest(x, y, width, height),
                                           args=item.args)
            return
        # Local solves read their header hints where they run (in parallel).
        here = backend.name == 'local'
        img, args, hints = self._prepare_image(raw, hdu=None, ra_key=None, dec_key=None,
                                               ra_dec_units=None,
                                               header_hints=header_hints and not here,
                                               settings=dict(settings))
        item.image, item.args = img, args
        item.hints = ({True: 'header', 'verify': 'verify'}.get(header_hints) if here
                      else hints)
        item.height, item.width = img.shape
        if keyed:
            item.key = self._cache_key(backend, img.digest(), args=args, hints=bool(header_hints),
                                       fwhm=fwhm, detect_threshold=detect_threshold,
                                       upload=bool(force_image_upload), hdu=img.hdu)

    def _known(self, item, use_cache, journal, timeout, retry_failed):
        """A row for an input already solved (cache or journal) or that failed
        for want of a solution in an earlier run (journal), else None; an
        input already submitted gets its ids back from the journal."""
        if item.key is None:
            return None
        if use_cache:
            entry = self.solutions.get(item.key)
            if entry is not None:
                return _row(item, 'success', header=entry['header'], origin='cache')
        if journal is not None:
            entry = journal.get(item.key)
            if entry and entry.get('status') == 'success' and entry.get('header'):
                return _row(item, 'success', header=fits.Header.fromstring(entry['header']),
                            elapsed=entry.get('elapsed', 0.0), origin='journal')
            if entry and entry.get('status') == 'failure':
                item.submission_id = item.job_id = None     # if searched again: a new job
                if not retry_failed and _failed_for_good(entry, timeout):
                    item.submission_id, item.job_id = (entry.get('submission_id'),
                                                       entry.get('job_id'))
                    return _row(item, 'failure', elapsed=entry.get('elapsed', 0.0),
                                origin='journal', failure=entry.get('failure'),
                                error=f"{entry.get('error') or 'no solution was found'} (not "
                                      f'searched again: it failed so in an earlier run, '
                                      f'journal {journal.path.name}; retry_failed=True '
                                      'searches again)')
            elif entry:
                item.submission_id = entry.get('submission_id')
                item.job_id = entry.get('job_id')
        return None

    @staticmethod
    def _journal_done(journal, item, row, timeout):
        if journal is not None:
            journal.write(item.key, index=item.index, input=item.label, status=row['status'],
                          submission_id=row['submission_id'], job_id=row['job_id'],
                          error=row['error'], elapsed=row['elapsed'], failure=row['failure'],
                          solve_timeout=timeout,
                          header=row['header'].tostring() if row['header'] is not None else None)

    # -- local: the solve function on an Executor ------------------------------------------------
    def _run_local(self, inputs, prepare, backend, timeout, executor, max_concurrency, fwhm,
                   detect_threshold, journal):
        """Yields (item, row, fresh) as solves end on the executor."""
        from .local.jobs import run_job
        from .local.pipeline import solve
        if not inputs:
            return
        pool, own = _as_executor(executor, len(inputs), max_concurrency)
        # Pools of this machine write into the job store themselves; others (a
        # Dask cluster may be elsewhere) send the files back with the result.
        here = own or isinstance(pool, (cf.ThreadPoolExecutor, cf.ProcessPoolExecutor))
        window = max_concurrency or 2 * (getattr(pool, '_max_workers', 0) or os.cpu_count() or 1)
        todo, running = list(enumerate(inputs)), {}
        try:
            while todo or running:
                while todo and len(running) < window:
                    item, known = prepare(*todo.pop(0))
                    if known is not None:
                        yield item, known, False
                        continue
                    if item.job_id is None or not (backend.jobs_dir / str(item.job_id)).is_dir():
                        item.job_id = backend.create_job(
                            item.args, image=item.image, sources=item.sources, width=item.width,
                            height=item.height, hints=item.hints, fwhm=fwhm,
                            detect_threshold=detect_threshold, timeout=timeout,
                            original_filename=(item.image.path.name if item.image is not None
                                               and item.image.path else None))
                    item.submission_id = item.job_id
                    if journal is not None:
                        journal.write(item.key, index=item.index, input=item.label,
                                      status='submitted', submission_id=item.job_id,
                                      job_id=item.job_id)
                    item.started = time.monotonic()
                    if here:
                        task = backend._task(item.job_id, item.image, item.sources)
                        future = pool.submit(run_job, task.pop('job_dir'), **task)
                    else:
                        future = pool.submit(solve, **backend.solve_kwargs(
                            item.job_id, item.image, item.sources))
                    running[future] = item
                if not running:
                    continue
                finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    item = running.pop(future)
                    yield item, self._local_row(backend, item, future, journal, timeout), True
        finally:
            for future in running:
                future.cancel()
            if own:
                pool.shutdown(wait=False, cancel_futures=True)

    def _local_row(self, backend, item, future, journal, timeout):
        elapsed = time.monotonic() - item.started
        try:
            solved, error = future.result(), None
        except Exception as exc:       # a lost worker, a broken input...
            solved, error = None, exc
        if isinstance(solved, dict):   # run_job in a pool here: the job is recorded
            result = solved
        else:
            image = item.image if item.image is not None and item.image.path is None else None
            result = backend.record(item.job_id, solved, error=error, image=image)
        if result['status'] == 'success':
            header = make_wcs_header(backend.download(item.job_id, 'wcs'), item.job_id,
                                     item.job_id)
            row = _row(item, 'success', header=header, elapsed=elapsed,
                       calibration=result['calibration'])
        else:
            reason = result.get('error') or 'no solution was found'
            row = _row(item, 'failure', error=reason, elapsed=elapsed,
                       failure=_local_failure(result))
        self._journal_done(journal, item, row, timeout)
        return row

    # -- nova: concurrent submissions, one poll loop ----------------------------------------------
    def _run_nova(self, inputs, prepare, backend, timeout, max_concurrency, fwhm,
                  detect_threshold, force_image_upload, journal):
        """Yields (item, row, fresh): inputs are checked, extracted and uploaded
        by ``max_concurrency`` threads while one loop looks at submitted jobs."""
        from .polling import _look
        conc = max_concurrency or (NOVA_CONCURRENCY if 'nova.astrometry.net' in self.server
                                   else OTHER_SERVER_CONCURRENCY)
        # Extraction holds the GIL: more of it at once only starves the poll loop,
        # while uploads and waits for answers overlap freely.
        cpu_slot = threading.Semaphore(1)
        if force_image_upload is None:
            # Our own server (it offers long polls) extracts the same way, at full
            # resolution, in parallel worker processes: send it the images.  Other
            # servers get source lists made here (nova bins uploads by 2).
            backend.session_key()
            force_image_upload = bool(getattr(backend, 'long_poll', 0))

        def submit(index, raw):
            with cpu_slot:
                item, known = prepare(index, raw)
            item.started = time.monotonic()
            if known is not None or item.submission_id is not None:
                return item, known     # known, or resumed: wait, never submit again
            if item.image is not None:
                first = item.hints.attempts(item.args)[0] if item.hints else item.args
                sub = self._nova_submit_image(item.image, first,
                                              force_image_upload=force_image_upload, fwhm=fwhm,
                                              detect_threshold=detect_threshold, verbose=False,
                                              timeout=timeout, cpu_slot=cpu_slot)
            else:
                sub = backend.submit_source_list(item.sources['x'], item.sources['y'], item.args,
                                                 width=item.width, height=item.height,
                                                 timeout=timeout)
            item.submission_id = sub.id
            if journal is not None:
                journal.write(item.key, index=item.index, input=item.label,
                              status='submitted', submission_id=sub.id)
            return item, None
        waiting = {}        # item.index -> item, submitted and not finished
        with cf.ThreadPoolExecutor(max_workers=conc, thread_name_prefix='astrometry-submit') as pool:
            futures = {pool.submit(submit, i, raw): (i, raw) for i, raw in enumerate(inputs)}
            while futures or waiting:
                for future in [f for f in futures if f.done()]:
                    index, raw = futures.pop(future)
                    try:
                        item, known = future.result()
                    except Exception as exc:
                        item = _Item(index=index, label=_label(raw))
                        row = _row(item, 'failure', error=f'{type(exc).__name__}: {exc}')
                        yield item, row, False
                        continue
                    if known is not None:
                        yield item, known, False
                    else:
                        waiting[item.index] = item
                if not waiting:
                    if futures:
                        cf.wait(list(futures), timeout=BATCH_POLL, return_when=cf.FIRST_COMPLETED)
                    continue
                # The oldest submission is the next a FIFO server finishes: a server that
                # offers long polls holds that look until it changes; the others get a
                # quick look when due, more often while young.
                now = time.monotonic()
                oldest = min(waiting.values(), key=lambda it: it.started)
                due = [oldest] + [it for it in waiting.values()
                                  if it is not oldest and now >= it.next_look]
                for item in due:
                    hold = _long_poll(backend, futures) if item is oldest else 0.0
                    row = self._nova_look(backend, item, timeout, _look, hold)
                    age = time.monotonic() - item.started
                    # Few jobs left (the tail of the batch): look at each often.
                    pace = BATCH_POLL if (not futures and len(waiting) <= conc) else max(
                        BATCH_POLL, 0.1 * age)
                    item.next_look = time.monotonic() + min(BATCH_POLL_MAX, pace)
                    if row is not None:
                        del waiting[item.index]
                        self._journal_done(journal, item, row, timeout)
                        yield item, row, True
                    elif journal is not None and item.job_id is not None:
                        journal.write(item.key, job_id=item.job_id)
                if not getattr(backend, 'long_poll', 0):
                    time.sleep(BATCH_POLL)

    def _nova_look(self, backend, item, timeout, look, hold=0.0):
        """One look at a submitted input (held up to ``hold`` s by a long-polling
        server): its row when finished, else None."""
        elapsed = time.monotonic() - item.started
        try:
            state = look(backend, item.submission_id, item.job_id, hold)
        except JobNotFoundError:
            item.job_id = None          # replaced after a server restart: re-read the submission
            return None
        except ServerError as exc:
            if exc.status_code is not None and exc.status_code < 500 and exc.status_code != 429:
                return _row(item, 'failure', error=str(exc), elapsed=elapsed)
            state = None                # transient: look again next round
        if isinstance(state, tuple):
            state, item.job_id = state
        if state == 'success':
            try:
                header = self.get_wcs_header(item.job_id)
                header['AN_SUBID'] = (int(item.submission_id), 'astrometry.net submission id')
                return _row(item, 'success', header=header, elapsed=elapsed)
            except AstrometryNetError:
                return None            # not downloadable yet: next round
        if state in ('failure', '?'):
            # The reason a server gives (ours does; nova does not).
            kind = backend.failure_kind(item.job_id) if item.job_id is not None else None
            reason = (backend.failure_reason(item.job_id) if item.job_id is not None
                      else 'the solver found no solution')
            return _row(item, 'failure', error=reason, elapsed=elapsed,
                        failure='coverage' if kind == 'index_coverage' else 'no_solution')
        if isinstance(state, str) and state.startswith('submission failed: '):
            return _row(item, 'failure', error=state, elapsed=elapsed)
        if elapsed > timeout:
            return _row(item, 'failure', failure='timeout',
                        error=f'timed out after {timeout:g} s (resume with '
                        f'wait({item.submission_id}) or a journal)', elapsed=elapsed)
        return None

