"""One solve as one plain function: pixels or a source list in, a record out.

`solve` extracts sources in process (sep, windowed centroids, full
resolution), builds the .axy in process, runs ``astrometry-engine`` on it,
and returns a `SolveResult` with the WCS and nova's calibration numbers.
It keeps no global state and its arguments and result pickle, so it runs
the same on a thread, in a process pool or on a Dask worker.  The local
backend, the server's workers and batches all call it.

Header hints (`astrometry_query.hints`) are tried first and dropped one by
one when the hinted search finds nothing, within the same time limit.
"""
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..jobs.files import AXY_FILE, ENGINE_LOG
from ..exceptions import InvalidInputError
from ..files import atomic_path
from ..hints import SolveHints, header_hints
from ..index.coverage import check_field
from ..images import open_image
from ..results import calibration_from_wcs
from ..settings import scale_bounds
from .._text import plural
from ..tracking import MIN_TRACKED, track
from .axy import OUTPUT_FILES, write_axy
from .failures import engine_search, failure_details
from .refine import (MIN_MATCHES as MIN_REFIT, note_order, query_budget, refine_wcs,
                     reference_stars)
from .search import blind_search_plan, run_split_search
from .selection import extract_for_engine
from .solver import find_installation, run_engine

__all__ = ['solve', 'SolveResult', 'AXY_FILE', 'ENGINE_LOG', 'MIN_SOURCES']

#: Fewer sources than this cannot make enough quads to solve.
MIN_SOURCES = 5
#: Seconds a search narrowed by a header pointing may take before the next, wider
#: one (a right pointing solves in a fraction of a second; a wrong one can make the
#: engine try every quad within the radius for many seconds).
_POSITION_LIMIT = 2.0
#: Share of the time limit a scale-only search may take before the blind one.
_SCALE_SHARE = 0.25


@dataclass
class SolveResult:
    """The outcome of one `solve`.

    Attributes
    ----------
    solved : bool
    wcs_header : str or None
        The solution (TAN-SIP) as FITS header text.
    calibration : dict or None
        nova's calibration numbers (``ra``, ``dec``, ``radius``, ``pixscale``...).
    width, height : int
        The field size solved.
    n_sources : int
        Sources found (the engine is given at most 1000 of them, fewer when
        they crowd: see ``attempts``).
    elapsed : float
        Wall-clock seconds of the whole solve.
    timings : dict
        Seconds per step (``extract``, ``engine``, ``wcs``, ``refit``).
    attempts : list of dict
        Each engine run: the hints it used, seconds, whether it solved, and the
        log-odds of its solution (``logodds``, None when it found none).
    hints : list of str
        The header cards behind the attempt that solved.
    refit : dict or None
        The refit against all catalogue stars in the field (``order``: the
        SIP order used, ``order_from``: ``'data'`` when chosen by held-out
        stars, ``'tweak_order'`` when given; matches, RMS), when it improved
        on the engine's solution (the header's ``AN_ORDER`` says the order
        either way).
    tracking : dict or None
        With a ``reference``: ``tracked`` (whether following the reference's
        field solved the frame, with no search), and when it did ``matches``,
        ``rms``, ``shift`` and ``roll`` (see `~astrometry_query.tracking.track`).
    timed_out : bool
        The time limit stopped the search.
    error : str or None
        Why it did not solve.
    error_kind : str or None
        ``'index_coverage'`` when the installed index files cannot solve the
        field (the error then says what to fetch), ``'too_few_sources'``,
        ``'engine'`` (the engine failed to run), else None (a search that
        found nothing, or ran out of time: see ``timed_out``).
    work_dir : str or None
        Where the .axy, WCS, corr and rdls files are (None if temporary).
    files : dict
        ``{name: bytes}`` of those files when the work directory was temporary.
    sources : dict
        ``x``, ``y``, ``flux`` of the sources used (FITS 1-based), when extracted here.
    worker : str
        ``host:pid`` of the process that solved (a thread, a process pool, a Dask worker).
    search_hints : dict or None
        The header hints the search was given (``scale``, ``position``...:
        `~astrometry_query.hints.SolveHints` as a dict), for the equivalent
        solve-field command line.
    """
    solved: bool
    wcs_header: str | None = None
    calibration: dict | None = None
    width: int = 0
    height: int = 0
    n_sources: int = 0
    elapsed: float = 0.0
    timings: dict = field(default_factory=dict)
    attempts: list = field(default_factory=list)
    hints: list = field(default_factory=list)
    refit: dict | None = None
    tracking: dict | None = None
    timed_out: bool = False
    error: str | None = None
    error_kind: str | None = None
    work_dir: str | None = None
    files: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    worker: str | None = None
    search_hints: dict | None = None

    def __repr__(self):        # not the header text nor the file bytes
        from ..reprs import solve_result_text
        return solve_result_text(self)

    def header(self):
        """The solution as an `~astropy.io.fits.Header` (None when not solved)."""
        return fits.Header.fromstring(self.wcs_header) if self.wcs_header else None

    def to_dict(self):
        """JSON-ready: everything but the file bytes and the sources."""
        out = asdict(self)
        out.pop('files')
        out.pop('sources')
        return out


