"""Internal: the engine side of a local solve, on this machine.

``pipeline`` (one solve as one plain, picklable function: public, see
`astrometry_query.local.pipeline`), ``axy`` (the engine's input), ``solver``
(finding astrometry.net, running ``astrometry-engine``), ``refine`` (the WCS
refit), ``annotate`` and ``extraction`` (what a solved job offers, made
lazily), ``backend`` (the local backend).
"""

__all__ = []
