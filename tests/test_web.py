"""The server's web pages over real HTTP on 127.0.0.1: the upload form and its
errors, sign-in, CSRF refusals, privacy, escaping, a solve through the form,
and the same end to end in headless Chromium (driven by Playwright).
"""
import html
import io
import json
import math
import re
import shutil
import time
import warnings
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import FITSFixedWarning

from astrometry_query.results import calibration_from_wcs
from astrometry_query.server import ServerThread
from astrometry_query.local.extraction import CIRCLE_COLOUR, EXTRACTION_FILE
from astrometry_query.datasets import render_field
from real_server import requires_solver

SHAPE = (600, 700)                       # rows, columns
CENTER = (56.75, 24.12)                  # the Pleiades
SCALE_HINT = {'scale_units': 'arcsecperpix', 'scale_lower': '11', 'scale_upper': '13'}
NASTY = "<img src=x onerror=alert(1)>&'q.fits"     # a file name no page may run
BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='module')
def field(tmp_path_factory):
    """A 700x600 field at 12"/pixel rotated 20 degrees, in a FITS file without its WCS."""
    synthetic = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                             shape=SHAPE, rotation=20 * u.deg, fwhm=2.5, background=50.0, seed=5)
    path = synthetic.writeto(tmp_path_factory.mktemp('web') / 'pleiades.fits', truth='none')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FITSFixedWarning)
        truth = calibration_from_wcs(synthetic.wcs.to_header(), SHAPE[1], SHAPE[0])
    return SimpleNamespace(path=path, truth=truth, wcs=synthetic.wcs)


class Browser:
    """A requests session that behaves like a browser on our pages: it keeps
    the cookies and sends back the form's CSRF token."""

    def __init__(self, server):
        self.url, self.http = server.url, requests.Session()

    def get(self, path='/', **kw):
        return self.http.get(self.url + path, timeout=30, **kw)

    def token(self, path='/'):
        page = self.get(path)
        return re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text).group(1)

    def post(self, path, data=None, files=None, token=True, **kw):
        data = dict(data or {})
        if token:
            data['csrf_token'] = self.token()
        return self.http.post(self.url + path, data=data, files=files, timeout=60,
                              allow_redirects=False, **kw)

    def signin(self, key):
        reply = self.post('/signin', {'apikey': key})
        assert reply.status_code == 303, reply.text[:500]
        return reply

    def upload(self, path=None, name='field.fits', **fields):
        files = None if path is None else {'file': (name, path.read_bytes())}
        return self.post('/upload', {'parity': '2', **fields}, files)


