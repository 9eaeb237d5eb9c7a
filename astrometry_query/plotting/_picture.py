"""The annotated picture of a solved field (what `astrometry_query.local.annotate` saves as
``annotated.png``): the image at its own size, one pixel per image pixel, with the objects
of the field circled and labelled as `plot_annotations` does it.  Not public.

Oriented as `plot_annotations` shows the image: pixel y = 1 at the bottom (as FITS
images are shown), but a picture file (PNG, JPEG, GIF) as it is seen, its top row
(y = 1) at the top.  Labels that would overlap one written before are left out (the
named stars come first, brightest first, then NGC/IC objects, largest first); the
circles are all drawn.
"""
from .annotations import TYPE_COLORS, _annotation_rows, draw_objects

__all__ = []

#: matplotlib's points are pixels at this resolution
_DPI = 72.0


def draw_picture(annotations, shape, *, pixels=None, top_down=False):
    """A matplotlib Figure of ``shape`` (nx, ny) pixels with the objects on the image.

    Parameters
    ----------
    annotations : list of dict or `~astropy.table.Table`
        nova's annotations (FITS pixels), e.g. `astrometry_query.local.annotate.annotations`.
    shape : (int, int)
        The image's width and height in pixels.
    pixels : `~numpy.ndarray`, optional
        (ny, nx) grey levels or (ny, nx, 3) RGB, 0-255, row 0 at y = 1; default black.
    top_down : bool
        Show row 0 at the top (a picture file) rather than at the bottom.

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
    fig = Figure(figsize=(nx / _DPI, ny / _DPI), dpi=_DPI, facecolor='black')
    FigureCanvasAgg(fig)        # what the labels are measured with, and the PNG drawn by
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    if pixels is not None:
        ax.imshow(pixels, origin='lower', cmap='gray', vmin=0, vmax=255,
                  interpolation='nearest', resample=False)
    ax.set_aspect('auto')           # the figure has the image's shape already
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(*((ny - 0.5, -0.5) if top_down else (-0.5, ny - 0.5)))
    # Labels a little over 2 % of the larger side high (at least 11 px): readable at
    # full size and when a page shows the picture scaled down to a screen's width.
    draw_objects(ax, _annotation_rows(annotations), (nx, ny), point=0.015 * big,
                 palette=TYPE_COLORS, labels=True, fontsize=max(11.0, big / 45.0),
                 linewidth=max(1.5, big / 400.0), skip_crowded=True)
    return fig


def save_png(fig, path):
    """Write ``fig`` as a PNG of its exact pixel size."""
    fig.savefig(path, format='png', dpi=_DPI, facecolor='black')
