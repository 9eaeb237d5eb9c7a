"""Plots of a solved field on astropy's WCSAxes: what is in it, and how well it is solved.

`plot_annotations` draws the image under a RA/Dec grid with the named stars
and NGC/IC objects of the field; `plot_solution` draws the extracted sources,
the catalogue stars matched to them and the residual of each match,
magnified so that sub-pixel errors show.

>>> from astrometry_query import AstrometryNet, plotting
>>> header = AstrometryNet.solve_from_image('m42.fits')          # doctest: +SKIP
>>> ax = plotting.plot_annotations('m42.fits', header)           # doctest: +SKIP
>>> ax.figure.savefig('m42-annotated.png')                       # doctest: +SKIP

matplotlib is imported when a plot is made, not when the package is.  The
solver's tables number pixels from 1 (FITS); matplotlib's pixel coordinates
start at 0, so every position is shifted by one when drawn.
"""
# The modules, by responsibility: _display (arguments, display range and
# stretch, the WCSAxes frame, shared by both plots), _guides (compass and
# scale bar), annotations (plot_annotations and the drawing of the objects),
# solution (plot_solution), _picture (the annotated PNG of the local backend,
# drawn as plot_annotations draws).  None imports matplotlib at import time.
from . import annotations as _annotations
from ._display import display_interval, display_norm
from .annotations import plot_annotations
from .solution import plot_solution

__all__ = ['plot_annotations', 'plot_solution', 'display_interval', 'display_norm', 'TYPE_COLORS']

# The same dict as annotations.TYPE_COLORS (changing one changes the plots);
# assigned here, not imported, so that the API docs show the comment below.
#: Colour of each annotation type; other types are drawn in white.
TYPE_COLORS = _annotations.TYPE_COLORS
