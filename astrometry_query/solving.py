"""Submitting, waiting and solving with one backend: `Solver`, which the
facade gives the backend in use.

Every input is checked (file, settings, timeouts) before any network call or
solver run.  Images may be files, HDUs, arrays or NDData; their headers give
pointing and scale hints unless ``header_hints=False``.  A solve whose data
and settings were solved before is answered from the solution cache, with
no request at all.
"""
import numbers
import time
import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning
from astroquery import log

from . import hints as header_hints_module
from .cache import solution_key, source_digest
from .exceptions import AstrometryNetError, IndexCoverageError, InvalidInputError, SolveFailedError
from .images import open_image
from .results import JOB_ID_CARD, SUBMISSION_ID_CARD, Submission, job_ref
from .settings import MAX_SOURCES, normalize_settings, to_nova_args
from .sources import check_params, check_source_list
from .urls import check_url

__all__ = ['Solver', 'check_flag', 'check_image_size']


def check_flag(value, name):
    """A True/False argument, checked."""
    if not isinstance(value, bool):
        raise InvalidInputError(f'{name} must be True or False, got {value!r}.')
    return value


def check_image_size(value, name):
    """An image side in pixels, checked."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1e6 \
            or value != int(value):
        raise InvalidInputError(f'{name} must be a positive whole number of pixels, got {value!r}.')
    return int(value)


def _scale_of(args):
    return {k: args.get(k) for k in ('scale_units', 'scale_type', 'scale_lower', 'scale_upper',
                                     'scale_est', 'scale_err')}


class Solver:
    """Submit, wait and solve with one backend.

    Parameters
    ----------
    backend : `~astrometry_query.backends.Backend`
    results : `~astrometry_query.job_results.JobResults`
        Of the same backend: a solve returns its job's WCS Header.
    cache : `~astrometry_query.cache.SolutionCache` or None
        Where solutions are kept (None: caching is off).
    """

    def __init__(self, backend, results, cache=None):
        self.backend, self.results, self.cache = backend, results, cache

    def cache_key(self, digest, **parts):
        """The solution cache key of data solved on this backend."""
        return solution_key(digest, **self.backend.cache_scope(), **parts)

    # -- preparing an image -----------------------------------------------------
    def prepare_image(self, image, *, hdu=None, ra_key=None, dec_key=None, ra_dec_units=None,
                      header_hints=True, settings, fwhm=3, detect_threshold=5):
        """(Image, nova args, SolveHints or None), every check done before any I/O."""
        if ra_dec_units is not None:
            warnings.warn('ra_dec_units is ignored (deprecated in astroquery too): units are read '
                          'from the header cards.', AstropyDeprecationWarning)
        header_hints_module.check_header_hints(header_hints)
        check_params(fwhm, detect_threshold, MAX_SOURCES, None)     # before any job exists
        if (ra_key is None) != (dec_key is None):
            raise InvalidInputError('Give ra_key and dec_key together.')
        early = dict(settings)
        if ra_key is not None and 'center' not in early and 'center_ra' not in early:
            early.update(center_ra=1.0, center_dec=1.0)     # the cards are read below
        args = to_nova_args(normalize_settings(early))   # settings first, as astroquery
        img = open_image(image, hdu=hdu)
        if ra_key is not None and 'center' not in settings and 'center_ra' not in settings:
            settings = dict(settings)
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

    def checked_source_list(self, x, y, image_width, image_height):
        """(x, y, width, height) checked; at most the solver's first 1000 sources."""
        x, y = check_source_list(x, y)
        width = check_image_size(image_width, 'image_width')
        height = check_image_size(image_height, 'image_height')
        if len(x) > MAX_SOURCES:
            log.warning(f'{len(x)} sources given: only the first {MAX_SOURCES} are used '
                        '(pass them brightest first).')
            x, y = x[:MAX_SOURCES], y[:MAX_SOURCES]
        return x, y, width, height

    # -- submitting ---------------------------------------------------------
    def submit_image(self, image, *, timeout, force_image_upload=False, ra_key=None,
                     dec_key=None, ra_dec_units=None, fwhm=3, detect_threshold=5, verbose=True,
                     header_hints=True, hdu=None, **settings):
        """Submit an image without waiting; its `Submission` (the first attempt
        of a backend that falls back from header hints by submitting again)."""
        img, args, hints = self.prepare_image(
            image, hdu=hdu, ra_key=ra_key, dec_key=dec_key, ra_dec_units=ra_dec_units,
            header_hints=header_hints, settings=settings, fwhm=fwhm,
            detect_threshold=detect_threshold)
        first, first_hints = self.backend.hint_attempts(args, hints)[0]
        return self.backend.submit_image(img, first, hints=first_hints, fwhm=fwhm,
                                         detect_threshold=detect_threshold, timeout=timeout,
                                         force_image_upload=force_image_upload, verbose=verbose)

    def submit_source_list(self, x, y, image_width, image_height, *, timeout, **settings):
        """Submit source positions without waiting; its `Submission`."""
        args = to_nova_args(normalize_settings(settings))
        x, y, width, height = self.checked_source_list(x, y, image_width, image_height)
        return self.backend.submit_source_list(x, y, args, width=width, height=height,
                                               timeout=timeout)

    def submit_url(self, url, *, timeout, **settings):
        """Have an image at a URL fetched and solved; its `Submission`."""
        check_url(url)
        args = to_nova_args(normalize_settings(settings))
        return self.backend.submit_url(url, args, timeout=timeout)

    # -- waiting ------------------------------------------------------------
    def wait(self, submission=None, *, job_id=None, timeout, verbose=True, progress=None):
        """Wait for a submission (or job) to be solved; its `Job`."""
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
        return self.backend.wait(sub_id, job_id=job_id, solve_timeout=timeout, verbose=verbose,
                                 progress=progress)

    def finish(self, submission, timeout, verbose=True, cache=True, progress=None):
        """Wait for a submission, then return its job's WCS Header."""
        job = self.wait(submission, timeout=timeout, verbose=verbose, progress=progress)
        try:
            return self.results.wcs_header(job, cache=cache)
        except AstrometryNetError as exc:       # solved, but its WCS could not be fetched
            if exc.submission_id is None:
                exc.submission_id = submission.id
            raise

    # -- solving: submit, wait, return the WCS -------------------------------------
    def _cached(self, key):
        entry = self.cache.get(key) if key is not None else None
        return entry['header'] if entry is not None else None

    def _keep(self, key, header):
        if key is not None:
            self.cache.put(key, header, job_id=header.get(JOB_ID_CARD),
                           submission_id=header.get(SUBMISSION_ID_CARD))

    def solve_from_image(self, image, *, timeout, force_image_upload=False, ra_key=None,
                         dec_key=None, ra_dec_units=None, fwhm=3, detect_threshold=5,
                         verbose=True, cache=True, progress=None, header_hints=True, hdu=None,
                         **settings):
        """Plate-solve an image; its WCS Header (see the facade's method)."""
        img, args, hints = self.prepare_image(
            image, hdu=hdu, ra_key=ra_key, dec_key=dec_key, ra_dec_units=ra_dec_units,
            header_hints=header_hints, settings=settings, fwhm=fwhm,
            detect_threshold=detect_threshold)
        check_flag(cache, 'cache')
        key = None
        if cache and self.cache is not None:
            key = self.cache_key(img.digest(), args=args, hints=bool(header_hints), fwhm=fwhm,
                                 detect_threshold=detect_threshold,
                                 upload=bool(force_image_upload), hdu=img.hdu)
            header = self._cached(key)
            if header is not None:
                return header
        deadline = time.monotonic() + timeout
        attempts = self.backend.hint_attempts(args, hints)
        uncovered = None        # a scale the backend's index files cannot serve
        for i, (attempt, attempt_hints) in enumerate(attempts):
            if uncovered is not None and _scale_of(attempt) == uncovered:
                continue
            sub = self.backend.submit_image(img, attempt, hints=attempt_hints, fwhm=fwhm,
                                            detect_threshold=detect_threshold, timeout=timeout,
                                            force_image_upload=force_image_upload,
                                            verbose=verbose)
            remaining = deadline - time.monotonic()
            try:
                header = self.finish(sub, max(remaining, 1e-3), verbose, cache, progress)
                break
            except SolveFailedError as exc:
                if i == len(attempts) - 1 or deadline - time.monotonic() < 2.0:
                    raise
                if isinstance(exc, IndexCoverageError) and (header_hints is True or all(
                        _scale_of(a) == _scale_of(attempt) for a, _ in attempts[i + 1:])):
                    raise       # a trusted header, or a scale the index files cannot serve at all
                if isinstance(exc, IndexCoverageError):
                    uncovered = _scale_of(attempt)
                log.info(f'The hinted solve of submission {sub.id} failed: trying a wider '
                         'search without the header hints.')
        self._keep(key, header)
        return header

    def solve_from_source_list(self, x, y, image_width, image_height, *, timeout, verbose=True,
                               cache=True, progress=None, **settings):
        """Plate-solve source positions; their WCS Header."""
        args = to_nova_args(normalize_settings(settings))
        x, y, width, height = self.checked_source_list(x, y, image_width, image_height)
        key = None
        if cache and self.cache is not None:
            key = self.cache_key(source_digest(x, y, width, height), args=args)
            header = self._cached(key)
            if header is not None:
                return header
        sub = self.backend.submit_source_list(x, y, args, width=width, height=height,
                                              timeout=timeout)
        header = self.finish(sub, timeout, verbose, cache, progress)
        self._keep(key, header)
        return header

    def solve_from_url(self, url, *, timeout, verbose=True, cache=True, progress=None,
                       **settings):
        """Plate-solve an image at a URL; its WCS Header."""
        sub = self.submit_url(url, timeout=timeout, **settings)
        return self.finish(sub, timeout, verbose, cache, progress)
