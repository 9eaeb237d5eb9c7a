"""What a solved job offers beyond its solution, made when first asked for and
then kept in its directory: objects in the field and annotations
(``extras.json``), and the result files of `result_file` (the image with the
WCS, image-radec, the matched stars, the annotated PNG).
"""
import json
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits

from .. import matches
from ..local import annotate
from ..local.extraction import extraction_png
from ..local.refine import reference_stars
from ..local.solver import find_installation, xy_columns
from ..results import calibration_from_wcs, wcs_from_header
from .files import EXTRAS_FILE, REQUEST_FILE, RESULT_KINDS, read_result, write_json
from .request import SolveRequest

__all__ = ['objects_in_field', 'annotations', 'result_file']

# One lock for the first computation of a job's extras (plot-constellations).
_LOCK = threading.Lock()


def _extras(job_dir):
    """objects_in_field and annotations, made on first request and kept."""
    path = Path(job_dir) / EXTRAS_FILE
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except FileNotFoundError:
        pass
    wcs = Path(job_dir) / RESULT_KINDS['wcs'].file
    if not wcs.is_file():
        raise FileNotFoundError(f'Job {Path(job_dir).name} is not solved.')
    with _LOCK:
        if path.is_file():
            return json.loads(path.read_text(encoding='utf-8'))
        extras = {'objects_in_field': annotate.objects_in_field(wcs),
                  'annotations': annotate.annotations(wcs)}
        write_json(path, extras)
    return extras


def objects_in_field(job_dir):
    """nova's objects_in_field of a solved job (computed once, then kept)."""
    return _extras(job_dir)['objects_in_field']


def annotations(job_dir):
    """nova's annotations of a solved job (computed once, then kept)."""
    return _extras(job_dir)['annotations']


def result_file(job_dir, kind):
    """The path of one result file of a job, made on first request if needed.

    Parameters
    ----------
    job_dir : str or `~pathlib.Path`
    kind : str
        A kind of `~astrometry_query.jobs.RESULT_KINDS`: ``'wcs'``, ``'rdls'``,
        ``'axy'``, ``'corr'``, ``'new_fits'`` (the image with the solved WCS),
        ``'image_rd'`` (job.axy plus RA, DEC), ``'matches'`` (every source
        matched with the catalogue stars of the installed index files, with
        residuals), ``'annotated'`` or ``'extraction'`` (the sources circled).

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
    if kind not in RESULT_KINDS:
        raise ValueError(f'Unknown result file kind {kind!r}; use one of {sorted(RESULT_KINDS)}.')
    job_dir = Path(job_dir)
    path = job_dir / RESULT_KINDS[kind].file
    if path.is_file():
        return path
    wcs = job_dir / RESULT_KINDS['wcs'].file
    axy = job_dir / RESULT_KINDS['axy'].file
    result = read_result(job_dir) or {}
    image = job_dir / result['input'] if result.get('input') else None
    if kind == 'extraction' and axy.is_file():      # a failed job's sources are worth seeing too
        return _made(extraction_png, job_dir, path, job_dir, axy.name,
                     None if result.get('source_list') else result.get('input'))
    if kind in ('wcs', 'corr', 'rdls') or (kind != 'axy' and not wcs.is_file()):
        raise FileNotFoundError(f'Job {job_dir.name} has no {path.name}: it is not solved.')
    if kind == 'new_fits':
        if result.get('source_list') or image is None:
            raise FileNotFoundError(f'Job {job_dir.name} was solved from a source list: '
                                    'it has no image to put the WCS into.')
        return _made(annotate.new_fits, job_dir, path, image, wcs, path)
    if kind == 'image_rd' and axy.is_file():
        return _made(annotate.image_rd, job_dir, path, axy, wcs, path)
    if kind == 'matches' and axy.is_file():
        return _made(_matches, job_dir, path, job_dir, axy, wcs, path, result)
    if kind == 'annotated':
        return _made(annotate.annotated_png, job_dir, path, wcs, path,
                     image_path=None if result.get('source_list') else image,
                     width=result.get('width') or None, height=result.get('height') or None)
    raise FileNotFoundError(f'Job {job_dir.name} has no {path.name}.')


def _matches(job_dir, axy, wcs, path, result):
    """matches.fits: the job's sources matched, through its solution, with the
    catalogue stars of the index files it was solved with (a job solved by
    tracking has no corr.fits, and the engine's has only its quads' stars)."""
    request = (SolveRequest.read(job_dir) if (job_dir / REQUEST_FILE).is_file()
               else SolveRequest(settings={}))
    inst = find_installation(index_dir=request.index_dir)
    if not inst.query_starkd:
        raise FileNotFoundError('query-starkd (astrometry.net) is not installed')
    header = fits.getheader(wcs)
    solution = wcs_from_header(header)
    field = calibration_from_wcs(header, result.get('width') or None, result.get('height') or None)
    ra, dec, mag = reference_stars(inst.index_files, field['ra'], field['dec'],
                                   1.05 * field['radius'], query_starkd=inst.query_starkd)
    if not len(ra):
        raise FileNotFoundError('no installed index file has stars in this field')
    sources = fits.getdata(axy, 1)
    names = sources.columns.names
    xcol, ycol = xy_columns(names)
    flux = next((sources[n] for n in names if n.upper() == 'FLUX'), None)
    table = matches.match_sources(np.asarray(sources[xcol], float), np.asarray(sources[ycol], float),
                                  flux, solution, ra, dec, mag, fwhm=request.fwhm)
    return matches.write_matches(table, path)


def _made(make, job_dir, path, *args, **kwargs):
    """``make(*args, **kwargs)``, any failure of it a FileNotFoundError saying why."""
    try:
        return make(*args, **kwargs)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FileNotFoundError(f'Job {Path(job_dir).name}: {path.name} could not be made: '
                                f'{exc}') from exc
