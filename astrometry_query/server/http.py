"""The server's HTTP plumbing, shared by the nova API (`~astrometry_query.server.app`)
and the web pages (`~astrometry_query.server.web`): nova's JSON answers, the
exceptions that handlers raise and the answers they map to (`Endpoint`), form
reading (multipart as nova's clients send it), path ids and nova's route
patterns, long-poll waits (`ChangeFeed`), rate limits and the session cookie.
"""
import asyncio
import json
import logging
import math
import tempfile
import threading
import time
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import HTMLResponse, Response
from starlette.routing import request_response
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from ..nova.protocol import LONG_POLL_HEADER

__all__ = ['ApiError', 'NotFound', 'BadRequest', 'RateLimited', 'Endpoint', 'nova_json',
           'plain_page', 'read_form', 'RateLimiter', 'ChangeFeed', 'path_id', 'int_id',
           'wait_seconds', 'SESSION_COOKIE', 'FORM_MEMORY', 'MAX_BODY', 'MAX_LONG_POLL']

log = logging.getLogger('astrometry_query.server')

SESSION_COOKIE = 'NovaAstrometrySession'
FORM_MEMORY = 2_621_440      # Django's DATA_UPLOAD_MAX_MEMORY_SIZE (non-file data)
MAX_BODY = 500_000_000       # nova's uWSGI --limit-post


class _Pattern(Convertor):
    def __init__(self, regex):
        self.regex = regex

    def convert(self, value):
        return value


register_url_convertor('nova_id', _Pattern('[0-9-]+'))    # nova's: '12-3' matches, then 500s
register_url_convertor('opt_slash', _Pattern('/?'))


class ApiError(Exception):
    """An error nova reports as HTTP 200 {"status": "error", ...}."""


class NotFound(Exception):
    """Unknown id or path: HTTP 404 (nova's JSON error under /api/, else an HTML page)."""


class BadRequest(Exception):
    """Unreadable or oversized form: an HTML 400 (or 413) page."""

    def __init__(self, title='Bad Request (400)', status=400):
        super().__init__(title)
        self.title, self.status = title, status


class RateLimited(Exception):
    """Too many requests from one user: 429 with Retry-After."""

    def __init__(self, retry_after):
        super().__init__(retry_after)
        self.retry_after = max(1, int(math.ceil(retry_after)))


#: The longest long poll (``?wait=SECONDS``), offered on every JSON answer
#: in nova.protocol's LONG_POLL_HEADER.
MAX_LONG_POLL = 30.0


def nova_json(obj, status=200, headers=None):
    """JSON the way nova sends it: json.dumps defaults, Content-Type text/plain
    (with our offer of long polls)."""
    return Response(json.dumps(obj), status_code=status,
                    headers={'Content-Type': 'text/plain',
                             LONG_POLL_HEADER: f'{MAX_LONG_POLL:g}', **(headers or {})})


class ChangeFeed:
    """Lets request handlers wait, without a thread, for the next change of
    work state (`notify` may be called from any thread)."""

    def __init__(self):
        self._loop = self._event = None

    def bind(self, loop):
        self._loop, self._event = loop, asyncio.Event()
        self.closed = False

    def close(self):
        """Wake every waiter for good (a shutdown)."""
        self.closed = True
        if self._event is not None:
            self._event.set()

    def notify(self):
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self):
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout):
        """Until the next change or ``timeout`` seconds; True on a change."""
        if self._event is None or timeout <= 0 or getattr(self, 'closed', False):
            return False
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False


#: Ids fit SQLite's 64-bit integers.
MAX_ID = 2 ** 63 - 1


def int_id(value, name):
    """A positive integer id from request-json, or nova's JSON error naming it."""
    try:
        number = int(value) if not isinstance(value, (float, bool)) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not 0 < number <= MAX_ID:
        raise ApiError(f'{name} must be a positive integer, got {value!r}')
    return number


def path_id(request):
    """The id in the path: an unknown one ('12-3', '-', too large) is a 404, as nova's
    unknown ids are (nova itself crashes on '12-3')."""
    raw = request.path_params['id']
    if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise NotFound(f'{raw!r} is not an id: ids are positive whole numbers')
    return int(raw)


