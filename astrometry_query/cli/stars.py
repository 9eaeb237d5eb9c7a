"""``astrometry-query stars JOB``: the stars that tie a solution to the sky."""
from pathlib import Path

from ._common import (EXIT_OK, UsageError, add_client_options, add_command, echo, fmt,
                      format_table, job_argument, make_client, print_json)

__all__ = ['add_parsers', 'run_stars']

_EXAMPLES = [
    'astrometry-query stars m42.wcs                       # matched stars and residuals',
    'astrometry-query stars m42.wcs -o m42-stars.ecsv     # the Table, with units',
    'astrometry-query stars 1234 --all --json             # every source, its sky position',
]
#: Table formats -o writes, by file name ending.
_FORMATS = {'.ecsv': 'ascii.ecsv', '.csv': 'ascii.csv', '.fits': 'fits', '.fit': 'fits',
            '.vot': 'votable', '.xml': 'votable', '.txt': 'ascii.fixed_width'}


def add_parsers(sub):
    stars = add_command(
        sub, 'stars', help="a solved job's matched stars (or all its sources)",
        description='List the stars of a solved job matched with their catalogue stars: image '
                    'x, y (FITS 1-based) and flux, catalogue RA, Dec and magnitude, and the '
                    'residual of each (pixels and arcseconds), with the RMS. --all lists every '
                    'source found in the image with its sky position instead.',
        examples=_EXAMPLES)
    stars.add_argument('job', type=job_argument, metavar='JOB_OR_WCS',
                       help='a job id, or a WCS file written by a solve')
    stars.add_argument('--all', action='store_true',
                       help='every source of the image (x, y, flux, ra, dec, matched)')
    stars.add_argument('-o', '--output', metavar='FILE',
                       help='write the Table there instead (.ecsv keeps the units; .csv, '
                            '.fits, .vot also)')
    stars.add_argument('--json', action='store_true',
                       help='one JSON object per star on stdout (JSON Lines)')
    stars.add_argument('--overwrite', action='store_true', help='replace FILE if it exists')
    add_client_options(stars)
    stars.set_defaults(func=run_stars)
    return stars


def run_stars(args):
    """``stars``: returns the exit status."""
    job_id, header, path = args.job
    output = Path(args.output).expanduser() if args.output else None
    if output is not None:
        if output.suffix.lower() not in _FORMATS:
            raise UsageError(f'argument -o/--output: the name must end with one of '
                             f"{', '.join(sorted(_FORMATS))}, got {output.name!r}")
        if output.exists() and not args.overwrite:
            raise UsageError(f'argument -o/--output: {str(output)!r} exists (--overwrite '
                             'replaces it)')
    with make_client(args) as client:
        what = header if header is not None else job_id
        table = client.get_image_stars(what) if args.all else client.get_matched_stars(what)
    if output is not None:
        table.write(output, format=_FORMATS[output.suffix.lower()], overwrite=True)
        echo(f'{len(table)} {"sources" if args.all else "matched stars"} written to {output}')
    elif args.json:
        for row in table:
            print_json({name: row[name] for name in table.colnames})
    elif args.all:
        rows = [[fmt(r['x'], '.2f'), fmt(r['y'], '.2f'), fmt(r['flux'], '.0f'),
                 fmt(r['ra'], '.6f'), fmt(r['dec'], '+.6f'), 'yes' if r['matched'] else '']
                for r in table]
        headers = ('x', 'y', 'flux', 'RA (deg)', 'Dec (deg)', 'matched')
        echo(format_table(headers, rows, right=headers[:5]))
        echo(f"\n{len(table)} sources, {int(sum(table['matched']))} matched.")
    else:
        rows = [[fmt(r['x'], '.2f'), fmt(r['y'], '.2f'), fmt(r['flux'], '.0f'),
                 fmt(r['ra'], '.6f'), fmt(r['dec'], '+.6f'), fmt(r['mag'], '.2f'),
                 fmt(r['residual'], '.3f'), fmt(r['residual_sky'], '.3f')] for r in table]
        headers = ('x', 'y', 'flux', 'RA (deg)', 'Dec (deg)', 'mag', 'residual (px)',
                   'residual (")')
        echo(format_table(headers, rows, right=headers))
        meta = table.meta
        echo(f"\n{len(table)} stars matched (from the {meta.get('source', 'solver')}); RMS "
             f"{fmt(meta.get('rms_px'), '.3f')} px = {fmt(meta.get('rms_arcsec'), '.3f')} arcsec.")
    return EXIT_OK
