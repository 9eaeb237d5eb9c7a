"""The augmented x/y list (.axy) that ``astrometry-engine`` solves.

What ``solve-field`` builds with its augment step (sorting, uniformizing,
header directives), built here in process from our own source list and
nova's settings, so that the engine is the only program a solve runs.
The directives are the header cards ``solve-field --just-augment`` writes
with Debian's astrometry.net 0.93.
"""
import math

import numpy as np
from astropy.io import fits

from ..jobs.files import ENGINE_OUTPUTS
from ..settings import MAX_SOURCES, scale_bounds
from .selection import UNIFORM_BOXES, select_sources, uniformize

__all__ = ['uniformize', 'axy_header', 'write_axy', 'OUTPUT_FILES', 'UNIFORM_BOXES']

#: The engine's outputs of one solve, as named in the .axy.
OUTPUT_FILES = ENGINE_OUTPUTS
def axy_header(args, width, height, *, cpulimit=None, outputs=OUTPUT_FILES):
    """The directive cards of a .axy for nova arguments, with nova's semantics:
    a false-y value (0, empty, None) leaves its directive out, and the position
    hint is used only when centre and radius are all non-zero."""
    h = fits.Header()
    h['IMAGEW'] = (int(width), 'image width')
    h['IMAGEH'] = (int(height), 'image height')
    h['ANRUN'] = (True, 'Solve this field!')
    if cpulimit:
        h['ANCLIM'] = (int(max(1, math.ceil(cpulimit))), 'CPU time limit (seconds)')
    h['ANVERUNI'] = (True, 'Uniformize field during verification')
    h['ANVERDUP'] = (False, 'Deduplicate field during verification')
    low, high = scale_bounds(args, width, height)
    if low:
        h['ANAPPL1'] = (float(low), 'scale: arcsec/pixel min')
    if high:
        h['ANAPPU1'] = (float(high), 'scale: arcsec/pixel max')
    if args.get('crpix_center'):
        h['ANCRPIXC'] = (True, 'Set CRPIX to the image center.')
    tweak = args.get('tweak_order', 2)
    if tweak:
        h['ANTWEAK'] = (True, 'Tweak: yes please!')
        h['ANTWEAKO'] = (int(tweak), 'Tweak order')
    else:
        h['ANTWEAK'] = (False, 'Tweak: no, thanks.')
    h['ANTAGALL'] = (True, 'Tag-along all columns from index to RDLS')
    h['ANSOLVED'] = (outputs['solved'], 'solved output file')
    h['ANRDLS'] = (outputs['rdls'], 'ra-dec output file')
    h['ANWCS'] = (outputs['wcs'], 'WCS header output filename')
    h['ANCORR'] = (outputs['corr'], 'Correspondences output filename')
    if args.get('positional_error'):
        h['ANPOSERR'] = (float(args['positional_error']), "star pos'n error (pixels)")
    parity = args.get('parity')
    if parity in (0, 1):
        h['ANPARITY'] = ('POS' if parity == 0 else 'NEG',
                         'det(CD) > 0' if parity == 0 else 'det(CD) < 0')
    if all(args.get(k) for k in ('center_ra', 'center_dec', 'radius')):
        h['ANERA'] = (float(args['center_ra']), 'RA center estimate (deg)')
        h['ANEDEC'] = (float(args['center_dec']), 'Dec center estimate (deg)')
        h['ANERAD'] = (float(args['radius']), 'Search radius from estimated posn (deg)')
    return h


def write_axy(path, x, y, flux, args, width, height, *, cpulimit=None, sort=True, flag=None):
    """Write the .axy of a source list (FITS 1-based pixels).

    The sources are spread over the field as ``solve-field --uniformize``
    does; when they crowd into part of it (a cluster), the crowd is thinned
    first (`~astrometry_query.local.selection.select_sources`).

    Parameters
    ----------
    x, y : array-like
        Source positions, FITS 1-based.
    flux : array-like or None
        With fluxes, sources are sorted brightest first (as solve-field
        does); without, their order is kept (nova: brightest first is the
        submitter's job).
    args : dict
        nova arguments (see `axy_header`).
    width, height : int
        The field size.
    cpulimit : float, optional
        The engine's CPU-time limit, seconds.
    flag : array-like of int, optional
        Extraction flags (`~astrometry_query.sources.FLAG_BLENDED`...), in
        the order of ``x``: blends in a crowd are set aside first.

    Returns
    -------
    int
        The number of sources written (at most 1000, as nova).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    flux = None if flux is None else np.asarray(flux, float)
    flag = None if flag is None else np.asarray(flag, int)
    if flux is not None and sort:
        order = np.argsort(-np.nan_to_num(flux, nan=-np.inf), kind='stable')
        x, y, flux = x[order], y[order], flux[order]
        flag = None if flag is None else flag[order]
    order = select_sources(x, y, width, height, flag=flag, limit=MAX_SOURCES)
    columns = [fits.Column('X', 'D', array=x[order]), fits.Column('Y', 'D', array=y[order])]
    if flux is not None:
        columns.append(fits.Column('FLUX', 'D', array=flux[order]))
    primary = fits.PrimaryHDU(header=axy_header(args, width, height, cpulimit=cpulimit))
    fits.HDUList([primary, fits.BinTableHDU.from_columns(columns)]).writeto(path, overwrite=True)
    return len(order)
