"""The nova backend through the facade, against an in-memory fake nova server."""
import builtins
import functools
import json
import re

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from astroquery import log
from astroquery.exceptions import TimeoutError as AstroqueryTimeoutError

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.nova import client as client_module, polling
from astrometry_query.exceptions import (InvalidInputError, InvalidSettingError, JobNotFoundError,
                                         LoginError, MissingAPIKeyError, ResultNotAvailableError,
                                         ServerError, SolveFailedError, SolveTimeoutError,
                                         SubmissionError)
from astrometry_query.nova.client import DOWNLOAD_RETRIES
from astrometry_query.nova.protocol import OPEN_SERVER_KEY
from astrometry_query.results import Calibration, Job, Submission

from nova_mock import (ANNOTATIONS, API_KEY, CALIBRATION, OBJECTS, SERVER, FakeNova, attach,
                       grid_stars, make_wcs_header, render_stars, write_image)

X = [10.5, 200.25, 35.0, 410.0, 99.0, 300.5]
Y = [20.0, 150.5, 400.0, 33.25, 250.0, 88.0]


@pytest.fixture
def clock(fake_clock, monkeypatch):
    """Polling and the client's retry pauses without real sleeping: a sleep
    advances the clock."""
    monkeypatch.setattr(client_module, 'wait_for_job', functools.partial(
        polling.wait_for_job, sleep=fake_clock.sleep, clock=fake_clock.clock))
    return fake_clock


@pytest.fixture
def fake():
    return FakeNova()


@pytest.fixture
def an(fake, clock):
    inst = AstrometryNetClass(api_key=fake.api_key, server=fake.base)
    attach(inst, fake)
    yield inst
    inst.close()


def _solve_xy(an, **kwargs):
    kwargs.setdefault('verbose', False)
    return an.solve_from_source_list(X, Y, 512, 480, **kwargs)


def _status_paths(fake):
    return [r.path for r in fake.requests]


# -- login ----------------------------------------------------------------------------------
def test_lazy_login_then_upload_with_session(an, fake):
    header = _solve_xy(an)
    login, upload = fake.requests[0], fake.requests[1]
    assert (login.method, login.path) == ('POST', '/api/login')
    assert login.json == {'apikey': API_KEY}
    assert login.cache is False
    assert (upload.method, upload.path) == ('POST', '/api/upload')
    assert upload.json['session'] == fake.session_keys[0]
    assert fake.logins == 1
    assert isinstance(header, fits.Header)


def test_one_login_for_many_calls(an, fake):
    an.submit_source_list(X, Y, 512, 480)
    an.submit_source_list(X, Y, 512, 480)
    an.list_job_records()
    assert fake.logins == 1
    assert len(fake.calls('^/api/login$')) == 1


def test_nova_backend_login(an, fake):
    an.backend.login()
    assert fake.logins == 1
    assert an.backend.session_key() == fake.session_keys[0]
    assert an.backend.name == 'nova'


def test_facade_login(an, fake):
    # astroquery's LoginABCMeta must not replace our login() (it wraps classes
    # whose body defines _login)
    an.login(API_KEY)
    assert fake.logins == 1
    assert fake.requests[-1].json == {'apikey': API_KEY}
    assert an._last_query is None
    an._login()
    assert fake.logins == 2
    assert an.backend.session_key() == fake.session_keys[1]


def test_facade_login_with_a_new_key(an, fake):
    fake.api_keys['newnewnewnewnewn'] = 43
    an.login('newnewnewnewnewn')
    assert an.api_key == 'newnewnewnewnewn'
    assert fake.requests[-1].json == {'apikey': 'newnewnewnewnewn'}
    with pytest.raises(LoginError, match='bad apikey'):
        an.login('badbadbadbadbadb')


def test_facade_login_without_any_key_prompts(fake, monkeypatch):
    import getpass
    inst = attach(AstrometryNetClass(server=fake.base), fake)
    prompts = []
    monkeypatch.setattr(getpass, 'getpass', lambda prompt: prompts.append(prompt) or '')
    with pytest.raises(MissingAPIKeyError, match=f'The server at {fake.base} requires an API key'):
        inst.login()
    assert prompts and fake.base in prompts[0]
    # Only the question whether the server is open (nova answers with its home page: no).
    assert _status_paths(fake) == ['/api/server_info']


def test_facade_login_on_an_open_server_asks_for_no_key(fake, monkeypatch):
    import getpass
    fake.api_keys[OPEN_SERVER_KEY] = 9
    fake.fail_next('^/api/server_info$', (200, json.dumps({'status': 'success', 'open': True}),
                                          {'Content-Type': 'text/plain'}))
    inst = attach(AstrometryNetClass(server=fake.base), fake)
    monkeypatch.setattr(getpass, 'getpass', lambda prompt: pytest.fail('asked for a key'))
    inst.login()
    assert _status_paths(fake) == ['/api/server_info', '/api/login']
    assert fake.requests[-1].json == {'apikey': OPEN_SERVER_KEY}


def test_bad_api_key_is_login_error(fake, clock):
    inst = attach(AstrometryNetClass(api_key='wrongwrongwrongw', server=fake.base), fake)
    with pytest.raises(LoginError) as info:
        inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert isinstance(info.value, RuntimeError)
    assert 'bad apikey' in str(info.value)
    assert 'wrongwrongwrongw' not in str(info.value)
    assert _status_paths(fake) == ['/api/login']


def test_login_answer_without_session(an, fake):
    fake.fail_next('^/api/login$', (200, json.dumps({'status': 'success'}),
                                    {'Content-Type': 'text/plain'}))
    with pytest.raises(LoginError, match='no session'):
        an.backend.login()


def test_missing_api_key(fake, clock):
    # nova.astrometry.net (the default server) always needs a key: no request at all.
    inst = attach(AstrometryNetClass(backend='nova'), fake)
    assert inst.server == 'https://nova.astrometry.net'
    with pytest.raises(MissingAPIKeyError) as info:
        inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert isinstance(info.value, RuntimeError)
    assert 'API key not set' in str(info.value)
    assert fake.requests == []
    with pytest.raises(RuntimeError, match='Astrometry.net API key not set'):
        inst.api_key
    # Another server is asked once whether it is open; nova's answer (its home page) means no.
    inst = attach(AstrometryNetClass(server=fake.base), fake)
    for _ in range(2):
        with pytest.raises(MissingAPIKeyError, match='http://nova.test requires an API key'):
            inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert _status_paths(fake) == ['/api/server_info']


@pytest.mark.parametrize('answer', [
    (404, '<html><head><title>Page not found</title></head></html>'),
    (200, json.dumps({'status': 'error', 'errormessage': 'no such thing'})),
    (200, json.dumps({'status': 'success', 'open': False})),
    (200, json.dumps({'status': 'success', 'open': 'yes'})),       # only true is open
])
def test_a_server_that_does_not_say_it_is_open_needs_a_key(fake, clock, answer):
    fake.fail_next('^/api/server_info$', answer + ({'Content-Type': 'text/plain'},))
    inst = attach(AstrometryNetClass(server=fake.base), fake)
    with pytest.raises(MissingAPIKeyError, match='requires an API key'):
        inst.submit_source_list(X, Y, 512, 480)
    assert _status_paths(fake) == ['/api/server_info']


def test_key_less_client_of_an_open_server_asks_once_and_renews(fake, clock):
    fake.api_keys[OPEN_SERVER_KEY] = 9
    fake.fail_next('^/api/server_info$', (200, json.dumps({'status': 'success', 'open': True}),
                                          {'Content-Type': 'text/plain'}))
    inst = attach(AstrometryNetClass(server=fake.base), fake)
    assert inst.submit_source_list(X, Y, 512, 480).id >= 1
    fake.expire_sessions()
    inst.submit_url('http://example.org/a.fits')           # logs in again, without asking
    paths = _status_paths(fake)
    assert paths.count('/api/server_info') == 1 and paths.count('/api/login') == 2
    assert all(r.json == {'apikey': OPEN_SERVER_KEY} for r in fake.requests
               if r.path == '/api/login')


