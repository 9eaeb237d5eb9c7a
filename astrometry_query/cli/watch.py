"""``astrometry-query watch DIR``: solve a night's frames as the camera writes them."""
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from .._text import plural
from ..watch import JOURNAL_NAME
from ._common import (EXIT_OK, PROG, UsageError, add_client_options, add_command, echo, fmt,
                      make_client, nonnegative_float, positive_float, positive_int, print_json,
                      short)
from .solve import (add_index_dir_option, add_solve_options, index_dirs, quiet_log,
                    result_record, settings_help, solve_settings)

__all__ = ['add_parsers', 'run_watch']

_EXAMPLES = [
    'astrometry-query watch /data/tonight                 # NAME.wcs beside each frame',
    'astrometry-query watch /data/tonight --in-place      # the WCS into each FITS header',
    "astrometry-query watch /data --recursive --pattern 'Light_*.fits' --output-dir /data/wcs",
    'astrometry-query watch /mnt/nas/cam --poll --settle 5 # a network share',
    'astrometry-query watch /data/tonight --json | my-pipeline   # JSON Lines as frames solve',
]


def add_parsers(sub):
    watch = add_command(
        sub, 'watch', help='solve the frames of a folder as they arrive',
        description='Watch a folder and plate-solve each image file in it: the ones already '
                    'there, then each new one once the camera has finished writing it. Frames '
                    'of one field are followed from frame to frame (no search). A line is '
                    'printed per frame; Ctrl-C or SIGTERM stops, with a summary. Run again, '
                    'it solves only what is new (frames already solved are left alone, and '
                    f'the folder keeps a journal, {JOURNAL_NAME}).',
        examples=_EXAMPLES)
    watch.epilog = settings_help() + '\n\n' + watch.epilog
    watch.add_argument('directory', metavar='DIR', help='the folder the frames are written to')
    what = watch.add_argument_group('which files')
    what.add_argument('--recursive', action='store_true', help='watch its subfolders too')
    what.add_argument('--pattern', action='append', metavar='GLOB', dest='patterns',
                      help="file names to take ('*.fits', 'Light_*'; repeat for several); "
                           'default: every image file (FITS, XISF, TIFF, PNG, JPEG, camera RAW)')
    what.add_argument('--settle', type=nonnegative_float, default=1.0, metavar='SECONDS',
                      help='a file is taken once unchanged this long (default 1; a FITS file '
                           'must also hold all the data its header announces)')
    what.add_argument('--poll', action='store_true',
                      help='list the folder every second instead of waiting for change '
                           'notices (network file systems: NFS, SMB)')
    out = watch.add_argument_group('output')
    out.add_argument('--in-place', action='store_true',
                     help="write each WCS into its FITS frame's header (pixel data unchanged, "
                          "an earlier WCS kept as 'Original key:' comments); a picture gets "
                          'NAME.wcs beside it')
    out.add_argument('--output-dir', metavar='DIR',
                     help='write NAME.wcs files there (default: beside each frame)')
    out.add_argument('--json', action='store_true',
                     help='one JSON object per frame on stdout (JSON Lines), as it is solved')
    out.add_argument('-q', '--quiet', action='store_true',
                     help='no status or log lines (the frame lines remain)')
    run = watch.add_argument_group('solving')
    run.add_argument('--no-track', action='store_true',
                     help='search every frame (default: a frame of the field of a frame '
                          'solved before it is solved by following that field)')
    run.add_argument('--timeout', type=positive_float, metavar='SECONDS',
                     help='give up on a frame after this long (default conf.solve_timeout)')
    run.add_argument('--workers', type=positive_int, metavar='N',
                     help='frames solved at once (default: the cores)')
    run.add_argument('--no-journal', action='store_true',
                     help=f'keep no journal ({JOURNAL_NAME}) in the folder')
    run.add_argument('--retry-failed', action='store_true',
                     help='search again for the frames the journal says failed')
    add_solve_options(watch)
    add_index_dir_option(add_client_options(watch))
    watch.set_defaults(func=run_watch)
    return watch


def _frame_line(row, directory):
    """One frame, one line: time, file, what was found, where the WCS went."""
    name = _relative(row['input'], directory)
    stamp = datetime.now().strftime('%H:%M:%S')
    if row['status'] != 'success':
        return f"{stamp}  {name}  FAILED  {short(row['error'], 90)}"
    how = 'tracked' if row['tracked'] else {'cache': 'cached', 'journal': 'journal'}.get(
        row['origin'], 'searched')
    where = _relative(row['wcs_file'], directory) if row['wcs_file'] else '-'
    return (f"{stamp}  {name}  solved  RA {fmt(row['ra'], '.5f')}  Dec {fmt(row['dec'], '+.5f')}"
            f"  {fmt(row['pixscale'], '.3f')}\"/px  {how}, {row['elapsed']:.1f} s  -> {where}")


def _relative(path, directory):
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return str(path)


def _stop_on_signals(stop):
    """SIGTERM and the first Ctrl-C set ``stop`` (a second Ctrl-C interrupts)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}

    def handler(signum, frame):
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)

    def restore():
        for sig, old in previous.items():
            signal.signal(sig, old)
    return restore


def run_watch(args, backend=None, stop=None):
    """``watch``: returns the exit status once stopped (``stop``: for tests)."""
    directory = Path(args.directory).expanduser()
    if not directory.is_dir():
        raise UsageError(f'argument DIR: not a directory: {args.directory!r}')
    if args.in_place and args.output_dir:
        raise UsageError('argument --in-place: not allowed with --output-dir')
    settings = solve_settings(args)
    stop = stop or threading.Event()
    counts = {'solved': 0, 'tracked': 0, 'failed': 0}
    started = time.monotonic()
    with quiet_log(args.quiet or args.json), index_dirs(args.index_dir), \
            make_client(args, backend=backend) as client:
        rows = client.watch(directory, recursive=args.recursive, patterns=args.patterns,
                            in_place=args.in_place, output_dir=args.output_dir,
                            track=not args.no_track, poll=args.poll, settle=args.settle,
                            stop=stop, verbose=False, journal=not args.no_journal,
                            cache=not args.no_cache, solve_timeout=args.timeout,
                            max_concurrency=args.workers, retry_failed=args.retry_failed,
                            **settings)
        restore = _stop_on_signals(stop)
        if not (args.quiet or args.json):
            _status(f'watching {directory} ({client.backend.name} backend); '
                      'Ctrl-C to stop')
        try:
            for row in rows:
                solved = row['status'] == 'success'
                counts['solved' if solved else 'failed'] += 1
                counts['tracked'] += bool(row['tracked'])
                if args.json:
                    print_json(result_record(
                        row['input'], row['status'], header=row['header'], error=row['error'],
                        elapsed=row['elapsed'], wcs=row['wcs_file'] or None,
                        job_id=row['job_id'], submission_id=row['submission_id']))
                else:
                    echo(_frame_line(row, directory))
                    sys.stdout.flush()
        finally:
            rows.close()
            restore()
    if not args.json:
        total = counts['solved'] + counts['failed']
        echo(f"\n{plural(total, 'new frame')} in {time.monotonic() - started:.0f} s: "
             f"{counts['solved']} solved ({counts['tracked']} tracked), {counts['failed']} failed.")
    return EXIT_OK


def _status(text):
    """A status line on stderr, as the log's."""
    print(f'{PROG}: {text}', file=sys.stderr, flush=True)
