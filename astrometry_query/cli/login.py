"""``astrometry-query login``: keep the nova API key in the system keyring."""
import getpass
import os
import sys

from .. import auth
from ._common import (EXIT_OK, SetupError, UsageError, add_client_options, add_command, echo,
                      make_client, warn)

__all__ = ['add_parsers']

_EXAMPLES = [
    'astrometry-query login                               # asks for the key (not echoed)',
    'astrometry-query login --server http://10.0.0.5:8080',
    'pass show astrometry | astrometry-query login --stdin',
    'astrometry-query login --forget',
]


def add_parsers(sub):
    login = add_command(
        sub, 'login', help='store your nova API key in the system keyring',
        description='Check your nova API key with the server and store it in the system '
                    'keyring, where every later command (and AstrometryNet in Python) finds it. '
                    'The key is read at a password prompt (or from stdin), never echoed nor '
                    'printed. Your key is on https://nova.astrometry.net/api_help once you '
                    'are signed in.',
        examples=_EXAMPLES)
    add_client_options(login, backend=False, api_key=False)
    login.add_argument('--stdin', action='store_true',
                       help='read the key from the first line of stdin instead of a prompt')
    login.add_argument('--no-check', action='store_true',
                       help='store the key without asking the server (e.g. offline)')
    login.add_argument('--forget', action='store_true',
                       help="remove the server's key from the keyring instead")
    login.set_defaults(func=run_login)
    return login


def _stored(server):
    """True when the keyring holds a key for this server (None: no usable keyring)."""
    try:
        import keyring
        return keyring.get_password(auth.KEYRING_SERVICE, auth.keyring_user(server)) is not None
    except Exception:
        return None


def _read_key(server, from_stdin):
    if from_stdin:
        key = sys.stdin.readline().strip()
    else:
        key = getpass.getpass(f'astrometry.net API key for {server} (input hidden): ').strip()
    if not key:
        raise UsageError('no API key was given' + (' on stdin' if from_stdin else ''))
    return key


def run_login(args):
    with make_client(args, backend='nova') as client:
        server, entry = client.server, auth.keyring_user(client.server)
        if args.forget:
            if args.stdin or args.no_check:
                raise UsageError('argument --forget: not allowed with --stdin or --no-check')
            stored = _stored(server)
            if stored is None:
                raise SetupError('no usable keyring on this machine (see `keyring --list-backends`)')
            auth.forget_api_key(server)
            echo(f'Removed the API key for {entry} from the keyring.' if stored
                 else f'The keyring holds no API key for {entry}.')
            return EXIT_OK
        key = _read_key(server, args.stdin)
        try:
            if args.no_check:
                client.api_key = key                   # checks its form, not with the server
                auth.store_api_key(server, key)
            else:
                client.login(key, store_api_key=True)   # LoginError if the server refuses it
        except RuntimeError as exc:
            if type(exc) is not RuntimeError:       # LoginError, MissingAPIKeyError
                raise
            raise SetupError(str(exc)) from None     # no usable keyring
        if not _stored(server):       # e.g. keyring's null backend accepts and forgets
            raise SetupError('the keyring did not keep the key (its backend stores nothing; see '
                             f'`keyring --list-backends`); set {auth.ENV_VAR} instead')
    checked = 'stored' if args.no_check else 'accepted by the server and stored'
    echo(f'API key for {entry} {checked} in the keyring (service {auth.KEYRING_SERVICE!r}).')
    if os.environ.get(auth.ENV_VAR):
        warn(f'note: the {auth.ENV_VAR} environment variable is set, and it comes before the '
             'keyring.')
    return EXIT_OK
