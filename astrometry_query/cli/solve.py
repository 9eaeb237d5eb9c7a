"""``astrometry-query solve IMAGE...`` and ``astrometry-query demo``."""
import argparse
import contextlib
import os
import time
from importlib.resources import files
from pathlib import Path

import astropy.units as u

from ..exceptions import AstrometryNetError, InvalidSettingError
from ..frames import sidecar_path, write_sidecar
from ..images import expand_images, file_kind, image_stem
from ._common import (EXIT_INTERRUPTED, EXIT_OK, EXIT_UNSOLVED, PROG, UsageError,
                      add_client_options, add_command, dec_degrees, echo, fmt, format_table,
                      make_client, message, nonnegative_int, positive_float, positive_int,
                      print_json, ra_degrees, radius_degrees, short, warn)

__all__ = ['add_parsers', 'add_solve_options', 'add_index_dir_option', 'solve_settings',
           'quiet_log', 'index_dirs', 'result_record', 'settings_help', 'example_image_path',
           'expand_images', 'wcs_path_for']

_SOLVE_EXAMPLES = [
    'astrometry-query solve m42.fits                       # offline, WCS in m42.wcs',
    'astrometry-query solve night/*.fits --output-dir wcs/ # many images, a progress bar',
    "astrometry-query solve 'night/**/*.fit' --json -q     # quoted glob, JSON Lines on stdout",
    'astrometry-query solve m42.fits --scale-low 8 --scale-high 10 --ra 05:35:17 --dec -05:23:28 \\',
    '                                --radius 2            # hints make a solve fast',
    'astrometry-query solve m42.fits --server http://127.0.0.1:8080   # through a nova server',
    'astrometry-query solve night/*.fits --journal night.jsonl        # rerun to resume',
    'astrometry-query solve night/*.fits --in-place        # the WCS into each FITS header',
    "astrometry-query solve 'night/M42_*.fits' --track     # a sequence: frames follow the field",
    'astrometry-query solve m42.fits --parity positive --tweak-order 3 --no-cache',
    'astrometry-query solve big.fits --downsample 4 --set positional_error=2 --set invert=yes',
]
_DEMO_EXAMPLES = ['astrometry-query demo', 'astrometry-query demo -o /tmp/example.wcs --json']

#: Solve settings -> the options that set them (for error messages).
_OPTION_OF = {'scale_lower': '--scale-low', 'scale_upper': '--scale-high',
              'scale_units': '--scale-units', 'scale_type': '--scale-low/--scale-high',
              'center_ra': '--ra', 'center_dec': '--dec', 'radius': '--radius',
              'center': '--ra/--dec', 'parity': '--parity', 'downsample_factor': '--downsample',
              'tweak_order': '--tweak-order'}
#: --parity: the solver's words for the two parities, and both.
_PARITIES = ('positive', 'negative', 'both')
#: Words --set takes for True and False.
_TRUE, _FALSE = ('true', 'yes', 'y', 'on', '1'), ('false', 'no', 'n', 'off', '0')


def example_image_path():
    """Path of the bundled example image (a synthetic field near M42)."""
    return Path(str(files('astrometry_query') / 'data' / 'example.fits'))


# -- the parser ------------------------------------------------------------------------------
def _add_output_options(parser, several=True):
    group = parser.add_argument_group('output')
    group.add_argument('-o', '--output', metavar='FILE',
                       help='where to write the WCS (FITS header) of a single image' if several
                       else 'where to write the WCS (default example.wcs)')
    if several:
        group.add_argument('--output-dir', metavar='DIR',
                           help='write each WCS there (created if needed), named after its '
                                'image (m42.fits -> DIR/m42.wcs); default: next to each image')
        group.add_argument('--in-place', action='store_true',
                           help="write each WCS into its FITS image's own header (pixel data "
                                'unchanged, other cards kept, an earlier WCS commented out as '
                                "'Original key:' cards, the file replaced atomically); a "
                                '.fits.gz or picture gets NAME.wcs beside it instead')
    group.add_argument('--json', action='store_true',
                       help='print one JSON object per image on stdout (JSON Lines) instead of '
                            'the summary: input, status, ra, dec (deg), pixscale (arcsec/pix), '
                            'orientation (deg), parity, job_id, submission_id, error, elapsed, wcs, '
                            'tracked')
    group.add_argument('-q', '--quiet', action='store_true',
                       help='no progress bar, status line or log messages')
    group.add_argument('--timeout', type=positive_float, metavar='SECONDS',
                       help='give up on an image after this long (default conf.solve_timeout)')
    return group