@pytest.mark.slow       # the HTTP adapter's own connection retries sleep for real
def test_unreachable_server_without_a_key_is_a_server_error(clock):
    inst = AstrometryNetClass(server='http://127.0.0.1:9')     # nothing listens there
    with pytest.raises(ServerError, match='Cannot reach the server'):
        inst.submit_source_list(X, Y, 512, 480)


def test_api_key_from_conf_and_environment(fake, clock, monkeypatch):
    fake.api_keys['envenvenvenvenve'] = 7
    monkeypatch.setenv('ASTROMETRY_NET_API_KEY', 'envenvenvenvenve')
    inst = attach(AstrometryNetClass(server=fake.base), fake)
    assert inst.api_key == 'envenvenvenvenve'
    inst.submit_url('http://example.org/a.fits')
    assert fake.requests[0].json == {'apikey': 'envenvenvenvenve'}
    with conf.set_temp('api_key', API_KEY):
        assert inst.api_key == API_KEY                 # conf beats the environment
        inst2 = attach(AstrometryNetClass(api_key='argargargargarga', server=fake.base), fake)
        assert inst2.api_key == 'argargargargarga'    # the argument beats conf


# -- session renewal --------------------------------------------------------------------------
@pytest.mark.parametrize('mode,message', [('deleted', 'no session with key'),
                                          ('unauthenticated', 'user is not authenticated.')])
def test_session_renewal(an, fake, mode, message):
    an.submit_source_list(X, Y, 512, 480)
    fake.expire_sessions(mode)
    sub = an.submit_source_list(X, Y, 512, 480)
    assert isinstance(sub, Submission)
    uploads = fake.calls('^/api/upload$')
    assert len(uploads) == 3
    assert uploads[1].json['session'] == uploads[0].json['session']
    assert uploads[2].json['session'] != uploads[0].json['session']
    assert uploads[2].json['session'] == fake.session_keys[1]
    assert uploads[2].json['x'] == X
    assert fake.logins == 2
    assert _status_paths(fake) == ['/api/login', '/api/upload', '/api/upload', '/api/login',
                                   '/api/upload']


def test_session_renewal_rewinds_the_uploaded_file(an, fake, tmp_path):
    path = write_image(tmp_path / 'field.fits', np.arange(32 * 32.0).reshape(32, 32))
    an.submit_image(path, force_image_upload=True)
    fake.expire_sessions()
    an.submit_image(path, force_image_upload=True)
    uploads = fake.calls('^/api/upload$')
    assert len(uploads) == 3
    assert uploads[2].files['file'][1] == path.read_bytes()


def test_session_renewal_for_myjobs(an, fake):
    an.list_job_records()
    fake.expire_sessions('unauthenticated')
    assert an.list_job_records() == []
    assert fake.logins == 2


def _expire_every_session(fake):
    """Make the fake answer every session as unknown, even a fresh one."""
    orig = fake._prechecks

    def always_expired(rec, form, **kwargs):
        args, err = orig(rec, form, **kwargs)
        if err is None and 'session' in args:
            return None, fake._error(f'no session with key "{args["session"]}"')
        return args, err

    fake._prechecks = always_expired


def test_session_renewal_gives_up_after_one_retry(an, fake):
    an.submit_source_list(X, Y, 512, 480)
    _expire_every_session(fake)
    with pytest.raises(ServerError, match='no session with key'):
        an.submit_source_list(X, Y, 512, 480)
    assert len(fake.calls('^/api/upload$')) == 3
    assert fake.logins == 2


def test_failed_renewal_does_not_leak_session_key(an, fake):
    an.submit_source_list(X, Y, 512, 480)
    _expire_every_session(fake)
    with pytest.raises(ServerError) as info:
        an.submit_source_list(X, Y, 512, 480)
    for key in fake.session_keys:
        assert key not in str(info.value)
        assert key not in repr(info.value.args)


# -- solve from a source list ------------------------------------------------------------------
@pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning')
def test_solve_from_source_list_request_and_header(an, fake):
    header, sid = _solve_xy(an, return_submission_id=True, scale=(1 * u.arcsec / u.pix,
                                                                  2 * u.arcsec / u.pix),
                            center=SkyCoord(83.8 * u.deg, -5.4 * u.deg), radius=2 * u.deg)
    upload = fake.calls('^/api/upload$')[0]
    args = upload.json
    assert args['x'] == X and args['y'] == Y
    assert all(isinstance(v, float) for v in args['x'] + args['y'])
    assert (args['image_width'], args['image_height']) == (512, 480)
    assert args['publicly_visible'] == 'n'
    assert args['allow_commercial_use'] == 'd' and args['allow_modifications'] == 'd'
    assert (args['scale_lower'], args['scale_upper'], args['scale_units'], args['scale_type']) == (
        1.0, 2.0, 'arcsecperpix', 'ul')
    assert args['center_ra'] == pytest.approx(83.8) and args['center_dec'] == pytest.approx(-5.4)
    assert args['radius'] == 2.0
    assert upload.files == {}
    job = fake.submissions[sid]['job']
    assert sid == 1001
    assert header['AN_SUBID'] == sid and header['AN_JOBID'] == job
    assert header['CTYPE1'] == 'RA---TAN' and header['CRVAL1'] == 83.8
    assert WCS(header).pixel_to_world(999.5, 749.5).ra.deg == pytest.approx(83.8)


def test_solve_from_source_list_truncates_to_1000(an, fake):
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 500, 1500)
    y = rng.uniform(1, 500, 1500)
    with log.log_to_list() as records:
        an.solve_from_source_list(x, y, 500, 500, verbose=False)
    args = fake.calls('^/api/upload$')[0].json
    assert len(args['x']) == 1000 and len(args['y']) == 1000
    assert args['x'] == pytest.approx(list(x[:1000]))
    assert any('only the first 1000' in r.getMessage() for r in records)


def test_solve_from_source_list_quantities(an, fake):
    _solve_xy_q = an.solve_from_source_list(np.array(X) * u.pix, np.array(Y) * u.pix, 512, 480,
                                            verbose=False)
    assert fake.calls('^/api/upload$')[0].json['x'] == X
    assert _solve_xy_q['AN_SUBID'] == 1001


def test_polling_sequence_and_progress(an, fake):
    fake.script = ['queued', 'queued', 'processing', 'waiting', 'job_queued', 'solving', 'success']
    states = []
    header = _solve_xy(an, progress=lambda state, sid, jid: states.append((state, sid, jid)))
    job = header['AN_JOBID']
    assert states == [('queued', 1001, None), ('processing', 1001, None),
                      ('waiting for a job', 1001, None), ('solving', 1001, job),
                      ('success', 1001, job)]
    assert _status_paths(fake) == (['/api/login', '/api/upload'] + ['/api/submissions/1001'] * 5
                                   + [f'/api/jobs/{job}'] * 2
                                   + [f'/api/jobs/{job}/info', f'/wcs_file/{job}'])


def test_poll_interval_brisk_while_young_then_growing(an, fake, clock):
    fake.script = ['queued'] * 20 + ['success']
    with conf.set_temp('poll_interval', 0.5):
        _solve_xy(an)
    young = [s for s, t in zip(clock.sleeps, np.cumsum([0] + clock.sleeps)) if t < polling.BRISK_PERIOD]
    assert young and all(s == pytest.approx(0.5) for s in young)
    later = clock.sleeps[len(young):]
    assert later[:3] == pytest.approx([0.5, 0.75, 1.125])
    assert all(s <= polling.MAX_POLL_INTERVAL for s in clock.sleeps)


def test_retry_after_is_honoured(an, fake, clock):
    fake.script = ['queued', 'success']
    fake.fail_next('^/api/submissions/', (503, 'busy', {'Retry-After': '7'}))
    with conf.set_temp('poll_interval', 0.5):
        _solve_xy(an)
    assert 7.0 in clock.sleeps


