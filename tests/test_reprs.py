"""Readable reprs and notebook views of the records, against the real local
solver (and, for a nova job, the real server on 127.0.0.1): the values they
show, well-formed escaped HTML, the annotated thumbnail, no secret anywhere,
no exception when the thumbnail cannot be had; progress output in a real
Jupyter kernel (nbclient), with and without ipywidgets.
"""
import base64
import copy
import gc
import html
import io
import logging
import pickle
import re
import xml.etree.ElementTree as ET
from collections import namedtuple

import astropy.units as u
import numpy as np
import pytest
from astropy.config import set_temp_cache
from astropy.coordinates import SkyCoord
from PIL import Image

from astroquery import log as astroquery_log
from astrometry_query import AstrometryNetClass, conf, progress, reprs
from astrometry_query.exceptions import SolveFailedError
from astrometry_query.local import pipeline
from astrometry_query.results import PARITY_WORDS, Calibration, Job, Submission, parity_text
from astrometry_query.server import web_html
from astrometry_query.datasets import render_field

from real_server import requires_solver

pytestmark = [requires_solver, pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning')]

API_KEY = 'reprsecretkeyabc'
CENTER = (83.8, -5.4)                  # Orion's sword
SHAPE = (600, 700)                     # rows, columns
HINTS = {'scale_units': 'arcsecperpix', 'scale_lower': 9.0, 'scale_upper': 11.0}
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
THUMB_HEIGHT = round(SHAPE[0] * reprs.THUMBNAIL_WIDTH / SHAPE[1])

Solved = namedtuple('Solved', 'client submission job image field store')


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    """This module's job store and cache (conf is read at call time: every test
    uses them unless it sets its own)."""
    return tmp_path_factory.mktemp('reprs')


@pytest.fixture(autouse=True)
def _module_store(store):
    with conf.set_temp('local_data_dir', str(store / 'local')), set_temp_cache(str(store / 'cache')):
        yield


@pytest.fixture(scope='module')
def solved(store):
    """One field solved by the local backend, through a client holding an API key."""
    field = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=10 * u.arcsec / u.pix,
                         shape=SHAPE, rotation=30 * u.deg, fwhm=2.5, seed=1)
    image = field.writeto(store / 'field.fits', truth='none')
    with conf.set_temp('local_data_dir', str(store / 'local')), set_temp_cache(str(store / 'cache')):
        client = AstrometryNetClass(api_key=API_KEY, backend='local')
        submission = client.submit_image(image, **HINTS)
        job = client.wait(submission, verbose=False)
        yield Solved(client, submission, job, image, field, store / 'local')
        client.close()


def _xml(text):
    """The HTML parsed as XML: stricter than a browser, so well formed for any."""
    return ET.fromstring(text)


def _rows(root):
    """Table rows under an element, as lists of cell texts (header rows too)."""
    return [[''.join(cell.itertext()) for cell in tr] for tr in root.iter('tr')]


def _thumbnail(root):
    """The decoded PNG of the only <img> of a view (its data URI checked)."""
    images = root.findall('.//img')
    assert len(images) == 1
    src = images[0].get('src')
    assert src.startswith('data:image/png;base64,')
    data = base64.b64decode(src[len('data:image/png;base64,'):], validate=True)
    assert data.startswith(PNG_MAGIC)
    return Image.open(io.BytesIO(data))


def _bound_job(client, job_id):
    """A fresh record of a job, bound to its client (as the client methods will)."""
    return client.get_job_info(job_id).bind(client)