def add_index_dir_option(group):
    group.add_argument('--index-dir', action='append', metavar='DIR',
                       help='local backend: directory of index files (repeat for several; '
                            'default conf.index_dir, else /etc/astrometry.cfg)')


def add_solve_options(parser):
    """The hints and solver settings options (of ``solve`` and ``watch``)."""
    hints = parser.add_argument_group('hints (optional; read from the FITS header too)')
    hints.add_argument('--scale-low', type=positive_float, metavar='SCALE',
                       help='lower bound of the image scale, in --scale-units')
    hints.add_argument('--scale-high', type=positive_float, metavar='SCALE',
                       help='upper bound of the image scale, in --scale-units')
    hints.add_argument('--scale-units', default=None,
                       choices=('arcsecperpix', 'arcminwidth', 'degwidth', 'focalmm'),
                       help='units of the scale bounds (default arcsecperpix)')
    hints.add_argument('--ra', type=ra_degrees, metavar='RA',
                       help='RA of the field centre: degrees (83.82) or hours (05:35:17)')
    hints.add_argument('--dec', type=dec_degrees, metavar='DEC',
                       help='Dec of the field centre: degrees (-5.39) or -05:23:28')
    hints.add_argument('--radius', type=radius_degrees, metavar='DEG',
                       help="how far the true centre may be from --ra/--dec: degrees, or e.g. "
                            "'30 arcmin' (default 5)")
    solver = parser.add_argument_group('solver settings (any setting of the table below: --set)')
    solver.add_argument('--parity', choices=_PARITIES, metavar='{' + ','.join(_PARITIES) + '}',
                        help="'positive': an image as the sky looks (north up, east left: "
                             "parity -1 in the results); 'negative': a mirrored one (+1); "
                             "default 'both': try both (slower)")
    solver.add_argument('--downsample', type=positive_int, metavar='N',
                        help='shrink the image N times before finding its stars (large or '
                             'noisy images; 1-64)')
    solver.add_argument('--tweak-order', type=nonnegative_int, metavar='N',
                        help='order of the SIP distortion polynomial (0: plain TAN; at most 9; '
                             'default: chosen from the stars locally, 2 on nova)')
    solver.add_argument('--set', action='append', metavar='NAME=VALUE', dest='set',
                        help='any solve setting of the table below (repeat for several); '
                             'booleans as true/false (yes/no, 1/0)')
    solver.add_argument('--no-cache', action='store_true',
                        help='solve again even if these pixels were solved with these '
                             'settings before (the solution cache is neither read nor filled)')


def add_parsers(sub):
    solve = add_command(
        sub, 'solve', help='plate-solve images and write their WCS',
        description='Plate-solve images (FITS, PNG, JPEG) and write the WCS of each as a FITS '
                    'header file. With several images they are solved at once, with a progress '
                    'bar and a summary table at the end.',
        examples=_SOLVE_EXAMPLES)
    solve.epilog = settings_help() + '\n\n' + solve.epilog
    solve.add_argument('images', nargs='+', metavar='IMAGE',
                       help='image files or glob patterns (night/*.fits, quoted or not: '
                            'patterns are expanded here too, with ** for subdirectories)')
    _add_output_options(solve)
    add_solve_options(solve)
    add_index_dir_option(add_client_options(solve))
    batch = solve.add_argument_group('several images')
    batch.add_argument('--workers', type=positive_int, metavar='N',
                       help='solves (local) or uploads (nova) at once (default: the cores; '
                            'nova: 2 for nova.astrometry.net, 8 for other servers)')
    batch.add_argument('--track', action='store_true',
                       help='the images are a sequence (in name order): a frame is first '
                            'solved by following the field of one solved before it, without '
                            'a search (local backend; see the TRACKED column)')
    batch.add_argument('--journal', metavar='FILE',
                       help='record the batch there as it goes; the same command run again '
                            'resumes it without submitting anything twice')
    solve.set_defaults(func=run_solve)

    demo = add_command(sub, 'demo', help='solve the bundled example image offline',
                       description='Solve the bundled example image (a synthetic field near '
                                   'M42) with the local astrometry.net, and write its WCS.',
                       examples=_DEMO_EXAMPLES)
    _add_output_options(demo, several=False)
    demo.set_defaults(func=run_demo)
    return solve, demo


