"""Submitting, waiting and solving: the part of the facade that starts work.

Every input is checked (file, settings, timeouts) before any network call or
solver run.  Images may be files, HDUs, arrays or NDData; their headers give
pointing and scale hints unless ``header_hints=False``.  A solve whose data
and settings were solved before is answered from the solution cache, with
no request at all.
"""
import contextlib
import io
import numbers
import time
import warnings
from pathlib import Path

from astropy.io import fits
from astropy.utils.exceptions import AstropyDeprecationWarning
from astroquery import cache_conf, log

from . import conf
from . import hints as header_hints_module
from .cache import SolutionCache, solution_key, source_digest
from .exceptions import (AstrometryNetError, IndexCoverageError, InvalidInputError,
                         SolveFailedError)
from .images import open_image
from .polling import wait_for_job
from .results import JOB_ID_CARD, SUBMISSION_ID_CARD, Submission, job_ref
from .settings import MAX_SOURCES, normalize_settings, to_nova_args
from .sources import _check_params, check_source_list, extract_sources
from .urls import check_url
from ._text import plural

__all__ = ['SolvingMixin', 'MIN_SOURCES']

#: Below this many detected sources the nova backend uploads the image itself.
MIN_SOURCES = 12


def _solve_timeout(value):
    """solve_timeout (None: conf.solve_timeout), checked before any I/O."""
    value = conf.solve_timeout if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float('inf'):
        raise InvalidInputError(f'solve_timeout must be a positive number of seconds, got {value!r}.')
    return float(value)


def _flag(value, name):
    if not isinstance(value, bool):
        raise InvalidInputError(f'{name} must be True or False, got {value!r}.')
    return value


