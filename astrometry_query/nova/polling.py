"""Waiting for a submission on a nova server to become a solved job.

Polls briskly while the job is young (most solves take seconds) and less
often later, sleeps as long as a server's Retry-After asks, and, against a
server that offers long polls (ours: the ``X-Long-Poll`` header), asks it to
answer when the state changes, so no solve waits idle.  Shows a status line
while waiting (silenced by ``verbose=False``), calls an optional progress
hook, and turns every outcome into a Job or a typed error carrying the ids.
"""
import time

from ..exceptions import JobNotFoundError, ServerError, SolveTimeoutError, SubmissionError
from ..jobs.runner import error_for
from ..progress import StatusLine

__all__ = ['wait_for_job', 'look', 'is_transient']

#: Polling never waits longer than this between two looks.
MAX_POLL_INTERVAL = 10.0
#: For this many seconds the interval stays at its first value.
BRISK_PERIOD = 5.0
#: Longest long poll asked for, seconds (and never past the HTTP timeout).
MAX_LONG_POLL = 10.0
#: Transient network errors tolerated in a row while waiting.
MAX_TRANSIENT_ERRORS = 5


def wait_for_job(client, *, submission_id=None, job_id=None, solve_timeout=120.0,
                 poll_interval=1.0, verbose=True, progress=None, sleep=time.sleep,
                 clock=time.monotonic):
    """Poll until the job of a submission finishes; return its Job record.

    Parameters
    ----------
    client : `~astrometry_query.nova.client.NovaClient`
    submission_id, job_id : int, optional
        What to wait for; a job id alone is enough.
    solve_timeout : float
        Seconds to wait before raising `SolveTimeoutError`.
    poll_interval : float
        Interval between polls for the first 5 s; then it grows by half
        each poll, up to 10 s.
    progress : callable, optional
        Called as ``progress(state, submission_id, job_id)`` at each change.

    Raises
    ------
    SubmissionError, SolveFailedError, SolveTimeoutError, JobNotFoundError
    """
    if submission_id is None and job_id is None:
        raise ValueError('Give a submission id or a job id.')
    started = clock()
    deadline = started + float(solve_timeout)
    first_interval = interval = max(0.05, float(poll_interval))
    errors_in_row = 0
    last_state = None
    ids = lambda: {'submission_id': submission_id, 'job_id': job_id}  # noqa: E731
    real_deadline = time.monotonic() + (deadline - clock())     # requests use the real clock
    with StatusLine(verbose) as line, client.bounded(real_deadline):
        while True:
            asked = clock()
            wait = _long_poll_seconds(client, deadline - asked)
            retry_after = None
            try:
                state = look(client, submission_id, job_id, wait)
                errors_in_row = 0
            except JobNotFoundError:
                if submission_id is None or job_id is None:
                    raise
                # nova replaces a job lost in a worker restart: re-read the submission.
                job_id, state = None, 'job vanished, re-reading the submission'
            except ServerError as exc:
                if not is_transient(exc):
                    raise
                errors_in_row += 1
                if errors_in_row > MAX_TRANSIENT_ERRORS:
                    raise _with_ids(exc, submission_id, job_id)
                retry_after = getattr(exc, 'retry_after', None) or min(8.0, 0.5 * 2 ** errors_in_row)
                state = f'server trouble ({exc.message[:60]}), retrying'
            if isinstance(state, tuple):
                state, found_job = state
                job_id = found_job if found_job is not None else job_id
            if state != last_state:
                last_state = state
                if progress is not None:
                    progress(state, submission_id, job_id)
            label = (f'submission {submission_id}' if submission_id is not None else '') + (
                f' job {job_id}' if job_id is not None else '')
            line.update(f'{label.strip()}: {state}')
            if state == 'success':
                try:
                    return client.job_info(job_id, submission_id)
                except ServerError as exc:      # solved: its info will come
                    if not is_transient(exc):
                        raise
                    errors_in_row += 1
                    if errors_in_row > MAX_TRANSIENT_ERRORS:
                        raise _with_ids(exc, submission_id, job_id)
                    retry_after = min(8.0, 0.5 * 2 ** errors_in_row)
                    state = 'solved, reading its information again'
            if state in ('failure', '?'):
                raise error_for(client.failure(job_id), **ids())
            if isinstance(state, str) and state.startswith('submission failed: '):
                raise SubmissionError(f'The server could not process the submission: '
                                      f'{state[len("submission failed: "):]}', **ids())
            now = clock()
            remaining = deadline - now
            if remaining <= 0:
                raise SolveTimeoutError(f'Solve timed out after {solve_timeout:g} s without success '
                                        f'or failure (last state: {state})', **ids())
            if retry_after is not None:
                pause = retry_after
            elif wait and now - asked >= 0.5 * wait:
                pause = 0.0           # the server held the request: ask again at once
            else:
                pause = interval
                if now - started >= BRISK_PERIOD or wait:
                    interval = min(interval * 1.5, MAX_POLL_INTERVAL)
            if pause > 0:
                sleep(min(pause, remaining))
            if retry_after is None and not wait and now - started < BRISK_PERIOD:
                interval = first_interval


def is_transient(exc):
    """True for server errors worth another look: 5xx, 429, no answer, or an
    answer that was not nova's JSON (a proxy's page, a cut body)."""
    status = exc.status_code
    return (status is None or status >= 500 or status == 429
            or getattr(exc, 'garbled', False))


def _with_ids(exc, submission_id, job_id):
    """The error, naming the submission and job when it did not already."""
    if exc.submission_id is None:
        exc.submission_id = submission_id
    if exc.job_id is None:
        exc.job_id = job_id
    return exc


def _long_poll_seconds(client, remaining):
    """How long to ask the server to hold a status request (0: it cannot)."""
    offered = client.long_poll or 0
    if offered <= 0 or remaining <= 0.2:
        return 0.0
    http_timeout = float(client.timeout or MAX_LONG_POLL)
    return max(0.0, min(offered, MAX_LONG_POLL, remaining, http_timeout - 2.0))


def look(client, submission_id, job_id, wait=0.0):
    """One look at the work: a state word, or (state, job id) when a job appears."""
    kw = {'wait': wait} if wait else {}
    if job_id is None:
        sub = client.submission(submission_id, **kw)
        if sub.failed:
            return f'submission failed: {sub.error_message}'
        if not sub.job_ids:
            return sub.state
        job_id = sub.job_ids[0]
        try:
            return client.job_status(job_id, submission_id, **kw), job_id
        except JobNotFoundError:
            # nova replaces a job lost in a worker restart: look again next poll.
            return 'job vanished, re-reading the submission'
    return client.job_status(job_id, submission_id, **kw)
