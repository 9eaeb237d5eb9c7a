"""Sphinx configuration: sphinx-astropy's v2 configuration, automodapi,
matplotlib's plot directive, and this project's own extensions, in
``_ext/``:

- ``aq_tables``: the tables of the solve settings and of ``Conf``, generated
  from the code at build time;
- ``aq_errors``: the error hierarchy and its troubleshooting texts (the build
  fails when an error class has none);
- ``aq_cli``: the command's ``--help`` texts and exit statuses;
- ``aq_sandbox``: the sandbox where code run at build time solves (no API
  key, a temporary job store and cache per page);
- ``aq_notebook``: notebook views (``_repr_html_``), run in that sandbox;
- ``aq_api``: short references and "Bases" lines of the API pages;
- ``aq_screenshots``: screenshots of the server's web pages, taken with
  Playwright and Chromium when they are installed;
- ``aq_math``: the maths as MathML, made at build time (latex2mathml), so
  the pages load no maths script and work offline; the build fails if a
  page would load a script from elsewhere.

(``_ext/aq_rst.py`` holds the reST helpers they share.)

Build (offline, warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Run every example in the pages (pytest-doctestplus; ``docs/conftest.py``
sets each page up)::

    python -m pytest --doctest-rst docs

Intersphinx is off by default (the inventories of Python, numpy, astropy...
live on the internet); ``AQ_DOCS_INTERSPHINX=1`` turns it on for a build that
may reach them.
"""
import os
import sys
from pathlib import Path

from sphinx_astropy.conf.v2 import *  # noqa: F401,F403
from sphinx_astropy.conf.v2 import extensions, intersphinx_mapping

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / '_ext'))

import astrometry_query  # noqa: E402

# -- project --------------------------------------------------------------------
project = 'astrometry_query'
author = 'astrometry_query developers'
copyright = '2024-2026, ' + author
release = astrometry_query.__version__
version = '.'.join(release.split('.')[:2])
html_title = f'{project} v{release}'

extensions = list(extensions) + ['aq_tables', 'aq_errors', 'aq_cli', 'aq_sandbox',
                                 'aq_notebook', 'aq_api', 'aq_screenshots', 'aq_math']
exclude_patterns = ['_build']

# -- references -----------------------------------------------------------------
# Every reference inside this package must resolve; references into other
# packages resolve through intersphinx when it is on, and are plain text
# (never a warning) when it is off.
nitpicky = True
EXTERNAL = ('astropy', 'astroquery', 'numpy', 'scipy', 'requests', 'urllib3', 'dask',
            'distributed', 'concurrent', 'pathlib', 'starlette', 'uvicorn', 'keyring', 'sep',
            'matplotlib', 'typing', 'collections', 'datetime', 'os', 'io', 'argparse',
            'logging', 'sqlite3', 'threading', 'multiprocessing', 'subprocess', 'tempfile',
            'dataclasses', 'json', 'builtins', 'abc', 'enum')
nitpick_ignore_regex = [
    (r'py:.*', r'(%s)(\..*)?' % '|'.join(EXTERNAL)),
]


def _internal_modules():
    """Every module of the package that is not in astrometry_query.PUBLIC_MODULES (read from
    the files: importing them all would import the deprecated aliases too)."""
    root = Path(astrometry_query.__file__).parent
    names = set()
    for path in root.rglob('*.py'):
        parts = (root.name,) + path.relative_to(root).with_suffix('').parts
        names.add('.'.join(parts[:-1] if parts[-1] == '__init__' else parts))
    return sorted(names - set(astrometry_query.PUBLIC_MODULES))


# References into internal modules are plain text: they are not documented, and may move.
nitpick_ignore_regex.append(
    (r'py:.*', r'(%s)(\..*)?' % '|'.join(m.replace('.', r'\.') for m in _internal_modules())))

if os.environ.get('AQ_DOCS_INTERSPHINX', '') not in ('', '0'):
    intersphinx_mapping = dict(intersphinx_mapping)
    intersphinx_mapping.update({
        'astroquery': ('https://astroquery.readthedocs.io/en/latest/', None),
        'requests': ('https://requests.readthedocs.io/en/latest/', None),
        'dask': ('https://docs.dask.org/en/stable/', None),
        'distributed': ('https://distributed.dask.org/en/stable/', None),
    })
else:
    intersphinx_mapping = {}

# -- automodapi / numpydoc ------------------------------------------------------
automodapi_toctreedirnm = 'api'
numpydoc_show_class_members = False

# -- matplotlib's plot directive (figures made when the docs are built) ---------
# Doctest-format code in ``.. plot::`` runs in the build (in the sandbox of
# aq_sandbox) and in the doc tests alike.
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [('png', 100)]

# -- HTML -----------------------------------------------------------------------
# Maths as MathML written into the pages (_ext/aq_math.py), not MathJax from a CDN.
html_math_renderer = 'mathml'
html_static_path = []
html_sidebars = {'**': []}         # few pages: the top bar lists them
html_last_updated_fmt = None        # reproducible pages
