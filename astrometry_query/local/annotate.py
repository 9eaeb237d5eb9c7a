"""What is in a solved field, and the files built from a solution.

``plot-constellations`` (astrometry.net) lists and draws the named stars,
NGC/IC objects and constellations of a WCS; this module turns its output into
nova's shapes (nova-protocol.md §1.8, §1.9) and builds the derived result
files: the annotated PNG, the image with its solved WCS, and the source list
with RA/Dec.

Pixel coordinates are FITS 1-based throughout, as in nova and astrometry.net:
``plot-constellations`` prints them that way (checked against astropy's
``all_world2pix(..., 1)`` on a solved Orion field: θ1 Ori C agrees to 0.01 px).
"""
import gzip
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..exceptions import AstrometryNetError, InvalidInputError, LocalSolverNotFoundError
from .solver import INSTALL_SOLVER, find_installation

__all__ = ['objects_in_field', 'annotations', 'annotated_png', 'new_fits', 'image_rd',
           'image_format', 'read_image']

_NETPBM = {'png': 'pngtopnm', 'jpeg': 'jpegtopnm', 'gif': 'giftopnm'}
_MAGIC = ((b'\x89PNG', 'png'), (b'\xff\xd8', 'jpeg'), (b'GIF8', 'gif'), (b'SIMPLE  =', 'fits'))
# Cards that describe a file's structure, never copied from wcs.fits.
_STRUCTURAL = {'SIMPLE', 'BITPIX', 'NAXIS', 'EXTEND', 'XTENSION', 'PCOUNT', 'GCOUNT', 'END',
               'DATE'}
_WCS_KEY = re.compile(r'^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|'
                      r'PV\d_\d+|PS\d_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|'
                      r'IMAGEW|IMAGEH|(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+))$')


def _plot_constellations(installation):
    inst = installation or find_installation()
    if not inst.plot_constellations:
        raise LocalSolverNotFoundError('plot-constellations (astrometry.net) was not found on '
                                       f'PATH. Install it with: {INSTALL_SOLVER}')
    return inst.plot_constellations


def _run(cmd, timeout=120):
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        text = proc.stderr.decode('utf-8', 'replace').strip()[-500:]
        raise AstrometryNetError(f'{Path(cmd[0]).name} failed (exit {proc.returncode}): {text}')
    return proc


def objects_in_field(wcs_path, *, installation=None):
    """nova's ``objects_in_field`` list for a solved WCS.

    Runs ``plot-constellations -w wcs.fits -N -C -B -b 10 -j -L`` (NGC/IC,
    constellations, the 10 brightest named stars) and, as nova does, splits
    every output line on "/", strips the pieces and keeps each once, in order.
    So "The star Alnilam (ε Ori / 46 Ori)" gives "The star Alnilam (ε Ori" and
    "46 Ori)".

    Parameters
    ----------
    wcs_path : str or `~pathlib.Path`
        The solver's ``wcs.fits``.
    installation : `~astrometry_query.local.solver.Installation`, optional

    Returns
    -------
    list of str
    """
    exe = _plot_constellations(installation)
    proc = _run([exe, '-w', str(wcs_path), '-N', '-C', '-B', '-b', '10', '-j', '-L'])
    pieces = (p.strip() for line in proc.stdout.decode('utf-8', 'replace').splitlines()
              for p in line.split('/'))
    return list(dict.fromkeys(p for p in pieces if p))


def _parse_annotation(line):
    """One annotation object from a line of plot-constellations' JSON."""
    text = line.strip().rstrip(',').strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # Names are printed unescaped, so a quote in a name breaks the JSON:
    # read the fields one by one instead.
    obj = {}
    for key in ('type', 'name'):
        m = re.search(rf'"{key}"\s*:\s*"([^"]*)"', text)
        if m:
            obj[key] = m.group(1)
    for key in ('pixelx', 'pixely', 'radius'):
        m = re.search(rf'"{key}"\s*:\s*([-+0-9.eEinfa]+)', text)
        if m:
            obj[key] = float(m.group(1))
    m = re.search(r'"names"\s*:\s*\[(.*)\]', text)
    if m:
        obj['names'] = [n.strip().strip('"') for n in m.group(1).split('", "')]
    return obj if {'type', 'pixelx', 'pixely'} <= obj.keys() else None


def _split_names(names):
    out = (p.strip() for n in names for p in str(n).split(' / '))
    return list(dict.fromkeys(p for p in out if p))


