"""Can the installed index files solve this field?  Asked before solving.

The engine uses an index file only when its quads fit the field: quads of
at least 10 % of the field's short side at the smallest pixel scale allowed,
and at most its diagonal at the largest (``engine.c``: ``quad_size_fraction``
0.1 to 1.0).  With a pointing, it also skips tiles away from it.  When no
installed file qualifies, a search cannot succeed however long it runs:
`check_field` says so at once, with what to fetch and the command that
fetches it.
"""
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord

from ..settings import scale_bounds
from .installed import describe_scales, index_infos
from .locations import default_destination
from .series import QUAD_SCALES, get_series
from .tiles import tiles_around

__all__ = ['Coverage', 'check_field', 'field_quad_range', 'suggest_scales', 'fix_text']

#: The engine's quad sizes as fractions of the field (its defaults).
QUAD_FRACTION_MIN, QUAD_FRACTION_MAX = 0.1, 1.0
#: Suggested scales have quads from this fraction of the field width up to the width.
SUGGEST_FRACTION = 0.35
#: Debian's Tycho-2 packages (the 4100 series) by scale.
_DEBIAN_PACKAGES = {7: 'astrometry-data-tycho2-07-littleendian',
                    8: 'astrometry-data-tycho2-08-littleendian',
                    9: 'astrometry-data-tycho2-09-littleendian',
                    **{s: 'astrometry-data-tycho2-10-19-littleendian' for s in range(10, 20)}}


@dataclass
class Coverage:
    """What `check_field` found.

    Attributes
    ----------
    ok : bool
        Some installed index file can solve the field as described.
    thin : bool
        It can, but only with quads larger than the field's recommended range
        (10-100 % of its size): a solve needs stars near its corners and
        seldom succeeds.  ``reason`` and ``fix`` then say so, for the error
        when the search fails.
    hard : bool
        The limit that fails comes from the user's settings or from header
        hints that are trusted (a search cannot succeed), not from hints that
        may be wrong (``header_hints='verify'``).
    reason : str
        Why not (empty when ok).
    fix : str
        What to fetch or build, with the command.
    command : str
        The download command alone ('' when none applies).
    limit : str
        ``'scale'`` or ``'position'``: what the installed files do not cover.
    needed_scales : list of int
    usable : list
        The `~astrometry_query.index.installed.IndexInfo` of the files that qualify.
    """
    ok: bool = True
    thin: bool = False
    hard: bool = False
    reason: str = ''
    fix: str = ''
    command: str = ''
    limit: str = ''
    needed_scales: list = field(default_factory=list)
    usable: list = field(default_factory=list)

    @property
    def message(self):
        return f'{self.reason} {self.fix}'.strip()


def field_quad_range(width, height, scale_low, scale_high):
    """(smallest, largest) quad in arcmin the engine looks for in a field of
    ``width`` x ``height`` pixels at ``scale_low``-``scale_high`` arcsec/pixel
    (either may be None: unbounded)."""
    low = QUAD_FRACTION_MIN * min(width, height) * scale_low / 60.0 if scale_low else 0.0
    high = (QUAD_FRACTION_MAX * math.hypot(width, height) * scale_high / 60.0
            if scale_high else math.inf)
    return low, high


def _overlaps(info, low, high):
    return not (low > info.quad_max or high < info.quad_min)


def covers(info, ra, dec, radius):
    """Whether an index file holds stars within ``radius`` deg of (ra, dec)."""
    position = SkyCoord(ra, dec, unit='deg')
    if info.cone is not None:
        centre = SkyCoord(info.cone[0], info.cone[1], unit='deg')
        return centre.separation(position).deg <= info.cone[2] + radius
    if info.all_sky:
        return True
    return info.healpix in tiles_around(position, radius * u.deg, info.nside)


def suggest_scales(width, height, scale_low, scale_high):
    """Preset scales worth having for a field: quads from `SUGGEST_FRACTION`
    of its width up to its width."""
    low = SUGGEST_FRACTION * min(width, height) * (scale_low or scale_high) / 60.0
    high = max(width, height) * (scale_high or scale_low) / 60.0
    return [s for s, (q0, q1) in QUAD_SCALES.items() if not (low >= q1 or high <= q0)]


def _span(scales):
    scales = sorted(scales)
    if scales == list(range(scales[0], scales[-1] + 1)) and len(scales) > 1:
        return f'{scales[0]}-{scales[-1]}'
    return ','.join(str(s) for s in scales)