def _attempt_limits(attempts, timeout):
    """Seconds for each attempt: narrow ones are short, the last gets the rest."""
    limits = []
    for i, args in enumerate(attempts):
        if i == len(attempts) - 1:
            limits.append(timeout)
        elif 'center_ra' in args:
            limits.append(_POSITION_LIMIT)
        else:
            limits.append(max(5.0, _SCALE_SHARE * timeout))
    return limits


def _run_search(work_dir, limit, inst, blind, workers):
    """One engine run on the .axy; a blind one joined by engines searching the
    index files apart when it does not solve at once (`.search`)."""
    plan = blind_search_plan(inst.index_files, workers) if blind else None
    if plan is not None:
        return run_split_search(work_dir / AXY_FILE, work_dir, plan[0], delays=plan[1],
                                timeout=limit, installation=inst, wcs_name=OUTPUT_FILES['wcs'])
    return run_engine(work_dir / AXY_FILE, work_dir, timeout=limit, installation=inst,
                      inparallel=blind, wcs_name=OUTPUT_FILES['wcs'])


def _engine_attempts(axy_args, hints, width, height, timeout, work_dir, x, y, flux, inst,
                     workers=None, flag=None):
    """Run the engine on each attempt until one solves; returns (outcome, attempts, used)."""
    tries = hints.attempts(axy_args) if hints else [axy_args]
    deadline = time.monotonic() + timeout
    records, outcome, used = [], None, []
    for args, limit in zip(tries, _attempt_limits(tries, timeout)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            records.append({'hints': [], 'seconds': 0.0, 'solved': False, 'timed_out': True,
                            'sources': 0, 'logodds': None})
            break
        limit = min(limit, remaining)
        n = write_axy(work_dir / AXY_FILE, x, y, flux, args, width, height, cpulimit=limit,
                      flag=flag)
        blind = scale_bounds(args, width, height) == (None, None)
        outcome = _run_search(work_dir, limit, inst, blind, workers)
        hinted = [k for k in ('center_ra', 'scale_lower') if k in args and k not in axy_args]
        records.append({'hints': hinted, 'seconds': round(outcome.elapsed, 4),
                        'solved': outcome.solved, 'timed_out': outcome.timed_out, 'sources': n,
                        'logodds': outcome.logodds,
                        'engines': outcome.split['engines'] if outcome.split else 1})
        (work_dir / ENGINE_LOG).write_text(outcome.log)
        if outcome.solved:
            used = [source for key, source in (('scale_lower', hints and hints.scale_source),
                                               ('center_ra', hints and hints.position_source))
                    if key in hinted and source]
            break
        if outcome.returncode and not outcome.timed_out:
            break       # the engine failed to run: a wider search would fail the same way
    return outcome, records, used


def searched_text(settings, width, height, tried=()):
    """What a search covered, in words: its pixel scale range and sky area
    (from ``settings``), and the header cards whose hints were tried first.

    >>> searched_text({'scale_units': 'arcsecperpix', 'scale_lower': 2, 'scale_upper': 3,
    ...                'center_ra': 83.8, 'center_dec': -5.4, 'radius': 1}, 600, 400)
    'pixel scales of 2-3 arcsec/pixel, within 1 deg of RA 83.8000 Dec -5.4000'
    """
    low, high = scale_bounds(settings, width, height)
    if low and high:
        scale = f'pixel scales of {low:.3g}-{high:.3g} arcsec/pixel'
    elif low or high:
        scale = f'pixel scales {"above" if low else "below"} {low or high:.3g} arcsec/pixel'
    else:
        scale = 'any pixel scale'
    if all(settings.get(k) is not None for k in ('center_ra', 'center_dec')) and \
            settings.get('radius'):
        where = (f'within {float(settings["radius"]):.3g} deg of RA '
                 f'{float(settings["center_ra"]) % 360:.4f} Dec {float(settings["center_dec"]):+.4f}')
    else:
        where = 'over the whole sky'
    text = f'{scale}, {where}'
    if tried:
        where = [f"the header's {t}" if t != 'reference frame' else f'the {t}'
                 for t in dict.fromkeys(tried)]
        text += f" (first narrowed by {' and '.join(where)})"
    return text


def _tried(attempts, hints):
    """The header cards whose hints the engine runs used."""
    keys = {k for attempt in attempts for k in attempt['hints']}
    return [source for key, source in (('scale_lower', hints and hints.scale_source),
                                       ('center_ra', hints and hints.position_source))
            if key in keys and source]


def _search_details(settings, hints, width, height, outcome, n_sources):
    """Sources used, index files consulted, best match and the next step
    (`~astrometry_query.local.failures.failure_details`)."""
    low, high = scale_bounds(settings, width, height)
    if (low, high) == (None, None) and hints and hints.scale:
        low, high = scale_bounds(hints.scale, width, height)
    return failure_details(
        settings, low, high, n_sources, engine_search(outcome.log) if outcome else None,
        has_position='center_ra' in settings or bool(hints and hints.position),
        has_scale=(low, high) != (None, None))


def _no_solution(settings, hints, width, height, tried=(), *, outcome=None, n_sources=0):
    """Why nothing was found, in terms of what the search was given and covered,
    what it consulted and came closest to, and what to try next."""
    searched = searched_text(settings, width, height, tried)
    details = _search_details(settings, hints, width, height, outcome, n_sources)
    return f'no solution was found searching {searched}: {details}'


def _track(reference, x, y, flux, width, height, inst, fwhm, peak=None, ref_sources=None):
    """The frame solved by following the reference's field, and the catalogue
    stars of that field; (None, None) when it does not follow."""
    if peak is not None and flux is not None and fwhm >= 1.5:
        # Hot pixels and cosmic rays hold their flux in a pixel or two: under
        # thick cloud they outnumber the stars left, and are no field to follow.
        star_like = peak < 0.5 * flux
        x, y, flux = x[star_like], y[star_like], flux[star_like]
    if not inst.query_starkd or len(x) < MIN_TRACKED:
        return None, None
    try:
        order = np.argsort(-flux, kind='stable') if flux is not None else np.arange(len(x))
        tan = calibration_from_wcs(reference, width, height)
        shift = max(30.0, 0.1 * max(width, height))         # tracking's own default
        radius = tan['radius'] + shift * tan['pixscale'] / 3600.0
        ra, dec, mag = reference_stars(inst.index_files, tan['ra'], tan['dec'], 1.05 * radius,
                                       query_starkd=inst.query_starkd)
        return track(x[order], y[order], reference, ra, dec, ref_mag=mag, width=width,
                     height=height, max_shift=shift, fwhm=fwhm,
                     flux=None if flux is None else flux[order],
                     ref_sources=ref_sources), (ra, dec, mag)
    except Exception:       # a search will do
        return None, None


def _tracked_result(result, tracked, stars, x, y, flux, settings, inst, good, fwhm, work_dir,
                    started, flips_y):
    """The SolveResult of a frame solved by tracking: its WCS refitted to every
    catalogue star when there are enough, written where the engine writes it."""
    header = tracked.header
    if tracked.matches >= MIN_REFIT:
        t0 = time.perf_counter()
        refit = _refine(header, x, y, result.width, result.height, settings, inst, good, fwhm,
                        stars)
        if refit is not None:
            header = refit.header
            result.refit = refit.to_dict()
        result.timings['refit'] = round(time.perf_counter() - t0, 4)
    result.solved = True
    result.wcs_header = header.tostring()
    result.calibration = calibration_from_wcs(header, result.width, result.height,
                                              flip_orientation=flips_y)
    # The WCS and the sources, where a search would have left them.
    work = Path(tempfile.mkdtemp(prefix='aq-track-')) if work_dir is None \
        else Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        _write_header(work / OUTPUT_FILES['wcs'], header)
        write_axy(work / AXY_FILE, x, y, flux, settings, result.width, result.height)
        if work_dir is None:
            result.files = {name: (work / name).read_bytes()
                            for name in (OUTPUT_FILES['wcs'], AXY_FILE)}
        else:
            result.work_dir = str(work)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    result.elapsed = time.perf_counter() - started
    return result


def _near(reference, hints, width, height):
    """Hints searching near a reference's field first: its pixel scale (within
    5 %) and, unless the header points elsewhere, its pointing (within twice
    the field's radius).  Hints: a search without them follows if they fail."""
    tan = calibration_from_wcs(reference, width, height)
    near = SolveHints.from_dict(hints.to_dict()) if hints else SolveHints()
    near.scale = {'scale_units': 'arcsecperpix', 'scale_lower': 0.95 * tan['pixscale'],
                  'scale_upper': 1.05 * tan['pixscale']}
    near.scale_source = 'reference frame'
    if not near.position:
        near.position = {'center_ra': tan['ra'], 'center_dec': tan['dec'],
                         'radius': 2 * tan['radius']}
        near.position_source = 'reference frame'
    return near


def _without_uncovered(hints, coverage):
    """The header hints minus the one the installed index files cannot serve
    (its hinted search could not succeed; a wrong header must not stop the solve)."""
    if hints is None:
        return None
    kept = SolveHints.from_dict(hints.to_dict())
    if coverage.limit == 'scale':
        kept.scale, kept.scale_source = {}, ''
    else:
        kept.position, kept.position_source = {}, ''
    return kept or None


def _engine_error(outcome):
    """What an engine run that stopped with an error said."""
    lines = [ln.strip() for ln in outcome.log.splitlines() if ln.strip()]
    telling = [ln for ln in lines if 'error' in ln.lower() or 'fail' in ln.lower()] or lines
    return (f'astrometry-engine failed (exit {outcome.returncode}): '
            f'{telling[-1][:300] if telling else "(no output)"}')


def _refine(header, x, y, width, height, settings, inst, good=None, fwhm=3.0, stars=None):
    """The engine's WCS refitted to every catalogue star in the field (``stars``:
    (ra, dec, mag) when they were queried already), or None."""
    usable = len(x) if good is None else int(np.count_nonzero(good))
    if not inst.query_starkd or usable < MIN_REFIT:
        return None     # it could not match enough stars: no catalogue query for nothing
    try:
        tan = calibration_from_wcs(header, width, height)
        ra, dec, mag = stars or reference_stars(inst.index_files, tan['ra'], tan['dec'],
                                                1.05 * tan['radius'],
                                                query_starkd=inst.query_starkd,
                                                max_stars=query_budget(len(x)))
        tweak = settings.get('tweak_order')
        order = None if tweak is None else max(1, int(tweak))
        return refine_wcs(header, x, y, width, height, ra, dec, order=order, good=good,
                          isolation=max(4.0, 2.0 * fwhm), ref_mag=mag)
    except Exception:       # the engine's solution stands
        return None


def _write_header(path, header):
    with atomic_path(path) as tmp:
        fits.PrimaryHDU(header=header).writeto(tmp, overwrite=True, output_verify='silentfix')


def solve(image=None, sources=None, *, width=None, height=None, settings=None, hints=None,
          fwhm=3.0, detect_threshold=5.0, timeout=300.0, index_dir=None, work_dir=None, hdu=None,
          reference=None, reference_sources=None, search_workers=None):
    """Plate-solve an image or a source list with ``astrometry-engine``.

    Parameters
    ----------
    image : path, HDUList, HDU, ndarray, NDData or `~astrometry_query.images.Image`, optional
        The image (sources are extracted from it here).
    sources : dict or Table, optional
        Instead of an image: ``x``, ``y`` (FITS 1-based) and optionally
        ``flux`` (then sorted brightest first; else used in the given order).
    width, height : int, optional
        Field size; required with ``sources``.
    settings : dict, optional
        nova submission arguments (scale, position, parity, tweak_order...),
        already validated.
    hints : `~astrometry_query.hints.SolveHints`, dict, 'header' or 'verify', optional
        Header hints, tried first and dropped if the hinted search fails;
        'header': read them here from the image's header (trusted: a hint no
        index file can serve fails the solve at once); 'verify': the same, but
        such a hint is dropped and the search goes on.
    fwhm, detect_threshold : float
        Extraction: star FWHM (pixels) and threshold (sigma).
    timeout : float
        Seconds for the whole solve (extraction and every engine run).
    index_dir : path or list of paths, optional
        Index files (default: the astrometry.net configuration's).
    work_dir : path, optional
        Where to keep the .axy, WCS, corr and rdls files; default a
        temporary directory whose files come back in ``SolveResult.files``.
    hdu : int or str, optional
        Which HDU of a FITS image.
    reference : `~astropy.io.fits.Header` or str, optional
        The WCS of a solved frame of the same field (a sequence): the frame is
        first solved by following that field (`~astrometry_query.tracking.track`:
        no search, three stars are enough); when it does not show that field,
        it is searched, first around the reference's pointing and scale.
    reference_sources : dict, optional
        ``x``, ``y`` of the reference frame's own sources (FITS 1-based): a
        frame that follows its field is registered on them, star by star.
    search_workers : int, optional
        A search with no scale hint that one engine has not finished within
        0.2 s is joined by this many engine processes, each on its
        share of the index files; the first to solve stops the others.
        None or 0: one per index file (at most 16); 1: a single engine.

    Returns
    -------
    SolveResult
        Never raises for a field that does not solve; raises
        `~astrometry_query.exceptions.InvalidInputError` for unusable input
        and `~astrometry_query.exceptions.LocalSolverNotFoundError` when
        astrometry.net is missing.
    """
    started = time.perf_counter()
    settings = dict(settings or {})
    hints = SolveHints.from_dict(hints) if isinstance(hints, dict) else hints
    from_header = hints in ('header', 'verify')
    verify, hints = hints == 'verify', None if from_header else hints
    inst = find_installation(index_dir)
    timings = {}
    extracted = {}
    if (image is None) == (sources is None):
        raise InvalidInputError('Give an image or a source list (not both).')
    if image is not None:
        img = open_image(image, hdu=hdu)
        height, width = img.shape
        if from_header:
            hints = header_hints(img.header, img.shape, img.wcs(), verify=verify) or None
    elif not (width and height):
        raise InvalidInputError('width and height are needed with a source list.')
    coverage = check_field(inst.index_files, int(width), int(height), settings, hints,
                           index_dirs=inst.index_dirs, explicit_dirs=index_dir is not None)
    if not coverage.ok:
        if coverage.hard:       # no search can succeed: say so now, with the fix
            return SolveResult(solved=False, width=int(width), height=int(height),
                               error=coverage.message, error_kind='index_coverage',
                               elapsed=time.perf_counter() - started,
                               worker=f'{socket.gethostname()}:{os.getpid()}')
        hints = _without_uncovered(hints, coverage)     # the header may be wrong: search on
    if image is not None:
        downsample = settings.get('downsample_factor') or None
        # A crowd (a cluster) holding the brightest sources: deeper, for the stars
        # around it, which the selection (local.selection) puts first.
        table = extract_for_engine(img, fwhm=fwhm, detect_threshold=detect_threshold,
                                   downsample=min(int(downsample), 4) if downsample else None,
                                   invert=bool(settings.get('invert')))
        timings['extract'] = round(table.meta['elapsed'], 4)
        x, y, flux = (np.asarray(table[c], float) for c in ('x', 'y', 'flux'))
        good = np.asarray(table['flag']) == 0
        extracted = {'x': x, 'y': y, 'flux': flux, 'flag': np.asarray(table['flag'])}
    else:
        x = np.asarray(sources['x'], float)
        y = np.asarray(sources['y'], float)
        flux = sources['flux'] if 'flux' in getattr(sources, 'keys', lambda: [])() or (
            hasattr(sources, 'colnames') and 'flux' in sources.colnames) else None
        flux = None if flux is None else np.asarray(flux, float)
        good = None
    width, height = int(width), int(height)
    result = SolveResult(solved=False, width=width, height=height, n_sources=len(x),
                         timings=timings, sources=extracted,
                         worker=f'{socket.gethostname()}:{os.getpid()}',
                         search_hints=hints.to_dict() if hints else None)
    if reference is not None:
        reference = (fits.Header.fromstring(reference) if isinstance(reference, str)
                     else fits.Header(reference))
        t0 = time.perf_counter()
        ref_xy = None if not reference_sources else (reference_sources['x'],
                                                     reference_sources['y'])
        tracked, stars = _track(reference, x, y, flux, width, height, inst, fwhm,
                                peak=None if image is None else np.asarray(table['peak'], float),
                                ref_sources=ref_xy)
        timings['track'] = round(time.perf_counter() - t0, 4)
        result.tracking = dict(tracked.to_dict(), tracked=True) if tracked else {'tracked': False}
        if tracked is not None:
            return _tracked_result(result, tracked, stars, x, y, flux, settings, inst, good,
                                   fwhm, work_dir, started, image is not None and img.flips_y)
        hints = _near(reference, hints, width, height)     # searched near it first
    if len(x) < MIN_SOURCES:
        result.error = (f'only {plural(len(x), "source was", "sources were")} found: at least '
                        f'{MIN_SOURCES} are needed, so no index file was consulted and '
                        f'{searched_text(settings, width, height)} was not searched.  Next: '
                        'check the image (exposure, focus, a cap left on), or lower '
                        'detect_threshold')
        result.error_kind = 'too_few_sources'
        result.elapsed = time.perf_counter() - started
        return result
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix='aq-solve-')) if temporary else Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        remaining = timeout - (time.perf_counter() - started)
        t0 = time.perf_counter()
        outcome, result.attempts, result.hints = _engine_attempts(
            settings, hints, width, height, remaining, work, x, y, flux, inst, search_workers,
            flag=extracted.get('flag'))
        timings['engine'] = round(time.perf_counter() - t0, 4)
        solved = bool(outcome and outcome.solved)
        # Only the widest search reached decides: an earlier hinted one is cut short on purpose.
        result.timed_out = not solved and bool(result.attempts) and result.attempts[-1]['timed_out']
        if outcome is not None and not solved and outcome.returncode and not outcome.timed_out:
            result.error, result.error_kind = _engine_error(outcome), 'engine'
        elif not solved and not coverage.ok:
            result.error = (f'{coverage.reason} A search without those header hints found '
                            f'nothing either. {coverage.fix}')
            result.error_kind = 'index_coverage'
        elif not solved and coverage.thin:     # more telling than 'no match' or a timeout
            result.error = (f'{coverage.reason} The search found no match'
                            f'{" within the time limit" if result.timed_out else ""}. '
                            f'{coverage.fix}')
            result.error_kind = 'index_coverage'
        elif not solved:
            tried = _tried(result.attempts, hints)
            used = max([a.get('sources') or 0 for a in result.attempts] or [0]) or len(x)
            result.error = (f'the time limit ({timeout:g} s) stopped the search of '
                            f'{searched_text(settings, width, height, tried)}: '
                            f'{_search_details(settings, hints, width, height, outcome, used)}; '
                            'or give a longer solve_timeout'
                            if result.timed_out
                            else _no_solution(settings, hints, width, height, tried,
                                              outcome=outcome, n_sources=used))
        else:
            t0 = time.perf_counter()
            header = fits.getheader(outcome.wcs_path)
            timings['wcs'] = round(time.perf_counter() - t0, 4)
            t0 = time.perf_counter()
            refit = _refine(header, x, y, width, height, settings, inst, good, fwhm)
            if refit is not None:
                header = refit.header
                result.refit = refit.to_dict()
            else:       # the engine's solution stands: say its order
                header = note_order(header, settings.get('tweak_order'))
            _write_header(outcome.wcs_path, header)
            timings['refit'] = round(time.perf_counter() - t0, 4)
            result.solved = True
            result.wcs_header = header.tostring()
            result.calibration = calibration_from_wcs(
                header, width, height, flip_orientation=image is not None and img.flips_y)
        if temporary:
            result.files = {name: (work / name).read_bytes() for name in
                            (AXY_FILE, ENGINE_LOG, *OUTPUT_FILES.values()) if (work / name).is_file()}
        else:
            result.work_dir = str(work)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    result.elapsed = time.perf_counter() - started
    return result

