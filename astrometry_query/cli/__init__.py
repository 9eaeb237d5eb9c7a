"""``astrometry-query``: plate-solve images from the shell, look at the jobs
and their results, keep the API key in the keyring, serve the nova API.

    astrometry-query solve IMAGE... [options]     # solve images (globs too), write their WCS
    astrometry-query annotate JOB_OR_WCS [--png]  # the objects in a solved field
    astrometry-query download JOB KIND... [-d DIR] # result files of a job
    astrometry-query jobs [show ID]               # your jobs, or one of them
    astrometry-query login [--forget]             # store the nova API key in the keyring
    astrometry-query serve [--port 8080] ...      # a nova-compatible server
    astrometry-query index list | download | build   # index files
    astrometry-query demo                         # solve the bundled example offline

Every command has ``--help`` with examples.  Errors go to stderr as
``astrometry-query: <Type>: message``; the API key is never printed.

Exit codes
----------
0
    Success.
1
    Not solved: the image (or, with several images, any of them) failed to
    solve, or the job asked for has no solution (`SolveFailedError`,
    `ResultNotAvailableError`).
2
    Bad usage or input: options, files, ids or settings (argparse errors and
    ``UsageError``, `InvalidInputError`, `InvalidSettingError`,
    `JobNotFoundError`, ``FileExistsError``).
3
    Network or server error (`ServerError`, `SubmissionError`).
4
    Timeout: a solve did not finish in time (`SolveTimeoutError`; with several
    images a timed-out image is a failed row: 1).
5
    No API key, or the server refused it (`MissingAPIKeyError`, `LoginError`).
6
    Set-up: astrometry.net, index files for the field or a usable keyring is
    missing, or index files could not be built (`LocalSolverNotFoundError`,
    `IndexCoverageError`, `IndexBuildError`, ``SetupError``).
70
    Internal error (a bug; ``--debug`` shows the traceback).
130
    Interrupted (Ctrl-C).  ``serve`` stopped by Ctrl-C exits with 0.
141
    The output pipe was closed (e.g. piped into ``head``).

Each command has its module here; these modules are internal: the public
names are this package's.
"""
import argparse
import contextlib
import logging
import os
import sys

from .. import __version__
from ._common import (EXIT_CODES, PROG, HelpFormatter, Parser, UsageError, epilog,
                      exit_code, join_signed_values, report)
from .solve import example_image_path

__all__ = ['main', 'example_image_path', 'build_parser', 'exit_code', 'UsageError']

_DESCRIPTION = ('Plate-solve images with astrometry.net (offline, or through nova.astrometry.net '
                'or any server that speaks its API), look at the jobs and their results, keep '
                'the API key in the keyring, serve the nova API. Every command has --help.')
_EXAMPLES = """examples:
  astrometry-query demo                                  # check the set-up: solve offline
  astrometry-query solve m42.fits                        # WCS in m42.wcs, a summary
  astrometry-query solve 'night/*.fits' --output-dir wcs --json > night.jsonl
  astrometry-query watch /data/tonight --in-place        # solve frames as they land
  astrometry-query annotate m42.wcs --png m42.png
  astrometry-query login && astrometry-query jobs        # through nova.astrometry.net
  astrometry-query solve m42.fits --server http://127.0.0.1:8080   # your own server

The nova API key is looked up in this order: --api-key, conf.api_key, the
ASTROMETRY_NET_API_KEY environment variable, the keyring (astrometry-query login).

"""


def build_parser():
    """The argument parser of ``astrometry-query`` (every subcommand)."""
    from . import jobs, login, serve, solve, stars, watch
    from .index import add_index_parser, run_index_command
    parser = Parser(prog=PROG, description=_DESCRIPTION,
                    epilog=_EXAMPLES + EXIT_CODES, formatter_class=HelpFormatter)
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    parser.add_argument('--debug', action='store_true',
                        help='show the traceback of an error')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    solve.add_parsers(sub)
    watch.add_parsers(sub)
    jobs.add_parsers(sub)
    stars.add_parsers(sub)
    login.add_parsers(sub)
    serve.add_parsers(sub)
    index = add_index_parser(sub)
    index.set_defaults(func=run_index_command)
    _index_epilogs(index)
    return parser


_INDEX_EXAMPLES = {
    'list': ['astrometry-query index list', 'astrometry-query index list --index-dir /data/indexes --json'],
    'download': ['astrometry-query index download 5200 --scales 1-4 --around 150.1,+2.2 --radius 2',
                 'astrometry-query index download 4100 --scales 7-9 --dest /data/indexes',
                 'astrometry-query index download 5200 --scales 0-1 --dry-run'],
    'build': ['astrometry-query index build stars.ecsv --mag phot_g_mean_mag --dest /data/indexes',
              'astrometry-query index build gaia.fits --ra RA_ICRS --dec DE_ICRS --mag Gmag --scales 0-4'],
}


def _index_epilogs(index):
    """Examples and exit codes in the help of ``index`` and its subcommands
    (their parsers are built by astrometry_query.cli.index)."""
    index.epilog = f'{index.epilog}\n\n{EXIT_CODES}'
    actions = [a for a in index._actions if isinstance(a, argparse._SubParsersAction)]
    for name, parser in (actions[0].choices.items() if actions else ()):
        if name in _INDEX_EXAMPLES and not parser.epilog:
            parser.epilog = epilog(_INDEX_EXAMPLES[name])
            parser.formatter_class = HelpFormatter


class _CommandFormatter(logging.Formatter):
    """Log lines as the command's own: ``astrometry-query: job 3: solving``,
    ``astrometry-query: warning: ...`` (the prefix its errors have too)."""

    def format(self, record):
        level = '' if record.levelno <= logging.INFO else f'{record.levelname.lower()}: '
        return f'{PROG}: {level}{record.getMessage()}'


@contextlib.contextmanager
def _log_to_stderr():
    """The library's log lines go to stderr (astroquery's handler prints INFO
    on stdout), so that stdout holds only results (tables, JSON)."""
    from astroquery import log
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CommandFormatter())
    handlers, propagate = list(log.handlers), log.propagate
    for old in handlers:
        log.removeHandler(old)
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        for old in handlers:
            log.addHandler(old)
        log.propagate = propagate


def _stdout_gone():
    """stdout was closed early (``| head``): quiet the interpreter's own flush."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv=None):
    """Entry point of the ``astrometry-query`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).
    """
    argv = join_signed_values(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:        # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    debug = getattr(args, 'debug', False)
    try:
        with _log_to_stderr():
            return args.func(args)
    except BrokenPipeError:
        _stdout_gone()
        return 141
    except (Exception, KeyboardInterrupt) as exc:
        if debug and not isinstance(exc, KeyboardInterrupt):
            raise
        return report(exc)


if __name__ == '__main__':
    sys.exit(main())