def _size_text(nbytes):
    if nbytes is None:
        return 'size unknown'
    for unit, div in (('GB', 1e9), ('MB', 1e6), ('kB', 1e3)):
        if nbytes >= div:
            return f'about {nbytes / div:.3g} {unit}'
    return f'{nbytes:.0f} bytes'


def fix_text(scales, position=None, radius=None, destination=None):
    """What to run to get the index files of ``scales`` (near ``position``, a
    (ra, dec) in degrees, within ``radius`` degrees when given).

    Returns (text, command).
    """
    narrow = [s for s in scales if s <= 6]
    wide = [s for s in scales if s >= 7]
    parts, command = [], ''
    dest = f' --dest {destination}' if destination else ''
    if narrow:
        series = get_series('5200')
        q0, q1 = QUAD_SCALES[min(narrow)][0], QUAD_SCALES[max(narrow)][1]
        total = _size_text(series.size(narrow))
        command = f'astrometry-query index download 5200 --scales {_span(narrow)}'
        where = f'{total} for the whole sky'
        if position is not None:
            radius = max(2.0, math.ceil(10 * float(radius or 0.0)) / 10)    # 3.1, not 3.09375
            tiles = {s: len(tiles_around(position, radius * u.deg, series.nside[s]))
                     for s in narrow}
            where = (f'{_size_text(series.size(narrow, tiles))} for the tiles within '
                     f'{radius:g} deg of RA {position[0]:.3f} Dec {position[1]:+.3f} '
                     f'({total} for the whole sky)')
            command += f' --around {position[0]:.4f},{position[1]:+.4f} --radius {radius:g}'
        command += dest
        parts.append(f'fetch the 5200 series (Tycho-2 + Gaia) at scales {_span(narrow)} '
                     f'(quads {q0:g}-{q1:g} arcmin), {where}:\n    {command}')
    if wide:
        packages = sorted({_DEBIAN_PACKAGES[s] for s in wide})
        if shutil.which('apt-get'):
            apt = 'sudo apt-get install ' + ' '.join(packages)
            parts.append(f'install Debian\'s Tycho-2 index files for scales {_span(wide)}:\n'
                         f'    {apt}')
            command = command or apt
        else:
            size = _size_text(get_series('4100').size(wide))
            wide_cmd = f'astrometry-query index download 4100 --scales {_span(wide)}{dest}'
            parts.append(f'fetch the 4100 series (Tycho-2) at scales {_span(wide)}, {size}:\n'
                         f'    {wide_cmd}')
            command = command or wide_cmd
    text = 'To solve it, ' + '; and '.join(parts) + (
        '\nor build index files from a star catalogue of the field '
        '(astrometry_query.index.build_index, or astrometry-query index build).')
    return text, command


def _destination(index_dirs, explicit_dirs):
    """Where the fix must download to: None when the download's default destination
    (the user index directory) is searched by this solver anyway, else its first
    index directory."""
    if not explicit_dirs or not index_dirs:
        return None
    default = default_destination().resolve()
    return None if default in [Path(d).resolve() for d in index_dirs] else str(index_dirs[0])


def _scale_of(settings, hints, width, height):
    """(low, high, where from, from the settings?) of the pixel scale, or None."""
    low, high = scale_bounds(settings or {}, width, height)
    if low or high:
        return low, high, 'the scale settings', True
    if hints is not None and hints.scale:
        low, high = scale_bounds(hints.scale, width, height)
        if low or high:
            return low, high, f"the header's {hints.scale_source} card", not hints.verify
    return None


def _position_of(settings, hints):
    settings = settings or {}
    if all(settings.get(k) for k in ('center_ra', 'center_dec', 'radius')):
        return (float(settings['center_ra']), float(settings['center_dec']),
                float(settings['radius']), 'the centre and radius settings', True)
    if hints is not None and hints.position:
        p = hints.position
        return p['center_ra'], p['center_dec'], p['radius'], (
            f"the header's {hints.position_source} cards"), not hints.verify
    return None


