"""``astrometry-query annotate | download | jobs``: what a solved job offers,
and the local job store's housekeeping (``jobs prune``)."""
import argparse
import re
import sys
from datetime import timedelta
from pathlib import Path

import astropy.units as u

from ..exceptions import AstrometryNetError, InvalidInputError, ResultNotAvailableError, ServerError
from ..files import write_atomic
from ..jobs.files import DOWNLOAD_KINDS, RESULT_KINDS
from ..results import parity_text
from ._common import (EXIT_OK, EXIT_UNSOLVED, PROG, UsageError, add_client_options, add_command,
                      echo, fmt, format_table, job_argument, make_client, message, positive_int,
                      print_json)

__all__ = ['add_parsers']

_ANNOTATE_EXAMPLES = [
    'astrometry-query annotate m42.wcs                    # the WCS file a solve wrote',
    'astrometry-query annotate 1234 --server http://127.0.0.1:8080 --json',
    'astrometry-query annotate m42.wcs --png m42-annotated.png',
    'astrometry-query annotate other.wcs --image other.fits --png other.png   # any WCS, offline',
]
_DOWNLOAD_EXAMPLES = [
    'astrometry-query download 1234 new_fits              # the image with its WCS, here',
    'astrometry-query download m42.wcs wcs corr rdls -d results/',
    'astrometry-query download 1234 all -d job1234/ --overwrite --server http://127.0.0.1:8080',
]
_JOBS_EXAMPLES = [
    'astrometry-query jobs                                 # the 20 newest local jobs (no API key)',
    'astrometry-query jobs --all                           # every one',
    'astrometry-query jobs --server http://127.0.0.1:8080 --limit 10',
    'astrometry-query jobs --json | jq .job_id',
    'astrometry-query jobs show 1234',
    'astrometry-query jobs prune --older-than 30d          # free the space of old local jobs',
]
_PRUNE_EXAMPLES = [
    'astrometry-query jobs prune --older-than 30d --dry-run   # what would go',
    'astrometry-query jobs prune --older-than 2w',
    'astrometry-query jobs prune --older-than 12h --json',
]
#: Jobs listed when neither --limit nor --all is given.
DEFAULT_LIMIT = 20
#: --older-than units.
_AGE_UNITS = {'s': 'seconds', 'm': 'minutes', 'h': 'hours', 'd': 'days', 'w': 'weeks'}
_KINDS = DOWNLOAD_KINDS