def test_submission_status_quirks_are_parsed(an, fake):
    sid = fake.add_submission(['queued', 'waiting', 'solving'])
    sub = an.backend.submission(sid)
    assert sub.processing_started is None and sub.processing_finished is None
    assert sub.state == 'queued' and sub.job_ids == []
    sub = an.backend.submission(sid)
    assert sub.jobs == [None] and sub.job_ids == []
    assert sub.processing_started.year == 2024 and sub.processing_started.microsecond == 123456
    assert sub.state == 'waiting for a job'
    sub = an.backend.submission(sid)
    assert sub.job_ids == [fake.submissions[sid]['job']] and sub.state == 'solving'


# -- solve from an image --------------------------------------------------------------------
def test_solve_from_image_uploads_extracted_sources(an, fake, tmp_path):
    stars = grid_stars(6, 30, offset=20.0)
    image = render_stars((200, 220), stars)
    path = write_image(tmp_path / 'field.fits', image)
    header = an.solve_from_image(path, verbose=False)
    upload = fake.calls('^/api/upload$')[0]
    args = upload.json
    assert upload.files == {}
    assert (args['image_width'], args['image_height']) == (220, 200)
    expected = sorted(stars, key=lambda s: -s[2])
    assert len(args['x']) == len(expected)
    for (x, y, _), ux, uy in zip(expected, args['x'], args['y']):
        assert abs(ux - (x + 1)) < 0.2 and abs(uy - (y + 1)) < 0.2      # 1-based, brightest first
    assert header['AN_JOBID'] == fake.submissions[1001]['job']


def test_solve_from_image_uploads_at_most_1000_sources(an, fake, tmp_path):
    path = write_image(tmp_path / 'crowded.fits', render_stars((620, 620), grid_stars(35, 17)))
    an.submit_image(path)
    args = fake.calls('^/api/upload$')[0].json
    assert len(args['x']) == 1000 and len(args['y']) == 1000


def test_solve_from_image_force_image_upload(an, fake, tmp_path):
    path = write_image(tmp_path / 'field.fits', render_stars((100, 100), grid_stars(3, 25)))
    header = an.solve_from_image(path, force_image_upload=True, verbose=False, parity=1,
                                 scale_units='degwidth', scale_lower=0.5, scale_upper=2)
    upload = fake.calls('^/api/upload$')[0]
    assert set(upload.files) == {'file'}
    filename, content = upload.files['file']
    assert filename == 'field.fits' and content == path.read_bytes()
    assert upload.raw_json is not None
    args = upload.json
    assert 'x' not in args and 'y' not in args
    assert args['session'] == fake.session_keys[0]
    assert (args['parity'], args['scale_lower'], args['scale_upper']) == (1, 0.5, 2.0)
    assert fake.submissions[1001]['original_filename'] == 'field.fits'
    assert header['AN_SUBID'] == 1001


def test_solve_from_image_with_few_stars_uploads_the_image(an, fake, tmp_path):
    path = write_image(tmp_path / 'sparse.fits', render_stars((100, 100), [(50, 50, 5e4)]))
    an.submit_image(path)
    upload = fake.calls('^/api/upload$')[0]
    assert upload.files['file'][1] == path.read_bytes()
    assert 'x' not in upload.json


@pytest.mark.parametrize('ra,dec,comment,expected', [
    ('05:35:17.3', '-05:23:28', '', (83.8220833, -5.3911111)),
    (83.8, -5.4, '', (83.8, -5.4)),
    (5.5, -5.4, 'RA in hours', (82.5, -5.4)),
])
def test_ra_dec_keys_become_center(an, fake, tmp_path, ra, dec, comment, expected):
    header = fits.Header()
    header['OBJCTRA'] = (ra, comment)
    header['OBJCTDEC'] = dec
    path = write_image(tmp_path / 'field.fits', render_stars((100, 100), grid_stars(4, 22)), header)
    an.submit_image(path, ra_key='OBJCTRA', dec_key='OBJCTDEC')
    args = fake.calls('^/api/upload$')[0].json
    assert args['center_ra'] == pytest.approx(expected[0], abs=1e-6)
    assert args['center_dec'] == pytest.approx(expected[1], abs=1e-6)
    assert args['radius'] == 5.0


def test_ra_dec_keys_with_forced_upload(an, fake, tmp_path):
    header = fits.Header()
    header['RA'] = 150.25
    header['DEC'] = 2.5
    path = write_image(tmp_path / 'f.fits', np.arange(32 * 32.0).reshape(32, 32), header)
    an.submit_image(path, ra_key='RA', dec_key='DEC', force_image_upload=True)
    args = fake.calls('^/api/upload$')[0].json
    assert (args['center_ra'], args['center_dec']) == (150.25, 2.5)
    assert 'file' in fake.calls('^/api/upload$')[0].files


def test_explicit_center_beats_ra_dec_keys(an, fake, tmp_path):
    header = fits.Header()
    header['RA'] = 150.25
    header['DEC'] = 2.5
    path = write_image(tmp_path / 'f.fits', np.arange(32 * 32.0).reshape(32, 32), header)
    an.submit_image(path, ra_key='RA', dec_key='DEC', force_image_upload=True, center_ra=10.0,
                    center_dec=20.0, radius=1.0)
    args = fake.calls('^/api/upload$')[0].json
    assert (args['center_ra'], args['center_dec'], args['radius']) == (10.0, 20.0, 1.0)


def test_ra_dec_keys_with_radius(an, fake, tmp_path):
    header = fits.Header()
    header['RA'] = 150.25
    header['DEC'] = 2.5
    path = write_image(tmp_path / 'f.fits', np.arange(32 * 32.0).reshape(32, 32), header)
    an.submit_image(path, ra_key='RA', dec_key='DEC', radius=30 * u.arcmin,
                    force_image_upload=True)
    args = fake.calls('^/api/upload$')[0].json
    assert (args['center_ra'], args['center_dec'], args['radius']) == (150.25, 2.5, 0.5)


# -- solve from a URL, submit_* -----------------------------------------------------------------
def test_solve_from_url(an, fake):
    header, sid = an.solve_from_url('https://example.org/images/m42.jpg', verbose=False,
                                    return_submission_id=True, downsample_factor=4)
    req = fake.calls('^/api/url_upload$')[0]
    assert req.method == 'POST'
    assert req.json['url'] == 'https://example.org/images/m42.jpg'
    assert req.json['downsample_factor'] == 4
    assert req.json['publicly_visible'] == 'n'
    assert req.json['session'] == fake.session_keys[0]
    assert fake.submissions[sid]['original_filename'] == 'm42.jpg'
    assert header['AN_SUBID'] == sid


def test_submit_returns_submission_records_without_polling(an, fake, tmp_path):
    sub = an.submit_source_list(X, Y, 512, 480)
    assert isinstance(sub, Submission) and sub.id == 1001 and len(sub.hash) == 40
    sub2 = an.submit_url('http://example.org/a.fits')
    assert isinstance(sub2, Submission) and sub2.id == 1002 and sub2.hash is None
    path = write_image(tmp_path / 'f.fits', np.arange(32 * 32.0).reshape(32, 32))
    sub3 = an.submit_image(path, force_image_upload=True)
    assert sub3.id == 1003 and len(sub3.hash) == 40
    assert not fake.calls('^/api/(submissions|jobs)')


# -- monitor_submission / wait ------------------------------------------------------------------
def test_monitor_submission(an, fake):
    sid = fake.add_submission(['queued', 'solving', 'success'])
    header = an.monitor_submission(sid, verbose=False)
    assert header['AN_SUBID'] == sid and header['AN_JOBID'] == fake.submissions[sid]['job']
    sid2 = fake.add_submission(['success'])
    header, got = an.monitor_submission(str(sid2), verbose=False, return_submission_id=True)
    assert got == sid2 and header['AN_SUBID'] == sid2
    assert not fake.calls('^/api/(login|upload)')


