"""astrometry_query.urls: the one URL check (client and server) and the one fetcher,
against a real HTTP server on 127.0.0.1 started here."""
import ast
import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from astrometry_query import urls
from astrometry_query.exceptions import InvalidInputError
from astrometry_query.urls import check_url, copy_limited, fetch_url, url_problem

PAYLOAD = bytes(range(256)) * 1000          # 256 kB


class Handler(BaseHTTPRequestHandler):
    """/data: PAYLOAD; /redirect/N: N redirects (relative), then /data; /to?url=U:
    a redirect to U; /slow: 64 kB every 0.2 s; anything else 404."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get('User-Agent')))
        if self.path == '/data':
            self._send(PAYLOAD)
        elif self.path.startswith('/redirect/'):
            left = int(self.path.rsplit('/', 1)[1])
            self._redirect(f'/redirect/{left - 1}' if left > 1 else '/data')
        elif self.path.startswith('/to?url='):
            self._redirect(self.path[len('/to?url='):])
        elif self.path == '/slow':
            self.send_response(200)
            self.send_header('Content-Length', str(20 * 65536))
            self.end_headers()
            for _ in range(20):
                self.wfile.write(b'x' * 65536)
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self.send_error(404)

    def _send(self, body):
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location):
        self.send_response(302)
        self.send_header('Location', location)
        self.send_header('Content-Length', '0')
        self.end_headers()


@pytest.fixture(scope='module')
def www():
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05},  # quick to shut down
                     daemon=True).start()
    httpd.url = f'http://127.0.0.1:{httpd.server_address[1]}'
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def seen(www):
    www.seen.clear()
    return www.seen


# -- the check ----------------------------------------------------------------------------------
@pytest.mark.parametrize('url, message', [
    (None, 'url must be a string, got NoneType.'),
    (b'http://example.com/a.fits', 'url must be a string, got bytes.'),
    ('', "url must be an http or https URL, got ''."),
    ('ftp://example.com/a.fits', "url must be an http or https URL, got 'ftp://example.com/a.fits'."),
    ('file:///etc/passwd', "url must be an http or https URL, got 'file:///etc/passwd'."),
    ('http://', "url has no host name: 'http://'."),
    ('http://exa mple.com/a', "url must not hold blanks or control characters, got 'http://exa mple.com/a'."),
    ('http://example.com/a\x7f', r"url must not hold blanks or control characters, got 'http://example.com/a\x7f'."),
    ('http://example.com:abc/a.fits', "url has a bad port: 'http://example.com:abc/a.fits'."),
    ('http://example.com:99999/a.fits', "url has a bad port: 'http://example.com:99999/a.fits'."),
    ('http://example.com/' + 'a' * 182, 'url must be at most 200 characters (nova stores 200), got 201.'),
])
def test_url_problem_says_what_is_wrong(url, message):
    assert url_problem(url) == message
    with pytest.raises(InvalidInputError) as info:
        check_url(url)
    assert str(info.value) == message


@pytest.mark.parametrize('url', ['http://example.com/a.fits', 'HTTPS://example.com:8443/a?b=c',
                                 'http://127.0.0.1:9/x', 'http://[::1]/a.fits',
                                 'http://example.com/' + 'a' * 181])
def test_fetchable_urls_pass(url):
    assert url_problem(url) == ''
    assert check_url(url) == url


def test_the_client_checks_urls_with_this_check():
    from astrometry_query import solving
    assert solving.check_url is check_url


# -- the fetcher --------------------------------------------------------------------------------
def test_fetch_downloads_with_nova_user_agent(www, seen, tmp_path):
    dest = tmp_path / 'a.fits'
    fetch_url(www.url + '/data', dest, allow_private=True)
    assert dest.read_bytes() == PAYLOAD
    assert seen == [('/data', 'Mozilla/5.0')]


@pytest.mark.parametrize('host', ['127.0.0.1', 'localhost'])
def test_loopback_is_refused_unless_allowed(www, seen, tmp_path, host):
    url = www.url.replace('127.0.0.1', host) + '/data'
    with pytest.raises(ValueError, match=f"url: '{host}' is a local or private address"):
        fetch_url(url, tmp_path / 'a.fits')
    assert seen == [] and not (tmp_path / 'a.fits').exists()      # nothing was asked


@pytest.mark.parametrize('address', ['10.1.2.3', '192.168.0.7', '169.254.169.254', 'fd00::1', '0.0.0.0'])
def test_private_addresses_are_refused(address, tmp_path):
    """Refused before any connection: the address is not reachable from here anyway."""
    host = f'[{address}]' if ':' in address else address
    with pytest.raises(ValueError, match='local or private address'):
        fetch_url(f'http://{host}/a.fits', tmp_path / 'a.fits', timeout=0.5)


@pytest.fixture
def public_name(monkeypatch):
    """A host name that resolves to a public address when the guard asks, and to
    127.0.0.1 when requests connects (as a rebinding DNS would answer)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == 'public.example':
            if port is None:
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, '', ('93.184.216.34', 0))]
            return real('127.0.0.1', port, *args, **kwargs)
        return real(host, port, *args, **kwargs)
    monkeypatch.setattr(socket, 'getaddrinfo', getaddrinfo)
    return 'public.example'


