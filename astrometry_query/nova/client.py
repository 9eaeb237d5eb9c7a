"""The nova backend: HTTP to nova.astrometry.net or any server that speaks
its API.  Login and session renewal, uploads, status, results and files;
a `~astrometry_query.backends.Backend` (waiting is ``polling.py``'s, what an
image is sent as ``uploads.py``'s, batches ``batches.py``'s).

All HTTP goes through a ``request`` callable with the signature of
astroquery's ``BaseQuery._request``, so the facade's cache, session and
test mocks apply; this module never imports the facade.
"""
import collections
import contextlib
import io
import os
import threading
import time
from pathlib import Path

import requests

from ..exceptions import (InvalidInputError, InvalidSettingError, LoginError, MissingAPIKeyError,
                          ResultNotAvailableError, ServerError, UploadUnconfirmedError)
from ..results import Job, Submission
from ..jobs.files import RESULT_KINDS
from .batches import NovaBatch
from .polling import wait_for_job
from .protocol import (LONG_POLL_HEADER, OPEN_SERVER_KEY, SERVER_INFO,
                       api_url, decode_response, encode_request, file_url, is_public_nova,
                       is_session_error, site_url)
from .uploads import send_image

__all__ = ['NovaClient']

MISSING_API_KEY = (
    'Astrometry.net API key not set. Pass api_key=..., set conf.api_key or the '
    'ASTROMETRY_NET_API_KEY environment variable, or store it in the keyring once with '
    'AstrometryNet.login(api_key, store_api_key=True). Without a key, solve offline with '
    "backend='local'.")
#: No key, and a server that is not open (or does not say it is).
MISSING_API_KEY_HERE = (
    'The server at {url} requires an API key (it is not an open server). Pass api_key=..., '
    'set conf.api_key or the ASTROMETRY_NET_API_KEY environment variable, or store it in the '
    'keyring once with AstrometryNet.login(api_key, store_api_key=True); the server\'s '
    'administrator gives the keys (astrometry-query serve --api-key KEY).')


def _refused(exc):
    """True when a ConnectionError happened before anything was sent."""
    text = repr(exc)
    return any(t in text for t in ('NewConnectionError', 'Connection refused',
                                   'Failed to establish', 'Name or service not known'))


def _is_submission(url):
    return url.rstrip('/').endswith(('/api/upload', '/api/url_upload'))


#: Pauses (s) before each new try of a result file download (as many tries as a
#: wait tolerates transient errors).
DOWNLOAD_RETRIES = (0.25, 0.5, 1.0, 2.0)
#: Pauses (s) before each new try of an API GET that met 502/503/504/429 or no answer.
GET_RETRIES = (0.25, 1.0)


