"""The facade: `AstrometryNetClass`, a drop-in for astroquery's AstrometryNet.

It validates arguments, picks a backend (nova over HTTP, or the local
solver), and turns records into Headers and Tables.  Protocol details live in
``nova/``, solver details in ``local/``.
"""
import getpass
import re
from urllib.parse import urlsplit
from http.cookiejar import DefaultCookiePolicy

from astroquery import log
from astroquery.query import AstroQuery, BaseQuery
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import auth, conf
from .batch import BatchMixin
from .compat import AstroqueryCompatMixin
from .exceptions import (InvalidInputError, InvalidSettingError, LocalSolverNotFoundError,
                         MissingAPIKeyError)
from .job_results import JobResultsMixin
from .nova.client import MISSING_API_KEY, NovaClient
from .nova.protocol import api_url, redact, site_url
from .solving import SolvingMixin

__all__ = ['AstrometryNet', 'AstrometryNetClass']

BACKENDS = ('auto', 'nova', 'local')
#: nova's answer for a job that has no results yet, e.g. {"objects_in_field": []}.
_EMPTY_ANSWER = re.compile(rb'^\{"\w+": \[\]\}$')


def _checked_key(value):
    """An API key given by the caller: a non-blank string (or nothing)."""
    if value is None or value == '':
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256 \
            or any(c.isspace() or not c.isprintable() for c in value):
        shown = type(value).__name__ if not isinstance(value, str) else 'a string with blanks'
        raise InvalidInputError(f'api_key must be a string without blanks (nova keys are 16 '
                                f'letters), got {shown}.')
    return value


def _checked_server(value):
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ('http', 'https') or not parts.netloc \
            or any(c.isspace() for c in value):
        raise InvalidInputError(f'server must be an http(s) URL such as '
                                f'https://nova.astrometry.net, got {value!r}.')
    return value


