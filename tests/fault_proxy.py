"""A test-only HTTP reverse proxy on 127.0.0.1 that injects faults.

It forwards every request to a real server (``upstream``) and, for the
requests chosen by method, path regex and count, answers wrongly instead::

    with FaultProxy(server.url) as proxy:
        proxy.fail('GET', r'^/api/jobs/\\d+$', 'status', 500, times=2)
        client = AstrometryNetClass(api_key=key, server=proxy.url, backend='nova')
        ...
        assert len(proxy.requests('POST', r'^/api/upload$', forwarded=True)) == 1

Faults (the ``kind`` of `FaultProxy.fail`):

``'status'``
    Answer ``status`` (500, 502, 503, 404, 429 ...) with an HTML page or
    ``body``, without forwarding; ``retry_after`` adds a Retry-After header.
``'reset'``
    Close the connection without answering (an RST).  With ``forward=True``
    (the default) the request is forwarded first, so the server got it.
``'slow'``
    Forward, then hold the answer for ``delay`` seconds before sending it.
``'html'``
    Answer 200 with an HTML page (a captive portal, a proxy's error page).
``'garbled'``
    Answer 200 with a body that is not valid JSON.
``'truncated'``
    Forward, then send the status, headers and Content-Length of the real
    answer but only half its body, and close.
``'json'``
    Forward, then answer with ``transform(payload)`` of the real JSON answer.
``'session_expired'``
    Answer nova's 'no session with key "<the request's key>"' error, without
    forwarding.

Every request is recorded (`Record`: method, path, query, arrival time, the
fault applied, whether it was forwarded).  Session keys and API keys seen in
request bodies and login answers are collected in `secrets`.  The proxy binds
only 127.0.0.1; every wait is bounded; `stop` closes every connection.
"""
import http.client
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_plus, urlsplit

__all__ = ['FaultProxy', 'Fault', 'Record', 'KINDS']

KINDS = ('status', 'reset', 'slow', 'html', 'garbled', 'truncated', 'json', 'session_expired')

#: No sleep of the proxy lasts longer than this (seconds).
MAX_DELAY = 30.0
#: Longest wait for the upstream server's answer (its long polls last <= 30 s).
UPSTREAM_TIMEOUT = 40.0

_HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te',
               'trailer', 'trailers', 'transfer-encoding', 'upgrade', 'content-length', 'host',
               'date', 'server'}
_SECRET = re.compile(r'"(?:session|apikey)"\s*:\s*"([^"]+)"')
_SESSION = re.compile(r'"session"\s*:\s*"([^"]+)"')


def _page(status, title):
    return (f'<!DOCTYPE html>\n<html><head><title>{status} {title}</title></head>'
            f'<body><center><h1>{status} {title}</h1></center><hr><center>nginx</center>'
            '</body></html>\n').encode()


@dataclass
class Fault:
    """One programmed fault; see `FaultProxy.fail`."""
    method: str
    pattern: re.Pattern
    kind: str
    status: int | None = None
    times: int | None = 1          # None: forever
    body: bytes | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    forward: bool | None = None
    transform: object = None
    on_fire: object = None
    fired: int = 0

    def matches(self, method, path):
        return (self.method in ('*', method) and self.pattern.search(path) is not None
                and (self.times is None or self.fired < self.times))


