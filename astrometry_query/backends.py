"""The seam between the facade and what solves: the `Backend` protocol.

Two backends implement it: `~astrometry_query.nova.client.NovaClient` (any
server that speaks the nova API) and `~astrometry_query.local.backend.LocalBackend`
(astrometry.net on this machine).  `FakeBackend` implements it in memory, for
tests of the code above it (as httpx ships ``MockTransport`` for its
transport seam).  The facade only ever speaks this protocol: what differs
between backends is a method of theirs, never a test of their name.
"""
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from astropy.io import fits

from .exceptions import (InvalidInputError, InvalidSettingError, JobNotFoundError,
                         ResultNotAvailableError, SolveFailedError)
from .results import Job, Submission, calibration_from_wcs

__all__ = ['Backend', 'BatchRun', 'BatchItem', 'FakeBackend']


@dataclass
class BatchItem:
    """One input of a batch, checked.

    Attributes
    ----------
    index : int
        Its place among the inputs.
    label : str
        How the result table names it.
    image : `~astrometry_query.images.Image`, optional
    sources : dict, optional
        ``x``, ``y`` arrays, for a source list.
    width, height : int
    settings : dict
        nova arguments.
    hints : optional
        Header hints (`~astrometry_query.hints.SolveHints`, or 'header' /
        'verify' to read them where the solve runs).
    key : str, optional
        Its cache and journal key.
    submission_id, job_id : int, optional
        Once submitted (or known from a journal).
    started : float
        When it was submitted (monotonic).
    reference : str, optional
        In a sequence (``track=True``): the WCS header of the solved frame
        whose field it follows first (see `~astrometry_query.tracking`).
    reference_sources : dict, optional
        ``x``, ``y`` of that frame's sources (the frame is registered on them).
    """
    index: int
    label: str
    image: object = None
    sources: dict | None = None
    width: int | None = None
    height: int | None = None
    settings: dict = field(default_factory=dict)
    hints: object = None
    key: str | None = None
    submission_id: int | None = None
    job_id: int | None = None
    started: float = 0.0
    next_look: float = 0.0
    reference: str | None = None
    reference_sources: dict | None = None


@runtime_checkable
class BatchRun(Protocol):
    """Many inputs on one backend at once (see `Backend.batch`).

    Attributes
    ----------
    window : int
        How many inputs to have in flight at once.
    in_flight : int
        How many are (being checked, submitted or solved) now.
    """
    window: int
    in_flight: int

    def submit(self, index, raw, prepare):
        """Take one input: ``prepare(index, raw)`` checks it and returns
        ``(item, known)``; ``known`` (a result row) when no solve is needed.
        The backend solves the others and calls ``submitted(item)`` (given to
        `Backend.batch`) once each has its ids."""

    def done(self, timeout=None):
        """The inputs finished since the last call, as ``(item, outcome)``: the
        known row (dict), the solved WCS (a Header) or the error (an
        exception); waits for at least one while any is in flight (at most
        ``timeout`` seconds, when given, or a backend's own polling step)."""

    def close(self):
        """Stop: what has not finished is dropped (a journal keeps its ids)."""


