"""The server as a teaching lab meets it: students solve from notebooks and the
command line against ``astrometry-query serve`` on 127.0.0.1 without an API key,
the instructor watches the web pages, and source lists give the same
calibration as the images they were extracted from.  Real servers, real solves.
"""
import json
import math
import re
import time
import warnings
from types import SimpleNamespace

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import FITSFixedWarning

from astrometry_query import AstrometryNetClass
from astrometry_query.cli import main
from astrometry_query.cli._common import EXIT_AUTH
from astrometry_query.exceptions import MissingAPIKeyError
from astrometry_query.results import calibration_from_wcs
from astrometry_query.datasets import render_field
from astrometry_query.sources import extract_sources
from real_server import requires_solver

pytestmark = [requires_solver, pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning')]

SHAPE = (600, 700)                       # rows, columns
CENTER = (56.75, 24.12)                  # the Pleiades
HINTS = dict(scale_units='arcsecperpix', scale_lower=11.0, scale_upper=13.0)
CLI_HINTS = ['--scale-units', 'arcsecperpix', '--scale-low', '11', '--scale-high', '13']
#: Too few sources to try: the job fails at once, and takes no solver for long.
FEW = ([10.0, 20.0, 30.0, 40.0], [40.0, 31.0, 20.0, 10.0])


def make_field(folder, name, seed, empty_edges=0):
    """A 700x600 field at 12"/pixel, in a FITS file without its WCS, with its truth
    and the sources our client extracts from it (brightest first); ``empty_edges``:
    so many rows at the top and columns at the right show the sky without stars."""
    synthetic = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                             shape=SHAPE, rotation=20 * u.deg, fwhm=2.5, background=50.0, seed=seed)
    if empty_edges:
        sky = np.random.default_rng(seed).normal(50.0, 50.0 ** 0.5, SHAPE).astype(np.float32)
        synthetic.data[-empty_edges:, :] = sky[-empty_edges:, :]
        synthetic.data[:, -empty_edges:] = sky[:, -empty_edges:]
    path = synthetic.writeto(folder / name, truth='none')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        truth = calibration_from_wcs(synthetic.wcs.to_header(), SHAPE[1], SHAPE[0])
    sources = extract_sources(path)
    return SimpleNamespace(path=path, truth=truth, x=np.asarray(sources['x'], float),
                           y=np.asarray(sources['y'], float))


@pytest.fixture(scope='module')
def field(tmp_path_factory):
    return make_field(tmp_path_factory.mktemp('lab'), 'pleiades.fits', seed=7)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def near_truth(cal, truth):
    """The calibration (a record or nova's dict) is the field's true one."""
    ra, dec = (cal['ra'], cal['dec']) if isinstance(cal, dict) else (
        cal.ra.to_value(u.deg), cal.dec.to_value(u.deg))
    return SkyCoord(ra, dec, unit='deg').separation(
        SkyCoord(truth['ra'], truth['dec'], unit='deg')).arcsec < 2


# -- 1. no key needed on an open server ---------------------------------------------------
def test_server_info_says_whether_the_server_is_open(open_nova_server, nova_server):
    for server, is_open in ((open_nova_server, True), (nova_server, False)):
        reply = requests.get(server.api_url + 'server_info', timeout=10)
        assert reply.status_code == 200 and reply.headers['content-type'] == 'text/plain'
        info = json.loads(reply.text)
        assert list(info) == ['status', 'open', 'long_poll', 'software']
        assert info['status'] == 'success' and info['open'] is is_open
        assert info['long_poll'] == 30.0 and info['software'].startswith('astrometry_query ')


@pytest.mark.slow
def test_a_notebook_solves_without_a_key_on_an_open_server(open_nova_server, field):
    nova = AstrometryNetClass(backend='nova', server=open_nova_server.url)
    # solve_from_source_list: login, upload, wait, WCS
    header = nova.solve_from_source_list(field.x, field.y, SHAPE[1], SHAPE[0], verbose=False,
                                         solve_timeout=120, **HINTS)
    assert near_truth(nova.get_calibration(header), field.truth)
    # submit, then wait, then the results and the user's jobs
    submission = nova.submit_image(field.path, force_image_upload=True, **HINTS)
    job = nova.wait(submission, solve_timeout=120, verbose=False)
    assert near_truth(nova.get_calibration(job), field.truth)
    assert {header['AN_JOBID'], job.id} <= {j.id for j in nova.list_job_records()}
    # a batch: an image and a source list
    table = nova.solve_many([field.path, (field.x, field.y, SHAPE[1], SHAPE[0])], verbose=False,
                            cache=False, solve_timeout=120, **HINTS)
    assert list(table['status']) == ['success', 'success']
    assert all(near_truth(nova.get_calibration(int(j)), field.truth) for j in table['job_id'])
    nova.close()


