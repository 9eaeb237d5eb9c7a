"""``astrometry-query index list | download | build``.

``conf.index_dir`` is read here and passed down: `astrometry_query.index`
takes its directories as arguments.
"""
import json
import sys

import astropy.units as u
from astropy.coordinates import SkyCoord

from .. import conf
from .._text import plural

__all__ = ['add_index_parser', 'run_index_command']

_EXAMPLES = """examples:
  astrometry-query index list
  astrometry-query index download 5200 --scales 1-4 --around 150.1,+2.2 --radius 2
  astrometry-query index download 4100 --scales 7-9 --dest /data/indexes
  astrometry-query index build stars.ecsv --mag phot_g_mean_mag --dest /data/indexes"""


_DEST_HELP = ('destination directory (default: the first directory of conf.index_dir, else the '
              'user index directory)')


def _position(text):
    """'RA,DEC' in degrees, or sexagesimal 'HH:MM:SS,+DD:MM:SS'."""
    try:
        ra, dec = (p.strip() for p in text.split(','))
        unit = (u.hourangle if ':' in ra or ' ' in ra else u.deg, u.deg)
        return SkyCoord(ra, dec, unit=unit)
    except Exception:
        raise ValueError(f'--around: expected RA,DEC (degrees, or HH:MM:SS,+DD:MM:SS), '
                         f'got {text!r}') from None


