"""One hierarchy of errors, rooted at `AstrometryNetError`.

Errors raised after something was submitted carry ``submission_id`` (and
``job_id`` when known) so the caller can resume with
``AstrometryNet.wait(submission_id)`` instead of submitting again.
"""
import builtins
import re

from astroquery.exceptions import TimeoutError as _AstroqueryTimeoutError

__all__ = ['AstrometryNetError', 'InvalidSettingError', 'InvalidInputError',
           'MissingAPIKeyError', 'LoginError', 'ServerError', 'SubmissionError',
           'SolveFailedError', 'SolveTimeoutError', 'JobNotFoundError',
           'ResultNotAvailableError', 'LocalSolverNotFoundError', 'UploadUnconfirmedError',
           'IndexCoverageError', 'IndexDownloadError', 'IndexBuildError', 'WorkerLostError']


class AstrometryNetError(Exception):
    """Base class of every error raised by astrometry_query.

    Parameters
    ----------
    message : str
        What went wrong, in words.
    submission_id, job_id : int, optional
        Ids of the work already on the server, so that it can be resumed.
    """

    #: What the ids are good for, said after them: 'resume' (the work may
    #: still finish: wait again), 'inspect' (it ended: look at the job) or None.
    _ids_hint = 'resume'

    def __init__(self, message, *, submission_id=None, job_id=None):
        super().__init__(message)
        self.message = message
        self.submission_id = submission_id
        self.job_id = job_id

    def __str__(self):
        text = self.message
        ids = []
        if self.submission_id is not None:
            ids.append(f'submission {self.submission_id}')
        if self.job_id is not None:
            ids.append(f'job {self.job_id}')
        if not ids or 'resume' in text:
            return text
        hint = ''
        if self._ids_hint == 'resume':
            call = (f'wait({self.submission_id!r})' if self.submission_id is not None
                    else f'wait(job_id={self.job_id!r})')
            hint = f'; resume with AstrometryNet.{call}'
        elif self._ids_hint == 'inspect' and self.job_id is not None:
            hint = f'; details with AstrometryNet.get_job_info({self.job_id!r})'
        return f"{text} ({', '.join(ids)}{hint})"


class InvalidSettingError(AstrometryNetError, ValueError):
    """A solve setting has a wrong name, type or value (raised before any I/O)."""

    def __init__(self, message, *, setting=None, allowed=None):
        super().__init__(message)
        self.setting = setting
        self.allowed = allowed


class InvalidInputError(AstrometryNetError, ValueError):
    """An image, source list, URL or id given by the caller cannot be used."""


class MissingAPIKeyError(AstrometryNetError, RuntimeError):
    """No API key was found for a backend that needs one."""


class LoginError(AstrometryNetError, RuntimeError):
    """The server rejected the API key."""


class ServerError(AstrometryNetError):
    """The server answered with an error payload, an HTML page or a bad status.

    Attributes
    ----------
    status_code : int or None
        The HTTP status of the answer.
    url : str or None
        The URL that was asked (never carries a secret).
    """

    def __init__(self, message, *, status_code=None, url=None, **ids):
        super().__init__(message, **ids)
        self.status_code = status_code
        self.url = url


class JobNotFoundError(ServerError):
    """The server does not know this submission or job id (HTTP 404)."""

    _ids_hint = None        # waiting on an id nobody knows cannot help


class ResultNotAvailableError(AstrometryNetError):
    """A result (calibration, file, annotations) was asked of an unsolved job."""

    _ids_hint = 'inspect'   # still running, or failed: the job's info says which


class SubmissionError(AstrometryNetError):
    """The server could not process what was submitted (its ``error_message``)."""


class UploadUnconfirmedError(SubmissionError):
    """An upload was sent but its answer was lost (the connection broke or
    timed out after sending): the server may have received it.  It is never
    sent again by itself; check ``list_jobs()`` before submitting again."""


class SolveFailedError(AstrometryNetError):
    """The solver ran and did not find a solution."""

    _ids_hint = 'inspect'   # it ended: waiting again gives the same answer


class IndexCoverageError(SolveFailedError):
    """The installed index files cannot solve the field: none has quads of its
    size (or stars at its position).  The message says which series and scales
    to get, how large they are, and the command that fetches them
    (``command``); ``needed_scales`` lists the scales."""

    def __init__(self, message, *, submission_id=None, job_id=None, command='',
                 needed_scales=()):
        super().__init__(message, submission_id=submission_id, job_id=job_id)
        # A failure reported by a job (local or over the wire) has only its
        # text: the command is its indented line, the scales its --scales.
        found = re.search(r'^ {4}((?:astrometry-query index download|sudo apt-get install) .+)$',
                          str(message), re.MULTILINE)
        self.command = command or (found.group(1).strip() if found else '')
        if not needed_scales and found:
            scales = re.search(r'--scales (\d+)(?:-(\d+))?', found.group(1))
            if scales:
                low = int(scales.group(1))
                needed_scales = range(low, int(scales.group(2) or low) + 1)
        self.needed_scales = list(needed_scales)


class SolveTimeoutError(AstrometryNetError, _AstroqueryTimeoutError,
                        builtins.TimeoutError):
    """The solve did not finish within ``solve_timeout``.

    It is both astroquery's ``TimeoutError`` and Python's builtin one.  As in
    astroquery, ``args[1]`` is the submission id.

    Parameters
    ----------
    resumable : bool
        The job may still finish (the wait ran out, not the job): the message
        then says how to wait again.  False when the job itself was stopped
        by its time limit, where waiting again cannot help.
    """

    def __init__(self, message, *, submission_id=None, job_id=None, resumable=True):
        AstrometryNetError.__init__(self, message, submission_id=submission_id,
                                    job_id=job_id)
        self.resumable = resumable
        if not resumable:
            self._ids_hint = 'inspect'
        # astroquery's callers read the submission id from args[1].
        self.args = (message, submission_id)

    def __str__(self):
        return AstrometryNetError.__str__(self)


class LocalSolverNotFoundError(AstrometryNetError, RuntimeError):
    """astrometry.net (astrometry-engine) or the index files it needs are not installed."""


class IndexDownloadError(AstrometryNetError, OSError):
    """Index files could not be fetched or failed their check.  ``failed``
    maps each file name to its reason; the files that did arrive are kept,
    and partial ones resume on the next call."""

    def __init__(self, message, *, failed=None):
        super().__init__(message)
        self.failed = dict(failed or {})


class IndexBuildError(AstrometryNetError, RuntimeError):
    """``build-astrometry-index`` failed on a catalogue."""


class WorkerLostError(AstrometryNetError, RuntimeError):
    """A solve was lost with the worker that ran it (a worker process killed,
    a Dask worker gone): nothing is wrong with the job, which may run again."""