def _raw_annotations(exe, wcs_path, nbright=None):
    cmd = [exe, '-w', str(wcs_path), '-N', '-C', '-B', '-L', '-J']
    if nbright:
        cmd += ['-b', str(int(nbright))]
    # The JSON goes to stderr, after any log messages; each object is on a
    # line of its own, which is what is read (the envelope is not needed).
    stderr = _run(cmd).stderr.decode('utf-8', 'replace')
    items = (_parse_annotation(line) for line in stderr.splitlines()
             if re.match(r'\s*\{\s*"type"', line))
    return [a for a in items if a]


def _key(a):
    return (a.get('type'), round(float(a['pixelx']), 3), round(float(a['pixely']), 3))


def annotations(wcs_path, *, nbright=None, installation=None):
    """nova's ``annotations`` for a solved WCS.

    Each item is ``{"type", "names", "pixelx", "pixely", "radius"}`` with
    FITS 1-based pixels. ``plot-constellations`` types are mapped to nova's:
    named stars become ``"bright"`` (names split on " / ", e.g. ``["Hatysa",
    "ι Ori", "44 Ori"]``, radius 0.0), NGC/IC objects ``"ngc"`` or ``"ic"``
    by their first name (radius: half the catalog size, in pixels). The order
    is nova's: point-like NGC/IC, bright stars, then NGC/IC with a radius.

    Parameters
    ----------
    wcs_path : str or `~pathlib.Path`
        The solver's ``wcs.fits``.
    nbright : int, optional
        Keep only the N brightest named stars. Default: all of them.
    installation : `~astrometry_query.local.solver.Installation`, optional

    Returns
    -------
    list of dict

    Notes
    -----
    ``plot-constellations`` prints no magnitudes, so there is no ``vmag`` key.
    Bright stars are still listed brightest first: ``-b N`` sorts by V
    magnitude when more than N stars are in the field, so asking for one
    star fewer than there are gives all but the faintest in magnitude order,
    and the faintest is appended. ``nbright`` then keeps the first N.
    Debian ships none of nova's HD, Tycho-2, HIP or Abell catalogues, so
    only ``bright``, ``ngc`` and ``ic`` occur.
    """
    exe = _plot_constellations(installation)
    raw = _raw_annotations(exe, wcs_path)
    stars = [a for a in raw if a.get('type') == 'star']
    if len(stars) > 1:
        ranked = [a for a in _raw_annotations(exe, wcs_path, len(stars) - 1)
                  if a.get('type') == 'star']
        seen = {_key(a) for a in ranked}
        stars = ranked + [a for a in stars if _key(a) not in seen]
    if nbright is not None:
        stars = stars[:max(int(nbright), 0)]
    bright, point, extended = [], [], []
    for a in stars:
        bright.append({'type': 'bright', 'names': _split_names(a.get('names') or [a.get('name')]),
                       'pixelx': float(a['pixelx']), 'pixely': float(a['pixely']),
                       'radius': 0.0})
    for a in raw:
        if a.get('type') != 'ngc':
            continue
        names = [str(n).strip() for n in a.get('names') or [] if str(n).strip()]
        item = {'type': 'ic' if names and names[0].upper().startswith('IC') else 'ngc',
                'names': names, 'pixelx': float(a['pixelx']), 'pixely': float(a['pixely']),
                'radius': float(a.get('radius') or 0.0)}
        (extended if item['radius'] > 0 else point).append(item)
    return point + bright + extended


def image_format(path):
    """'fits', 'png', 'jpeg', 'gif' or None, from a file's first bytes (gzip allowed)."""
    try:
        with open(path, 'rb') as f:
            head = f.read(16)
            if head[:2] == b'\x1f\x8b':
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    head = g.read(16)
    except (OSError, EOFError):
        return None
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def _read_pnm(data):
    """Array of a binary PGM/PPM (P5/P6): (H, W) or (H, W, 3)."""
    tokens, pos = [], 0
    while len(tokens) < 4:
        m = re.compile(rb'\s*(#[^\n]*\n\s*)*(\S+)').match(data, pos)
        if not m:
            raise InvalidInputError('Unreadable PNM data from the image converter.')
        tokens.append(m.group(2))
        pos = m.end()
    magic, width, height, maxval = tokens[0], int(tokens[1]), int(tokens[2]), int(tokens[3])
    if magic not in (b'P5', b'P6'):
        raise InvalidInputError(f'Unsupported PNM type {magic!r} from the image converter.')
    planes = 3 if magic == b'P6' else 1
    dtype = np.dtype('>u2') if maxval > 255 else np.uint8
    count = width * height * planes
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos + 1)
    return arr.reshape((height, width, planes) if planes == 3 else (height, width))


