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
from ..settings import MAX_SOURCES

__all__ = ['uniformize', 'scale_bounds', 'axy_header', 'write_axy', 'OUTPUT_FILES']

#: The engine's outputs of one solve, as named in the .axy.
OUTPUT_FILES = ENGINE_OUTPUTS
#: Boxes used to spread the first sources over the field (solve-field's --uniformize 10).
UNIFORM_BOXES = 10
_ARCSEC_PER_DEG = 3600.0


def uniformize(x, y, width, height, boxes=UNIFORM_BOXES):
    """An order that takes the brightest source of each box in turn.

    The input is brightest first.  Round k holds the k-th brightest source
    of every box, brightest first, so the first sources the engine builds
    quads from cover the whole field instead of one bright corner.

    Returns
    -------
    `~numpy.ndarray` of int
    """
    n = len(x)
    if n == 0 or boxes <= 1:
        return np.arange(n)
    nw = max(1, int(round(math.sqrt(boxes * width / height))))
    nh = max(1, int(round(boxes / nw)))
    bx = np.clip(((np.asarray(x) - 0.5) * nw / width).astype(int), 0, nw - 1)
    by = np.clip(((np.asarray(y) - 0.5) * nh / height).astype(int), 0, nh - 1)
    box = by * nw + bx
    # rank of each source within its box (inputs are brightest first)
    rank = np.empty(n, dtype=int)
    seen = {}
    for i, b in enumerate(box):
        rank[i] = seen.get(b, 0)
        seen[b] = rank[i] + 1
    return np.lexsort((np.arange(n), rank))


def scale_bounds(args, width, height):
    """(low, high) pixel scale in arcsec/pixel of nova arguments, or (None, None)."""
    units = args.get('scale_units') or 'degwidth'
    if args.get('scale_type', 'ul') == 'ev':
        est, err = args.get('scale_est'), args.get('scale_err')
        if not (est and err is not None):
            return None, None
        low, high = est * (1 - err / 100.0), est * (1 + err / 100.0)
    else:
        low, high = args.get('scale_lower'), args.get('scale_upper')
    if not (low or high):
        return None, None
    size = float(width)     # solve-field's field widths are the image width
    to_app = {'arcsecperpix': lambda v: v,
              'degwidth': lambda v: v * _ARCSEC_PER_DEG / size,
              'arcminwidth': lambda v: v * 60.0 / size,
              # 35 mm equivalent focal length, as solve-field converts it
              'focalmm': lambda v: math.degrees(math.atan(36.0 / (2 * v)))
              * _ARCSEC_PER_DEG / size}
    convert = to_app.get(units, to_app['degwidth'])
    low, high = (convert(v) if v else None for v in (low, high))
    if units == 'focalmm':          # a longer focal length is a smaller scale
        low, high = high, low
    return low, high


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


def write_axy(path, x, y, flux, args, width, height, *, cpulimit=None, sort=True):
    """Write the .axy of a source list (FITS 1-based pixels).

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

    Returns
    -------
    int
        The number of sources written (at most 1000, as nova).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    flux = None if flux is None else np.asarray(flux, float)
    if flux is not None and sort:
        order = np.argsort(-np.nan_to_num(flux, nan=-np.inf), kind='stable')
        x, y, flux = x[order], y[order], flux[order]
    x, y = x[:MAX_SOURCES], y[:MAX_SOURCES]
    flux = None if flux is None else flux[:MAX_SOURCES]
    order = uniformize(x, y, width, height)
    columns = [fits.Column('X', 'D', array=x[order]), fits.Column('Y', 'D', array=y[order])]
    if flux is not None:
        columns.append(fits.Column('FLUX', 'D', array=flux[order]))
    primary = fits.PrimaryHDU(header=axy_header(args, width, height, cpulimit=cpulimit))
    fits.HDUList([primary, fits.BinTableHDU.from_columns(columns)]).writeto(path, overwrite=True)
    return len(x)
