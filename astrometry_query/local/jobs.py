"""One solve in one directory: the seam shared by the local backend and the
nova-compatible server.

`solve_job` runs the solver the way nova does (nova-protocol.md §3, §7),
computes nova's calibration, objects in field and annotations, and records
everything in ``result.json``; `result_file` serves the result files of §4.

Files of a job directory
------------------------
``<input>``          the image or source list (linked or copied in)
``astrometry.cfg``   the engine config of this solve
``log``              solve-field's output (nova's engine log)
``job.log``          what went wrong in this module, if anything
``job.axy``          sources and solver directives
``wcs.fits``         the solution (header only, TAN-SIP); exists only when solved
``corr.fits``        matched field/index star pairs
``rdls.fits``        index stars in the field, with their tag-along columns
``annotated.png``    the image (or a black canvas) with named objects drawn
``new-image.fits``   the image with the solved WCS (built when first asked)
``image-radec.fits`` job.axy plus RA, DEC per source (built when first asked)
``result.json``      the outcome, written last and atomically
"""
import json
import logging
import math
import os
import shutil
import traceback
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import InvalidInputError, LocalSolverNotFoundError
from ..results import calibration_from_wcs
from ..settings import solve_field_args
from . import annotate
from .solver import JOB_CONFIG, find_installation, run_solve_field, xy_columns

__all__ = ['RESULT_FILE', 'RESULT_FILES', 'solve_job', 'read_result', 'result_file']

log = logging.getLogger(__name__)

RESULT_FILE = 'result.json'
JOB_LOG = 'job.log'
#: result_file kinds and the file each one is.
RESULT_FILES = {'wcs': 'wcs.fits', 'rdls': 'rdls.fits', 'axy': 'job.axy', 'corr': 'corr.fits',
                'new_fits': 'new-image.fits', 'image_rd': 'image-radec.fits',
                'annotated': 'annotated.png'}
# Names an input copied into the job must not take.
_RESERVED = set(RESULT_FILES.values()) | {RESULT_FILE, JOB_LOG, JOB_CONFIG, 'log', 'job.solved',
                                          'worker.log', 'request.json'}
# nova flips the orientation of pictures whose y axis points down (§1.6).
_FLIPPED_FORMATS = ('png', 'jpeg', 'gif')


def _note(job_dir, exc):
    """Record an exception: its traceback in job.log, a line in the log."""
    log.warning('job %s: %s: %s', Path(job_dir).name, type(exc).__name__, exc)
    with open(Path(job_dir) / JOB_LOG, 'a', encoding='utf-8') as f:
        f.write(''.join(traceback.format_exception(exc)))


def _place_input(job_dir, input_path):
    """The input's path inside job_dir: hard-linked (else copied) when outside."""
    input_path = Path(input_path).resolve()
    if input_path.parent == job_dir:
        return input_path
    name = input_path.name
    target = job_dir / (f'input-{name}' if name in _RESERVED else name)
    if not target.exists():
        try:
            os.link(input_path, target)
        except OSError:   # another filesystem, or links not allowed
            shutil.copyfile(input_path, target)
    return target


def _source_list_size(path):
    """ceil(max x), ceil(max y) of a FITS source list, as nova records them."""
    try:
        with fits.open(path) as hdul:
            xcol, ycol = xy_columns(hdul[1].columns.names)
            x = np.asarray(hdul[1].data[xcol], dtype=float)
            y = np.asarray(hdul[1].data[ycol], dtype=float)
    except Exception as exc:
        raise InvalidInputError(f'Cannot read x/y columns of the source list '
                                f'{Path(path).name}: {exc}') from exc
    if x.size == 0 or not (np.nanmax(x) > 0 and np.nanmax(y) > 0):
        raise InvalidInputError('The source list is empty or its maximum x or y is not > 0.')
    return int(math.ceil(np.nanmax(x))), int(math.ceil(np.nanmax(y)))


def _axy_size(job_dir):
    """IMAGEW/IMAGEH that solve-field recorded in job.axy (0, 0 if none)."""
    try:
        header = fits.getheader(Path(job_dir) / 'job.axy')
        return int(header.get('IMAGEW', 0)), int(header.get('IMAGEH', 0))
    except Exception:
        return 0, 0