# -- inputs and outputs ------------------------------------------------------------------------
def wcs_path_for(image, output_dir=None):
    """Where the WCS of an image goes: m42.fits(.gz) -> m42.wcs, beside it or in ``output_dir``."""
    folder = Path(output_dir) if output_dir is not None else image.parent
    return folder / f'{image_stem(image.name)}.wcs'


def _output_paths(images, args):
    if getattr(args, 'in_place', False):
        if args.output or getattr(args, 'output_dir', None):
            raise UsageError('argument --in-place: not allowed with -o/--output or --output-dir')
        return [None] * len(images)
    if args.output and len(images) > 1:
        raise UsageError(f'argument -o/--output: names one file, but {len(images)} images were '
                         'given; use --output-dir')
    if args.output and getattr(args, 'output_dir', None):
        raise UsageError('argument -o/--output: not allowed with --output-dir')
    if args.output:
        outputs = [Path(args.output).expanduser()]
    else:
        folder = getattr(args, 'output_dir', None)
        if folder is not None:
            folder = Path(folder).expanduser()
            if folder.exists() and not folder.is_dir():
                raise UsageError(f'argument --output-dir: {str(folder)!r} is not a directory')
            folder.mkdir(parents=True, exist_ok=True)
        outputs = [wcs_path_for(image, folder) for image in images]
    seen = {}
    inputs = {image.resolve() for image in images}
    for image, out in zip(images, outputs):
        key = out.resolve()
        if key in inputs:
            raise UsageError(f'the WCS of {str(image)!r} would replace an input image ({out})')
        if key in seen:
            raise UsageError(f'{str(seen[key])!r} and {str(image)!r} would both write {out}; '
                             'solve them in separate runs or rename one')
        seen[key] = image
    option = '-o/--output' if args.output else '--output-dir' if getattr(
        args, 'output_dir', None) else 'IMAGE'
    for folder in {out.parent for out in outputs}:
        if not folder.is_dir():
            raise UsageError(f'argument {option}: no such directory: {str(folder)!r}')
        if not os.access(folder, os.W_OK):
            raise UsageError(f'argument {option}: cannot write in {str(folder)!r}')
    return outputs


def _allowed_text(setting):
    """A setting's allowed values, short: 'true/false', 'y|n', 'a number 0..360 deg'."""
    if setting.type is bool:
        return 'true/false'
    if setting.name == 'parity':        # the table takes the solver's words too
        return '|'.join(_PARITIES) + ' (or 0|1|2)'
    if setting.type is str:
        return '|'.join(setting.allowed) if setting.allowed else 'non-empty text'
    low, high = setting.allowed
    unit = {'': '', 'scale_units': ' (in scale_units)'}.get(setting.unit, f' {setting.unit}')
    kind = 'a whole number' if setting.type is int else 'a number'
    return f'{kind} {low:g}..{high:g}{unit}'


def settings_help():
    """The epilog's table of the settings ``--set`` takes (from the settings table)."""
    import textwrap

    from ..settings import SETTINGS
    lines = ['solve settings (--set NAME=VALUE, or the option named):']
    for name in sorted(SETTINGS):
        option = f' ({_OPTION_OF[name]})' if name in _OPTION_OF else ''
        lines.append(textwrap.fill(
            f'{name:<21} {_allowed_text(SETTINGS[name])}{option}: {SETTINGS[name].doc}',
            width=79, initial_indent='  ', subsequent_indent=' ' * 24,
            break_on_hyphens=False))
    return '\n'.join(lines)