# -- text reprs ------------------------------------------------------------------------------
def test_job_repr_shows_status_position_and_scale(solved):
    job, cal = solved.job, solved.job.calibration
    match = re.fullmatch(r"<Job (\d+): success, RA (\d+\.\d{4}) Dec (-?\d+\.\d{4}), "
                         r"(\d+\.\d\d) arcsec/pix, file 'field.fits'>", repr(job))
    assert match, repr(job)
    assert int(match[1]) == job.id
    assert match[2] == f'{cal.ra.to_value(u.deg):.4f}' and match[3] == f'{cal.dec.to_value(u.deg):.4f}'
    # the real solution of the rendered field
    assert abs(float(match[2]) - CENTER[0]) < 0.01 and abs(float(match[3]) - CENTER[1]) < 0.01
    assert match[4] == '10.00'
    assert repr(Job(id=3, status='failure')) == '<Job 3: failure>'
    assert repr(Job(id=4, status='solving', original_filename='a\nb.fits')) == \
        "<Job 4: solving, file 'a b.fits'>"


def test_calibration_repr_and_table_with_units(solved):
    cal = solved.job.calibration
    text = repr(cal)
    assert text.startswith(f'<Calibration RA {cal.ra.to_value(u.deg):.4f} '
                           f'Dec {cal.dec.to_value(u.deg):.4f}, 10.00 arcsec/pix, ')
    assert f'{cal.width.to_value(u.arcmin):.1f} x {cal.height.to_value(u.arcmin):.1f} arcmin' in text
    assert f'orientation {cal.orientation.to_value(u.deg):.2f} deg' in text
    # the rendered field is not mirrored: parity -1, in words for reading, a number in the data
    assert cal.parity == -1.0 and cal.to_api()['parity'] == -1.0
    assert text.endswith('parity normal (pos: not mirrored)>')

    rows = _rows(_xml(cal._repr_html_()))
    assert rows[0] == ['quantity', 'value', 'unit']
    table = {name: (value, unit) for name, value, unit in rows[1:]}
    assert table['RA'][1] == table['Dec'][1] == 'deg'
    assert float(table['RA'][0]) == pytest.approx(cal.ra.to_value(u.deg), abs=1e-5)
    assert float(table['Dec'][0]) == pytest.approx(cal.dec.to_value(u.deg), abs=1e-5)
    assert table['pixel scale'][1] == 'arcsec / pix'
    assert float(table['pixel scale'][0]) == pytest.approx(10.0, abs=0.01)
    assert table['radius'][1] == 'deg'
    assert float(table['radius'][0]) == pytest.approx(cal.radius.to_value(u.deg), abs=1e-4)
    width, height = (float(v) for v in table['field'][0].split(' x '))
    assert table['field'][1] == 'arcmin'
    assert (width, height) == pytest.approx((SHAPE[1] / 6, SHAPE[0] / 6), abs=0.05)   # 10"/px
    ra, dec = table['centre'][0].split()
    centre = SkyCoord(ra, dec, unit=(u.hourangle, u.deg))
    assert centre.separation(cal.center).arcsec < 0.2
    assert float(table['orientation'][0]) == pytest.approx(cal.orientation.to_value(u.deg), abs=0.01)
    assert table['parity'] == ('normal (pos: not mirrored)', '')


def test_parity_words_are_one_mapping(solved):
    # -1: det(CD) < 0, an image as the sky looks; the solver calls it 'pos'
    assert parity_text(-1.0) == PARITY_WORDS[-1] == 'normal (pos: not mirrored)'
    assert parity_text(1) == PARITY_WORDS[1] == 'mirrored (neg)'
    assert parity_text(np.float64(-1)) == PARITY_WORDS[-1]
    assert parity_text(float('nan')) == 'nan' and parity_text(None) == 'None'
    # the server's solution page says it with the same words, and keeps the number
    cal = solved.job.calibration.to_api()
    for parity in (-1.0, 1.0):
        page = web_html.solution_html(solved.job.id, {'calibration': dict(cal, parity=parity),
                                                      'objects': []}, {})
        assert (f'<dd id="cal-parity" data-value="{parity:g}">{PARITY_WORDS[parity]}</dd>'
                in page)


