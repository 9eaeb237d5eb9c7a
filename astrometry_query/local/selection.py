"""Which sources the engine is given, and in what order, when the field is crowded.

In a crowded field (an open or globular cluster, a dense part of the Milky
Way) the brightest sources crowd into one region.  The catalogues hold
few of them (a cluster's stars are blends, or fainter than an index keeps,
or simply not there), so a list of the brightest sources, even spread over
solve-field's 10 boxes, makes quads of the crowd and the engine never tries
the catalogue stars outside it.  Here the field is cut into a grid of
cells; cells far denser than the median cell are *crowded*.  Every
uncrowded cell gives its brightest source in turn, then the crowded ones
do, each giving only as many sources as a typical cell holds (its
brightest unblended ones).  A field with no crowded cell keeps exactly the
old order (`uniformize`).
"""
import math

import numpy as np

from ..settings import MAX_SOURCES
from ..sources import FLAG_BLENDED, extract_sources

__all__ = ['crowding', 'select_sources', 'uniformize', 'needs_deeper', 'extract_for_engine',
           'Crowding', 'CROWD_CELLS', 'CROWD_FACTOR', 'CROWD_SOURCES', 'UNIFORM_BOXES']

#: Boxes used to spread the first sources over the field (solve-field's --uniformize 10).
UNIFORM_BOXES = 10

#: Cells along the longer side of the field for the density grid.
CROWD_CELLS = 8
#: A cell holding more than this many times the median cell's sources is crowded.
CROWD_FACTOR = 3.0
#: Fewer sources than this in a cell is never crowding (small-number noise).
_MIN_CROWD = 6
#: Sources extracted from a crowded field (the catalogue stars are among fainter ones).
CROWD_SOURCES = 4000


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
    box = _cells(x, y, width, height, nw, nh)
    # rank of each source within its box (inputs are brightest first)
    rank = _rank_in_cell(box, nw * nh)
    return np.lexsort((np.arange(n), rank))


def _cells(x, y, width, height, nx, ny):
    """The cell of each source (FITS 1-based positions) on an nx by ny grid."""
    bx = np.clip(((np.asarray(x, float) - 0.5) * nx / width).astype(int), 0, nx - 1)
    by = np.clip(((np.asarray(y, float) - 0.5) * ny / height).astype(int), 0, ny - 1)
    return by * nx + bx


def _rank_in_cell(cell, n_cells, first=None):
    """Each source's rank within its cell, in input order (brightest first),
    sources where ``first`` is False before the others."""
    n = len(cell)
    later = np.zeros(n, bool) if first is None else ~np.asarray(first, bool)
    by_cell = np.lexsort((np.arange(n), later, cell))
    start = np.searchsorted(cell[by_cell], np.arange(n_cells))
    rank = np.empty(n, int)
    rank[by_cell] = np.arange(n) - start[cell[by_cell]]
    return rank