def final_summary(browser, sub_id, timeout=120.0):
    """The list entry of a submission once it stopped changing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = browser.get(f'/web/submissions/{sub_id}').json()
        if data['final']:
            return data['submissions'][0]
        time.sleep(0.1)
    raise AssertionError(f'submission {sub_id} did not finish')


def sub_id_of(reply):
    assert reply.status_code == 303, reply.text[:2000]
    return int(re.fullmatch(r'/status/(\d+)', reply.headers['location']).group(1))


def refusal(reply):
    """(status, title) of a page that refuses to show something, checked to be a
    page of the site (its layout, header and style sheet), not a bare error."""
    assert reply.headers['content-type'].startswith('text/html')
    assert '<header class="site">' in reply.text and '/web/static/style.css' in reply.text
    title = re.search(r'<h1>(.*?)</h1>', reply.text).group(1)
    assert '<p class="notice">' in reply.text and '<a href="/">' in reply.text
    return reply.status_code, title


def error_items(page):
    return re.findall(r'<li>(.*?)</li>', page.split('role="alert"', 1)[1].split('</ul>', 1)[0])


@pytest.fixture(scope='module')
def signed_in(nova_server):
    browser = Browser(nova_server)
    browser.signin(nova_server.api_key)
    return browser


# -- the form, sign-in and CSRF ------------------------------------------------------------
def test_form_renders_and_sign_in_takes_an_api_key(nova_server):
    browser = Browser(nova_server)
    page = browser.get('/')
    assert page.status_code == 200 and page.headers['content-type'].startswith('text/html')
    assert "default-src 'self'" in page.headers['content-security-policy']
    assert 'httponly' in page.headers['set-cookie'].lower()
    # a server with API keys: sign in first, no upload form for strangers
    assert 'action="/signin"' in page.text and 'action="/upload"' not in page.text
    refused = browser.post('/upload', dict(SCALE_HINT, url='http://127.0.0.1:9/x.fits'))
    assert refused.status_code == 403 and error_items(refused.text) == [
        'Sign in with your API key to submit images.']
    wrong = browser.post('/signin', {'apikey': 'wrongwrongwrongw'})
    assert wrong.status_code == 403 and 'not accepted' in wrong.text
    assert 'wrongwrongwrongw' not in wrong.text
    reply = browser.signin(nova_server.api_key)
    cookie = next(c for c in browser.http.cookies if c.name == 'NovaAstrometrySession')
    assert cookie.has_nonstandard_attr('HttpOnly')
    page = browser.get('/')
    assert nova_server.api_key not in page.text + reply.text
    for name in ('file', 'url', 'scale_units', 'scale_lower', 'scale_upper', 'center_ra',
                 'center_dec', 'radius', 'parity', 'downsample_factor', 'tweak_order',
                 'publicly_visible'):
        assert re.search(rf'<(input|select)[^>]* name="{name}"', page.text), name
        assert f'<label for="{name}"' in page.text
    assert 'value="arcsecperpix"' in page.text and 'enctype="multipart/form-data"' in page.text
    # nova's catch-all is this page too (not under /api/), and still refuses its POSTs
    # with the CSRF 403
    assert 'action="/upload"' in browser.get('/logout').text
    assert browser.http.post(nova_server.url + '/', data={'request-json': '{}'}).status_code == 403
    for static in ('/web/static/style.css', '/web/static/app.js'):
        assert browser.get(static).status_code == 200
    assert browser.get('/web/static/web.py').status_code == 404


def test_sign_in_logs_no_key_and_the_script_sets_no_markup(nova_server, caplog):
    caplog.set_level('DEBUG')
    browser = Browser(nova_server)
    browser.post('/signin', {'apikey': 'notakeynotakeyno'})
    browser.signin(nova_server.api_key)
    assert nova_server.api_key not in caplog.text and 'notakeynotakeyno' not in caplog.text
    script = browser.get('/web/static/app.js').text
    assert 'textContent' in script and 'innerHTML' not in script and 'insertAdjacentHTML' not in script


def test_too_large_an_upload_is_said_on_the_page(make_nova_server):
    server = make_nova_server(workers=0, max_upload=20_000)
    browser = Browser(server)
    browser.signin(server.api_key)
    reply = browser.post('/upload', {'parity': '2'}, {'file': ('big.fits', bytes(50_000))})
    assert reply.status_code == 413 and 'action="/upload"' in reply.text
    assert error_items(reply.text) == ['The upload was refused: the limit is 0.02 MB.']


def test_cross_site_posts_are_refused(nova_server, signed_in, field):
    before = signed_in.get('/web/submissions').json()['submissions']
    stranger = requests.Session()
    stranger.cookies.update({'NovaAstrometrySession': signed_in.http.cookies['NovaAstrometrySession']})
    token = signed_in.token()
    files = {'file': ('f.fits', field.path.read_bytes())}
    fields = dict(SCALE_HINT, parity='2')
    refusals = [
        # another site's page: it has the session cookie, not the CSRF cookie
        stranger.post(nova_server.url + '/upload', data=dict(fields, csrf_token=token), files=files),
        signed_in.post('/upload', fields, files, token=False),                     # no token
        signed_in.post('/upload', dict(fields, csrf_token='0' * 64), files, token=False),
        signed_in.post('/upload', fields, files, headers={'Origin': 'http://evil.example'}),
        signed_in.post('/upload', fields, files, headers={'Sec-Fetch-Site': 'cross-site'}),
        signed_in.post('/signin', {'apikey': nova_server.api_key}, token=False),
        signed_in.post('/signout', token=False),
    ]
    for reply in refusals:
        assert reply.status_code == 403 and 'CSRF verification failed' in reply.text
    # same-site posts, also through a proxy that rewrites Host, go through (to a form error here)
    for headers in ({'Origin': nova_server.url, 'Sec-Fetch-Site': 'same-origin'},
                    {'Origin': 'https://solver.example.org', 'Host': '127.0.0.1',
                     'X-Forwarded-Host': 'solver.example.org'}):
        assert signed_in.post('/upload', {}, headers=headers).status_code == 400
    # a token is worth nothing with another browser's nonce
    other = Browser(nova_server)
    other.get('/')
    assert other.http.post(nova_server.url + '/signin', timeout=30, allow_redirects=False, data={
        'csrf_token': token, 'apikey': nova_server.api_key}).status_code == 403
    assert signed_in.get('/web/submissions').json()['submissions'] == before
    # the pages that only show things refuse POSTs as nova's catch-all does
    for path in ('/status/1', '/job/1', '/web/submissions'):
        assert signed_in.http.post(nova_server.url + path).status_code == 403


@pytest.mark.parametrize('fields, files, message', [
    ({}, False, 'Choose an image file or give its URL.'),
    ({'url': 'http://127.0.0.1:9/x.fits'}, True, 'Give an image file or its URL, not both.'),
    ({'scale_lower': '13', 'scale_upper': '11'}, True, 'The lower scale bound is larger than the upper one.'),
    ({'scale_lower': 'abc'}, True, "Lower scale bound: 'abc' is not a valid float"),
    ({'center_ra': '56.75'}, True, 'Give the centre RA, Dec and radius together'),
    ({'center_ra': 'abc', 'center_dec': '24', 'radius': '2'}, True, "Centre RA: 'abc' is neither"),
    ({'center_ra': '400', 'center_dec': '24', 'radius': '2'}, True, 'Centre RA: 400.0 is out of range'),
    ({'tweak_order': '12'}, True, 'SIP tweak order: 12 is out of range'),
    ({'url': 'ftp://example.org/x.fits'}, False, 'URL must be an http or https URL'),
])
def test_bad_input_shows_the_error(nova_server, signed_in, field, fields, files, message):
    before = signed_in.get('/web/submissions').json()['submissions']
    reply = signed_in.upload(field.path if files else None, **fields)
    assert reply.status_code == 400 and reply.headers['content-type'].startswith('text/html')
    errors = error_items(reply.text)
    assert any(e.startswith(message.replace("'", '&#x27;')) for e in errors), errors
    for value in fields.values():          # what was typed is kept, escaped
        assert f'value="{value}"' in reply.text
    assert signed_in.get('/web/submissions').json()['submissions'] == before


def test_typed_values_come_back_escaped(signed_in):
    reply = signed_in.upload(None, center_ra='"><script>alert(1)</script>')
    assert reply.status_code == 400
    assert '<script>alert' not in reply.text
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in reply.text


# -- a solve through the form ------------------------------------------------------------------
@pytest.mark.slow
@requires_solver
def test_solve_through_the_form(nova_server, signed_in, field):
    reply = signed_in.upload(field.path, name=NASTY, **SCALE_HINT)
    sub_id = sub_id_of(reply)
    status = signed_in.get(f'/status/{sub_id}')
    assert status.status_code == 200 and NASTY not in status.text
    assert '&lt;img src=x onerror=alert(1)&gt;&amp;&#x27;q.fits' in status.text
    summary = final_summary(signed_in, sub_id)
    assert summary['name'] == NASTY and summary['public'] is False
    [badge] = summary['badges']
    job_id = int(badge['href'].rsplit('/', 1)[1])
    assert badge == {'kind': 'success', 'text': f'job {job_id}: success', 'href': f'/job/{job_id}'}
    page = signed_in.get(f'/job/{job_id}').text
    assert NASTY not in page
    values = dict(re.findall(r'<dd id="cal-(\w+)" data-value="([^"]*)"', page))
    truth = field.truth
    centre = SkyCoord(float(values['ra']), float(values['dec']), unit='deg')
    assert centre.separation(SkyCoord(truth['ra'], truth['dec'], unit='deg')).arcsec < 2
    assert float(values['pixscale']) == pytest.approx(12.0, rel=1e-3)
    assert float(values['orientation']) == pytest.approx(truth['orientation'], abs=0.1)
    assert float(values['parity']) == truth['parity'] == -1.0
    width, height = (float(v) for v in values['size'].split())
    assert (width, height) == pytest.approx((700 * 12.0, 600 * 12.0), rel=1e-3)
    assert re.search(r'03h4[67]m\d\d\.\d\ds', page) and '+24°07′' in page
    assert '<li>The star Alcyone (η Tau / 25 Tau)</li>' in page          # whole names
    assert f'<img id="annotated" src="/annotated_display/{job_id}" width="700" height="600"' in page
    downloads = page.split('<ul class="downloads">', 1)[1].split('</ul>', 1)[0]
    links = re.findall(r'<a href="(/(\w+)/%d)">' % job_id, downloads)
    assert {route for _, route in links} == {'wcs_file', 'new_fits_file', 'corr_file',
                                             'matches_file', 'rdls_file', 'axy_file',
                                             'image_rd_file', 'joblog'}
    for link, route in links:          # the signed-in session passes nova's anti-bot gate
        content = signed_in.get(link).content
        if route == 'joblog':
            assert content.strip()
            continue
        with fits.open(io.BytesIO(content)) as hdul:
            if route == 'wcs_file':
                assert hdul[0].header['CTYPE1'].startswith('RA---TAN')
            elif route == 'new_fits_file':
                assert hdul[0].data.shape == SHAPE and 'CD1_1' in hdul[0].header
            else:
                names = [n.upper() for n in hdul[1].columns.names]
                assert len(hdul[1].data) >= 10
                assert 'X' in names if route == 'axy_file' else any('RA' in n for n in names)
    image = signed_in.get(f'/annotated_display/{job_id}')
    assert image.status_code == 200 and image.headers['content-type'] in ('image/png', 'image/jpeg')
    # private: another user and strangers see neither the entry nor the page, only
    # a page of the site saying it is private (403)
    other = Browser(nova_server)
    assert all(s['id'] != sub_id for s in other.get('/web/submissions').json()['submissions'])
    for path in (f'/job/{job_id}', f'/status/{sub_id}'):
        assert refusal(other.get(path)) == (403, 'Private')
    other.signin(nova_server.other_api_key)
    assert other.get(f'/web/submissions/{sub_id}').status_code == 403
    assert 'another API key' in other.get(f'/job/{job_id}').text


def sky_links(page):
    """{host: (path, query parameters)} of the job page's links to sky viewers."""
    items = page.split('<ul class="sky-links"', 1)[1].split('</ul>', 1)[0]
    out = {}
    for href in re.findall(r'<a href="([^"]+)"', items):
        parts = urlsplit(html.unescape(href))
        assert parts.scheme == 'https'
        out[parts.netloc] = (parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()})
    return out


