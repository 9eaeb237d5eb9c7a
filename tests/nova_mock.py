"""A fake nova.astrometry.net server for unit tests.

`FakeNova` keeps submissions, jobs and sessions in memory and answers every
endpoint the way the real server does (see /work/shared/nova-protocol.md):

* API errors are HTTP 200 ``{"status": "error", "errormessage": ...}`` with
  ``Content-Type: text/plain``; calibration/annotations of an unsolved job are
  ``{"error": ...}``; unknown ids are an HTML 404; crashes an HTML 500; unknown
  paths (or a doubled slash) the home page (GET, 200) or a CSRF 403 (POST).
* Submissions report ``processing_started``/``processing_finished`` as the
  string ``"None"`` until set, ``jobs`` holds ``null`` while an image waits
  for a job, and ``error_message`` appears only when set.
* Gated result files (new_fits_file, corr_file, annotated_*) answer 302 to
  ``/ask_human`` unless the request has a Referer.

It plugs into an `AstrometryNetClass` in two ways:

* ``inst._request = fake.request`` -- replaces astroquery's ``_request``; the
  answers are astroquery ``MockResponse`` objects and every call is recorded
  with its keyword arguments (``cache``, ``timeout``, ``allow_redirects``).
* ``fake.mount(inst)`` -- mounts a requests transport adapter on the
  instance's session, so astroquery's real ``_request`` (cache, hooks,
  logging) runs and real `requests.Response` objects come back.

Scenarios are scripts: a list of states, one per status poll (a look at
``/api/submissions/<id>`` or ``/api/jobs/<id>``); the last state sticks.
States: ``queued``, ``processing``, ``waiting`` (image, job null),
``job_queued`` (job status "processing"), ``solving``, ``success``,
``failure``, ``other`` (job status "?": ended with another status),
``error`` (submission error_message), ``vanish`` (the job is deleted -- its
id answers 404 -- and replaced by a new id, solving).
"""
import email.parser
import email.policy
import hashlib
import http.client
import io
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
from astropy.io import fits
from astroquery.utils.mocks import MockResponse
from requests.adapters import HTTPAdapter
from urllib3.response import HTTPResponse

__all__ = ['FakeNova', 'Recorded', 'API_KEY', 'SERVER', 'CALIBRATION', 'ANNOTATIONS',
           'OBJECTS', 'make_wcs_header', 'attach', 'render_stars', 'grid_stars', 'write_image']

SERVER = 'http://nova.test'
#: nova API keys are 16 random lowercase letters.
API_KEY = 'qzxwvutsrponmlkj'

#: The worked example of nova-protocol.md §1.6 (W=2000, H=1500, 20"/px, 30 deg).
CALIBRATION = {'ra': 83.8, 'dec': -5.4, 'width_arcsec': 40000.0, 'height_arcsec': 30000.0,
               'radius': 6.944444444444445, 'pixscale': 20.0, 'orientation': 30.0,
               'parity': -1.0}
OBJECTS = ['Part of the constellation Orion (Ori)', 'The star Alnilam (\u03b5 Ori', '46 Ori)',
           'NGC 1976', 'Orion Nebula', 'M 42']
ANNOTATIONS = [
    {'type': 'HIP', 'names': [''], 'pixelx': 1200.25, 'pixely': 300.75, 'radius': 0.0},
    {'type': 'bright', 'names': ['Alnilam', '\u03b5 Ori'], 'pixelx': 1000.5, 'pixely': 750.5,
     'radius': 0.0, 'vmag': 1.69},
    {'type': 'ngc', 'names': ['NGC 1976'], 'pixelx': 400.0, 'pixely': 1100.0, 'radius': 45.5},
]

HOME_PAGE = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
             '<title>Astrometry.net</title>\n</head>\n<body><h1>Astrometry.net</h1>'
             '<p>Welcome</p></body>\n</html>\n')
CSRF_PAGE = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<title>403 Forbidden</title>\n</head>\n'
             '<body><h1>Forbidden (403)</h1><p>CSRF verification failed. Request aborted.</p>'
             '<p>Referer checking failed - no Referer.</p></body>\n</html>\n')
ASK_HUMAN_PAGE = ('<!DOCTYPE html>\n<html><head><title>Are you human?</title></head>'
                  '<body><form>Please confirm you are human</form></body></html>\n')