def test_calibration_without_size():
    cal = Calibration.from_api({'ra': 10.5, 'dec': 41.25, 'radius': 0.5, 'pixscale': 0.397,
                                'orientation': -12.0, 'parity': 1.0})
    assert repr(cal) == ('<Calibration RA 10.5000 Dec 41.2500, 0.397 arcsec/pix, '
                         'orientation -12.00 deg, parity mirrored (neg)>')
    names = [row[0] for row in _rows(_xml(cal._repr_html_()))]
    assert 'field' not in names and 'pixel scale' in names


def test_submission_reprs(solved):
    sub = solved.submission
    assert repr(sub) == f'<Submission {sub.id}: solving, job {sub.id}>'     # as submitted
    now = solved.client.backend.submission(sub.id)
    assert repr(now) == f'<Submission {sub.id}: solved, job {sub.id}>'
    assert now.processing_started <= now.processing_finished      # the local job ended
    assert repr(Submission(id=5)) == '<Submission 5: queued>'
    assert repr(Submission(id=6, jobs=[None])) == '<Submission 6: queued>'
    assert repr(Submission(id=7, user_images=[1], jobs=[8, 9])) == '<Submission 7: solving, jobs 8, 9>'
    failed = Submission(id=8, error_message='cannot read\nthe file ' + 'x' * 100)
    assert repr(failed).startswith("<Submission 8: failed: 'cannot read the file xxx")
    assert len(repr(failed)) < 100


def test_solve_result_text():
    field = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=10 * u.arcsec / u.pix,
                         shape=SHAPE, rotation=30 * u.deg, fwhm=2.5, seed=2)
    result = pipeline.solve(field.data, settings=HINTS, timeout=30)
    assert result.solved
    text = reprs.solve_result_text(result)
    match = re.match(r'<SolveResult solved: RA (\d+\.\d+) Dec (-?\d+\.\d+), 10\.00 arcsec/pix, '
                     r'700x600 px, (\d+) sources, \d+\.\d\d s', text)
    assert match, text
    assert float(match[1]) == pytest.approx(CENTER[0], abs=0.01)
    assert int(match[3]) == result.n_sources > 0
    assert 'CRVAL' not in text and '\n' not in text
    failed = pipeline.solve(sources={'x': [10.0, 20.0, 30.0], 'y': [5.0, 50.0, 80.0]},
                            width=100, height=100, settings=HINTS, timeout=30)
    assert reprs.solve_result_text(failed).startswith(
        "<SolveResult not solved, 100x100 px, 3 sources, ")
    assert "'only 3 sources were found" in reprs.solve_result_text(failed)


# -- HTML views ------------------------------------------------------------------------------
def test_job_view_shows_status_calibration_and_thumbnail(solved):
    job = _bound_job(solved.client, solved.job.id)
    assert job.client is solved.client
    root = _xml(job._repr_html_())
    head = ''.join(root.find('p').itertext())
    assert head == f'Job {job.id}: success (submission {job.id}, file field.fits)'
    rows = {row[0]: row[1:] for row in _rows(root)}
    assert float(rows['RA'][0]) == pytest.approx(job.calibration.ra.to_value(u.deg), abs=1e-5)
    assert rows['parity'] == ['normal (pos: not mirrored)', '']
    thumbnail = _thumbnail(root)
    assert thumbnail.format == 'PNG'
    assert thumbnail.size == (reprs.THUMBNAIL_WIDTH, THUMB_HEIGHT)
    objects = ''.join(root.findall('p')[-1].itertext())
    assert objects.startswith('Objects in the field: ') and 'M 42' in objects
    # fetched once, kept on the record, never pickled with it
    assert job.__dict__['_thumbnail'][0] == reprs.THUMBNAIL_WIDTH
    copied = pickle.loads(pickle.dumps(job))
    assert copied == job and copied.client is None and '_thumbnail' not in copied.__dict__
    assert copy.deepcopy(job).client is None
    assert not _xml(copied._repr_html_()).findall('.//img')