@pytest.mark.slow
@requires_solver
def test_job_page_size_sources_viewers_and_log_odds(nova_server, signed_in, field):
    job_id = int(final_summary(signed_in, sub_id_of(signed_in.upload(field.path, **SCALE_HINT)))[
        'badges'][0]['href'].rsplit('/', 1)[1])
    job_dir = nova_server.data_dir / 'jobs' / str(job_id)
    page = signed_in.get(f'/job/{job_id}').text
    # the image's size
    assert '<span id="image-size" data-value="700 600">700 × 600 pixels</span>' in page
    # the sources given to the solver, circled over the image: drawn when first asked for, then kept
    assert (f'<img id="extraction" src="/extraction_image_display/{job_id}" width="700" height="600"'
            in page and f'<a href="/extraction_image_full/{job_id}">' in page)
    assert not (job_dir / EXTRACTION_FILE).exists()
    reply = signed_in.get(f'/extraction_image_display/{job_id}')
    assert reply.status_code == 200 and reply.headers['content-type'] == 'image/png'
    assert (job_dir / EXTRACTION_FILE).read_bytes() == reply.content
    assert signed_in.get(f'/extraction_image_full/{job_id}').content == reply.content
    from PIL import Image
    drawn = np.asarray(Image.open(io.BytesIO(reply.content)).convert('RGB'))
    assert drawn.shape == (600, 700, 3)
    with fits.open(io.BytesIO(signed_in.get(f'/axy_file/{job_id}').content)) as hdul:
        # a FITS image is drawn as everywhere else: y = 1 at the bottom (the PNG's last row)
        x, y = hdul[1].data['X'] - 1, drawn.shape[0] - hdul[1].data['Y']
    ring = np.all(drawn == CIRCLE_COLOUR, axis=2)
    assert ring.any() and np.all(drawn[~ring][:, 0] == drawn[~ring][:, 1])   # the rest is grey
    radius = 10                                     # the rings' radius on a 700x600 image
    circled = [ring[max(0, int(cy) - radius):int(cy) + radius + 1,
                    max(0, int(cx) - radius):int(cx) + radius + 1].any() for cx, cy in zip(x, y)]
    assert len(x) >= 10 and all(circled)
    # links to the field in sky viewers, from the calibration
    values = dict(re.findall(r'<dd id="cal-(\w+)" data-value="([^"]*)"', page))
    ra, dec = float(values['ra']), float(values['dec'])
    width, height = (float(v) for v in values['size'].split())
    fov = 1.5 * max(width, height) / 3600                  # degrees, with a margin
    links = sky_links(page)
    assert set(links) == {'aladin.cds.unistra.fr', 'worldwidetelescope.org', 'www.legacysurvey.org'}
    path, q = links['aladin.cds.unistra.fr']
    assert path == '/AladinLite/' and q['survey'] == 'CDS/P/DSS2/color'
    assert [float(v) for v in q['target'].split(' ')] == pytest.approx([ra, dec], abs=1e-5)
    assert float(q['fov']) == pytest.approx(fov, rel=1e-3)
    path, q = links['worldwidetelescope.org']
    assert path == '/wwtweb/goto.aspx' and q['object']
    assert float(q['ra']) == pytest.approx(ra / 15, abs=1e-5)        # hours
    assert float(q['dec']) == pytest.approx(dec, abs=1e-5)
    assert float(q['zoom']) == pytest.approx(6 * fov, rel=1e-3)      # 6 x the field of view
    path, q = links['www.legacysurvey.org']
    assert path == '/viewer' and q['layer'] == 'ls-dr10'
    assert [float(q['ra']), float(q['dec'])] == pytest.approx([ra, dec], abs=1e-5)
    zoom = int(q['zoom'])           # 0.262"/pixel at 14, twice that at each step down
    assert 0 <= zoom <= 16 and 0.262 * 2 ** (14 - zoom) * 1000 >= fov * 3600
    assert 0.262 * 2 ** (14 - zoom - 1) * 1000 < fov * 3600
    # the solve's log-odds, as the engine wrote it into the WCS file
    header = fits.Header.fromstring(signed_in.get(f'/wcs_file/{job_id}').content[:2880 * 20])
    written = next(float(c.split(':')[1]) for c in header['COMMENT'] if c.startswith('log odds:'))
    assert float(values['logodds']) == pytest.approx(written) and written > math.log(1e9)
    assert re.search(r'<dd id="cal-logodds" data-value="[\d.]+">\d+\.\d <span', page)
    result = json.loads((job_dir / 'result.json').read_text())
    assert [a['logodds'] for a in result['attempts'] if a['solved']] == [written]


