"""Notebook views of the records: the HTML behind ``_repr_html_``.

A `~astrometry_query.results.Calibration` is a small table with units; a
`~astrometry_query.results.Job` shows its status, its calibration and a
thumbnail of its annotated image; a `~astrometry_query.results.Submission`
lists its jobs and their states.  Tables are astropy's own HTML tables.

Every string that reaches the HTML is escaped.  A view never raises: what it
cannot fetch or draw in time (the annotated image of a job whose client is
closed or gone, a server that does not answer, an image Pillow cannot read)
is left out, and the rest is shown.
"""
import base64
import functools
import html
import io
import threading
from urllib.parse import urlsplit, urlunsplit

import astropy.units as u
from astropy.table import Table
from astropy.table import conf as table_conf
from astroquery import log

from ._text import plural

__all__ = ['THUMBNAIL_WIDTH', 'FETCH_LIMIT', 'png_data_uri', 'calibration_table',
           'calibration_html', 'job_thumbnail', 'job_html', 'submission_now', 'submission_html',
           'solve_result_text', 'public_url']

#: Width in pixels of a job's thumbnail.
THUMBNAIL_WIDTH = 300
#: Seconds a view waits for what it fetches (a notebook must not hang on a slow server).
FETCH_LIMIT = 10.0
#: Characters of the objects-in-field list shown under a job.
MAX_OBJECTS_TEXT = 400
#: Jobs of a submission looked up for its view.
MAX_JOBS = 20

_esc = html.escape


def _never_raises(view):
    """A view that returns None (IPython then shows the text repr) instead of raising."""
    @functools.wraps(view)
    def safe(record):
        try:
            return view(record)
        except Exception as exc:     # a repr must not break a notebook
            log.debug(f'No HTML view of {type(record).__name__}: {type(exc).__name__}: {exc}')
            return None
    return safe


def public_url(url):
    """A URL without the user name and password it may carry (for reprs and logs)."""
    try:
        parts = urlsplit(str(url))
        if parts.username is None and parts.password is None:
            return str(url)
        host = parts.hostname or ''
        if parts.port is not None:
            host = f'{host}:{parts.port}'
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    except ValueError:       # a malformed URL: show none of it rather than a secret
        return '<unparsable URL>'


def _within(seconds, function):
    """``function()`` on a daemon thread: its result, or `TimeoutError` after
    ``seconds`` (the call goes on and ends by itself; what it stores on a
    record serves the next display)."""
    box = {}

    def run():
        try:
            box['value'] = function()
        except BaseException as exc:     # handed to the caller below
            box['error'] = exc

    thread = threading.Thread(target=run, name='astrometry-query-view', daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f'no answer within {seconds:g} s')
    if 'error' in box:
        raise box['error']
    return box['value']


# -- pictures -----------------------------------------------------------------------------
def png_data_uri(image, width=THUMBNAIL_WIDTH):
    """An image as a PNG ``data:`` URI, shrunk to ``width`` pixels wide.

    Parameters
    ----------
    image : bytes
        Any image Pillow reads (the annotated PNG of a job).
    width : int
        Largest width; a narrower image keeps its size.  The aspect ratio is kept.

    Returns
    -------
    str
        ``'data:image/png;base64,...'``
    """
    from PIL import Image
    lanczos = getattr(Image, 'Resampling', Image).LANCZOS
    with Image.open(io.BytesIO(image)) as picture:
        picture.load()
        if picture.mode == 'RGBA' and picture.getchannel('A').getextrema() == (255, 255):
            picture = picture.convert('RGB')      # opaque: the alpha channel is dead weight
        elif picture.mode not in ('RGB', 'RGBA', 'L'):
            picture = picture.convert('RGBA')     # palettes and 16-bit greys resize badly
        if picture.width > width:
            height = max(1, round(picture.height * width / picture.width))
            picture = picture.resize((int(width), height), lanczos)
        # 256 colours are plenty for a thumbnail and make the notebook 40% lighter.
        if picture.mode in ('RGB', 'RGBA'):
            # only the fast octree method keeps an alpha channel
            octree = getattr(Image, 'Quantize', Image).FASTOCTREE
            picture = picture.quantize(256, method=octree if picture.mode == 'RGBA' else None)
        buffer = io.BytesIO()
        picture.save(buffer, format='PNG', optimize=True)
    return 'data:image/png;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii')