def _last_error(log_path):
    """The most telling line of a solve-field log."""
    lines = [ln.strip() for ln in Path(log_path).read_text(errors='replace').splitlines()
             if ln.strip()]
    errors = [ln for ln in lines if 'error' in ln.lower()]
    return (errors or lines or ['(no output)'])[-1][:300]


def _write_result(job_dir, result):
    path = Path(job_dir) / RESULT_FILE
    tmp = path.with_name(f'.{RESULT_FILE}.{os.getpid()}.tmp')
    tmp.write_text(json.dumps(result, indent=1), encoding='utf-8')
    os.replace(tmp, path)


def solve_job(job_dir, input_path, nova_args, *, source_list=False, width=None, height=None,
              timeout=None, installation=None, original_filename=None):
    """Solve one image or source list in ``job_dir``, as nova's worker does.

    Parameters
    ----------
    job_dir : str or `~pathlib.Path`
        The job's directory (created if needed).
    input_path : str or `~pathlib.Path`
        The image or FITS source list; linked or copied into ``job_dir``
        when it is elsewhere.
    nova_args : dict
        nova submission arguments (already cast as nova casts them); mapped
        to solver flags by `astrometry_query.settings.solve_field_args`.
    source_list : bool
        The input is an x/y list (used in its order: brightest first).
    width, height : int, optional
        Source lists only: the field size given to the solver and used for
        the calibration. Default: ``image_width``/``image_height`` of
        ``nova_args``, else ceil(max x), ceil(max y). (nova computes the
        calibration with ceil(max x/y) even when image_width is given; the
        server applies that quirk itself.)
    timeout : float, optional
        Wall-clock limit of the solve in seconds.
    installation : `~astrometry_query.local.solver.Installation`, optional
    original_filename : str, optional
        Default: the input's name without ``.gz``.

    Returns
    -------
    dict
        What is also written to ``job_dir/result.json``: ``status``
        ("success" or "failure"), ``calibration`` (nova's JSON, or None),
        ``objects_in_field``, ``machine_tags`` (the same list),
        ``annotations``, ``elapsed``, ``timed_out``, ``error``, ``width``,
        ``height``, ``original_filename``, ``source_list``, ``input``.

    Raises
    ------
    LocalSolverNotFoundError
        When astrometry.net or its index files are not installed. A solve
        that fails, times out or gets a bad input gives status "failure".

    Notes
    -----
    As on nova (§1.5), a solution is kept when listing the objects in the
    field fails afterwards: the status is then "failure" with the
    calibration present. A failed annotated PNG only leaves a note in
    ``job.log``; `result_file` tries it again when asked.
    """
    inst = installation or find_installation()
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    input_path = _place_input(job_dir, input_path)
    if original_filename is None:
        name = input_path.name
        original_filename = name[:-3] if name.lower().endswith('.gz') else name
    result = {'status': 'failure', 'calibration': None, 'objects_in_field': [],
              'machine_tags': [], 'annotations': [], 'elapsed': 0.0, 'timed_out': False,
              'error': None, 'width': 0, 'height': 0,
              'original_filename': original_filename, 'source_list': bool(source_list),
              'input': input_path.name}
    try:
        _solve(job_dir, input_path, dict(nova_args or {}), result, source_list, width, height,
               timeout, inst)
    except LocalSolverNotFoundError:
        raise
    except Exception as exc:   # a failed job, never an exception (as on nova)
        result['status'] = 'failure'
        result['error'] = f'{type(exc).__name__}: {exc}'
        _note(job_dir, exc)
    _write_result(job_dir, result)
    return result