KML_TEXT = ('KMZ requests are off for now.  Post at '
            'https://groups.google.com/forum/#!forum/astrometry for help.')


def _html_404(path):
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta http-equiv="content-type" '
            'content="text/html; charset=utf-8">\n  <title>Page not found at ' + path +
            '</title>\n</head>\n<body>\n<h1>Page not found <span>(404)</span></h1>\n'
            '</body>\n</html>\n')


def _html_500(detail='Server Error'):
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n  <title>' + detail +
            ' (500)</title>\n</head>\n<body>\n<h1>Server Error (500)</h1>\n</body>\n</html>\n')


def make_wcs_header():
    """The solved WCS of the §1.6 example as nova's wcs.fits header (TAN)."""
    scale = 20.0 / 3600.0
    theta = np.radians(30.0)
    header = fits.Header()
    header['WCSAXES'] = 2
    header['CTYPE1'] = 'RA---TAN'
    header['CTYPE2'] = 'DEC--TAN'
    header['EQUINOX'] = 2000.0
    header['CRVAL1'] = 83.8
    header['CRVAL2'] = -5.4
    header['CRPIX1'] = 1000.5
    header['CRPIX2'] = 750.5
    header['CUNIT1'] = 'deg'
    header['CUNIT2'] = 'deg'
    header['CD1_1'] = -scale * np.cos(theta)
    header['CD1_2'] = scale * np.sin(theta)
    header['CD2_1'] = scale * np.sin(theta)
    header['CD2_2'] = scale * np.cos(theta)
    header['IMAGEW'] = 2000
    header['IMAGEH'] = 1500
    return header


def _wcs_file_bytes():
    hdu = fits.PrimaryHDU(header=make_wcs_header())
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def _table_bytes(columns):
    cols = [fits.Column(name, 'D', array=np.asarray(values, float)) for name, values in columns]
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(buf)
    return buf.getvalue()


def _image_bytes():
    header = make_wcs_header()
    data = np.zeros((15, 20), dtype=np.float32)
    buf = io.BytesIO()
    fits.PrimaryHDU(data=data, header=header).writeto(buf)
    return buf.getvalue()


PNG_BYTES = (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06'
             b'\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01'
             b'\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82')

#: result file route -> (gated, content maker)
FILE_ROUTES = {
    'wcs_file': (False, _wcs_file_bytes),
    'new_fits_file': (True, _image_bytes),
    'rdls_file': (False, lambda: _table_bytes([('RA', [83.8, 83.9]), ('DEC', [-5.4, -5.3])])),
    'axy_file': (False, lambda: _table_bytes([('X', [10.0, 20.0]), ('Y', [5.0, 7.0])])),
    'corr_file': (True, lambda: _table_bytes([('field_x', [10.0]), ('field_y', [5.0]),
                                              ('index_ra', [83.8]), ('index_dec', [-5.4])])),
    'image_rd_file': (False, lambda: _table_bytes([('X', [10.0]), ('Y', [5.0]), ('RA', [83.8]),
                                                   ('DEC', [-5.4])])),
    'annotated_full': (True, lambda: PNG_BYTES),
    'annotated_display': (True, lambda: PNG_BYTES),
}

JOB_STATUS = {'job_queued': 'processing', 'solving': 'solving', 'vanish': 'solving',
              'success': 'success', 'failure': 'failure', 'other': '?'}
NO_JOB_STATES = ('queued', 'processing', 'waiting', 'error')
STATES = NO_JOB_STATES + tuple(JOB_STATUS)


@dataclass
class Recorded:
    """One request the fake server received."""
    method: str
    url: str
    path: str
    params: dict = field(default_factory=dict)
    json: object = None            # decoded request-json (None when absent)
    raw_json: str | None = None
    files: dict = field(default_factory=dict)   # part name -> (filename, bytes)
    headers: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)  # cache, timeout, allow_redirects ... (_request path)
    status: int | None = None

    @property
    def cache(self):
        return self.kwargs.get('cache')


class _Fault:
    def __init__(self, pattern, response, times):
        self.pattern = re.compile(pattern)
        self.response = response
        self.times = times