def test_submission_view_lists_its_jobs(solved):
    sub = solved.submission
    bound = copy.copy(sub).bind(solved.client)
    root = _xml(bound._repr_html_())
    # looked up now through the client: solved, with the job's position
    assert ''.join(root.find('p').itertext()) == f'Submission {sub.id}: solved'
    rows = _rows(root)
    assert rows[0] == ['job_id', 'status', 'original_filename', 'ra', 'dec', 'pixscale']
    assert rows[1][3:] == ['deg', 'deg', 'arcsec / pix']
    assert rows[2][:3] == [str(sub.id), 'success', 'field.fits']
    assert float(rows[2][3]) == pytest.approx(solved.job.calibration.ra.to_value(u.deg), abs=1e-5)
    # unbound: what the record knows
    record = solved.client.backend.submission(sub.id)
    rows = _rows(_xml(record._repr_html_()))
    assert rows[2][:2] == [str(sub.id), 'success'] and rows[2][2] == '--'
    assert sub.client is solved.client                  # submit_image bound it
    rows = _rows(_xml(copy.copy(sub)._repr_html_()))     # a copy is not bound
    assert rows[-1][:2] == [str(sub.id), 'unknown']
    root = _xml(Submission(id=9)._repr_html_())
    assert [''.join(p.itertext()) for p in root.findall('p')] == ['Submission 9: queued',
                                                                  'No job yet.']


def test_views_escape_every_string():
    hostile = '<script>alert("x")</script>&amp;'
    job = Job(id=5, status=hostile, original_filename=f'{hostile}.fits',
              objects_in_field=[hostile, 'M 42'], submission_id=2)
    text = job._repr_html_()
    root = _xml(text)
    assert '<script>' not in text and not root.findall('.//script')
    assert ''.join(root.find('p').itertext()) == f'Job 5: {hostile} (submission 2, file {hostile}.fits)'
    assert hostile in ''.join(root.findall('p')[-1].itertext())
    sub = Submission(id=3, error_message=f'<img src=x onerror="{hostile}">')
    text = sub._repr_html_()
    assert not _xml(text).findall('.//img') and '<img' not in text
    source = _Records([Job(id=6, status=hostile, original_filename='<b>x</b>')])
    text = Submission(id=4, user_images=[1], jobs=[6]).bind(source)._repr_html_()
    assert '<b>x</b>' not in text and '<script>' not in text
    assert [row[1:3] for row in _rows(_xml(text))][-1] == [hostile, '<b>x</b>']


def test_odd_records_still_have_reprs():
    # fields that are not what they should be: the text falls back on the
    # values, the HTML on None (IPython then shows the text)
    odd = Calibration(ra=None, dec='north', radius=1, pixscale=2, orientation=0, parity=1)
    assert repr(odd).startswith("<Calibration ra=None, dec='north', ")
    assert odd._repr_html_() is None
    job = Job(id=7, status='success', calibration=odd)
    assert repr(job).startswith("<Job id=7, status='success', submission_id=None, "
                                "calibration=<Calibration ra=None")
    root = _xml(job._repr_html_())
    assert ''.join(root.find('p').itertext()) == 'Job 7: success' and not root.findall('.//table')
    # plain numbers are taken in nova's units (width in arcsec)
    plain = Calibration(ra=10, dec=20, radius=1, pixscale=2, orientation=3, parity=-1,
                        width=600, height=300)
    assert repr(plain) == ('<Calibration RA 10.0000 Dec 20.0000, 2.00 arcsec/pix, '
                           '10.0 x 5.0 arcmin, orientation 3.00 deg, '
                           'parity normal (pos: not mirrored)>')


class _Records:
    """A stand-in client that knows some Job records and has no files."""

    def __init__(self, jobs):
        self.jobs = {job.id: job for job in jobs}

    def get_job_info(self, job_id):
        return self.jobs[job_id]

    def download(self, job_id, kind):
        return b'this is not an image'

    @property
    def backend(self):          # a client's backend: here, the same stand-in
        return self

    def submission(self, submission_id):
        return Submission(id=submission_id, user_images=[1], jobs=list(self.jobs))


