"""What every command shares: exit codes, error reporting, the client
options, argument types, and table and JSON output."""
import argparse
import json
import math
import os
import re
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import Angle

from ..exceptions import (AstrometryNetError, IndexBuildError, IndexCoverageError,
                          IndexDownloadError, JobNotFoundError, LocalSolverNotFoundError,
                          LoginError, MissingAPIKeyError, ResultNotAvailableError, ServerError,
                          SolveFailedError, SolveTimeoutError, SubmissionError, WorkerLostError)

__all__ = ['PROG', 'EXIT_OK', 'EXIT_UNSOLVED', 'EXIT_USAGE', 'EXIT_SERVER', 'EXIT_TIMEOUT',
           'EXIT_AUTH', 'EXIT_SETUP', 'EXIT_INTERNAL', 'EXIT_INTERRUPTED', 'EXIT_CODES',
           'API_KEY_WARNING', 'UsageError', 'SetupError', 'Parser', 'HelpFormatter', 'epilog',
           'add_command', 'exit_code', 'message', 'report', 'warn', 'positive_float',
           'positive_int', 'nonnegative_int', 'ra_degrees', 'dec_degrees', 'radius_degrees',
           'server_url', 'join_signed_values', 'add_client_options', 'make_client', 'job_argument',
           'echo', 'jsonable', 'print_json', 'fmt', 'format_table', 'short']

PROG = 'astrometry-query'

EXIT_OK = 0
EXIT_UNSOLVED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3
EXIT_TIMEOUT = 4
EXIT_AUTH = 5
EXIT_SETUP = 6
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

EXIT_CODES = """exit codes:
  0    success
  1    not solved: an image (or, with several, any image) failed to solve, or the
       job has no solution (SolveFailedError, ResultNotAvailableError)
  2    bad usage or input: options, files, ids, settings (UsageError,
       InvalidInputError, InvalidSettingError, JobNotFoundError, FileExistsError)
  3    network or server error, or a solve lost with its worker (ServerError,
       SubmissionError, WorkerLostError)
  4    timeout: the solve did not finish in time (SolveTimeoutError; with
       several images, an image that timed out is a failed row: 1)
  5    no API key, or the server refused it (MissingAPIKeyError, LoginError)
  6    set-up: astrometry.net, index files for the field or a keyring is missing,
       or index files could not be built (LocalSolverNotFoundError,
       IndexCoverageError, IndexBuildError, SetupError)
  70   internal error (a bug: please report it; --debug shows the traceback)
  130  interrupted (Ctrl-C)
  141  the output pipe was closed (e.g. piped into head)"""

# An API key given as an option shows in `ps` and in the shell history.
API_KEY_WARNING = ('warning: --api-key puts the key in your shell history and in the process '
                   'list; prefer the ASTROMETRY_NET_API_KEY environment variable or '
                   f'`{PROG} login` (the keyring).')


class UsageError(Exception):
    """A command line that cannot be run (reported like argparse's errors, exit 2)."""


class SetupError(Exception):
    """Something this machine lacks (e.g. a usable keyring): exit 6."""


class Parser(argparse.ArgumentParser):
    """argparse with our error line: ``astrometry-query: UsageError: ...``."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f'{PROG}: UsageError: {message} (see {self.prog} --help)\n')


class HelpFormatter(argparse.HelpFormatter):
    """Wraps the description, keeps text of several lines (the epilog's
    examples) as written; a wider option column."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)

    def _fill_text(self, text, width, indent):
        if '\n' in text:
            return ''.join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def epilog(examples):
    """An epilog: the examples, then the exit codes."""
    return 'examples:\n' + '\n'.join(f'  {line}' for line in examples) + '\n\n' + EXIT_CODES


def add_command(sub, name, *, help, description=None, examples=(), **kw):
    """A subcommand parser with our formatter and an epilog of examples."""
    parser = sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:]
                            + '.', epilog=epilog(examples), formatter_class=HelpFormatter, **kw)
    parser.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                        help='show the traceback of an error')
    return parser