def test_public_submissions_are_listed_for_everyone(nova_server, signed_in):
    sub_id = sub_id_of(signed_in.upload(None, url='http://127.0.0.1:9/public.fits', publicly_visible='y'))
    summary = final_summary(signed_in, sub_id)      # nothing listens on port 9
    assert summary['badges'] == [{'kind': 'failed', 'text': 'failed', 'href': None}]
    assert summary['error']
    stranger = Browser(nova_server)
    assert stranger.get(f'/web/submissions/{sub_id}').json()['submissions'][0]['error'] == summary['error']
    page = stranger.get(f'/status/{sub_id}').text
    assert 'public.fits' in page and 'class="badge s-failed"' in page and 'everyone' in page


def test_sign_out_ends_the_session(nova_server):
    browser = Browser(nova_server)
    browser.signin(nova_server.api_key)
    session = browser.http.cookies['NovaAstrometrySession']
    assert nova_server.call('myjobs', {'session': session}).json()['status'] == 'success'
    assert browser.post('/signout').status_code == 303
    assert 'action="/signin"' in browser.get('/').text
    assert nova_server.call('myjobs', {'session': session}).json()['status'] == 'error'


def test_ask_human_links_back_to_the_file(nova_server):
    reply = requests.get(nova_server.url + '/corr_file/1', allow_redirects=False, timeout=30)
    assert reply.status_code == 302
    page = requests.get(nova_server.url + reply.headers['location'], timeout=30).text
    assert '<a href="/corr_file/1">' in page
    page = requests.get(nova_server.url + '/ask_human?next=//evil.example/x', timeout=30).text
    assert 'evil.example' not in page