@runtime_checkable
class Backend(Protocol):
    """What solves, as the facade sees it.

    Attributes
    ----------
    name : str
        For people ('nova', 'local'); nothing branches on it.
    long_poll : float
        Seconds a status request may be held until the state changes (0: the
        backend offers no long polls).
    reads_header_hints : bool
        Its solves read header hints from the image where they run (the
        facade then does not read them first).
    """
    name: str
    long_poll: float
    reads_header_hints: bool

    def cache_scope(self):
        """What the ids of this backend's jobs are relative to (a server, a job
        store and its index files): part of the solution cache's keys."""

    def hint_attempts(self, settings, hints):
        """How a solve with header hints becomes submissions: a list of
        ``(settings, hints)``, each submitted when the one before found
        nothing.  A backend that falls back by itself submits one."""

    def submit_image(self, image, settings, *, hints=None, fwhm=3.0, detect_threshold=5.0,
                     timeout=None, force_image_upload=False, verbose=True, cpu_slot=None):
        """Submit an `~astrometry_query.images.Image`; a `Submission`."""

    def submit_source_list(self, x, y, settings, *, width, height, timeout=None):
        """Submit source positions (FITS 1-based, brightest first); a `Submission`."""

    def submit_url(self, url, settings, *, timeout=None):
        """Have an image at a URL fetched and solved; a `Submission`."""

    def wait(self, submission_id=None, *, job_id=None, solve_timeout, verbose=True,
             progress=None):
        """Wait for a submission's (or a job's) solve; its `Job`, or a typed error."""

    def submission(self, submission_id):
        """A submission's state, as a `Submission`."""

    def submission_id_of(self, job_id):
        """The submission of a job when the backend knows it without asking, else None."""

    def job_info(self, job_id, submission_id=None, *, cache=False):
        """A job as a `Job`."""

    def calibration(self, job_id, *, cache=False):
        """nova's calibration of a solved job (dict)."""

    def annotations(self, job_id, *, nbright=None, cache=False):
        """nova's annotations of a solved job (list of dicts)."""

    def objects_in_field(self, job_id, *, cache=False):
        """Names of the objects in a solved job's field."""

    def tags(self, job_id, *, machine=False):
        """Tags of a job's image."""

    def my_jobs(self):
        """Ids of the account's (or the job store's) jobs."""

    def job_times(self, job_id):
        """When a job was submitted and when it ended (naive UTC datetimes),
        where the backend knows (nova's API says neither: ``(None, None)``)."""

    def jobs_by_tag(self, tag, exact=False):
        """Ids of the jobs whose image has a tag."""

    def download(self, job_id, kind, *, cache=False):
        """A result file (bytes); kinds as `~astrometry_query.jobs.RESULT_KINDS`."""

    def prune(self, older_than, *, dry_run=False):
        """Delete jobs that ended more than ``older_than`` (a timedelta) ago."""

    def batch(self, *, executor=None, max_concurrency=None, timeout, fwhm=3.0,
              detect_threshold=5.0, force_image_upload=None, submitted=None):
        """A `BatchRun` for many inputs."""

    def close(self):
        """Let go of connections, threads and worker processes."""


