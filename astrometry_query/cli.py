"""``astrometry-query``: solve images, run the bundled example, or serve the
nova API.

    astrometry-query demo                      # solve the bundled example offline
    astrometry-query solve IMAGE [options]     # solve a FITS image, write its WCS
    astrometry-query serve [--port 8080] ...   # a nova-compatible server
    astrometry-query index list | download | build   # index files
"""
import argparse
import sys
from importlib.resources import files
from pathlib import Path

import astropy.units as u

from .index.command import add_index_parser, run_index_command

__all__ = ['main', 'example_image_path']


def example_image_path():
    """Path of the bundled example image (a synthetic field near M42)."""
    return Path(str(files('astrometry_query') / 'data' / 'example.fits'))


def _summary(client, header, output):
    cal = client.get_calibration(header)
    center = cal.center
    lines = [
        f"Solved: job {header.get('AN_JOBID')} ({client.backend.name} backend)",
        f"  centre      RA {center.ra.to_string(u.hourangle, sep=':', precision=2)}  "
        f"Dec {center.dec.to_string(u.deg, sep=':', precision=1, alwayssign=True)}  "
        f"({center.ra.deg:.5f}, {center.dec.deg:+.5f}) deg",
        f"  pixel scale {cal.pixscale.to_value(u.arcsec / u.pix):.4f} arcsec/pixel",
        f"  field       {cal.width.to_value(u.arcmin):.2f} x {cal.height.to_value(u.arcmin):.2f} "
        f"arcmin" if cal.width is not None else '',
        f"  orientation {cal.orientation.to_value(u.deg):.2f} deg (up is that many degrees E of N), "
        f"parity {cal.parity:+.0f}",
        f"  WCS written to {output}",
    ]
    return '\n'.join(line for line in lines if line)


def _solve(args):
    from . import AstrometryNetClass
    settings = {}
    if args.scale_low is not None or args.scale_high is not None:
        settings.update(scale_lower=args.scale_low, scale_upper=args.scale_high,
                        scale_units=args.scale_units)
    if args.ra is not None or args.dec is not None:
        settings.update(center_ra=args.ra, center_dec=args.dec, radius=args.radius)
    image = Path(args.image)
    output = Path(args.output) if args.output else image.with_name(image.stem.split('.')[0] + '.wcs')
    with AstrometryNetClass(api_key=args.api_key, server=args.server,
                            backend=args.backend) as client:
        header = client.solve_from_image(image, solve_timeout=args.timeout,
                                         verbose=not args.quiet, **settings)
        header.tofile(output, overwrite=True)
        print(_summary(client, header, output))
    return 0


def _demo(args):
    args.image = str(example_image_path())
    args.output = args.output or 'example.wcs'
    args.backend = 'local'
    for name in ('scale_low', 'scale_high', 'ra', 'dec', 'api_key', 'server'):
        setattr(args, name, None)
    print(f'Solving the bundled example image {args.image} offline with astrometry-engine ...')
    return _solve(args)


def _serve(args):
    import os
    from .server import serve
    if args.workers is None:
        args.workers = 0 if args.dask_scheduler else (os.cpu_count() or 1)
    serve(host=args.host, port=args.port, workers=args.workers, data_dir=args.data_dir,
          api_keys=tuple(args.api_key or ()), solve_timeout=args.solve_timeout,
          executor='threads' if args.threads else 'processes',
          dask_scheduler=args.dask_scheduler, log_level=args.log_level,
          max_upload=args.max_upload, rate_limit=args.rate_limit,
          allow_private_urls=args.allow_private_urls, index_dir=args.index_dir)
    return 0


def _parser():
    parser = argparse.ArgumentParser(prog='astrometry-query', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)

    solve = sub.add_parser('solve', help='plate-solve a FITS image')
    solve.add_argument('image')
    demo = sub.add_parser('demo', help='solve the bundled example image offline')
    for p in (solve, demo):
        p.add_argument('-o', '--output', help='where to write the WCS header (FITS)')
        p.add_argument('--timeout', type=float, default=None, help='solve timeout, seconds')
        p.add_argument('-q', '--quiet', action='store_true', help='no status line')
    solve.add_argument('--backend', choices=('auto', 'nova', 'local'), default=None)
    solve.add_argument('--server', help='nova server URL')
    solve.add_argument('--api-key', help='nova API key (better: ASTROMETRY_NET_API_KEY)')
    solve.add_argument('--scale-low', type=float)
    solve.add_argument('--scale-high', type=float)
    solve.add_argument('--scale-units', default='arcsecperpix',
                       choices=('degwidth', 'arcminwidth', 'arcsecperpix', 'focalmm'))
    solve.add_argument('--ra', type=float, help='centre hint, degrees')
    solve.add_argument('--dec', type=float, help='centre hint, degrees')
    solve.add_argument('--radius', type=float, default=None, help='hint radius, degrees')

    serve = sub.add_parser('serve', help='run a nova-compatible server')
    serve.add_argument('--host', default='127.0.0.1')
    serve.add_argument('--port', type=int, default=8080)
    serve.add_argument('--workers', type=int, default=None,
                       help='solves at once (default: the cores, or the Dask cluster threads)')
    serve.add_argument('--data-dir', default=None)
    serve.add_argument('--index-dir', action='append', metavar='DIR',
                       help='directory of index files (repeat for several); default: '
                            'conf.index_dir, else /etc/astrometry.cfg and the user index directory')
    serve.add_argument('--api-key', action='append',
                       help='an accepted API key (repeat for several); none: any key, loopback only')
    serve.add_argument('--solve-timeout', type=float, default=300.0)
    serve.add_argument('--dask-scheduler', metavar='ADDRESS', default=None,
                       help='run the solves as tasks on this Dask cluster '
                            '(e.g. tcp://10.0.0.5:8786) instead of local worker processes')
    serve.add_argument('--max-upload', type=int, default=500_000_000, metavar='BYTES',
                       help='largest upload (and url_upload download); default 500 MB, as nova')
    serve.add_argument('--rate-limit', type=float, default=None, metavar='PER_SECOND',
                       help='requests a second per user on login, upload and myjobs '
                            '(then HTTP 429 with Retry-After); default: no limit')
    serve.add_argument('--allow-private-urls', action='store_true',
                       help='let url_upload fetch from loopback and private networks')
    serve.add_argument('--log-level', default='info',
                       choices=('critical', 'error', 'warning', 'info', 'debug'))
    serve.add_argument('--threads', action='store_true',
                       help='solve in threads of the server process (lighter, slower)')
    add_index_parser(sub)
    return parser


def main(argv=None):
    """Entry point of the ``astrometry-query`` command."""
    args = _parser().parse_args(argv)
    from .exceptions import AstrometryNetError
    try:
        if args.command == 'index':
            return run_index_command(args)
        return {'solve': _solve, 'demo': _demo, 'serve': _serve}[args.command](args)
    except (AstrometryNetError, ValueError) as exc:
        print(f'astrometry-query: {type(exc).__name__}: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
