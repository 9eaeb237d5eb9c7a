"""One solve in one directory: the seam shared by the local backend and the
nova-compatible server.

`run_job` runs the solving pipeline with the job directory as its work
directory and records the outcome in ``result.json``.  Everything else a
job offers is made when first asked for, then kept: objects in the field
and annotations (`objects_in_field`, `annotations`), and the files of
`result_file` (new image, image-radec, annotated PNG).

Files of a job directory
------------------------
``<input>``          a copy of the image (a reflink where the filesystem can), or ``input.fits``
``astrometry.cfg``   the engine config of this solve
``log``              the engine's output (nova's engine log)
``job.log``          what went wrong in this module, if anything
``job.axy``          sources and solver directives
``wcs.fits``         the solution (header only, TAN-SIP); exists only when solved
``corr.fits``        matched field/index star pairs
``rdls.fits``        index stars in the field
``result.json``      the outcome, written last and atomically
``extras.json``      objects in the field and annotations (first request)
``annotated.png``    the image (or a black canvas) with named objects (first request)
``new-image.fits``   the image with the solved WCS (first request)
``image-radec.fits`` job.axy plus RA, DEC per source (first request)
"""
import json
import logging
import shutil
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..exceptions import LocalSolverNotFoundError
from ..files import write_atomic
from ..images import open_image
from . import annotate, pipeline
from .solver import JOB_CONFIG

__all__ = ['RESULT_FILE', 'RESULT_FILES', 'run_job', 'record_result', 'read_result',
           'result_file', 'objects_in_field', 'annotations']

log = logging.getLogger(__name__)

RESULT_FILE = 'result.json'
EXTRAS_FILE = 'extras.json'
JOB_LOG = 'job.log'
#: result_file kinds and the file each one is.
RESULT_FILES = {'wcs': 'wcs.fits', 'rdls': 'rdls.fits', 'axy': pipeline.AXY_FILE,
                'corr': 'corr.fits', 'new_fits': 'new-image.fits',
                'image_rd': 'image-radec.fits', 'annotated': 'annotated.png'}
# Names an input placed in the job must not take.
_RESERVED = set(RESULT_FILES.values()) | {RESULT_FILE, EXTRAS_FILE, JOB_LOG, JOB_CONFIG,
                                          pipeline.ENGINE_LOG, 'job.solved', 'worker.log',
                                          'request.json', 'input.fits'}
# Header cards that describe a file's layout, not the image.
_STRUCTURE = {'SIMPLE', 'BITPIX', 'NAXIS', 'NAXIS1', 'NAXIS2', 'NAXIS3', 'EXTEND', 'XTENSION',
              'PCOUNT', 'GCOUNT', 'BZERO', 'BSCALE', 'BLANK'}
# One lock for the first computation of a job's extras (plot-constellations).
_LOCK = threading.Lock()


def _note(job_dir, exc):
    """Record an exception: its traceback in job.log, a line in the log."""
    log.warning('job %s: %s: %s', Path(job_dir).name, type(exc).__name__, exc)
    with open(Path(job_dir) / JOB_LOG, 'a', encoding='utf-8') as f:
        f.write(''.join(traceback.format_exception(exc)))


def _place_input(job_dir, input_path):
    """The input's path inside job_dir: a copy of it when outside.

    Never a hard link: the user's file and the job's would be one, and
    editing the image in place would change what the job was solved from.
    Where the filesystem can (btrfs, XFS...), the copy is a reflink: it
    shares the blocks until either file is written, so it costs no space.
    """
    job_dir, input_path = Path(job_dir).resolve(), Path(input_path).resolve()
    if input_path.parent == job_dir:
        return input_path
    name = input_path.name
    target = job_dir / (f'input-{name}' if name in _RESERVED else name)
    if not target.exists():
        if not _reflink(input_path, target):
            shutil.copyfile(input_path, target)
    return target


# Linux's FICLONE ioctl (_IOW(0x94, 9, int)): a copy-on-write clone of a whole file.
_FICLONE = 0x40049409


def _reflink(source, target):
    """Clone ``source`` as a new file ``target`` (copy-on-write); False, and
    no ``target`` left behind, where the filesystem or the system cannot."""
    try:
        import fcntl
    except ImportError:      # not a POSIX system
        return False
    try:
        with open(source, 'rb') as src, open(target, 'xb') as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        return True
    except FileExistsError:  # placed meanwhile by another process
        return True
    except OSError:
        Path(target).unlink(missing_ok=True)
        return False