def read_image(path):
    """The pixels of an image, rows in the solver's pixel-y order (row 0 is y=1).

    FITS: the first HDU with at least 2-D data (its first plane). PNG, JPEG
    and GIF: decoded with netpbm (``pngtopnm``... installed with
    astrometry.net), top row first, as ``solve-field`` numbers their pixels.

    Returns
    -------
    `~numpy.ndarray`
        (H, W), or (H, W, 3) for colour pictures.
    """
    kind = image_format(path)
    if kind == 'fits':
        with fits.open(path) as hdul:
            for hdu in hdul:
                if hdu.is_image and hdu.data is not None and hdu.data.ndim >= 2:
                    data = hdu.data
                    while data.ndim > 2:
                        data = data[0]
                    return np.array(data)   # a copy: the file is closed on return
        raise InvalidInputError(f'{path} has no image HDU with 2-D data.')
    if kind in _NETPBM:
        exe = shutil.which(_NETPBM[kind])
        if exe is None:
            raise InvalidInputError(f'Reading a {kind.upper()} image needs {_NETPBM[kind]} '
                                    '(sudo apt-get install netpbm).')
        return _read_pnm(_run([exe, str(path)]).stdout)
    raise InvalidInputError(f'{path} is not a FITS, PNG, JPEG or GIF image.')


