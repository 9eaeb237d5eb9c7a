"""The server's web pages, as nova.astrometry.net has them: an upload form, the
submissions with their live status, and a page per job (annotated image,
calibration, objects in the field, result files).

Who may submit
    With API keys configured (``--api-key``) the form is for signed-in users:
    ``/signin`` takes an API key, checks it as ``/api/login`` does, and answers
    with the same session cookie as an API login.  The key is never stored,
    echoed into a page or logged.  Without keys (a loopback-only server)
    anyone may submit, as one shared anonymous user.
Cross-site requests
    Every form carries ``HMAC(server secret, nonce)`` where the nonce lives in
    an HttpOnly cookie (a signed double-submit cookie): a page of another site
    can neither read the nonce nor forge the token for a nonce it planted.
    Requests whose ``Origin`` or ``Sec-Fetch-Site`` name another site are
    refused before their body is read.  The forms post to their own routes;
    a POST to any other page still gets nova's CSRF 403.
Privacy and escaping
    Lists and pages show public submissions and the viewer's own.  Every
    user-provided string is HTML-escaped; the script sets text, never markup,
    and the Content-Security-Policy allows no inline script.
"""
import hmac
import html
import json
import os
import re
import secrets
import string
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import Route

from .app import (FORM_MEMORY, LOG_FILES, SESSION_COOKIE, ApiError, BadRequest, Endpoint, NotFound,
                  RateLimited, path_id, read_form)
from .store import SESSION_AGE

__all__ = ['WebPages', 'form_args']

ASSETS = Path(__file__).with_name('web')
STATIC = {'style.css': 'text/css; charset=utf-8', 'app.js': 'text/javascript; charset=utf-8'}
CSRF_COOKIE, CSRF_FIELD = 'aq_csrf', 'csrf_token'
#: The "API key" of the shared user of a server without keys (not a nova key's shape).
ANONYMOUS = 'anonymous web user'
LIST_LENGTH = 50
HEADERS = {'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                      "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
           'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'same-origin',
           'Cache-Control': 'no-store'}
SCALE_UNITS = [('degwidth', 'degrees wide'), ('arcminwidth', 'arcminutes wide'),
               ('arcsecperpix', 'arcseconds per pixel'), ('focalmm', 'focal length (35 mm equiv., mm)')]
PARITIES = [('2', 'try both'), ('0', 'normal (pos)'), ('1', 'mirrored (neg)')]
FORM_FIELDS = ('url', 'scale_units', 'scale_lower', 'scale_upper', 'center_ra', 'center_dec',
               'radius', 'parity', 'downsample_factor', 'tweak_order', 'publicly_visible')
LABELS = {'url': 'URL', 'scale_units': 'Scale units', 'scale_lower': 'Lower scale bound',
          'scale_upper': 'Upper scale bound', 'center_ra': 'Centre RA', 'center_dec': 'Centre Dec',
          'radius': 'Radius', 'parity': 'Parity', 'downsample_factor': 'Downsample',
          'tweak_order': 'SIP tweak order', 'publicly_visible': 'Public'}
#: nova's job status -> (badge class, word shown)
JOB_WORDS = {'processing': ('queued', 'queued'), 'solving': ('solving', 'solving'),
             'success': ('success', 'success'), 'failure': ('failure', 'failure'), '?': ('failure', '?')}
#: (route, what it is, file name) of the job page's download links
DOWNLOADS = [('wcs_file', 'WCS header', 'wcs.fits'),
             ('new_fits_file', 'image with the WCS', 'new-image.fits'),
             ('corr_file', 'matched stars', 'corr.fits'),
             ('rdls_file', 'index stars in the field', 'rdls.fits'),
             ('axy_file', 'detected sources', 'axy.fits'),
             ('image_rd_file', 'sources with RA, Dec', 'image-radec.fits'),
             ('joblog', 'solver log', 'log')]
_NUMBER = re.compile(r'[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?')


