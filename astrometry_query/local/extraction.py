"""A job's extraction image, as nova shows one: the sources the solver was
given (the job's ``job.axy``) circled over the image, or over a black canvas
of the image's size when a source list was submitted.

It is drawn (with Pillow) on the first request and kept in the job directory
as ``extraction.png``; the server serves it at nova's
``/extraction_image_display/N`` and ``/extraction_image_full/N``.
"""
import io
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..files import write_atomic
from ..jobs.files import EXTRACTION_FILE

__all__ = ['extraction_png', 'EXTRACTION_FILE', 'CIRCLE_COLOUR']

#: The circles' colour (RGB): seen on grey sky and on black alike.
CIRCLE_COLOUR = (255, 48, 48)


def _background(image_path, width, height):
    """8-bit grey levels of the image, or a black canvas, and whether its row 0
    is the top (a picture, as it is seen) or y = 1 (FITS data, and the canvas).
    The annotated image is drawn the same way."""
    from .annotate import display_levels, image_format, read_image
    try:
        pixels = read_image(image_path) if image_path is not None else None
    except (OSError, ValueError):
        pixels = None       # not a readable image: the canvas
    if pixels is None:
        return np.zeros((height, width), np.uint8), False
    picture = image_format(image_path) != 'fits'
    if pixels.dtype == np.uint8 and picture:
        return pixels, True
    return display_levels(pixels if pixels.ndim == 2 else pixels.mean(axis=2)), picture


def extraction_png(job_dir, axy_name, image_name=None):
    """The path of the job's extraction image, drawn first if it is not there.

    Parameters
    ----------
    job_dir : path-like
        The job directory.
    axy_name : str
        The solver's source list in it (FITS 1-based ``X``, ``Y``; its header's
        ``IMAGEW``/``IMAGEH`` give the canvas size).
    image_name : str, optional
        The submitted image in it; without one, a black canvas.

    Returns
    -------
    `~pathlib.Path`

    Raises
    ------
    FileNotFoundError
        The job has no source list (it did not get as far as the solver).
    """
    from PIL import Image, ImageDraw
    job_dir = Path(job_dir)
    out = job_dir / EXTRACTION_FILE
    if out.is_file():
        return out
    axy = job_dir / axy_name
    if not axy.is_file():
        raise FileNotFoundError(f'Job {job_dir.name} has no source list to draw.')
    with fits.open(axy) as hdul:
        width, height = int(hdul[0].header['IMAGEW']), int(hdul[0].header['IMAGEH'])
        x, y = (np.asarray(hdul[1].data[c], float) for c in ('X', 'Y'))
    pixels, top_down = _background(job_dir / image_name if image_name else None, width, height)
    # A PNG's row 0 is its top: FITS data are drawn with y = 1 at the bottom, as shown
    # everywhere else (north where the WCS puts it); a picture as it is seen.
    canvas = Image.fromarray(np.ascontiguousarray(pixels if top_down else pixels[::-1]))
    canvas = canvas.convert('RGB')
    draw = ImageDraw.Draw(canvas)
    # Rings clear of a bright star's disc, and thick enough to see when scaled down.
    radius = max(7.0, min(canvas.size) / 60.0)
    line = max(2, round(radius / 4))
    rows = y - 1.0 if top_down else canvas.size[1] - y     # FITS 1-based -> the PNG's rows
    for cx, cy in zip(x - 1.0, rows):
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius],
                     outline=CIRCLE_COLOUR, width=line)
    buffer = io.BytesIO()
    canvas.save(buffer, format='PNG')
    return write_atomic(out, buffer.getvalue())