def _solve(job_dir, input_path, args, result, source_list, width, height, timeout, inst):
    solver_size = (None, None)
    if source_list:
        max_xy = _source_list_size(input_path)
        solver_size = (int(width or args.get('image_width') or max_xy[0]),
                       int(height or args.get('image_height') or max_xy[1]))
        result['width'], result['height'] = solver_size
    outcome = run_solve_field(input_path, job_dir, solve_field_args(args),
                              width=solver_size[0], height=solver_size[1], timeout=timeout,
                              installation=inst)
    result['elapsed'] = round(outcome.elapsed, 3)
    result['timed_out'] = outcome.timed_out
    if not outcome.solved:
        if not source_list:
            result['width'], result['height'] = _axy_size(job_dir)
        if outcome.timed_out:
            result['error'] = f'solve-field was stopped after the timeout of {timeout:g} s'
        elif outcome.returncode:   # it could not even start solving (e.g. unknown file type)
            result['error'] = (f'solve-field failed (exit {outcome.returncode}): '
                               f'{_last_error(outcome.log_path)}')
        else:
            result['error'] = 'solve-field found no solution'
        return
    header = fits.getheader(outcome.wcs_path)
    if not source_list:
        result['width'], result['height'] = int(header['IMAGEW']), int(header['IMAGEH'])
    flip = not source_list and annotate.image_format(input_path) in _FLIPPED_FORMATS
    result['calibration'] = calibration_from_wcs(header, result['width'], result['height'],
                                                 flip_orientation=flip)
    try:
        objects = annotate.objects_in_field(outcome.wcs_path, installation=inst)
        result['annotations'] = annotate.annotations(outcome.wcs_path, installation=inst)
    except Exception as exc:
        result['error'] = f'listing the objects in the field failed: {exc}'
        _note(job_dir, exc)
        return
    result['objects_in_field'] = objects
    result['machine_tags'] = list(objects)
    result['status'] = 'success'
    try:
        annotate.annotated_png(outcome.wcs_path, job_dir / RESULT_FILES['annotated'],
                               image_path=None if source_list else input_path,
                               width=result['width'], height=result['height'],
                               installation=inst)
    except Exception as exc:
        _note(job_dir, exc)


def read_result(job_dir):
    """The ``result.json`` of a job, or None while it has none (not finished)."""
    try:
        return json.loads((Path(job_dir) / RESULT_FILE).read_text(encoding='utf-8'))
    except FileNotFoundError:
        return None


def result_file(job_dir, kind):
    """The path of one result file of a job, built on first request if needed.

    Parameters
    ----------
    job_dir : str or `~pathlib.Path`
    kind : str
        ``'wcs'`` (wcs.fits), ``'rdls'`` (rdls.fits), ``'axy'`` (job.axy),
        ``'corr'`` (corr.fits), ``'new_fits'`` (new-image.fits: the image with
        the solved WCS), ``'image_rd'`` (image-radec.fits: job.axy plus RA,
        DEC) or ``'annotated'`` (annotated.png).

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    ValueError
        For an unknown kind.
    FileNotFoundError
        When the job has no such file (e.g. it is not solved, or a
        ``new_fits`` of a source list).
    """
    if kind not in RESULT_FILES:
        raise ValueError(f'Unknown result file kind {kind!r}; use one of {sorted(RESULT_FILES)}.')
    job_dir = Path(job_dir)
    path = job_dir / RESULT_FILES[kind]
    if path.is_file():
        return path
    wcs = job_dir / RESULT_FILES['wcs']
    if kind in ('wcs', 'corr', 'rdls') or (kind != 'axy' and not wcs.is_file()):
        raise FileNotFoundError(f'Job {job_dir.name} has no {path.name}: it is not solved.')
    result = read_result(job_dir) or {}
    image = job_dir / result['input'] if result.get('input') else None
    try:
        if kind == 'new_fits':
            if result.get('source_list') or image is None:
                raise FileNotFoundError(f'Job {job_dir.name} was solved from a source list: '
                                        'it has no image to put the WCS into.')
            return annotate.new_fits(image, wcs, path)
        if kind == 'image_rd' and (job_dir / RESULT_FILES['axy']).is_file():
            return annotate.image_rd(job_dir / RESULT_FILES['axy'], wcs, path)
        if kind == 'annotated':
            return annotate.annotated_png(
                wcs, path, image_path=None if result.get('source_list') else image,
                width=result.get('width') or None, height=result.get('height') or None)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileNotFoundError(f'Job {job_dir.name}: {path.name} could not be made: {exc}') \
            from exc
    raise FileNotFoundError(f'Job {job_dir.name} has no {path.name}.')
