"""The nova API of the server: its routes and answers (see nova-protocol.md).

nova's wire quirks are kept where a client could notice them: ``request-json``
read only from a POST form, API errors as HTTP 200 JSON, ``text/plain`` JSON
from ``json.dumps`` defaults, and an optional trailing slash everywhere.
Under ``/api/`` nothing is answered with an HTML page: an unknown path or id
is HTTP 404 with nova's JSON error body, a crash nova's JSON error (nova
answers these with its home page or HTML 404/500 pages, which programs cannot
read); result files (``/wcs_file/N``...) keep nova's HTML 404.  Paths outside
both are the web pages' (`~astrometry_query.server.web`): `create_app
<astrometry_query.server.create_app>` puts their routes after these.

One endpoint is ours: ``/api/server_info`` says whether the server is open
(accepts any key), so that a client without a key can use it.
"""
import functools
import json
import math
import secrets
import time
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.routing import Route

from ..jobs.files import KIND_OF_ROUTE, RESULT_KINDS
from ..jobs.outputs import result_file
from ..nova.protocol import ERRORS, SERVER_INFO
from ..urls import url_problem
from .http import (FORM_MEMORY, MAX_BODY, MAX_LONG_POLL, SESSION_COOKIE, ApiError, ChangeFeed,
                   Endpoint, NotFound, RateLimiter, int_id, nova_json, path_id, read_form,
                   wait_seconds)
from .ingest import save_upload, source_list_bytes, submission_args
from .store import SESSION_AGE

__all__ = ['NovaApp', 'brightest_stars', 'NOT_DRAWN']

KML_TEXT = ('KMZ requests are off for now.  Post at '
            'https://groups.google.com/forum/#!forum/astrometry for help.')
#: nova's plots this server does not draw: nova's answer to a failed plot.
NOT_DRAWN = ('grid_display', 'grid_full', 'red_green_image_display', 'red_green_image_full')
#: Other names the engine log may have in a job directory (solve-field's, older jobs').
LOG_ALIASES = ('solve-field.log', 'solve.log')