# -- errors and exit codes ---------------------------------------------------------------
def exit_code(exc):
    """The exit status for an exception (see ``EXIT_CODES``)."""
    import requests
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SolveTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(exc, (MissingAPIKeyError, LoginError)):
        return EXIT_AUTH
    if isinstance(exc, (UsageError, JobNotFoundError, ValueError, FileExistsError,
                        FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return EXIT_USAGE      # InvalidInputError and InvalidSettingError are ValueErrors
    if isinstance(exc, (ServerError, SubmissionError, IndexDownloadError, WorkerLostError,
                        requests.RequestException, ConnectionError)):
        return EXIT_SERVER
    if isinstance(exc, (LocalSolverNotFoundError, IndexCoverageError, IndexBuildError, SetupError)):
        return EXIT_SETUP
    if isinstance(exc, (SolveFailedError, ResultNotAvailableError, AstrometryNetError)):
        return EXIT_UNSOLVED
    if isinstance(exc, OSError):
        return EXIT_USAGE       # a file that cannot be read or written
    return EXIT_INTERNAL


def message(exc):
    """An error's message; for ours, with its ids but not the Python call to resume."""
    if isinstance(exc, AstrometryNetError):
        ids = [f'{name} {value}' for name, value in (('submission', exc.submission_id),
                                                      ('job', exc.job_id)) if value is not None]
        return exc.message + (f" ({', '.join(ids)})" if ids and 'resume' not in exc.message
                              else '')
    return str(exc) or repr(exc)


def report(exc):
    """Print ``astrometry-query: <Type>: message`` on stderr; returns the exit status."""
    code = exit_code(exc)
    if isinstance(exc, KeyboardInterrupt):
        print(f'{PROG}: interrupted', file=sys.stderr)
        return code
    text = message(exc)
    if isinstance(exc, MissingAPIKeyError):
        text += (f' From the shell: run `{PROG} login` once, set ASTROMETRY_NET_API_KEY, or '
                 'solve offline with --backend local.')
    if code == EXIT_INTERNAL:
        text += ' (an unexpected error: run again with --debug for the traceback, and report it)'
    print(f'{PROG}: {type(exc).__name__}: {text}', file=sys.stderr)
    return code


def warn(message):
    print(f'{PROG}: {message}', file=sys.stderr)


# -- argument types (their errors name the option: "argument --ra: ...") -----------------
def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive number, got {text!r}') from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be a positive number, got {text!r}')
    return value


def nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f'must be zero or more, got {text!r}')
    return value


def _whole_number(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None
    if value < low:
        raise argparse.ArgumentTypeError(f'must be at least {low}, got {text!r}')
    return value


def positive_int(text):
    return _whole_number(text, 1)


def nonnegative_int(text):
    return _whole_number(text, 0)


def _angle(text, sexagesimal_unit, what, low, high):
    text = text.strip()
    unit = sexagesimal_unit if re.fullmatch(r'[+-]?\d+([: ]\d+){1,2}(\.\d*)?', text) else u.deg
    try:
        value = Angle(text, unit=unit).deg
    except Exception:
        raise argparse.ArgumentTypeError(
            f'expected {what}, got {text!r}') from None
    if not (math.isfinite(value) and low <= value <= high):
        raise argparse.ArgumentTypeError(f'must be between {low:g} and {high:g} degrees, '
                                         f'got {text!r} ({value:g} deg)')
    return value


def ra_degrees(text):
    """RA in degrees from '83.82', '83.82d', '05:35:17', '05 35 17.1' (hours) or '5h35m17s'."""
    value = _angle(text, u.hourangle, 'degrees (83.82) or hours:minutes:seconds (05:35:17)',
                   0.0, 360.0)
    return value % 360.0


def dec_degrees(text):
    """Dec in degrees from '-5.39', '-05:23:28' or '-5d23m28s'."""
    return _angle(text, u.deg, 'degrees (-5.39) or degrees:minutes:seconds (-05:23:28)',
                  -90.0, 90.0)


def radius_degrees(text):
    """A radius: degrees, or a Quantity such as '30 arcmin'."""
    try:
        quantity = u.Quantity(text)
        value = (quantity * u.deg if quantity.unit == u.dimensionless_unscaled
                 else quantity).to_value(u.deg)
    except Exception:
        raise argparse.ArgumentTypeError(f"expected degrees (2) or an angle ('30 arcmin'), "
                                         f'got {text!r}') from None
    if not (math.isfinite(value) and 0 < value <= 180):
        raise argparse.ArgumentTypeError(f'must be more than 0 and at most 180 degrees, got {text!r}')
    return value


def server_url(text):
    """A nova server: an http(s) URL (its root or its /api/ URL)."""
    from urllib.parse import urlsplit
    parts = urlsplit(text)
    if parts.scheme not in ('http', 'https') or not parts.netloc or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f'expected an http(s) URL such as http://127.0.0.1:8080, '
                                         f'got {text!r}')
    return text