def test_open_server_takes_anonymous_submissions(tmp_path, field):
    with ServerThread(data_dir=tmp_path, workers=0) as server:      # loopback, no API keys; no solves
        browser = Browser(server)
        page = browser.get('/').text
        assert 'action="/upload"' in page and 'no sign-in needed' in page
        sub_id = sub_id_of(browser.upload(field.path, name='queued.fits'))
        assert Browser(server).get(f'/web/submissions/{sub_id}').status_code == 200     # shared user
        def links():
            [sub] = browser.get(f'/web/submissions/{sub_id}').json()['submissions']
            return [badge['href'] for badge in sub['badges']]
        deadline = time.monotonic() + 60
        while None in links() and time.monotonic() < deadline:
            time.sleep(0.1)         # the image is read; its job then waits for a solver
        [job] = links()
        for path in (f'/status/{sub_id}', job):       # without the script, they reload themselves
            page = browser.get(path).text
            assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
        assert 'data-status="processing">queued</span>' in page and 'Downloads' not in page


@pytest.mark.slow
def test_form_secret_is_owner_only_and_kept_across_restarts(tmp_path):
    """The HMAC secret of the forms: owner-only from its creation, the same after a
    restart (an open form stays valid), made anew when cut short."""
    secret = tmp_path / 'web-secret'
    with ServerThread(data_dir=tmp_path, workers=0) as server:
        browser = Browser(server)
        token = browser.token()
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    kept = secret.read_bytes()
    with ServerThread(data_dir=tmp_path, workers=0) as server:
        browser.url = server.url            # the same browser: its CSRF cookie, an open form's token
        assert browser.post('/signout', {'csrf_token': token}, token=False).status_code == 303
    assert secret.read_bytes() == kept
    secret.write_bytes(kept[:5])
    with ServerThread(data_dir=tmp_path, workers=0) as server:
        Browser(server).get('/')
    assert len(secret.read_bytes()) == 32 and secret.read_bytes() != kept
    assert secret.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if 'secret' in p.name) == ['web-secret']


