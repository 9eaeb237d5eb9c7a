"""`plot_annotations`: the named stars and NGC/IC objects of a solved field,
circled and labelled where the labels crowd each other least."""
from ..drawing import TYPE_COLORS, annotation_rows, draw_objects
from ._display import (_annotations_of, _axes, _client, _flag, _frame, _pixels, _pixels_of,
                       _pixscale, _solution, _wcs_of)
from ._guides import add_guides

__all__ = ['plot_annotations']


def plot_annotations(image, job_or_header, ax=None, *, client=None, annotations=None,
                     nbright=None, hdu=None, interval=None, stretch=None, cmap='gray', grid=True,
                     labels=True, marker_radius=None, fontsize=8, colors=None, compass=False,
                     scalebar=False):
    """Draw the image with a RA/Dec grid and the objects annotated in the field.

    Point-like objects (named stars) get a circle of ``marker_radius``, NGC/IC
    objects a circle of their catalogue size; each is labelled with its first
    name, placed where it overlaps no other label (else the fewest), nor the
    compass and scale bar.  Labels are placed by importance: Messier objects,
    named stars (brightest first), other NGC/IC objects (largest first).

    Parameters
    ----------
    image : path, `~astropy.io.fits.HDUList`, HDU, `~numpy.ndarray`, `~astropy.nddata.NDData` or None
        The solved image (see `~astrometry_query.images.open_image`); None
        draws on a black canvas, or only the overlay when ``ax`` is given.
        New axes show pixel y = 1 at the bottom, as FITS images are shown,
        but a PNG, JPEG or GIF file as it is seen: y = 1 (its top row) at
        the top.
    job_or_header : `~astropy.io.fits.Header`, int or `~astrometry_query.results.Job`
        The header returned by a solve (its WCS is used as is, its
        ``AN_JOBID`` names the job), a job id or a Job record.
    ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
        Axes made with ``projection=WCS(header)`` of this solution; default a
        new figure.
    client : `~astrometry_query.AstrometryNetClass`, optional
        Who is asked for the WCS and the annotations (e.g. the module's
        ``AstrometryNet``); default the client a Job record is bound to (see
        `~astrometry_query.results.Job.bind`), else none: a job id then needs
        a client, and the annotations of a header are computed from its WCS
        by the local astrometry.net (``plot-constellations``).
    annotations : `~astropy.table.Table` or list of dict, optional
        The objects (``get_annotations`` Table, or nova's list); default asked
        of ``client``, or computed from the WCS when there is none.
    nbright : int, optional
        Only the N brightest named stars (when the annotations are not given).
    hdu : int or str, optional
        Which HDU of a FITS image.
    interval : `~astropy.visualization.BaseInterval` or (vmin, vmax), optional
        Default `display_interval`.
    stretch : `~astropy.visualization.BaseStretch`, optional
        Default an asinh stretch fitted to the sky noise (see `display_norm`).
    cmap : str or `~matplotlib.colors.Colormap`
    grid, labels : bool
        Draw the coordinate grid; write the names.
    marker_radius : `~astropy.units.Quantity` or float, optional
        Circle around point-like objects: pixels, or an angle on the sky.
        Default 1.5 % of the larger image side.
    fontsize : float
    colors : dict, optional
        Colour per annotation type, updating `TYPE_COLORS`.
    compass : bool
        Draw arrows to the north and the east (as the WCS has them at the
        field's centre) in the lower left corner.
    scalebar : bool
        Draw a bar of a round angle (about a fifth of the image width) in the
        lower left corner.

    Returns
    -------
    `~astropy.visualization.wcsaxes.WCSAxes`
        The circles are one collection with gid ``'annotations'``, the labels
        texts with gid ``'annotation-label'``; the compass and scale bar are
        in an anchored box with gid ``'guides'`` (arrows with gids
        ``'compass-north'`` and ``'compass-east'``, the bar a line with gid
        ``'scale-bar'``).

    Raises
    ------
    InvalidInputError
        A bad argument (named in the message), an image of another size than
        the solution, a header with neither WCS nor job id, or a job id
        without a client; annotations needed of a header without a client
        where astrometry.net's ``plot-constellations`` is not installed.
    """
    client = _client(client, job_or_header)
    compass, scalebar = _flag(compass, 'compass'), _flag(scalebar, 'scalebar')
    header, job = _solution(job_or_header, client)
    wcs = _wcs_of(header)
    data, top_down = _pixels(image, hdu, wcs)
    if annotations is None:
        annotations = _annotations_of(header, job, client, nbright)
    rows = annotation_rows(annotations)
    palette = dict(TYPE_COLORS, **(colors or {}))
    nx, ny = wcs.pixel_shape
    point = (0.015 * max(nx, ny) if marker_radius is None
             else _pixels_of(marker_radius, 'marker_radius', _pixscale(wcs)))

    new = ax is None
    ax = _axes(ax, wcs)
    _frame(ax, data, wcs, new=new, top_down=top_down, interval=interval, stretch=stretch,
           cmap=cmap, grid=grid)
    guides = add_guides(ax, wcs, compass=compass, scalebar=scalebar)
    draw_objects(ax, rows, (nx, ny), point=point, palette=palette, labels=labels,
                 fontsize=fontsize, reserved=[guides.get_window_extent()] if guides else ())
    return ax

