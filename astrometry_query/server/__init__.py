"""A server that speaks the nova.astrometry.net API and solves with the local
astrometry.net: one shared solver for a lab, offline solving for tools that
speak nova, and the real server of our integration tests.

>>> from astrometry_query.server import ServerThread
>>> with ServerThread(api_keys=['mykey']) as server:        # doctest: +SKIP
...     print(server.url)                                   # http://127.0.0.1:<port>

From a shell: ``python -m astrometry_query.server --port 8080 --api-key KEY``.

Its modules: `create_app` composes the nova API (``app.py``) and the web
pages (``web.py`` and its ``web_*.py`` helpers), which share the HTTP
plumbing of ``http.py``; submissions become images in ``ingest.py`` and are
solved by the pool of ``worker.py``; ``store.py`` keeps everything in SQLite.
"""
import asyncio
import functools
import ipaddress
import logging
import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from .app import NovaApp
from .http import FORM_MEMORY, MAX_BODY
from .store import Store
from .web import WebPages
from .queue import SolveQueue, make_runner

__all__ = ['create_app', 'serve', 'ServerThread', 'check_bind', 'default_server_dir']

log = logging.getLogger('astrometry_query.server')
access_log = logging.getLogger('astrometry_query.server.access')


class AccessLog:
    """Log method, path (never the query or body: they may hold keys), status, time."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), []

        async def send_status(message):
            if message['type'] == 'http.response.start':
                status.append(message['status'])
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            access_log.info('%s %s %s %.1f ms', scope['method'], scope['path'],
                            status[0] if status else '-', 1000 * (time.perf_counter() - started))


def _index_dirs(index_dir):
    """The index directories as a list of str (None: the default), logged."""
    from .. import conf
    from ..local.solver import index_dirs
    dirs = index_dirs(index_dir) or index_dirs(conf.index_dir)
    try:
        from ..index import installed_indexes
        table = installed_indexes(dirs)
        if len(table):
            log.info('index files: %d in %s, quads %.3g-%.4g arcmin', len(table),
                     ', '.join(table.meta['index_dirs']), float(table['quad_min'].min()),
                     float(table['quad_max'].max()))
        else:
            log.warning('no index files in %s: solves will fail', ', '.join(table.meta['index_dirs']))
    except Exception as exc:       # no solver here (e.g. solves on a Dask cluster)
        log.warning('index files not listed: %s', exc)
    return None if dirs is None else [str(d) for d in dirs]


def create_app(data_dir, api_keys=(), workers=2, solve_timeout=300.0, *, fetch_timeout=10.0,
               index_dir=None, shutdown_timeout=None, executor='threads', dask_scheduler=None,
               max_upload=MAX_BODY, max_json=FORM_MEMORY, rate_limit=None,
               allow_private_urls=False):
    """The nova-compatible ASGI application.

    Parameters
    ----------
    data_dir : path-like
        SQLite database (``nova.sqlite3``), uploads and job directories.
    api_keys : sequence of str
        Accepted API keys; empty = any non-empty key (bind loopback only!).
    workers : int
        Concurrent solves (0: queue work without solving it).
    solve_timeout : float
        Per-solve limit in seconds.
    fetch_timeout : float
        Inactivity timeout of url_upload downloads, seconds.
    index_dir : path or list of paths, optional
        Directories of index files to solve with (a string may join several
        with ``os.pathsep``); default ``conf.index_dir``, else astrometry.net's
        configuration and the user's index directory.
    shutdown_timeout : float, optional
        How long shutdown waits for running solves (default: until they end).
    executor : {'threads', 'processes'}
        Where solves run: threads of this process, or ``workers`` worker
        processes (every core used: extraction and the WCS refit hold the GIL).
    max_upload : int
        Largest request body (an upload), bytes; default nova's 500 MB.  Also
        the largest url_upload download.
    max_json : int
        Largest request-json, bytes; default Django's 2.5 MB.
    rate_limit : float, optional
        Requests a second allowed per user on login, upload and myjobs
        (bursts of twice that); past it, HTTP 429 with Retry-After.
    allow_private_urls : bool
        Let url_upload fetch from loopback, link-local and private addresses
        (off by default: a URL must not reach the server's own network).
    dask_scheduler : str, optional
        Address of a Dask scheduler: solves run as tasks on its cluster
        (``workers`` of them at once; default the cluster's thread count).
        Each worker needs astrometry.net, the index files and ``data_dir``
        (a shared filesystem); results come back into ``data_dir``.

    Returns
    -------
    `~starlette.applications.Starlette`
        With ``state.store``, ``state.pool`` and ``state.data_dir``.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    index_dir = _index_dirs(index_dir)
    store = Store(data_dir / 'nova.sqlite3')
    runner, workers, close_runner = make_runner(executor, workers, dask_scheduler)
    pool = SolveQueue(store, data_dir, runner=runner, workers=workers,
                      solve_timeout=solve_timeout, fetch_timeout=fetch_timeout,
                      index_dir=index_dir, allow_private_urls=allow_private_urls,
                      max_download=max_upload)
    pool.on_stop = close_runner
    nova = NovaApp(data_dir, list(api_keys), pool, max_upload=max_upload, max_json=max_json,
                   rate_limit=rate_limit, allow_private_urls=allow_private_urls)

    @asynccontextmanager
    async def lifespan(app):
        nova.changes.bind(asyncio.get_running_loop())
        pool.on_change = nova.changes.notify
        # Every worker process started and warmed now, not with the first jobs.
        await run_in_threadpool(runner.warm_up)
        pool.start()
        try:
            yield
        finally:
            nova.changes.close()       # long polls answer now
            # With a shutdown timeout (a served server), running solves are stopped
            # and queued again; without (tests, notebooks), they finish first.
            await run_in_threadpool(functools.partial(
                pool.stop, shutdown_timeout, interrupt=shutdown_timeout is not None))
            close_runner()
            store.close()

    # nova's API first; the web pages end with the catch-all of every other path.
    routes = nova.routes() + WebPages(nova).routes()
    app = Starlette(routes=routes, middleware=[Middleware(AccessLog)], lifespan=lifespan)
    app.router.redirect_slashes = False
    app.state.store, app.state.pool, app.state.data_dir = store, pool, data_dir
    return app


def default_server_dir():
    """The server's data directory when none is given: ``<astropy cache
    dir>/astrometry_query/server`` (the local backend's job store is elsewhere)."""
    from astropy.config import get_cache_dir
    return Path(get_cache_dir()) / 'astrometry_query' / 'server'


def is_loopback(host):
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.strip('[]').lower() == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def check_bind(host, api_keys):
    """Refuse to expose an open server (no API keys) beyond this machine.

    Raises
    ------
    ValueError
        ``api_keys`` is empty and ``host`` is not a loopback address.
    """
    if not api_keys and not is_loopback(host):
        raise ValueError(
            f'Refusing to listen on {host!r} without API keys: with no --api-key the '
            'server accepts any key, so it may only bind a loopback address (127.0.0.1, '
            '::1, localhost). Give at least one --api-key to serve other machines.')


def _uvicorn_config(host, port, workers, data_dir, api_keys, solve_timeout, log_level,
                    log_config, **app_kw):
    import uvicorn
    check_bind(host, api_keys)
    app = create_app(data_dir, api_keys, workers, solve_timeout, **app_kw)
    # Our AccessLog middleware logs paths only; uvicorn's would log query strings.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          lifespan="on", log_config=log_config, timeout_graceful_shutdown=3)


def serve(host='127.0.0.1', port=8080, workers=2, data_dir=None, api_keys=(),
          solve_timeout=300, log_level='info', **app_kw):
    """Run the server until interrupted (blocking).

    Parameters
    ----------
    host : str
        Address to bind; without ``api_keys`` only loopback addresses are allowed.
    port : int
        TCP port.
    workers : int
        Solves run at once.
    data_dir : path-like, optional
        Database, uploads and jobs (default `default_server_dir`).
    api_keys : sequence of str
        Accepted API keys; empty = any non-empty key.
    solve_timeout : float
        Per-solve limit, seconds.
    log_level : str
        uvicorn's and our log level.
    **app_kw
        More `create_app` options; ``executor`` defaults to 'processes' here,
        ``dask_scheduler`` runs the solves on a Dask cluster.
    """
    import uvicorn
    # On SIGTERM or Ctrl-C: running solves are stopped (their engines killed) and
    # queued again for the next start; the whole shutdown takes a few seconds.
    app_kw.setdefault('shutdown_timeout', 3.0)
    # A standing server uses every core: solves in worker processes.
    app_kw.setdefault('executor', 'processes')
    logging.basicConfig(format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    logging.getLogger('astrometry_query').setLevel(log_level.upper())
    config = _uvicorn_config(host, port, workers, Path(data_dir or default_server_dir()),
                             list(api_keys), solve_timeout, log_level,
                             uvicorn.config.LOGGING_CONFIG, **app_kw)
    uvicorn.Server(config).run()


class ServerThread:
    """The server in a daemon thread, for tests, benchmarks and notebooks.

    Parameters
    ----------
    host : str
        Address to bind (loopback unless ``api_keys`` are given).
    port : int
        0 picks a free port; `url` tells which.
    workers, api_keys, solve_timeout :
        As for `serve`.
    data_dir : path-like, optional
        Default: a temporary directory, deleted by `stop`.
    log_level : str
        uvicorn's log level.
    **app_kw
        More `create_app` options (fetch_timeout, index_dir, shutdown_timeout).
    """

    def __init__(self, host='127.0.0.1', port=0, workers=2, data_dir=None, api_keys=(),
                 solve_timeout=300, log_level='warning', **app_kw):
        check_bind(host, api_keys)
        self.host, self.port = host, port
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix='nova-server-'))
        self._options = dict(workers=workers, api_keys=list(api_keys),
                             solve_timeout=solve_timeout, log_level=log_level, **app_kw)
        self._server = self._thread = self.app = None

    @property
    def url(self):
        """Root URL, e.g. ``http://127.0.0.1:43210`` (the API is under ``/api/``)."""
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'http://{host}:{self.port}'

    @property
    def api_url(self):
        return self.url + '/api/'

    def start(self, timeout=30.0):
        """Start serving; returns once the socket is bound and the workers run."""
        import uvicorn
        opts = dict(self._options)
        config = _uvicorn_config(self.host, self.port, opts.pop('workers'), self.data_dir,
                                 opts.pop('api_keys'), opts.pop('solve_timeout'),
                                 opts.pop('log_level'), None, **opts)
        self.app = config.app
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True,
                                        name=f'nova-server-{self.port}')
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError(f'the server did not start on {self.host}:{self.port} '
                                   '(port in use?)')
            time.sleep(0.01)
        if not self.port:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout=None, *, cleanup=True):
        """Stop accepting requests, let running solves finish, close the database.

        Parameters
        ----------
        timeout : float, optional
            Longest wait for the thread (default: until running solves end).
        cleanup : bool
            Delete a temporary data_dir made by this object.
        """
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
            self._server = None
        if cleanup and self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
