"""The nova wire format: URLs, request encoding, response decoding, redaction."""
import json
from urllib.parse import urlencode

import pytest

from astrometry_query.exceptions import JobNotFoundError, ServerError
from astrometry_query.jobs import DOWNLOAD_KINDS, RESULT_KINDS
from astrometry_query.nova.protocol import (ERRORS, JOB_STATUSES,
                                            api_url, decode_response, encode_request, file_url,
                                            is_session_error, redact, site_url)

from nova_mock import CSRF_PAGE, HOME_PAGE, _html_404, _html_500

#: nova's routes of the result files a client downloads (from nova's urls.py).
NOVA_ROUTES = {'wcs': 'wcs_file', 'new_fits': 'new_fits_file', 'rdls': 'rdls_file',
               'axy': 'axy_file', 'corr': 'corr_file', 'image_rd': 'image_rd_file',
               'annotated': 'annotated_full'}


BASES = ['http://nova.test', 'http://nova.test/', 'http://nova.test/api', 'http://nova.test/api/',
         'http://nova.test//', 'http://nova.test/api//']


# -- URLs -----------------------------------------------------------------------------
@pytest.mark.parametrize('base', BASES)
def test_api_url_never_doubles_slashes(base):
    assert api_url(base, 'login') == 'http://nova.test/api/login'
    assert api_url(base, 'jobs', 12, 'info') == 'http://nova.test/api/jobs/12/info'
    assert api_url(base, '/submissions/', '/7/') == 'http://nova.test/api/submissions/7'
    assert api_url(base, '') == 'http://nova.test/api/'
    for url in (api_url(base, 'login'), api_url(base, '/jobs/', 3)):
        assert '//' not in url.split('://', 1)[1]


@pytest.mark.parametrize('base', ['http://nova.test//api/', 'http://nova.test//api//'])
def test_api_url_collapses_doubled_slash_inside_base(base):
    assert api_url(base, 'login') == 'http://nova.test/api/login'


def test_api_url_keeps_a_path_prefix():
    assert api_url('https://example.org/nova/', 'login') == 'https://example.org/nova/api/login'
    assert api_url('https://example.org/nova/api/', 'myjobs') == 'https://example.org/nova/api/myjobs'


@pytest.mark.parametrize('base', BASES[:4])
def test_site_url(base):
    assert site_url(base) == 'http://nova.test'


@pytest.mark.parametrize('base', BASES[:4])
@pytest.mark.parametrize('kind,route', sorted(NOVA_ROUTES.items()))
def test_file_url(base, kind, route):
    assert file_url(base, kind, 77) == f'http://nova.test/{route}/77'
    assert file_url(base, kind, '77') == f'http://nova.test/{route}/77'


def test_file_routes_are_novas():
    """The one table of result kinds gives nova's routes and gates."""
    assert set(DOWNLOAD_KINDS) == set(NOVA_ROUTES)
    assert {k: RESULT_KINDS[k].routes[0] for k in DOWNLOAD_KINDS} == NOVA_ROUTES
    assert {k for k in DOWNLOAD_KINDS if RESULT_KINDS[k].gated} == {'new_fits', 'corr', 'annotated'}
    assert JOB_STATUSES == ('processing', 'solving', 'success', 'failure', '?')


def test_file_url_unknown_kind():
    with pytest.raises(KeyError):
        file_url('http://nova.test', 'kmz', 1)


# -- request encoding ----------------------------------------------------------------
def test_encode_request_is_one_form_field():
    args = {'session': 'abc', 'x': [1.0, 2.5], 'publicly_visible': 'n'}
    form = encode_request(args)
    assert list(form) == ['request-json']
    assert json.loads(form['request-json']) == args


def test_error_strings_are_novas():
    assert ERRORS['unknown_session'].format(key='k') == 'no session with key "k"'
    assert ERRORS['not_authenticated'] == 'user is not authenticated.'
    assert ERRORS['bad_apikey'] == 'bad apikey'
    assert ERRORS['no_json'] == 'no json'
    assert ERRORS['no_calibration'].format(job_id=5) == 'no calibration data available for job 5'


@pytest.mark.parametrize('message,expected', [
    ('no session with key "abc"', True), ('user is not authenticated.', True),
    ('no "session" in JSON.', True), ('The server said: no session with key "x"', True),
    ('bad apikey', False), ('no json', False), ('', False), (None, False)])
def test_is_session_error(message, expected):
    assert is_session_error(message) is expected


# -- decoding --------------------------------------------------------------------------
def test_decode_success():
    text = json.dumps({'status': 'success', 'subid': 12, 'hash': 'ab'})
    assert decode_response(200, text, url='u') == {'status': 'success', 'subid': 12, 'hash': 'ab'}


def test_decode_submission_without_status_key():
    payload = {'user': 1, 'processing_started': 'None', 'processing_finished': 'None',
               'user_images': [], 'images': [], 'jobs': [None], 'job_calibrations': []}
    assert decode_response(200, json.dumps(payload)) == payload


