"""Screenshots of the server's web pages, made when the docs are built.

``.. aq-web-screenshot:: NAME`` shows one page of a real session: a server
started on 127.0.0.1 (with an API key, so that the sign-in form shows), driven
by Playwright in headless Chromium (Debian's ``/usr/bin/chromium``; Playwright's
own browser download is never used), which signs in, uploads the bundled
example image through the form and follows it to its solved job.  The
session runs once per build, the first time a page asks for a screenshot;
the PNG files go into the build directory (never into the sources), beside
the figures of matplotlib's plot directive.

NAME is one of `SHOTS`; the directive's content is the caption.

When this build has no Playwright or no Chromium, each screenshot is replaced
by a note saying so (the build still passes: the pages are also described in
words).  When they are there and the session fails, that is a warning, so
``sphinx-build -W`` fails: the web pages are broken, or this script is.
"""
import os
import shutil
import time
import traceback
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: name -> what it shows (alt text)
SHOTS = {
    'signin': 'The home page of a server with API keys, before signing in: the sign-in form '
              'and the list of submissions.',
    'form': 'The upload form after signing in, filled in with the example image and a scale.',
    'status': 'The page of the submission, its job solved.',
    'job': 'The page of the solved job: annotated image, calibration, objects in the field '
           'and downloads.',
}
API_KEY = 'docsdemokey00001'
VIEWPORT = {'width': 1000, 'height': 720}
BROWSER_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync']
#: Seconds the session may take for one step (a solve takes about one).
STEP_TIMEOUT_MS = 120_000


def chromium_path():
    """Debian's Chromium, or None."""
    for name in ('chromium', 'chromium-browser'):
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_tools():
    """What this build lacks to take screenshots ('' when nothing)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'Playwright (pip install playwright)'
    if chromium_path() is None:
        return 'Chromium (apt-get install chromium)'
    return ''


def take_screenshots(out_dir):
    """Run the session; returns {name: path of its PNG}."""
    from playwright.sync_api import sync_playwright

    from astrometry_query.cli import example_image_path
    from astrometry_query.server import ServerThread

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = {}
    server = ServerThread(api_keys=[API_KEY], workers=1).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(STEP_TIMEOUT_MS)
                errors = []
                page.on('pageerror', lambda exc: errors.append(str(exc)))

                def shoot(name, full_page=True):
                    path = out_dir / f'web-{name}.png'
                    page.screenshot(path=str(path), full_page=full_page)
                    shots[name] = path

                page.goto(server.url + '/')
                page.wait_for_selector('form.signin')
                shoot('signin', full_page=False)
                page.fill('#apikey', API_KEY)
                with page.expect_navigation():
                    page.click('form.signin button')
                page.wait_for_selector('form.upload')
                page.set_input_files('#file', str(example_image_path()))
                page.select_option('#scale_units', 'arcsecperpix')
                page.fill('#scale_lower', '8')
                page.fill('#scale_upper', '10')
                page.evaluate('document.activeElement.blur()')     # no focus ring
                shoot('form')
                with page.expect_navigation():
                    page.click('form.upload button[type=submit]')
                badge = '#submissions td.state .badge'
                page.wait_for_function(
                    '(sel) => { const b = document.querySelector(sel);'
                    ' return b && /^job \\d+: success$/.test(b.textContent); }', arg=badge)
                shoot('status', full_page=False)
                with page.expect_navigation():
                    page.click(badge)
                page.wait_for_function("() => { const i = document.getElementById('annotated');"
                                       ' return i && i.complete && i.naturalWidth > 0; }')
                shoot('job')
                if errors:
                    raise RuntimeError(f'the pages raised JavaScript errors: {errors}')
            finally:
                browser.close()
    finally:
        server.stop()
    return shots


class _Session:
    """The screenshots of this build (made once, on first use)."""

    def __init__(self):
        self.shots = None
        self.failure = None
        self.seconds = None

    def get(self, doctreedir):
        if self.shots is None and self.failure is None:
            missing = missing_tools()
            if missing:
                self.failure = ('missing', missing)
                logger.info(f'aq-web-screenshot: no screenshots: this build has no {missing}')
                return self
            out_dir = Path(os.path.dirname(doctreedir)) / 'aq_screenshots'
            started = time.monotonic()
            try:
                self.shots = take_screenshots(out_dir)
            except Exception:
                self.failure = ('error', traceback.format_exc())
            self.seconds = time.monotonic() - started
            if self.shots is not None:
                logger.info(f'aq-web-screenshot: {len(self.shots)} screenshots in '
                            f'{self.seconds:.1f} s')
        return self


SESSION = _Session()


class WebScreenshot(SphinxDirective):
    """``.. aq-web-screenshot:: NAME`` with the caption as content."""
    required_arguments = 1
    has_content = True

    def run(self):
        name = self.arguments[0]
        if name not in SHOTS:
            logger.warning(f'aq-web-screenshot: {name!r} is none of {", ".join(SHOTS)}',
                           location=self.get_location(), type='aq', subtype='screenshot')
            return []
        session = SESSION.get(self.env.doctreedir)
        if session.failure is not None:
            kind, detail = session.failure
            if kind == 'error':
                logger.warning(f'aq-web-screenshot: the browser session failed:\n{detail}',
                               location=self.get_location(), type='aq', subtype='screenshot')
            text = (f'(A screenshot of this page is made when the docs are built with '
                    f'Playwright and Chromium; this build had no {detail}.)' if kind == 'missing'
                    else '(The screenshot of this page could not be made.)')
            return [nodes.paragraph(text, text, classes=['aq-screenshot-missing'])]
        rst_dir = os.path.dirname(self.env.doc2path(self.env.docname))
        uri = os.path.relpath(session.shots[name], rst_dir).replace(os.sep, '/')
        figure = nodes.figure(classes=['aq-screenshot'])
        figure += nodes.image(uri=uri, alt=SHOTS[name])
        if self.content:
            caption_text = ' '.join(line.strip() for line in self.content)
            parsed, _ = self.parse_inline(caption_text, lineno=self.content_offset + 1)
            figure += nodes.caption(caption_text, '', *parsed)
        self.set_source_info(figure)
        return [figure]


def setup(app):
    app.add_directive('aq-web-screenshot', WebScreenshot)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
