"""Image URLs: the one check of a URL the package will fetch, and the one fetcher.

The client checks a URL before it submits it (`check_url`), the server before
it accepts an url_upload (`url_problem`), and whoever downloads an image
(the server's ingest, the local backend) uses `fetch_url`, which checks every
redirect again and bounds the size and duration of the download.  A server
refuses addresses of its own machine and network (server-side request
forgery); a user's own machine may fetch from them (``allow_private=True``).

This module imports nothing from the backends, the server or the facade.
"""
import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests

from .exceptions import InvalidInputError

__all__ = ['check_url', 'url_problem', 'fetch_url', 'copy_limited', 'MAX_URL_LENGTH',
           'MAX_DOWNLOAD', 'MAX_REDIRECTS']

#: nova stores URLs in a 200-character column.
MAX_URL_LENGTH = 200
#: Largest download, bytes: nova's uWSGI --limit-post (its largest upload).
MAX_DOWNLOAD = 500_000_000
#: Redirects followed before a download is refused.
MAX_REDIRECTS = 5


def url_problem(url):
    """Why ``url`` is not an http(s) URL that can be fetched, or '' when it is one.

    The rules: a string without blanks or control characters, scheme http or
    https, a host name, a valid port, at most `MAX_URL_LENGTH` characters.

    Returns
    -------
    str
        The problem, naming the argument (``url must be ...``), or ''.
    """
    if not isinstance(url, str):
        return f'url must be a string, got {type(url).__name__}.'
    if any(c.isspace() or not c.isprintable() for c in url):
        return f'url must not hold blanks or control characters, got {url!r}.'
    parts = urlsplit(url)
    if parts.scheme.lower() not in ('http', 'https'):
        return f'url must be an http or https URL, got {url!r}.'
    if not parts.hostname:
        return f'url has no host name: {url!r}.'
    try:
        parts.port          # a port must be a number in 0..65535
    except ValueError:
        return f'url has a bad port: {url!r}.'
    if len(url) > MAX_URL_LENGTH:
        return (f'url must be at most {MAX_URL_LENGTH} characters (nova stores '
                f'{MAX_URL_LENGTH}), got {len(url)}.')
    return ''


def check_url(url):
    """``url`` when `url_problem` finds nothing wrong with it.

    Raises
    ------
    `~astrometry_query.exceptions.InvalidInputError`
        Saying what is wrong with ``url``.
    """
    problem = url_problem(url)
    if problem:
        raise InvalidInputError(problem)
    return url


def _check_public(host):
    """Refuse hosts that resolve to this machine or a private network (SSRF)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise ValueError(f'url: cannot resolve {host!r} ({exc})') from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split('%')[0])
        if (address.is_private or address.is_loopback or address.is_link_local
                or address.is_reserved or address.is_multicast or address.is_unspecified):
            raise ValueError(f'url: {host!r} is a local or private address ({address}); '
                             'this server fetches public URLs only (--allow-private-urls)')


def fetch_url(url, dest, timeout=10.0, *, allow_private=False, max_bytes=MAX_DOWNLOAD,
              deadline=120.0, max_redirects=MAX_REDIRECTS):
    """Download ``url`` to the file ``dest`` as nova's worker does (GET with
    User-Agent Mozilla/5.0, redirects followed, HTTP errors raised), within limits.

    Parameters
    ----------
    url : str
        An http(s) URL (`url_problem` is asked about it and every redirect).
    dest : path-like
        The file to write (replaced).
    timeout : float
        Seconds without an answer or a byte before the download fails.
    allow_private : bool
        Fetch from loopback, link-local and private addresses too: for a user's
        own machine.  Off (a server), each host, redirects included, must
        resolve to public addresses only.
    max_bytes : int, optional
        Largest download, bytes (None: `MAX_DOWNLOAD`).
    deadline : float, optional
        Longest whole download, seconds (None: no limit).
    max_redirects : int
        Redirects followed.

    Raises
    ------
    ValueError
        A bad URL, a refused address, too many redirects, too many bytes or
        seconds; `requests.HTTPError` for an HTTP error status.
    """
    ends = None if deadline is None else time.monotonic() + deadline
    for _ in range(max_redirects + 1):
        problem = url_problem(url)
        if problem:
            raise ValueError(problem)
        if not allow_private:
            _check_public(urlsplit(url).hostname)
        with requests.get(url, headers={'User-Agent': 'Mozilla/5.0'}, timeout=timeout,
                          stream=True, allow_redirects=False) as resp:
            if resp.is_redirect:
                url = urljoin(url, resp.headers.get('Location', ''))
                continue
            resp.raise_for_status()
            with open(dest, 'wb') as out:
                copy_limited(resp.iter_content(1 << 16), out, max_bytes, ends)
            return
    raise ValueError('url: too many redirects')


def copy_limited(chunks, out, max_bytes=MAX_DOWNLOAD, deadline=None):
    """Write byte chunks to the file ``out``, refusing more than ``max_bytes``
    (None: `MAX_DOWNLOAD`; downloads, gzip bombs) or going on past ``deadline``
    (a `time.monotonic` time).

    Raises
    ------
    ValueError
        Past either limit (what was written stays: the caller removes it).
    """
    limit, size = max_bytes or MAX_DOWNLOAD, 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ValueError(f'data larger than {limit} bytes')
        if deadline is not None and time.monotonic() > deadline:
            raise ValueError('the download took too long')
        out.write(chunk)