def wait_seconds(request):
    """The ``wait`` query parameter: 0 when absent or unreadable, at most MAX_LONG_POLL."""
    try:
        value = float(request.query_params.get('wait', 0))
    except ValueError:
        return 0.0
    return min(max(value, 0.0), MAX_LONG_POLL) if value == value else 0.0


def plain_page(status, title, body=''):
    """A bare HTML page, as Django's error pages are."""
    return HTMLResponse(f'<!DOCTYPE html>\n<html><head><title>{title}</title></head>'
                        f'<body><h1>{title}</h1>{body}</body></html>\n', status_code=status)


def _parse_multipart(spool, mimetype, size, options):
    parser = FormDataParser(max_form_memory_size=FORM_MEMORY, silent=False)
    try:
        _, form, files = parser.parse(spool, mimetype, size, options)
    except (RequestEntityTooLarge, ValueError):
        raise BadRequest() from None
    # Django's QueryDict.get returns the last value of a repeated field.
    return {k: v[-1] for k, v in form.lists()}, files


async def read_form(request, max_body=MAX_BODY):
    """The POST form fields and files; ({}, {}) for anything but a POST form."""
    if request.method != 'POST':
        return {}, {}
    mimetype, options = parse_options_header(request.headers.get('content-type', ''))
    if mimetype not in ('application/x-www-form-urlencoded', 'multipart/form-data'):
        return {}, {}
    limit = FORM_MEMORY if mimetype.startswith('application/') else max_body
    declared = request.headers.get('content-length', '')
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest('Request Entity Too Large (413)', 413)
    spool, size = tempfile.SpooledTemporaryFile(max_size=1 << 20), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:        # Django answers 400 past its limits
            raise BadRequest('Request Entity Too Large (413)', 413)
        spool.write(chunk)
    spool.seek(0)
    if mimetype == 'multipart/form-data':
        # werkzeug, not python-multipart: it accepts the official client's
        # LF-terminated boundary lines (protocol §6.2).
        return await run_in_threadpool(_parse_multipart, spool, mimetype, size, options)
    return dict(parse_qsl(spool.read().decode('utf-8', 'replace'), keep_blank_values=True)), {}


class RateLimiter:
    """Per-user token buckets: ``rate`` requests a second on average, bursts of
    twice that; past it, `RateLimited` (HTTP 429 with Retry-After)."""

    def __init__(self, rate):
        self.rate, self.burst = float(rate), max(1.0, 2.0 * float(rate))
        self._buckets = {}
        self._lock = threading.Lock()

    def check(self, who):
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                raise RateLimited((1.0 - tokens) / self.rate)
            self._buckets[who] = (tokens - 1.0, now)


class Endpoint:
    """An ASGI endpoint for any HTTP method (nova's views accept all) that maps
    our exceptions to nova's outcomes; anything unexpected is an HTML 500."""

    def __init__(self, fn):
        self.fn = fn
        self.app = request_response(self.respond)

    async def respond(self, request):
        try:
            return await self.fn(request)
        except ApiError as exc:
            return nova_json({'status': 'error', 'errormessage': str(exc)})
        except RateLimited as exc:
            return nova_json({'status': 'error', 'errormessage': 'too many requests, slow down'},
                             status=429, headers={'Retry-After': str(exc.retry_after)})
        except NotFound as exc:
            if request.url.path.startswith('/api/'):
                return nova_json({'status': 'error', 'errormessage': str(exc) or
                                  f'not found: {request.url.path}'}, status=404)
            return plain_page(404, 'Not Found', '<p>The requested resource was not found.</p>')
        except BadRequest as exc:
            return plain_page(exc.status, exc.title)
        except Exception as exc:
            # The exception type only: messages may quote request values.
            log.warning('error for %s %s: %s', request.method, request.url.path,
                        type(exc).__name__)
            if request.url.path.startswith('/api/'):
                # Where nova would crash with an HTML 500, answer its JSON error:
                # every nova client understands that.
                return nova_json({'status': 'error',
                                  'errormessage': f'the server could not process this request '
                                                  f'({type(exc).__name__})'})
            return plain_page(500, 'Server Error (500)')

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)