def job_thumbnail(job, width=THUMBNAIL_WIDTH, limit=FETCH_LIMIT):
    """The annotated image of a solved job as a PNG data URI, or None.

    Fetched once through the job's client (see `Job.bind`) and kept on the
    record.  None when the job is not solved, has no live client, or the
    image cannot be had within ``limit`` seconds.
    """
    cached = job.__dict__.get('_thumbnail')
    if cached is not None and cached[0] == width:
        return cached[1]
    source = job.client
    if source is None or not job.solved:
        return None

    def fetch():
        uri = png_data_uri(source.download(job.id, 'annotated'), width)
        job.__dict__['_thumbnail'] = (width, uri)
        return uri
    try:
        return _within(limit, fetch)
    except Exception as exc:     # a view shows what it has: no thumbnail
        log.debug(f'No thumbnail for job {job.id}: {type(exc).__name__}: {exc}')
        return None


# -- tables -----------------------------------------------------------------------------------
def _table_html(table):
    """astropy's HTML table, without the dtype row (noise in a record's view)."""
    return '\n'.join(table.pformat(html=True, show_dtype=False, max_lines=-1, max_width=-1,
                                   tableclass=table_conf.default_notebook_table_class))


def calibration_table(calibration):
    """A calibration as a Table of quantity, value and unit (strings, for reading).

    Parameters
    ----------
    calibration : `~astrometry_query.results.Calibration`

    Returns
    -------
    `~astropy.table.Table`
    """
    from .results import parity_text
    cal = calibration
    rows = [('RA', f'{cal.ra.to_value(u.deg):.5f}', 'deg'),
            ('Dec', f'{cal.dec.to_value(u.deg):.5f}', 'deg'),
            ('centre', cal.center.to_string('hmsdms', sep=':', precision=2), 'h:m:s d:m:s'),
            ('radius', f'{cal.radius.to_value(u.deg):.4f}', 'deg'),
            ('pixel scale', f'{cal.pixscale.to_value(u.arcsec / u.pix):.4f}', 'arcsec / pix')]
    if cal.width is not None and cal.height is not None:
        rows.append(('field', f'{cal.width.to_value(u.arcmin):.2f} x '
                              f'{cal.height.to_value(u.arcmin):.2f}', 'arcmin'))
    rows += [('orientation', f'{cal.orientation.to_value(u.deg):.2f}', 'deg'),
             ('parity', parity_text(cal.parity), '')]
    return Table(rows=rows, names=('quantity', 'value', 'unit'), dtype=(str, str, str))


@_never_raises
def calibration_html(calibration):
    """The HTML view of a `~astrometry_query.results.Calibration`: a table with units."""
    return f'<div class="astrometry-query calibration">{_table_html(calibration_table(calibration))}</div>'


def submission_now(submission, limit=FETCH_LIMIT):
    """A submission and its jobs as they are now, for its view.

    Looked up through the submission's client when it has one: the
    submission again (nova lists its jobs only once they exist), then each
    job's status and calibration.  Else what the record knows: a job with a
    calibration has succeeded, any other is 'unknown'.

    Returns
    -------
    submission : `~astrometry_query.results.Submission`
        The record given, or the one just read.
    jobs : list of `~astrometry_query.results.Job`
    live : bool
        Whether they were looked up now.
    """
    from .results import Job
    source = submission.client
    if source is not None:
        def look():
            now = source.backend.submission(submission.id)
            return now, [source.get_job_info(j) for j in now.job_ids[:MAX_JOBS]]
        try:
            return (*_within(limit, look), True)
        except Exception as exc:     # fall back on what the record knows
            log.debug(f'Submission {submission.id} not looked up: {type(exc).__name__}')
    solved = {pair[0] for pair in submission.job_calibrations if pair}
    return submission, [Job(id=j, status='success' if j in solved else 'unknown',
                            submission_id=submission.id)
                        for j in submission.job_ids[:MAX_JOBS]], False


def _when(value):
    """A timestamp to the second."""
    return value.isoformat(sep=' ', timespec='seconds') if hasattr(value, 'isoformat') else str(value)