def _stretch(data):
    """8-bit asinh stretch between robust limits; NaN-safe."""
    data = np.asarray(data, dtype=float)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros(data.shape, np.uint8)
    sample = finite[::max(1, finite.size // 1_000_000)]   # percentiles on <= 1e6 pixels
    lo, hi = np.percentile(sample, [0.5, 99.8])
    if hi <= lo:
        hi = lo + 1.0
    scaled = np.clip((np.nan_to_num(data, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.round(255.0 * np.arcsinh(10.0 * scaled) / np.arcsinh(10.0)).astype(np.uint8)


def _write_ppm(path, pixels):
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    height, width = pixels.shape[:2]
    with open(path, 'wb') as f:
        f.write(f'P6\n{width} {height}\n255\n'.encode('ascii'))
        f.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())


def _tmp_name(path):
    path = Path(path)
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp')


def _wcs_header(wcs_header):
    if isinstance(wcs_header, fits.Header):
        return wcs_header
    return fits.getheader(wcs_header)


def annotated_png(wcs_path, out_path, *, image_path=None, width=None, height=None,
                  installation=None):
    """Draw the field's named stars, NGC/IC objects and constellations.

    Parameters
    ----------
    wcs_path : str or `~pathlib.Path`
        The solver's ``wcs.fits``.
    out_path : str or `~pathlib.Path`
        The PNG to write.
    image_path : str or `~pathlib.Path`, optional
        The solved image (FITS, PNG, JPEG, GIF), drawn underneath with an
        asinh stretch (FITS) or as is. Without it, or when it cannot be read
        (e.g. a source list), the overlay is drawn on a black canvas.
    width, height : int, optional
        Canvas size; default IMAGEW/IMAGEH of the WCS.

    Returns
    -------
    `~pathlib.Path`
    """
    exe = _plot_constellations(installation)
    out_path = Path(out_path)
    ppm = _tmp_name(out_path.with_suffix('.ppm'))
    cmd = [exe, '-w', str(wcs_path), '-N', '-C', '-B']
    pixels = None
    if image_path is not None and image_format(image_path) is not None:
        try:
            pixels = read_image(image_path)
        except (OSError, ValueError, AstrometryNetError):
            pixels = None   # not an image after all (a FITS table): blank canvas
    if pixels is not None:
        if pixels.ndim == 2 or pixels.dtype != np.uint8:
            pixels = _stretch(pixels)
        _write_ppm(ppm, pixels)
        cmd += ['-i', str(ppm)]
    else:
        header = _wcs_header(wcs_path)
        width = int(width or header.get('IMAGEW', 0))
        height = int(height or header.get('IMAGEH', 0))
        if not (width > 0 and height > 0):
            raise InvalidInputError(f'{wcs_path} has no IMAGEW/IMAGEH; give width and height.')
        cmd += ['-W', str(width), '-H', str(height)]
    tmp = _tmp_name(out_path)
    try:
        _run(cmd + ['-o', str(tmp)])
        os.replace(tmp, out_path)
    finally:
        ppm.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out_path


def _merge_wcs(header, wcs_header):
    """Replace the WCS cards of ``header`` with those of the solution."""
    for key in [k for k in header if _WCS_KEY.match(k)]:
        del header[key]
    for card in wcs_header.cards:
        if card.keyword in _STRUCTURAL or not card.keyword:
            continue
        if card.keyword == 'COMMENT':
            header.add_comment(card.value)
        elif card.keyword == 'HISTORY':
            header.add_history(card.value)
        else:
            header[card.keyword] = (card.value, card.comment)


def new_fits(image_path, wcs_header, out_path):
    """The original image with the solved WCS merged into its header.

    The image's own WCS cards are replaced by the solution's (TAN-SIP); the
    data are written unchanged (no rescaling of BZERO/BSCALE). The WCS goes
    into the HDU holding the image (the first with 2-D data). PNG, JPEG and
    GIF images are first decoded with netpbm into a grey-level FITS image
    whose row 0 is the top row, as ``solve-field`` numbers their pixels.

    Parameters
    ----------
    image_path : str or `~pathlib.Path`
        The solved image (gzip-compressed FITS allowed).
    wcs_header : `~astropy.io.fits.Header`, str or `~pathlib.Path`
        The solution, or the path of ``wcs.fits``.
    out_path : str or `~pathlib.Path`

    Returns
    -------
    `~pathlib.Path`
    """
    wcs_header = _wcs_header(wcs_header)
    out_path = Path(out_path)
    tmp = _tmp_name(out_path)
    kind = image_format(image_path)
    try:
        if kind == 'fits':
            with fits.open(image_path, do_not_scale_image_data=True) as hdul:
                hdus = fits.HDUList()
                target = None
                for hdu in hdul:
                    if isinstance(hdu, fits.CompImageHDU):   # recompressing would change floats
                        hdu = fits.ImageHDU(hdu.data, hdu.header)
                    if target is None and hdu.is_image and hdu.data is not None \
                            and hdu.data.ndim >= 2:
                        target = hdu
                    hdus.append(hdu)
                if target is None:
                    raise InvalidInputError(f'{image_path} has no image to put the WCS into.')
                _merge_wcs(target.header, wcs_header)
                hdus.writeto(tmp, output_verify='silentfix+ignore', overwrite=True)
        else:
            pixels = read_image(image_path)
            if pixels.ndim == 3:   # grey levels, in the pixels' own type
                pixels = np.round(pixels.mean(axis=2)).astype(pixels.dtype)
            hdu = fits.PrimaryHDU(np.asarray(pixels, dtype=pixels.dtype.newbyteorder('=')))
            _merge_wcs(hdu.header, wcs_header)
            hdu.writeto(tmp, overwrite=True)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _xy_columns(names):
    upper = {n.upper(): n for n in names}
    for x, y in (('X', 'Y'), ('X_IMAGE', 'Y_IMAGE'), ('XWIN_IMAGE', 'YWIN_IMAGE'),
                 ('FIELD_X', 'FIELD_Y')):
        if x in upper and y in upper:
            return upper[x], upper[y]
    raise InvalidInputError(f'No X/Y columns in the source list (columns: {list(names)}).')


def image_rd(axy_path, wcs_header, out_path):
    """The solver's source list with the RA and Dec of each source.

    Parameters
    ----------
    axy_path : str or `~pathlib.Path`
        ``job.axy`` (X, Y in FITS 1-based pixels, plus FLUX... columns).
    wcs_header : `~astropy.io.fits.Header`, str or `~pathlib.Path`
        The solution (its SIP distortion is applied).
    out_path : str or `~pathlib.Path`

    Returns
    -------
    `~pathlib.Path`
        A FITS table: the axy columns plus ``RA`` and ``DEC`` (degrees).
    """
    wcs_header = _wcs_header(wcs_header)
    out_path = Path(out_path)
    with fits.open(axy_path) as hdul:
        table = hdul[1]
        xcol, ycol = _xy_columns(table.columns.names)
        x = np.asarray(table.data[xcol], dtype=float)
        y = np.asarray(table.data[ycol], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FITSFixedWarning)
            wcs = WCS(wcs_header, relax=True)
        ra, dec = wcs.all_pix2world(x, y, 1)
        columns = [c for c in table.columns if c.name.upper() not in ('RA', 'DEC')]
        columns += [fits.Column('RA', 'D', unit='deg', array=np.asarray(ra) % 360.0),
                    fits.Column('DEC', 'D', unit='deg', array=np.asarray(dec))]
        out = fits.BinTableHDU.from_columns(columns)
    tmp = _tmp_name(out_path)
    try:
        fits.HDUList([fits.PrimaryHDU(), out]).writeto(tmp, overwrite=True)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
