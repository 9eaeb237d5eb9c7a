"""What is in a solved field (``plot-constellations`` output in nova's shapes,
nova-protocol.md §1.8, §1.9), and the files built from a solution: the
annotated PNG, the image with its solved WCS, the source list with RA/Dec.

Pixels are FITS 1-based throughout, as in nova: ``plot-constellations``
prints them so (θ1 Ori C in a solved Orion field agrees with astropy's
``all_world2pix(..., 1)`` to 0.01 px).
"""
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from ..display import display_levels
from ..drawing import write_png
from ..exceptions import AstrometryNetError, InvalidInputError, LocalSolverNotFoundError
from ..formats import NOT_AN_IMAGE
from ..images import PICTURE_KINDS, file_kind, read_picture
from ..files import atomic_path
from ..results import is_wcs_key
from .solver import INSTALL_SOLVER, xy_columns

__all__ = ['objects_in_field', 'annotations', 'annotated_png', 'new_fits', 'image_rd',
           'image_format', 'read_image']

# Cards that describe a file's structure, never copied from wcs.fits.
_STRUCTURAL = {'SIMPLE', 'BITPIX', 'NAXIS', 'EXTEND', 'XTENSION', 'PCOUNT', 'GCOUNT', 'END', 'DATE'}


def _plot_constellations(installation):
    # it needs no index files: without an installation, PATH is enough
    exe = installation.plot_constellations if installation else shutil.which(
        'plot-constellations')
    if not exe:
        raise LocalSolverNotFoundError('plot-constellations (astrometry.net) was not found on '
                                       f'PATH. Install it with: {INSTALL_SOLVER}')
    return exe


def _run(cmd, timeout=120):
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        text = proc.stderr.decode('utf-8', 'replace').strip()[-500:]
        raise AstrometryNetError(f'{Path(cmd[0]).name} failed (exit {proc.returncode}): {text}')
    return proc


def objects_in_field(wcs_path, *, installation=None):
    """nova's ``objects_in_field`` list for a solved WCS (§1.8).

    Runs ``plot-constellations -w wcs.fits -N -C -B -b 10 -j -L`` and, as nova
    does, splits every output line on "/", strips the pieces and keeps each
    once, in order: "The star Alnilam (ε Ori / 46 Ori)" gives "The star
    Alnilam (ε Ori" and "46 Ori)".

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
    """One object of plot-constellations' JSON, read field by field.

    Names are printed unescaped (a quote in a name would break json.loads),
    so the fields are picked out with patterns instead.
    """
    obj = {k: float(m.group(1)) for k in ('pixelx', 'pixely', 'radius')
           if (m := re.search(rf'"{k}"\s*:\s*([-+0-9.eEinfa]+)', line))}
    kind = re.search(r'"type"\s*:\s*"([^"]*)"', line)
    names = re.search(r'"names"\s*:\s*\[\s*"(.*)"\s*\]', line)
    if not (kind and 'pixelx' in obj and 'pixely' in obj):
        return None
    return dict(obj, type=kind.group(1), names=names.group(1).split('", "') if names else [])


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
    ``plot-constellations`` prints no magnitudes, hence no ``vmag`` key. The
    stars are still listed brightest first: ``-b N`` sorts by V magnitude
    when more than N are in the field, so asking for one fewer than there
    are gives all but the faintest in order, and the faintest is appended.
    Debian ships none of nova's HD, Tycho-2, HIP or Abell catalogues.
    """
    exe = _plot_constellations(installation)
    raw = _raw_annotations(exe, wcs_path)
    stars = [a for a in raw if a.get('type') == 'star']
    if len(stars) > 1:
        ranked = [a for a in _raw_annotations(exe, wcs_path, len(stars) - 1)
                  if a.get('type') == 'star']
        seen = {(a['pixelx'], a['pixely']) for a in ranked}
        stars = ranked + [a for a in stars if (a['pixelx'], a['pixely']) not in seen]
    if nbright is not None:
        stars = stars[:max(int(nbright), 0)]
    bright, point, extended = [], [], []
    for a in stars:
        bright.append({'type': 'bright', 'names': _split_names(a['names']),
                       'pixelx': float(a['pixelx']), 'pixely': float(a['pixely']),
                       'radius': 0.0})
    for a in raw:
        if a.get('type') != 'ngc':
            continue
        names = [n.strip() for n in a['names'] if n.strip()]
        item = {'type': 'ic' if names and names[0].upper().startswith('IC') else 'ngc',
                'names': names, 'pixelx': float(a['pixelx']), 'pixely': float(a['pixely']),
                'radius': float(a.get('radius') or 0.0)}
        (extended if item['radius'] > 0 else point).append(item)
    return point + bright + extended


def image_format(path):
    """The kind of an image file (`~astrometry_query.images.file_kind`: 'fits',
    'png', 'jpeg', 'gif', 'tiff', 'xisf', 'raw'), or None when it is none or unreadable."""
    try:
        return file_kind(path)[0]
    except (OSError, InvalidInputError):
        return None