def add_parsers(sub):
    annotate = add_command(
        sub, 'annotate', help='list the objects in a solved field',
        description='List the named stars, NGC/IC objects and the like in a solved field, '
                    "from a job or from a WCS file ('astrometry-query solve' writes one per "
                    'image). A WCS file without a job id (AN_JOBID) is annotated offline with '
                    "astrometry.net's plot-constellations.",
        examples=_ANNOTATE_EXAMPLES)
    annotate.add_argument('job', type=job_argument, metavar='JOB_OR_WCS',
                          help='a job id, or a WCS file')
    annotate.add_argument('--json', action='store_true',
                          help='one JSON object per object on stdout (JSON Lines): type, name, '
                               'names, ra, dec (deg), pixelx, pixely (FITS 1-based), radius '
                               '(pixels), vmag')
    annotate.add_argument('--png', metavar='PATH',
                          help='also save the annotated image there (PNG)')
    annotate.add_argument('--nbright', type=positive_int, metavar='N',
                          help='keep only the N brightest named stars')
    annotate.add_argument('--offline', action='store_true',
                          help='annotate the WCS file itself here, even if it names a job')
    annotate.add_argument('--image', metavar='FILE',
                          help='offline --png: draw on this image (default: a black canvas)')
    add_client_options(annotate)
    annotate.set_defaults(func=run_annotate)

    download = add_command(
        sub, 'download', help='download result files of a solved job',
        description='Save result files of a solved job as DIR/job<ID>-<name>: '
                    + ', '.join(f'{k} ({RESULT_KINDS[k].download_name})' for k in _KINDS) + '.',
        examples=_DOWNLOAD_EXAMPLES)
    download.add_argument('job', type=job_argument, metavar='JOB',
                          help='a job id, or a WCS file written by a solve')
    download.add_argument('kinds', nargs='+', metavar='KIND', choices=_KINDS + ('all',),
                          help=f"one or more of {', '.join(_KINDS)}, or all")
    download.add_argument('-d', '--dest', metavar='DIR', default='.',
                          help='directory to save into (created if needed; default: here)')
    download.add_argument('--overwrite', action='store_true', help='replace files already there')
    add_client_options(download)
    download.set_defaults(func=run_download)

    jobs = add_command(sub, 'jobs', help='list your jobs, show one, or prune old local ones',
                       description='List the jobs of your account (nova) or of the local job '
                                   f'store, newest first (the {DEFAULT_LIMIT} newest unless '
                                   "--limit or --all), with when each ended (or, while it runs, "
                                   "was submitted; UTC); 'jobs show ID' shows one; 'jobs prune' "
                                   'deletes old local jobs.',
                       examples=_JOBS_EXAMPLES)
    jobs.add_argument('--json', action='store_true',
                      help='one JSON object per job on stdout (JSON Lines)')
    how_many = jobs.add_mutually_exclusive_group()
    how_many.add_argument('--limit', type=positive_int, metavar='N',
                          help=f'only the N newest jobs (default {DEFAULT_LIMIT})')
    how_many.add_argument('--all', action='store_true', help='every job')
    add_client_options(jobs)
    jobs.set_defaults(func=run_jobs, action=None)
    actions = jobs.add_subparsers(dest='action', metavar='{show,prune}')
    show = add_command(actions, 'show', help="a job's status, dates, calibration and objects",
                       examples=['astrometry-query jobs show 1234',
                                 'astrometry-query jobs show 1234 --json'])
    show.add_argument('job_id', type=job_argument, metavar='ID', help='a job id (or a WCS file)')
    show.add_argument('--json', action='store_true', default=argparse.SUPPRESS,
                      help='print one JSON object')
    add_client_options(show, nested=True)
    show.set_defaults(func=run_job_show)
    prune = add_command(
        actions, 'prune', help='delete local jobs that ended long ago',
        description='Delete the jobs of the local job store (conf.local_data_dir) that ended '
                    'more than --older-than ago, and say how much space that freed. Jobs '
                    'that have not ended are kept, however old. A nova server keeps its own '
                    'jobs.', examples=_PRUNE_EXAMPLES)
    prune.add_argument('--older-than', type=age_argument, metavar='AGE', required=True,
                       help='a number and a unit: s, m, h, d or w (seconds, minutes, hours, '
                            'days, weeks), e.g. 30d')
    prune.add_argument('--dry-run', action='store_true',
                       help='only list what would be deleted')
    prune.add_argument('--json', action='store_true', default=argparse.SUPPRESS,
                       help='print one JSON object: job_ids, bytes, kept_unfinished, dry_run')
    prune.set_defaults(func=run_jobs_prune)
    return annotate, download, jobs


# -- annotate ---------------------------------------------------------------------------------
def _offline_annotations(path, header, args, png_path):
    from ..local import annotate as local_annotate
    from ..results import annotations_table
    table = annotations_table(local_annotate.annotations(path, nbright=args.nbright), header)
    png = None
    if png_path is not None:
        png = local_annotate.annotated_png(path, png_path, image_path=args.image)
    return table, png


def _png_path(text):
    path = Path(text).expanduser()
    if not path.parent.is_dir():
        raise UsageError(f'argument --png: no such directory: {str(path.parent)!r}')
    return path


def run_annotate(args):
    job_id, header, path = args.job
    if args.image and not (args.offline or job_id is None):
        raise UsageError('argument --image: only for offline annotation (--offline, or a WCS '
                         'file without a job id)')
    if args.image and not Path(args.image).expanduser().is_file():
        raise UsageError(f'argument --image: no such file: {args.image!r}')
    png_path = _png_path(args.png) if args.png else None
    if job_id is None or args.offline:
        if path is None:
            raise UsageError('argument --offline: needs a WCS file, not a job id')
        table, png = _offline_annotations(path, header, args, png_path)
        source = f'{path} (offline)'
    else:
        with make_client(args) as client:
            table = client.get_annotations(job_id, nbright=args.nbright)
            png = None
            if png_path is not None:
                write_atomic(png_path, client.download(job_id, 'annotated'))
                png = png_path
        source = f'job {job_id}'
    if args.json:
        for row in table:
            record = {name: row[name] for name in table.colnames}
            record['names'] = [n for n in str(record['names']).split(' / ') if n]
            print_json(record)
    else:
        has_sky = 'ra' in table.colnames
        headers = ('type', 'name', 'RA (deg)', 'Dec (deg)', 'x', 'y', 'radius (px)', 'vmag')
        rows = [[row['type'], row['names'] or row['name'],
                 fmt(row['ra'], '.5f') if has_sky else '-',
                 fmt(row['dec'], '+.5f') if has_sky else '-', fmt(row['pixelx'], '.1f'),
                 fmt(row['pixely'], '.1f'), fmt(row['radius'], '.1f'), fmt(row['vmag'], '.2f')]
                for row in table]
        echo(format_table(headers, rows, right=headers[2:]))
        echo(f'\n{len(table)} object{"" if len(table) == 1 else "s"} in the field of {source}.')
    if png is not None and not args.json:
        echo(f'Annotated image written to {png}')
    return EXIT_OK