class FakeNova:
    """In-memory nova server.  See the module docstring.

    Parameters
    ----------
    base : str
        The server root the client is pointed at.
    api_key : str
        The one valid API key.
    script : list of str
        Default scenario of new submissions.
    """

    def __init__(self, base=SERVER, api_key=API_KEY,
                 script=('queued', 'queued', 'solving', 'success')):
        self.base = base.rstrip('/')
        self.api_keys = {api_key: 42}
        self.api_key = api_key
        self.script = list(script)
        self.scripts = []            # FIFO of scripts for the next submissions
        self.sessions = {}           # key -> {'user': id, 'authenticated': bool}
        self.submissions = {}
        self.jobs = {}
        self.requests = []
        self.faults = []
        self.logins = 0
        self.set_cookie = True       # login answers carry the session cookie, as nova's do
        self.error_messages = {}     # next-submission error text for 'error' states
        self._next = {'sub': 1001, 'job': 5001, 'ui': 3001, 'img': 7001, 'cal': 8001}
        self.job_tags = {}           # job id -> extra user tags
        self._all_session_keys = []  # every session key ever handed out

    # -- scripting ----------------------------------------------------------
    def _new_id(self, kind):
        value = self._next[kind]
        self._next[kind] += 1
        return value

    def add_submission(self, script=None, *, user=42, error_message=None, original_filename='json-xy'):
        """Create a submission directly (as if uploaded earlier); returns its id."""
        script = list(script if script is not None else
                      (self.scripts.pop(0) if self.scripts else self.script))
        unknown = [s for s in script if s not in STATES]
        if unknown:
            raise ValueError(f'unknown states {unknown}')
        sid = self._new_id('sub')
        self.submissions[sid] = {
            'id': sid, 'user': user, 'script': script, 'step': 0, 'applied': -1,
            'started': None, 'finished': None, 'user_images': [], 'images': [],
            'job': None, 'jobs_history': [], 'calibration': None,
            'error_message': error_message or
            "Traceback (most recent call last): ... This file's type is not supported",
            'original_filename': original_filename, 'args': None, 'hash': None,
        }
        return sid

    def state(self, sid):
        sub = self.submissions[sid]
        return sub['script'][min(sub['step'], len(sub['script']) - 1)]

    def _sync(self, sub):
        """Apply the side effects of the submission's current step (once)."""
        step = min(sub['step'], len(sub['script']) - 1)
        if sub['applied'] == step:
            return sub['script'][step]
        sub['applied'] = step
        state = sub['script'][step]
        if state != 'queued':
            sub['started'] = sub['started'] or '2024-03-01 10:00:00.123456'
        else:
            sub['started'] = None      # a worker restart resets it
        if state not in ('queued', 'processing'):
            sub['finished'] = sub['finished'] or '2024-03-01 10:00:02'
        if state in ('waiting',) + tuple(JOB_STATUS) and not sub['user_images']:
            sub['user_images'] = [self._new_id('ui')]
            sub['images'] = [self._new_id('img')]
        if state == 'vanish' and sub['job'] is not None:
            old = sub['job']
            self.jobs.pop(old, None)
            sub['job'] = None
        if state in JOB_STATUS and sub['job'] is None:
            jid = self._new_id('job')
            sub['job'] = jid
            sub['jobs_history'].append(jid)
            self.jobs[jid] = {'id': jid, 'sub': sub['id']}
        if state == 'success' and sub['calibration'] is None:
            sub['calibration'] = self._new_id('cal')
        return state

    def advance(self, sid, steps=1):
        self.submissions[sid]['step'] += steps

    def job_of(self, sid):
        """The current job id of a submission (None while it has none)."""
        sub = self.submissions[sid]
        self._sync(sub)
        return sub['job']

    def solved_job(self, *, user=42):
        """A submission already solved; returns (submission id, job id)."""
        sid = self.add_submission(['success'], user=user)
        return sid, self.job_of(sid)

    def fail_next(self, pattern, response, times=1):
        """The next ``times`` requests whose path matches ``pattern`` get
        ``response``: an exception instance (raised), or (status, body[, headers])."""
        self.faults.append(_Fault(pattern, response, times))

    def expire_sessions(self, mode='deleted'):
        """Make the current sessions unusable: 'deleted' gives
        'no session with key ...', 'unauthenticated' gives 'user is not authenticated.'."""
        for key in list(self.sessions):
            if mode == 'deleted':
                del self.sessions[key]
            else:
                self.sessions[key]['authenticated'] = False

    @property
    def session_keys(self):
        return list(self._all_session_keys)

    # -- queries on what was received -----------------------------------------
    def calls(self, path_regex=None, method=None):
        out = []
        for r in self.requests:
            if path_regex is not None and not re.search(path_regex, r.path):
                continue
            if method is not None and r.method != method:
                continue
            out.append(r)
        return out

    @property
    def paths(self):
        return [r.path for r in self.requests]

    # -- transports -----------------------------------------------------------
    def request(self, method, url, params=None, data=None, headers=None, files=None,
                timeout=None, cache=None, allow_redirects=True, json=None, **kwargs):
        """Drop-in for ``BaseQuery._request``: returns a MockResponse."""
        kwargs.update(timeout=timeout, cache=cache, allow_redirects=allow_redirects)
        form = {}
        if isinstance(data, dict):
            form = {k: v for k, v in data.items()}
        elif isinstance(data, (str, bytes)):
            text = data.decode() if isinstance(data, bytes) else data
            form = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
        parts = {}
        for name, value in (files or {}).items():
            if isinstance(value, tuple):
                fname, handle = value[0], value[1]
            else:
                fname, handle = getattr(value, 'name', name), value
            content = handle.read() if hasattr(handle, 'read') else bytes(handle)
            parts[name] = (fname, content)
        query = dict(params or {})
        split = urlsplit(url)
        for k, v in parse_qs(split.query, keep_blank_values=True).items():
            query.setdefault(k, v[0])
        status, body, out_headers = self._dispatch(method, url, query, form, parts,
                                                   dict(headers or {}), kwargs)
        if isinstance(body, str):
            body = body.encode()
        return MockResponse(body, url=url, headers=dict(out_headers), status_code=status)

    def adapter(self):
        return _FakeAdapter(self)

    def mount(self, instance):
        """Serve ``instance``'s real requests session from this fake server."""
        adapter = self.adapter()
        instance._session.mount(self.base + '/', adapter)
        return adapter

    # -- the server -------------------------------------------------------------
    def _dispatch(self, method, url, query, form, parts, headers, kwargs):
        split = urlsplit(url)
        path = split.path
        raw = form.get('request-json')
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        rec = Recorded(method=method.upper(), url=url, path=path, params=dict(query),
                       json=decoded, raw_json=raw, files=parts, headers=headers, kwargs=kwargs)
        self.requests.append(rec)
        for fault in self.faults:
            if fault.times > 0 and fault.pattern.search(path):
                fault.times -= 1
                if isinstance(fault.response, BaseException):
                    rec.status = None
                    raise fault.response
                status, body, *rest = fault.response
                rec.status = status
                return status, body, (rest[0] if rest else {'Content-Type': 'text/html'})
        status, body, out_headers = self._route(rec, form)
        rec.status = status
        return status, body, out_headers

    @staticmethod
    def _json(payload, status=200, headers=None):
        out = {'Content-Type': 'text/plain'}
        out.update(headers or {})
        return status, json.dumps(payload), out

    @staticmethod
    def _error(message):
        return FakeNova._json({'status': 'error', 'errormessage': message})

    @staticmethod
    def _html(status, text, headers=None):
        out = {'Content-Type': 'text/html; charset=utf-8'}
        out.update(headers or {})
        return status, text, out

    def _home(self, rec):
        if rec.method == 'POST':
            return self._html(403, CSRF_PAGE)
        return self._html(200, HOME_PAGE)

    def _route(self, rec, form):
        path = rec.path
        if '//' in path:
            return self._home(rec)
        m = re.fullmatch(r'/api/([a-z_]+)(?:/([0-9-]+))?(?:/([a-z_]+))?/?', path)
        if m:
            return self._api(rec, form, *m.groups())
        m = re.fullmatch(r'/([a-z_]+)/([0-9-]+)/?', path)
        if m and (m.group(1) in FILE_ROUTES or m.group(1) == 'kml_file'):
            return self._file(rec, m.group(1), m.group(2))
        return self._home(rec)

    # request-json pre-checks (§0.1)
    def _prechecks(self, rec, form, *, session=True, login=True):
        raw = form.get('request-json')
        if not raw:
            return None, self._error('no json')
        try:
            args = json.loads(raw)
        except ValueError:
            args = None
        if args is None:
            return None, self._error(f'failed to parse JSON: "{raw}"')
        if not isinstance(args, dict):
            return None, self._html(500, _html_500())
        if session:
            if 'session' not in args:
                return None, self._error('no "session" in JSON.')
            key = args['session']
            if key not in self.sessions:
                return None, self._error(f'no session with key "{key}"')
            if login and not self.sessions[key]['authenticated']:
                return None, self._error('user is not authenticated.')
        return args, None

    def _api(self, rec, form, name, ident, sub):
        if ident is not None and not ident.isdigit():
            return self._html(500, _html_500('ValueError'))
        if name == 'login' and ident is None and sub is None:
            return self._login(rec, form)
        if name in ('upload', 'url_upload') and ident is None and sub is None:
            return self._upload(rec, form, url=name == 'url_upload')
        if name == 'myjobs' and ident is None:
            args, err = self._prechecks(rec, form)
            if err:
                return err
            user = self.sessions[args['session']]['user']
            jobs = [j for j, job in self.jobs.items()
                    if self.submissions[job['sub']]['user'] == user]
            return self._json({'jobs': jobs, 'status': 'success'})
        if name == 'jobs_by_tag' and ident is None:
            return self._jobs_by_tag(rec)
        if name == 'submissions' and ident is not None and sub is None:
            return self._submission_status(int(ident))
        if name == 'jobs' and ident is not None:
            return self._job(rec, int(ident), sub)
        if name == 'submission_images' and ident is None:
            args, err = self._prechecks(rec, form, login=False)
            if err:
                return err
            sid = args.get('subid')
            if sid not in self.submissions:
                return self._error('submission does not exist')
            return self._json({'status': 'success',
                               'image_ids': self.submissions[sid]['user_images']})
        return self._home(rec)

    def _login(self, rec, form):
        args, err = self._prechecks(rec, form, session=False)
        if err:
            return err
        if 'apikey' not in args or args['apikey'] is None:
            return self._error('need "apikey"')
        user = self.api_keys.get(args['apikey'])
        if user is None:
            return self._error('bad apikey')
        alphabet = string.ascii_lowercase + string.digits
        key = ''.join(secrets.choice(alphabet) for _ in range(32))
        self.sessions[key] = {'user': user, 'authenticated': True}
        self._all_session_keys.append(key)
        self.logins += 1
        headers = {}
        if self.set_cookie:
            headers['Set-Cookie'] = f'NovaAstrometrySession={key}; Path=/; HttpOnly'
        return self._json({'status': 'success', 'message': 'authenticated user: ', 'session': key},
                          headers=headers)

    def _upload(self, rec, form, url):
        args, err = self._prechecks(rec, form)
        if err:
            return err
        user = self.sessions[args['session']]['user']
        has_xy = 'x' in args and 'y' in args
        if has_xy:
            try:
                xs = [float(v) for v in args['x']]
                ys = [float(v) for v in args['y']]
            except (TypeError, ValueError):
                return self._error('Failed to parse JSON "x" and "y" values -- should be lists of floats')
            if len(xs) != len(ys):
                return self._error('"x" and "y" lists must be the same length')
        if args.get('album') is not None:
            return self._error(f'Failed to find an Album with title "{args["album"]}"')
        for key in ('scale_lower', 'scale_upper', 'scale_est', 'scale_err', 'center_ra',
                    'center_dec', 'radius', 'positional_error'):
            if key in args:
                try:
                    float(args[key])
                except (TypeError, ValueError):
                    return self._html(500, _html_500('TypeError'))
        for key in ('downsample_factor', 'tweak_order', 'parity', 'image_width', 'image_height'):
            if key in args:
                try:
                    int(args[key])
                except (TypeError, ValueError):
                    return self._html(500, _html_500('TypeError'))
        if url:
            name = str(args.get('url', '')).rstrip('/').split('/')[-1]
        elif has_xy:
            name = 'json-xy'
        elif 'file' in rec.files:
            name = rec.files['file'][0].replace('\\', '/').split('/')[-1]
        else:
            name = None
        sid = self.add_submission(user=user, original_filename=name,
                                  error_message=self.error_messages.pop('next', None))
        self.submissions[sid]['args'] = args
        answer = {'status': 'success', 'subid': sid}
        if has_xy:
            answer['hash'] = hashlib.sha1(json.dumps([args['x'], args['y']]).encode()).hexdigest()
        elif not url and 'file' in rec.files:
            answer['hash'] = hashlib.sha1(rec.files['file'][1]).hexdigest()
        return self._json(answer)

    def _submission_status(self, sid):
        sub = self.submissions.get(sid)
        if sub is None:
            return self._html(404, _html_404(f'/api/submissions/{sid}'))
        state = self._sync(sub)
        payload = {
            'user': sub['user'],
            'processing_started': str(sub['started']),
            'processing_finished': str(sub['finished']),
            'user_images': list(sub['user_images']),
            'images': list(sub['images']),
            'jobs': [sub['job']] if sub['user_images'] else [],
            'job_calibrations': ([[sub['job'], sub['calibration']]]
                                 if state == 'success' else []),
        }
        if state == 'error':
            payload['user_images'] = []
            payload['images'] = []
            payload['jobs'] = []
            payload['error_message'] = sub['error_message'][-252:]
        sub['step'] += 1
        return self._json(payload)

    def _job_state(self, jid):
        job = self.jobs.get(jid)
        if job is None:
            return None, None
        sub = self.submissions[job['sub']]
        state = self._sync(sub)
        if jid not in self.jobs:       # it vanished on this very step
            return None, None
        return sub, state

    def _job(self, rec, jid, what):
        sub, state = self._job_state(jid)
        if sub is None:
            return self._html(404, _html_404(rec.path))
        status = JOB_STATUS.get(state, 'solving')
        solved = status == 'success'
        if what is None:
            sub['step'] += 1
            return self._json({'status': status})
        if what == 'calibration':
            if not solved:
                return self._json({'error': f'no calibration data available for job {jid}'})
            return self._json(dict(CALIBRATION))
        if what == 'annotations':
            if not solved:
                return self._json({'error': f'no calibration data available for job {jid}'})
            items = [dict(a) for a in ANNOTATIONS]
            nbright = rec.params.get('nbright')
            if nbright is not None:
                try:
                    n = int(nbright)
                except ValueError:
                    return self._html(500, _html_500('ValueError'))
                bright = [a for a in items if a['type'] == 'bright'][:n]
                items = [a for a in items if a['type'] != 'bright'] + bright
            return self._json({'annotations': items})
        if what == 'objects_in_field':
            return self._json({'objects_in_field': list(OBJECTS) if solved else []})
        if what == 'machine_tags':
            return self._json({'tags': list(OBJECTS) if solved else []})
        if what == 'tags':
            tags = (list(OBJECTS) if solved else []) + self.job_tags.get(jid, [])
            return self._json({'tags': tags})
        if what == 'info':
            tags = (list(OBJECTS) if solved else []) + self.job_tags.get(jid, [])
            payload = {'objects_in_field': list(OBJECTS) if solved else [],
                       'machine_tags': list(OBJECTS) if solved else [],
                       'tags': tags, 'status': status,
                       'original_filename': sub['original_filename']}
            if solved:
                payload['calibration'] = {k: CALIBRATION[k] for k in
                                          ('ra', 'dec', 'radius', 'pixscale', 'orientation',
                                           'parity')}
            return self._json(payload)
        return self._home(rec)

    def _jobs_by_tag(self, rec):
        query = rec.params.get('query')
        exact = bool(rec.params.get('exact'))
        if query is None:
            return self._html(500, _html_500('KeyError'))
        found = []
        for jid in sorted(self.jobs, reverse=True):
            sub, state = self._job_state(jid)
            tags = (list(OBJECTS) if state == 'success' else []) + self.job_tags.get(jid, [])
            if exact:
                hit = any(t.lower() == query.lower() for t in tags)
            else:
                hit = any(query.lower() in t.lower() for t in tags)
            if hit:
                found.append(jid)
        return self._json({'job_ids': found})

    def _file(self, rec, route, ident):
        if not ident.isdigit():
            return self._html(500, _html_500('ValueError'))
        jid = int(ident)
        if route == 'kml_file':
            return 200, KML_TEXT, {'Content-Type': 'text/html; charset=utf-8'}
        gated, make = FILE_ROUTES[route]
        if gated and not any(k.lower() == 'referer' for k in rec.headers):
            return self._html(302, ASK_HUMAN_PAGE,
                              {'Location': f'/ask_human?next={rec.path}'})
        sub, state = self._job_state(jid)
        if sub is None:
            return self._html(404, _html_404(rec.path))
        if JOB_STATUS.get(state) != 'success':
            return self._html(500, _html_500('FileNotFoundError'))
        content = make()
        ctype = 'image/png' if route.startswith('annotated') else 'application/fits'
        return 200, content, {'Content-Type': ctype}