def read_image(path):
    """The pixels of an image as an (H, W) or (H, W, 3) array; row 0 is y=1.

    FITS: the first HDU with at least 2-D data (its first plane).  Pictures
    (PNG, JPEG, GIF, TIFF, XISF, camera RAW): `~astrometry_query.images.read_picture`,
    top row first, as ``solve-field`` numbers their pixels.
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
    if kind in PICTURE_KINDS:
        return read_picture(path, kind)
    raise InvalidInputError(f'{path} {NOT_AN_IMAGE}')


def _wcs_header(wcs):
    return wcs if isinstance(wcs, fits.Header) else fits.getheader(wcs)


def annotated_png(wcs_path, out_path, *, image_path=None, width=None, height=None,
                  installation=None):
    """Draw the field's named stars and NGC/IC objects on the image, as a PNG of its size.

    The objects are `annotations` (``plot-constellations``); they are
    circled and labelled as `~astrometry_query.plotting.plot_annotations`
    does it, in the same orientation: pixel y = 1 at the bottom, as FITS
    images are shown (north where the WCS puts it), but a PNG, JPEG or GIF
    image as it is seen (its top row is y = 1).  A label that would overlap
    another is left out: Messier objects are labelled first, then the named
    stars, brightest first, then the other NGC/IC objects, largest first.

    Parameters
    ----------
    wcs_path, out_path : str or `~pathlib.Path`
        The solver's ``wcs.fits``, and the PNG to write (replaced whole: a
        reader never sees half a file).
    image_path : str or `~pathlib.Path`, optional
        The solved image (FITS, PNG, JPEG, GIF), drawn underneath: data
        (FITS, 16-bit pictures) through
        `~astrometry_query.display.display_levels`, 8-bit pictures as
        they are. Without it, or when it cannot be read (e.g. a source
        list), the objects are drawn on a black canvas.
    width, height : int, optional
        Canvas size without an image; default IMAGEW/IMAGEH of the WCS.
    installation : `~astrometry_query.local.solver.Installation`, optional

    Returns
    -------
    `~pathlib.Path`
    """
    objects = annotations(wcs_path, installation=installation)
    try:
        pixels = read_image(image_path) if image_path is not None else None
    except (OSError, ValueError, AstrometryNetError):
        pixels = None   # not an image (e.g. a FITS table): a black canvas
    top_down = False
    if pixels is not None:
        top_down = image_format(image_path) in PICTURE_KINDS
        if pixels.dtype != np.uint8 or not top_down:
            pixels = display_levels(pixels if pixels.ndim == 2 else pixels.mean(axis=2))
        height, width = pixels.shape[:2]
    else:
        header = _wcs_header(wcs_path)
        width = int(width or header.get('IMAGEW', 0))
        height = int(height or header.get('IMAGEH', 0))
        if not (width > 0 and height > 0):
            raise InvalidInputError(f'{wcs_path} has no IMAGEW/IMAGEH; give width and height.')
    with atomic_path(out_path) as tmp:
        write_png(tmp, objects, (width, height), pixels=pixels, top_down=top_down)
    return Path(out_path)


def _merge_wcs(header, wcs_header):
    """Replace the WCS cards of ``header`` with those of the solution."""
    for key in [k for k in header if is_wcs_key(k)]:
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
    GIF images are first decoded with Pillow into a grey-level FITS image
    whose row 0 is the top row, as ``solve-field`` numbers their pixels.

    Parameters
    ----------
    image_path, out_path : str or `~pathlib.Path`
        The solved image (gzip-compressed FITS allowed), and the file to write.
    wcs_header : `~astropy.io.fits.Header`, str or `~pathlib.Path`
        The solution, or the path of ``wcs.fits``.

    Returns
    -------
    `~pathlib.Path`
    """
    wcs_header = _wcs_header(wcs_header)
    with atomic_path(out_path) as tmp:
        if image_format(image_path) == 'fits':
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
    return Path(out_path)


def image_rd(axy_path, wcs_header, out_path):
    """The solver's source list with the RA and Dec of each source.

    Parameters
    ----------
    axy_path, out_path : str or `~pathlib.Path`
        ``job.axy`` (X, Y in FITS 1-based pixels, FLUX...), and the file to write.
    wcs_header : `~astropy.io.fits.Header`, str or `~pathlib.Path`
        The solution (its SIP distortion is applied).

    Returns
    -------
    `~pathlib.Path`
        A FITS table: the axy columns plus ``RA`` and ``DEC`` (degrees).
    """
    wcs_header = _wcs_header(wcs_header)
    with fits.open(axy_path) as hdul:
        table = hdul[1]
        xcol, ycol = xy_columns(table.columns.names)
        if xcol is None:
            raise InvalidInputError(f'{axy_path} has no X/Y columns.')
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
    with atomic_path(out_path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), out]).writeto(tmp, overwrite=True)
    return Path(out_path)
