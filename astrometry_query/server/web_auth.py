"""Who is asking the server's web pages, and whether a form post may be trusted.

Who may submit
    With API keys configured (``--api-key``) the form is for signed-in users:
    ``/signin`` takes an API key, checks it as ``/api/login`` does, and answers
    with the same session cookie as an API login.  The key is never stored,
    echoed into a page or logged.  Without keys (a loopback-only server)
    anyone may submit, as one shared anonymous user.
Cross-site requests
    Every form carries ``HMAC(server secret, nonce)`` where the nonce lives in
    an HttpOnly cookie (a signed double-submit cookie): a page of another site
    can neither read the nonce nor forge the token for a nonce it planted.
    Requests whose ``Origin`` or ``Sec-Fetch-Site`` name another site are
    refused before their body is read.
"""
import hmac
import re
import secrets
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

from starlette.concurrency import run_in_threadpool

from ..files import write_atomic
from ..nova.protocol import OPEN_SERVER_KEY
from .http import FORM_MEMORY, SESSION_COOKIE, read_form

__all__ = ['WebAuth', 'Refused', 'CSRF_COOKIE', 'CSRF_FIELD', 'ANONYMOUS']

CSRF_COOKIE, CSRF_FIELD = 'aq_csrf', 'csrf_token'
#: The "API key" of the shared user of a server without keys (not a nova key's shape): the
#: one our client logs in with there when it has no key, so the two are the same user.
ANONYMOUS = OPEN_SERVER_KEY


class Refused(Exception):
    """A POST refused as cross-site (nova's CSRF 403), with the reason."""

    def __init__(self, ctx, reason):
        super().__init__(reason)
        self.ctx = ctx


class WebAuth:
    """Users, sessions and CSRF tokens of the web pages over a
    `~astrometry_query.server.app.NovaApp`."""

    def __init__(self, nova):
        self.nova = nova
        self._secret = self._anonymous = None

    @property
    def store(self):
        return self.nova.store

    def _key(self):
        """The HMAC secret, kept (owner-only) in the data directory so that open forms
        stay valid across restarts."""
        if self._secret is None:
            path = Path(self.nova.data_dir) / 'web-secret'
            try:
                secret = path.read_bytes()
            except FileNotFoundError:
                secret = b''
            if len(secret) < 32:        # new, or cut short: never a weak key
                secret = secrets.token_bytes(32)
                write_atomic(path, secret, mode=0o600)
            self._secret = secret
        return self._secret

    def _token(self, nonce):
        return hmac.new(self._key(), nonce.encode(), 'sha256').hexdigest()

    def _session_user(self, key):
        """The user of a live signed-in session, without sliding its expiry (polls read often)."""
        return self.store.session_user(key)

    def _anonymous_user(self):
        if self._anonymous is None:
            self._anonymous = self.store.user_for_key(ANONYMOUS)[0]
        return self._anonymous

    def accepts(self, key):
        """Whether ``key`` may sign in: one of the server's keys (compared in constant
        time), or any non-empty key on a server without keys."""
        known = self.nova.api_keys
        return any(hmac.compare_digest(key.encode(), k) for k in known) if known else bool(key)

    async def context(self, request):
        """Who is asking (``user`` None: may not submit) and the CSRF nonce and token."""
        key = request.cookies.get(SESSION_COOKIE, '')[:100]
        user = await run_in_threadpool(self._session_user, key) if key else None
        signed_in = user is not None
        if user is None and not self.nova.api_keys:
            user = await run_in_threadpool(self._anonymous_user)
        nonce = request.cookies.get(CSRF_COOKIE, '')
        fresh = not re.fullmatch('[0-9a-f]{32}', nonce)
        nonce = secrets.token_hex(16) if fresh else nonce
        return SimpleNamespace(request=request, user=user, signed_in=signed_in, nonce=nonce,
                               fresh=fresh, token=self._token(nonce))

    @staticmethod
    def cross_site(request):
        """Why a POST looks sent by another site ('' when it does not)."""
        site = request.headers.get('sec-fetch-site')
        origin = request.headers.get('origin')
        if site and site not in ('same-origin', 'none'):
            return f'the form was sent from another site (Sec-Fetch-Site: {site}).'
        # Behind a proxy that rewrites Host, the public name is in X-Forwarded-Host
        # (which no web page can set on a cross-site form post).
        hosts = {request.headers.get('host'), request.headers.get('x-forwarded-host')}
        if origin and urlparse(origin).netloc not in hosts - {None}:
            return 'the form was sent from another site (Origin does not match).'
        return ''

    async def checked_post(self, request, max_body=FORM_MEMORY):
        """(context, form, files) of a same-site POST with a valid token, else `Refused`.
        The body is read only after the checks of the headers."""
        ctx = await self.context(request)
        reason = self.cross_site(request) or ('CSRF cookie not set.' if ctx.fresh else '')
        if reason:
            raise Refused(ctx, reason)
        form, files = await read_form(request, max_body)
        if not hmac.compare_digest(str(form.get(CSRF_FIELD, '')), ctx.token):
            raise Refused(ctx, 'CSRF token missing or incorrect.')
        return ctx, form, files