@dataclass
class Record:
    """One request the proxy received."""
    method: str
    path: str
    query: str
    time: float                  # time.monotonic() when its head arrived
    fault: str | None = None     # the fault applied, if any
    forwarded: bool = False      # the upstream server received it
    upstream_status: int | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False       # `FaultProxy.stop` joins the handlers itself, bounded
    allow_reuse_address = True

    def __init__(self, address, handler, proxy):
        self.proxy = proxy
        super().__init__(address, handler)

    def process_request_thread(self, request, client_address):
        self.proxy._track(request, add=True)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.proxy._track(request, add=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'     # keep-alive, as a real server
    server_version = 'fault-proxy'
    timeout = 60                      # an idle client connection is dropped after this

    def log_message(self, format, *args):   # noqa: A002  (no stderr noise)
        pass

    def _any(self):
        try:
            self.server.proxy._handle(self)
        except Exception as exc:      # a bug of the proxy or of a test's callback
            self.server.proxy.errors.append(exc)
            self.server.proxy._reset(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _any


class FaultProxy:
    """A reverse proxy to ``upstream`` with programmable faults.

    Parameters
    ----------
    upstream : str
        Root URL of the real server, e.g. ``http://127.0.0.1:41234``.
    port : int
        Port to bind on 127.0.0.1 (0: a free one).
    """

    def __init__(self, upstream, port=0):
        parts = urlsplit(upstream)
        if parts.hostname not in ('127.0.0.1', 'localhost', '::1'):
            raise ValueError(f'the fault proxy only forwards to this machine, got {upstream!r}')
        self.upstream = (parts.hostname, parts.port or 80)
        self.port = port
        self.records = []
        #: API keys and session keys seen in requests and login answers.
        self.secrets = set()
        #: Exceptions raised while handling requests (should stay empty).
        self.errors = []
        self._faults = []
        self._aliases = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections = set()
        self._server = self._thread = None

    # -- life cycle ----------------------------------------------------------
    @property
    def url(self):
        return f'http://127.0.0.1:{self.port}'

    def start(self):
        """Listen on 127.0.0.1 (again on the same port after `pause`)."""
        self._stopping.clear()
        self._server = _Server(('127.0.0.1', self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            'poll_interval': 0.05}, daemon=True, name=f'fault-proxy-{self.port}')
        self._thread.start()
        return self

    def stop(self, timeout=5.0):
        """Stop listening, drop every connection, end every sleep; bounded by ``timeout``."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout)
            self._server = None
        deadline = time.monotonic() + timeout
        with self._lock:
            connections = list(self._connections)
        for sock, thread in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for sock, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))

    def pause(self):
        """Refuse connections (nothing listens on the port) until `resume`."""
        self.stop()

    def resume(self):
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _track(self, sock, add):
        with self._lock:
            if add:
                self._connections.add((sock, threading.current_thread()))
            else:
                self._connections = {c for c in self._connections if c[0] is not sock}

    # -- programming faults --------------------------------------------------
    def fail(self, method, path, kind, status=None, *, times=1, body=None, retry_after=None,
             delay=None, forward=None, transform=None, on_fire=None, headers=None):
        """Answer the next ``times`` requests matching ``method`` ('*': any) and
        the regex ``path`` (searched in the path, without the query) with a fault.

        Parameters
        ----------
        kind : str
            One of `KINDS` (see the module docstring).
        status : int
            HTTP status for 'status' (default 500).
        times : int or None
            How many requests to spoil; None: every one, until `clear`.
        body : bytes or str, optional
            Body of a 'status', 'html' or 'garbled' answer.
        retry_after : float, optional
            A Retry-After header (seconds) on the answer.
        delay : float
            'slow': seconds to hold the answer (at most `MAX_DELAY`).
        forward : bool, optional
            'reset': forward the request before closing (default True);
            'status': forward it and drop the real answer (default False).
        transform : callable
            'json': payload -> payload.
        on_fire : callable, optional
            Called as ``on_fire(path)`` each time the fault is applied.
        """
        if kind not in KINDS:
            raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
        if kind == 'json' and transform is None:
            raise ValueError("a 'json' fault needs transform=")
        extra = dict(headers or {})
        if retry_after is not None:
            extra['Retry-After'] = f'{retry_after:g}'
        if isinstance(body, str):
            body = body.encode()
        fault = Fault(method.upper() if method != '*' else '*', re.compile(path), kind,
                      status=status, times=times, body=body, headers=extra,
                      delay=min(float(delay or 0.0), MAX_DELAY), forward=forward,
                      transform=transform, on_fire=on_fire)
        with self._lock:
            self._faults.append(fault)
        return fault

    def alias(self, path, replacement):
        """Forward paths matching the regex ``path`` as ``re.sub(path, replacement, p)``
        (e.g. serve a job under another id)."""
        with self._lock:
            self._aliases.append((re.compile(path), replacement))

    def clear(self):
        """Remove every fault and alias."""
        with self._lock:
            self._faults.clear()
            self._aliases.clear()

    def _upstream_path(self, path):
        split = urlsplit(path)
        with self._lock:
            aliases = list(self._aliases)
        target = split.path
        for pattern, replacement in aliases:
            target = pattern.sub(replacement, target)
        return target + (f'?{split.query}' if split.query else '')

    # -- what the proxy saw --------------------------------------------------
    def requests(self, method=None, path=None, *, forwarded=None):
        """Records of the requests received, filtered by method, path regex and
        whether they reached the server."""
        with self._lock:
            records = list(self.records)
        return [r for r in records if (method is None or r.method == method)
                and (path is None or re.search(path, r.path))
                and (forwarded is None or r.forwarded == forwarded)]

    def uploads(self, *, forwarded=None):
        """Records of POSTs to /api/upload (and url_upload)."""
        return self.requests('POST', r'^/api/(url_)?upload/?$', forwarded=forwarded)

    @staticmethod
    def gaps(records):
        """Seconds between the arrivals of consecutive records."""
        return [b.time - a.time for a, b in zip(records, records[1:])]

    # -- the work ------------------------------------------------------------
    def _pick(self, method, path):
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.fired += 1
                    return fault
        return None

    def _collect(self, text):
        found = set(_SECRET.findall(unquote_plus(text)))
        if found:
            with self._lock:
                self.secrets |= found

    def _forward(self, handler, record, body):
        """Send the request upstream; (status, headers, body) or None when the
        server cannot be reached."""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body:
            headers['Content-Length'] = str(len(body))
        conn = http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            try:
                conn.connect()
            except OSError:
                return None          # nothing reached the server
            record.forwarded = True
            try:
                conn.request(handler.command, self._upstream_path(handler.path), body=body or None,
                             headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException):
                return None
            record.upstream_status = response.status
            out = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return response.status, out, payload
        finally:
            conn.close()

    def _send(self, handler, status, headers, body, *, length=None):
        try:
            handler.send_response(status)
            for key, value in headers:
                handler.send_header(key, value)
            handler.send_header('Content-Length', str(len(body) if length is None else length))
            handler.end_headers()
            if handler.command != 'HEAD':
                handler.wfile.write(body)
            handler.wfile.flush()
        except OSError:          # the client gave up (e.g. after its timeout)
            handler.close_connection = True

    @staticmethod
    def _reset(handler):
        """Close the client's connection with an RST, answering nothing."""
        handler.close_connection = True
        try:
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack('ii', 1, 0))
            handler.connection.close()
        except OSError:
            pass

    def _handle(self, handler):
        arrived = time.monotonic()
        split = urlsplit(handler.path)
        record = Record(handler.command, split.path, split.query, arrived)
        with self._lock:
            self.records.append(record)
        if handler.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            self._send(handler, 501, [('Content-Type', 'text/plain')], b'chunked bodies unsupported')
            handler.close_connection = True
            return
        try:
            size = int(handler.headers.get('Content-Length') or 0)
            body = handler.rfile.read(size) if size else b''
        except (OSError, ValueError):
            handler.close_connection = True
            return
        self._collect(body.decode('utf-8', 'replace'))
        fault = self._pick(handler.command, split.path)
        record.fault = fault.kind if fault else None
        if fault is not None and fault.on_fire is not None:
            fault.on_fire(split.path)
        kind = fault.kind if fault else None
        extra = list(fault.headers.items()) if fault else []

        if kind == 'status':
            if fault.forward:
                self._forward(handler, record, body)
            status = fault.status or 500
            page = fault.body if fault.body is not None else _page(
                status, http.client.responses.get(status, 'Error'))
            ctype = 'text/html' if page.lstrip().startswith(b'<') else 'text/plain'
            return self._send(handler, status, [('Content-Type', ctype)] + extra, page)
        if kind == 'html':
            page = fault.body or (b'<!DOCTYPE html>\n<html><head><title>Wi-Fi login</title>'
                                  b'</head><body>Please log in to the network.</body></html>\n')
            return self._send(handler, fault.status or 200, [('Content-Type', 'text/html')]
                              + extra, page)
        if kind == 'garbled':
            page = fault.body or b'{"status": "success", jobs: [1, 2,, }'
            return self._send(handler, fault.status or 200, [('Content-Type', 'text/plain')]
                              + extra, page)
        if kind == 'session_expired':
            keys = _SESSION.findall(unquote_plus(body.decode('utf-8', 'replace')))
            page = json.dumps({'status': 'error', 'errormessage':
                               f'no session with key "{keys[0] if keys else ""}"'}).encode()
            return self._send(handler, 200, [('Content-Type', 'text/plain')] + extra, page)
        if kind == 'reset':
            if fault.forward is None or fault.forward:
                self._forward(handler, record, body)
            return self._reset(handler)

        answer = self._forward(handler, record, body)
        if answer is None:       # what nginx says when the server is down
            return self._send(handler, 502, [('Content-Type', 'text/html')],
                              _page(502, 'Bad Gateway'))
        status, headers, payload = answer
        if split.path.rstrip('/').endswith('/api/login'):
            self._collect(payload.decode('utf-8', 'replace'))
        if kind == 'slow':
            if self._stopping.wait(fault.delay):
                return self._reset(handler)
        elif kind == 'truncated':
            self._send(handler, status, headers + extra, payload[:len(payload) // 2],
                       length=len(payload))
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return None
        elif kind == 'json':
            payload = json.dumps(fault.transform(json.loads(payload))).encode()
        return self._send(handler, status, headers + extra, payload)