# -- download ---------------------------------------------------------------------------------
def _job_id_of(args, option='JOB'):
    job_id, _, path = args
    if job_id is None:
        raise InvalidInputError(f'{option}: {str(path)!r} has no AN_JOBID card (not written by '
                                "'astrometry-query solve'); give the job id")
    return job_id


def run_download(args):
    job_id = _job_id_of(args.job)
    kinds = list(_KINDS) if 'all' in args.kinds else list(dict.fromkeys(args.kinds))
    dest = Path(args.dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise UsageError(f'argument -d/--dest: {str(dest)!r} is not a directory')
    if not args.overwrite:      # refuse before anything is fetched
        there = [dest / f'job{job_id}-{RESULT_KINDS[k].download_name}' for k in kinds]
        there = [str(p) for p in there if p.exists()]
        if there:
            raise FileExistsError(f'{", ".join(there)} already exist(s); add --overwrite to '
                                  'replace')
    dest.mkdir(parents=True, exist_ok=True)
    every = 'all' in args.kinds
    missing = []
    with make_client(args) as client:
        for kind in kinds:
            try:
                echo(str(client.download(job_id, kind, destination_dir=dest,
                                         overwrite=args.overwrite)))
            except (ServerError, ResultNotAvailableError) as exc:
                if not every:
                    raise
                # 'all': a job may lack some kinds (no new_fits for a source list)
                missing.append(kind)
                print(f'{PROG}: skipped {kind}: {type(exc).__name__}: {message(exc)}',
                      file=sys.stderr)
    if missing and len(missing) == len(kinds):
        return EXIT_UNSOLVED
    return EXIT_OK


# -- jobs ------------------------------------------------------------------------------------
def age_argument(text):
    """An age such as '30d' or '12h' as a `~datetime.timedelta`."""
    match = re.fullmatch(r'\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])\s*', text or '', re.I)
    if not match:
        raise argparse.ArgumentTypeError(
            f'expected a number and a unit: s, m, h, d or w (e.g. 30d, 12h, 2w), got {text!r}')
    return timedelta(**{_AGE_UNITS[match.group(2).lower()]: float(match.group(1))})


def _job_records(client, limit):
    """The ``limit`` newest jobs (all for None), newest first, and how many jobs there are."""
    ids = sorted(client.backend.my_jobs(), reverse=True)
    shown = ids if limit is None else ids[:limit]
    return [client.get_job_info(j) for j in shown], len(ids)


def _job_times(client, job):
    """(submitted, finished) of a job, naive UTC datetimes or None.  Only the
    local job store knows them: nova's API gives no job dates."""
    try:
        return client.backend.job_times(job.id)
    except AstrometryNetError:      # pruned meanwhile
        return None, None


def _when(value):
    return value.isoformat(sep=' ', timespec='seconds') if value is not None else None


def _job_json(job, full=False, times=(None, None)):
    cal = job.calibration
    record = {'job_id': job.id, 'submission_id': job.submission_id, 'status': job.status,
              'original_filename': job.original_filename, 'submitted': _when(times[0]),
              'finished': _when(times[1])}
    if full:
        record['calibration'] = None if cal is None else cal.to_api()
        record.update(objects_in_field=job.objects_in_field, tags=job.tags,
                      machine_tags=job.machine_tags, command_line=job.command_line)
    else:
        for key, unit in (('ra', u.deg), ('dec', u.deg), ('radius', u.deg),
                          ('pixscale', u.arcsec / u.pix), ('orientation', u.deg)):
            record[key] = None if cal is None else getattr(cal, key).to_value(unit)
        record['parity'] = None if cal is None else cal.parity
    return record


def run_jobs(args):
    limit = None if args.all else (args.limit or DEFAULT_LIMIT)
    with make_client(args) as client:
        records, total = _job_records(client, limit)
        times = [_job_times(client, job) for job in records]
        backend = client.backend.name
        server = client.server
    if args.json:
        for job, when in zip(records, times):
            print_json(_job_json(job, times=when))
        return EXIT_OK
    headers = ('job', 'submission', 'status', 'date (UTC)', 'RA (deg)', 'Dec (deg)',
               'scale ("/px)', 'orientation', 'file')
    rows = [[job.id, fmt(job.submission_id), job.status,
             fmt(finished or submitted, '%Y-%m-%d %H:%M'),
             fmt(job.calibration and job.calibration.ra.to_value(u.deg), '.5f'),
             fmt(job.calibration and job.calibration.dec.to_value(u.deg), '+.5f'),
             fmt(job.calibration and job.calibration.pixscale.to_value(u.arcsec / u.pix), '.3f'),
             fmt(job.calibration and job.calibration.orientation.to_value(u.deg), '.2f'),
             job.original_filename or ''] for job, (submitted, finished) in zip(records, times)]
    echo(format_table(headers, rows, right=headers[:2] + headers[4:8]))
    where = f'on {server}' if backend == 'nova' else 'in the local job store'
    more = total - len(records)
    if more:
        echo(f'\nThe {len(records)} newest of {total} jobs {where}; {more} more '
             '(--limit N or --all shows them).')
    else:
        echo(f"\n{total} job{'' if total == 1 else 's'} {where}.")
    return EXIT_OK


def run_jobs_prune(args):
    """``jobs prune``: delete old local jobs."""
    with make_client(args, backend='local') as client:
        pruned = client.prune_jobs(args.older_than, dry_run=args.dry_run)
        store = client.backend.jobs_dir
    if getattr(args, 'json', False):
        print_json({'job_ids': pruned.job_ids, 'bytes': pruned.bytes,
                    'kept_unfinished': pruned.kept_unfinished, 'dry_run': pruned.dry_run})
        return EXIT_OK
    ago = _age_text(args.older_than)
    if not pruned.count:
        echo(f'No job in {store} ended more than {ago} ago.')
    else:
        verb, freeing = (('Would delete', 'which would free') if pruned.dry_run
                         else ('Deleted', 'freeing'))
        echo(f"{verb} {pruned.count} job{'' if pruned.count == 1 else 's'} that ended more than "
             f'{ago} ago ({_id_list(pruned.job_ids)}), {freeing} {pruned.bytes / 1e6:.1f} MB '
             f'in {store}.')
    if pruned.kept_unfinished:
        echo(f'Kept {len(pruned.kept_unfinished)} older job(s) that have not ended (running, or '
             f'interrupted): {_id_list(pruned.kept_unfinished)}.')
    return EXIT_OK


def _age_text(age):
    """A timedelta for reading: '30 days', '12 hours', '90 seconds'."""
    seconds = age.total_seconds()
    for unit, size in (('week', 604800), ('day', 86400), ('hour', 3600), ('minute', 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f'{seconds:g} seconds'


def _id_list(ids, most=20):
    """'ids 1, 2, 3' in order (cut after ``most``)."""
    ids = sorted(ids)
    text = ', '.join(str(i) for i in ids[:most]) + (', ...' if len(ids) > most else '')
    return f"id{'' if len(ids) == 1 else 's'} {text}"


def run_job_show(args):
    job_id = _job_id_of(args.job_id, 'ID')
    with make_client(args) as client:
        job = client.get_job_info(job_id)
        reason = None
        if job.status == 'failure':
            try:
                reason = client.backend.failure_reason(job.id)
            except AstrometryNetError:
                pass
        times = _job_times(client, job)
    if getattr(args, 'json', False):
        print_json(dict(_job_json(job, full=True, times=times), error=reason or ''))
        return EXIT_OK
    sub = f' (submission {job.submission_id})' if job.submission_id is not None else ''
    lines = [f'Job {job.id}{sub}: {job.status}']
    if job.original_filename:
        lines.append(f'  file        {job.original_filename}')
    for label, when in zip(('submitted', 'finished'), times):
        if when is not None:
            lines.append(f'  {label:<11} {_when(when)} UTC')
    if reason:
        lines.append(f"  why         {' '.join(reason.split())}")
    cal = job.calibration
    if cal is not None:
        center = cal.center
        lines += [
            f"  centre      RA {center.ra.to_string(u.hourangle, sep=':', precision=2)}  "
            f"Dec {center.dec.to_string(u.deg, sep=':', precision=1, alwayssign=True)}  "
            f"({center.ra.deg:.5f}, {center.dec.deg:+.5f}) deg",
            f'  radius      {cal.radius.to_value(u.deg):.4f} deg',
            f'  pixel scale {cal.pixscale.to_value(u.arcsec / u.pix):.4f} arcsec/pixel',
            f'  orientation {cal.orientation.to_value(u.deg):.2f} deg (up is that many degrees '
            'E of N)',
            f'  parity      {parity_text(cal.parity)}']
        if cal.width is not None:
            lines.append(f'  field       {cal.width.to_value(u.arcmin):.2f} x '
                         f'{cal.height.to_value(u.arcmin):.2f} arcmin')
    if job.objects_in_field:
        lines.append(f"  objects     {', '.join(job.objects_in_field)}")
    if job.tags and job.tags != job.objects_in_field:
        lines.append(f"  tags        {', '.join(job.tags)}")
    if job.command_line:        # the same solve with solve-field, to copy
        lines.append('  solve-field command:')
        lines += [f'    {line}' for line in job.command_line.splitlines()]
    echo('\n'.join(lines))
    return EXIT_OK
