"""The ``solve-field`` command line equivalent to a solve.

Users of nova.astrometry.net ask which ``solve-field`` call a job amounts to
(astrometry.net issue #46): to run it again on their own machine, to compare,
or to tell a mailing list what they did.  `solve_field_command` writes it from
what a job was asked (its nova settings, the header hints it searched with, the
field size, its time limit and index directories): one line ready to paste in a
shell, every argument quoted (``shlex.quote``), and after it, as shell comments,
what ``solve-field`` cannot be told.
"""
import math
import shlex

__all__ = ['solve_field_command', 'command_of_request']

#: nova's scale units as solve-field names them (the same words).
_UNITS = ('degwidth', 'arcminwidth', 'arcsecperpix', 'focalmm')
#: The .axy of a job: a source list solve-field reads as it is.
SOURCE_LIST_FILE = 'job.axy'


def _number(value):
    """A number as short as it is exact enough (10 significant digits)."""
    return format(float(value), '.10g')


def _scale_flags(settings):
    """--scale-units/-low/-high of nova's scale settings (an estimate and its
    error become bounds), or []."""
    units = settings.get('scale_units') or 'degwidth'
    if units not in _UNITS:
        units = 'degwidth'
    if settings.get('scale_type', 'ul') == 'ev':
        est, err = settings.get('scale_est'), settings.get('scale_err')
        if not (est and err is not None):
            return []
        low, high = est * (1 - err / 100.0), est * (1 + err / 100.0)
    else:
        low, high = settings.get('scale_lower'), settings.get('scale_upper')
    if not (low or high):
        return []
    flags = ['--scale-units', units]
    if low:
        flags += ['--scale-low', _number(low)]
    if high:
        flags += ['--scale-high', _number(high)]
    return flags


def solve_field_command(settings=None, *, filename='image.fits', hints=None, width=None,
                        height=None, source_list=False, timeout=None, index_dirs=None,
                        hint_sources=(), refit=True):
    """The ``solve-field`` command line equivalent to a solve.

    Parameters
    ----------
    settings : dict, optional
        nova submission arguments (scale, position, parity, tweak_order,
        downsample_factor...), as the job was given them.
    filename : str
        The input's file name in the command.
    hints : dict, optional
        Header hints the solve searched with first (``scale`` and ``position``
        dicts of nova arguments, as `~astrometry_query.hints.SolveHints`
        holds them): given as flags where the settings leave them open.
    width, height : int, optional
        The field in pixels (needed by solve-field for a source list).
    source_list : bool
        The input is a list of sources (solve-field reads it as an x/y list).
    timeout : float, optional
        The solve's time limit in seconds (``--cpulimit``).
    index_dirs : list of str, optional
        Index directories the job was told to use (solve-field reads them
        from a config file: said in a comment).
    hint_sources : sequence of str
        The header cards the hints came from (said in the comment).
    refit : bool
        Whether astrometry_query refits the engine's WCS (said in a comment).

    Returns
    -------
    str
        The command, then zero or more lines starting with ``#`` (a shell
        ignores them).

    Examples
    --------
    >>> text = solve_field_command({'scale_units': 'degwidth', 'scale_lower': 1,
    ...                             'scale_upper': 2}, filename='m 42.fits')
    >>> print(text.splitlines()[0])
    solve-field --overwrite --no-plots --scale-units degwidth --scale-low 1 --scale-high 2 'm 42.fits'
    """
    settings = dict(settings or {})
    hints = hints or {}
    scale_given = any(settings.get(k) for k in ('scale_lower', 'scale_upper', 'scale_est'))
    position_given = any(k in settings for k in ('center_ra', 'center_dec'))
    merged = dict(settings)
    from_hints = []
    if hints.get('scale') and not scale_given:
        merged.update(hints['scale'], scale_type='ul')
        from_hints.append('scale')
    if hints.get('position') and not position_given:
        merged.update(hints['position'])
        from_hints.append('position')
    args = ['solve-field', '--overwrite', '--no-plots']
    args += _scale_flags(merged)
    if all(merged.get(k) for k in ('center_ra', 'center_dec', 'radius')):
        args += ['--ra', _number(float(merged['center_ra']) % 360),
                 '--dec', _number(merged['center_dec']), '--radius', _number(merged['radius'])]
    parity = merged.get('parity')
    if parity in (0, 1):
        args += ['--parity', 'pos' if parity == 0 else 'neg']
    tweak = merged.get('tweak_order')
    if tweak is not None:
        args += ['--tweak-order', str(int(tweak))] if int(tweak) else ['--no-tweak']
    if merged.get('crpix_center'):
        args.append('--crpix-center')
    if merged.get('positional_error'):
        args += ['--pixel-error', _number(merged['positional_error'])]
    notes = []
    if source_list:
        if width and height:
            args += ['--width', str(int(width)), '--height', str(int(height))]
        notes.append(f'{filename}: the source list (the job\'s axy file, download kind '
                     '"axy")')
    else:
        if merged.get('downsample_factor') and int(merged['downsample_factor']) > 1:
            args += ['--downsample', str(int(merged['downsample_factor']))]
        if merged.get('invert'):
            args.append('--invert')
        if merged.get('use_sextractor'):
            args.append('--use-source-extractor')
        notes.append('astrometry_query extracts the sources itself (sep); solve-field uses '
                     'its own image2xy, so the sources may differ a little')
    if timeout:
        args += ['--cpulimit', str(max(1, math.ceil(float(timeout))))]
    args.append(filename)
    if from_hints:
        cards = f' ({", ".join(dict.fromkeys(hint_sources))})' if hint_sources else ''
        notes.append(f'the {" and ".join(from_hints)} flags are the header\'s hints{cards}: '
                     'astrometry_query searches without them if they find nothing')
    if index_dirs:
        dirs = ' '.join(str(d) for d in index_dirs)
        notes.append(f'index files from {dirs}: solve-field reads them from a config file '
                     '(--config FILE, holding "add_path DIR" per directory and "autoindex")')
    if refit:
        notes.append('astrometry_query then refits the WCS to every catalogue star in the '
                     'field (SIP order chosen from the data) when that improves it')
    return ' '.join(shlex.quote(a) for a in args) + ''.join(f'\n# {n}' for n in notes)


def command_of_request(request, hints=None, hint_sources=()):
    """`solve_field_command` for a `~astrometry_query.jobs.SolveRequest`.

    Parameters
    ----------
    request : `~astrometry_query.jobs.SolveRequest`
    hints : dict, optional
        The header hints the solve used (``scale``, ``position``), when the
        request asked for them to be read from the image (``'header'``).
    hint_sources : sequence of str
        The header cards they came from.
    """
    if isinstance(request.hints, dict):
        hints = hints or request.hints
        hint_sources = hint_sources or [request.hints.get(k) for k in
                                        ('scale_source', 'position_source')
                                        if request.hints.get(k)]
    if request.source_list:
        name = SOURCE_LIST_FILE
    else:
        name = (request.original_filename or request.input_name
                or (request.image_path and request.image_path.replace('\\', '/').rsplit('/', 1)[-1])
                or 'image.fits')
    return solve_field_command(request.settings, filename=name, hints=hints,
                               width=request.width, height=request.height,
                               source_list=request.source_list, timeout=request.timeout,
                               index_dirs=request.index_dir, hint_sources=hint_sources)
