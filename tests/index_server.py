"""A loopback HTTP file server for the index download tests.

Serves files from a directory with HEAD, Range requests (206 and
Content-Range, 416), ETag and If-Range, and faults on demand: a connection
dropped after N bytes, Range ignored (a 200 with the whole file), an HTTP
error status.  Every request is recorded.
"""
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits


def fake_index(path, index_id, *, healpix=-1, nside=0, scale=None, nbytes=200_000, seed=0):
    """An index-like FITS file: the primary cards astrometry.net writes and a
    table of random bytes to give it some size."""
    from astrometry_query.index.series import QUAD_SCALES
    scale = index_id % 100 if scale is None else scale
    low, high = QUAD_SCALES[scale]
    header = fits.Header()
    header['INDEXID'] = index_id
    header['SCALE_L'] = np.radians(low / 60.0)
    header['SCALE_U'] = np.radians(high / 60.0)
    header['HEALPIX'] = healpix
    header['HPNSIDE'] = nside
    header['NSTARS'] = 1000
    header['NQUADS'] = 2000
    rows = max(1, nbytes // 16)
    data = np.random.default_rng(seed).integers(0, 255, (rows, 16), dtype=np.uint8)
    table = fits.BinTableHDU.from_columns([fits.Column('quads', '16B', array=data)])
    fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(path, overwrite=True)
    return Path(path)


class IndexFileServer:
    """``with IndexFileServer(root) as server: server.url``.

    Attributes
    ----------
    requests : list of (method, path, range header or None)
    drop_after : dict
        ``{file name: bytes}``: the next GET of that file closes the connection
        after that many bytes of its body (once).
    ignore_range : bool
        Answer every GET with the whole file (200).
    fail : dict
        ``{file name: HTTP status}`` answered instead of the file.
    """

    def __init__(self, root):
        self.root = Path(root)
        self.requests = []
        self.drop_after = {}
        self.ignore_range = False
        self.fail = {}
        self.bytes_sent = 0
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def _file(self):
                path = (server.root / self.path.lstrip('/').split('?')[0]).resolve()
                if server.root.resolve() not in path.parents or not path.is_file():
                    return None
                return path

            def _headers(self, status, length, extra=()):
                self.send_response(status)
                self.send_header('Content-Length', str(length))
                self.send_header('Accept-Ranges', 'bytes')
                for key, value in extra:
                    self.send_header(key, value)
                self.end_headers()

            def do_HEAD(self):
                with server._lock:
                    server.requests.append(('HEAD', self.path, None))
                path = self._file()
                if path is None:
                    return self._headers(404, 0)
                self._headers(200, path.stat().st_size, [('ETag', _etag(path))])

            def do_GET(self):
                rng = self.headers.get('Range')
                with server._lock:
                    server.requests.append(('GET', self.path, rng))
                path = self._file()
                if path is None:
                    return self._headers(404, 0)
                name = path.name
                if name in server.fail:
                    return self._headers(server.fail[name], 0)
                data = path.read_bytes()
                start, status, extra = 0, 200, [('ETag', _etag(path))]
                if_range = self.headers.get('If-Range')
                if rng and not server.ignore_range and (if_range in (None, _etag(path))):
                    start = int(rng.split('=')[1].split('-')[0])
                    if start >= len(data):
                        return self._headers(416, 0, [('Content-Range', f'bytes */{len(data)}')])
                    status = 206
                    extra.append(('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}'))
                body = data[start:]
                self._headers(status, len(body), extra)
                with server._lock:
                    cut = server.drop_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    with server._lock:
                        server.bytes_sent += min(cut, len(body))
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)
                with server._lock:
                    server.bytes_sent += len(body)

        self._httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self._httpd.server_address[1]}'
        # a short poll: shutdown() returns within it
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={'poll_interval': 0.05},
                                        daemon=True)

    def gets(self, name=None):
        return [r for r in self.requests if r[0] == 'GET' and (name is None or r[1].endswith(name))]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


def _etag(path):
    stat = path.stat()
    return '"' + hashlib.md5(f'{stat.st_size}-{stat.st_mtime_ns}'.encode()).hexdigest() + '"'