def test_decode_error_payload():
    text = json.dumps({'status': 'error', 'errormessage': 'bad apikey'})
    with pytest.raises(ServerError) as info:
        decode_response(200, text, url='http://nova.test/api/login', submission_id=3)
    err = info.value
    assert not isinstance(err, JobNotFoundError)
    assert 'bad apikey' in err.message
    assert err.status_code == 200
    assert err.url == 'http://nova.test/api/login'
    assert err.submission_id == 3


def test_decode_calibration_error_shape_is_returned():
    # {"error": ...} has no status key: the caller decides (ResultNotAvailableError)
    text = json.dumps({'error': 'no calibration data available for job 5'})
    assert decode_response(200, text) == {'error': 'no calibration data available for job 5'}


def test_decode_html_404_is_job_not_found():
    with pytest.raises(JobNotFoundError) as info:
        decode_response(404, _html_404('/api/jobs/99'), url='http://nova.test/api/jobs/99', job_id=99)
    err = info.value
    assert isinstance(err, ServerError)
    assert err.status_code == 404 and err.job_id == 99
    assert 'job 99' in err.message and 'HTTP 404' in err.message


def test_decode_html_404_for_a_submission():
    with pytest.raises(JobNotFoundError) as info:
        decode_response(404, _html_404('/api/submissions/9'), submission_id=9)
    assert 'submission 9' in info.value.message
    assert info.value.submission_id == 9


def test_decode_html_500():
    with pytest.raises(ServerError) as info:
        decode_response(500, _html_500('ValueError'), url='http://nova.test/api/jobs/1-2')
    err = info.value
    assert not isinstance(err, JobNotFoundError)
    assert err.status_code == 500
    assert 'HTTP 500' in err.message and 'ValueError (500)' in err.message
    assert '<html' not in err.message


def test_decode_csrf_403():
    with pytest.raises(ServerError) as info:
        decode_response(403, CSRF_PAGE, url='http://nova.test/api/logout')
    assert info.value.status_code == 403
    assert '403 Forbidden' in info.value.message


def test_decode_home_page_with_200():
    with pytest.raises(ServerError) as info:
        decode_response(200, HOME_PAGE, url='http://nova.test/api/foo')
    err = info.value
    assert err.status_code == 200
    assert 'HTML page' in err.message and 'Astrometry.net' in err.message
    assert 'server URL' in err.message


@pytest.mark.parametrize('text', ['[1, 2, 3]', '"success"', '42', 'null'])
def test_decode_non_dict_json(text):
    with pytest.raises(ServerError, match='Unexpected answer'):
        decode_response(200, text, url='u')


def test_decode_plain_text_200():
    with pytest.raises(ServerError, match='not JSON'):
        decode_response(200, 'KMZ requests are off for now.', url='u')


@pytest.mark.parametrize('status', [400, 502, 503])
def test_decode_other_error_statuses(status):
    with pytest.raises(ServerError) as info:
        decode_response(status, '<html><head><title>Bad Gateway</title></head></html>', url='u')
    assert info.value.status_code == status
    assert 'Bad Gateway' in info.value.message


# -- redaction ---------------------------------------------------------------------------
KEY = 'qzxwvutsrponmlkj'
SESSION = 'ab12cd34ef56gh78ij90kl12mn34op56'


def test_redact_urlencoded_login():
    body = urlencode(encode_request({'apikey': KEY}))
    out = redact(body)
    assert KEY not in out
    assert '"apikey": "<redacted>"' in out


def test_redact_urlencoded_upload_keeps_the_rest():
    body = urlencode(encode_request({'session': SESSION, 'scale_units': 'degwidth', 'x': [1.5]}))
    out = redact(body)
    assert SESSION not in out
    assert '"session": "<redacted>"' in out
    assert 'degwidth' in out and '1.5' in out


def test_redact_bytes_and_other_fields():
    body = ('foo=1&' + urlencode(encode_request({'session': SESSION}))).encode()
    out = redact(body)
    assert SESSION not in out and isinstance(out, str)


@pytest.mark.parametrize('text', [json.dumps({'apikey': KEY, 'session': SESSION}),
                                  '{"apikey":"%s","session" : "%s"}' % (KEY, SESSION)])
def test_redact_json(text):
    out = redact(text)
    assert KEY not in out and SESSION not in out
    assert out.count('<redacted>') == 2


def test_redact_nothing_secret():
    assert redact('') == ''
    assert redact(None) is None
    assert redact('{"status": "success"}') == '{"status": "success"}'


# -- the fake server used by the client tests speaks nova's dialect ------------------------
from nova_mock import API_KEY, SERVER, FakeNova  # noqa: E402


def _call(fake, method, path, args=None, **kwargs):
    data = encode_request(args) if args is not None else kwargs.pop('data', None)
    return fake.request(method, SERVER + path, data=data, **kwargs)