def test_view_without_a_thumbnail_never_raises(solved, tmp_path):
    cal = solved.job.calibration
    # no client at all
    job = Job(id=solved.job.id, status='success', calibration=cal)
    assert job.client is None and not _xml(job._repr_html_()).findall('.//img')
    # a client that is gone: the reference is weak
    client = AstrometryNetClass(backend='local')
    job.bind(client)
    assert job.client is client
    del client
    gc.collect()
    assert job.client is None and not _xml(job._repr_html_()).findall('.//img')
    # a job the client does not know: no annotated image to fetch
    missing = Job(id=999999, status='success', calibration=cal).bind(solved.client)
    root = _xml(missing._repr_html_())
    assert not root.findall('.//img') and _rows(root)[1][0] == 'RA'
    # an annotated image Pillow cannot read
    source = _Records([])       # bound weakly: kept alive here
    broken = Job(id=1, status='success', calibration=cal).bind(source)
    assert not _xml(broken._repr_html_()).findall('.//img')
    # a job that failed: no image asked for
    with conf.set_temp('local_data_dir', str(tmp_path / 'local')):
        with AstrometryNetClass(backend='local') as client:
            blank = np.random.default_rng(0).normal(100.0, 1.0, (200, 200)).astype(np.float32)
            with pytest.raises(SolveFailedError) as info:
                client.solve_from_image(blank, verbose=False, cache=False, **HINTS)
            failed = _bound_job(client, info.value.job_id)
            assert repr(failed) == f'<Job {failed.id}: failure>'
            root = _xml(failed._repr_html_())
            assert ''.join(root.find('p').itertext()) == f'Job {failed.id}: failure (submission {failed.id})'
            assert not root.findall('.//img') and not root.findall('.//table')


@pytest.mark.slow
def test_view_of_a_closed_client(solved, tmp_path):
    with conf.set_temp('local_data_dir', str(tmp_path / 'local')):
        client = AstrometryNetClass(backend='local')
        header = client.solve_from_image(solved.image, verbose=False, cache=False, **HINTS)
        job = _bound_job(client, header['AN_JOBID'])
        annotated = client.backend.jobs_dir / str(job.id) / 'annotated.png'
        client.close()
        # closed, the client still reads its job store (close only stops its threads)
        assert _thumbnail(_xml(job._repr_html_())).width == reprs.THUMBNAIL_WIDTH
        # a store whose annotated image is damaged: the view shows the rest
        annotated.write_bytes(b'\x89PNG\r\n\x1a\n cut short')
        fresh = _bound_job(client, job.id)
        root = _xml(fresh._repr_html_())
        assert not root.findall('.//img') and _rows(root)[1][0] == 'RA'
        client.close()


@pytest.mark.slow
def test_nova_job_is_bound_to_its_client(make_nova_server, solved):
    server = make_nova_server(workers=1)
    with AstrometryNetClass(api_key=server.api_key, server=server.url) as nova, \
            conf.set_temp('poll_interval', 0.05):
        sub = nova.submit_image(solved.image, verbose=False, **HINTS)
        job = nova.wait(sub, verbose=False)
        assert job.client is nova          # bound by wait()
        html_text = job._repr_html_()
        root = _xml(html_text)
        assert _thumbnail(root).width == reprs.THUMBNAIL_WIDTH
        assert re.fullmatch(rf'<Job {job.id}: success, RA 83\.\d+ Dec -5\.\d+, 10\.00 arcsec/pix.*>',
                            repr(job))
        sub_html = copy.copy(sub).bind(nova)._repr_html_()
        assert _rows(_xml(sub_html))[2][:2] == [str(job.id), 'success']
        session = nova.backend.session_key()
        for text in (repr(nova), repr(job), repr(sub), html_text, sub_html):
            assert server.api_key not in text and session not in text


