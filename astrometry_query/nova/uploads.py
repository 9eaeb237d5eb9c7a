"""What a nova server is sent for an image: a source list extracted here (sep,
windowed centroids; only the brightest 1000, or when they crowd into part of
the field 1000 spread over it), or the image itself when too
few sources are found, when asked, or for a server that extracts the same
way in parallel (ours)."""
import contextlib
import io

import numpy as np
from astropy.io import fits
from astroquery import log

from .._text import plural
from ..local.selection import extract_for_engine, select_sources
from ..settings import MAX_SOURCES

__all__ = ['send_image', 'MIN_SOURCES']

#: Below this many detected sources the image itself is uploaded.
MIN_SOURCES = 12
# Header cards that describe a file's layout, not the image.
_STRUCTURE = ('SIMPLE', 'BITPIX', 'EXTEND', 'XTENSION', 'PCOUNT', 'GCOUNT', 'BZERO', 'BSCALE',
              'BLANK')


def fits_bytes(img):
    """An in-memory `~astrometry_query.images.Image` as FITS bytes, for an upload."""
    header = img.header.copy()
    for key in [k for k in header if k in _STRUCTURE or k.startswith('NAXIS')]:
        del header[key]
    buffer = io.BytesIO()
    fits.PrimaryHDU(img.data(), header=header).writeto(buffer, output_verify='silentfix')
    return buffer.getvalue()


def send_image(client, img, settings, *, force_image_upload=False, fwhm=3.0,
               detect_threshold=5.0, verbose=True, cpu_slot=None):
    """Submit an image to a nova server; its `~astrometry_query.results.Submission`.

    Parameters
    ----------
    client : `~astrometry_query.nova.client.NovaClient`
    img : `~astrometry_query.images.Image`
    settings : dict
        nova arguments.
    force_image_upload : bool
        Upload the image, not a source list.
    cpu_slot : context manager, optional
        Held while extracting only (a batch extracts one image at a time so
        that its polls are not starved of the GIL).
    """
    if not force_image_upload:
        with cpu_slot or contextlib.nullcontext():
            sources = extract_for_engine(img, fwhm=fwhm, detect_threshold=detect_threshold,
                                         downsample=settings.get('downsample_factor'))
        if verbose:
            log.info(f'Found {plural(len(sources), "source")} in {img.name} '
                     f'({sources.meta["elapsed"]:.2f} s).')
        if len(sources) >= MIN_SOURCES:
            height, width = img.shape
            x, y = sources['x'].value, sources['y'].value
            if sources.meta['crowded']:
                # A crowd (a cluster) holds the brightest sources: send the stars
                # around it too, the crowd thinned (local.selection).
                chosen = select_sources(x, y, width, height, flag=np.asarray(sources['flag']),
                                        limit=MAX_SOURCES)
                x, y = x[chosen], y[chosen]
            return client.submit_source_list(x, y, settings, width=width, height=height)
        log.info(f'Only {plural(len(sources), "source")} found: uploading the image instead.')
    else:
        img.check_values()          # an empty or constant image is not worth an upload
    # nova reads FITS and the common pictures; our server every format this package reads.
    if img.path is not None and (img.kind not in ('xisf', 'raw') or client.reads_any_image()):
        return client.upload(img.path, settings)
    return client.upload(fits_bytes(img), settings, filename='image.fits')
