"""Sphinx configuration (sphinx-astropy when available)."""
project = 'astrometry_query'
author = 'astrometry_query developers'
try:
    from sphinx_astropy.conf.v2 import *  # noqa: F401,F403
except ImportError:
    extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.intersphinx']
html_title = project
