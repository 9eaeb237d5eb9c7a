"""The server's web pages, as nova.astrometry.net has them: an upload form, the
submissions with their live status, and a page per job (annotated image,
calibration, objects in the field, result files).

This module routes the pages and answers them; the rest lives next to it, one
responsibility a module:

* `~astrometry_query.server.web_auth`: who may submit (sign-in with an API key,
  or one anonymous user on a server without keys), sessions and the CSRF checks;
* `~astrometry_query.server.web_forms`: the upload form's fields, into nova's
  submission arguments (`form_args`);
* `~astrometry_query.server.web_summaries`: what the live lists show (public
  submissions and the viewer's own);
* `~astrometry_query.server.web_html`: the HTML, every user-provided string
  escaped, from the templates in the ``web/`` directory.

The forms post to their own routes.  The pages end with nova's catch-all: any
other path outside ``/api/`` is the home page (GET) or, as on nova, Django's
CSRF 403 (POST).
"""
import re
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.routing import Route

from ..jobs.files import RESULT_KINDS, read_result
from .http import (SESSION_COOKIE, ApiError, BadRequest, Endpoint, NotFound, RateLimited, path_id,
                   plain_page)
from .store import SESSION_AGE
from .web_auth import Refused, WebAuth
from .web_forms import FORM_FIELDS, form_args, labelled
from .web_html import (ASSETS, HEADERS, command_html, esc, extraction_html, facts_html, form_html,
                       page, refresh, solution_html, table_html)
from .web_summaries import JOB_WORDS, public, summaries

__all__ = ['WebPages', 'form_args']

STATIC = {'style.css': 'text/css; charset=utf-8', 'app.js': 'text/javascript; charset=utf-8'}
#: (route, what it is, file name) of the job page's download links.
DOWNLOADS = [(k.routes[0], k.label, k.download_name) for k in RESULT_KINDS.values() if k.listed]


