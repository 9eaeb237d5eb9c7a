"""Internal: where the API key comes from: argument > conf.api_key >
environment variable > keyring.  The key itself is never logged, repr'd or cached."""
import os
from urllib.parse import urlparse

from astroquery import log

__all__ = ['ENV_VAR', 'KEYRING_SERVICE', 'find_api_key', 'store_api_key', 'keyring_user']

ENV_VAR = 'ASTROMETRY_NET_API_KEY'
KEYRING_SERVICE = 'astrometry_query'


def keyring_user(server):
    """The keyring entry name for a server: its host (and port)."""
    return urlparse(server).netloc or server


def _keyring():
    try:
        import keyring
        return keyring
    except Exception:   # keyring is optional at run time
        return None


def find_api_key(explicit, conf_value, server):
    """The API key to use and where it came from, or (None, None)."""
    if explicit:
        return explicit, 'argument'
    if conf_value:
        return conf_value, 'conf.api_key'
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], ENV_VAR
    keyring = _keyring()
    if keyring is not None:
        try:
            key = keyring.get_password(KEYRING_SERVICE, keyring_user(server))
        except Exception as exc:   # no usable keyring backend on this machine
            log.debug(f'keyring unavailable: {type(exc).__name__}')
            key = None
        if key:
            return key, 'keyring'
    return None, None


def store_api_key(server, key):
    """Save the key in the system keyring; raises RuntimeError if there is none."""
    keyring = _keyring()
    if keyring is None:
        raise RuntimeError('The keyring package is not installed: pip install keyring')
    try:
        keyring.set_password(KEYRING_SERVICE, keyring_user(server), key)
    except Exception as exc:
        raise RuntimeError(f'Could not store the API key in the keyring ({type(exc).__name__}); '
                           f'set the {ENV_VAR} environment variable instead.') from None


def forget_api_key(server):
    keyring = _keyring()
    if keyring is not None:
        try:
            keyring.delete_password(KEYRING_SERVICE, keyring_user(server))
        except Exception:
            pass
