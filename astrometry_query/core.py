"""The facade: `AstrometryNetClass`, a drop-in for astroquery's AstrometryNet.

It validates arguments, picks a backend (nova over HTTP, or the local
solver), and turns records into Headers and Tables.  Protocol details live in
``nova/``, solver details in ``local/``.
"""
import getpass
import numbers
import os
import re
import warnings
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path

from astropy.utils.exceptions import AstropyDeprecationWarning
from astroquery import log
from astroquery.query import BaseQuery
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import auth, conf
from .exceptions import InvalidInputError, InvalidSettingError, MissingAPIKeyError
from .compat import AstroqueryCompatMixin
from .job_results import JobResultsMixin
from .nova.client import MISSING_API_KEY, NovaClient
from .nova.protocol import api_url, redact, site_url
from .polling import wait_for_job
from .results import Submission, job_ref
from .settings import MAX_SOURCES, normalize_settings, to_nova_args
from .sources import check_source_list, extract_sources, header_position, read_image

__all__ = ['AstrometryNet', 'AstrometryNetClass']

BACKENDS = ('auto', 'nova', 'local')
#: Below this many detected sources the image itself is uploaded.
MIN_SOURCES = 12


#: nova's answer for a job that has no results yet, e.g. {"objects_in_field": []}.
_EMPTY_ANSWER = re.compile(rb'^\{"\w+": \[\]\}$')


def _read_header(path):
    try:
        return read_image(path)[1]
    except InvalidInputError as exc:
        raise InvalidInputError(f'ra_key/dec_key: {exc}') from None


def _solve_timeout(value):
    """solve_timeout (None: conf.solve_timeout), checked before any I/O."""
    value = conf.solve_timeout if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float('inf'):
        raise InvalidInputError(f'solve_timeout must be a positive number of seconds, got {value!r}.')
    return float(value)