class _OriginalResponse:
    """Enough of http.client.HTTPResponse for requests' cookie extraction."""

    def __init__(self, headers):
        self.msg = http.client.HTTPMessage()
        for key, value in headers.items():
            self.msg[key] = value

    def isclosed(self):
        return True

    def close(self):
        pass


class _FakeAdapter(HTTPAdapter):
    """A requests transport that answers from a FakeNova."""

    def __init__(self, fake):
        super().__init__()
        self.fake = fake

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        headers = dict(request.headers)
        ctype = headers.get('Content-Type', '')
        body = request.body or b''
        if isinstance(body, str):
            body = body.encode()
        form, parts = {}, {}
        if ctype.startswith('application/x-www-form-urlencoded'):
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        elif ctype.startswith('multipart/form-data'):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b'Content-Type: ' + ctype.encode() + b'\r\n\r\n' + body)
            for part in message.iter_parts():
                name = part.get_param('name', header='content-disposition')
                filename = part.get_filename()
                payload = part.get_payload(decode=True)
                if filename is None:
                    form[name] = payload.decode()
                else:
                    parts[name] = (filename, payload)
        split = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        # an injected requests exception propagates as a transport error would
        status, content, out_headers = self.fake._dispatch(
            request.method, request.url, query, form, parts, headers,
            {'timeout': timeout, 'transport': 'adapter'})
        if isinstance(content, str):
            content = content.encode()
        out_headers = dict(out_headers)
        out_headers['Content-Length'] = str(len(content))
        raw = HTTPResponse(body=io.BytesIO(content), headers=out_headers, status=status,
                           reason=http.client.responses.get(status, ''), preload_content=False,
                           decode_content=False, original_response=_OriginalResponse(out_headers))
        return self.build_response(request, raw)