def _image_size(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1e6 \
            or value != int(value):
        raise InvalidInputError(f'{name} must be a positive whole number of pixels, got {value!r}.')
    return int(value)


def _scale_of(args):
    return {k: args.get(k) for k in ('scale_units', 'scale_type', 'scale_lower', 'scale_upper',
                                     'scale_est', 'scale_err')}


def _fits_bytes(img):
    """An in-memory image as FITS bytes, for an upload."""
    header = img.header.copy()
    for key in [k for k in header if k in ('SIMPLE', 'BITPIX', 'EXTEND', 'XTENSION', 'PCOUNT',
                                           'GCOUNT', 'BZERO', 'BSCALE', 'BLANK')
                or k.startswith('NAXIS')]:
        del header[key]
    buffer = io.BytesIO()
    fits.PrimaryHDU(img.data(), header=header).writeto(buffer, output_verify='silentfix')
    return buffer.getvalue()


class SolvingMixin:
    """Submit and solve methods of `AstrometryNetClass` (needs ``self.backend``)."""

    # -- the solution cache -----------------------------------------------------
    @property
    def solutions(self):
        """The `~astrometry_query.cache.SolutionCache` of this client
        (in astroquery's cache directory)."""
        return SolutionCache(Path(self.cache_location) / 'solutions')

    def _cache_key(self, backend, digest, **parts):
        # The job ids in a cached header name jobs of that server or job store.
        where = ({'server': self.server} if backend.name == 'nova'
                 else {'index': list(getattr(backend, 'index_dir', [])),
                       'store': str(getattr(backend, 'data_dir', ''))})
        return solution_key(digest, backend=backend.name, **where, **parts)

    @staticmethod
    def _from_cache(entry, return_submission_id):
        header = entry['header']
        return (header, header.get(SUBMISSION_ID_CARD)) if return_submission_id else header

    # -- preparing an image -----------------------------------------------------
    def _prepare_image(self, image, *, hdu, ra_key, dec_key, ra_dec_units, header_hints,
                       settings, fwhm=3, detect_threshold=5):
        """(Image, nova args, SolveHints or None), every check done before any I/O."""
        if ra_dec_units is not None:
            warnings.warn('ra_dec_units is ignored (deprecated in astroquery too): units are read '
                          'from the header cards.', AstropyDeprecationWarning)
        header_hints_module.check_header_hints(header_hints)
        _check_params(fwhm, detect_threshold, MAX_SOURCES, None)     # before any job exists
        if (ra_key is None) != (dec_key is None):
            raise InvalidInputError('Give ra_key and dec_key together.')
        early = dict(settings)
        if ra_key is not None and 'center' not in early and 'center_ra' not in early:
            early.update(center_ra=1.0, center_dec=1.0)     # the cards are read below
        args = to_nova_args(normalize_settings(early))   # settings first, as astroquery
        img = open_image(image, hdu=hdu)
        if ra_key is not None and 'center' not in settings and 'center_ra' not in settings:
            try:   # a header hint named by the user is a setting like any other
                settings['center_ra'], settings['center_dec'] = header_hints_module.header_position(
                    img.header, ra_key, dec_key)
            except InvalidInputError as exc:
                raise InvalidInputError(f'ra_key/dec_key: {exc}') from None
            args = to_nova_args(normalize_settings(settings))
        hints = (header_hints_module.header_hints(img.header, img.shape, img.wcs(),
                                                  verify=header_hints == 'verify')
                 if header_hints else None)
        return img, args, (hints or None)

    def _nova_submit_image(self, img, args, *, force_image_upload, fwhm, detect_threshold,
                           verbose, timeout, cpu_slot=None):
        """Extract and upload a source list (or upload the image); ``cpu_slot``:
        a lock held while extracting only (batches)."""
        backend = self.backend
        if not force_image_upload:
            with cpu_slot or contextlib.nullcontext():
                sources = extract_sources(img, fwhm=fwhm, detect_threshold=detect_threshold,
                                          downsample=args.get('downsample_factor'))
            if verbose:
                log.info(f'Found {plural(len(sources), "source")} in {img.name} '
                         f'({sources.meta["elapsed"]:.2f} s).')
            if len(sources) >= MIN_SOURCES:
                height, width = img.shape
                return backend.submit_source_list(sources['x'].value, sources['y'].value, args,
                                                  width=width, height=height, timeout=timeout)
            log.info(f'Only {plural(len(sources), "source")} found: uploading the image instead.')
        else:
            img.check_values()          # an empty or constant image is not worth an upload
        if img.path is not None:
            return backend.submit_image(img.path, args, timeout=timeout)
        return backend.submit_image(_fits_bytes(img), args, filename='image.fits', timeout=timeout)

    # -- submitting ---------------------------------------------------------
    def submit_image(self, image_file_path, *, force_image_upload=False, ra_key=None, dec_key=None,
                     ra_dec_units=None, fwhm=3, detect_threshold=5, verbose=True, solve_timeout=None,
                     header_hints=True, hdu=None, **settings):
        """Submit an image without waiting; returns a `Submission`.

        The local backend extracts and solves the image itself.  Unless
        ``force_image_upload``, the nova backend extracts sources here (sep,
        windowed centroids) and uploads only the brightest 1000; it uploads
        the image when too few are found.  See `solve_from_image` for the
        parameters; ``solve_timeout`` bounds a local solve.
        """
        img, args, hints = self._prepare_image(
            image_file_path, hdu=hdu, ra_key=ra_key, dec_key=dec_key, ra_dec_units=ra_dec_units,
            header_hints=header_hints, settings=settings, fwhm=fwhm,
            detect_threshold=detect_threshold)
        timeout = _solve_timeout(solve_timeout)
        backend = self.backend
        # Records know (weakly) the client that made them: their notebook
        # views fetch the annotated image through it.
        if backend.name == 'local':
            return backend.submit_image(img, args, hints=hints, fwhm=fwhm,
                                        detect_threshold=detect_threshold,
                                        timeout=timeout).bind(self)
        first = hints.attempts(args)[0] if hints else args
        return self._nova_submit_image(img, first, force_image_upload=force_image_upload,
                                       fwhm=fwhm, detect_threshold=detect_threshold,
                                       verbose=verbose, timeout=timeout).bind(self)

    def _checked_source_list(self, x, y, image_width, image_height):
        x, y = check_source_list(x, y)
        width = _image_size(image_width, 'image_width')
        height = _image_size(image_height, 'image_height')
        if len(x) > MAX_SOURCES:
            log.warning(f'{plural(len(x), "source")} given: only the first {MAX_SOURCES} are used '
                        '(pass them brightest first).')
            x, y = x[:MAX_SOURCES], y[:MAX_SOURCES]
        return x, y, width, height

    def submit_source_list(self, x, y, image_width, image_height, *, solve_timeout=None, **settings):
        """Submit x/y source positions (FITS 1-based pixels, brightest first);
        returns a `Submission` without waiting.  The solver uses the first 1000."""
        args = to_nova_args(normalize_settings(settings))
        timeout = _solve_timeout(solve_timeout)
        x, y, width, height = self._checked_source_list(x, y, image_width, image_height)
        return self.backend.submit_source_list(x, y, args, width=width, height=height,
                                               timeout=timeout).bind(self)

    def submit_url(self, url, *, solve_timeout=None, **settings):
        """Ask the backend to fetch and solve an image at a URL; returns a `Submission`."""
        check_url(url)
        args = to_nova_args(normalize_settings(settings))
        return self.backend.submit_url(url, args,
                                       timeout=_solve_timeout(solve_timeout)).bind(self)

    # -- waiting ------------------------------------------------------------
    def wait(self, submission=None, *, job_id=None, solve_timeout=None, verbose=True, progress=None):
        """Wait for a submission (or job) to be solved; returns its `Job`.

        The local backend waits on the solve itself (no polling); the nova
        backend polls, briskly while the job is young and less often later,
        and as the server asks (Retry-After, or our server's long polls).

        Parameters
        ----------
        submission : `Submission`, `Job`, Header, int
            What to wait for.  An int is a submission id.
        job_id : int, optional
            Wait for a job instead (a `Job` or a Header also name one).
        solve_timeout : float, optional
            Seconds; default ``conf.solve_timeout``.
        progress : callable, optional
            Called as ``progress(state, submission_id, job_id)`` on each change.

        Raises
        ------
        SolveFailedError, SolveTimeoutError, SubmissionError
        """
        if job_id is not None:
            job_id, sub_id = job_ref(job_id)[0], None
            if job_id is None:
                raise InvalidInputError('job_id: this names no job (a Header needs AN_JOBID); '
                                        'give a job id, a Job or a solved Header.')
        elif submission is None:
            raise InvalidInputError('wait() needs a submission (or job_id=).')
        elif isinstance(submission, Submission):
            sub_id, job_id = submission.id, None
        elif isinstance(submission, (numbers.Integral, str)) and not isinstance(submission, bool):
            sub_id, job_id = int(job_ref(submission)[0]), None
        else:
            job_id, sub_id = job_ref(submission)
        timeout = _solve_timeout(solve_timeout)
        backend = self.backend
        if backend.name == 'local':
            return backend.wait(job_id if job_id is not None else sub_id, solve_timeout=timeout,
                                verbose=verbose, progress=progress).bind(self)
        return wait_for_job(backend, submission_id=sub_id, job_id=job_id,
                            solve_timeout=timeout, poll_interval=conf.poll_interval,
                            verbose=verbose, progress=progress).bind(self)

    def _finish(self, submission, solve_timeout, verbose, return_submission_id, cache, progress=None):
        job = self.wait(submission, solve_timeout=solve_timeout, verbose=verbose, progress=progress)
        try:
            header = self.get_wcs_header(job, cache=cache)
        except AstrometryNetError as exc:       # solved, but its WCS could not be fetched
            if exc.submission_id is None:
                exc.submission_id = submission.id
            raise
        return (header, submission.id) if return_submission_id else header

    def monitor_submission(self, submission_id, *, solve_timeout=None, verbose=True,
                           return_submission_id=False, cache=True):
        """Wait for a submission and return the WCS `~astropy.io.fits.Header`."""
        sub = Submission(id=int(job_ref(submission_id)[0]))
        return self._finish(sub, solve_timeout, verbose, return_submission_id, cache)

    # -- solving: submit, wait, return the WCS -------------------------------------
    def solve_from_image(self, image_file_path, *, force_image_upload=False, ra_key=None,
                         dec_key=None, ra_dec_units=None, fwhm=3, detect_threshold=5,
                         solve_timeout=None, verbose=True, return_submission_id=False, cache=True,
                         progress=None, header_hints=True, hdu=None, **settings):
        """Plate-solve an image; returns the WCS as a `~astropy.io.fits.Header`.

        Parameters
        ----------
        image_file_path : str, `~pathlib.Path`, HDUList, HDU, `~numpy.ndarray` or NDData
            A FITS file (gzip allowed; PNG/JPEG/GIF too), or the image in
            memory (an NDData's WCS and meta count as its header).
        force_image_upload : bool
            nova backend: upload the image instead of a locally extracted
            source list.
        ra_key, dec_key : str, optional
            Header cards with a pointing hint (sexagesimal RA in hours,
            numbers in degrees unless the comment says hours).
        fwhm, detect_threshold : float
            Star FWHM (pixels) and detection threshold (sigma) for sep.
        solve_timeout : float, optional
            Seconds to wait; default ``conf.solve_timeout``.
        verbose : bool
            Show a status line while waiting.
        return_submission_id : bool
            Return ``(header, submission_id)``.
        cache : bool
            Answer from the solution cache when these pixels were solved with
            these settings before, and store new solutions there.
        progress : callable, optional
            Called as ``progress(state, submission_id, job_id)``.
        header_hints : {True, 'verify', False}
            Read pointing and pixel-scale hints from the image header (WCS,
            RA/DEC, OBJCTRA/OBJCTDEC, SECPIX/PIXSCALE/SCALE, FOCALLEN with
            XPIXSZ).  A hinted search that fails falls back to a wider one.
            Headers are trusted: a field whose header scale or pointing no
            installed index file can serve is refused at once
            (`IndexCoverageError`, with what to fetch).  ``'verify'``: the
            search goes on without such a hint, in case the header is wrong.
        hdu : int or str, optional
            Which HDU of a FITS file; default the first with 2-D data.
        **settings
            Solve settings, see `show_allowed_settings`; also ``center``
            (SkyCoord), ``radius`` (angle) and ``scale`` (Quantities).

        Returns
        -------
        `~astropy.io.fits.Header`
            The WCS, with cards AN_JOBID and AN_SUBID.

        Raises
        ------
        SolveFailedError, SolveTimeoutError, InvalidSettingError, InvalidInputError
        """
        img, args, hints = self._prepare_image(
            image_file_path, hdu=hdu, ra_key=ra_key, dec_key=dec_key, ra_dec_units=ra_dec_units,
            header_hints=header_hints, settings=settings, fwhm=fwhm,
            detect_threshold=detect_threshold)
        timeout = _solve_timeout(solve_timeout)
        _flag(cache, 'cache')
        backend = self.backend
        key = None
        if cache and cache_conf.cache_active:
            key = self._cache_key(backend, img.digest(), args=args, hints=bool(header_hints),
                                  fwhm=fwhm,
                                  detect_threshold=detect_threshold,
                                  upload=bool(force_image_upload), hdu=img.hdu)
            entry = self.solutions.get(key)
            if entry is not None:
                return self._from_cache(entry, return_submission_id)
        deadline = time.monotonic() + timeout
        if backend.name == 'local':
            sub = backend.submit_image(img, args, hints=hints, fwhm=fwhm,
                                       detect_threshold=detect_threshold, timeout=timeout)
            header = self._finish(sub, timeout, verbose, False, cache, progress)
        else:
            # nova cannot fall back by itself: a failed hinted solve is submitted again, wider.
            attempts = hints.attempts(args) if hints else [args]
            uncovered = None        # a scale the server's index files cannot serve
            for i, attempt in enumerate(attempts):
                if uncovered is not None and _scale_of(attempt) == uncovered:
                    continue
                sub = self._nova_submit_image(img, attempt, force_image_upload=force_image_upload,
                                              fwhm=fwhm, detect_threshold=detect_threshold,
                                              verbose=verbose, timeout=timeout)
                remaining = deadline - time.monotonic()
                try:
                    header = self._finish(sub, max(remaining, 1e-3), verbose, False, cache, progress)
                    break
                except SolveFailedError as exc:
                    if i == len(attempts) - 1 or deadline - time.monotonic() < 2.0:
                        raise
                    if isinstance(exc, IndexCoverageError) and (header_hints is True or all(
                            _scale_of(a) == _scale_of(attempt) for a in attempts[i + 1:])):
                        raise       # a trusted header, or a scale the server cannot serve at all
                    if isinstance(exc, IndexCoverageError):
                        uncovered = _scale_of(attempt)
                    log.info(f'The hinted solve of submission {sub.id} failed: trying a wider '
                             'search without the header hints.')
        if key is not None:
            self.solutions.put(key, header, job_id=header.get(JOB_ID_CARD),
                               submission_id=header.get(SUBMISSION_ID_CARD))
        return (header, header.get(SUBMISSION_ID_CARD)) if return_submission_id else header

    def solve_from_source_list(self, x, y, image_width, image_height, *, solve_timeout=None,
                               verbose=True, return_submission_id=False, cache=True, progress=None,
                               **settings):
        """Plate-solve a list of source positions (FITS 1-based, brightest
        first); returns the WCS Header.  See `solve_from_image`."""
        args = to_nova_args(normalize_settings(settings))
        timeout = _solve_timeout(solve_timeout)
        x, y, width, height = self._checked_source_list(x, y, image_width, image_height)
        backend = self.backend
        key = None
        if cache and cache_conf.cache_active:
            key = self._cache_key(backend, source_digest(x, y, width, height), args=args)
            entry = self.solutions.get(key)
            if entry is not None:
                return self._from_cache(entry, return_submission_id)
        sub = backend.submit_source_list(x, y, args, width=width, height=height, timeout=timeout)
        header = self._finish(sub, timeout, verbose, False, cache, progress)
        if key is not None:
            self.solutions.put(key, header, job_id=header.get(JOB_ID_CARD),
                               submission_id=header.get(SUBMISSION_ID_CARD))
        return (header, header.get(SUBMISSION_ID_CARD)) if return_submission_id else header

    def solve_from_url(self, url, *, solve_timeout=None, verbose=True, return_submission_id=False,
                       cache=True, progress=None, **settings):
        """Plate-solve an image at a URL; returns the WCS Header."""
        sub = self.submit_url(url, solve_timeout=solve_timeout, **settings)
        return self._finish(sub, solve_timeout, verbose, return_submission_id, cache, progress)