# -- the client --------------------------------------------------------------------------------
def test_client_repr_never_shows_the_key(solved, monkeypatch):
    texts = [repr(solved.client), solved.job._repr_html_(),
             _bound_job(solved.client, solved.job.id)._repr_html_(),
             copy.copy(solved.submission).bind(solved.client)._repr_html_()]
    assert repr(solved.client) == '<AstrometryNetClass backend=\'local\'>'
    nova = AstrometryNetClass(api_key=API_KEY, server='http://user:hunter2@127.0.0.1:9/')
    texts.append(repr(nova))
    assert repr(nova) == ("<AstrometryNetClass backend='auto' server='http://127.0.0.1:9/' "
                          "api_key set>")
    with conf.set_temp('api_key', API_KEY):
        texts.append(repr(AstrometryNetClass(server='http://127.0.0.1:9')))
        assert texts[-1].endswith('api_key set (conf.api_key)>')
    monkeypatch.setenv('ASTROMETRY_NET_API_KEY', API_KEY)
    texts.append(repr(AstrometryNetClass(server='http://127.0.0.1:9')))
    assert texts[-1].endswith('api_key set (ASTROMETRY_NET_API_KEY)>')
    monkeypatch.delenv('ASTROMETRY_NET_API_KEY')
    assert repr(AstrometryNetClass()).endswith('api_key not set>')
    for text in texts:
        assert API_KEY not in text and 'hunter2' not in text


def test_client_repr_names_the_backend_in_use(tmp_path):
    with conf.set_temp('local_data_dir', str(tmp_path / 'local')):
        client = AstrometryNetClass()
        assert repr(client).startswith("<AstrometryNetClass backend='auto' server=")
        client.backend          # auto: no key, no server, a local solver -> local
        assert repr(client).startswith("<AstrometryNetClass backend='auto' (using local) server=")
        client.close()


# -- progress ---------------------------------------------------------------------------------
class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(level=1)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines():
    handler = _Lines()
    level = astroquery_log.level
    astroquery_log.setLevel(logging.INFO)
    astroquery_log.addHandler(handler)
    yield handler.lines
    astroquery_log.removeHandler(handler)
    astroquery_log.setLevel(level)


def test_status_line_outside_a_notebook(capsys, log_lines):
    assert not progress.in_notebook()        # pytest is no Jupyter kernel
    with progress.StatusLine(verbose=False) as line:
        line.update('job 1: solving')
    assert line._bar is None and log_lines == []
    # not a TTY: one log line per change
    with progress.StatusLine(verbose=True) as line:
        for text in ('job 1: solving', 'job 1: solving', 'job 1: success'):
            line.update(text)
    assert line._bar is None and log_lines == ['job 1: solving', 'job 1: success']
    assert 'job 1' not in capsys.readouterr().err


def test_status_line_in_a_kernel_is_a_live_line(monkeypatch, capsys, log_lines):
    monkeypatch.setattr(progress, 'in_notebook', lambda: True)
    with progress.StatusLine(verbose=True) as line:
        line.update('job 2: solving')
        assert line._bar is not None
    assert 'job 2: solving' in capsys.readouterr().err and log_lines == []
    with progress.StatusLine(verbose=False) as line:
        line.update('job 3: solving')
    assert line._bar is None and 'job 3' not in capsys.readouterr().err


# -- a real notebook ------------------------------------------------------------------------------
SETUP = '''
import sys
{block}
from astrometry_query import AstrometryNetClass, conf
from astrometry_query.cli import example_image_path
conf.local_data_dir = {store!r}
an = AstrometryNetClass(backend='local')
'''
CELLS = [
    SETUP,
    'sub = an.submit_image(example_image_path())\njob = an.wait(sub)',
    'job',        # wait() binds the Job to its client: the view fetches the thumbnail
    "table = an.solve_many([example_image_path()], executor='threads', cache=False)\n"
    "print(table['status'][0])",
    "quiet = an.wait(an.submit_image(example_image_path()), verbose=False)\n"
    "rows = an.solve_many([example_image_path()], executor='threads', cache=False, verbose=False)\n"
    "print(quiet.status, rows['status'][0])",
]
WIDGET = 'application/vnd.jupyter.widget-view+json'