def test_wait_from_submission_id_and_record(an, fake):
    sid = fake.add_submission(['queued', 'success'])
    job = an.wait(sid, verbose=False)
    assert isinstance(job, Job)
    assert job.status == 'success' and job.solved and job.finished
    assert job.submission_id == sid and job.id == fake.submissions[sid]['job']
    assert job.calibration.pixscale == 20.0 * u.arcsec / u.pix
    assert job.original_filename == 'json-xy'
    sid2 = fake.add_submission(['success'])
    assert an.wait(Submission(id=sid2), verbose=False).submission_id == sid2


def test_wait_from_job_only_polls_the_job(an, fake):
    sid = fake.add_submission(['solving', 'solving', 'success'])
    jid = fake.job_of(sid)
    job = an.wait(Job(id=jid, status='solving'), verbose=False)
    assert job.id == jid and job.status == 'success'
    assert not fake.calls('^/api/submissions/')


def test_wait_from_header(an, fake):
    header = _solve_xy(an)
    fake.requests.clear()
    job = an.wait(header, verbose=False)
    assert job.id == header['AN_JOBID'] and job.submission_id == header['AN_SUBID']
    assert _status_paths(fake) == [f'/api/jobs/{job.id}', f'/api/jobs/{job.id}/info']
    sid = fake.add_submission(['queued', 'success'])
    sub_only = fits.Header()
    sub_only['AN_SUBID'] = sid
    assert an.wait(sub_only, verbose=False).submission_id == sid


@pytest.mark.parametrize('bad', [None, True, 'abc', -3, 2.5, fits.Header()])
def test_wait_bad_reference(an, fake, bad):
    with pytest.raises(InvalidInputError):
        an.wait(bad, verbose=False)
    assert fake.requests == []


@pytest.mark.parametrize('timeout', [0, -1, True, 'soon', [5]])
def test_wait_bad_timeout(an, fake, timeout):
    with pytest.raises(InvalidInputError, match='solve_timeout'):
        an.wait(1001, solve_timeout=timeout, verbose=False)
    assert fake.requests == []


@pytest.mark.parametrize('timeout', [float('nan'), float('inf')])
def test_wait_non_finite_timeout_is_refused(an, fake, timeout):
    # nan would never time out ('nan <= 0' is False)
    with pytest.raises(InvalidInputError, match='solve_timeout'):
        an.wait(1001, solve_timeout=timeout, verbose=False)
    assert fake.requests == []


def test_failure_is_solve_failed_error(an, fake):
    fake.script = ['queued', 'solving', 'failure']
    with pytest.raises(SolveFailedError) as info:
        _solve_xy(an)
    err = info.value
    assert err.submission_id == 1001 and err.job_id == fake.submissions[1001]['job']
    assert 'The solve failed' in str(err) and 'submission 1001' in str(err)
    assert not fake.calls('wcs_file')


def test_submission_error_message(an, fake):
    fake.script = ['queued', 'processing', 'error']
    fake.error_messages['next'] = ('Traceback (most recent call last): ... '
                                   'Source list must contain POSITIVE x,y coordinates')
    with pytest.raises(SubmissionError) as info:
        _solve_xy(an)
    err = info.value
    assert err.submission_id == 1001 and err.job_id is None
    assert 'POSITIVE x,y coordinates' in str(err)
    assert not fake.calls('^/api/jobs/')


def test_timeout(an, fake, clock):
    fake.script = ['queued', 'solving']          # never finishes
    with pytest.raises(SolveTimeoutError) as info:
        _solve_xy(an, solve_timeout=30)
    err = info.value
    assert isinstance(err, AstroqueryTimeoutError)
    assert isinstance(err, builtins.TimeoutError)
    assert err.args[1] == 1001
    assert err.submission_id == 1001 and err.job_id == fake.submissions[1001]['job']
    assert 'timed out after 30 s' in str(err)
    assert 'resume with AstrometryNet.wait(' in str(err)
    assert 1000 + 30 <= clock.now < 1000 + 30 + polling.MAX_POLL_INTERVAL
    assert not fake.calls('wcs_file')


def test_job_ended_with_unknown_status_is_not_a_timeout(an, fake):
    fake.script = ['queued', 'solving', 'other']
    with pytest.raises(SolveFailedError) as info:
        _solve_xy(an, solve_timeout=30)
    assert info.value.job_id == fake.submissions[1001]['job']


def test_wait_numpy_integer_is_a_submission_id(an, fake):
    sid = fake.add_submission(['queued', 'success'])
    job = an.wait(np.int64(sid), verbose=False)
    assert job.submission_id == sid and job.id == fake.submissions[sid]['job']


def test_timeout_from_conf(an, fake, clock):
    fake.script = ['queued']
    with conf.set_temp('solve_timeout', 12.0):
        with pytest.raises(SolveTimeoutError, match='after 12 s'):
            _solve_xy(an)


def test_timeout_resume_hint_works(an, fake):
    fake.script = ['queued', 'solving']
    with pytest.raises(SolveTimeoutError) as info:
        _solve_xy(an, solve_timeout=30)
    call = re.search(r'resume with AstrometryNet\.(wait\([^)]*\))', str(info.value)).group(1)
    assert call == 'wait(1001)'
    fake.submissions[1001]['script'].append('success')
    fake.submissions[1001]['step'] = 5
    job = eval('an.' + call[:-1] + ', verbose=False)', {'an': an})
    assert job.status == 'success' and job.submission_id == 1001


def test_wait_for_a_job_id(an, fake):
    sid = fake.add_submission(['solving', 'solving', 'success'])
    jid = fake.job_of(sid)
    job = an.wait(job_id=jid, verbose=False)
    assert job.id == jid and job.status == 'success'
    assert not fake.calls('^/api/submissions/')
    with pytest.raises(InvalidInputError):
        an.wait(verbose=False)


def test_resume_hint_of_a_job_only_error_names_job_id(an, fake):
    sid = fake.add_submission(['solving', 'solving'])
    jid = fake.job_of(sid)
    with pytest.raises(SolveTimeoutError) as info:
        an.wait(job_id=jid, solve_timeout=5, verbose=False)
    assert f'resume with AstrometryNet.wait(job_id={jid})' in str(info.value)


def test_resume_after_timeout_with_submission_id(an, fake):
    fake.script = ['queued', 'solving']
    with pytest.raises(SolveTimeoutError) as info:
        _solve_xy(an, solve_timeout=30)
    fake.submissions[1001]['script'].append('success')
    fake.submissions[1001]['step'] = 5
    header = an.monitor_submission(info.value.args[1], verbose=False)
    assert header['AN_JOBID'] == fake.submissions[1001]['job']


def test_vanished_job_is_replaced(an, fake):
    fake.script = ['queued', 'solving', 'solving', 'vanish', 'solving', 'success']
    states = []
    header = _solve_xy(an, progress=lambda s, sid, jid: states.append((s, jid)))
    history = fake.submissions[1001]['jobs_history']
    assert len(history) == 2
    old, new = history
    assert header['AN_JOBID'] == new and header['AN_SUBID'] == 1001
    assert [r.status for r in fake.calls(f'^/api/jobs/{old}$')] == [200, 404]
    assert ('success', new) in states
    assert any(s.startswith('job vanished') for s, _ in states)


def test_job_vanishing_right_after_it_appears_is_replaced(an, fake):
    fake.script = ['queued', 'solving', 'vanish', 'solving', 'success']
    header = _solve_xy(an)
    old, new = fake.submissions[1001]['jobs_history']
    assert header['AN_JOBID'] == new


def test_vanished_job_without_submission_is_an_error(an, fake):
    sid = fake.add_submission(['solving', 'vanish', 'success'])
    jid = fake.job_of(sid)
    with pytest.raises(JobNotFoundError) as info:
        an.wait(Job(id=jid, status='solving'), verbose=False)
    assert info.value.job_id == jid and info.value.status_code == 404


