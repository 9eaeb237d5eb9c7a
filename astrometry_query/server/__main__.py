"""``python -m astrometry_query.server``: run the nova-compatible server."""
import argparse
import sys

from . import default_server_dir, serve


def main(argv=None):
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog='python -m astrometry_query.server',
        description='Serve the nova.astrometry.net API, solving with the local astrometry.net.')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to bind (default 127.0.0.1; without --api-key only '
                             'loopback addresses are allowed)')
    parser.add_argument('--port', type=int, default=8080, help='TCP port (default 8080)')
    parser.add_argument('--workers', type=int, default=2, help='solves run at once (default 2)')
    parser.add_argument('--data-dir', default=None,
                        help=f'database, uploads and jobs (default {default_server_dir()})')
    parser.add_argument('--api-key', action='append', default=[], dest='api_keys',
                        metavar='KEY', help='an accepted API key (repeatable); without any, '
                                            'every non-empty key is accepted')
    parser.add_argument('--solve-timeout', type=float, default=300.0,
                        help='per-solve limit in seconds (default 300)')
    parser.add_argument('--log-level', default='info',
                        choices=['critical', 'error', 'warning', 'info', 'debug'])
    opts = parser.parse_args(argv)
    if opts.workers < 0:
        parser.error('--workers must be >= 0')
    try:
        serve(host=opts.host, port=opts.port, workers=opts.workers, data_dir=opts.data_dir,
              api_keys=opts.api_keys, solve_timeout=opts.solve_timeout, log_level=opts.log_level)
    except ValueError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass    # uvicorn re-raises Ctrl-C after its graceful shutdown: a normal stop
    return 0


if __name__ == '__main__':
    sys.exit(main())