def _assignment(text):
    """``--set NAME=VALUE``: (name, value as the setting's type).

    Raises `InvalidSettingError` naming the setting and its allowed values.
    """
    import difflib

    from ..settings import SETTINGS, validate_settings
    name, sep, value = text.partition('=')
    name = name.strip().replace('-', '_')
    if not sep or not name:
        raise UsageError(f'argument --set: expected NAME=VALUE, got {text!r}')
    setting = SETTINGS.get(name)
    if setting is None:
        close = difflib.get_close_matches(name, SETTINGS, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise InvalidSettingError(
            f'argument --set: there is no solve setting {name!r}.{hint} The settings are: '
            f"{', '.join(sorted(SETTINGS))} (see {PROG} solve --help).", setting=name,
            allowed=sorted(SETTINGS))
    text = value.strip()
    value = text
    if setting.type is bool:
        value = True if text.lower() in _TRUE else False if text.lower() in _FALSE else text
    elif setting.type in (int, float):
        # a number as the type asks; anything else (parity's words, or a typo)
        # goes on as text, for the settings table to take or refuse
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                pass
    try:
        validate_settings({name: value})
    except InvalidSettingError as exc:
        raise InvalidSettingError(f'argument --set {name}: expected {_allowed_text(setting)}, '
                                  f'got {text!r}.', setting=name, allowed=exc.allowed) from None
    return name, value


def solve_settings(args):
    """The solve settings of the options and of ``--set``, checked (errors
    name the option)."""
    from ..settings import normalize_settings
    given = dict(_assignment(text) for text in getattr(args, 'set', None) or ())
    settings = {}
    if args.scale_low is not None or args.scale_high is not None:
        settings.update(scale_units=args.scale_units or 'arcsecperpix',
                        scale_lower=args.scale_low, scale_upper=args.scale_high)
    elif args.scale_units is not None:
        if 'scale_est' not in given and 'scale_lower' not in given and 'scale_upper' not in given:
            raise UsageError('argument --scale-units: needs --scale-low and/or --scale-high '
                             '(or --set scale_est=VALUE)')
        settings['scale_units'] = args.scale_units
    if (args.ra is None) != (args.dec is None):
        raise UsageError(f'argument {"--dec" if args.dec is None else "--ra"}: needed with '
                         f'{"--ra" if args.dec is None else "--dec"} (give the centre as both)')
    if args.ra is not None:
        settings.update(center_ra=args.ra, center_dec=args.dec, radius=args.radius)
    elif args.radius is not None:
        raise UsageError('argument --radius: needs --ra and --dec')
    settings.update(parity=getattr(args, 'parity', None),
                    downsample_factor=getattr(args, 'downsample', None),
                    tweak_order=getattr(args, 'tweak_order', None))
    settings = {k: v for k, v in settings.items() if v is not None}
    for name in given:
        if name in settings:
            raise UsageError(f'argument --set: {name} is also given by {_OPTION_OF[name]}; '
                             'give it once')
    settings.update(given)
    try:
        normalize_settings(settings)
    except InvalidSettingError as exc:
        option = (f'--set {exc.setting}' if exc.setting in given
                  else _OPTION_OF.get(exc.setting))
        if option is None:
            raise
        raise InvalidSettingError(f'argument {option}: {exc.message}', setting=exc.setting,
                                  allowed=exc.allowed) from None
    return settings


@contextlib.contextmanager
def quiet_log(quiet):
    """Only warnings from the library's log (its INFO lines go to stdout)."""
    from astroquery import log
    level = log.level
    if quiet:
        log.setLevel('WARNING')
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def index_dirs(dirs):
    from .. import conf
    if not dirs:
        yield
        return
    for folder in dirs:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f'argument --index-dir: no such directory: {folder!r}')
    with conf.set_temp('index_dir', os.pathsep.join(str(Path(d).expanduser()) for d in dirs)):
        yield


