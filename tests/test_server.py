"""The nova-compatible server, over real HTTP on 127.0.0.1, with real solves.

Each test talks to the server the way a nova client does and checks what a
client can see: JSON shapes and key order, error strings, HTTP status codes,
Content-Type, and the quirks of nova-protocol.md.
"""
import gzip
import hashlib
import io
import json
import logging
import math
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tarfile
import threading
import time
import warnings
import zlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astrometry_query.nova.protocol import ERRORS, LONG_POLL_HEADER
from astrometry_query.server import ServerThread, check_bind
from astrometry_query.server.ingest import source_list_bytes
from astrometry_query.urls import url_problem
from real_server import requires_solver

pytestmark = requires_solver

INDEX = '/usr/share/astrometry/index-tycho2-10.littleendian.fits'
SCALE = 12.0     # arcsec/pixel of the synthetic field
HINTS = {'scale_units': 'arcsecperpix', 'scale_type': 'ul', 'scale_lower': 10.0,
         'scale_upper': 14.0}
JOB_KEYS = ['objects_in_field', 'machine_tags', 'tags', 'status', 'original_filename']
SUB_KEYS = ['user', 'processing_started', 'processing_finished', 'user_images', 'images',
            'jobs', 'job_calibrations']
CAL_KEYS = ['ra', 'dec', 'width_arcsec', 'height_arcsec', 'radius', 'pixscale', 'orientation',
            'parity']


# -- helpers ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def field():
    """Tycho-2 stars around Orion projected on a 1000x1000 TAN image, brightest first."""
    out = subprocess.run(['query-starkd', '-r', '83.8', '-d', '-5.4', '-R', '1.5', '-T', INDEX],
                         capture_output=True, text=True, check=True).stdout
    rows = [[float(v) for v in line.split(',')] for line in out.splitlines()
            if re.match(r'^\s*[-\d.]+\s*,\s*[-\d.]+\s*,\s*[-\d.]+\s*$', line)]
    ra, dec, mag = np.array(rows).T
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    wcs.wcs.crval, wcs.wcs.crpix = [83.8, -5.4], [500.5, 500.5]
    wcs.wcs.cd = np.array([[-1.0, 0.0], [0.0, 1.0]]) * SCALE / 3600.0
    x, y = wcs.all_world2pix(ra, dec, 1)
    inside = (x > 0.5) & (x < 1000.5) & (y > 0.5) & (y < 1000.5)
    order = np.argsort(mag[inside])
    x, y = x[inside][order], y[inside][order]
    assert len(x) > 20
    return SimpleNamespace(x=[float(v) for v in x], y=[float(v) for v in y], wcs=wcs,
                           width=1000, height=1000)


def exact_json(reply):
    """The reply's JSON, checked to be json.dumps-default text served as text/plain."""
    assert reply.status_code == 200, reply.text[:300]
    assert reply.headers['content-type'] == 'text/plain'
    data = json.loads(reply.text)
    assert reply.text == json.dumps(data)        # separators, key order, \\u escapes
    return data


