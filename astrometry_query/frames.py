"""Writing a solution into the observer's own frame, or beside it.

`write_wcs` puts a solved WCS into the header of the FITS file that was
solved, in place: the pixel data stay byte for byte what they were (the new
header is spliced in front of them, nothing is decoded or re-encoded), every
other card is kept (OBJECT, EXPTIME, FILTER, DATE-OBS...), and the file is
replaced atomically (a crash leaves the original whole) with its permissions.

An earlier WCS is not deleted but commented out, as astrometry.net's own
``new-wcs`` (and so solve-field's ``.new`` files) does: each of its cards
becomes a ``COMMENT Original key: "CRVAL1"= ...`` card.  It can then neither
mix with the new solution (a reader sees one WCS) nor be lost (it can be
read back, e.g. to compare).

Only FITS files can take a header in place.  A tile-compressed FITS (``.fz``)
can too: its image cards live in the header of the compressed table, which
is written like any other (the compressed data are untouched).  A
gzip-compressed FITS (``.fits.gz``) or a picture (PNG, JPEG, TIFF, XISF,
RAW...) cannot without rewriting its data: its solution goes to a sidecar
``NAME.wcs`` file beside it (`sidecar_path`).
"""
import os
import shutil
from pathlib import Path

from astropy.io import fits

from .exceptions import InvalidInputError
from .files import atomic_path, write_atomic
from .images import file_kind, image_stem
from .results import is_wcs_key

__all__ = ['write_wcs', 'write_sidecar', 'store_solution', 'merge_wcs', 'sidecar_path',
           'ORIGINAL_KEY']

#: How an earlier WCS card is kept, commented out (astrometry.net's new-wcs convention).
ORIGINAL_KEY = 'Original key: '
# Cards of a solver's header that describe its own (empty) file, or this package's ids.
_NOT_COPIED = {'SIMPLE', 'BITPIX', 'NAXIS', 'NAXIS1', 'NAXIS2', 'EXTEND', 'XTENSION', 'PCOUNT',
               'GCOUNT', 'END', 'DATE', 'COMMENT', 'HISTORY', ''}


def sidecar_path(image):
    """Where an image's WCS goes when it cannot go into the image: ``m42.jpg`` ->
    ``m42.wcs`` beside it (as ``astrometry-query solve`` names them)."""
    image = Path(image)
    return image.with_name(f'{image_stem(image.name)}.wcs')


def merge_wcs(header, solution, *, note=None):
    """Put a solution into a header: its WCS cards replace the header's,
    whose earlier WCS cards are kept as ``COMMENT Original key: ...`` cards.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        Changed in place.
    solution : `~astropy.io.fits.Header`
        The solved WCS (as a solve returns it: with AN_JOBID/AN_SUBID).
    note : str, optional
        A HISTORY line saying where the solution comes from.
    """
    old = [card for card in header.cards if is_wcs_key(card.keyword)]
    for card in old:
        del header[card.keyword]
    for card in old:
        header.add_comment(f'{ORIGINAL_KEY}{card.image.rstrip()}')
    for card in solution.cards:
        if card.keyword not in _NOT_COPIED:
            header[card.keyword] = (card.value, card.comment)
    if note:
        header.add_history(note)
    return header


def _target_hdu(hdul, hdu):
    """The index of the HDU holding the image (as the solve read it)."""
    if hdu is not None:
        try:
            return hdul.index_of(hdu)
        except (KeyError, IndexError):
            raise InvalidInputError(f'hdu: the file has no HDU {hdu!r}.') from None
    for i, h in enumerate(hdul):
        header = h.header
        if header.get('ZIMAGE') and header.get('ZNAXIS', 0) >= 2:
            return i                      # a tile-compressed image: its table's header
        if i == 0 or header.get('XTENSION') == 'IMAGE':
            if header.get('NAXIS', 0) >= 2 and header.get('NAXIS1') and header.get('NAXIS2'):
                return i
    raise InvalidInputError('the file has no 2-D image to write a WCS into.')


def write_wcs(path, solution, *, hdu=None, note=None):
    """Write a solution into a FITS file's header, in place (see the module's notes).

    Parameters
    ----------
    path : path-like
        The FITS file that was solved (plain or tile-compressed ``.fz``).
    solution : `~astropy.io.fits.Header`
        The solved WCS.
    hdu : int or str, optional
        The HDU that was solved; default the first image (as solves read it).
    note : str, optional
        The HISTORY line; default one naming the job.

    Returns
    -------
    `~pathlib.Path`
        The file written.

    Raises
    ------
    InvalidInputError
        For a file that cannot take a header in place (gzip-compressed, not
        FITS): write a sidecar with ``sidecar_path`` instead.
    """
    path = Path(path)
    kind, gzipped = file_kind(path)
    if kind != 'fits' or gzipped:
        what = 'a gzip-compressed FITS file' if gzipped else f'not a FITS file ({kind or "?"})'
        raise InvalidInputError(f'{path.name} is {what}: its header cannot be rewritten in place '
                                f'without rewriting its data; write the WCS beside it '
                                f'({sidecar_path(path).name}).')
    if note is None:
        job = solution.get('AN_JOBID')
        note = f'WCS by astrometry.net via astrometry_query (job {job})' if job is not None \
            else 'WCS by astrometry.net via astrometry_query'
    # Where the header and the data of the target HDU are in the file, as stored
    # (the compressed table of an .fz, not the image astropy makes of it).
    with fits.open(path, memmap=False, disable_image_compression=True) as hdul:
        index = _target_hdu(hdul, hdu)
        where = hdul.fileinfo(index)
    start, data = where['hdrLoc'], where['datLoc']
    with open(path, 'rb') as f:
        f.seek(start)
        header = fits.Header.fromstring(f.read(data - start))
    new = merge_wcs(header, solution, note=note).tostring(padding=True).encode('ascii')
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as out, open(path, 'rb') as src:
            shutil.copyfileobj(_limited(src, start), out)       # the HDUs before
            out.write(new)
            src.seek(data)
            shutil.copyfileobj(src, out, 1 << 20)               # the data, and the HDUs after
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(path, tmp)
    return path


def write_sidecar(path, solution):
    """Write a solution as a header-only FITS file (a ``.wcs`` file, as
    astrometry.net writes them), atomically; its path."""
    return write_atomic(Path(path), solution.tostring(padding=True).encode('ascii'))


def store_solution(image, solution, *, hdu=None):
    """Keep a solution with its image: in the image's header when it is a FITS
    file (`write_wcs`), else in a sidecar ``.wcs`` file beside it.

    Returns
    -------
    path : `~pathlib.Path`
        The file written.
    in_place : bool
        True when the image itself now holds the solution.
    """
    kind, gzipped = file_kind(image)
    if kind == 'fits' and not gzipped:
        return write_wcs(image, solution, hdu=hdu), True
    return write_sidecar(sidecar_path(image), solution), False


class _limited:
    """The first ``size`` bytes of a file object, for shutil.copyfileobj."""

    def __init__(self, f, size):
        self.f, self.left = f, size

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        chunk = self.f.read(n)
        self.left -= len(chunk)
        return chunk