# -- records ----------------------------------------------------------------------------------
@_never_raises
def job_html(job):
    """The HTML view of a `~astrometry_query.results.Job`: status, calibration
    table and a thumbnail of the annotated image (when it can be had)."""
    details = []
    if job.submission_id is not None:
        details.append(f'submission {int(job.submission_id)}')
    if job.original_filename:
        details.append(f'file {_esc(str(job.original_filename))}')
    parts = [f'<p><b>Job {int(job.id)}</b>: {_esc(str(job.status))}'
             + (f' ({", ".join(details)})' if details else '') + '</p>']
    panels = []
    table = calibration_html(job.calibration) if job.calibration is not None else None
    if table is not None:
        panels.append(f'<div>{table}</div>')
    uri = job_thumbnail(job)
    if uri is not None:
        panels.append(f'<div><img src="{_esc(uri)}" alt="{_esc(f"annotated image of job {job.id}")}"/>'
                      '</div>')
    if panels:
        parts.append('<div style="display: flex; flex-wrap: wrap; gap: 1em; '
                     'align-items: flex-start">' + ''.join(panels) + '</div>')
    if job.objects_in_field:
        # nova splits names at commas ("The star θ1 Ori C", "41 Ori C"): join them back.
        text = ', '.join(str(o) for o in job.objects_in_field)
        if len(text) > MAX_OBJECTS_TEXT:
            text = text[:MAX_OBJECTS_TEXT - 3] + '...'
        parts.append(f'<p>Objects in the field: {_esc(text)}</p>')
    return '<div class="astrometry-query job">' + '\n'.join(parts) + '</div>'


@_never_raises
def submission_html(submission):
    """The HTML view of a `~astrometry_query.results.Submission`: its state and
    a table of its jobs with their states."""
    sub, jobs, live = submission_now(submission)
    state = sub.state
    if live and state != 'failed':
        # The jobs just looked up are newer than the submission's own word.
        if any(job.solved for job in jobs):
            state = 'solved'
        elif jobs and all(job.finished for job in jobs):
            state = 'failed'
    parts = [f'<p><b>Submission {int(sub.id)}</b>: {_esc(state)}</p>']
    times = [f'{label} {_esc(_when(when))}' for label, when in
             (('started', sub.processing_started), ('finished', sub.processing_finished))
             if when is not None]
    if times:
        parts.append(f'<p>{", ".join(times)}</p>')
    if sub.error_message:
        parts.append(f'<p>Error: {_esc(str(sub.error_message))}</p>')
    if jobs:
        from .results import jobs_table
        table = jobs_table(jobs)
        table = table[[c for c in table.colnames
                       if c in ('job_id', 'status', 'original_filename', 'ra', 'dec', 'pixscale')]]
        if not any(table['original_filename']):
            table.remove_column('original_filename')
        for name, fmt in (('ra', '.5f'), ('dec', '.5f'), ('pixscale', '.4f')):
            table[name].info.format = fmt
        parts.append(_table_html(table))
        more = len(sub.job_ids) - len(jobs)
        if more > 0:
            parts.append(f'<p>and {more} more jobs</p>')
    else:
        parts.append('<p>No job yet.</p>')
    return '<div class="astrometry-query submission">' + '\n'.join(parts) + '</div>'


def solve_result_text(result):
    """A one-line text for a `~astrometry_query.local.pipeline.SolveResult`
    (its ``__repr__``): the outcome, not the header text and file bytes."""
    from .results import _one_line, _scale_text
    size = (f'{result.width}x{result.height} px, {plural(result.n_sources, "source")}, '
            f'{result.elapsed:.2f} s')
    if result.solved and result.calibration:
        cal = result.calibration
        where = (f'RA {cal["ra"]:.4f} Dec {cal["dec"]:.4f}, '
                 f'{_scale_text(cal["pixscale"])} arcsec/pix')
        hints = f', hints {"+".join(result.hints)}' if result.hints else ''
        return f'<SolveResult solved: {where}, {size}{hints}>'
    why = 'timed out' if result.timed_out else 'not solved'
    error = f': {_one_line(result.error, 80)!r}' if result.error else ''
    return f'<SolveResult {why}, {size}{error}>'