def test_fake_nova_prechecks():
    fake = FakeNova()
    assert json.loads(_call(fake, 'POST', '/api/upload').text) == {'status': 'error',
                                                                   'errormessage': 'no json'}
    r = _call(fake, 'POST', '/api/upload', data={'request-json': '{oops'})
    assert json.loads(r.text)['errormessage'] == 'failed to parse JSON: "{oops"'
    r = _call(fake, 'POST', '/api/upload', {'x': [1]})
    assert json.loads(r.text)['errormessage'] == 'no "session" in JSON.'
    r = _call(fake, 'POST', '/api/upload', {'session': 'zzz'})
    assert json.loads(r.text)['errormessage'] == 'no session with key "zzz"'
    r = _call(fake, 'POST', '/api/login', {'apikey': 'nope'})
    assert (r.status_code, json.loads(r.text)) == (200, {'status': 'error',
                                                         'errormessage': 'bad apikey'})
    assert r.headers['Content-Type'] == 'text/plain'
    r = _call(fake, 'POST', '/api/login', {})
    assert json.loads(r.text)['errormessage'] == 'need "apikey"'
    r = _call(fake, 'POST', '/api/login', {'apikey': API_KEY})
    session = json.loads(r.text)['session']
    assert len(session) == 32 and 'NovaAstrometrySession=' + session in r.headers['Set-Cookie']
    fake.expire_sessions('unauthenticated')
    r = _call(fake, 'POST', '/api/myjobs', {'session': session})
    assert json.loads(r.text)['errormessage'] == 'user is not authenticated.'
    r = _call(fake, 'POST', '/api/submission_images', {'session': session, 'subid': 1})
    assert json.loads(r.text)['errormessage'] == 'submission does not exist'


def test_fake_nova_non_json_outcomes():
    fake = FakeNova()
    r = _call(fake, 'GET', '/api/submissions/77')
    assert r.status_code == 404 and '<title>Page not found' in r.text
    assert _call(fake, 'GET', '/api/jobs/1-2').status_code == 500
    r = _call(fake, 'GET', '/api/logout')
    assert r.status_code == 200 and '<title>Astrometry.net</title>' in r.text
    assert _call(fake, 'POST', '/api/logout').status_code == 403
    assert _call(fake, 'POST', '//api/login', {'apikey': API_KEY}).status_code == 403
    r = _call(fake, 'GET', '/kml_file/5')
    assert r.text.startswith('KMZ requests are off')


def test_fake_nova_lifecycle_and_files():
    fake = FakeNova()
    sid = fake.add_submission(['queued', 'waiting', 'solving', 'solving', 'success'])
    first = json.loads(_call(fake, 'GET', f'/api/submissions/{sid}').text)
    assert 'status' not in first and 'error_message' not in first
    assert first['processing_started'] == 'None' and first['jobs'] == []
    second = json.loads(_call(fake, 'GET', f'/api/submissions/{sid}').text)
    assert second['jobs'] == [None] and second['user_images']
    third = json.loads(_call(fake, 'GET', f'/api/submissions/{sid}').text)
    jid = third['jobs'][0]
    assert isinstance(jid, int) and third['job_calibrations'] == []
    assert json.loads(_call(fake, 'GET', f'/api/jobs/{jid}/calibration').text) == {
        'error': f'no calibration data available for job {jid}'}
    assert _call(fake, 'GET', f'/wcs_file/{jid}').status_code == 500
    assert json.loads(_call(fake, 'GET', f'/api/jobs/{jid}').text) == {'status': 'solving'}
    assert json.loads(_call(fake, 'GET', f'/api/jobs/{jid}').text) == {'status': 'success'}
    assert json.loads(_call(fake, 'GET', f'/api/jobs/{jid}/calibration').text)['pixscale'] == 20.0
    r = _call(fake, 'GET', f'/corr_file/{jid}')
    assert r.status_code == 302 and r.headers['Location'] == f'/ask_human?next=/corr_file/{jid}'
    r = _call(fake, 'GET', f'/corr_file/{jid}', headers={'Referer': SERVER})
    assert r.status_code == 200 and r.content.startswith(b'SIMPLE')
    assert _call(fake, 'GET', f'/wcs_file/{jid}').content.startswith(b'SIMPLE')
    assert [r.method for r in fake.requests][:3] == ['GET'] * 3


@pytest.mark.parametrize('server, public', [
    ('https://nova.astrometry.net', True), ('http://nova.astrometry.net/api/', True),
    ('https://NOVA.astrometry.net:443/', True), ('http://127.0.0.1:8080', False),
    ('https://nova.astrometry.net.example.org', False), ('https://astrometry.net', False)])
def test_is_public_nova(server, public):
    from astrometry_query.nova.protocol import is_public_nova
    assert is_public_nova(server) is public