@requires_solver
def test_failed_job_page_says_why(nova_server, signed_in):
    noise = np.random.default_rng(1).normal(100.0, 5.0, (200, 200)).astype(np.float32)
    data = io.BytesIO()
    fits.PrimaryHDU(noise).writeto(data)
    reply = signed_in.post('/upload', {'parity': '2'}, {'file': ('noise.fits', data.getvalue())})
    [badge] = final_summary(signed_in, sub_id_of(reply))['badges']
    assert badge['kind'] == 'failure' and badge['text'].endswith(': failure')
    page = signed_in.get(badge['href']).text
    assert 'data-status="failure">failure</span>' in page
    assert re.search(r'<h2>Why it failed</h2><pre class="error">[^<]*sources were found', page)
    assert 'id="annotated"' not in page and '/wcs_file/' not in page and '<noscript>' not in page


# -- end to end in a browser -------------------------------------------------------------------
def api_submission(server, key):
    """A private source list submitted through the API with ``key``: its id."""
    session = server.login(key)
    return server.call('upload', {'session': session, 'x': [10.0, 20.0, 30.0, 40.0],
                                  'y': [40.0, 31.0, 20.0, 10.0], 'image_width': 100,
                                  'image_height': 100, 'publicly_visible': 'n'}).json()['subid']


