"""The annotated picture of a solved field (what `astrometry_query.local.annotate` saves as
``annotated.png``): the image at its own size, one pixel per image pixel, with the objects
of the field circled and labelled as `plot_annotations` does it.  Not public.

Oriented as `plot_annotations` shows the image: pixel y = 1 at the bottom (as FITS
images are shown), but a picture file (PNG, JPEG, GIF) as it is seen, its top row
(y = 1) at the top.  Labels that would overlap one written before are left out (Messier
objects first, then named stars, brightest first, then other NGC/IC objects, largest
first); the circles are all drawn.

matplotlib draws the objects on a transparent figure, which Pillow lays over the image:
matplotlib would resample a large image, for seconds, to put it back pixel for pixel.
"""
import numpy as np

from .annotations import TYPE_COLORS, _annotation_rows, draw_objects

__all__ = []

#: matplotlib's points are pixels at this resolution
_DPI = 72.0


def draw_overlay(annotations, shape, *, top_down=False):
    """The objects on a transparent matplotlib Figure of ``shape`` (nx, ny) pixels.

    Parameters
    ----------
    annotations : list of dict or `~astropy.table.Table`
        nova's annotations (FITS pixels), e.g. `astrometry_query.local.annotate.annotations`.
    shape : (int, int)
        The image's width and height in pixels.
    top_down : bool
        Pixel y = 1 at the top (a picture file) rather than at the bottom.

    Returns
    -------
    `~matplotlib.figure.Figure`
        On an Agg canvas, not attached to pyplot (safe in server threads); its
        one axes has the gids of `plot_annotations`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    nx, ny = shape
    big = max(nx, ny)
    fig = Figure(figsize=(nx / _DPI, ny / _DPI), dpi=_DPI)
    fig.patch.set_alpha(0.0)
    FigureCanvasAgg(fig)        # what the labels are measured with, and drawn by
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(*((ny - 0.5, -0.5) if top_down else (-0.5, ny - 0.5)))
    # Labels a little over 2 % of the larger side high (at least 11 px): readable at
    # full size and when a page shows the picture scaled down to a screen's width.
    draw_objects(ax, _annotation_rows(annotations), (nx, ny), point=0.015 * big,
                 palette=TYPE_COLORS, labels=True, fontsize=max(11.0, big / 45.0),
                 linewidth=max(1.5, big / 400.0), skip_crowded=True)
    return fig


def write_png(path, annotations, shape, *, pixels=None, top_down=False):
    """Save the image with the objects drawn over it as an RGB PNG of ``shape`` (nx, ny).

    ``pixels``: (ny, nx) grey levels or (ny, nx, 3) RGB, uint8, row 0 at y = 1; default a
    black canvas.  Returns the overlay's Figure (see `draw_overlay`).
    """
    from PIL import Image
    fig = draw_overlay(annotations, shape, top_down=top_down)
    fig.canvas.draw()
    overlay = Image.fromarray(np.asarray(fig.canvas.buffer_rgba()))
    if pixels is None:
        base = Image.new('RGBA', overlay.size, (0, 0, 0, 255))
    else:
        rows = pixels if top_down else pixels[::-1]     # the PNG's row 0 is its top
        base = Image.fromarray(np.ascontiguousarray(rows, dtype=np.uint8)).convert('RGBA')
    # zlib's fast level: a large noisy image compresses little whatever the level, and
    # the slowest takes seconds
    Image.alpha_composite(base, overlay).convert('RGB').save(path, format='PNG',
                                                             compress_level=3)
    return fig