# -- records and summaries -------------------------------------------------------------------
def result_record(label, status, *, header=None, error='', elapsed=0.0, wcs=None, job_id=None,
            submission_id=None, calibration=None):
    """One image's result, as printed with --json."""
    record = {'input': str(label), 'status': status, 'ra': None, 'dec': None, 'pixscale': None,
              'orientation': None, 'parity': None, 'job_id': job_id,
              'submission_id': submission_id, 'error': error or '',
              'elapsed': round(float(elapsed), 3), 'wcs': None if wcs is None else str(wcs),
              'tracked': header is not None and 'AN_TRACK' in header}
    if header is not None:
        from ..results import calibration_from_wcs
        cal = calibration or calibration_from_wcs(header)
        record.update({k: cal[k] for k in ('ra', 'dec', 'pixscale', 'orientation', 'parity')})
        record['job_id'] = header.get('AN_JOBID', job_id)
        record['submission_id'] = header.get('AN_SUBID', submission_id)
    return record


def _summary(client, header, output):
    """The detailed summary of one solved image (from its WCS, as the JSON record)."""
    from ..results import Calibration, calibration_from_wcs, parity_text
    cal = Calibration.from_api(calibration_from_wcs(header))
    center = cal.center
    lines = [
        f"Solved: job {header.get('AN_JOBID')} ({client.backend.name} backend)",
        f"  centre      RA {center.ra.to_string(u.hourangle, sep=':', precision=2)}  "
        f"Dec {center.dec.to_string(u.deg, sep=':', precision=1, alwayssign=True)}  "
        f"({center.ra.deg:.5f}, {center.dec.deg:+.5f}) deg",
        f"  pixel scale {cal.pixscale.to_value(u.arcsec / u.pix):.4f} arcsec/pixel",
        f"  field       {cal.width.to_value(u.arcmin):.2f} x {cal.height.to_value(u.arcmin):.2f} "
        f"arcmin" if cal.width is not None else '',
        f"  orientation {cal.orientation.to_value(u.deg):.2f} deg (up is that many degrees E of N)",
        f"  parity      {parity_text(cal.parity)}",
        _order_line(header),
        f"  WCS written to {output}",
    ]
    return '\n'.join(line for line in lines if line)


def _order_line(header):
    """The SIP order of the solution and how it was set (our ``AN_ORDER``), or ''."""
    if 'AN_ORDER' not in header:
        return ''
    how = header.comments['AN_ORDER'].split(': ', 1)[-1]
    order = int(header['AN_ORDER'])
    return ('  distortion  ' + (f'SIP order {order}' if order > 1 else 'none (TAN)')
            + (f', {how}' if how else ''))


_TABLE_HEADERS = ('image', 'status', 'RA (deg)', 'Dec (deg)', 'scale ("/px)', 'orientation',
                  'job', 'error')
_RIGHT = ('RA (deg)', 'Dec (deg)', 'scale ("/px)', 'orientation', 'job')


def batch_table(records):
    """The summary table of several images (one row each)."""
    rows = [[r['input'], r['status'], fmt(r['ra'], '.5f'), fmt(r['dec'], '+.5f'),
             fmt(r['pixscale'], '.3f'), fmt(r['orientation'], '.2f'), fmt(r['job_id']),
             short(r['error'])] for r in records]
    return format_table(_TABLE_HEADERS, rows, right=_RIGHT)


def _print_batch_summary(records, elapsed, where, total):
    echo(batch_table(records))
    solved = sum(r['status'] == 'success' for r in records)
    tracked = sum(bool(r.get('tracked')) for r in records)
    followed = f' ({tracked} by following the field of another)' if tracked else ''
    echo(f'\n{solved} of {total} images solved{followed} in {elapsed:.1f} s; WCS files {where}.')
    cut = [r for r in records if r['error'] and short(r['error']) != r['error'].strip()]
    if cut:
        echo('\nErrors in full:')
        for r in cut:
            echo(f"  {r['input']}: {r['error'].strip()}")


