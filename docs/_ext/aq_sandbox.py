"""The sandbox where code run while the docs are built runs.

Figures (matplotlib's ``.. plot::``), notebook views (``_ext/aq_notebook.py``)
and the web page screenshots (``_ext/aq_screenshots.py``) solve for real
while the docs are built.  They run as the doc tests do
(``docs/conftest.py``): no API key (none from the environment or the
keyring), and for each page a new local job store, solution cache and
astropy cache in a temporary directory, deleted at the end of the build.  So
job ids start at 1 on every page, as in the doc tests, and nothing is written
into your own cache.

This extension has no directive: it sets the sandbox up around the build and
around each page (Sphinx events); ``SANDBOX.run_examples`` runs a page's
examples in it.
"""
import contextlib
import doctest
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path


@contextlib.contextmanager
def _working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class BuildSandbox:
    """Where code run at build time runs: as in the doc tests (see the module's
    docstring).  One per build process."""

    def __init__(self):
        self.root = None
        self.docname = None
        self.work_dir = None
        self.namespaces = {}
        self._build = None
        self._page = None

    def start(self, app):
        """At the start of the build: no API key from anywhere, a temporary root."""
        import keyring
        from keyring.backends.null import Keyring as NullKeyring

        from astrometry_query import conf

        self.root = Path(tempfile.mkdtemp(prefix='aq-docs-'))
        stack = contextlib.ExitStack()
        stack.callback(shutil.rmtree, self.root, ignore_errors=True)
        stack.enter_context(conf.set_temp('api_key', ''))
        saved = os.environ.pop('ASTROMETRY_NET_API_KEY', None)
        if saved is not None:
            stack.callback(os.environ.__setitem__, 'ASTROMETRY_NET_API_KEY', saved)
        previous = keyring.get_keyring()
        keyring.set_keyring(NullKeyring())
        stack.callback(keyring.set_keyring, previous)
        # Solution headers are header-only files (NAXIS = 0): astropy warns on
        # every WCS(header) of them, which the build log need not repeat.
        from astropy.wcs import FITSFixedWarning
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings('ignore', category=FITSFixedWarning)
        self._build = stack

    def enter_page(self, docname):
        """Before a page is read: a new job store, solution cache and working directory."""
        from astropy.config import set_temp_cache

        from astrometry_query import conf

        if self._build is None:
            return
        self.leave_page()
        base = self.root / docname.replace('/', '--')
        for sub in ('cache', 'work'):
            (base / sub).mkdir(parents=True, exist_ok=True)
        stack = contextlib.ExitStack()
        stack.enter_context(conf.set_temp('local_data_dir', str(base / 'local')))
        stack.enter_context(set_temp_cache(str(base / 'cache')))
        self._page, self.docname, self.work_dir = stack, docname, base / 'work'
        self.namespaces.pop(docname, None)
        _close_module_instance()

    def leave_page(self):
        if self._page is not None:
            _close_module_instance()
            self._page.close()
            self._page = self.docname = None

    def finish(self):
        self.leave_page()
        if self._build is not None:
            self._build.close()
            self._build = None

    def run_examples(self, docname, text, location):
        """Run doctest-format ``text`` in the page's namespace; the value of its
        last example (None when that is a statement)."""
        if self.docname != docname:         # e.g. a build of one page from a saved env
            self.enter_page(docname)
        namespace = self.namespaces.setdefault(docname, {'__name__': '__main__'})
        value = None
        with _working_directory(self.work_dir or os.getcwd()), \
                contextlib.redirect_stdout(io.StringIO()):
            for example in doctest.DocTestParser().get_examples(text, location):
                try:
                    code = compile(example.source, location, 'eval')
                except SyntaxError:
                    exec(compile(example.source, location, 'exec'), namespace)  # noqa: S102
                    value = None
                else:
                    value = eval(code, namespace)  # noqa: S307 (the page's own examples)
        return value


def _close_module_instance():
    from astrometry_query import AstrometryNet

    AstrometryNet.close()


SANDBOX = BuildSandbox()


def _sandbox_start(app):
    SANDBOX.start(app)


def _sandbox_page(app, docname, source):
    SANDBOX.enter_page(docname)


def _sandbox_finish(app, exception):
    SANDBOX.finish()


def setup(app):
    app.connect('builder-inited', _sandbox_start)
    app.connect('source-read', _sandbox_page)
    app.connect('build-finished', _sandbox_finish)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