def wait(predicate, timeout=60.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out waiting')


def finished_submission(server, sub_id, timeout=90.0):
    """The submission status once it failed or all its jobs ended."""
    def done():
        sub = exact_json(requests.get(f'{server.api_url}submissions/{sub_id}'))
        if sub['processing_finished'] == 'None':
            return None
        if 'error_message' in sub:
            return sub
        if not sub['jobs'] or None in sub['jobs']:
            return None
        states = [requests.get(f'{server.api_url}jobs/{j}').json()['status'] for j in sub['jobs']]
        if not all(s in ('success', 'failure') for s in states):
            return None
        # Read again: job_calibrations may have changed since the first read.
        return exact_json(requests.get(f'{server.api_url}submissions/{sub_id}'))
    return wait(done, timeout)


def submit_xy(server, session, x, y, **args):
    reply = server.call('upload', dict(session=session, x=list(x), y=list(y), **args))
    return exact_json(reply)


def is_html(reply, status):
    return reply.status_code == status and reply.headers['content-type'].startswith('text/html')


def api_error(reply):
    """nova's JSON error (HTTP 200): where nova itself crashes with an HTML 500,
    this server says what is wrong in the payload every nova client reads."""
    data = exact_json(reply)
    assert data['status'] == 'error', data
    return data['errormessage']


def png_bytes(width, height):
    """A tiny grey PNG, written by hand (no PIL here)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    raw = b''.join(b'\x00' + bytes([40] * width) for _ in range(height))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0,
                                                              0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


@pytest.fixture(scope='module')
def session(nova_server):
    return nova_server.login()


@pytest.fixture(scope='module')
def solved(nova_server, session, field):
    """One x/y submission solved through the server."""
    reply = submit_xy(nova_server, session, field.x, field.y, **HINTS)
    sub = finished_submission(nova_server, reply['subid'])
    return SimpleNamespace(upload=reply, sub=sub, job=sub['jobs'][0])


@pytest.fixture(scope='module')
def file_server(tmp_path_factory):
    """A second loopback HTTP server for url_upload."""
    root = tmp_path_factory.mktemp('www')
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), partial(SimpleHTTPRequestHandler,
                                                          directory=str(root)))
    httpd.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield SimpleNamespace(root=root, url=f'http://127.0.0.1:{httpd.server_address[1]}')
    httpd.shutdown()


# -- login, sessions and the request-json pre-checks --------------------------------------
def test_login_shape_cookies_and_errors(nova_server):
    reply = nova_server.call('login', {'apikey': nova_server.api_key})
    data = exact_json(reply)
    assert list(data) == ['status', 'message', 'session']
    assert data['status'] == 'success' and data['message'].startswith('authenticated user: ')
    assert re.fullmatch('[a-z0-9]{32}', data['session'])
    assert reply.cookies['NovaAstrometrySession'] == data['session']
    assert 'csrftoken' in reply.cookies
    for args, message in [({}, ERRORS['need_apikey']), ({'apikey': None}, ERRORS['need_apikey']),
                          ({'apikey': 'wrongwrongwrongw'}, ERRORS['bad_apikey']),
                          ({'apikey': ''}, ERRORS['bad_apikey'])]:
        assert exact_json(nova_server.call('login', args)) == {'status': 'error',
                                                               'errormessage': message}


@pytest.mark.parametrize('path', ['login', 'upload', 'url_upload', 'myjobs', 'submission_images',
                                  'sdss_image_for_wcs', 'galex_image_for_wcs'])
def test_json_prechecks(nova_server, path):
    url = nova_server.api_url + path

    def error(reply):
        data = exact_json(reply)
        assert list(data) == ['status', 'errormessage'] and data['status'] == 'error'
        return data['errormessage']
    no_json = ERRORS['no_json']
    assert error(requests.post(url)) == no_json
    assert error(requests.get(url, params={'request-json': '{"apikey": "x"}'})) == no_json
    assert error(requests.post(url, json={'apikey': 'x'})) == no_json
    assert error(requests.post(url, data={'request-json': ''})) == no_json
    for raw in ['{not json', 'null']:
        assert error(requests.post(url, data={'request-json': raw})) == \
            ERRORS['bad_json'].format(raw=raw)
    assert api_error(requests.post(url, data={'request-json': '[1, 2]'})) == \
        'request-json must be a JSON object, got a list'
    if path == 'login':
        return
    assert error(nova_server.call(path, {})) == ERRORS['no_session']
    assert error(nova_server.call(path, {'session': 'nosuchkey'})) == \
        ERRORS['unknown_session'].format(key='nosuchkey')


def test_sliding_and_expired_sessions(nova_server):
    key = nova_server.login()
    db = sqlite3.connect(nova_server.data_dir / 'nova.sqlite3')
    stored = hashlib.sha256(key.encode()).hexdigest()     # only hashes are stored
    assert db.execute('SELECT count(*) FROM sessions WHERE key = ?', (key,)).fetchone()[0] == 0
    expiry = lambda: db.execute('SELECT expires FROM sessions WHERE key = ?',  # noqa: E731
                                (stored,)).fetchone()[0]
    before = expiry()
    time.sleep(0.05)
    exact_json(nova_server.call('myjobs', {'session': key}))
    assert expiry() > before            # each call pushes expiry to now + 14 days
    with db:
        db.execute('UPDATE sessions SET expires = 0 WHERE key = ?', (stored,))
    for path in ('upload', 'url_upload', 'myjobs'):
        assert exact_json(nova_server.call(path, {'session': key}))['errormessage'] == \
            ERRORS['not_authenticated']
    # submission_images needs a session, not a login: it goes on to its own check.
    assert exact_json(nova_server.call('submission_images', {'session': key}))['errormessage'] \
        == ERRORS['no_submission']
    db.close()


def test_upload_argument_errors(nova_server, session):
    call = partial(nova_server.call, 'upload')
    assert exact_json(call({'session': session, 'x': ['a'], 'y': [1]}))['errormessage'] == \
        ERRORS['bad_xy']
    assert exact_json(call({'session': session, 'x': 5, 'y': [1]}))['errormessage'] == \
        ERRORS['bad_xy']
    assert exact_json(call({'session': session, 'x': [1, 2], 'y': [1]}))['errormessage'] == \
        ERRORS['xy_length']
    assert exact_json(nova_server.call('url_upload', {'session': session, 'url': 'http://x/a',
                                                      'album': 'Holiday'}))['errormessage'] \
        == ERRORS['no_album'].format(album='Holiday')
    # nova answers success and fails later: here the upload is refused at once.
    assert 'no file' in api_error(call({'session': session}))
    first = exact_json(call({'session': session, 'x': [1, 2], 'y': [1, 2]}))['subid']
    # nova's casts are uncaught (HTTP 500): here a JSON error naming the argument, and
    # no submission; values nova casts but no solve could use are refused too.
    for bad, name in [({'scale_lower': 'abc'}, 'scale_lower'), ({'scale_upper': None}, 'scale_upper'),
                      ({'downsample_factor': '2.5'}, 'downsample_factor'),
                      ({'image_width': 'wide'}, 'image_width'), ({'image_width': -5}, 'image_width'),
                      ({'parity': 'x'}, 'parity'), ({'parity': 7}, 'parity'),
                      ({'center_ra': [1, 2]}, 'center_ra'), ({'scale_units': 'deg'}, 'scale_units'),
                      ({'tweak_order': 99}, 'tweak_order')]:
        assert api_error(call({'session': session, 'x': [1], 'y': [1], **bad})).startswith(name)
    assert 'finite' in api_error(call({'session': session, 'x': [1, float('nan')], 'y': [1, 2]}))
    long_url = 'http://a/' + 'b' * 200
    assert '200 characters' in api_error(nova_server.call('url_upload', {'session': session,
                                                                          'url': long_url}))
    for url in ('ftp://a/b.fits', 'http://', None, 'http://exa mple.com/a.fits'):
        assert api_error(nova_server.call('url_upload', {'session': session, 'url': url}))
    assert exact_json(call({'session': session, 'x': [1, 2], 'y': [1, 2]}))['subid'] == first + 1


def test_url_upload_refuses_what_the_client_refuses(nova_server, session):
    """One URL check: the server's url_upload error is the client's message, for every rule."""
    for url in ('ftp://a/b.fits', 'http://', None, '', 'http://exa mple.com/a.fits',
                'http://example.com:abc/a.fits', 'http://example.com/a\x7f', 'http://a/' + 'b' * 200):
        assert api_error(nova_server.call('url_upload', {'session': session, 'url': url})) == \
            url_problem(url), url


def test_answers_offer_long_polls(nova_server, session):
    """Every JSON answer carries the long-poll offer the client reads (one header name)."""
    info = exact_json(requests.get(nova_server.api_url + 'server_info', timeout=10))
    sub = exact_json(nova_server.call('upload', {'session': session, 'x': [1, 2], 'y': [1, 2]}))
    reply = requests.get(f"{nova_server.api_url}submissions/{sub['subid']}?wait=0.1", timeout=10)
    assert float(reply.headers[LONG_POLL_HEADER]) == info['long_poll'] == 30
    error = nova_server.call('login', {})
    assert api_error(error) and error.headers[LONG_POLL_HEADER] == '30'


# -- solving ----------------------------------------------------------------------------
def test_solved_submission_and_job_endpoints(nova_server, solved, field):
    assert list(solved.upload) == ['status', 'subid', 'hash']
    assert solved.upload['hash'] == hashlib.sha1(source_list_bytes(field.x, field.y)).hexdigest()
    sub, job = solved.sub, solved.job
    assert list(sub) == SUB_KEYS and sub['jobs'] == [job] and len(sub['user_images']) == 1
    assert re.fullmatch(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?', sub['processing_finished'])
    assert sub['job_calibrations'] == [[job, sub['job_calibrations'][0][1]]]
    api = f'{nova_server.api_url}jobs/{job}'
    assert exact_json(requests.post(api, data={'ignored': 1})) == {'status': 'success'}
    cal = exact_json(requests.get(api + '/calibration/'))
    assert list(cal) == CAL_KEYS and all(isinstance(v, float) for v in cal.values())
    # Not given image_width/height: the size is ceil(max x), ceil(max y), as on nova.
    w, h = math.ceil(max(field.x)), math.ceil(max(field.y))
    ra, dec = field.wcs.all_pix2world([[0.5 + 0.5 * w, 0.5 + 0.5 * h]], 1)[0]
    assert cal['ra'] == pytest.approx(ra, abs=2e-3) and cal['dec'] == pytest.approx(dec, abs=2e-3)
    assert cal['pixscale'] == pytest.approx(SCALE, rel=5e-3) and cal['parity'] == -1.0
    assert abs(cal['orientation']) < 0.5
    assert cal['width_arcsec'] == pytest.approx(w * cal['pixscale'])
    objects = exact_json(requests.get(api + '/objects_in_field'))
    assert list(objects) == ['objects_in_field'] and objects['objects_in_field']
    machine = exact_json(requests.get(api + '/machine_tags'))['tags']
    assert machine == objects['objects_in_field']
    assert exact_json(requests.post(api + '/tags'))['tags'] == machine
    info = exact_json(requests.get(api + '/info'))
    # nova's keys in nova's order; ours (the equivalent solve-field command) after them
    assert list(info) == JOB_KEYS + ['calibration', 'command_line']
    assert info['command_line'].startswith('solve-field --overwrite --no-plots ')
    assert info['original_filename'] == 'json-xy' and info['status'] == 'success'
    assert list(info['calibration']) == ['ra', 'dec', 'radius', 'pixscale', 'orientation',
                                         'parity']
    annotations = exact_json(requests.get(api + '/annotations'))['annotations']
    assert annotations and all({'type', 'names', 'pixelx', 'pixely', 'radius'} <= set(a)
                               for a in annotations)
    few = exact_json(requests.get(api + '/annotations', params={'nbright': 1}))['annotations']
    assert sum(a['type'] == 'bright' for a in few) <= 1
    assert api_error(requests.get(api + '/annotations', params={'nbright': 'many'}))


def test_result_files_and_referer_gate(nova_server, solved):
    job, url = solved.job, nova_server.url
    referer = {'Referer': nova_server.api_url}
    for route, name in [('wcs_file', 'wcs.fits'), ('rdls_file', 'rdls.fits'),
                        ('axy_file', 'axy.fits'), ('image_rd_file', 'image-radec.fits')]:
        reply = requests.get(f'{url}/{route}/{job}')          # not gated
        assert reply.status_code == 200 and reply.headers['content-type'] == 'application/fits'
        assert reply.headers['content-disposition'] == f'attachment; filename={name}'
        assert reply.content.startswith(b'SIMPLE  =')
    header = fits.Header.fromstring(requests.get(f'{url}/wcs_file/{job}/').text)
    assert header['CTYPE1'].startswith('RA---TAN')
    for route in ('corr_file', 'annotated_display', 'annotated_full', 'new_fits_file',
                  'extraction_image_display', 'extraction_image_full'):
        reply = requests.get(f'{url}/{route}/{job}', allow_redirects=False)
        assert reply.status_code == 302
        assert reply.headers['location'] == f'/ask_human?next=/{route}/{job}'
    corr = requests.get(f'{url}/corr_file/{job}', headers=referer)
    assert corr.status_code == 200 and corr.content.startswith(b'SIMPLE  =')
    picture = requests.get(f'{url}/annotated_full/{job}', headers=referer)
    assert picture.headers['content-type'] in ('image/png', 'image/jpeg')
    # A source list's extraction image: its sources circled on a black canvas of its size.
    from PIL import Image
    extraction = requests.get(f'{url}/extraction_image_full/{job}', headers=referer)
    assert extraction.status_code == 200 and extraction.headers['content-type'] == 'image/png'
    drawn = np.asarray(Image.open(io.BytesIO(extraction.content)).convert('RGB'))
    axy = fits.getheader(io.BytesIO(requests.get(f'{url}/axy_file/{job}').content))
    assert drawn.shape == (axy['IMAGEH'], axy['IMAGEW'], 3)
    ring = np.all(drawn == (255, 48, 48), axis=2)
    assert ring.sum() > 100 and not drawn[~ring].any()
    # The login cookie marks a human too.
    browser = requests.Session()
    browser.post(nova_server.api_url + 'login',
                 data={'request-json': json.dumps({'apikey': nova_server.api_key})})
    assert browser.get(f'{url}/corr_file/{job}', allow_redirects=False).status_code == 200
    # A source list has no image to put the WCS into: nova's 500 for a missing file.
    assert is_html(requests.get(f'{url}/new_fits_file/{job}', headers=referer), 500)
    assert requests.get(f'{url}/joblog/{job}').headers['content-type'].startswith('text/plain')
    assert 'status success' in requests.get(f'{url}/joblog2/{job}').text
    assert requests.get(f'{url}/kml_file/{job}/').text.startswith('KMZ requests are off')
    assert is_html(requests.get(f'{url}/ask_human', params={'next': '/x'}), 200)


def test_official_client_multipart_layout(nova_server, session, field):
    """client.py's body: LF after boundary lines, CRLF part headers, quoted
    boundary, 'Content-disposition', the full local path as filename."""
    data = ''.join(f'{x:.3f} {y:.3f}\n' for x, y in zip(field.x, field.y)).encode()
    args = dict(session=session, image_width=1000, image_height=1000, **HINTS)
    boundary = '===============' + '1234567890123456789' + '=='
    body = (f'--{boundary}\n'.encode()
            + b'Content-Type: text/plain\r\nMIME-Version: 1.0\r\n'
            + b'Content-disposition: form-data; name="request-json"\r\n\r\n'
            + json.dumps(args).encode() + b'\n'
            + f'--{boundary}\n'.encode()
            + b'Content-Type: application/octet-stream\r\nMIME-Version: 1.0\r\n'
            + b'Content-disposition: form-data; name="file"; '
            + b'filename="/home/observer/night 1/orion.xy.txt"\r\n\r\n'
            + data + b'\n' + f'--{boundary}--\n'.encode())
    reply = exact_json(requests.post(nova_server.api_url + 'upload', data=body, headers={
        'Content-Type': f'multipart/form-data; boundary="{boundary}"'}))
    assert reply['status'] == 'success' and reply['hash'] == hashlib.sha1(data).hexdigest()
    sub = finished_submission(nova_server, reply['subid'])
    info = exact_json(requests.get(f"{nova_server.api_url}jobs/{sub['jobs'][0]}/info"))
    assert info['original_filename'] == 'orion.xy.txt' and info['status'] == 'success'
    # The image's size, as given: the calibration is the whole image's (nova would
    # use ceil(max x) and ceil(max y), a smaller field with another centre).
    cal = exact_json(requests.get(f"{nova_server.api_url}jobs/{sub['jobs'][0]}/calibration"))
    assert math.ceil(max(field.x)) < 1000
    assert cal['width_arcsec'] == pytest.approx(1000 * cal['pixscale'], rel=1e-9)
    assert cal['height_arcsec'] == pytest.approx(1000 * cal['pixscale'], rel=1e-9)
    assert [cal['ra'], cal['dec']] == pytest.approx([83.8, -5.4], abs=1 / 3600)


@pytest.mark.slow
def test_tar_gz_of_source_lists(nova_server, session, field):
    table = fits.BinTableHDU.from_columns([fits.Column('x', 'D', array=np.array(field.x)),
                                           fits.Column('y', 'D', array=np.array(field.y))])
    members = {'a/first.fits': _fits_bytes(table), 'second.txt': ''.join(
        f'{x} {y}\n' for x, y in zip(field.x, field.y)).encode()}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        for name, content in members.items():
            item = tarfile.TarInfo(name)
            item.size = len(content)
            tar.addfile(item, io.BytesIO(content))
    payload = gzip.compress(buf.getvalue())
    reply = exact_json(requests.post(nova_server.api_url + 'upload', files={
        'request-json': (None, json.dumps(dict(session=session, **HINTS))),
        'file': ('lists.tar.gz', payload)}))
    assert reply['hash'] == hashlib.sha1(payload).hexdigest()
    sub = finished_submission(nova_server, reply['subid'])
    assert len(sub['user_images']) == len(sub['jobs']) == len(sub['job_calibrations']) == 2
    names = [requests.get(f'{nova_server.api_url}jobs/{j}/info').json()['original_filename']
             for j in sub['jobs']]
    assert names == list(members)
    images = exact_json(nova_server.call('submission_images', {'session': session,
                                                                'subid': reply['subid']}))
    assert images == {'status': 'success', 'image_ids': sub['user_images']}


def _fits_bytes(*hdus):
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), *hdus]).writeto(buf)
    return buf.getvalue()


def test_images_failures_and_bad_inputs(nova_server, session):
    post = partial(requests.post, nova_server.api_url + 'upload')
    form = {'request-json': (None, json.dumps(dict(session=session, **HINTS)))}
    rng = np.random.default_rng(1)
    image = fits.PrimaryHDU(rng.normal(100, 5, (64, 80)).astype(np.float32))
    subs = {
        'fits': exact_json(post(files=dict(form, file=('noise.fits', _fits_hdu(image)))))['subid'],
        'png': exact_json(post(files=dict(form, file=('grey.png', png_bytes(40, 30)))))['subid'],
        'bad': exact_json(post(files=dict(form, file=('junk.bin', b'\x00\x01\x02junk'))))['subid'],
        'neg': submit_xy(nova_server, session, [-1.0, -2.0], [3.0, 4.0])['subid'],
        'few': submit_xy(nova_server, session, rng.uniform(1, 500, 5), rng.uniform(1, 500, 5),
                         **HINTS)['subid'],
    }
    results = {k: finished_submission(nova_server, v) for k, v in subs.items()}
    for kind in ('bad', 'neg'):
        assert results[kind]['user_images'] == [] and results[kind]['jobs'] == []
        assert list(results[kind]) == SUB_KEYS + ['error_message']
    assert "This file's type is not supported" in results['bad']['error_message']
    assert 'Source list must contain POSITIVE x,y coordinates' in results['neg']['error_message']
    # nova accepts an upload without a file (and fails it later): refused at once here.
    assert 'no file' in api_error(nova_server.call('upload', {'session': session}))
    for kind in ('fits', 'png', 'few'):
        assert 'error_message' not in results[kind] and len(results[kind]['jobs']) == 1
    job = results['few']['jobs'][0]
    api = f'{nova_server.api_url}jobs/{job}'
    assert exact_json(requests.get(api)) == {'status': 'failure'}
    no_cal = {'error': ERRORS['no_calibration'].format(job_id=job)}
    assert exact_json(requests.get(api + '/calibration')) == no_cal
    assert exact_json(requests.get(api + '/annotations')) == no_cal
    info = exact_json(requests.get(api + '/info'))
    # nova's keys in nova's order; ours adds the solve-field command and why the job
    # failed, after them
    assert list(info) == JOB_KEYS + ['command_line', 'error_message', 'error_kind']
    assert info['objects_in_field'] == info['tags'] == []
    assert 'no solution' in info['error_message'] and info['error_kind'] == 'no_solution'
    assert is_html(requests.get(f'{nova_server.url}/wcs_file/{job}'), 500)
    png_job = results['png']['jobs'][0]
    assert requests.get(f'{api[:-len(str(job))]}{png_job}/info').json()['original_filename'] == \
        'grey.png'


def _fits_hdu(hdu):
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def test_url_upload(nova_server, session, field, file_server):
    table = fits.BinTableHDU.from_columns([fits.Column('X', 'D', array=np.array(field.x)),
                                           fits.Column('Y', 'D', array=np.array(field.y))])
    (file_server.root / 'orion.xyls').write_bytes(_fits_bytes(table))
    reply = exact_json(nova_server.call('url_upload', dict(
        session=session, url=f'{file_server.url}/orion.xyls', **HINTS)))
    assert list(reply) == ['status', 'subid']      # no hash: nothing fetched yet
    missing = exact_json(nova_server.call('url_upload', {
        'session': session, 'url': f'{file_server.url}/nothing-here.fits'}))
    with_xy = exact_json(nova_server.call('url_upload', dict(
        session=session, url='http://127.0.0.1:9/never', x=[1.0, 2.0], y=[3.0, 4.0])))
    assert list(with_xy) == ['status', 'subid', 'hash']
    sub = finished_submission(nova_server, reply['subid'])
    info = exact_json(requests.get(f"{nova_server.api_url}jobs/{sub['jobs'][0]}/info"))
    assert info['status'] == 'success' and info['original_filename'] == 'orion.xyls'
    failed = finished_submission(nova_server, missing['subid'])
    assert '404' in failed['error_message'] and failed['jobs'] == []
    assert finished_submission(nova_server, with_xy['subid'])['user_images']


# -- other endpoints and non-JSON outcomes ---------------------------------------------
def test_myjobs_jobs_by_tag_and_submission_images(nova_server, session, solved):
    mine = exact_json(nova_server.call('myjobs/', {'session': session}))
    assert list(mine) == ['jobs', 'status'] and solved.job in mine['jobs']
    assert exact_json(nova_server.call('myjobsANYTHING', {'session': session})) == mine
    other = nova_server.login(nova_server.other_api_key)
    assert exact_json(nova_server.call('myjobs', {'session': other})) == {
        'jobs': [], 'status': 'success'}
    tag = exact_json(requests.get(f'{nova_server.api_url}jobs/{solved.job}/tags'))['tags'][0]
    hits = exact_json(requests.get(nova_server.api_url + 'jobs_by_tag',
                                   params={'query': tag.upper(), 'exact': 'yes'}))
    assert list(hits) == ['job_ids'] and solved.job in hits['job_ids']
    assert solved.job in exact_json(requests.post(
        nova_server.api_url + f'jobs_by_tag?query={tag[2:6]}&'))['job_ids']
    assert exact_json(requests.get(nova_server.api_url + 'jobs_by_tag',
                                   params={'query': 'no such tag', 'exact': 'yes'})) == \
        {'job_ids': []}
    assert api_error(requests.get(nova_server.api_url + 'jobs_by_tag'))
    images = nova_server.call('submission_images', {'session': other,
                                                    'subid': solved.upload['subid']})
    assert exact_json(images) == {'status': 'success', 'image_ids': solved.sub['user_images']}
    for subid in (None, 999999):
        args = {'session': session} if subid is None else {'session': session, 'subid': subid}
        assert exact_json(nova_server.call('submission_images', args))['errormessage'] == \
            ERRORS['no_submission']
    assert api_error(nova_server.call('submission_images', {'session': session, 'subid': 'abc'}))
    assert api_error(nova_server.call('sdss_image_for_wcs', {'session': session, 'wcs': {}}))


def json_404(reply):
    """nova's JSON error body with HTTP 404 (never an HTML page under /api/)."""
    assert reply.status_code == 404 and reply.headers['content-type'] == 'text/plain', reply.text
    data = json.loads(reply.text)
    assert reply.text == json.dumps(data) and list(data) == ['status', 'errormessage']
    assert data['status'] == 'error'
    return data['errormessage']


def test_ids_unknown_paths_and_home_page(nova_server, solved):
    api, root = nova_server.api_url, nova_server.url
    assert json_404(requests.get(api + 'submissions/999999')) == 'no submission 999999'
    for path in ('jobs/999999', 'jobs/999999/info', 'jobs/999999/calibration/'):
        assert json_404(requests.get(api + path)) == 'no job 999999'
    assert 'not an id' in json_404(requests.get(api + 'jobs/-5'))
    # Result files are not under /api/: nova's HTML 404.
    assert is_html(requests.get(f'{root}/wcs_file/999999'), 404)
    # nova crashes on these (they match its id pattern): unknown ids, so a 404 here.
    for path in ('jobs/12-3', 'submissions/1-', 'jobs/-', 'jobs/99999999999999999999'):
        assert 'not an id' in json_404(requests.get(api + path))
    assert exact_json(requests.get(f'{api}jobs/{solved.job}/')) == {'status': 'success'}
    # Unknown paths under /api/ (nova: its home page, or its CSRF 403 for a POST).
    for path in ('/api/logout', '/api/foo', '/api/jobs/abc', '/api/', '/api/jobs/1/nothing'):
        assert json_404(requests.get(root + path)) == f'no API endpoint {path}'
        assert json_404(requests.post(root + path, data={'request-json': '{}'}))
    # Elsewhere, nova's catch-all as before: its home page, and the CSRF 403 for a POST.
    for path in ('//api/login', '/', '/logout', '/foo/bar'):
        assert is_html(requests.get(root + path), 200)
        assert is_html(requests.post(root + path, data={'request-json': '{}'}), 403)


def test_no_keys_in_logs(nova_server, caplog):
    caplog.set_level(logging.DEBUG)
    key = nova_server.login()
    nova_server.call('myjobs', {'session': key})
    nova_server.call('upload', {'session': key, 'scale_lower': 'abc', 'x': [1], 'y': [1]})
    text = '\n'.join(r.getMessage() for r in caplog.records)
    assert '/api/myjobs' in text
    assert key not in text and nova_server.api_key not in text


# -- restart, astroquery, open mode -----------------------------------------------------
@pytest.mark.slow
def test_restart_finishes_queued_and_interrupted_work(make_nova_server, field):
    server = make_nova_server(workers=0)         # accepts and queues, solves nothing
    session = server.login()
    first = submit_xy(server, session, field.x, field.y, **HINTS)['subid']
    second = submit_xy(server, session, field.x, field.y, **HINTS)['subid']
    sub = wait(lambda: (lambda s: s if s['jobs'] == [1] else None)(
        exact_json(requests.get(f'{server.api_url}submissions/{first}'))))
    assert exact_json(requests.get(f'{server.api_url}jobs/1')) == {'status': 'processing'}
    wait(lambda: requests.get(f'{server.api_url}submissions/{second}').json()['jobs'])
    server.stop()
    # Make it look like a crash: job 1 mid-solve, submission 2 mid-decoding.
    with sqlite3.connect(server.data_dir / 'nova.sqlite3') as db:
        db.execute("UPDATE jobs SET start_time = '2020-01-01 00:00:00' WHERE id = 1")
        db.execute('DELETE FROM jobs WHERE id = 2')
        db.execute('DELETE FROM user_images WHERE submission_id = ?', (second,))
        db.execute('UPDATE submissions SET processing_finished = NULL WHERE id = ?', (second,))
    server.start(workers=1)
    assert exact_json(requests.get(f'{server.api_url}jobs/1'))['status'] in (
        'processing', 'solving', 'success')
    done = finished_submission(server, first)
    assert done['jobs'] == sub['jobs'] == [1] and done['job_calibrations']   # same job id
    again = finished_submission(server, second)
    assert again['job_calibrations'] and again['processing_started'] != 'None'


@pytest.mark.slow
def test_astroquery_client(nova_server, field, tmp_path):
    from astroquery.astrometry_net import AstrometryNet as AQ
    from astroquery.astrometry_net import conf
    saved = conf.api_key
    aq = AQ()
    aq.URL, aq.API_URL = nova_server.url, nova_server.url + '/api'
    aq.cache_location = tmp_path
    try:
        aq.api_key = nova_server.api_key
        header = aq.solve_from_source_list(
            field.x, field.y, field.width, field.height, scale_units='arcsecperpix',
            scale_type='ul', scale_lower=10.0, scale_upper=14.0, solve_timeout=120,
            verbose=False)
    finally:
        conf.api_key = saved
    assert header['CTYPE1'].startswith('RA---TAN') and header['IMAGEW'] == field.width
    with warnings.catch_warnings():        # the header of a NAXIS = 0 file
        warnings.simplefilter('ignore', FITSFixedWarning)
        centre = WCS(header).all_pix2world([[500.5, 500.5]], 1)[0]
    assert centre == pytest.approx([83.8, -5.4], abs=2e-3)


@pytest.mark.slow
def test_open_mode_is_loopback_only(tmp_path):
    check_bind('127.0.0.5', [])
    check_bind('::1', [])
    check_bind('localhost', [])
    check_bind('0.0.0.0', ['key'])
    for host in ('0.0.0.0', '192.168.1.10', '::', 'example.org'):
        with pytest.raises(ValueError, match='loopback'):
            ServerThread(host=host, data_dir=tmp_path)
    with ServerThread(data_dir=tmp_path, workers=0) as server:
        login = partial(requests.post, server.api_url + 'login')
        assert login(data={'request-json': '{"apikey": "anything"}'}).json()['status'] == \
            'success'
        assert login(data={'request-json': '{"apikey": ""}'}).json()['errormessage'] == \
            ERRORS['bad_apikey']
    cli = subprocess.run([sys.executable, '-m', 'astrometry_query.server', '--host', '0.0.0.0',
                          '--data-dir', str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert cli.returncode == 2 and 'loopback' in cli.stderr


@pytest.mark.slow
def test_queue_is_fair_between_users(make_nova_server):
    server = make_nova_server(workers=0)
    rng = np.random.default_rng(2)
    busy, other = server.login(), server.login(server.other_api_key)
    subs = [submit_xy(server, busy, rng.uniform(1, 300, 5), rng.uniform(1, 300, 5), **HINTS)
            for _ in range(3)]
    subs.append(submit_xy(server, other, rng.uniform(1, 300, 5), rng.uniform(1, 300, 5), **HINTS))
    for sub in subs:
        wait(lambda: requests.get(f"{server.api_url}submissions/{sub['subid']}").json()['jobs'])
    server.restart(workers=1)
    jobs = [finished_submission(server, sub['subid'])['jobs'][0] for sub in subs]
    with sqlite3.connect(server.data_dir / 'nova.sqlite3') as db:
        order = [r[0] for r in db.execute('SELECT id FROM jobs ORDER BY start_time')]
    assert order == [jobs[0], jobs[3], jobs[1], jobs[2]]    # the other user's job goes second


@pytest.mark.slow
def test_command_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, '-m', 'astrometry_query.server', '--port', str(port),
                             '--workers', '1', '--data-dir', str(tmp_path), '--api-key', 'k' * 16,
                             '--log-level', 'warning'], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def login():
            try:
                return requests.post(f'http://127.0.0.1:{port}/api/login', timeout=5,
                                     data={'request-json': json.dumps({'apikey': 'k' * 16})})
            except requests.ConnectionError:
                return None
        assert exact_json(wait(login, timeout=30))['status'] == 'success'
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert (tmp_path / 'nova.sqlite3').is_file()


# -- limits --------------------------------------------------------------------------------
@pytest.mark.slow
def test_upload_and_request_json_size_limits(make_nova_server):
    server = make_nova_server(workers=0, max_upload=100_000, max_json=20_000)
    session = server.login()
    too_big = {'request-json': (None, json.dumps({'session': session})),
               'file': ('big.fits', b'\0' * 200_000)}
    reply = requests.post(server.api_url + 'upload', files=too_big, timeout=30)
    assert is_html(reply, 413)
    small = {'request-json': (None, json.dumps({'session': session})),
             'file': ('small.fits', b'SIMPLE  = ' + b' ' * 2870)}
    assert exact_json(requests.post(server.api_url + 'upload', files=small, timeout=30))[
        'status'] == 'success'
    xy = {'session': session, 'x': [1.0] * 2000, 'y': [2.0] * 2000}
    assert 'larger than 20000 bytes' in api_error(server.call('upload', xy))


@pytest.mark.slow
def test_rate_limit_answers_429_with_retry_after(make_nova_server):
    server = make_nova_server(workers=0, rate_limit=2.0)
    session = server.login()
    answers = [server.call('myjobs', {'session': session}) for _ in range(8)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and answers[0].status_code == 200
    assert int(limited[0].headers['Retry-After']) >= 1
    assert json.loads(limited[0].text)['status'] == 'error'
    time.sleep(1.1)            # the bucket fills again
    assert server.call('myjobs', {'session': session}).status_code == 200
    # Status polls (no session) are never limited.
    assert all(requests.get(server.api_url + 'jobs/1', timeout=10).status_code == 404
               for _ in range(10))


@pytest.mark.slow
def test_objects_listed_while_the_tagger_is_between_file_and_store(nova_server, solved):
    """The idle tagger writes the job's extras file, then stores the list: a
    request in between must not answer 'no objects'."""
    import sqlite3
    job_id = solved.job
    api = f'{nova_server.url}/api/jobs/{job_id}'
    listed = exact_json(requests.get(api + '/objects_in_field'))['objects_in_field']
    assert listed
    with sqlite3.connect(nova_server.data_dir / 'nova.sqlite3') as db:     # the window
        db.execute("UPDATE jobs SET objects = '[]' WHERE id = ?", (job_id,))
    assert exact_json(requests.get(api + '/objects_in_field'))['objects_in_field'] == listed


def test_objects_stored_between_two_reads_are_answered(nova_server, solved, monkeypatch):
    """The idle tagger may store the list after a request read the job (no list
    yet) and before it asked whether one was stored: the answer is the list,
    not 'no objects'."""
    job_id = solved.job
    api = f'{nova_server.url}/api/jobs/{job_id}'
    listed = exact_json(requests.get(api + '/objects_in_field'))['objects_in_field']
    assert listed                                   # stored by now
    store = nova_server.thread.app.state.store
    read = store.job
    first = []

    def read_before_the_tagger_stored(asked_id):
        job = read(asked_id)
        if asked_id == job_id and not first:        # the request's first read: too early
            first.append(asked_id)
            job = dict(job, objects=[], tags=[], machine_tags=[])
        return job
    monkeypatch.setattr(store, 'job', read_before_the_tagger_stored)
    assert exact_json(requests.get(api + '/objects_in_field'))['objects_in_field'] == listed
    assert first == [job_id]


def test_a_long_poll_on_a_submission_with_its_job_is_answered_at_once(nova_server, session):
    """Once every image has its job, a submission's state holds nothing more to
    wait for (calibrations or the job's end are the job's to say): a failed job
    must not leave the client's submission poll held for its whole wait."""
    reply = submit_xy(nova_server, session, [10.0, 20.0, 30.0, 40.0], [40.0, 31.0, 20.0, 10.0])
    sub = finished_submission(nova_server, reply['subid'])       # too few sources: failed
    assert requests.get(f"{nova_server.api_url}jobs/{sub['jobs'][0]}").json() == {
        'status': 'failure'}
    assert not sub['job_calibrations']
    # (the wait asked for is far longer than the HTTP timeout: a held answer fails)
    held = requests.get(f"{nova_server.api_url}submissions/{reply['subid']}?wait=30", timeout=10)
    assert exact_json(held) == sub