class WebPages:
    """The web pages over a `~astrometry_query.server.app.NovaApp` (its store, keys,
    limits and submissions), routed after its API (`routes`)."""

    def __init__(self, nova):
        self.nova = nova
        self.auth = WebAuth(nova)

    @property
    def store(self):
        return self.nova.store

    def routes(self):
        """Starlette routes of the pages, each with nova's optional trailing slash, and
        last nova's catch-all (`catch_all`)."""
        def page_route(fn):     # other methods get nova's catch-all: a POST its CSRF 403
            async def run(request):
                get = request.method in ('GET', 'HEAD')
                return await (fn(request) if get else self.catch_all(request))
            return run

        def form_route(fn):     # a GET shows the home page; a refused POST nova's CSRF 403
            async def run(request):
                if request.method != 'POST':
                    return await self.home(request)
                try:
                    return await fn(request)
                except Refused as exc:
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
        routes = [('/upload', form_route(self.upload)), ('/signin', form_route(self.signin)),
                  ('/signout', form_route(self.signout)), ('/status/{id:nova_id}', page_route(self.status)),
                  ('/job/{id:nova_id}', page_route(self.job)),
                  ('/web/submissions', page_route(self.submissions_json)),
                  ('/web/submissions/{id:nova_id}', page_route(self.submissions_json)),
                  ('/web/static/{name}', page_route(self.static))]
        return ([Route(path + '{_s:opt_slash}', Endpoint(fn)) for path, fn in routes]
                + [Route('/{_rest:path}', Endpoint(self.catch_all))])

    async def catch_all(self, request):
        """nova's answer to any other path: the home page (GET; also /ask_human, the
        result files' gate), else Django's CSRF 403 (nova's catch-all is not CSRF-exempt)."""
        if request.method in ('GET', 'HEAD'):
            return await self.home(request)
        return plain_page(403, '403 Forbidden', '<h2>CSRF verification failed. Request aborted.</h2>'
                                                '<p>Reason given for failure: CSRF cookie not set.</p>')

    def _page(self, ctx, title, content, status=200, head=''):
        return page(ctx, title, content, status, head, sign_in=bool(self.nova.api_keys))

    @property
    def open(self):
        """A server without API keys: anyone may log in as anyone, so nothing on it
        is private and every page shows every submission (the API's ones too)."""
        return not self.nova.api_keys

    def _may_see(self, ctx, owner):
        return self.open or owner['user_id'] == ctx.user or public(owner['args'])

    def _not_yours(self, ctx, what, exists):
        """The page for ``what`` ('job 7') that is private (403) or unknown (404)."""
        back = '<p><a href="/">Back to the submissions</a></p>'
        if not exists:
            return self._page(ctx, 'Not found', f'<p class="notice">There is no {esc(what)} on '
                              'this server.</p>' + back, 404)
        who = ('It was submitted with another API key.' if ctx.signed_in else
               'Sign in with the API key it was submitted with to see it.')
        return self._page(ctx, 'Private', f'<p class="notice">{esc(what.capitalize())} is private: '
                          f'only the user who submitted it may see it. {who}</p>' + back, 403)

    @staticmethod
    def _id(request):
        """The path's id, or None for one that cannot be an id."""
        try:
            return path_id(request)
        except NotFound:
            return None

    # -- pages -----------------------------------------------------------------------------
    async def home(self, request, errors=(), values=None, status=200):
        """The upload (or sign-in) form and the recent submissions; nova's catch-all GET."""
        ctx = await self.auth.context(request)
        notice = ''
        target = request.query_params.get('next', '')
        if request.url.path.rstrip('/') == '/ask_human' and re.fullmatch(r'/(?![/\\])[^\\\s]*', target):
            notice = ('<p class="notice">Result files are served to visitors coming from a page of '
                      f'this server: <a href="{esc(target)}">continue to {esc(target)}</a>.</p>')
        subs = await run_in_threadpool(summaries, self.store, ctx.user, None, self.open)
        content = (notice + form_html(ctx, errors, values)
                   + table_html(subs, '/web/submissions', 'Recent submissions',
                                'Every submission, newest first.' if self.open else
                                'Public submissions and yours, newest first.'))
        return self._page(ctx, 'Plate solving', content, status,
                          refresh(all(s['final'] for s in subs)))

    async def upload(self, request):
        """POST /upload: the form's submission, through the API's code path."""
        if (await self.auth.context(request)).user is None:      # before reading what strangers send
            return await self.home(request, ['Sign in with your API key to submit images.'], status=403)
        ctx, form, files = await self.auth.checked_post(request, self.nova.max_upload)
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
            return await self.home(request, [labelled(str(exc))], values, 400)
        return RedirectResponse(f'/status/{out["subid"]}', status_code=303)

    async def signin(self, request):
        """POST /signin: an API key for a session cookie (the key is neither kept nor shown)."""
        _, form, _ = await self.auth.checked_post(request)
        key = str(form.get('apikey', ''))
        try:
            if self.nova.limiter is not None:
                self.nova.limiter.check(('login', request.client.host if request.client else ''))
        except RateLimited as exc:
            return await self.home(request, [f'Too many attempts: try again in {exc.retry_after} s.'],
                                   status=429)
        if not self.auth.accepts(key):
            return await self.home(request, ['This API key is not accepted here.'], status=403)
        user, _ = await run_in_threadpool(self.store.user_for_key, key)
        session = await run_in_threadpool(self.store.create_session, user)
        resp = RedirectResponse('/', status_code=303)
        resp.set_cookie(SESSION_COOKIE, session, max_age=int(SESSION_AGE), httponly=True, samesite='lax',
                        secure=request.url.scheme == 'https')
        return resp

    async def signout(self, request):
        """POST /signout: end the session, server side too."""
        await self.auth.checked_post(request)
        key = request.cookies.get(SESSION_COOKIE)
        if key:
            await run_in_threadpool(self.store.end_session, key)
        resp = RedirectResponse('/', status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    async def status(self, request):
        """GET /status/<subid>: one submission and its jobs, live."""
        sub_id, ctx = self._id(request), await self.auth.context(request)
        subs = [] if sub_id is None else await run_in_threadpool(
            summaries, self.store, ctx.user, sub_id, self.open)
        if not subs:
            exists = sub_id is not None and await run_in_threadpool(
                self.store.submission_exists, sub_id)
            return self._not_yours(ctx, f'submission {sub_id or request.path_params["id"]}', exists)
        sub = subs[0]
        facts = [('Input', f'<span class="name">{esc(sub["name"])}</span>'),
                 ('Submitted', esc(sub['submitted'])),
                 ('Processing started', f'<span id="sub-started">{esc(sub["started"])}</span>'),
                 ('Processing finished', f'<span id="sub-finished">{esc(sub["finished"])}</span>'),
                 ('Visible to', 'everyone' if sub['public'] or self.open else 'you')]
        content = (facts_html(facts)
                   + table_html(subs, f'/web/submissions/{sub_id}', 'Status',
                                'This submission; updated live.'))
        return self._page(ctx, f'Submission {sub_id}', content, head=refresh(sub['final']))

    async def job(self, request):
        """GET /job/<jobid>: image size, annotated image, calibration (log-odds, links to
        sky viewers), objects, the extraction image, downloads, or the error; and the
        equivalent solve-field command line."""
        job_id, ctx = self._id(request), await self.auth.context(request)
        owner = None if job_id is None else await run_in_threadpool(self.store.job_submission, job_id)
        if owner is None or not self._may_see(ctx, owner):
            return self._not_yours(ctx, f'job {job_id or request.path_params["id"]}', owner is not None)
        job = await self.nova.find_job(request, objects=True)
        job_dir = Path(self.nova.data_dir) / 'jobs' / str(job_id)
        result = await run_in_threadpool(read_result, job_dir) or {}
        kind, word = JOB_WORDS.get(job['status'], ('failure', job['status']))
        parts = [f'<p class="sub">From submission <a href="/status/{owner["id"]}">{owner["id"]}</a>: '
                 f'<span class="name">{esc(job["original_filename"])}</span></p>',
                 f'<p>Status: <span class="badge s-{kind}" data-job="{job_id}" '
                 f'data-status="{esc(job["status"])}">{esc(word)}</span></p>',
                 '<p id="live-note" class="sr-only" aria-live="polite"></p>']
        size = (job['image_width'], job['image_height'])
        if all(size):
            parts.append(facts_html([('Image size', f'<span id="image-size" data-value="{size[0]} '
                                      f'{size[1]}">{size[0]} × {size[1]} pixels</span>')]))
        if job['status'] == 'failure':
            parts.append('<h2>Why it failed</h2><pre class="error">'
                         f'{esc(result.get("error") or "The solver found no solution.")}</pre>')
        if job['calibration'] is not None:
            parts.append(solution_html(job_id, job, result))
        if job['status'] in ('success', 'failure'):
            solved = (job_dir / RESULT_KINDS['wcs'].file).is_file()
            extracted = (job_dir / RESULT_KINDS['axy'].file).is_file()
            if extracted:
                parts.append(extraction_html(job_id, size, result.get('n_sources')))
            # Files a failed job may still have; the others come with a solution.
            have = {'axy_file': extracted,
                    'joblog': self._has_log(job),
                    'new_fits_file': solved and not result.get('source_list')}
            links = ''.join(f'<li><a href="/{r}/{job_id}">{name}</a> <span class="sub">{what}</span></li>'
                            for r, what, name in DOWNLOADS if have.get(r, solved))
            if links:
                parts.append(f'<h2>Downloads</h2><ul class="downloads">{links}</ul>')
        if result.get('command_line'):
            parts.append(command_html(result['command_line']))
        return self._page(ctx, f'Job {job_id}', ''.join(parts),
                          head=refresh(job['status'] in ('success', 'failure', '?')))

    def _has_log(self, job):
        try:
            self.nova.result_path(job, 'log')
        except FileNotFoundError:
            return False
        return True

    async def submissions_json(self, request):
        """GET /web/submissions[/<id>]: what the lists show, for the page's script."""
        ctx = await self.auth.context(request)
        one = self._id(request) if 'id' in request.path_params else None
        subs = [] if one is None and 'id' in request.path_params else await run_in_threadpool(
            summaries, self.store, ctx.user, one, self.open)
        if 'id' in request.path_params and not subs:
            exists = one is not None and await run_in_threadpool(self.store.submission_exists, one)
            return JSONResponse({'error': 'private' if exists else 'not found'},
                                status_code=403 if exists else 404, headers=HEADERS)
        return JSONResponse({'submissions': subs, 'final': all(s['final'] for s in subs)},
                            headers=HEADERS)

    async def static(self, request):
        name = request.path_params['name']
        if name not in STATIC:
            raise NotFound()
        return FileResponse(ASSETS / name, media_type=STATIC[name],
                            headers={'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff'})