def _seconds(value):
    """A header's number of seconds (Retry-After, X-Long-Poll), or None."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if 0 <= seconds < 3600 else None


def _wait_params(wait):
    return {'wait': f'{wait:.3g}'} if wait else None


class NovaClient:
    """Speaks the nova API.

    Parameters
    ----------
    request : callable
        ``request(method, url, *, params, data, files, headers, timeout, cache,
        allow_redirects)`` returning a response (astroquery's ``_request``).
    server : str
        Server root (``https://nova.astrometry.net``) or its ``/api/`` URL.
    api_key : callable
        Returns the API key when a login is needed (looked up lazily).
    timeout : float
        Timeout of each HTTP request, in seconds.
    poll_interval : float
        First interval between status polls of a job, in seconds.
    sleep : callable, optional
        Pauses between retries (``time.sleep``; tests give a fake clock's).
    """
    name = 'nova'
    #: Header hints are read here: nova cannot fall back from them by itself.
    reads_header_hints = False

    def __init__(self, request, *, server, api_key, timeout, poll_interval=0.5, sleep=time.sleep):
        self._request = request
        self._sleep = sleep
        self.server = server
        self._api_key = api_key
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._session_key = None
        self._server_info = None
        self._lock = threading.Lock()
        self._limits = threading.local()
        #: Longest status long poll the server offers (its X-Long-Poll header), 0: none.
        self.long_poll = 0.0
        # What the last submissions sent, for their solve-field command (nova does not
        # record it); bounded, as a client may run all night.
        self._sent = collections.OrderedDict()

    def __repr__(self):
        return f'<NovaClient server={self.server!r} logged_in={self._session_key is not None}>'

    # -- HTTP ---------------------------------------------------------------
    def _http(self, method, url, *, ids=None, cache=False, **kwargs):
        ids = ids or {}
        timeout = self.timeout
        deadline = getattr(self._limits, 'deadline', None)
        if deadline is not None:
            # Within a wait: one request (with the adapter's own retries, up to 3
            # tries) never runs past the caller's solve_timeout.
            timeout = max(0.2, min(timeout, (deadline - time.monotonic()) / 3))
        try:
            response = self._request(method, url, timeout=timeout, cache=cache, **kwargs)
        except (requests.Timeout, requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError) as exc:
            if isinstance(exc, requests.ConnectTimeout) or _refused(exc):
                # Nothing reached the server: safe to try again later, even an upload.
                raise ServerError(f'Cannot reach the server at {url}: {type(exc).__name__}.',
                                  url=url, **ids) from None
            if method == 'POST' and _is_submission(url):
                raise UploadUnconfirmedError(
                    f'The upload to {url} was sent but its answer was lost '
                    f'({type(exc).__name__}): the server may have received it. It was not '
                    'sent again; check list_jobs() before submitting again.', **ids) from None
            if isinstance(exc, requests.Timeout) or 'timed out' in repr(exc).lower():
                raise ServerError(f'No answer from {url} within {timeout:g} s.', url=url,
                                  **ids) from None
            raise ServerError(f'The connection to {url} broke: {type(exc).__name__}.', url=url,
                              **ids) from None
        offered = _seconds(getattr(response, 'headers', {}).get(LONG_POLL_HEADER))
        if offered is not None:
            self.long_poll = offered
        return response

    def _get(self, url, *, ids, **kwargs):
        """A GET, tried again (it is idempotent) on 502/503/504/429 and on a lost
        answer: up to `GET_RETRIES` more times, with growing pauses (or the
        server's Retry-After), never past the current deadline."""
        for pause in GET_RETRIES + (None,):
            try:
                response = self._http('GET', url, ids=ids, **kwargs)
            except ServerError:
                if pause is None or not self._time_for(pause):
                    raise
                self._sleep(pause)
                continue
            if response.status_code not in (429, 502, 503, 504) or pause is None:
                return response
            wait = _seconds(response.headers.get('Retry-After')) or pause
            if not self._time_for(wait):
                return response
            self._sleep(wait)
        return response

    def _time_for(self, pause):
        deadline = getattr(self._limits, 'deadline', None)
        return deadline is None or time.monotonic() + pause < deadline - 0.2

    def _api(self, method, parts, args=None, *, auth=False, files=None, params=None,
             cache=False, ids=None, retry=True):
        """Call an API endpoint and decode its JSON; log in again once if the
        server says the session is gone.  ``retry=False``: no retries of a GET
        here (status polls: the waiting loop retries them itself)."""
        ids = ids or {}
        url = api_url(self.server, *parts)
        for attempt in range(2):
            data = None
            if args is not None or auth:
                payload = dict(args or {})
                if auth:
                    payload['session'] = self.session_key(renew=attempt > 0)
                data = encode_request(payload)
            if method == 'GET' and data is None and retry:
                response = self._get(url, params=params, cache=cache, ids=ids)
            else:
                response = self._http(method, url, data=data, files=files, params=params,
                                      cache=cache, ids=ids)
            try:
                return decode_response(response.status_code, response.text, url=url, **ids)
            except ServerError as exc:
                exc.retry_after = _seconds(getattr(response, 'headers', {}).get('Retry-After'))
                if auth and attempt == 0 and is_session_error(exc.message):
                    if files:
                        for value in files.values():
                            handle = value[1] if isinstance(value, tuple) else value
                            if hasattr(handle, 'seek'):
                                handle.seek(0)
                    continue
                raise

    @contextlib.contextmanager
    def bounded(self, deadline):
        """Within the block (this thread), requests end by ``deadline`` (monotonic)."""
        previous = getattr(self._limits, 'deadline', None)
        self._limits.deadline = deadline
        try:
            yield
        finally:
            self._limits.deadline = previous

    # -- login --------------------------------------------------------------
    def server_info(self):
        """What the server says of itself at ``/api/server_info`` (our server does;
        nova does not): ``open`` (it accepts any key), ``long_poll``, ``software``.

        Asked once per client; {} for nova.astrometry.net (never asked) and for a
        server that does not know the endpoint (an HTML page, a 404, a JSON error).

        Raises
        ------
        ServerError
            The server could not be reached (nothing is cached then).
        """
        with self._lock:
            info = self._server_info
        if info is not None:
            return info
        info = {}
        if not is_public_nova(self.server):
            try:
                answer = self._api('GET', [SERVER_INFO])
            except ServerError as exc:
                if exc.status_code is None:     # no answer: unknown, ask again next time
                    raise
            else:
                info = answer
        with self._lock:
            self._server_info = info
        return info

    def reads_any_image(self):
        """True when the server is this package's (it says so at ``server_info``):
        it reads every image format the package reads (XISF, camera RAW...)."""
        return str(self.server_info().get('software', '')).startswith('astrometry_query')

    def is_open(self):
        """True when the server says it is open: it accepts any key, so none is needed."""
        return self.server_info().get('open') is True

    def _login_key(self):
        """The API key to log in with: the caller's, else the placeholder an open
        server accepts; `MissingAPIKeyError` (before any request to nova.astrometry.net)."""
        key = self._api_key()
        if key:
            return key
        if is_public_nova(self.server):
            raise MissingAPIKeyError(MISSING_API_KEY)
        if self.is_open():
            return OPEN_SERVER_KEY
        raise MissingAPIKeyError(MISSING_API_KEY_HERE.format(url=site_url(self.server)))

    def login(self, api_key=None):
        """Log in with the API key (on an open server, without one); returns nothing,
        raises `LoginError` or `MissingAPIKeyError`."""
        key = api_key or self._login_key()
        url = api_url(self.server, 'login')
        response = self._http('POST', url, data=encode_request({'apikey': key}))
        try:
            payload = decode_response(response.status_code, response.text, url=url)
        except ServerError as exc:
            if 'apikey' in exc.message:
                raise LoginError(f'The server at {url} rejected the API key ({exc.message}). '
                                 'Check it on your astrometry.net profile page.') from None
            raise
        if 'session' not in payload:
            raise LoginError(f'The server at {url} gave no session in its login answer.')
        with self._lock:
            self._session_key = payload['session']

    def session_key(self, renew=False):
        with self._lock:
            key = None if renew else self._session_key
        if key is None:
            self.login()
            with self._lock:
                key = self._session_key
        return key

    # -- what the facade asks of a backend ---------------------------------------------------
    def cache_scope(self):
        # A cached header names a job of this server.
        return {'backend': 'nova', 'server': self.server}

    def hint_attempts(self, settings, hints):
        # nova cannot fall back by itself: a failed hinted solve is submitted again, wider.
        return [(attempt, None) for attempt in hints.attempts(settings)] if hints \
            else [(settings, None)]

    def submission_id_of(self, job_id):
        return None             # only the server knows

    def wait(self, submission_id=None, *, job_id=None, solve_timeout, verbose=True,
             progress=None):
        """Poll until the job of a submission (or a job) ends; its `Job`."""
        return wait_for_job(self, submission_id=submission_id, job_id=job_id,
                            solve_timeout=solve_timeout, poll_interval=self.poll_interval,
                            verbose=verbose, progress=progress)

    def batch(self, *, executor=None, max_concurrency=None, timeout, fwhm=3.0,
              detect_threshold=5.0, force_image_upload=None, submitted=None):
        """A `~astrometry_query.nova.batches.NovaBatch` (``executor`` plays no part:
        the server solves)."""
        return NovaBatch(self, max_concurrency=max_concurrency, timeout=timeout, fwhm=fwhm,
                         detect_threshold=detect_threshold,
                         force_image_upload=force_image_upload, submitted=submitted)

    def prune(self, older_than, *, dry_run=False):
        raise InvalidSettingError(
            'prune_jobs deletes jobs of the local job store, and this client uses the nova '
            'backend (a nova server keeps its own jobs): use a client with backend=\'local\'.',
            setting='backend', allowed=['local'])

    # -- submitting ---------------------------------------------------------
    def submit_image(self, image, settings, *, hints=None, fwhm=3.0, detect_threshold=5.0,
                     timeout=None, force_image_upload=False, verbose=True, cpu_slot=None):
        """Submit an `~astrometry_query.images.Image`: a source list extracted
        here, or the image itself (see `~astrometry_query.nova.uploads.send_image`).
        ``hints`` are already in ``settings`` (see `hint_attempts`)."""
        return send_image(self, image, settings, force_image_upload=force_image_upload,
                          fwhm=fwhm, detect_threshold=detect_threshold, verbose=verbose,
                          cpu_slot=cpu_slot)

    def upload(self, image, args, *, filename=None):
        """Upload an image file (path, bytes or binary file object)."""
        if isinstance(image, (str, os.PathLike)):
            path = Path(image)
            with open(path, 'rb') as handle:
                return self._sent_as(self._upload(args, files={'file': (
                    filename or path.name, handle, 'application/octet-stream')}),
                    args, filename=filename or path.name)
        if isinstance(image, (bytes, bytearray)):
            image = io.BytesIO(bytes(image))
        return self._sent_as(self._upload(args, files={'file': (
            filename or 'image.fits', image, 'application/octet-stream')}),
            args, filename=filename or 'image.fits')

    def submit_source_list(self, x, y, args, *, width, height, timeout=None):
        """Submit x/y lists (brightest first) in the JSON, as nova's client does."""
        payload = dict(args, x=[float(v) for v in x], y=[float(v) for v in y],
                       image_width=int(width), image_height=int(height))
        return self._sent_as(self._upload(payload), args, width=int(width), height=int(height),
                             source_list=True)

    def submit_url(self, url, args, *, timeout=None):
        """Ask the server to fetch an image from a URL (``timeout``: the
        solve's time limit, which nova sets itself, is not sent)."""
        answer = self._api('POST', ['url_upload'], dict(args, url=url), auth=True)
        name = url.split('?')[0].rstrip('/').rsplit('/', 1)[-1] or 'image.fits'
        return self._sent_as(Submission(id=int(answer['subid']), hash=answer.get('hash')),
                             args, filename=name)

    def _sent_as(self, submission, args, **what):
        """Remember what a submission sent (the last 256), for `command_line`."""
        with self._lock:
            self._sent[int(submission.id)] = (dict(args), what)
            while len(self._sent) > 256:
                self._sent.popitem(last=False)
        return submission

    def command_line(self, submission_id):
        """The solve-field command equivalent to a submission this client sent
        (nova does not record it), or None for one it does not know."""
        from ..solve_field import solve_field_command
        with self._lock:
            sent = self._sent.get(submission_id)
        if sent is None:
            return None
        args, what = sent
        return solve_field_command(args, refit=False, **dict(
            {'filename': 'job.axy' if what.get('source_list') else 'image.fits'}, **what))

    def _upload(self, args, files=None):
        answer = self._api('POST', ['upload'], args, auth=True, files=files)
        return Submission(id=int(answer['subid']), hash=answer.get('hash'))

    # -- status -------------------------------------------------------------
    def submission(self, submission_id, wait=None):
        """The submission's state; ``wait``: seconds a long-polling server may
        hold the answer until the state changes."""
        sid = int(submission_id)
        payload = self._api('GET', ['submissions', sid], ids={'submission_id': sid},
                            params=_wait_params(wait), retry=False)
        return Submission.from_api(sid, payload)

    def job_status(self, job_id, submission_id=None, wait=None):
        payload = self._api('GET', ['jobs', int(job_id)], params=_wait_params(wait),
                            ids={'job_id': int(job_id), 'submission_id': submission_id},
                            retry=False)
        return payload.get('status', '?')

    def job_info(self, job_id, submission_id=None, *, cache=False):
        ids = {'job_id': int(job_id), 'submission_id': submission_id}
        payload = self._api('GET', ['jobs', int(job_id), 'info'], cache=cache, ids=ids)
        job = Job.from_api(job_id, payload, submission_id)
        if job.command_line is None and submission_id is not None:
            job.command_line = self.command_line(int(submission_id))
        return job

    def failure(self, job_id):
        """A failed job's outcome as `~astrometry_query.jobs.error_for` reads it:
        ``error`` (why, in words) and ``error_kind`` (see
        `~astrometry_query.jobs.runner.failure_kind`), as our server says them
        in the job's info; nova says neither, and a generic reason stands in."""
        try:
            payload = self._api('GET', ['jobs', int(job_id), 'info'], ids={'job_id': int(job_id)})
        except Exception:       # the generic reason will do
            payload = {}
        message = payload.get('error_message')
        # A job nova failed was searched: with no kind said, it found nothing.
        return {'status': 'failure', 'error_kind': payload.get('error_kind') or 'no_solution',
                'error': message if isinstance(message, str) and message else
                ('the solver found no solution: give scale and position hints '
                 '(scale=(low, high) Quantities, center=SkyCoord, radius=...)')}

    def failure_reason(self, job_id):
        """Why a job failed, in words."""
        return self.failure(job_id)['error']

    # -- results ------------------------------------------------------------
    def _result(self, job_id, what, key, *, cache=False, params=None):
        ids = {'job_id': int(job_id)}
        payload = self._api('GET', ['jobs', int(job_id), what], params=params, cache=cache, ids=ids)
        if 'error' in payload and key not in payload:
            raise ResultNotAvailableError(f'Job {job_id} has no {what}: {payload["error"]}', **ids)
        return payload[key] if key else payload

    def calibration(self, job_id, *, cache=False):
        return self._result(job_id, 'calibration', None, cache=cache)

    def annotations(self, job_id, *, nbright=None, cache=False):
        params = None if nbright is None else {'nbright': int(nbright)}
        return self._result(job_id, 'annotations', 'annotations', cache=cache, params=params)

    def objects_in_field(self, job_id, *, cache=False):
        return self._result(job_id, 'objects_in_field', 'objects_in_field', cache=cache)

    def tags(self, job_id, *, machine=False):
        return self._result(job_id, 'machine_tags' if machine else 'tags', 'tags')

    def job_times(self, job_id):
        """nova's API gives no job dates: ``(None, None)``."""
        return None, None

    def my_jobs(self):
        return [int(j) for j in self._api('POST', ['myjobs'], auth=True)['jobs']]

    def jobs_by_tag(self, tag, exact=False):
        params = {'query': tag.strip()}
        if exact:
            params['exact'] = 'yes'
        return [int(j) for j in self._api('GET', ['jobs_by_tag'], params=params)['job_ids']]

    def download(self, job_id, kind, *, cache=False):
        """The bytes of a result file of a job.

        A kind only our server offers (``nova=False`` in
        `~astrometry_query.jobs.RESULT_KINDS`) that a server lacks (nova
        answers its home page, another a 404) raises `ResultNotAvailableError`.
        """
        if kind not in RESULT_KINDS:
            raise InvalidInputError(f'kind must be one of {sorted(RESULT_KINDS)}, got {kind!r}.')
        result = RESULT_KINDS[kind]
        url = file_url(self.server, kind, job_id)
        # The gated routes need a Referer, else they redirect to a human check.
        headers = {'Referer': api_url(self.server, '')} if result.gated else None
        for pause in DOWNLOAD_RETRIES + (None,):
            # nova answers 500 both for "no such file" and when it fails: a GET
            # is safe to repeat, so a passing failure is tried again.
            try:
                response = self._http('GET', url, headers=headers, cache=cache,
                                      allow_redirects=False, ids={'job_id': int(job_id)})
            except ServerError:
                if pause is None or not self._time_for(pause):
                    raise
                self._sleep(pause)
                continue
            if response.status_code < 500 or pause is None or not self._time_for(pause):
                break
            self._sleep(pause)
        status, content = response.status_code, response.content
        not_fits = (result.media_type == 'application/fits' and status < 300
                    and not content.startswith(b'SIMPLE'))
        if not result.nova and (status == 404 or not_fits):
            raise ResultNotAvailableError(
                f'Job {job_id}: the server at {self.server} does not offer {kind} files '
                f'(HTTP {status} at {url}), or does not know the job.', job_id=int(job_id))
        if status in (301, 302, 303, 307, 308):
            raise ServerError(f'{url} redirected to {response.headers.get("Location")!r} '
                              'instead of sending the file.', status_code=status, url=url,
                              job_id=int(job_id))
        if status >= 500:
            raise ResultNotAvailableError(
                f'Job {job_id}: no {kind} file (HTTP {status} at {url}, {len(DOWNLOAD_RETRIES) + 1} '
                'tries): the job is not solved, or the server keeps failing.', job_id=int(job_id))
        if status >= 400:
            decode_response(status, response.text, url=url, job_id=int(job_id))
        if not_fits:
            snippet = content[:60].decode('ascii', errors='replace')
            raise ServerError(f'{url} did not send a FITS file (it began {snippet!r}).',
                              status_code=status, url=url, job_id=int(job_id))
        return content

    def close(self):
        self._session_key = None