def _chromium():
    """Playwright's sync API and Debian's Chromium, or a skip saying which is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip('needs the playwright package (pip install playwright)')
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    if path is None:
        pytest.skip('needs Chromium (apt-get install chromium)')
    return sync_playwright, path


def _png(data, size=None):
    """A screenshot as a grey array, checked to be a PNG of ``size`` (width, height)."""
    from PIL import Image
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    image = Image.open(io.BytesIO(data))
    if size is not None:
        assert image.size == size
    return np.asarray(image.convert('L'), dtype=float)


@pytest.mark.slow
@requires_solver
def test_browser_end_to_end(make_nova_server, field, tmp_path):
    sync_playwright, chromium = _chromium()
    server = make_nova_server(workers=0)        # queue only: the status is seen to change live
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1200, 'height': 900})
            crashes = []
            page.on('pageerror', lambda exc: crashes.append(str(exc)))
            page.goto(server.url + '/')
            page.fill('#apikey', server.api_key)
            page.click('form.signin button')
            page.wait_for_selector('form.upload')
            form_png = _png(page.screenshot(path=str(tmp_path / 'form.png')), (1200, 900))
            assert form_png.std() > 10
            page.set_input_files('#file', str(field.path))
            page.select_option('#scale_units', 'arcsecperpix')
            page.fill('#scale_lower', '11')
            page.fill('#scale_upper', '13')
            page.fill('#center_ra', '03:47:00')          # sexagesimal hints
            page.fill('#center_dec', '+24:07:12')
            page.fill('#radius', '2')
            with page.expect_navigation():
                page.click('button:has-text("Solve")')
            sub_id = re.search(r'/status/(\d+)$', page.url).group(1)
            page.screenshot(path=str(tmp_path / 'status.png'))
            # A submission through the API with the same key is this user's too.
            api_sub = api_submission(server, server.api_key)
            page.goto(server.url + '/')                       # the list of submissions
            badge = f'#submissions tr[data-sub="{sub_id}"] td.state .badge'
            page.wait_for_selector(badge)
            assert page.inner_text(f'#submissions tr[data-sub="{api_sub}"] td.name') == 'json-xy'
            # Another's or an unknown page says so, in the site's layout.
            for path, status, title in ((f'/status/{api_sub}', 200, f'Submission {api_sub}'),
                                        ('/job/999999', 404, 'Not found')):
                response = page.goto(server.url + path)
                assert response.status == status and page.inner_text('main h1') == title
                assert page.locator('header.site').is_visible()
            stranger = browser.new_page()
            response = stranger.goto(f'{server.url}/status/{api_sub}')
            assert response.status == 403 and stranger.inner_text('main h1') == 'Private'
            assert 'Sign in with the API key' in stranger.inner_text('main')
            stranger.close()
            page.goto(server.url + '/')
            page.wait_for_selector(badge)
            assert 'success' not in page.inner_text(badge)    # nothing solves yet
            page.evaluate('window.stillTheSamePage = true')
            server.restart(workers=1)                         # now it solves
            page.wait_for_function(
                "(sel) => /^job \\d+: success$/.test(document.querySelector(sel).textContent)",
                arg=badge, timeout=120_000)
            assert page.evaluate('window.stillTheSamePage') is True       # updated, not reloaded
            listed = _png(page.screenshot(path=str(tmp_path / 'list.png'), full_page=True))
            assert listed.shape[1] == 1200 and listed.shape[0] > 900 and listed.std() > 10
            with page.expect_navigation():
                page.click(badge)
            page.wait_for_function("() => document.getElementById('annotated').complete"
                                   " && document.getElementById('annotated').naturalWidth > 0")
            assert page.evaluate("document.getElementById('annotated').naturalWidth") == 700
            values = {k: float(page.get_attribute(f'#cal-{k}', 'data-value'))
                      for k in ('ra', 'dec', 'pixscale', 'orientation', 'parity')}
            truth = field.truth
            assert SkyCoord(values['ra'], values['dec'], unit='deg').separation(
                SkyCoord(truth['ra'], truth['dec'], unit='deg')).arcsec < 2
            assert values['pixscale'] == pytest.approx(12.0, rel=1e-3)
            assert values['orientation'] == pytest.approx(truth['orientation'], abs=0.1)
            assert values['parity'] == truth['parity']
            assert page.inner_text('#cal-ra').startswith('03h4')
            job_png = _png(page.screenshot(path=str(tmp_path / 'job.png'), full_page=True))
            assert job_png.shape[1] == 1200 and job_png.shape[0] >= 900 and job_png.std() > 10
            box = page.locator('#annotated').bounding_box()
            shot = _png(page.locator('#annotated').screenshot(path=str(tmp_path / 'annotated.png')))
            assert shot.shape == pytest.approx((box['height'], box['width']), abs=2)  # pixel-aligned
            assert shot.std() > 5 and len(np.unique(shot)) > 50
            with page.expect_download() as download:
                page.click('a[href^="/wcs_file/"]')
            header = download.value.path().read_bytes()
            assert header.startswith(b'SIMPLE  =') and b'RA---TAN' in header
            assert crashes == []
        finally:
            browser.close()