def add_index_parser(sub):
    """Add the ``index`` command and its subcommands to an argparse subparsers object."""
    import argparse
    index = sub.add_parser('index', help='list, download or build index files',
                           description='Index files: list the installed ones, download official '
                           'series, build new ones from a star catalogue.',
                           epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = index.add_subparsers(dest='index_command', required=True)

    listing = actions.add_parser('list', help='the index files a local solve uses')
    listing.add_argument('--index-dir', action='append', metavar='DIR',
                         help='directory to list (repeat for several); default: conf.index_dir, '
                              'else /etc/astrometry.cfg and the user index directory')
    listing.add_argument('--json', action='store_true', help='print JSON instead of a table')

    download = actions.add_parser('download', help='fetch official index files',
                                  description='Fetch official astrometry.net index files '
                                  '(parallel, resumable, checked).')
    download.add_argument('series', help="4100 (Tycho-2, scales 7-19), 4200 (2MASS, 0-19), "
                                         "5200 (Tycho-2 + Gaia LITE, 0-6) or 5200-heavy")
    download.add_argument('--scales', help="e.g. 3, 1-4 or 0,2,5 (default: all of the series)")
    download.add_argument('--around', type=_position, metavar='RA,DEC',
                          help='only the sky tiles near this position (degrees or HH:MM:SS,DD:MM:SS)')
    download.add_argument('--radius', type=float, metavar='DEG',
                          help='with --around: radius in degrees (default 0: the tile holding it)')
    download.add_argument('--dest', metavar='DIR', help=_DEST_HELP)
    download.add_argument('--base-url', help='mirror URL (default http://data.astrometry.net)')
    download.add_argument('--overwrite', action='store_true', help='fetch files already there')
    download.add_argument('--workers', type=int, default=4, help='files at once (default 4)')
    download.add_argument('--dry-run', action='store_true', help='list the files, fetch nothing')
    download.add_argument('-q', '--quiet', action='store_true', help='no progress bar')

    build = actions.add_parser('build', help='build index files from a star catalogue')
    build.add_argument('catalog', help='a table file astropy reads (FITS, ECSV, CSV, VOTable...)')
    build.add_argument('--dest', metavar='DIR', help=_DEST_HELP)
    build.add_argument('--ra', default='ra', help='RA column (default ra)')
    build.add_argument('--dec', default='dec', help='Dec column (default dec)')
    build.add_argument('--mag', default='mag', help='magnitude column (default mag)')
    build.add_argument('--scales', help='e.g. 0-4 (default: chosen from the catalogue)')
    build.add_argument('--index-id', type=int, help='base index id (default: the first free of '
                                                    '9000, 9100 ...)')
    build.add_argument('--overwrite', action='store_true')
    build.add_argument('-q', '--quiet', action='store_true')
    return index


def _human(nbytes):
    for unit, div in (('GB', 1e9), ('MB', 1e6), ('kB', 1e3)):
        if nbytes >= div:
            return f'{nbytes / div:.1f} {unit}'
    return f'{int(nbytes)} B'


def _destination(args):
    """--dest, else the first directory of conf.index_dir, else the user's index directory."""
    from ..index.locations import default_destination
    return args.dest or default_destination(conf.index_dir)


def _list(args):
    from ..index import installed_indexes
    table = installed_indexes(args.index_dir or conf.index_dir or None)
    if args.json:
        rows = [{name: (row[name].item() if hasattr(row[name], 'item') else row[name])
                 for name in table.colnames} for row in table.filled(-1)]
        print(json.dumps({'index_dirs': table.meta['index_dirs'], 'files': rows}, indent=1))
        return 0
    print(f'Index directories: {", ".join(table.meta["index_dirs"])}')
    if not len(table):
        print('No index files found.')
        return 1
    print(f'{"id":>6} {"scale":>5} {"quads (arcmin)":>15} {"tile":>9} {"stars":>9} {"size":>9}  file')
    for row in table.filled(-1):
        tile = 'all-sky' if row['healpix'] < 0 else f'{row["healpix"]}/{row["nside"]}'
        scale = '-' if row['scale'] < 0 else str(row['scale'])
        quads = f'{row["quad_min"]:.4g}-{row["quad_max"]:.4g}'
        print(f'{row["index_id"]:>6} {scale:>5} {quads:>15} {tile:>9} {row["nstars"]:>9} '
              f'{_human(row["size"]):>9}  {row["path"]}')
    low, high = float(table['quad_min'].min()), float(table['quad_max'].max())
    print(f'{plural(len(table), "file")}, {_human(float(table["size"].sum()))}; '
          f'quads of {low:.3g}-{high:.4g} '
          f'arcmin: fields from about {low:.3g} arcmin wide (a field needs quads of about '
          f'10-100 % of its size)')
    return 0


def _download(args):
    from ..index import download_indexes, planned_files
    radius = None if args.radius is None else args.radius * u.deg
    if args.dry_run:
        plans = planned_files(args.series, args.scales, around=args.around, radius=radius,
                              base_url=args.base_url)
        total = sum(p['estimate'] or 0 for p in plans)
        for p in plans:
            size = _human(p['estimate']) if p['estimate'] else '?'
            print(f'{p["name"]:<24} {size:>9}  {p["url"]}')
        print(f'{plural(len(plans), "file")}, about {_human(total)}')
        return 0
    table = download_indexes(args.series, args.scales, _destination(args), around=args.around,
                             radius=radius, base_url=args.base_url, overwrite=args.overwrite,
                             max_workers=args.workers, verbose=not args.quiet)
    counts = {s: int((table['status'] == s).sum()) for s in ('downloaded', 'resumed', 'present')}
    print(f'{len(table)} index files in {table.meta["destination"]}: '
          + ', '.join(f'{n} {s}' for s, n in counts.items() if n))
    return 0


def _build(args):
    from astropy import log
    from ..index import build_index
    if not args.quiet:
        log.setLevel('INFO')
    paths = build_index(args.catalog, _destination(args), ra=args.ra, dec=args.dec, mag=args.mag,
                        scales=args.scales, index_id=args.index_id, overwrite=args.overwrite,
                        verbose=not args.quiet)
    for path in paths:
        print(path)
    return 0


def run_index_command(args):
    """Run ``astrometry-query index ...``; returns the exit status."""
    try:
        return {'list': _list, 'download': _download, 'build': _build}[args.index_command](args)
    except KeyboardInterrupt:
        print('astrometry-query: interrupted; run the same command again to resume.',
              file=sys.stderr)
        return 130