def check_field(index_files, width, height, settings=None, hints=None, *, index_dirs=(),
                explicit_dirs=False):
    """Whether the installed index files can solve a field, before solving.

    Parameters
    ----------
    index_files : list of path
        The index files the solve would use.
    width, height : int
        The field in pixels.
    settings : dict, optional
        nova arguments (scale and position settings are what count).
    hints : `~astrometry_query.hints.SolveHints`, optional
        Header hints, used for what the settings leave open.
    index_dirs : list of path
        Where the files are (for the message).
    explicit_dirs : bool
        The directories were chosen by the user: the fix then names the first
        as the destination of a download.

    Returns
    -------
    Coverage
        ``ok`` is True when nothing is known about the scale (a blind search
        decides).
    """
    scale = _scale_of(settings, hints, width, height)
    if scale is None:
        return Coverage()
    low, high, scale_from, hard = scale
    infos = index_infos(index_files)
    qmin, qmax = field_quad_range(width, height, low, high)
    usable = [i for i in infos if _overlaps(i, qmin, qmax)]
    where = ', '.join(str(d) for d in index_dirs) or 'the index directories'
    position = _position_of(settings, hints)
    destination = _destination(index_dirs, explicit_dirs)
    wanted = suggest_scales(width, height, low, high)
    pixels = f'{width} x {height} pixels'
    span = (f'{min(width, height) * (low or high) / 60:.3g}-'
            f'{max(width, height) * (high or low) / 60:.3g} arcmin')
    scale_text = (f'{low:.3g}-{high:.3g}' if low and high else f'{low or high:.3g}')
    if not usable:
        fix, command = fix_text(wanted, position[:2] if position else None,
                                position[2] if position else None, destination)
        reason = (f'No installed index file can solve this field: at {scale_text} arcsec/pixel '
                  f'(from {scale_from}) its {pixels} span {span}, which needs index quads '
                  f'of {qmin:.3g}-{qmax:.3g} arcmin; the index files in {where} have quads '
                  f'of {describe_scales(infos)}.')
        return Coverage(ok=False, hard=hard, reason=reason + _trusted(scale_from, hard),
                        fix=fix, command=command, limit='scale', needed_scales=wanted)
    if position is None:
        return _thin(usable, wanted, destination, None, (pixels, span, scale_text, scale_from),
                     where)
    ra, dec, radius, position_from, position_hard = position
    field_radius = math.hypot(width, height) / 2 * (high or low) / 3600.0
    here = [i for i in usable if covers(i, ra, dec, radius + field_radius)]
    if here:
        return _thin(here, wanted, destination, (ra, dec, radius),
                     (pixels, span, scale_text, scale_from), where)
    scales = sorted({i.scale for i in usable if i.scale is not None}) or wanted
    fix, command = fix_text(scales, (ra, dec), radius, destination)
    reason = (f'No installed index file covers this part of the sky: the field is within '
              f'{radius:.3g} deg of RA {ra:.4f} Dec {dec:+.4f} (from {position_from}), and the '
              f'index files of its scale in {where} ({describe_scales(usable)}) hold '
              f'stars elsewhere only.')
    hard = position_hard and hard
    return Coverage(ok=False, hard=hard, reason=reason + _trusted(position_from, hard), fix=fix,
                    command=command, limit='position', needed_scales=scales)


def _trusted(where_from, hard):
    """What to do when a trusted header hint is what the index files cannot serve."""
    if hard and where_from.startswith("the header's"):
        return (" Header hints are trusted; if this header is wrong, solve with "
                "header_hints='verify' (the search then goes on without it) or give the "
                "right value.")
    return ''


def _thin(usable, wanted, destination, position, described, where):
    """Coverage of usable files, flagged thin when none has quads in the
    recommended range of the field (the ``wanted`` scales)."""
    if not wanted or any(i.scale in wanted for i in usable if i.scale is not None) or any(
            i.scale is None and _overlaps(i, QUAD_SCALES[min(wanted)][0],
                                          QUAD_SCALES[max(wanted)][1]) for i in usable):
        return Coverage(usable=usable)
    pixels, span, scale_text, scale_from = described
    fix, command = fix_text(wanted, position[:2] if position else None,
                            position[2] if position else None, destination)
    reason = (f'The installed index files barely reach this field: at {scale_text} '
              f'arcsec/pixel (from {scale_from}) its {pixels} span {span}, and the index '
              f'files in {where} that could serve it have quads of {describe_scales(usable)}, '
              f'as large as the field or larger, so a match needs catalogue stars near its '
              f'corners.')
    return Coverage(thin=True, reason=reason, fix=fix, command=command, limit='scale',
                    needed_scales=wanted, usable=usable)