class Crowding:
    """Where a field's sources crowd.

    Attributes
    ----------
    cell : `~numpy.ndarray` of int
        The grid cell of each source.
    counts : `~numpy.ndarray` of int
        Sources per cell.
    median : float
        The median cell's count.
    crowded_cells : `~numpy.ndarray` of bool
        Per cell: far denser than the median.
    nx, ny : int
        The grid.
    """

    def __init__(self, cell, counts, median, crowded_cells, nx, ny):
        self.cell, self.counts, self.median = cell, counts, median
        self.crowded_cells, self.nx, self.ny = crowded_cells, nx, ny

    @property
    def crowded(self):
        """Per source: it lies in a crowded cell."""
        return self.crowded_cells[self.cell]

    @property
    def any(self):
        """Some cells are crowded, fewer than half of those holding sources
        (sources in part of the field only, the rest empty or hidden, are
        no crowd)."""
        crowded = int(self.crowded_cells.sum())
        return 0 < crowded < 0.5 * np.count_nonzero(self.counts)

    def cap(self, limit):
        """Sources a crowded cell may give: as many as the median cell holds,
        and at least its share of ``limit``."""
        return max(2, int(math.ceil(self.median)), int(limit) // len(self.counts))


def crowding(x, y, width, height, *, cells=None, factor=None):
    """Count the sources on a grid and find the crowded cells.

    Parameters
    ----------
    x, y : array-like
        Source positions (FITS 1-based pixels).
    width, height : int
        The field size.
    cells : int, optional
        Cells along the longer side (the shorter one has as many as keep
        them square); default `CROWD_CELLS`.
    factor : float, optional
        A cell with more than ``factor`` times the median count (and more
        than Poisson noise would give) is crowded; default `CROWD_FACTOR`
        (``math.inf``: no cell is ever crowded, the selection of old).

    Returns
    -------
    Crowding
    """
    cells = CROWD_CELLS if cells is None else cells
    factor = CROWD_FACTOR if factor is None else factor
    x, y = np.asarray(x, float), np.asarray(y, float)
    side = max(width, height) / max(1, int(cells))
    nx, ny = max(1, round(width / side)), max(1, round(height / side))
    cell = _cells(x, y, width, height, nx, ny)
    counts = np.bincount(cell, minlength=nx * ny)
    median = float(np.median(counts))
    limit = max(factor * median, median + 5.0 * math.sqrt(median), _MIN_CROWD)
    return Crowding(cell, counts, median, counts > limit, nx, ny)


def select_sources(x, y, width, height, *, flag=None, limit=None, cells=None, factor=None):
    """The sources to give the engine, in the order it should use them.

    Parameters
    ----------
    x, y : array-like
        Source positions (FITS 1-based), **brightest first**.
    width, height : int
        The field size.
    flag : array-like of int, optional
        Extraction flags: sources split from blends (`FLAG_BLENDED`) in
        crowded cells are set aside first.
    limit : int, optional
        At most this many indices are returned.
    cells, factor
        The density grid (see `crowding`).

    Returns
    -------
    `~numpy.ndarray` of int
        Indices into ``x``, ``y``: without crowding, the first ``limit``
        sources in solve-field's order (`uniformize`); with it, the
        sources of uncrowded cells, each cell's brightest in turn, then at
        most the median cell's count (or its share of ``limit``) of each
        crowded cell (its brightest, unblended first), in turn too.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    limit = n if limit is None else min(n, int(limit))
    crowd = crowding(x, y, width, height, cells=cells, factor=factor) if n else None
    if crowd is None or not crowd.any:
        order = np.arange(limit)
        return order[uniformize(x[:limit], y[:limit], width, height)]
    blended = (np.zeros(n, bool) if flag is None
               else (np.asarray(flag, int) & FLAG_BLENDED) > 0)
    in_crowd = crowd.crowded
    # Within each crowded cell: unblended sources first, then by brightness.
    rank = _rank_in_cell(crowd.cell, crowd.nx * crowd.ny, first=~(blended & in_crowd))
    keep = ~in_crowd | (rank < crowd.cap(limit))
    kept = np.nonzero(keep)[0]
    # Each uncrowded cell's brightest in turn (within a round, brightest first),
    # then the crowd's: the engine's first quads are made of the stars around it.
    order = kept[np.lexsort((kept, rank[kept], in_crowd[kept]))]
    return order[:limit]


def needs_deeper(x, y, width, height, limit):
    """Whether an extraction that stopped at ``limit`` sources (brightest first)
    should go deeper: its sources crowd into part of the field, so the stars
    outside the crowd are fainter than the last one kept.  Any crowded cell
    will do (the stars around the crowd may all be fainter): the deeper list
    decides how the sources are chosen."""
    return len(x) >= limit and bool(crowding(x, y, width, height).crowded_cells.any())


def extract_for_engine(image, **options):
    """`~astrometry_query.sources.extract_sources` (with ``options``) for the
    engine: the brightest `~astrometry_query.settings.MAX_SOURCES`, or, when
    those crowd into part of the field (`needs_deeper`), the brightest
    `CROWD_SOURCES`, for the stars around the crowd are fainter.

    ``meta['crowded']`` says which (the deeper list is for `select_sources`
    to thin); ``meta['elapsed']`` counts both extractions.
    """
    table = extract_sources(image, **options)
    crowded = needs_deeper(table['x'], table['y'], table.meta['width'], table.meta['height'],
                           MAX_SOURCES)
    if crowded:
        first = table.meta['elapsed']
        table = extract_sources(image, max_sources=CROWD_SOURCES, **options)
        table.meta['elapsed'] += first
    table.meta['crowded'] = crowded
    return table