class NovaApp:
    """nova's routes over a store and a worker pool.

    Parameters
    ----------
    data_dir : `~pathlib.Path`
        Where uploads and job directories live.
    api_keys : list of str
        Accepted API keys; empty accepts any non-empty key.
    pool : `~astrometry_query.server.queue.SolveQueue`
        Its ``store`` is the database; it is woken on each new submission.
    """

    def __init__(self, data_dir, api_keys, pool, *, max_upload=MAX_BODY, max_json=FORM_MEMORY,
                 rate_limit=None, allow_private_urls=False):
        self.max_upload, self.max_json = int(max_upload), int(max_json)
        self.limiter = RateLimiter(rate_limit) if rate_limit else None
        self.allow_private_urls = bool(allow_private_urls)
        self.data_dir = Path(data_dir)
        self.store, self.pool = pool.store, pool
        self.api_keys = [k.encode('utf-8') for k in api_keys]
        self.changes = ChangeFeed()

    async def _long_poll(self, request, read, settled):
        """``read()`` once, then again on each change until ``settled(answer)``,
        the answer differs from the first, or ``?wait=`` seconds have passed."""
        first = await run_in_threadpool(read)
        wait = wait_seconds(request)
        if first is None or wait <= 0 or settled(first):
            return first
        deadline = time.monotonic() + wait
        answer = first
        while answer == first and not settled(answer):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or getattr(self.changes, 'closed', False):
                break
            await self.changes.wait(min(remaining, 1.0))
            answer = await run_in_threadpool(read)
            if answer is None:
                break
        return answer

    async def form(self, request):
        return await read_form(request, self.max_upload)

    def request_json(self, form):
        """Pre-checks 1-2 of protocol §0.1: the request-json object."""
        raw = form.get('request-json')
        if not raw:
            raise ApiError(ERRORS['no_json'])
        if len(raw) > self.max_json:
            raise ApiError(f'request-json is larger than {self.max_json} bytes')
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if data is None:
            raise ApiError(ERRORS['bad_json'].format(raw=raw[:200]))
        if not isinstance(data, dict):      # nova crashes (500): say what is wrong instead
            raise ApiError(f'request-json must be a JSON object, got a {type(data).__name__}')
        return data

    async def authed(self, form, need_user=True):
        """Pre-checks 1-5 (1-4 without ``need_user``): (request-json, user id)."""
        data = self.request_json(form)
        if 'session' not in data:
            raise ApiError(ERRORS['no_session'])
        key = data['session']
        user = await run_in_threadpool(self.store.check_session, str(key))
        if user is None:
            raise ApiError(ERRORS['unknown_session'].format(key=key))
        if need_user and not user:
            raise ApiError(ERRORS['not_authenticated'])
        return data, user

    async def login(self, request):
        data = self.request_json((await self.form(request))[0])
        apikey = data.get('apikey')
        if apikey is None:
            raise ApiError(ERRORS['need_apikey'])
        apikey = str(apikey)
        if self.limiter is not None:
            self.limiter.check(('login', request.client.host if request.client else ''))
        # No configured keys (loopback only): any non-empty key is accepted.
        if not (any(secrets.compare_digest(apikey.encode(), k) for k in self.api_keys)
                if self.api_keys else apikey):
            raise ApiError(ERRORS['bad_apikey'])
        user, email = await run_in_threadpool(self.store.user_for_key, apikey)
        key = await run_in_threadpool(self.store.create_session, user)
        resp = nova_json({'status': 'success', 'message': f'authenticated user: {email}',
                          'session': key})
        resp.set_cookie(SESSION_COOKIE, key, max_age=int(SESSION_AGE), httponly=True,
                        samesite='lax')
        resp.set_cookie('csrftoken', secrets.token_hex(16), max_age=31449600, samesite='lax')
        return resp

    async def submit(self, request, url_upload=False):
        form, files = await self.form(request)
        data, user = await self.authed(form)
        if self.limiter is not None:
            self.limiter.check(user)
        return nova_json(await self.create_submission(data, user, files, url_upload))

    async def create_submission(self, data, user, files, url_upload=False):
        """Check submission arguments and store a new submission of ``user``: the
        shared path of /api/upload, /api/url_upload and the web form.

        Returns
        -------
        dict
            nova's success JSON (``status``, ``subid``, and ``hash`` for stored bytes).

        Raises
        ------
        ApiError
            With the message nova's clients read, for any argument refused.
        """
        xy = 'x' in data and 'y' in data
        if xy:
            try:
                x, y = [float(v) for v in data['x']], [float(v) for v in data['y']]
            except (TypeError, ValueError, OverflowError):
                raise ApiError(ERRORS['bad_xy']) from None
            if len(x) != len(y):
                raise ApiError(ERRORS['xy_length'])
            if not all(math.isfinite(v) for v in x + y):
                raise ApiError('"x" and "y" must be finite numbers')
        if data.get('album'):
            # This server has no albums, so every title is unknown.
            raise ApiError(ERRORS['no_album'].format(album=data['album']))
        try:        # nova's casts (a failure is its HTTP 500), then our range checks
            args = submission_args(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ApiError(str(exc)) from None
        uploads = self.data_dir / 'uploads'
        if xy:
            content = await run_in_threadpool(source_list_bytes, x, y)
            upload, digest = await run_in_threadpool(save_upload, uploads, 'json-xy.xyls', content)
            kw = dict(source='xy', upload=upload, original_filename='json-xy', hash=digest)
        elif url_upload:
            url = data.get('url')
            problem = url_problem(url)
            if problem:      # nova accepts it and fails later (or 500s past 200 characters)
                raise ApiError(problem)
            kw = dict(source='url', url=str(url))
        else:
            file = files.get('file')
            if file is None or not file.filename:
                # nova accepts it and fails later, fetching a URL of None.
                raise ApiError('no file: send the image as a multipart part named "file", '
                               'or "x" and "y" lists in request-json')
            else:
                # Django keeps the basename only (of a / or \ path), at most 255 chars.
                name = file.filename.replace('\\', '/').rsplit('/', 1)[-1][:255]
                upload, digest = await run_in_threadpool(save_upload, uploads, 'upload',
                                                         file.stream)
                kw = dict(source='file', upload=upload, original_filename=name, hash=digest)
        sub_id = await run_in_threadpool(self.store.create_submission, user, args, **kw)
        self.pool.wake()
        out = {'status': 'success', 'subid': sub_id}
        if kw.get('hash'):
            out['hash'] = kw['hash']
        return out

    async def submission(self, request):
        sub_id = path_id(request)
        # Settled once every image has its job: its end is the job's to say (a
        # failed job changes nothing here, and would hold the poll to its end).
        out = await self._long_poll(
            request, lambda: self.store.submission_status(sub_id),
            lambda s: bool(s.get('job_calibrations') or s.get('error_message')
                           or (s['jobs'] and None not in s['jobs'])))
        if out is None:
            raise NotFound(f'no submission {sub_id}')
        return nova_json(out)

    async def find_job(self, request, objects=False):
        """The job of the path's id; ``objects``: with its objects in field
        listed (they are listed once, when first asked for or after the solve)."""
        job_id = path_id(request)
        job = await run_in_threadpool(self.store.job, job_id)
        if job is None:
            raise NotFound(f'no job {job_id}')
        if objects and job['status'] == 'success' and not job['objects']:
            # Not yet stored (a field with none is stored empty).  The idle
            # tagger may be between writing its file and storing the list:
            # fill_objects then reads that file, so both agree.
            if not await run_in_threadpool(self.store.has_objects, job_id):
                await run_in_threadpool(self.pool.fill_objects, job_id)
            # read again: stored by now, here or by the tagger since the first read
            job = await run_in_threadpool(self.store.job, job_id)
        return job

    async def job_status(self, request):
        job_id = path_id(request)

        def status():
            job = self.store.job(job_id)
            return None if job is None else job['status']
        status = await self._long_poll(request, status,
                                       lambda s: s in ('success', 'failure', '?'))
        if status is None:
            raise NotFound(f'no job {job_id}')
        return nova_json({'status': status})

    async def calibration(self, request):
        job = await self.find_job(request)
        cal = job['calibration']
        if cal is None:
            return nova_json({'error': ERRORS['no_calibration'].format(job_id=job['id'])})
        keys = ('ra', 'dec', 'width_arcsec', 'height_arcsec', 'radius', 'pixscale',
                'orientation', 'parity')
        return nova_json({k: cal.get(k) for k in keys})

    async def tags(self, request, machine_only=False):
        return nova_json({'tags': (await self.find_job(request, objects=True))[
            'machine_tags' if machine_only else 'tags']})

    async def objects_in_field(self, request):
        return nova_json({'objects_in_field': (await self.find_job(request, objects=True))['objects']})

    async def annotations(self, request):
        nbright = request.query_params.get('nbright')
        if nbright is not None:
            if not nbright.strip().isdigit():       # nova: a 500
                raise ApiError(f'nbright must be a whole number, got {nbright!r}')
            nbright = int(nbright)
        job = await self.find_job(request)
        if job['calibration'] is None:
            return nova_json({'error': ERRORS['no_calibration'].format(job_id=job['id'])})
        from ..jobs import outputs
        annotations = await run_in_threadpool(outputs.annotations,
                                              self.data_dir / 'jobs' / str(job['id']))
        return nova_json({'annotations': brightest_stars(annotations, nbright)})

    async def info(self, request):
        job = await self.find_job(request, objects=True)
        out = {'objects_in_field': job['objects'], 'machine_tags': job['machine_tags'],
               'tags': job['tags'], 'status': job['status'],
               'original_filename': job['original_filename']}
        if job['calibration'] is not None:
            out['calibration'] = {k: job['calibration'].get(k) for k in
                                  ('ra', 'dec', 'radius', 'pixscale', 'orientation', 'parity')}
        # Not in nova's answer (clients ignore extra keys): the equivalent solve-field
        # command, and why it failed, so that a client can say what to do (e.g.
        # which index files to fetch).
        from ..jobs.files import read_result
        result = await run_in_threadpool(read_result, self.data_dir / 'jobs' / str(job['id']))
        if result and result.get('command_line'):
            out['command_line'] = result['command_line']
        if job['status'] == 'failure' and result and result.get('error'):
            out['error_message'] = result['error']
            out['error_kind'] = result.get('error_kind')
        return nova_json(out)

    async def myjobs(self, request):
        _, user = await self.authed((await self.form(request))[0])
        if self.limiter is not None:
            self.limiter.check(user)
        return nova_json({'jobs': await run_in_threadpool(self.store.jobs_of_user, user),
                          'status': 'success'})

    async def server_info(self, request):
        """Ours, not nova's: whether the server is open (no API keys: any key, or none
        at all for our client, is accepted), its longest long poll, its software."""
        from .. import __version__
        return nova_json({'status': 'success', 'open': not self.api_keys,
                          'long_poll': MAX_LONG_POLL, 'software': f'astrometry_query {__version__}'})

    async def unknown_api(self, request):
        raise NotFound(f'no API endpoint {request.url.path}')

    async def jobs_by_tag(self, request):
        query = request.query_params.get('query')
        exact = bool(request.query_params.get('exact'))
        ids = await run_in_threadpool(self.store.jobs_by_tag, query, exact)
        return nova_json({'job_ids': ids})

    async def submission_images(self, request):
        data, _ = await self.authed((await self.form(request))[0], need_user=False)
        subid = data.get('subid')
        if subid is None:
            raise ApiError(ERRORS['no_submission'])
        subid = int_id(subid, 'subid')       # nova: a 500 for anything but an integer
        if not await run_in_threadpool(self.store.submission_exists, subid):
            raise ApiError(ERRORS['no_submission'])
        ids = await run_in_threadpool(self.store.user_images_of, subid)
        return nova_json({'status': 'success', 'image_ids': ids})

    async def survey_image(self, request):
        await self.authed((await self.form(request))[0], need_user=False)
        # nova's Python 3 code always crashes here (protocol §1.14).
        raise NotImplementedError('sdss/galex_image_for_wcs')

    async def _human(self, request):
        key = request.cookies.get(SESSION_COOKIE)      # an API login marks a human too
        return bool(request.headers.get('referer') or key and await run_in_threadpool(
            self.store.human_session, key))

    def result_path(self, job, kind):
        """The file of result ``kind`` (a kind of `~astrometry_query.jobs.RESULT_KINDS`)
        of ``job`` (a store row).

        Raises
        ------
        FileNotFoundError
            The job has no such file (an unsolved job, no log).
        """
        job_dir = self.data_dir / 'jobs' / str(job['id'])
        if kind == 'log':
            for name in (RESULT_KINDS['log'].file, *LOG_ALIASES):
                if (job_dir / name).is_file():
                    return job_dir / name
        return result_file(job_dir, kind)

    def file_route(self, kind):
        """The endpoint of a result kind's routes (None: a plot not drawn here)."""
        result = RESULT_KINDS.get(kind)

        async def job_file(request):
            if (result is None or result.gated) and not await self._human(request):
                return RedirectResponse('/ask_human?next=' + quote(request.url.path), 302)
            job = await self.find_job(request)
            if result is None:
                return HTMLResponse('plot failed: not drawn on this server')
            # An unsolved job has no file: FileNotFoundError gives nova's 500.
            path = await run_in_threadpool(self.result_path, job, kind)
            if result.media_type is None:
                with open(path, 'rb') as f:
                    png = f.read(4) == b'\x89PNG'
                return FileResponse(path, media_type='image/png' if png else 'image/jpeg')
            headers = ({'Content-Disposition': f'attachment; filename={result.download_name}'}
                       if result.media_type == 'application/fits' else {})
            return FileResponse(path, media_type=result.media_type, headers=headers)
        return job_file

    async def kml_file(self, request):
        await self.find_job(request)
        return HTMLResponse(KML_TEXT)

    def routes(self):
        """nova's API and result-file routes, each with nova's optional trailing slash, and
        last the API's catch-all (a JSON 404): the web pages' routes go after these."""
        s = '{_s:opt_slash}'
        api = [('login', self.login), ('upload', self.submit),
               ('url_upload', functools.partial(self.submit, url_upload=True)),
               ('submissions/{id:nova_id}', self.submission),
               ('jobs/{id:nova_id}', self.job_status)]
        api += [(f'jobs/{{id:nova_id}}/{name}', getattr(self, name)) for name in (
            'calibration', 'tags', 'objects_in_field', 'annotations', 'info')]
        api += [('jobs/{id:nova_id}/machine_tags', functools.partial(self.tags, machine_only=True))]
        api += [('jobs_by_tag', self.jobs_by_tag), ('submission_images', self.submission_images),
                (SERVER_INFO, self.server_info)]
        api += [(f'{survey}_image_for_wcs', self.survey_image) for survey in ('sdss', 'galex')]
        routes = [Route(f'/api/{path}{s}', Endpoint(fn)) for path, fn in api]
        # nova's myjobs pattern has no end anchor: /api/myjobsANYTHING is myjobs too.
        routes.append(Route('/api/myjobs{_rest:path}', Endpoint(self.myjobs)))
        routes += [Route(f'/{route}/{{id:nova_id}}{s}', Endpoint(self.file_route(kind)))
                   for route, kind in [*KIND_OF_ROUTE.items(), *((r, None) for r in NOT_DRAWN)]]
        routes.append(Route(f'/kml_file/{{id:nova_id}}{s}', Endpoint(self.kml_file)))
        routes.append(Route('/api/{_rest:path}', Endpoint(self.unknown_api)))
        return routes


def brightest_stars(annotations, nbright):
    """nova's ``nbright``: keep the N brightest named ("bright") stars, in V
    order, where the stars were in the list; 0 or None keeps all."""
    annotations = list(annotations)
    if not nbright:
        return annotations
    bright = sorted((a for a in annotations if a.get('type') == 'bright'),
                    key=lambda a: a.get('vmag', 99.0))[:nbright]
    first = next((i for i, a in enumerate(annotations) if a.get('type') == 'bright'),
                 len(annotations))
    rest = [a for a in annotations if a.get('type') != 'bright']
    return rest[:first] + bright + rest[first:]
