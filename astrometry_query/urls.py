"""URLs of images: checked before anything is sent, and fetched."""
from urllib.parse import urlsplit

from .exceptions import InvalidInputError

__all__ = ['check_url', 'fetch_url']


def check_url(url):
    """An image URL: http(s), a host, no blanks, at most 200 characters (nova's column)."""
    if not isinstance(url, str):
        raise InvalidInputError(f'url must be a string, got {type(url).__name__}.')
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidInputError(f'url must not hold blanks or control characters, got {url!r}.')
    parts = urlsplit(url)
    if parts.scheme.lower() not in ('http', 'https'):
        raise InvalidInputError(f'url must be an http or https URL, got {url!r}.')
    if not parts.hostname:
        raise InvalidInputError(f'url has no host name: {url!r}.')
    try:
        parts.port          # a port must be a number in 0..65535
    except ValueError:
        raise InvalidInputError(f'url has a bad port: {url!r}.') from None
    if len(url) > 200:
        raise InvalidInputError(f'url must be at most 200 characters (nova stores 200), '
                                f'got {len(url)}.')
    return url


def fetch_url(url, path, *, allow_private=True, timeout=60):
    """Download url to path."""
    import requests
    with requests.get(url, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        with open(path, 'wb') as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