# -- running ----------------------------------------------------------------------------------
def _solve_one(client, image, output, args, settings):
    started = time.monotonic()
    try:
        header = client.solve_from_image(image, solve_timeout=args.timeout,
                                         verbose=not (args.quiet or args.json),
                                         cache=not getattr(args, 'no_cache', False),
                                         write_wcs=output is None, **settings)
    except AstrometryNetError as exc:
        if args.json:
            print_json(result_record(image, 'failure', error=f'{type(exc).__name__}: {message(exc)}',
                               elapsed=time.monotonic() - started, job_id=exc.job_id,
                               submission_id=exc.submission_id))
        raise
    if output is None:          # --in-place: written into the image, or beside it
        output = str(image) if file_kind(image) == ('fits', False) else sidecar_path(image)
    else:
        write_sidecar(output, header)
    if args.json:
        print_json(result_record(image, 'success', header=header, wcs=output,
                           elapsed=time.monotonic() - started))
    else:
        echo(_summary(client, header, output))
    return EXIT_OK


def _solve_many(client, images, outputs, args, settings):
    started = time.monotonic()
    where = dict(zip((str(i) for i in images), outputs))
    stream = client.solve_many([str(i) for i in images], as_completed=True,
                               verbose=not args.quiet, solve_timeout=args.timeout,
                               max_concurrency=args.workers, journal=args.journal,
                               cache=not getattr(args, 'no_cache', False),
                               write_wcs=bool(getattr(args, 'in_place', False)),
                               track=bool(getattr(args, 'track', False)), **settings)
    records, interrupted = {}, False
    try:
        for row in stream:
            output = None
            if row['header'] is not None:
                output = where[row['input']] or row['wcs_file']
                if where[row['input']] is not None:
                    write_sidecar(output, row['header'])
            records[row['index']] = result_record(
                row['input'], row['status'], header=row['header'], error=row['error'],
                elapsed=row['elapsed'], wcs=output, job_id=row['job_id'],
                submission_id=row['submission_id'],
                calibration=None if row['header'] is None else {
                    k: row[k] for k in ('ra', 'dec', 'pixscale', 'orientation', 'parity')})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stream.close()
    ordered = [records[i] for i in sorted(records)]
    if args.json:
        for record in ordered:
            print_json(record)
    else:
        folder = getattr(args, 'output_dir', None)
        where = (f'in {folder}' if folder else 'in the images (FITS) or next to them'
                 if getattr(args, 'in_place', False) else 'next to the images')
        _print_batch_summary(ordered, time.monotonic() - started, where, len(images))
    if interrupted:
        again = ('run the same command again to resume' if args.journal
                 else 'add --journal FILE to make a batch resumable')
        warn(f'interrupted after {len(ordered)} of {len(images)} images; {again}.')
        return EXIT_INTERRUPTED
    return EXIT_OK if all(r['status'] == 'success' for r in ordered) else EXIT_UNSOLVED


def run_solve(args, backend=None):
    """``solve``: returns the exit status."""
    settings = solve_settings(args)
    images = expand_images(args.images, argument='IMAGE')
    outputs = _output_paths(images, args)
    with quiet_log(args.quiet or args.json), index_dirs(getattr(args, 'index_dir', None)), \
            make_client(args, backend=backend) as client:
        if len(images) == 1 and not args.journal and not getattr(args, 'track', False):
            return _solve_one(client, images[0], outputs[0], args, settings)
        return _solve_many(client, images, outputs, args, settings)


def run_demo(args):
    """``demo``: solve the bundled example offline."""
    image = example_image_path()
    demo = argparse.Namespace(
        images=[str(image)], output=args.output or 'example.wcs', output_dir=None, json=args.json,
        quiet=args.quiet, timeout=args.timeout, scale_low=None, scale_high=None,
        scale_units=None, ra=None, dec=None, radius=None, server=None, api_key=None,
        workers=None, journal=None, index_dir=None)
    if not (args.quiet or args.json):
        echo(f'Solving the bundled example image {image} offline with astrometry-engine ...')
    return run_solve(demo, backend='local')