def test_each_redirect_is_checked(www, seen, tmp_path, public_name):
    """A public URL that redirects into the private network is refused at the redirect."""
    port = www.server_address[1]
    public = f'http://{public_name}:{port}'
    fetch_url(public + '/redirect/1', tmp_path / 'ok.fits')         # the guard lets it through
    assert (tmp_path / 'ok.fits').read_bytes() == PAYLOAD
    seen.clear()
    with pytest.raises(ValueError, match="'127.0.0.1' is a local or private address"):
        fetch_url(f'{public}/to?url=http://127.0.0.1:{port}/data', tmp_path / 'b.fits')
    assert [path for path, _ in seen] == [f'/to?url=http://127.0.0.1:{port}/data']
    with pytest.raises(ValueError, match='url must be an http or https URL'):
        fetch_url(f'{public}/to?url=file:///etc/passwd', tmp_path / 'c.fits')


def test_redirects_are_limited(www, seen, tmp_path):
    fetch_url(www.url + '/redirect/5', tmp_path / 'a.fits', allow_private=True)
    assert (tmp_path / 'a.fits').read_bytes() == PAYLOAD and len(seen) == 6
    seen.clear()
    with pytest.raises(ValueError, match='url: too many redirects'):
        fetch_url(www.url + '/redirect/6', tmp_path / 'b.fits', allow_private=True)
    assert len(seen) == 6 and not (tmp_path / 'b.fits').exists()
    with pytest.raises(ValueError, match='too many redirects'):
        fetch_url(www.url + '/redirect/2', tmp_path / 'c.fits', allow_private=True, max_redirects=1)
    fetch_url(www.url + '/redirect/2', tmp_path / 'd.fits', allow_private=True, max_redirects=2)


def test_size_is_limited(www, tmp_path):
    with pytest.raises(ValueError, match='data larger than 100000 bytes'):
        fetch_url(www.url + '/data', tmp_path / 'a.fits', allow_private=True, max_bytes=100_000)
    fetch_url(www.url + '/data', tmp_path / 'b.fits', allow_private=True, max_bytes=len(PAYLOAD))
    assert (tmp_path / 'b.fits').stat().st_size == len(PAYLOAD)


def test_duration_is_limited(www, tmp_path):
    """A trickling download stops at its deadline instead of holding a worker."""
    with pytest.raises(ValueError, match='the download took too long'):
        fetch_url(www.url + '/slow', tmp_path / 'a.fits', allow_private=True, deadline=0.5)


def test_http_errors_are_raised(www, tmp_path):
    with pytest.raises(requests.HTTPError, match='404'):
        fetch_url(www.url + '/nothing-here', tmp_path / 'a.fits', allow_private=True)


def test_copy_limited_bounds_any_stream():
    out = io.BytesIO()
    copy_limited([b'ab'] * 3, out, max_bytes=6)
    assert out.getvalue() == b'ababab'
    with pytest.raises(ValueError, match='data larger than 5 bytes'):
        copy_limited([b'ab'] * 3, io.BytesIO(), max_bytes=5)
    with pytest.raises(ValueError, match='took too long'):
        copy_limited([b'ab'], io.BytesIO(), deadline=time.monotonic() - 1)


def test_urls_is_a_low_level_module():
    """urls.py imports nothing from the server, the backends or the facade."""
    tree = ast.parse(Path(urls.__file__).read_text())
    allowed = {'exceptions'}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.module in allowed, node.module
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(n.startswith('astrometry_query') for n in names), names


def test_destination_is_replaced(www, tmp_path):
    dest = tmp_path / 'a.fits'
    dest.write_bytes(b'old' * 10 ** 6)
    fetch_url(www.url + '/data', dest, allow_private=True)
    assert dest.read_bytes() == PAYLOAD