class AstrometryNetClass(AstroqueryCompatMixin, JobResultsMixin, BaseQuery):
    """Plate-solve images and source lists with astrometry.net.

    Parameters
    ----------
    api_key : str, optional
        nova API key; default ``conf.api_key``, then the environment variable
        ``ASTROMETRY_NET_API_KEY``, then the keyring.
    server : str, optional
        nova server root or ``/api/`` URL; default ``conf.server``.
    timeout : float, optional
        Timeout of each HTTP request in seconds; default ``conf.timeout``.
    backend : {'auto', 'nova', 'local'}, optional
        Default ``conf.backend``.  'auto' uses nova when an API key or a
        server is given, else the local solver when it is installed.
    """

    def __init__(self, api_key=None, *, server=None, timeout=None, backend=None):
        super().__init__()
        if backend is not None and backend not in BACKENDS:
            raise InvalidSettingError(f'backend must be one of {BACKENDS}, got {backend!r}.',
                                      setting='backend', allowed=BACKENDS)
        self._api_key = api_key or None
        self._server = server
        self._timeout = timeout
        self._backend_choice = backend
        self._backends = {}
        # No cookies: the session key travels in request-json, and nothing a
        # cached response pickles may carry a secret.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        retry = Retry(total=4, connect=3, read=2, status=3, backoff_factor=0.5,
                      status_forcelist=(502, 503, 504), allowed_methods=frozenset({'GET'}),
                      raise_on_status=False)
        for scheme in ('http://', 'https://'):
            self._session.mount(scheme, HTTPAdapter(max_retries=retry))

    def __repr__(self):
        key = 'set' if self._api_key else 'not set'
        return (f'<{type(self).__name__} server={self.server!r} backend={self._backend_choice or conf.backend!r} '
                f'api_key {key}>')

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the HTTP session and stop the local solver's threads."""
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        self._session.close()

    # -- configuration, read at call time ------------------------------------
    @property
    def server(self):
        """The nova server URL in use."""
        return self._server or conf.server

    @server.setter
    def server(self, value):
        self._server = value

    URL = server

    @property
    def API_URL(self):
        return api_url(self.server, '')

    @API_URL.setter
    def API_URL(self, value):
        self._server = site_url(value)

    @property
    def timeout(self):
        return float(self._timeout if self._timeout is not None else conf.timeout)

    @timeout.setter
    def timeout(self, value):
        self._timeout = value

    TIMEOUT = timeout

    @property
    def api_key(self):
        """The API key (argument > conf.api_key > env > keyring)."""
        key, _ = auth.find_api_key(self._api_key, conf.api_key, self.server)
        if not key:
            raise MissingAPIKeyError(MISSING_API_KEY)
        return key

    @api_key.setter
    def api_key(self, value):
        self._api_key = value or None
        self._backends.pop('nova', None)

    def _find_key(self):
        return auth.find_api_key(self._api_key, conf.api_key, self.server)[0]

    def login(self, api_key=None, *, store_api_key=False, reenter_api_key=False):
        """Check an API key with the server (and remember it).

        Parameters
        ----------
        api_key : str, optional
            Default: the key found as described in the class docstring.
        store_api_key : bool
            Save the key in the system keyring for later sessions.
        reenter_api_key : bool
            Ask for the key at a password prompt even if one is known.

        Raises
        ------
        LoginError
            The server rejected the key.
        """
        if reenter_api_key or (api_key is None and not self._find_key()):
            api_key = getpass.getpass(f'astrometry.net API key for {self.server}: ')
        if api_key:
            self.api_key = api_key
        self._nova().login()
        self._last_query = None     # it held the login request
        if store_api_key:
            auth.store_api_key(self.server, self.api_key)
            log.info(f'API key stored in the keyring for {auth.keyring_user(self.server)}.')

    # -- backends -----------------------------------------------------------
    def _backend_name(self):
        choice = self._backend_choice or conf.backend
        if choice not in BACKENDS:
            raise InvalidSettingError(f'conf.backend must be one of {BACKENDS}, got {choice!r}.',
                                      setting='backend', allowed=BACKENDS)
        if choice != 'auto':
            return choice
        if self._find_key() or self._server is not None or 'nova' in self._backends:
            return 'nova'
        from .local.solver import solver_available
        return 'local' if solver_available(conf.index_dir or None) else 'nova'

    def _nova(self):
        client = self._backends.get('nova')
        if client is None or client.server != self.server:
            client = NovaClient(self._request, server=self.server, api_key=self._find_key,
                                timeout=self.timeout)
            self._backends['nova'] = client
        client.timeout = self.timeout
        return client

    def _local(self):
        if 'local' not in self._backends:
            from .local.backend import LocalBackend
            self._backends['local'] = LocalBackend(conf.local_data_dir or None,
                                                   index_dir=conf.index_dir or None)
        return self._backends['local']

    @property
    def backend(self):
        """The backend object in use (``.name`` is 'nova' or 'local')."""
        return self._nova() if self._backend_name() == 'nova' else self._local()

    # -- HTTP hooks: no secret in a log line or the cache ---------------------
    @staticmethod
    def _response_hook(response, *args, **kwargs):
        # static: astroquery deep-copies the request hooks when caching, and a
        # bound method would drag the whole client (with its locks) along.
        log.debug(f'{response.request.method} {response.request.url} -> {response.status_code}'
                  f' {redact(response.request.body if isinstance(response.request.body, str) else "")}')

    def _request(self, method, url, **kwargs):
        cache = kwargs.get('cache')
        response = super()._request(method, url, **kwargs)
        if cache and (response.status_code != 200 or b'"error' in response.content[:40]
                      or _EMPTY_ANSWER.match(response.content)):
            # astroquery caches any answer; an error or a not-yet answer must not stick.
            self._last_query.request_file(self.cache_location).unlink(missing_ok=True)
        return response

    # -- submitting ---------------------------------------------------------
    def submit_image(self, image_file_path, *, force_image_upload=False, ra_key=None, dec_key=None,
                     ra_dec_units=None, fwhm=3, detect_threshold=5, verbose=True, solve_timeout=None,
                     **settings):
        """Submit an image without waiting; returns a `Submission`.

        Unless ``force_image_upload``, the nova backend extracts sources here
        (sep) and uploads only the brightest 1000; it uploads the image when
        too few are found.  The local backend solves the file itself.
        See `solve_from_image` for the parameters; ``solve_timeout`` bounds a
        local solve (its process tree is killed then).
        """
        if ra_dec_units is not None:
            warnings.warn('ra_dec_units is ignored (deprecated in astroquery too): units are read '
                          'from the header cards.', AstropyDeprecationWarning)
        path = Path(image_file_path) if isinstance(image_file_path, (str, os.PathLike)) else None
        if path is None or not path.is_file():
            raise InvalidInputError(f'image_file_path: no such file: {str(image_file_path)!r}')
        if (ra_key is None) != (dec_key is None):
            raise InvalidInputError('Give ra_key and dec_key together.')
        if ra_key is not None and 'center' not in settings and 'center_ra' not in settings:
            # A header hint is a setting like any other: read it before validating.
            settings['center_ra'], settings['center_dec'] = header_position(
                _read_header(path), ra_key, dec_key)
        args = to_nova_args(normalize_settings(settings))      # fails before any network I/O
        timeout = _solve_timeout(solve_timeout)
        backend = self.backend
        if backend.name == 'nova' and not force_image_upload:
            data, _ = read_image(path)
            sources = extract_sources(data, fwhm=fwhm, detect_threshold=detect_threshold)
            if verbose:
                log.info(f'Found {len(sources)} sources in {path.name}.')
            if len(sources) >= MIN_SOURCES:
                height, width = data.shape
                return backend.submit_source_list(sources['x'].value, sources['y'].value, args,
                                                  width=width, height=height, timeout=timeout)
            log.info(f'Only {len(sources)} sources found: uploading the image instead.')
        return backend.submit_image(path, args, timeout=timeout)

    def submit_source_list(self, x, y, image_width, image_height, *, solve_timeout=None, **settings):
        """Submit x/y source positions (FITS 1-based pixels, brightest first);
        returns a `Submission` without waiting.  nova uses the first 1000."""
        args = to_nova_args(normalize_settings(settings))
        timeout = _solve_timeout(solve_timeout)
        x, y = check_source_list(x, y)
        for name, value in (('image_width', image_width), ('image_height', image_height)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e6 \
                    or value != int(value):
                raise InvalidInputError(f'{name} must be a positive whole number of pixels, got {value!r}.')
        if len(x) > MAX_SOURCES:
            log.warning(f'{len(x)} sources given: only the first {MAX_SOURCES} are used '
                        '(pass them brightest first).')
            x, y = x[:MAX_SOURCES], y[:MAX_SOURCES]
        return self.backend.submit_source_list(x, y, args, width=int(image_width),
                                               height=int(image_height), timeout=timeout)

    def submit_url(self, url, *, solve_timeout=None, **settings):
        """Ask the backend to fetch and solve an image at a URL; returns a `Submission`."""
        if not isinstance(url, str) or not url.lower().startswith(('http://', 'https://')):
            raise InvalidInputError(f'url must be an http(s) URL, got {url!r}.')
        if len(url) > 200:
            raise InvalidInputError(f'url must be at most 200 characters (nova stores 200), got {len(url)}.')
        args = to_nova_args(normalize_settings(settings))
        return self.backend.submit_url(url, args, timeout=_solve_timeout(solve_timeout))

    # -- waiting ------------------------------------------------------------
    def wait(self, submission=None, *, job_id=None, solve_timeout=None, verbose=True, progress=None):
        """Wait for a submission (or job) to be solved; returns its `Job`.

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
        elif submission is None:
            raise InvalidInputError('wait() needs a submission (or job_id=).')
        elif isinstance(submission, Submission):
            sub_id, job_id = submission.id, None
        elif isinstance(submission, (numbers.Integral, str)) and not isinstance(submission, bool):
            sub_id, job_id = int(job_ref(submission)[0]), None
        else:
            job_id, sub_id = job_ref(submission)
        timeout = _solve_timeout(solve_timeout)
        return wait_for_job(self.backend, submission_id=sub_id, job_id=job_id,
                            solve_timeout=timeout, poll_interval=conf.poll_interval,
                            verbose=verbose, progress=progress)

    def _finish(self, submission, solve_timeout, verbose, return_submission_id, cache, progress=None):
        job = self.wait(submission, solve_timeout=solve_timeout, verbose=verbose, progress=progress)
        header = self.get_wcs_header(job, cache=cache)
        return (header, submission.id) if return_submission_id else header

    def monitor_submission(self, submission_id, *, solve_timeout=None, verbose=True,
                           return_submission_id=False, cache=True):
        """Wait for a submission and return the WCS `~astropy.io.fits.Header`."""
        sub = Submission(id=int(job_ref(submission_id)[0]))
        return self._finish(sub, solve_timeout, verbose, return_submission_id, cache)

    def solve_from_image(self, image_file_path, *, force_image_upload=False, ra_key=None,
                         dec_key=None, ra_dec_units=None, fwhm=3, detect_threshold=5,
                         solve_timeout=None, verbose=True, return_submission_id=False, cache=True,
                         progress=None, **settings):
        """Plate-solve an image; returns the WCS as a `~astropy.io.fits.Header`.

        Parameters
        ----------
        image_file_path : str or `~pathlib.Path`
            A FITS image (the nova backend also takes JPEG/PNG with
            ``force_image_upload=True``).
        force_image_upload : bool
            Upload the image instead of a locally extracted source list.
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
            Cache the solved result files.
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
        sub = self.submit_image(image_file_path, force_image_upload=force_image_upload,
                                ra_key=ra_key, dec_key=dec_key, ra_dec_units=ra_dec_units, fwhm=fwhm,
                                detect_threshold=detect_threshold, verbose=verbose,
                                solve_timeout=solve_timeout, **settings)
        return self._finish(sub, solve_timeout, verbose, return_submission_id, cache, progress)

    def solve_from_source_list(self, x, y, image_width, image_height, *, solve_timeout=None,
                               verbose=True, return_submission_id=False, cache=True, progress=None,
                               **settings):
        """Plate-solve a list of source positions (FITS 1-based, brightest
        first); returns the WCS Header.  See `solve_from_image`."""
        sub = self.submit_source_list(x, y, image_width, image_height, solve_timeout=solve_timeout,
                                      **settings)
        return self._finish(sub, solve_timeout, verbose, return_submission_id, cache, progress)

    def solve_from_url(self, url, *, solve_timeout=None, verbose=True, return_submission_id=False,
                       cache=True, progress=None, **settings):
        """Plate-solve an image at a URL; returns the WCS Header."""
        sub = self.submit_url(url, solve_timeout=solve_timeout, **settings)
        return self._finish(sub, solve_timeout, verbose, return_submission_id, cache, progress)


AstrometryNet = AstrometryNetClass()