class _Refused(Exception):
    """A POST refused as cross-site (nova's CSRF 403), with the reason."""

    def __init__(self, ctx, reason):
        super().__init__(reason)
        self.ctx = ctx


def esc(value):
    """HTML-escape any value (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


@lru_cache(maxsize=None)
def _template(name):
    return string.Template((ASSETS / name).read_text(encoding='utf-8'))


def _labelled(message):
    """A settings error with the form's label instead of nova's argument name."""
    key, sep, rest = message.partition(': ')
    return f'{LABELS[key]}: {rest}' if sep and key in LABELS else message


def _degrees(text, ra):
    """Degrees from decimal degrees (left for nova's cast and range check) or
    sexagesimal (h:m:s for RA, d:m:s for Dec)."""
    if _NUMBER.fullmatch(text):
        return text
    import astropy.units as u
    from astropy.coordinates import Angle
    try:
        return float(Angle(text, unit=u.hourangle if ra else u.deg).degree)
    except Exception:
        raise ValueError(f'{"Centre RA" if ra else "Centre Dec"}: {text!r} is neither degrees '
                         f'nor {"h:m:s" if ra else "d:m:s"}') from None


def form_args(form):
    """nova submission arguments from the web form's fields.

    Parameters
    ----------
    form : dict
        Field name -> text, as posted.

    Returns
    -------
    data : dict
        request-json-like arguments (nova casts and checks them).
    errors : list of str
        What the form itself gets wrong (empty when nothing).
    """
    def field(name):
        return str(form.get(name) or '').strip()
    data, errors = {'publicly_visible': 'y' if field('publicly_visible') == 'y' else 'n'}, []
    if field('url'):
        data['url'] = field('url')
    lower, upper = field('scale_lower'), field('scale_upper')
    if lower or upper:
        data.update(scale_type='ul', scale_units=field('scale_units') or 'degwidth')
        data.update({k: v for k, v in (('scale_lower', lower), ('scale_upper', upper)) if v})
        try:
            if lower and upper and float(lower) > float(upper):
                errors.append('The lower scale bound is larger than the upper one.')
        except ValueError:
            pass        # nova's cast names the bad number
    position = [field(k) for k in ('center_ra', 'center_dec', 'radius')]
    if any(position) and not all(position):
        errors.append('Give the centre RA, Dec and radius together, or none of them '
                      '(astrometry.net needs all three).')
    elif all(position):
        try:
            data.update(center_ra=_degrees(position[0], True), center_dec=_degrees(position[1], False),
                        radius=position[2])
        except ValueError as exc:
            errors.append(str(exc))
    for name in ('parity', 'downsample_factor', 'tweak_order'):
        if field(name):
            data[name] = field(name)
    return data, errors


class WebPages:
    """The web pages over a `~astrometry_query.server.app.NovaApp`."""

    def __init__(self, nova):
        self.nova = nova
        self._secret = self._anonymous = None

    @property
    def store(self):
        return self.nova.store

    def routes(self):
        """Starlette routes of the pages, each with nova's optional trailing slash."""
        def page(fn):       # other methods get nova's catch-all: a POST its CSRF 403
            async def run(request):
                get = request.method in ('GET', 'HEAD')
                return await (fn(request) if get else self.nova.home(request))
            return run

        def form(fn):       # a GET shows the home page; a refused POST nova's CSRF 403
            async def run(request):
                if request.method != 'POST':
                    return await self.home(request)
                try:
                    return await fn(request)
                except _Refused as exc:
                    return self._page(exc.ctx, '403 Forbidden', '<h2>CSRF verification failed. '
                                      'Request aborted.</h2><p>Reason given for failure: '
                                      f'{esc(exc)}</p><p><a href="/">Reload the form</a> and '
                                      'send it again.</p>', 403)
                except BadRequest as exc:       # too large, or not a readable form
                    large = exc.status == 413 and fn == self.upload
                    why = f'the limit is {self.nova.max_upload / 1e6:g} MB' if large else 'unreadable'
                    return await self.home(request, [f'The upload was refused: {why}.'],
                                           status=exc.status)
            return run
        routes = [('/upload', form(self.upload)), ('/signin', form(self.signin)),
                  ('/signout', form(self.signout)), ('/status/{id:nova_id}', page(self.status)),
                  ('/job/{id:nova_id}', page(self.job)),
                  ('/web/submissions', page(self.submissions_json)),
                  ('/web/submissions/{id:nova_id}', page(self.submissions_json)),
                  ('/web/static/{name}', page(self.static))]
        return [Route(path + '{_s:opt_slash}', Endpoint(fn)) for path, fn in routes]

    # -- users, sessions and CSRF --------------------------------------------------------
    def _key(self):
        """The HMAC secret, kept (owner-only) in the data directory so that open forms
        stay valid across restarts."""
        if self._secret is None:
            path = Path(self.nova.data_dir) / 'web-secret'
            try:
                secret = path.read_bytes()
            except FileNotFoundError:
                secret = b''
            if len(secret) < 32:        # new, or cut short by a crash: never a weak key
                secret, part = secrets.token_bytes(32), path.with_name('web-secret.part')
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, 'wb') as f:
                    f.write(secret)
                os.replace(part, path)
            self._secret = secret
        return self._secret

    def _token(self, nonce):
        return hmac.new(self._key(), nonce.encode(), 'sha256').hexdigest()

    def _session_user(self, key):
        """The user of a live signed-in session, without sliding its expiry (polls read often)."""
        return self.store.session_user(key)

    def _anonymous_user(self):
        if self._anonymous is None:
            self._anonymous = self.store.user_for_key(ANONYMOUS)[0]
        return self._anonymous

    async def _context(self, request):
        """Who is asking (``user`` None: may not submit) and the CSRF nonce and token."""
        key = request.cookies.get(SESSION_COOKIE, '')[:100]
        user = await run_in_threadpool(self._session_user, key) if key else None
        signed_in = user is not None
        if user is None and not self.nova.api_keys:
            user = await run_in_threadpool(self._anonymous_user)
        nonce = request.cookies.get(CSRF_COOKIE, '')
        fresh = not re.fullmatch('[0-9a-f]{32}', nonce)
        nonce = secrets.token_hex(16) if fresh else nonce
        return SimpleNamespace(request=request, user=user, signed_in=signed_in, nonce=nonce,
                               fresh=fresh, token=self._token(nonce))

    @staticmethod
    def _cross_site(request):
        """Why a POST looks sent by another site ('' when it does not)."""
        site = request.headers.get('sec-fetch-site')
        origin = request.headers.get('origin')
        if site and site not in ('same-origin', 'none'):
            return f'the form was sent from another site (Sec-Fetch-Site: {site}).'
        # Behind a proxy that rewrites Host, the public name is in X-Forwarded-Host
        # (which no web page can set on a cross-site form post).
        hosts = {request.headers.get('host'), request.headers.get('x-forwarded-host')}
        if origin and urlparse(origin).netloc not in hosts - {None}:
            return 'the form was sent from another site (Origin does not match).'
        return ''

    async def _checked_post(self, request, max_body=FORM_MEMORY):
        """(context, form, files) of a same-site POST with a valid token, else `_Refused`.
        The body is read only after the checks of the headers."""
        ctx = await self._context(request)
        reason = self._cross_site(request) or ('CSRF cookie not set.' if ctx.fresh else '')
        if reason:
            raise _Refused(ctx, reason)
        form, files = await read_form(request, max_body)
        if not hmac.compare_digest(str(form.get(CSRF_FIELD, '')), ctx.token):
            raise _Refused(ctx, 'CSRF token missing or incorrect.')
        return ctx, form, files

    # -- pages -----------------------------------------------------------------------------
    def _page(self, ctx, title, content, status=200, head=''):
        if ctx.signed_in:
            account = (f'<div><span>Signed in</span><form method="post" action="/signout">'
                       f'<input type="hidden" name="{CSRF_FIELD}" value="{ctx.token}">'
                       '<button type="submit">Sign out</button></form></div>')
        elif self.nova.api_keys:
            account = '<div><a href="/#signin-heading">Sign in</a></div>'
        else:
            account = '<div><span>Open server: no sign-in needed</span></div>'
        api_url = str(ctx.request.base_url).rstrip('/') + '/api/'
        body = _template('base.html').substitute(title=esc(title), head=head, account=account,
                                                 content=content, api_url=esc(api_url))
        resp = HTMLResponse(body, status_code=status, headers=HEADERS)
        if ctx.fresh:
            resp.set_cookie(CSRF_COOKIE, ctx.nonce, httponly=True, samesite='lax', path='/',
                            secure=ctx.request.url.scheme == 'https')
        return resp

    def _form_html(self, ctx, errors, values):
        errors_html = ''
        if errors:
            what = 'You are not signed in' if ctx.user is None else 'The image was not submitted'
            errors_html = (f'<div class="errors" role="alert"><h3>{what}</h3><ul>'
                           + ''.join(f'<li>{esc(e)}</li>' for e in errors) + '</ul></div>')
        if ctx.user is None:
            return _template('signin.html').substitute(errors=errors_html, csrf=ctx.token)
        values = values or {'scale_units': 'degwidth', 'parity': '2', 'publicly_visible': ''}

        def options(choices, chosen):
            return ''.join(f'<option value="{v}"{" selected" if v == chosen else ""}>{esc(t)}</option>'
                           for v, t in choices)
        fields = {k: esc(values.get(k) or '') for k in FORM_FIELDS}
        fields.update(scale_units=options(SCALE_UNITS, values.get('scale_units')),
                      parity=options(PARITIES, values.get('parity')),
                      public=' checked' if values.get('publicly_visible') == 'y' else '')
        del fields['publicly_visible']
        return _template('upload.html').substitute(errors=errors_html, csrf=ctx.token, **fields)

    async def home(self, request, errors=(), values=None, status=200):
        """The upload (or sign-in) form and the recent submissions; nova's catch-all GET."""
        ctx = await self._context(request)
        notice = ''
        target = request.query_params.get('next', '')
        if request.url.path.rstrip('/') == '/ask_human' and re.fullmatch(r'/(?![/\\])[^\\\s]*', target):
            notice = ('<p class="notice">Result files are served to visitors coming from a page of '
                      f'this server: <a href="{esc(target)}">continue to {esc(target)}</a>.</p>')
        subs = await run_in_threadpool(self._summaries, ctx.user)
        content = (notice + self._form_html(ctx, errors, values)
                   + self._table_html(subs, '/web/submissions', 'Recent submissions',
                                      'Public submissions and yours, newest first.'))
        return self._page(ctx, 'Plate solving', content, status,
                          _refresh(all(s['final'] for s in subs)))

    async def upload(self, request):
        """POST /upload: the form's submission, through the API's code path."""
        if (await self._context(request)).user is None:       # before reading what strangers send
            return await self.home(request, ['Sign in with your API key to submit images.'], status=403)
        ctx, form, files = await self._checked_post(request, self.nova.max_upload)
        values = {k: str(form.get(k, '')) for k in FORM_FIELDS}
        data, errors = form_args(form)
        file = files.get('file')
        has_file = bool(file is not None and file.filename)
        if has_file == ('url' in data):
            errors.insert(0, 'Give an image file or its URL, not both.' if has_file
                          else 'Choose an image file or give its URL.')
        if errors:
            return await self.home(request, errors, values, 400)
        try:
            if self.nova.limiter is not None:
                self.nova.limiter.check(ctx.user)
            out = await self.nova.create_submission(data, ctx.user, files, url_upload=not has_file)
        except RateLimited as exc:
            return await self.home(request, [f'Too many submissions: try again in {exc.retry_after} s.'],
                                   values, 429)
        except ApiError as exc:
            return await self.home(request, [_labelled(str(exc))], values, 400)
        return RedirectResponse(f'/status/{out["subid"]}', status_code=303)

    async def signin(self, request):
        """POST /signin: an API key for a session cookie (the key is neither kept nor shown)."""
        _, form, _ = await self._checked_post(request)
        key = str(form.get('apikey', ''))
        try:
            if self.nova.limiter is not None:
                self.nova.limiter.check(('login', request.client.host if request.client else ''))
        except RateLimited as exc:
            return await self.home(request, [f'Too many attempts: try again in {exc.retry_after} s.'],
                                   status=429)
        known = self.nova.api_keys
        if not (any(hmac.compare_digest(key.encode(), k) for k in known) if known else key):
            return await self.home(request, ['This API key is not accepted here.'], status=403)
        user, _ = await run_in_threadpool(self.store.user_for_key, key)
        session = await run_in_threadpool(self.store.create_session, user)
        resp = RedirectResponse('/', status_code=303)
        resp.set_cookie(SESSION_COOKIE, session, max_age=int(SESSION_AGE), httponly=True, samesite='lax',
                        secure=request.url.scheme == 'https')
        return resp

    async def signout(self, request):
        """POST /signout: end the session, server side too."""
        await self._checked_post(request)
        key = request.cookies.get(SESSION_COOKIE)
        if key:
            await run_in_threadpool(self.store.end_session, key)
        resp = RedirectResponse('/', status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    async def status(self, request):
        """GET /status/<subid>: one submission and its jobs, live."""
        sub_id = path_id(request)
        ctx = await self._context(request)
        subs = await run_in_threadpool(self._summaries, ctx.user, sub_id)
        if not subs:
            raise NotFound()
        sub = subs[0]
        facts = [('Input', f'<span class="name">{esc(sub["name"])}</span>'),
                 ('Submitted', esc(sub['submitted'])),
                 ('Processing started', f'<span id="sub-started">{esc(sub["started"])}</span>'),
                 ('Processing finished', f'<span id="sub-finished">{esc(sub["finished"])}</span>'),
                 ('Visible to', 'everyone' if sub['public'] else 'you')]
        content = (_facts_html(facts)
                   + self._table_html(subs, f'/web/submissions/{sub_id}', 'Status',
                                      'This submission; updated live.'))
        return self._page(ctx, f'Submission {sub_id}', content, head=_refresh(sub['final']))

    async def job(self, request):
        """GET /job/<jobid>: annotated image, calibration, objects, downloads or the error."""
        job_id = path_id(request)
        ctx = await self._context(request)
        owner = await run_in_threadpool(self.store.job_submission, job_id)
        if owner is None or not (owner['user_id'] == ctx.user or _public(owner['args'])):
            raise NotFound()
        job = await self.nova._job(request, objects=True)
        from ..local import jobs as local_jobs
        job_dir = Path(self.nova.data_dir) / 'jobs' / str(job_id)
        result = await run_in_threadpool(local_jobs.read_result, job_dir) or {}
        kind, word = JOB_WORDS.get(job['status'], ('failure', job['status']))
        parts = [f'<p class="sub">From submission <a href="/status/{owner["id"]}">{owner["id"]}</a>: '
                 f'<span class="name">{esc(job["original_filename"])}</span></p>',
                 f'<p>Status: <span class="badge s-{kind}" data-job="{job_id}" '
                 f'data-status="{esc(job["status"])}">{esc(word)}</span></p>',
                 '<p id="live-note" class="sr-only" aria-live="polite"></p>']
        if job['status'] == 'failure':
            parts.append('<h2>Why it failed</h2><pre class="error">'
                         f'{esc(result.get("error") or "The solver found no solution.")}</pre>')
        if job['calibration'] is not None:
            parts.append(_solution_html(job_id, job, result))
        if job['status'] in ('success', 'failure'):
            solved = (job_dir / local_jobs.RESULT_FILES['wcs']).is_file()
            # Files a failed job may still have; the others come with a solution.
            have = {'axy_file': (job_dir / local_jobs.RESULT_FILES['axy']).is_file(),
                    'joblog': any((job_dir / n).is_file() for n in LOG_FILES['log']),
                    'new_fits_file': solved and not result.get('source_list')}
            links = ''.join(f'<li><a href="/{r}/{job_id}">{name}</a> <span class="sub">{what}</span></li>'
                            for r, what, name in DOWNLOADS if have.get(r, solved))
            if links:
                parts.append(f'<h2>Downloads</h2><ul class="downloads">{links}</ul>')
        return self._page(ctx, f'Job {job_id}', ''.join(parts),
                          head=_refresh(job['status'] in ('success', 'failure', '?')))

    async def submissions_json(self, request):
        """GET /web/submissions[/<id>]: what the lists show, for the page's script."""
        ctx = await self._context(request)
        one = path_id(request) if 'id' in request.path_params else None
        subs = await run_in_threadpool(self._summaries, ctx.user, one)
        if one is not None and not subs:
            raise NotFound()
        return JSONResponse({'submissions': subs, 'final': all(s['final'] for s in subs)},
                            headers=HEADERS)

    async def static(self, request):
        name = request.path_params['name']
        if name not in STATIC:
            raise NotFound()
        return FileResponse(ASSETS / name, media_type=STATIC[name],
                            headers={'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff'})

    # -- submissions -----------------------------------------------------------------------
    def _summaries(self, user, sub_id=None):
        """The submissions ``user`` may see (public ones and their own), newest first,
        each with the badges the lists show."""
        rows = self.store.visible_submissions(user, sub_id, LIST_LENGTH)
        statuses = [self.store.submission_status(row['id']) for row in rows]
        states = self.store.job_states(j for s in statuses for j in s['jobs'] if j is not None)
        return [_summary(row, status, states) for row, status in zip(rows, statuses)]

    def _table_html(self, subs, poll, heading, caption):
        rows = ''.join(_row_html(s) for s in subs) or (
            '<tr><td class="empty" colspan="4">No submissions yet.</td></tr>')
        return _template('table.html').substitute(
            heading=esc(heading), poll=esc(poll), caption=esc(caption), rows=rows,
            final='yes' if all(s['final'] for s in subs) else 'no')


def _public(args):
    try:
        return json.loads(args).get('publicly_visible') == 'y'
    except (TypeError, ValueError, AttributeError):
        return False


def _summary(row, status, states):
    """One submission as the lists show it: JSON-ready, the same for page and script."""
    def badge(kind, text, href=None):
        return {'kind': kind, 'text': text, 'href': href}
    error, final = status.get('error_message', ''), True
    if row['processing_started'] is None:
        badges, final = [badge('queued', 'queued')], False
    elif row['processing_finished'] is None:
        badges, final = [badge('processing', 'reading the image')], False
    elif error or not status['jobs']:
        badges = [badge('failed', 'failed')]
    else:
        badges = []
        for job in status['jobs']:
            if job is None:
                badges.append(badge('waiting', 'waiting for a solver'))
                final = False
                continue
            kind, word = JOB_WORDS.get(states.get(job), ('failure', '?'))
            badges.append(badge(kind, f'job {job}: {word}', f'/job/{job}'))
            final = final and kind in ('success', 'failure')
    stamp = (row['submitted_on'] or '')[:19]
    return {'id': row['id'], 'href': f'/status/{row["id"]}',
            'name': row['original_filename'] or row['url'] or '(no data)', 'submitted': stamp,
            'started': (row['processing_started'] or 'not yet')[:19],
            'finished': (row['processing_finished'] or 'not yet')[:19],
            'public': _public(row['args']), 'badges': badges, 'error': error, 'final': final}


def _row_html(sub):
    """A list row; app.js builds the same from the JSON."""
    cells = ''.join((f'<a class="badge s-{b["kind"]}" href="{esc(b["href"])}">{esc(b["text"])}</a>'
                     if b['href'] else f'<span class="badge s-{b["kind"]}">{esc(b["text"])}</span>')
                    for b in sub['badges'])
    if sub['error']:
        cells += f'<span class="error-text">{esc(sub["error"])}</span>'
    return (f'<tr data-sub="{sub["id"]}"><td><a href="{sub["href"]}">{sub["id"]}</a></td>'
            f'<td class="name">{esc(sub["name"])}</td><td>{esc(sub["submitted"])}</td>'
            f'<td class="state">{cells}</td></tr>')


def _refresh(final):
    """Without the script, pages of unfinished work reload themselves."""
    return '' if final else '<noscript><meta http-equiv="refresh" content="5"></noscript>'


def _facts_html(facts):
    return '<dl class="facts">' + ''.join(f'<dt>{t}</dt><dd>{v}</dd>' for t, v in facts) + '</dl>'


def _solution_html(job_id, job, result):
    """Annotated image, calibration and objects in the field of a calibrated job."""
    import astropy.units as u
    from astropy.coordinates import Angle
    cal = job['calibration']
    ra, dec = cal['ra'], cal['dec']
    ra_text = Angle(ra, u.deg).to_string(unit=u.hourangle, sep='hms', precision=2, pad=True)
    dec_text = Angle(dec, u.deg).to_string(unit=u.deg, sep=('°', '′', '″'), precision=1, pad=True,
                                           alwayssign=True)
    width, height = cal.get('width_arcsec'), cal.get('height_arcsec')
    if width and height:
        unit, scale = ((' degrees', 3600.0) if max(width, height) >= 7200 else
                       (' arcmin', 60.0) if max(width, height) >= 120 else (' arcsec', 1.0))
        digits = {3600.0: 2, 60.0: 1, 1.0: 0}[scale]
        size = f'{width / scale:.{digits}f} × {height / scale:.{digits}f}{unit}'
    else:
        size = 'unknown'
    w, h = result.get('width'), result.get('height')
    objects = ''.join(f'<li>{esc(o)}</li>' for o in _whole_names(job['objects']))
    return _template('solution.html').substitute(
        job_id=job_id, size=f' width="{int(w)}" height="{int(h)}"' if w and h else '',
        ra=f'{ra:.8f}', ra_hms=esc(ra_text), ra_deg=f'{ra:.5f}',
        dec=f'{dec:.8f}', dec_dms=esc(dec_text), dec_deg=f'{dec:+.5f}',
        pixscale=f'{cal["pixscale"]:.6f}', pixscale_text=f'{cal["pixscale"]:.3f}',
        width=esc(width), height=esc(height), size_text=esc(size),
        radius=f'{cal["radius"]:.6f}', radius_text=f'{cal["radius"]:.3f}',
        orientation=f'{cal["orientation"]:.4f}', orientation_text=f'{cal["orientation"]:.2f}',
        parity=f'{cal["parity"]:g}',
        parity_text='normal (pos: not mirrored)' if cal['parity'] < 0 else 'mirrored (neg)',
        objects=objects or '<li>None listed.</li>')


def _whole_names(objects):
    """nova's objects in field are fragments split on "/" ("The star Alcyone (η Tau",
    "25 Tau)"): join those whose parentheses only balance together, for reading."""
    out, open_ = [], 0
    for name in objects:
        if open_ > 0 and out:
            out[-1] += ' / ' + name
        else:
            out.append(name)
        open_ = max(0, open_ + name.count('(') - name.count(')'))
    return out