def _checked_timeout(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 86400:
        raise InvalidInputError(f'timeout must be a positive number of seconds (per HTTP '
                                f'request), got {value!r}.')
    return float(value)


class AstrometryNetClass(AstroqueryCompatMixin, SolvingMixin, BatchMixin, JobResultsMixin,
                         BaseQuery):
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
        self._api_key = _checked_key(api_key)
        self._server = _checked_server(server)
        self._timeout = _checked_timeout(timeout)
        self._backend_choice = backend
        self._backends = {}
        self._retired = []      # local backends of an earlier conf.local_data_dir
        # No cookies: the session key travels in request-json, and nothing a
        # cached response pickles may carry a secret.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # The adapter only retries connections that failed to open; answers that
        # failed (5xx, 429, timeouts) are retried by the nova client itself, which
        # keeps every retry within the caller's solve_timeout.
        retry = Retry(total=3, connect=3, read=0, status=0, other=0, backoff_factor=0.25,
                      allowed_methods=frozenset({'GET'}), raise_on_status=False)
        for scheme in ('http://', 'https://'):
            self._session.mount(scheme, HTTPAdapter(max_retries=retry))

    def __repr__(self):
        # Never the key itself, nor where the keyring keeps it: only whether one is
        # set and where from.  The keyring is not asked (a repr must be quick and quiet).
        import os
        from .reprs import public_url
        if self._api_key:
            key = 'api_key set'
        elif conf.api_key:
            key = 'api_key set (conf.api_key)'
        elif os.environ.get(auth.ENV_VAR):
            key = f'api_key set ({auth.ENV_VAR})'
        else:
            key = 'api_key not set'
        choice = self._backend_choice or conf.backend
        backend = f'backend={choice!r}'
        in_use = [name for name in ('nova', 'local') if name in self._backends]
        if choice == 'auto' and in_use:
            backend += f' (using {" and ".join(in_use)})'
        if choice == 'local':       # the server and the key play no part
            return f'<{type(self).__name__} {backend}>'
        return f'<{type(self).__name__} {backend} server={public_url(self.server)!r} {key}>'

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the HTTP session and stop the local solver's threads."""
        for backend in [*self._backends.values(), *self._retired]:
            backend.close()
        self._backends.clear()
        self._retired.clear()
        self._session.close()

    # -- configuration, read at call time ------------------------------------
    @property
    def server(self):
        """The nova server URL in use."""
        return self._server or conf.server

    @server.setter
    def server(self, value):
        self._server = _checked_server(value)

    URL = server

    @property
    def API_URL(self):
        """The nova API root (``<server>/api/``), as astroquery names it; setting it sets `server`."""
        return api_url(self.server, '')

    @API_URL.setter
    def API_URL(self, value):
        self._server = site_url(value)

    @property
    def timeout(self):
        """Seconds allowed for each HTTP request (default ``conf.timeout``); astroquery's ``TIMEOUT``."""
        return float(self._timeout if self._timeout is not None else conf.timeout)

    @timeout.setter
    def timeout(self, value):
        self._timeout = _checked_timeout(value)

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
        self._api_key = _checked_key(value)
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
        MissingAPIKeyError
            No key, and the server is not open (an ``astrometry-query serve``
            without ``--api-key`` is: it needs none).
        """
        # An open server (see NovaClient.is_open) needs no key: nothing to ask for.
        if reenter_api_key or (api_key is None and not self._find_key()
                               and not self._nova().is_open()):
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
        import shutil
        from .local.solver import INSTALL_INDEXES, INSTALL_SOLVER, find_installation
        try:
            find_installation(conf.index_dir or None)
            return 'local'
        except LocalSolverNotFoundError as exc:
            if shutil.which('astrometry-engine') is None:
                raise MissingAPIKeyError(
                    'Nothing can solve here: no astrometry.net API key is set and no local '
                    'astrometry.net is installed. Either install it to solve offline '
                    f'({INSTALL_SOLVER}, and the index files: {INSTALL_INDEXES}), or give an '
                    'API key: pass api_key=..., set conf.api_key or the ASTROMETRY_NET_API_KEY '
                    'environment variable, or store it in the keyring once with '
                    'AstrometryNet.login(api_key, store_api_key=True).') from None
            # The solver is here but cannot solve: that, not a missing key, is the news.
            reason = str(exc)
            raise LocalSolverNotFoundError(f'No API key is set, so the local astrometry.net '
                                           f'would solve, but it cannot: {reason[:1].lower()}'
                                           f'{reason[1:]}') from None

    def _nova(self):
        client = self._backends.get('nova')
        if client is None or client.server != self.server:
            client = NovaClient(self._request, server=self.server, api_key=self._find_key,
                                timeout=self.timeout)
            self._backends['nova'] = client
        client.timeout = self.timeout
        return client

    def _local(self):
        backend = self._backends.get('local')
        data_dir = conf.local_data_dir or None
        # conf is read at call time: another job store is another backend.  The
        # old one is not closed: a solve may still run on it (its executor ends
        # with the client).
        if backend is None or backend.data_dir_setting != data_dir:
            from .local.backend import LocalBackend
            if backend is not None:
                self._retired.append(backend)
            backend = LocalBackend(data_dir, index_dir=conf.index_dir or None)
            self._backends['local'] = backend
        backend.index_setting = conf.index_dir or None      # conf is read at call time
        return backend

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
        if cache is False and not kwargs.get('save'):
            # astroquery wraps uncached requests in cache_conf.set_temp('cache_active',
            # False), which is not thread-safe: concurrent requests (batches, waits
            # in threads) can leave caching off for the whole process.  The same
            # request, without touching the global setting:
            query = AstroQuery(method, url, params=kwargs.get('params'), data=kwargs.get('data'),
                               headers=kwargs.get('headers'), files=kwargs.get('files'),
                               timeout=kwargs.get('timeout'), json=kwargs.get('json'))
            response = query.request(self._session, stream=kwargs.get('stream', False),
                                     auth=kwargs.get('auth'), verify=kwargs.get('verify', True),
                                     allow_redirects=kwargs.get('allow_redirects', True),
                                     json=kwargs.get('json'))
            self._last_query = query
            return response
        response = super()._request(method, url, **kwargs)
        if cache and (response.status_code != 200 or b'"error' in response.content[:40]
                      or _EMPTY_ANSWER.match(response.content)):
            # astroquery caches any answer; an error or a not-yet answer must not stick.
            self._last_query.request_file(self.cache_location).unlink(missing_ok=True)
        return response


AstrometryNet = AstrometryNetClass()