def test_unknown_submission_is_job_not_found(an, fake):
    with pytest.raises(JobNotFoundError) as info:
        an.wait(424242, verbose=False)
    assert info.value.submission_id == 424242
    assert len(fake.requests) == 1


def test_transient_errors_while_polling_are_tolerated(an, fake):
    fake.script = ['queued', 'queued', 'solving', 'success']
    fake.fail_next('^/api/submissions/', (502, '<html><title>502 Bad Gateway</title></html>'), 2)
    fake.fail_next('^/api/jobs/\\d+$', requests.ConnectionError('connection reset'), 1)
    fake.fail_next('^/api/jobs/\\d+$', (503, '<html><title>Unavailable</title></html>'), 1)
    header = _solve_xy(an)
    assert header['AN_JOBID'] == fake.submissions[1001]['job']
    assert [r.status for r in fake.calls('^/api/submissions/')][:2] == [502, 502]


def test_too_many_transient_errors(an, fake):
    fake.fail_next('^/api/submissions/', (502, '<html><title>502 Bad Gateway</title></html>'), 100)
    with pytest.raises(ServerError) as info:
        _solve_xy(an)
    assert info.value.status_code == 502
    assert len(fake.calls('^/api/submissions/')) == polling.MAX_TRANSIENT_ERRORS + 1


def test_client_error_while_polling_is_not_retried(an, fake):
    fake.fail_next('^/api/submissions/', (403, '<html><title>Forbidden</title></html>'), 100)
    with pytest.raises(ServerError) as info:
        _solve_xy(an)
    assert info.value.status_code == 403
    assert len(fake.calls('^/api/submissions/')) == 1


def test_html_home_page_answer_is_a_clear_error(an, fake):
    fake.fail_next('^/api/upload$', (200, '<!DOCTYPE html><html><head><title>Astrometry.net'
                                          '</title></head></html>', {'Content-Type': 'text/html'}))
    with pytest.raises(ServerError, match='HTML page'):
        an.submit_source_list(X, Y, 512, 480)


def test_upload_error_payload(an, fake):
    with pytest.raises(ServerError, match='Failed to find an Album with title "Nope"'):
        an.submit_source_list(X, Y, 512, 480, album='Nope')


# -- results of a solved job ------------------------------------------------------------------
@pytest.fixture
def solved(fake):
    return fake.solved_job()


def test_get_calibration(an, fake, solved):
    sid, jid = solved
    cal = an.get_calibration(jid)
    assert isinstance(cal, Calibration)
    assert cal.ra == 83.8 * u.deg and cal.dec == -5.4 * u.deg
    assert cal.radius.unit == u.deg and cal.radius.value == pytest.approx(6.9444444)
    assert cal.pixscale == 20.0 * u.arcsec / u.pix
    assert cal.orientation == 30.0 * u.deg
    assert cal.parity == -1.0
    assert cal.width == 40000 * u.arcsec and cal.height == 30000 * u.arcsec
    center = cal.center
    assert isinstance(center, SkyCoord) and center.frame.name == 'icrs'
    assert center.ra.deg == pytest.approx(83.8) and center.dec.deg == pytest.approx(-5.4)
    assert cal.to_api() == pytest.approx(CALIBRATION)
    req = fake.calls('calibration')[0]
    assert req.path == f'/api/jobs/{jid}/calibration' and req.cache is True


def test_get_calibration_of_unsolved_job(an, fake):
    sid = fake.add_submission(['solving'])
    jid = fake.job_of(sid)
    with pytest.raises(ResultNotAvailableError) as info:
        an.get_calibration(jid)
    assert info.value.job_id == jid
    assert f'no calibration data available for job {jid}' in str(info.value)


def test_get_annotations(an, fake, solved):
    sid, jid = solved
    table = an.get_annotations(jid)
    assert isinstance(table, Table)
    assert list(table['type']) == ['HIP', 'bright', 'ngc']
    assert list(table['name']) == ['', 'Alnilam', 'NGC 1976']
    assert table['names'][1] == 'Alnilam / \u03b5 Ori'
    assert table['pixelx'].unit == u.pix and table['radius'].unit == u.pix
    assert table['radius'][2] == 45.5
    assert table['vmag'].unit == u.mag
    assert list(table['vmag'].mask) == [True, False, True] and table['vmag'][1] == 1.69
    assert table['ra'].unit == u.deg and table['dec'].unit == u.deg
    # the bright star sits on CRPIX (FITS 1-based): its RA/Dec is CRVAL
    assert table['ra'][1] == pytest.approx(83.8) and table['dec'][1] == pytest.approx(-5.4)
    wcs = WCS(make_wcs_header())
    for row, ann in zip(table, ANNOTATIONS):
        ra, dec = wcs.all_pix2world(ann['pixelx'], ann['pixely'], 1)
        assert row['ra'] == pytest.approx(float(ra) % 360) and row['dec'] == pytest.approx(float(dec))
    req = fake.calls('annotations')[0]
    assert req.cache is True and not req.params


def test_get_annotations_nbright(an, fake, solved):
    sid, jid = solved
    table = an.get_annotations(jid, nbright=0)
    assert 'bright' not in list(table['type'])
    assert fake.calls('annotations')[0].params == {'nbright': 0}


@pytest.mark.parametrize('nbright', [-1, 'two', True, 1.5])
def test_get_annotations_bad_nbright(an, fake, solved, nbright):
    with pytest.raises(InvalidInputError, match='nbright'):
        an.get_annotations(solved[1], nbright=nbright)
    assert fake.requests == []


def test_get_objects_in_field_and_tags(an, fake, solved):
    sid, jid = solved
    fake.job_tags[jid] = ['my tag']
    assert an.get_objects_in_field(jid) == OBJECTS
    assert fake.calls('objects_in_field')[0].cache is True
    assert an.get_tags(jid) == OBJECTS + ['my tag']
    assert an.get_tags(jid, machine=True) == OBJECTS
    assert [r.path for r in fake.calls('tags')] == [f'/api/jobs/{jid}/tags',
                                                    f'/api/jobs/{jid}/machine_tags']
    assert all(r.cache is False for r in fake.calls('tags'))


def test_get_job_info(an, fake, solved):
    sid, jid = solved
    job = an.get_job_info(jid)
    assert isinstance(job, Job)
    assert (job.id, job.status, job.original_filename) == (jid, 'success', 'json-xy')
    assert job.objects_in_field == OBJECTS and job.machine_tags == OBJECTS
    assert job.calibration.ra == 83.8 * u.deg and job.calibration.width is None


def test_job_references(an, fake, solved):
    sid, jid = solved
    header = fits.Header()
    header['AN_JOBID'] = jid
    header['AN_SUBID'] = sid
    for ref in (jid, str(jid), np.int64(jid), Job(id=jid, status='success'), header):
        assert an.get_calibration(ref, cache=False).pixscale == 20 * u.arcsec / u.pix
    row = an.list_jobs()[0]
    assert an.get_calibration(row, cache=False).ra == 83.8 * u.deg
    sub_only = fits.Header()
    sub_only['AN_SUBID'] = sid
    assert an.get_job_info(sub_only).id == jid


def test_list_jobs(an, fake):
    s1, j1 = fake.solved_job()
    s2 = fake.add_submission(['solving'])
    j2 = fake.job_of(s2)
    fake.solved_job(user=99)              # someone else's job
    table = an.list_jobs()
    assert isinstance(table, Table)
    assert sorted(table['job_id']) == [j1, j2]
    rows = {r['job_id']: r for r in table}
    assert rows[j1]['status'] == 'success' and rows[j2]['status'] == 'solving'
    assert table['ra'].unit == u.deg and rows[j1]['ra'] == pytest.approx(83.8)
    assert bool(np.ma.is_masked(rows[j2]['ra']))
    myjobs = fake.calls('^/api/myjobs')[0]
    assert myjobs.method == 'POST' and myjobs.json == {'session': fake.session_keys[0]}
    records = an.list_job_records()
    assert {r.id for r in records} == {j1, j2} and all(isinstance(r, Job) for r in records)


