"""Many inputs on a nova server (a `~astrometry_query.backends.BatchRun`):
submissions go out concurrently (gently for nova.astrometry.net itself), and
one loop looks at the pending jobs, holding a long poll on the oldest where
the server offers it."""
import concurrent.futures as cf
import threading
import time

from ..exceptions import AstrometryNetError, JobNotFoundError, ServerError, SolveTimeoutError
from ..jobs.runner import error_for
from ..results import make_wcs_header
from .polling import look
from .protocol import is_public_nova

__all__ = ['NovaBatch', 'NOVA_CONCURRENCY', 'OTHER_SERVER_CONCURRENCY']

#: Submissions in flight at once: nova.astrometry.net is shared by everyone.
NOVA_CONCURRENCY = 2
OTHER_SERVER_CONCURRENCY = 8
#: Interval between looks at a young job in a batch, and its ceiling.
BATCH_POLL = 0.25
BATCH_POLL_MAX = 2.0


class NovaBatch:
    """A batch on a nova server.

    Parameters
    ----------
    client : `~astrometry_query.nova.client.NovaClient`
    max_concurrency : int, optional
        Submissions in flight (default 2 for nova.astrometry.net, 8 elsewhere).
    timeout : float
        Per input, seconds.
    force_image_upload : bool, optional
        Upload images instead of source lists; default: images to our own
        server (it offers long polls, and extracts the same way in parallel
        worker processes), source lists to others (nova bins uploads by 2).
    submitted : callable, optional
        Called with each item once it has its submission id.
    """

    def __init__(self, client, *, max_concurrency=None, timeout, fwhm=3.0, detect_threshold=5.0,
                 force_image_upload=None, submitted=None):
        self.client, self.timeout, self.submitted = client, timeout, submitted
        self.fwhm, self.detect_threshold = fwhm, detect_threshold
        self.window = max_concurrency or (NOVA_CONCURRENCY if is_public_nova(client.server)
                                          else OTHER_SERVER_CONCURRENCY)
        if force_image_upload is None:
            client.session_key()        # logged in: its answers told whether it offers long polls
            force_image_upload = bool(client.long_poll)
        self.force_image_upload = force_image_upload
        # Extraction holds the GIL: more of it at once only starves the poll loop,
        # while uploads and waits for answers overlap freely.
        self._cpu_slot = threading.Semaphore(1)
        self._pool = cf.ThreadPoolExecutor(max_workers=self.window,
                                           thread_name_prefix='astrometry-submit')
        self._submitting = {}       # Future -> index
        self._waiting = {}          # item.index -> item: submitted, not finished

    @property
    def in_flight(self):
        return len(self._submitting) + len(self._waiting)

    def submit(self, index, raw, prepare):
        self._submitting[self._pool.submit(self._send, index, raw, prepare)] = index

    def _send(self, index, raw, prepare):
        """Check one input and submit it: (item, known row or None)."""
        with self._cpu_slot:
            item, known = prepare(index, raw)
        item.started = time.monotonic()
        if known is not None or item.submission_id is not None:
            return item, known     # known, or resumed: wait, never submit again
        try:
            self._submit(item)
        except Exception as exc:        # this input failed; the others go on
            return item, exc
        return item, None

    def _submit(self, item):
        if item.image is not None:
            first, _ = self.client.hint_attempts(item.settings, item.hints)[0]
            sub = self.client.submit_image(item.image, first,
                                           force_image_upload=self.force_image_upload,
                                           fwhm=self.fwhm, detect_threshold=self.detect_threshold,
                                           verbose=False, cpu_slot=self._cpu_slot)
        else:
            sub = self.client.submit_source_list(item.sources['x'], item.sources['y'],
                                                 item.settings, width=item.width,
                                                 height=item.height)
        item.submission_id = sub.id
        if self.submitted is not None:
            self.submitted(item)

    def done(self, timeout=None):
        """What finished: inputs whose submission failed or was known, and jobs
        that ended.  Holds one long poll (or sleeps a short while) when none did:
        one polling step, about a second at most, whatever ``timeout``."""
        out = []
        for future in [f for f in self._submitting if f.done()]:
            del self._submitting[future]
            item, known = future.result()
            if known is not None:
                out.append((item, known))
            else:
                self._waiting[item.index] = item
        if out or not self._waiting:
            if not out and self._submitting:
                cf.wait(list(self._submitting), timeout=BATCH_POLL,
                        return_when=cf.FIRST_COMPLETED)
            return out
        # The oldest submission is the next a FIFO server finishes: a server that
        # offers long polls holds that look until it changes; the others get a
        # quick look when due, more often while young.
        now = time.monotonic()
        oldest = min(self._waiting.values(), key=lambda it: it.started)
        due = [oldest] + [it for it in self._waiting.values()
                          if it is not oldest and now >= it.next_look]
        for item in due:
            hold = self._hold() if item is oldest else 0.0
            outcome = self._look(item, hold)
            age = time.monotonic() - item.started
            # Few jobs left (the tail of the batch): look at each often.
            pace = BATCH_POLL if (not self._submitting and len(self._waiting) <= self.window) \
                else max(BATCH_POLL, 0.1 * age)
            item.next_look = time.monotonic() + min(BATCH_POLL_MAX, pace)
            if outcome is not None:
                del self._waiting[item.index]
                out.append((item, outcome))
            elif item.job_id is not None and self.submitted is not None:
                self.submitted(item)        # its job id is known now
        if not self.client.long_poll:
            time.sleep(BATCH_POLL)
        return out

    def _hold(self):
        """Seconds to hold the look at the oldest job: short while submissions are
        still going out (their answers must be collected), else up to 1 s."""
        offered = self.client.long_poll or 0
        return 0.0 if not offered else min(offered, 0.2 if self._submitting else 1.0)

    def _look(self, item, hold=0.0):
        """One look at a submitted input: its WCS Header or error when it
        ended, else None."""
        ids = {'submission_id': item.submission_id, 'job_id': item.job_id}
        elapsed = time.monotonic() - item.started
        try:
            state = look(self.client, item.submission_id, item.job_id, hold)
        except JobNotFoundError:
            item.job_id = None          # replaced after a server restart: re-read the submission
            return None
        except ServerError as exc:
            if exc.status_code is not None and exc.status_code < 500 and exc.status_code != 429:
                return exc
            state = None                # transient: look again next round
        if isinstance(state, tuple):
            state, item.job_id = state
            ids['job_id'] = item.job_id
        if state == 'success':
            try:
                header = make_wcs_header(self.client.download(item.job_id, 'wcs'), item.job_id,
                                         item.submission_id)
            except AstrometryNetError:
                return None            # not downloadable yet: next round
            return header
        if state in ('failure', '?'):
            return error_for(self.client.failure(item.job_id), **ids)
        if isinstance(state, str) and state.startswith('submission failed: '):
            return error_for({'status': 'failure', 'error': state[len('submission failed: '):],
                              'error_kind': 'submission'}, **ids)
        if elapsed > self.timeout:
            error = SolveTimeoutError(f'timed out after {self.timeout:g} s (resume with '
                                      f'wait({item.submission_id}) or a journal)', **ids)
            error.reason, error.error_kind = error.message, 'timeout'
            return error
        return None

    def close(self):
        for future in self._submitting:
            future.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
