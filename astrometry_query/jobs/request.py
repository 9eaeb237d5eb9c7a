"""`SolveRequest`: what one solve is asked to do, under one set of names.

The local backend writes it into the job directory (``request.json``), the
server builds it from a row of its store, batches build one per input, and
the runner turns it into the arguments of
`~astrometry_query.local.pipeline.solve` wherever the solve runs.
"""
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .files import REQUEST_FILE, utc_now, write_json

__all__ = ['SolveRequest']


@dataclass
class SolveRequest:
    """One solve: its input, its settings and its limits.

    Exactly one of ``image_path``, ``sources`` and ``url`` names the input,
    or none when the image travels with the request in memory (see
    `~astrometry_query.jobs.JobRunner.submit`).

    Attributes
    ----------
    settings : dict
        nova submission arguments, validated (scale, position, parity, ...).
    hints : dict, str or None
        Header hints: a `~astrometry_query.hints.SolveHints` as a dict, or
        ``'header'`` / ``'verify'`` to read them from the image where it is
        solved (trusted, or searched on without when the index files cannot
        serve them), or None.
    fwhm, detect_threshold : float
        Extraction: star FWHM (pixels) and threshold (sigma).
    timeout : float
        Seconds for the whole solve.
    index_dir : list of str, optional
        Index file directories (None: the installation's).
    width, height : int, optional
        The field in pixels (needed with ``sources``; else read from the image).
    image_path : str, optional
        The image file.
    hdu : int or str, optional
        Which HDU of a FITS image.
    sources : dict, optional
        ``x``, ``y`` and optionally ``flux`` lists (FITS 1-based pixels).
    url : str, optional
        An image to fetch first.
    original_filename : str, optional
        The name the submitter gave (nova's; ``json-xy`` for source lists).
    input_name : str, optional
        The input's file name inside the job directory, when it is there.
    reference : str, optional
        The WCS (header text) of a solved frame of the same field: the solve
        follows that field first (see `~astrometry_query.tracking`).
    reference_sources : dict, optional
        ``x``, ``y`` lists of that frame's sources: the solve registers the
        frame on them.
    search_workers : int, optional
        Engine processes a blind search is split across (None: automatic).
    submitted : str
        When it was made (naive UTC, ``str(datetime)``).
    """
    settings: dict = field(default_factory=dict)
    hints: dict | str | None = None
    fwhm: float = 3.0
    detect_threshold: float = 5.0
    timeout: float = 300.0
    index_dir: list | None = None
    width: int | None = None
    height: int | None = None
    image_path: str | None = None
    hdu: int | str | None = None
    sources: dict | None = None
    url: str | None = None
    original_filename: str | None = None
    input_name: str | None = None
    reference: str | None = None
    reference_sources: dict | None = None
    search_workers: int | None = None
    submitted: str = field(default_factory=lambda: str(utc_now()))

    def __post_init__(self):
        if hasattr(self.hints, 'to_dict'):
            self.hints = self.hints.to_dict()
        if self.sources is not None:
            self.sources = {k: [float(v) for v in self.sources[k]]
                            for k in ('x', 'y', 'flux') if k in self.sources}
        if self.reference_sources is not None:
            self.reference_sources = {k: [float(v) for v in self.reference_sources[k]]
                                      for k in ('x', 'y')}
        if self.index_dir is not None and not isinstance(self.index_dir, list):
            from ..local.solver import index_dirs
            self.index_dir = [str(d) for d in index_dirs(self.index_dir)]
        if self.image_path is not None:
            self.image_path = str(self.image_path)

    @property
    def source_list(self):
        """True when the input is a list of sources rather than an image."""
        return self.sources is not None

    def solve_kwargs(self, image=None):
        """The keyword arguments of `~astrometry_query.local.pipeline.solve`.

        Parameters
        ----------
        image : optional
            The image when it is not a file named by the request (in memory,
            or fetched from ``url``).
        """
        if image is None and self.sources is None:
            image = self.image_path
        return dict(image=image, sources=self.sources, width=self.width, height=self.height,
                    settings=dict(self.settings), hints=self.hints, fwhm=self.fwhm,
                    detect_threshold=self.detect_threshold, timeout=self.timeout,
                    index_dir=self.index_dir, hdu=self.hdu, reference=self.reference,
                    reference_sources=self.reference_sources,
                    search_workers=self.search_workers)

    # -- JSON -------------------------------------------------------------------------------
    def to_json(self):
        """A JSON-ready dict (``request.json``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data):
        """From `to_json`'s dict; also reads the ``request.json`` of jobs made
        before this class (settings under ``args``)."""
        data = dict(data)
        if 'args' in data and 'settings' not in data:
            data['settings'] = data.pop('args')
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, job_dir):
        """Write ``request.json`` into a job directory (atomically)."""
        write_json(Path(job_dir) / REQUEST_FILE, self.to_json())

    @classmethod
    def read(cls, job_dir):
        """The request of a job directory."""
        return cls.from_json(json.loads((Path(job_dir) / REQUEST_FILE).read_text()))