def _widgets(nb, outputs):
    """What the progress widgets displayed by some outputs show at the end: a
    list of (text of their HTML parts, progress value, progress max)."""
    state = nb.metadata['widgets']['application/vnd.jupyter.widget-state+json']['state']
    shown = []
    for output in outputs:
        model_id = output.get('data', {}).get(WIDGET, {}).get('model_id')
        if model_id is None:
            continue
        parts = [state[child[len('IPY_MODEL_'):]] for child in state[model_id]['state']['children']]
        text = ' '.join(html.unescape(p['state']['value']).replace('\u2007', ' ')
                        for p in parts if p['model_name'] == 'HTMLModel')
        (bar,) = [p['state'] for p in parts if p['model_name'] == 'FloatProgressModel']
        shown.append((text, bar['value'], bar['max']))
    return shown


def _stderr(outputs):
    return ''.join(o.get('text', '') for o in outputs
                   if o['output_type'] == 'stream' and o['name'] == 'stderr')


@pytest.mark.slow
@pytest.mark.parametrize('front', ['widgets', 'text'])
def test_notebook_shows_progress_and_the_job_view(front, tmp_path, monkeypatch):
    nbformat = pytest.importorskip('nbformat')
    nbclient = pytest.importorskip('nbclient')
    pytest.importorskip('ipykernel')
    if front == 'widgets':
        pytest.importorskip('ipywidgets')
        block = ''
    else:
        block = "sys.modules['ipywidgets'] = None     # as if it were not installed"
    # The kernel inherits the environment: astropy's cache and config go to tmp_path.
    for name in ('XDG_CACHE_HOME', 'XDG_CONFIG_HOME'):
        (tmp_path / name / 'astropy').mkdir(parents=True)
        monkeypatch.setenv(name, str(tmp_path / name))
    cells = [CELLS[0].format(block=block, store=str(tmp_path / 'local'))] + CELLS[1:]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                                     resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
    setup, wait, show, batch, quiet = (cell['outputs'] for cell in nb.cells)

    # the status line while waiting
    if front == 'widgets':
        (status,) = _widgets(nb, wait)
        assert re.search(r'job \d+: solving \[\d\d:\d\d\]', status[0])
    else:
        assert re.search(r'job \d+: solving \[\d\d:\d\d\]', _stderr(wait))
        assert not any(WIDGET in o.get('data', {}) for o in wait)

    # the Job's view: text and HTML with the thumbnail
    (result,) = [o for o in show if o['output_type'] == 'execute_result']
    assert re.fullmatch(r'<Job \d+: success, RA 83\.\d{4} Dec -5\.\d{4}, \d+\.\d\d arcsec/pix, '
                        r"file 'example.fits'>", result['data']['text/plain'])
    root = _xml(result['data']['text/html'])
    assert _thumbnail(root).width == reprs.THUMBNAIL_WIDTH
    assert _rows(root)[0] == ['quantity', 'value', 'unit']

    # the batch's bar
    assert any(o.get('text', '').strip() == 'success' for o in batch if o['output_type'] == 'stream')
    if front == 'widgets':
        (bar,) = _widgets(nb, batch)
        assert bar[1] == bar[2] == 1 and 'Solving: 100%' in bar[0]
        assert '1/1' in bar[0] and 'solved=1' in bar[0] and 'failed=0' in bar[0]
    else:
        assert re.search(r'Solving: 100%.*1/1', _stderr(batch))

    # verbose=False: only what the cell prints
    assert [(o['output_type'], o.get('name'), o.get('text')) for o in quiet] == \
        [('stream', 'stdout', 'success success\n')]
    assert not any(o['output_type'] == 'error' for cell in nb.cells for o in cell['outputs'])