def test_find_jobs_by_tag(an, fake):
    s1, j1 = fake.solved_job()
    s2, j2 = fake.solved_job()
    fake.job_tags[j2] = ['orion wide field']
    assert an.find_jobs_by_tag('Orion Nebula', exact=True) == [j2, j1]
    assert fake.requests[-1].params == {'query': 'Orion Nebula', 'exact': 'yes'}
    assert fake.requests[-1].path == '/api/jobs_by_tag'
    assert an.find_jobs_by_tag('  wide field ') == [j2]
    assert fake.requests[-1].params == {'query': 'wide field'}
    assert an.find_jobs_by_tag('orion wide', exact=True) == []


@pytest.mark.parametrize('tag', ['', '   ', None, 5])
def test_find_jobs_by_tag_bad(an, fake, tag):
    with pytest.raises(InvalidInputError):
        an.find_jobs_by_tag(tag)
    assert fake.requests == []


# -- downloads ----------------------------------------------------------------------------------
FITS_KINDS = ['wcs', 'new_fits', 'rdls', 'axy', 'corr', 'image_rd']
GATED = {'new_fits', 'corr', 'annotated'}
ROUTES = {'wcs': 'wcs_file', 'new_fits': 'new_fits_file', 'rdls': 'rdls_file', 'axy': 'axy_file',
          'corr': 'corr_file', 'image_rd': 'image_rd_file', 'annotated': 'annotated_full'}


@pytest.mark.parametrize('kind', FITS_KINDS)
def test_download_in_memory(an, fake, solved, kind):
    sid, jid = solved
    hdul = an.download(jid, kind)
    assert isinstance(hdul, fits.HDUList)
    if kind == 'wcs':
        assert hdul[0].header['CTYPE1'] == 'RA---TAN'
    elif kind == 'new_fits':
        assert hdul[0].data.shape == (15, 20)
    else:
        assert isinstance(hdul[1], fits.BinTableHDU)
    req = fake.requests[-1]
    assert req.path == f'/{ROUTES[kind]}/{jid}'
    assert req.cache is True and req.kwargs['allow_redirects'] is False
    referer = {k.lower(): v for k, v in req.headers.items()}.get('referer')
    if kind in GATED:
        assert referer and referer.startswith(SERVER)
    assert req.status == 200


def test_download_annotated_png_bytes(an, fake, solved):
    content = an.download(solved[1], 'annotated')
    assert isinstance(content, bytes) and content.startswith(b'\x89PNG')
    assert 'Referer' in fake.requests[-1].headers


@pytest.mark.parametrize('kind', FITS_KINDS + ['annotated'])
def test_download_to_directory(an, fake, solved, tmp_path, kind):
    sid, jid = solved
    path = an.download(jid, kind, destination_dir=tmp_path)
    assert path.parent == tmp_path and path.name.startswith(f'job{jid}-')
    assert path.read_bytes()[:6] in (b'SIMPLE', b'\x89PNG\r\n')
    n = len(fake.requests)
    with pytest.raises(FileExistsError, match='overwrite=True'):
        an.download(jid, kind, destination_dir=tmp_path)
    assert len(fake.requests) == n                 # refused before any request
    path.write_bytes(b'old')
    again = an.download(jid, kind, destination_dir=str(tmp_path), overwrite=True)
    assert again == path and path.read_bytes() != b'old'


def test_download_names(an, fake, solved, tmp_path):
    sid, jid = solved
    names = {kind: an.download(jid, kind, destination_dir=tmp_path).name
             for kind in FITS_KINDS + ['annotated']}
    assert names == {'wcs': f'job{jid}-wcs.fits', 'new_fits': f'job{jid}-new-image.fits',
                     'rdls': f'job{jid}-rdls.fits', 'axy': f'job{jid}-axy.fits',
                     'corr': f'job{jid}-corr.fits', 'image_rd': f'job{jid}-image-radec.fits',
                     'annotated': f'job{jid}-annotated.png'}


def test_download_redirect_to_ask_human_is_an_error(an, fake, solved, tmp_path):
    sid, jid = solved
    fake.fail_next('^/corr_file/', (302, '<html><title>Are you human?</title></html>',
                                    {'Location': f'/ask_human?next=/corr_file/{jid}',
                                     'Content-Type': 'text/html'}))
    with pytest.raises(ServerError, match='ask_human') as info:
        an.download(jid, 'corr', destination_dir=tmp_path)
    assert info.value.status_code == 302
    assert list(tmp_path.iterdir()) == []