@pytest.mark.slow
def test_the_command_line_solves_without_a_key_on_an_open_server(open_nova_server, field, tmp_path,
                                                                 capsys):
    url = open_nova_server.url
    code, out, err = run(capsys, 'solve', field.path, '--server', url, '-o', tmp_path / 'f.wcs',
                         '--json', '-q', *CLI_HINTS)
    assert code == 0, err
    [row] = [json.loads(line) for line in out.splitlines()]
    assert row['status'] == 'success' and near_truth(row, field.truth)
    code, out, err = run(capsys, 'jobs', '--server', url, '--json')
    assert code == 0, err
    assert row['job_id'] in [json.loads(line)['job_id'] for line in out.splitlines()]


def test_a_server_with_keys_still_wants_one(nova_server, capsys):
    nova = AstrometryNetClass(server=nova_server.url)
    with pytest.raises(MissingAPIKeyError, match=f'The server at {nova_server.url} requires an '
                                                 'API key'):
        nova.submit_source_list(*FEW, 100, 100)
    code, out, err = run(capsys, 'jobs', '--server', nova_server.url)
    assert code == EXIT_AUTH and 'requires an API key' in err and 'astrometry-query login' in err


# -- 2. what the web pages show ---------------------------------------------------------------
def listed(server, cookies=None):
    """Submission ids in the home page's list and in its script's JSON."""
    session = requests.Session()
    session.cookies.update(cookies or {})
    page = session.get(server.url + '/', timeout=10).text
    rows = [int(i) for i in re.findall(r'<tr data-sub="(\d+)"', page)]
    data = session.get(server.url + '/web/submissions', timeout=10).json()['submissions']
    assert rows == [s['id'] for s in data]
    return rows


def api_submit(server, key, name='list.xy'):
    """A private source-list submission through the API with ``key``: (subid, jobid)."""
    session = requests.post(server.api_url + 'login', timeout=10, data={
        'request-json': json.dumps({'apikey': key})}).json()['session']
    args = {'session': session, 'x': FEW[0], 'y': FEW[1], 'image_width': 100, 'image_height': 100,
            'publicly_visible': 'n'}
    sub = requests.post(server.api_url + 'upload', timeout=10,
                        data={'request-json': json.dumps(args)}).json()['subid']
    # brisk polls: a long poll sent just after the job appeared would wait its whole second
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = requests.get(f'{server.api_url}submissions/{sub}', timeout=10).json()['jobs']
        if jobs and jobs[0]:
            return sub, jobs[0]
        time.sleep(0.02)
    raise AssertionError('no job')


def test_an_open_server_shows_every_api_submission(open_nova_server):
    keyless = AstrometryNetClass(server=open_nova_server.url)
    mine = keyless.submit_source_list(*FEW, 100, 100).id     # private (our client's default)
    other, job = api_submit(open_nova_server, 'anykeyanykeyanyk')
    ids = listed(open_nova_server)                            # a browser: no sign-in
    assert mine in ids and other in ids
    for sub in (mine, other):
        page = requests.get(f'{open_nova_server.url}/status/{sub}', timeout=10)
        assert page.status_code == 200 and '<dt>Visible to</dt><dd>everyone</dd>' in page.text
    page = requests.get(f'{open_nova_server.url}/job/{job}', timeout=10)
    assert page.status_code == 200 and f'data-job="{job}"' in page.text
    keyless.close()


def test_a_signed_in_user_sees_their_api_submissions(nova_server):
    sub, job = api_submit(nova_server, nova_server.api_key)
    assert sub not in listed(nova_server)                     # private, and not signed in
    browser = requests.Session()
    page = browser.get(nova_server.url + '/', timeout=10).text
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page).group(1)
    browser.post(nova_server.url + '/signin', timeout=10,
                 data={'apikey': nova_server.api_key, 'csrf_token': token})
    assert sub in listed(nova_server, browser.cookies)        # the same user as the API's
    assert browser.get(f'{nova_server.url}/status/{sub}', timeout=10).status_code == 200
    assert browser.get(f'{nova_server.url}/job/{job}', timeout=10).status_code == 200