class FakeBackend:
    """A `Backend` in memory that solves every input at once with the WCS it
    is given: for tests of code above the backend (the facade, batches,
    caches, reprs), without a server or a solver.

    Parameters
    ----------
    solution : `~astropy.io.fits.Header` or callable, optional
        The WCS every solve returns (it must have IMAGEW/IMAGEH, as a
        solver's does), or ``solution(submitted) -> Header or None`` where
        ``submitted`` is a dict of what was submitted (``kind``, ``image``,
        ``x``, ``y``, ``url``, ``settings``, ``hints``); None means no
        solution.  Default: no solution.

    Attributes
    ----------
    submitted : list of dict
        Everything submitted, in order (its index + 1 is its id).
    """
    name = 'fake'
    long_poll = 0.0
    reads_header_hints = False

    def __init__(self, solution=None):
        self._solution = solution
        self.submitted = []
        self._headers = {}

    def __repr__(self):
        return f'<FakeBackend {len(self.submitted)} submitted>'

    def cache_scope(self):
        return {'backend': 'fake', 'instance': id(self)}

    def hint_attempts(self, settings, hints):
        return [(settings, hints)]

    # -- submitting: solved at once -----------------------------------------------------------
    def _submit(self, **what):
        self.submitted.append(what)
        job_id = len(self.submitted)
        solution = self._solution(what) if callable(self._solution) else self._solution
        if solution is not None:
            self._headers[job_id] = fits.Header(solution)
        return Submission(id=job_id, jobs=[job_id], user_images=[job_id],
                          job_calibrations=[(job_id, job_id)] if solution is not None else [])

    def submit_image(self, image, settings, *, hints=None, fwhm=3.0, detect_threshold=5.0,
                     timeout=None, force_image_upload=False, verbose=True, cpu_slot=None):
        return self._submit(kind='image', image=image, settings=dict(settings), hints=hints)

    def submit_source_list(self, x, y, settings, *, width, height, timeout=None):
        return self._submit(kind='sources', x=list(x), y=list(y), width=width, height=height,
                            settings=dict(settings), hints=None)

    def submit_url(self, url, settings, *, timeout=None):
        return self._submit(kind='url', url=url, settings=dict(settings), hints=None)

    # -- state ----------------------------------------------------------------------------
    def _known(self, job_id):
        job_id = int(job_id)
        if not 0 < job_id <= len(self.submitted):
            raise JobNotFoundError(f'There is no job {job_id}.', job_id=job_id)
        return job_id

    def wait(self, submission_id=None, *, job_id=None, solve_timeout, verbose=True,
             progress=None):
        job_id = self._known(job_id if job_id is not None else submission_id)
        if progress is not None:
            progress('success' if job_id in self._headers else 'failure', job_id, job_id)
        if job_id not in self._headers:
            raise SolveFailedError('The solve failed: no solution (FakeBackend).',
                                   submission_id=job_id, job_id=job_id)
        return self.job_info(job_id, job_id)

    def submission(self, submission_id):
        job_id = self._known(submission_id)
        return Submission(id=job_id, jobs=[job_id], user_images=[job_id],
                          job_calibrations=[(job_id, job_id)] if job_id in self._headers else [])

    def submission_id_of(self, job_id):
        return int(job_id)

    def job_info(self, job_id, submission_id=None, *, cache=False):
        job_id = self._known(job_id)
        payload = {'status': 'success' if job_id in self._headers else 'failure',
                   'objects_in_field': [], 'tags': [], 'machine_tags': [],
                   'original_filename': getattr(self.submitted[job_id - 1].get('image'),
                                                'name', None)}
        if job_id in self._headers:
            payload['calibration'] = self.calibration(job_id)
        return Job.from_api(job_id, payload, submission_id)

    def _header(self, job_id):
        job_id = self._known(job_id)
        if job_id not in self._headers:
            raise ResultNotAvailableError(f'Job {job_id} is not solved.', job_id=job_id)
        return self._headers[job_id]

    # -- results --------------------------------------------------------------------------
    def calibration(self, job_id, *, cache=False):
        return calibration_from_wcs(self._header(job_id))

    def annotations(self, job_id, *, nbright=None, cache=False):
        self._header(job_id)
        return []

    def objects_in_field(self, job_id, *, cache=False):
        self._header(job_id)
        return []

    def tags(self, job_id, *, machine=False):
        return []

    def my_jobs(self):
        return list(range(1, len(self.submitted) + 1))

    def jobs_by_tag(self, tag, exact=False):
        return []

    def job_times(self, job_id):
        self._known(job_id)
        return None, None

    def download(self, job_id, kind, *, cache=False):
        if kind != 'wcs':
            raise InvalidInputError(f'FakeBackend offers only the wcs file, not {kind!r}.')
        return self._header(job_id).tostring().encode('ascii')

    def prune(self, older_than, *, dry_run=False):
        raise InvalidSettingError('FakeBackend keeps no job store to prune.', setting='backend')

    def batch(self, *, executor=None, max_concurrency=None, timeout, fwhm=3.0,
              detect_threshold=5.0, force_image_upload=None, submitted=None):
        return _FakeBatch(self, submitted)

    def close(self):
        pass


class _FakeBatch:
    """A batch on a `FakeBackend`: each input solved (or not) as it is submitted."""
    window = 1

    def __init__(self, backend, submitted):
        self.backend, self.submitted, self._done = backend, submitted, []

    @property
    def in_flight(self):
        return len(self._done)

    def submit(self, index, raw, prepare):
        item, known = prepare(index, raw)
        if known is not None:
            self._done.append((item, known))
            return
        if item.image is not None:
            sub = self.backend.submit_image(item.image, item.settings, hints=item.hints)
        else:
            sub = self.backend.submit_source_list(item.sources['x'], item.sources['y'],
                                                  item.settings, width=item.width,
                                                  height=item.height)
        item.submission_id = item.job_id = sub.id
        if self.submitted is not None:
            self.submitted(item)
        try:
            self.backend.wait(sub.id, solve_timeout=1.0)
            self._done.append((item, self.backend._header(sub.id)))
        except SolveFailedError as exc:
            self._done.append((item, exc))

    def done(self, timeout=None):
        done, self._done = self._done, []
        return done

    def close(self):
        self._done = []