def test_download_html_instead_of_fits_is_an_error(an, fake, solved, tmp_path):
    sid, jid = solved
    fake.fail_next('^/wcs_file/', (200, '<html><title>Astrometry.net</title></html>',
                                   {'Content-Type': 'text/html'}))
    with pytest.raises(ServerError, match='did not send a FITS file'):
        an.download(jid, 'wcs', destination_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_of_unsolved_and_unknown_jobs(an, fake, clock):
    sid = fake.add_submission(['solving'])
    jid = fake.job_of(sid)
    with pytest.raises(ResultNotAvailableError) as info:
        an.download(jid, 'wcs')
    assert info.value.job_id == jid
    # nova's 500 for a missing file may be a passing failure: tried again after growing pauses
    assert clock.sleeps == list(DOWNLOAD_RETRIES)
    assert len(fake.calls(rf'^/wcs_file/{jid}$')) == len(DOWNLOAD_RETRIES) + 1
    with pytest.raises(JobNotFoundError) as info:
        an.download(999999, 'rdls')
    assert info.value.job_id == 999999


@pytest.mark.parametrize('kind', ['kmz', 'WCS', 'wcs_file', None])
def test_download_bad_kind(an, fake, solved, kind):
    with pytest.raises(InvalidInputError, match='kind must be one of'):
        an.download(solved[1], kind)
    assert fake.requests == []


def test_download_bad_destination(an, fake, solved, tmp_path):
    with pytest.raises(InvalidInputError, match='destination_dir'):
        an.download(solved[1], 'wcs', destination_dir=tmp_path / 'missing')
    assert fake.requests == []


# -- raw requests ---------------------------------------------------------------------------------
def test_get_json(an, fake, solved):
    sid, jid = solved
    for path in (f'jobs/{jid}/info', f'api/jobs/{jid}/info', f'/api/jobs/{jid}/info'):
        assert an.get_json(path)['status'] == 'success'
    assert [r.url for r in fake.requests] == [f'{SERVER}/api/jobs/{jid}/info'] * 3
    assert all(r.cache is False for r in fake.requests)
    assert an.get_json(f'jobs/{jid}/annotations', params={'nbright': 1})['annotations']
    assert fake.requests[-1].params == {'nbright': 1}
    with pytest.raises(JobNotFoundError):
        an.get_json('jobs/999999')
    with pytest.raises(ServerError, match='HTML page'):
        an.get_json('logout')


def test_request(an, fake, solved):
    sid, jid = solved
    response = an.request('GET', f'wcs_file/{jid}')
    assert response.status_code == 200 and response.content.startswith(b'SIMPLE')
    assert fake.requests[-1].url == f'{SERVER}/wcs_file/{jid}' and fake.requests[-1].cache is False
    response = an.request('POST', 'api/myjobs', authenticated=True)
    assert json.loads(response.text)['status'] == 'success'
    assert fake.requests[-1].json == {'session': fake.session_keys[0]}
    response = an.request('POST', '/api/submission_images', args={'subid': sid},
                          authenticated=True)
    assert json.loads(response.text) == {'status': 'success',
                                         'image_ids': fake.submissions[sid]['user_images']}
    response = an.request('POST', 'api/login', args={'apikey': 'nope'})
    assert json.loads(response.text) == {'status': 'error', 'errormessage': 'bad apikey'}


# -- caching ---------------------------------------------------------------------------------------
def test_cache_only_for_results_of_a_solved_job(an, fake):
    header = _solve_xy(an)
    an.get_calibration(header)
    an.get_annotations(header)
    an.get_objects_in_field(header)
    by_path = {}
    for r in fake.requests:
        by_path.setdefault(re.sub(r'\d+', 'N', r.path), set()).add(r.cache)
    assert by_path == {
        '/api/login': {False}, '/api/upload': {False}, '/api/submissions/N': {False},
        '/api/jobs/N': {False}, '/api/jobs/N/info': {False}, '/wcs_file/N': {True},
        '/api/jobs/N/calibration': {True}, '/api/jobs/N/annotations': {True},
        '/api/jobs/N/objects_in_field': {True}}


def test_cache_false_is_passed_on(an, fake):
    header = _solve_xy(an, cache=False)
    an.get_calibration(header, cache=False)
    an.download(header, 'wcs', cache=False)
    assert {r.cache for r in fake.requests} == {False}


def test_timeout_of_each_request(fake, clock):
    inst = attach(AstrometryNetClass(api_key=fake.api_key, server=fake.base, timeout=7), fake)
    inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert {r.kwargs['timeout'] for r in fake.requests} == {7.0}
    assert inst.timeout == 7.0


def test_server_given_as_api_url(fake, clock):
    inst = attach(AstrometryNetClass(api_key=fake.api_key, server=fake.base + '/api/'), fake)
    inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert all('//' not in r.url.split('://')[1] for r in fake.requests)
    assert fake.requests[-1].url == f'{SERVER}/wcs_file/5001'


# -- bad inputs fail before any request ------------------------------------------------------------
def _image(tmp_path):
    return write_image(tmp_path / 'ok.fits', render_stars((100, 100), grid_stars(4, 22)))


BAD_CALLS = {
    'missing file': (InvalidInputError, lambda an, p: an.solve_from_image(p.parent / 'nope.fits')),
    'directory as file': (InvalidInputError, lambda an, p: an.solve_from_image(p.parent)),
    'not a path': (InvalidInputError, lambda an, p: an.solve_from_image(12)),
    'bad setting name': (InvalidSettingError,
                         lambda an, p: an.solve_from_image(p, scale_lowr=1)),
    'bad setting value': (InvalidSettingError, lambda an, p: an.solve_from_image(p, parity=5)),
    'bad setting forced': (InvalidSettingError,
                           lambda an, p: an.solve_from_image(p, force_image_upload=True,
                                                             tweak_order='x')),
    'inconsistent scale': (InvalidSettingError,
                           lambda an, p: an.solve_from_source_list(X, Y, 10, 10, scale_lower=3,
                                                                   scale_upper=1,
                                                                   scale_units='degwidth')),
    'ra_key only': (InvalidInputError, lambda an, p: an.solve_from_image(p, ra_key='RA')),
    'missing ra card': (InvalidInputError,
                        lambda an, p: an.solve_from_image(p, ra_key='RA', dec_key='DEC')),
    'bad fwhm': (InvalidInputError, lambda an, p: an.solve_from_image(p, fwhm=-2)),
    'xy lengths': (InvalidInputError,
                   lambda an, p: an.solve_from_source_list([1, 2, 3, 4], [1, 2, 3], 10, 10)),
    'xy nan': (InvalidInputError,
               lambda an, p: an.solve_from_source_list([1, 2, np.nan, 4], [1, 2, 3, 4], 10, 10)),
    'xy non-positive': (InvalidInputError,
                        lambda an, p: an.solve_from_source_list([0, -1, -2, -3], [1, 2, 3, 4], 10, 10)),
    'xy too few': (InvalidInputError, lambda an, p: an.solve_from_source_list([1], [1], 10, 10)),
    'width negative': (InvalidInputError, lambda an, p: an.solve_from_source_list(X, Y, -5, 10)),
    'width zero': (InvalidInputError, lambda an, p: an.solve_from_source_list(X, Y, 0, 10)),
    'width bool': (InvalidInputError, lambda an, p: an.solve_from_source_list(X, Y, True, 10)),
    'height fractional': (InvalidInputError,
                          lambda an, p: an.solve_from_source_list(X, Y, 10, 10.5)),
    'height str': (InvalidInputError, lambda an, p: an.solve_from_source_list(X, Y, 10, '10')),
    'width nan': (InvalidInputError, lambda an, p: an.solve_from_source_list(X, Y, np.nan, 10)),
    'url scheme': (InvalidInputError, lambda an, p: an.solve_from_url('ftp://example.org/a.fits')),
    'url not a url': (InvalidInputError, lambda an, p: an.solve_from_url('m42.fits')),
    'url too long': (InvalidInputError,
                     lambda an, p: an.solve_from_url('https://example.org/' + 'a' * 200)),
    'url type': (InvalidInputError, lambda an, p: an.solve_from_url(None)),
    'monitor bad id': (InvalidInputError, lambda an, p: an.monitor_submission('abc')),
    'bad kind': (InvalidInputError, lambda an, p: an.download(5001, 'kmz')),
    'bad job ref': (InvalidInputError, lambda an, p: an.get_calibration(Table())),
}


@pytest.mark.parametrize('case', sorted(BAD_CALLS))
def test_bad_inputs_fail_before_any_request(an, fake, tmp_path, case):
    error, call = BAD_CALLS[case]
    path = _image(tmp_path)
    with pytest.raises(error):
        call(an, path)
    assert fake.requests == []


@pytest.mark.parametrize('timeout', [0, -5, True, float('nan'), 'long'])
def test_bad_solve_timeout_fails_before_upload(an, fake, timeout, tmp_path):
    path = write_image(tmp_path / 'f.fits', np.arange(32 * 32.0).reshape(32, 32))
    calls = [lambda: an.solve_from_source_list(X, Y, 512, 480, solve_timeout=timeout, verbose=False),
             lambda: an.solve_from_image(path, force_image_upload=True, solve_timeout=timeout),
             lambda: an.solve_from_url('http://example.org/a.fits', solve_timeout=timeout),
             lambda: an.monitor_submission(1001, solve_timeout=timeout)]
    for call in calls:
        with pytest.raises(InvalidInputError, match='solve_timeout'):
            call()
    assert fake.requests == []


def test_bad_backend_name(fake, monkeypatch):
    with pytest.raises(InvalidSettingError) as info:
        AstrometryNetClass(api_key=API_KEY, server=SERVER, backend='cloud')
    assert isinstance(info.value, ValueError)
    assert info.value.setting == 'backend' and info.value.allowed == ('auto', 'nova', 'local')
    inst = attach(AstrometryNetClass(api_key=API_KEY, server=SERVER), fake)
    with conf.set_temp('backend', 'cloud'):
        with pytest.raises(InvalidSettingError, match='conf.backend'):
            inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert fake.requests == []


def test_backend_choice(fake):
    assert AstrometryNetClass(api_key=API_KEY).backend.name == 'nova'
    assert AstrometryNetClass(server=SERVER).backend.name == 'nova'
    assert AstrometryNetClass(api_key=API_KEY, server=SERVER, backend='nova').backend.name == 'nova'


# -- no secret leaks ------------------------------------------------------------------------------
def test_repr_has_no_secrets(an, fake):
    _solve_xy(an)
    session = fake.session_keys[0]
    for text in (repr(an), str(an.backend), repr(an.backend)):
        assert API_KEY not in text and session not in text
    assert 'api_key set' in repr(an)
    assert 'logged_in=True' in repr(an.backend)
    assert "api_key not set" in repr(AstrometryNetClass(server=SERVER))


def test_exceptions_have_no_secrets(fake, clock):
    inst = attach(AstrometryNetClass(api_key='wrongwrongwrongw', server=fake.base), fake)
    with pytest.raises(LoginError) as info:
        inst.submit_url('http://example.org/a.fits')
    assert 'wrongwrongwrongw' not in str(info.value) and 'wrongwrongwrongw' not in repr(info.value)
    inst = attach(AstrometryNetClass(api_key=API_KEY, server=fake.base), fake)
    fake.script = ['queued', 'solving', 'failure']
    with pytest.raises(SolveFailedError) as info:
        inst.solve_from_source_list(X, Y, 512, 480, verbose=False)
    for secret in [API_KEY] + fake.session_keys:
        assert secret not in str(info.value)


# -- through astroquery's real _request (requests session, cache, hooks) ----------------------------
@pytest.fixture
def real(fake, clock, tmp_path):
    """An instance whose real requests session is served by the fake server."""
    inst = AstrometryNetClass(api_key=fake.api_key, server=fake.base)
    fake.mount(inst)
    inst.cache_location = tmp_path / 'cache'
    yield inst
    inst.close()


@pytest.fixture
def debug_log():
    level = log.level
    log.setLevel('DEBUG')
    yield
    log.setLevel(level)


def test_cached_request_on_real_session(real, fake):
    # astroquery's to_cache deep-copies the response with its request hooks: the
    # hook must not drag the instance (and the NovaClient's lock) along.
    header = real.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert header['AN_JOBID'] == fake.submissions[1001]['job']
    assert list(real.cache_location.glob('*.pickle'))


def test_real_session_solve_and_cache_hits(real, fake):
    header = real.solve_from_source_list(X, Y, 512, 480, verbose=False)
    assert header['AN_SUBID'] == 1001 and header['CTYPE1'] == 'RA---TAN'
    jid = header['AN_JOBID']
    cal = real.get_calibration(header)
    assert cal.pixscale == 20 * u.arcsec / u.pix
    n = len(fake.requests)
    assert real.get_calibration(header).ra == 83.8 * u.deg        # from the cache
    assert real.download(header, 'wcs')[0].header['CRVAL1'] == 83.8
    assert len(fake.requests) == n
    assert fake.requests[-1].path == f'/api/jobs/{jid}/calibration'


def test_real_session_multipart_upload(real, fake, tmp_path):
    path = write_image(tmp_path / 'field.fits', np.arange(32 * 32.0).reshape(32, 32))
    real.submit_image(path, force_image_upload=True, scale=(10 * u.arcmin, 2 * u.deg))
    upload = fake.calls('^/api/upload$')[0]
    assert upload.headers['Content-Type'].startswith('multipart/form-data')
    assert upload.files == {'file': ('field.fits', path.read_bytes())}
    assert upload.json['session'] == fake.session_keys[0]
    assert upload.json['scale_units'] == 'degwidth'
    assert upload.json['scale_lower'] == pytest.approx(1 / 6)
    login = fake.calls('^/api/login$')[0]
    assert login.headers['Content-Type'] == 'application/x-www-form-urlencoded'
    assert login.json == {'apikey': API_KEY}


def test_real_session_errors_are_not_cached(real, fake):
    sid = fake.add_submission(['solving'])
    jid = fake.job_of(sid)
    with pytest.raises(ResultNotAvailableError):
        real.get_calibration(jid)
    with pytest.raises(ResultNotAvailableError):
        real.download(jid, 'wcs')
    assert list(real.cache_location.glob('*.pickle')) == []
    fake.submissions[sid]['script'].append('success')
    fake.advance(sid)
    assert real.get_calibration(jid).pixscale == 20 * u.arcsec / u.pix
    assert real.download(jid, 'wcs')[0].header['CTYPE2'] == 'DEC--TAN'


def test_objects_in_field_of_unsolved_job_not_cached(real, fake):
    sid = fake.add_submission(['solving'])
    jid = fake.job_of(sid)
    assert real.get_objects_in_field(jid) == []
    fake.submissions[sid]['script'].append('success')
    fake.advance(sid)
    assert real.get_objects_in_field(jid) == OBJECTS


def test_no_cookies_are_kept_or_sent(real, fake):
    assert fake.set_cookie
    real.solve_from_source_list(X, Y, 512, 480, verbose=False)
    real.download(fake.submissions[1001]['job'], 'corr')
    assert len(real._session.cookies) == 0
    for r in fake.requests:
        assert 'Cookie' not in r.headers
    gated = fake.calls('^/corr_file/')[0]
    assert gated.headers.get('Referer', '').startswith(SERVER) and gated.status == 200


def test_no_secrets_in_logs(real, fake, debug_log, caplog, tmp_path):
    path = write_image(tmp_path / 'field.fits', np.arange(32 * 32.0).reshape(32, 32))
    caplog.set_level('DEBUG')
    with log.log_to_list() as records:
        header = real.solve_from_source_list(X, Y, 512, 480, verbose=False)
        real.solve_from_image(path, force_image_upload=True, verbose=False)
        real.get_annotations(header)
        real.list_jobs()
        fake.expire_sessions()
        real.submit_url('http://example.org/a.fits')          # renewal logs in again
    secrets = [API_KEY] + fake.session_keys
    assert len(fake.session_keys) == 2
    messages = [r.getMessage() for r in records] + [r.getMessage() for r in caplog.records]
    assert any('/api/login' in m for m in messages)          # requests were logged ...
    assert any('<redacted>' in m for m in messages)
    for message in messages:                                 # ... without the secrets
        for secret in secrets:
            assert secret not in message
    for secret in secrets:
        assert secret not in caplog.text


def test_no_secrets_in_the_cache(real, fake):
    header = real.solve_from_source_list(X, Y, 512, 480, verbose=False, cache=True)
    real.get_calibration(header)
    real.get_annotations(header)
    real.get_objects_in_field(header)
    for kind in ('corr', 'new_fits', 'rdls'):
        real.download(header, kind)
    files = [f for f in real.cache_location.rglob('*') if f.is_file()]
    assert len(files) >= 7      # the HTTP answers and the solution
    secrets = [API_KEY.encode()] + [k.encode() for k in fake.session_keys]
    for f in files:
        content = f.read_bytes()
        for secret in secrets:
            assert secret not in content, f.name
    for secret in secrets:
        assert secret.decode() not in repr(real) and secret.decode() not in repr(real.backend)


# -- odds and ends ---------------------------------------------------------------------------------
def test_verbose_solve_shows_status_and_logs_source_count(an, fake, tmp_path, capsys):
    path = write_image(tmp_path / 'field.fits', render_stars((200, 220), grid_stars(6, 30, offset=20.0)))
    with log.log_to_list() as records:
        header = an.solve_from_image(path, verbose=True)
    assert header['AN_SUBID'] == 1001
    assert any('Found 36 sources in field.fits' in r.getMessage() for r in records)


def test_corrupt_jpeg_is_refused_and_a_real_one_is_extracted(an, fake, tmp_path):
    from PIL import Image as PILImage
    path = tmp_path / 'photo.jpg'
    path.write_bytes(b'\xff\xd8\xff\xe0\x00\x10JFIF' + bytes(200))
    for force in (False, True):
        with pytest.raises(InvalidInputError, match='photo.jpg is not a readable JPEG'):
            an.submit_image(path, force_image_upload=force)
    assert fake.requests == []
    pixels = render_stars((200, 220), grid_stars(6, 30, offset=20.0))
    good = tmp_path / 'stars.png'
    PILImage.fromarray(np.clip(pixels / pixels.max() * 255, 0, 255).astype(np.uint8)).save(good)
    an.submit_image(good)                   # sources extracted here, a list uploaded
    assert 'x' in fake.calls('^/api/upload$')[0].json
    an.submit_image(good, force_image_upload=True)
    upload = fake.calls('^/api/upload$')[1]
    assert upload.files['file'] == ('stars.png', good.read_bytes())


def test_submit_image_accepts_str_paths(an, fake, tmp_path):
    path = write_image(tmp_path / 'f.fits', np.arange(32 * 32.0).reshape(32, 32))
    an.submit_image(str(path), force_image_upload=True)
    assert fake.calls('^/api/upload$')[0].files['file'][0] == 'f.fits'