def utc_now():
    """Now, as a naive UTC datetime (nova's convention for its times)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _write_json(path, data):
    """Write JSON atomically: a reader never sees half a file."""
    write_atomic(path, json.dumps(data, indent=1))


def run_job(job_dir, *, image=None, sources=None, width=None, height=None, args=None,
            hints=None, fwhm=3.0, detect_threshold=5.0, timeout=300.0, index_dir=None,
            original_filename=None, input_name=None):
    """Solve one image or source list in ``job_dir`` and record the outcome.

    A plain, picklable function (the local backend runs it on an Executor,
    the server's workers call it): `~astrometry_query.local.pipeline.solve`
    with ``job_dir`` as its work directory, then ``result.json`` written
    atomically.  An image given as data (not a file already in ``job_dir``)
    is saved there as ``input.fits`` afterwards, for ``new_fits``.

    Parameters
    ----------
    job_dir : str or `~pathlib.Path`
    image, sources, width, height, hints, fwhm, detect_threshold, timeout, index_dir
        As for `~astrometry_query.local.pipeline.solve`.
    args : dict
        nova submission arguments (already validated or cast as nova casts them).
    original_filename : str, optional
        Recorded as nova does (the upload's name, ``json-xy`` for lists).
    input_name : str, optional
        The input file's name inside ``job_dir``, if it is there.

    Returns
    -------
    dict
        What is also written to ``result.json``: ``status`` ("success" or
        "failure"), ``calibration`` (nova's JSON, or None), ``width``,
        ``height``, ``elapsed``, ``timings``, ``attempts``, ``hints``,
        ``timed_out``, ``error``, ``error_kind``, ``n_sources``, ``source_list``, ``input``,
        ``original_filename``, ``finished`` (when it was written: naive UTC, as
        ``str(datetime)``).

    Raises
    ------
    LocalSolverNotFoundError
        When astrometry.net or its index files are not installed.  Anything
        else (a bad input, no solution, the time limit) is a "failure".
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    solved = error = None
    try:
        solved = pipeline.solve(image=image, sources=sources, width=width, height=height,
                                settings=dict(args or {}), hints=hints, fwhm=fwhm,
                                detect_threshold=detect_threshold, timeout=timeout,
                                index_dir=index_dir, work_dir=job_dir)
    except LocalSolverNotFoundError:
        raise
    except Exception as exc:   # a failed job, never an exception (as on nova)
        error = exc
    return record_result(job_dir, solved, error=error, image=image, sources=sources,
                         width=width, height=height, original_filename=original_filename,
                         input_name=input_name, elapsed=time.perf_counter() - started)


def record_result(job_dir, solved, *, error=None, image=None, sources=None, width=None,
                  height=None, original_filename=None, input_name=None, elapsed=None):
    """Write the outcome of a solve into ``job_dir``: the files it made
    elsewhere (``SolveResult.files``, from another process or a Dask
    worker), ``result.json``, and an in-memory image for ``new_fits``.

    Parameters
    ----------
    solved : `~astrometry_query.local.pipeline.SolveResult` or None
        None when the solve raised ``error``.

    Returns
    -------
    dict
        The content of ``result.json`` (see `run_job`).
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    result = {'status': 'failure', 'calibration': None, 'width': width or 0, 'height': height or 0,
              'elapsed': 0.0, 'timings': {}, 'attempts': [], 'hints': [], 'refit': None,
              'timed_out': False, 'error': None, 'error_kind': None, 'n_sources': 0,
              'source_list': sources is not None, 'input': input_name,
              'original_filename': original_filename or input_name, 'worker': None}
    if error is not None:
        result['error'] = f'{type(error).__name__}: {error}'
        _note(job_dir, error)
    if solved is not None:
        for name, content in solved.files.items():
            write_atomic(job_dir / name, content)
        record = solved.to_dict()
        result.update({k: record[k] for k in ('calibration', 'width', 'height', 'timings',
                                              'attempts', 'hints', 'refit', 'timed_out', 'error',
                                              'error_kind', 'n_sources', 'worker')})
        result['status'] = 'success' if solved.solved else 'failure'
    if image is not None and input_name is None and error is None:   # else it may be the fault
        try:
            result['input'] = _save_image(job_dir, image)
        except Exception as exc:
            _note(job_dir, exc)
    result['elapsed'] = round(elapsed if elapsed is not None
                              else (solved.elapsed if solved is not None else 0.0), 4)
    result['finished'] = str(utc_now())
    _write_json(job_dir / RESULT_FILE, result)
    return result


def _save_image(job_dir, image):
    """Keep an in-memory image in the job (for new_fits): its name there."""
    img = open_image(image)
    if img.path is not None:
        return _place_input(job_dir, img.path).name
    header = img.header.copy()
    for key in [k for k in header if k in _STRUCTURE]:
        del header[key]
    path = job_dir / 'input.fits'
    fits.PrimaryHDU(np.asarray(img.data()), header=header).writeto(path, overwrite=True,
                                                                    output_verify='silentfix')
    return path.name


def _extras(job_dir):
    """objects_in_field and annotations, made on first request and kept."""
    path = Path(job_dir) / EXTRAS_FILE
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        pass
    wcs = Path(job_dir) / RESULT_FILES['wcs']
    if not wcs.is_file():
        raise FileNotFoundError(f'Job {Path(job_dir).name} is not solved.')
    with _LOCK:
        if path.is_file():
            return json.loads(path.read_text(encoding='utf-8'))
        extras = {'objects_in_field': annotate.objects_in_field(wcs),
                  'annotations': annotate.annotations(wcs)}
        _write_json(path, extras)
    return extras


def objects_in_field(job_dir):
    """nova's objects_in_field of a solved job (computed once, then kept)."""
    return _extras(job_dir)['objects_in_field']


def annotations(job_dir):
    """nova's annotations of a solved job (computed once, then kept)."""
    return _extras(job_dir)['annotations']


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
