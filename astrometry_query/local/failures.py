"""Why a search found nothing, in terms a user can act on.

A failed solve says what was searched and what came closest: the number of
sources the engine was given, the pixel scales and the sky area searched, the
index files it consulted, the best match it found (its log-odds, against the
20.7 a solution needs), and the next step worth trying.  The engine says
which index files it tried and its best matches when run verbosely
(``astrometry-engine -v``); `engine_search` reads that from its log.
"""
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from .._text import plural

__all__ = ['EngineSearch', 'engine_search', 'index_names_text', 'failure_details',
           'SOLVE_LOGODDS']

#: The log-odds a match needs to be accepted (odds of 10^9 to 1), the engine's default.
SOLVE_LOGODDS = math.log(1e9)
#: Fewer sources than this rarely make enough quads in a hard field.
FEW_SOURCES = 20
#: A best match at least this close to acceptance (log-odds) is worth a wider search around it.
NEAR_LOGODDS = 12.0

_TRYING = re.compile(r'^Trying index (\S+?)\.\.\.\s*$')
_NOT_SOLVED = re.compile(r'did not solve \(index (\S+?)[,)]')
_BEST = re.compile(r'new best match: logodds ([-+0-9.eE]+)')
_THRESHOLD = re.compile(r'Set odds ratio to solve to \S+ \(log = ([-+0-9.eE]+)\)')


@dataclass
class EngineSearch:
    """What one engine run reported of its search.

    Attributes
    ----------
    indexes : list of str
        Index file names consulted, in the order the engine tried them.
    best_logodds : float or None
        The best match's log-odds (None: no quad matched at all).
    best_index : str or None
        The index file of that match, when the log says.
    threshold : float
        The log-odds needed to accept a match.
    """
    indexes: list = field(default_factory=list)
    best_logodds: float | None = None
    best_index: str | None = None
    threshold: float = SOLVE_LOGODDS


def engine_search(log):
    """Read the index files tried and the best match from an engine's log
    (verbose: ``-v``; without it only the index files that did not solve)."""
    found = EngineSearch()
    # The ones tried in turn, the run's list (inparallel), those the quiet log names.
    tried, listed, unsolved = [], [], []
    current, listing = None, False
    for line in (log or '').splitlines():
        stripped = line.strip()
        if listing:         # inparallel: "indexes:" then one indented path a line
            if line.startswith('  ') and stripped.endswith('.fits'):
                _add(listed, stripped)
                continue
            listing = False
        if stripped == 'indexes:':
            listing = True
            continue
        match = _TRYING.match(stripped)
        if match:
            current = _add(tried, match.group(1))
            continue
        match = _NOT_SOLVED.search(stripped)
        if match:
            _add(unsolved, match.group(1))
            continue
        match = _BEST.search(stripped)
        if match:
            try:
                value = float(match.group(1).rstrip('.'))
            except ValueError:
                continue
            if found.best_logodds is None or value > found.best_logodds:
                found.best_logodds, found.best_index = value, current
            continue
        match = _THRESHOLD.search(stripped)
        if match:
            try:
                found.threshold = float(match.group(1).rstrip('.'))
            except ValueError:
                pass
    found.indexes = tried or listed or unsolved
    return found


def _add(names, path):
    name = PurePath(path).name
    if name not in names:
        names.append(name)
    return name


def index_names_text(names, most=4):
    """Index file names in short: a numbered series as a range
    ('index-tycho2-07..15, 9 files'), else the first few names."""
    if not names:
        return 'no index file'
    parts = [re.fullmatch(r'(.*?)(\d+)((?:\.[A-Za-z]+)*\.fits)', n) for n in names]
    if len(names) > 1 and all(parts) and len({(p.group(1), p.group(3)) for p in parts}) == 1:
        numbers = sorted(p.group(2) for p in parts)
        return f'{parts[0].group(1)}{numbers[0]}..{numbers[-1]} ({len(names)} files)'
    shown = ', '.join(names[:most])
    return shown + (f' and {len(names) - most} more' if len(names) > most else '') + \
        f' ({plural(len(names), "file")})'


def _best_text(search):
    if search is None:
        return 'the engine did not say what it matched'
    if search.best_logodds is None:
        return 'no candidate match scored above log-odds 0 (even odds)'
    where = f' in {search.best_index}' if search.best_index else ''
    return (f'the best match found{where} had log-odds {search.best_logodds:.1f} '
            f'(a solution needs {search.threshold:.1f})')


def _next_step(settings, low, high, n_sources, search, has_position, has_scale):
    """The one next step most worth trying, in words."""
    if n_sources < FEW_SOURCES:
        return (f'more sources: only {n_sources} were used; lower detect_threshold (e.g. 3) or '
                'use a longer exposure')
    if search is not None and not search.indexes:
        return ('another index series: no installed index file matches the scale range '
                '(see `astrometry-query index download --help`)')
    near = search is not None and search.best_logodds is not None and \
        search.best_logodds >= NEAR_LOGODDS
    if not has_scale:
        return ('give the pixel scale (scale=(low, high) * u.arcsec / u.pix, from the focal '
                'length and pixel size): a blind search of every scale is the hardest')
    wider = f'{0.7 * low:.3g}-{1.4 * high:.3g} arcsec/pixel' if low and high else 'a wider range'
    if settings.get('parity') in (0, 1):
        return (f'let the parity be either (parity=2), and widen the scale range to {wider}')
    if has_position:
        radius = float(settings.get('radius') or 0)
        if near:
            return (f'widen the search around the position: radius {max(2 * radius, 1):.3g} deg '
                    f'(the best match came close), and the scale range to {wider}')
        return (f'widen the scale range to {wider} (the true scale may lie outside it), and '
                f'check the position: a radius of {max(3 * radius, 2):.3g} deg covers a larger '
                'pointing error')
    return (f'widen the scale range to {wider}, or give the position (center=..., '
            'radius=...) so that a longer search is spent where the field is')


def failure_details(settings, low, high, n_sources, search, *, has_position, has_scale):
    """The sentence a failed search adds: sources used, index files consulted,
    the best match, and the next step.

    Parameters
    ----------
    settings : dict
        The widest search's nova arguments.
    low, high : float or None
        Its pixel scale bounds (arcsec/pixel).
    n_sources : int
        Sources given to the engine.
    search : `EngineSearch` or None
        What the engine's log said.
    has_position, has_scale : bool
        Whether the search (or the hints tried first) had them.
    """
    consulted = index_names_text(search.indexes if search else [])
    return (f'{plural(n_sources, "source")} used; index files consulted: {consulted}; '
            f'{_best_text(search)}.  Next: '
            f'{_next_step(settings, low, high, n_sources, search, has_position, has_scale)}')
