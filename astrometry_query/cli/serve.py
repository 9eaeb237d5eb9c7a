"""``astrometry-query serve``: the nova-compatible server."""
import os

from ._common import EXIT_OK, add_command, positive_float

__all__ = ['add_parsers']

_EXAMPLES = [
    'astrometry-query serve                                # http://127.0.0.1:8080/api/',
    'astrometry-query serve --port 8080 --workers 2 --data-dir ./nova-data',
    'astrometry-query serve --host 0.0.0.0 --api-key KEY1 --api-key KEY2   # for a lab',
    'astrometry-query serve --dask-scheduler tcp://10.0.0.5:8786',
]


def add_parsers(sub):
    serve = add_command(
        sub, 'serve', help='run a nova-compatible server',
        description='Serve the nova.astrometry.net API on this machine, solving with the local '
                    'astrometry.net; point any nova client at http://HOST:PORT/api/. Ctrl-C '
                    '(or SIGTERM) stops it cleanly, with exit status 0.',
        examples=_EXAMPLES)
    serve.add_argument('--host', default='127.0.0.1',
                       help='address to bind (default 127.0.0.1; without --api-key only '
                            'loopback addresses are allowed)')
    serve.add_argument('--port', type=int, default=8080, help='TCP port (default 8080)')
    serve.add_argument('--workers', type=int, default=None,
                       help='solves at once (default: the cores, or the Dask cluster threads)')
    serve.add_argument('--data-dir', default=None, metavar='DIR',
                       help='database, uploads and jobs (kept across restarts)')
    serve.add_argument('--index-dir', action='append', metavar='DIR',
                       help='directory of index files (repeat for several); default: '
                            'conf.index_dir, else /etc/astrometry.cfg and the user index directory')
    serve.add_argument('--api-key', action='append', metavar='KEY',
                       help='an accepted API key (repeat for several); none: any key, loopback only')
    serve.add_argument('--solve-timeout', type=positive_float, default=300.0, metavar='SECONDS',
                       help='per-solve limit (default 300)')
    serve.add_argument('--dask-scheduler', metavar='ADDRESS', default=None,
                       help='run the solves as tasks on this Dask cluster '
                            '(e.g. tcp://10.0.0.5:8786) instead of local worker processes')
    serve.add_argument('--max-upload', type=int, default=500_000_000, metavar='BYTES',
                       help='largest upload (and url_upload download); default 500 MB, as nova')
    serve.add_argument('--rate-limit', type=positive_float, default=None, metavar='PER_SECOND',
                       help='requests a second per user on login, upload and myjobs '
                            '(then HTTP 429 with Retry-After); default: no limit')
    serve.add_argument('--allow-private-urls', action='store_true',
                       help='let url_upload fetch from loopback and private networks')
    serve.add_argument('--log-level', default='info',
                       choices=('critical', 'error', 'warning', 'info', 'debug'))
    serve.add_argument('--threads', action='store_true',
                       help='solve in threads of the server process (lighter, slower)')
    serve.set_defaults(func=run_serve)
    return serve


def run_serve(args):
    from .. import conf
    from ..server import serve
    from ._common import UsageError
    if args.workers is not None and args.workers < 0:
        raise UsageError('argument --workers: must be >= 0')
    workers = args.workers
    if workers is None:
        workers = 0 if args.dask_scheduler else (os.cpu_count() or 1)
    try:
        serve(host=args.host, port=args.port, workers=workers, data_dir=args.data_dir,
              api_keys=tuple(args.api_key or ()), solve_timeout=args.solve_timeout,
              executor='threads' if args.threads else 'processes',
              dask_scheduler=args.dask_scheduler, log_level=args.log_level,
              max_upload=args.max_upload, rate_limit=args.rate_limit,
              allow_private_urls=args.allow_private_urls,
              index_dir=args.index_dir or conf.index_dir or None)
    except KeyboardInterrupt:
        pass        # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop
    return EXIT_OK