def styled(reply):
    """(status, title) of a page in the site's layout (not a bare error page)."""
    assert reply.headers['content-type'].startswith('text/html')
    assert '<header class="site">' in reply.text and '/web/static/style.css' in reply.text
    return reply.status_code, re.search(r'<h1>(.*?)</h1>', reply.text).group(1)


def test_pages_that_are_not_yours_say_so(nova_server):
    sub, job = api_submit(nova_server, nova_server.api_key)
    url = nova_server.url
    for path in (f'/status/{sub}', f'/job/{job}'):
        reply = requests.get(url + path, timeout=10)
        assert styled(reply) == (403, 'Private')
        assert 'Sign in with the API key it was submitted with' in reply.text
    for path in ('/status/999999', '/job/999999', '/job/12-3', '/status/-'):
        reply = requests.get(url + path, timeout=10)
        assert styled(reply) == (404, 'Not found') and 'There is no ' in reply.text
    assert requests.get(f'{url}/web/submissions/{sub}', timeout=10).status_code == 403
    assert requests.get(f'{url}/web/submissions/999999', timeout=10).status_code == 404


# -- 3. a source list is calibrated as its image --------------------------------------------
@pytest.mark.slow
def test_source_list_calibration_equals_the_image_upload(open_nova_server, tmp_path, capsys):
    field = make_field(tmp_path, 'sizes.fits', seed=11, empty_edges=40)
    # The sources stop short of the edges: ceil(max x), ceil(max y) is not the image's size.
    assert math.ceil(field.x.max()) < SHAPE[1] - 30 and math.ceil(field.y.max()) < SHAPE[0] - 30
    nova = AstrometryNetClass(server=open_nova_server.url)
    image_job = nova.solve_from_image(field.path, force_image_upload=True, cache=False,
                                      solve_timeout=120, verbose=False, **HINTS)['AN_JOBID']
    list_job = nova.solve_from_source_list(field.x, field.y, SHAPE[1], SHAPE[0], verbose=False,
                                           solve_timeout=120, **HINTS)['AN_JOBID']
    code, out, err = run(capsys, 'solve', field.path, '--server', open_nova_server.url, '--json',
                         '-q', '-o', tmp_path / 'cli.wcs', *CLI_HINTS)
    assert code == 0, err
    cli = json.loads(out)
    assert cli['job_id'] not in (image_job, list_job)
    assert requests.get(f"{open_nova_server.api_url}jobs/{cli['job_id']}/info",
                        timeout=10).json()['original_filename'] == 'json-xy'     # a source list
    reference = nova.get_calibration(image_job)
    assert near_truth(reference, field.truth)
    for job in (list_job, cli['job_id']):
        cal = nova.get_calibration(job)
        assert cal.center.separation(reference.center) < 0.5 * u.arcsec
        for name in ('width', 'height', 'radius', 'pixscale'):
            assert getattr(cal, name).to_value(getattr(reference, name).unit) == pytest.approx(
                getattr(reference, name).value, rel=2e-4), name
        page = requests.get(f'{open_nova_server.url}/job/{job}', timeout=10).text
        assert '<span id="image-size" data-value="700 600">700 × 600 pixels</span>' in page
    # The command line's summary and its jobs listing say the same.
    assert SkyCoord(cli['ra'], cli['dec'], unit='deg').separation(reference.center) < 0.5 * u.arcsec
    assert cli['pixscale'] == pytest.approx(reference.pixscale.value, rel=2e-4)
    code, out, err = run(capsys, 'jobs', '--server', open_nova_server.url, '--json')
    listed_jobs = {row['job_id']: row for row in map(json.loads, out.splitlines())}
    row = listed_jobs[cli['job_id']]
    assert SkyCoord(row['ra'], row['dec'], unit='deg').separation(reference.center) < 0.5 * u.arcsec
    assert row['radius'] == pytest.approx(reference.radius.to_value(u.deg), rel=2e-4)
    with fits.open(open_nova_server.data_dir / 'jobs' / str(list_job) / 'wcs.fits') as hdul:
        assert (hdul[0].header['IMAGEW'], hdul[0].header['IMAGEH']) == (700, 600)
    nova.close()