def attach(instance, fake):
    """Route ``instance._request`` to ``fake`` (MockResponse transport)."""
    instance._request = fake.request
    return instance


# -- synthetic images for source-extraction and upload tests ---------------------------
def render_stars(shape, stars, *, sigma=1.5, background=100.0, noise=2.0, seed=0):
    """An image of Gaussian stars.

    ``stars`` holds (x, y, flux) with x, y **0-based** numpy pixel coordinates
    (column, row); the FITS 1-based position of a star is (x + 1, y + 1).
    """
    rng = np.random.default_rng(seed)
    image = rng.normal(background, noise, shape)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    norm = 2 * np.pi * sigma ** 2
    for x, y, flux in stars:
        x0, y0 = int(round(x)), int(round(y))
        half = int(np.ceil(5 * sigma))
        sl = (slice(max(0, y0 - half), y0 + half + 1), slice(max(0, x0 - half), x0 + half + 1))
        image[sl] += flux / norm * np.exp(-((xx[sl] - x) ** 2 + (yy[sl] - y) ** 2) / (2 * sigma ** 2))
    return image


def grid_stars(n_side, spacing, *, offset=12.0, flux0=2e5, seed=1):
    """n_side**2 well separated stars with distinct fluxes (0-based x, y, flux)."""
    rng = np.random.default_rng(seed)
    stars = []
    fluxes = flux0 * np.linspace(1.0, 0.05, n_side * n_side)
    rng.shuffle(fluxes)
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            dx, dy = rng.uniform(-0.45, 0.45, 2)
            stars.append((offset + j * spacing + dx, offset + i * spacing + dy, float(fluxes[k])))
            k += 1
    return stars


def write_image(path, data, header=None):
    fits.PrimaryHDU(data=np.asarray(data, dtype=np.float32), header=header).writeto(path)
    return path
