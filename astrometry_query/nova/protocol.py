"""The nova wire format: request encoding, endpoint paths, error strings and
response decoding.  Pure functions, no I/O; the client and the server share it.
"""
import json
import re
from urllib.parse import parse_qs, unquote_plus, urlsplit

from ..exceptions import JobNotFoundError, ServerError
from ..jobs.files import RESULT_KINDS

__all__ = ['api_url', 'file_url', 'encode_request', 'decode_response', 'is_session_error',
           'redact', 'is_public_nova', 'JOB_STATUSES', 'ERRORS',
           'SERVER_INFO', 'OPEN_SERVER_KEY', 'NOVA_HOST', 'LONG_POLL_HEADER']

#: Job status strings, exactly as nova sends them.
JOB_STATUSES = ('processing', 'solving', 'success', 'failure', '?')

#: Our server's offer of long polls, on every JSON answer: status requests may add
#: ?wait=SECONDS (at most the header's value) to be answered when the state changes.
#: Other clients ignore the header; nova sends none and ignores the parameter.
LONG_POLL_HEADER = 'X-Long-Poll'

#: nova's error messages (HTTP 200, {"status": "error", "errormessage": ...}).
ERRORS = {
    'no_json': 'no json',
    'bad_json': 'failed to parse JSON: "{raw}"',
    'no_session': 'no "session" in JSON.',
    'unknown_session': 'no session with key "{key}"',
    'not_authenticated': 'user is not authenticated.',
    'need_apikey': 'need "apikey"',
    'bad_apikey': 'bad apikey',
    'bad_xy': 'Failed to parse JSON "x" and "y" values -- should be lists of floats',
    'xy_length': '"x" and "y" lists must be the same length',
    'no_album': 'Failed to find an Album with title "{album}"',
    'no_submission': 'submission does not exist',
    'no_calibration': 'no calibration data available for job {job_id}',
}

#: The public service, which always needs a key: a key-less client fails there before any request.
NOVA_HOST = 'nova.astrometry.net'
#: Our server's info endpoint (``/api/server_info``; nova has none): ``{"status": "success",
#: "open": <accepts any key>, "long_poll": <seconds>, "software": "astrometry_query <version>"}``.
SERVER_INFO = 'server_info'
#: The key a key-less client logs in with on an open server (one that accepts any key); the
#: server's web pages use it too, so key-less API and browser submissions are one user's.
OPEN_SERVER_KEY = 'anonymous web user'

_SESSION_IN_MESSAGE = re.compile(r'(session with key ")[^"]*')
_SESSION_ERRORS = ('no session with key', 'user is not authenticated', 'no "session" in json')


def _collapse_slashes(url):
    """'http://host//api/' -> 'http://host/api/' (nova has no route for '//')."""
    scheme, sep, rest = url.partition('://')
    if not sep:
        return re.sub('/{2,}', '/', url)
    return scheme + sep + re.sub('/{2,}', '/', rest)


def api_url(server, *parts):
    """``<server>/api/<parts>``, joined without doubled slashes (nova answers
    a doubled slash with its home page or a CSRF 403)."""
    base = _collapse_slashes(server).rstrip('/')
    if not base.endswith('/api'):
        base += '/api'
    return '/'.join([base] + [str(p).strip('/') for p in parts])


def site_url(server):
    """The server root, for result files, given a root or an .../api/ URL."""
    base = _collapse_slashes(server).rstrip('/')
    return base[:-4] if base.endswith('/api') else base


def is_public_nova(server):
    """True for nova.astrometry.net (root or /api/ URL, any scheme)."""
    return (urlsplit(site_url(server)).hostname or '').lower() == NOVA_HOST


def file_url(server, kind, job_id):
    """URL of a result file of a job, e.g. ``<server>/wcs_file/<id>`` (the routes
    are those of `~astrometry_query.jobs.RESULT_KINDS`)."""
    return f'{site_url(server)}/{RESULT_KINDS[kind].routes[0]}/{int(job_id)}'


def encode_request(args):
    """The POST form nova reads: one field ``request-json`` holding JSON."""
    return {'request-json': json.dumps(args)}


def is_session_error(message):
    """True when an error message means 'log in again'."""
    text = (message or '').lower()
    return any(s in text for s in _SESSION_ERRORS)


def _looks_like_html(text):
    head = text.lstrip()[:200].lower()
    return head.startswith('<!doctype') or head.startswith('<html') or '<head' in head


def _html_title(text):
    found = re.search(r'<title>(.*?)</title>', text, re.I | re.S)
    return ' '.join(found.group(1).split()) if found else ''


def decode_response(status_code, text, *, url=None, submission_id=None, job_id=None):
    """Decode a nova API answer into a dict, or raise a typed error.

    nova reports errors as HTTP 200 with ``{"status": "error", ...}``, unknown
    ids as an HTML 404, crashes as an HTML 500, and a mistyped path as its
    home page (200) or a CSRF page (403).

    Raises
    ------
    JobNotFoundError
        HTTP 404: nova does not know the id.
    ServerError
        Any other error status, an HTML page or an error payload.
    """
    ids = {'submission_id': submission_id, 'job_id': job_id}
    if status_code == 404:
        what = f'job {job_id}' if job_id is not None else (
            f'submission {submission_id}' if submission_id is not None else 'resource')
        raise JobNotFoundError(f'The server does not know this {what} (HTTP 404 at {url}).',
                               status_code=404, url=url, **ids)
    if status_code >= 400:
        title = _html_title(text) if _looks_like_html(text) else text[:200].strip()
        raise ServerError(f'The server answered HTTP {status_code} at {url}: {title or "no detail"}',
                          status_code=status_code, url=url, **ids)
    try:
        payload = json.loads(text)
    except ValueError:
        kind = 'an HTML page' if _looks_like_html(text) else 'something that is not JSON'
        error = ServerError(f'The server answered {url} with {kind} '
                            f'({_html_title(text) or text[:80].strip()!r}); is the server URL '
                            'right? It must be the site root or its /api/ URL.',
                            status_code=status_code, url=url, **ids)
        error.garbled = True        # may pass (a proxy's page, a cut answer): worth a retry
        raise error from None
    if not isinstance(payload, dict):
        error = ServerError(f'Unexpected answer from {url}: {text[:200]!r}',
                            status_code=status_code, url=url, **ids)
        error.garbled = True
        raise error
    if payload.get('status') == 'error':
        message = _SESSION_IN_MESSAGE.sub(r'\1<redacted>', str(payload.get('errormessage', 'unknown error')))
        raise ServerError(f'The server said: {message}', status_code=status_code, url=url, **ids)
    return payload


_SECRET_JSON = re.compile(r'("(?:apikey|session)"\s*:\s*")[^"]*(")')


def redact(text):
    """Hide API keys and session keys in a request body or JSON text."""
    if text is None:
        return text
    if isinstance(text, bytes):
        text = text.decode('utf-8', errors='replace')
    if text.startswith('request-json='):
        fields = parse_qs(text, keep_blank_values=True)
        text = 'request-json=' + ''.join(fields.get('request-json', ['']))
    elif '%22' in text:
        text = unquote_plus(text)
    return _SECRET_JSON.sub(r'\1<redacted>\2', text)