#: Options whose values may start with '-' without being numbers argparse knows.
_SIGNED_VALUE_OPTIONS = ('--ra', '--dec', '--around')


def join_signed_values(argv):
    """``--dec -05:23:28`` -> ``--dec=-05:23:28`` (argparse takes the value for an option)."""
    out, args = [], list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if token == '--':
            out += args[i:]
            break
        if token in _SIGNED_VALUE_OPTIONS and i + 1 < len(args) \
                and re.match(r'-[\d.]', args[i + 1]):
            out.append(f'{token}={args[i + 1]}')
            i += 2
            continue
        out.append(token)
        i += 1
    return out


# -- the client ----------------------------------------------------------------------------
def add_client_options(parser, *, backend=True, api_key=True, nested=False):
    """--backend, --server, --api-key (``nested``: a sub-subcommand, whose
    options must not reset those given before its name)."""
    default = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group('backend and server')
    if backend:
        group.add_argument('--backend', choices=('auto', 'nova', 'local'), default=default,
                           help="'local': astrometry.net on this machine; 'nova': a nova server; "
                                "default 'auto': nova when a key or --server is given, else local")
    group.add_argument('--server', metavar='URL', default=default, type=server_url,
                       help='nova server, e.g. http://127.0.0.1:8080 '
                            '(default conf.server: https://nova.astrometry.net)')
    if api_key:
        group.add_argument('--api-key', metavar='KEY', default=default,
                           help='nova API key; better: the ASTROMETRY_NET_API_KEY environment '
                                f'variable, or `{PROG} login` once (stored in the keyring)')
    return group


def make_client(args, backend=None):
    """An `AstrometryNetClass` from the client options (warns about --api-key)."""
    from .. import AstrometryNetClass
    api_key = getattr(args, 'api_key', None)
    if api_key:
        warn(API_KEY_WARNING)
    return AstrometryNetClass(api_key=api_key, server=getattr(args, 'server', None),
                              backend=backend or getattr(args, 'backend', None))


# -- jobs given on the command line ----------------------------------------------------------
def job_argument(text):
    """A job id, or a WCS file written by a solve.

    Returns ``(job_id or None, header or None, path or None)``.
    """
    from astropy.io import fits
    text = text.strip()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError(f'a job id is a positive whole number, got {text!r}')
        return int(text), None, None
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f'expected a job id or a WCS file written by `{PROG} solve`, got {text!r} '
            '(no such file)')
    try:
        header = fits.getheader(path)
    except Exception as exc:
        raise argparse.ArgumentTypeError(f'{text!r} is not a FITS WCS file ({type(exc).__name__})') \
            from None
    job = header.get('AN_JOBID')
    return (int(job) if job is not None else None), header, path


# -- output ----------------------------------------------------------------------------------
def echo(text=''):
    """print, even to a terminal that cannot show every character (names in Greek)."""
    try:
        print(text)
    except UnicodeEncodeError:
        encoding = getattr(sys.stdout, 'encoding', None) or 'ascii'
        print(text.encode(encoding, 'backslashreplace').decode(encoding))


def jsonable(value):
    """Plain JSON values: Quantities as numbers, NaN and masked as null, Paths as str."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if value is np.ma.masked or isinstance(value, np.ma.core.MaskedConstant):
        return None
    if isinstance(value, u.Quantity):
        value = value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return str(value)
    return str(value)


def print_json(obj):
    """One JSON object on one line of stdout (JSON Lines)."""
    print(json.dumps(jsonable(obj), allow_nan=False), flush=True)


def fmt(value, spec='', missing='-'):
    """A cell: ``missing`` for None, NaN or masked."""
    if value is None or value is np.ma.masked or isinstance(value, np.ma.core.MaskedConstant):
        return missing
    if isinstance(value, u.Quantity):
        value = value.value
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return missing
    return format(value, spec) if spec else str(value)


def format_table(headers, rows, right=()):
    """A plain text table; columns named in ``right`` are right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        parts = [c.rjust(w) if h in right else c.ljust(w)
                 for c, w, h in zip(cells, widths, headers)]
        return '  '.join(parts).rstrip()
    return '\n'.join([line(headers), line(['-' * w for w in widths])] + [line(r) for r in rows])


def short(text, width=70):
    """The first line of a message, cut to ``width`` characters."""
    first = (text or '').strip().splitlines()[0] if (text or '').strip() else ''
    return first if len(first) <= width else first[:width - 1] + '…'
