"""Notebook views: what a Jupyter notebook shows for a value, made when the
docs are built.

Directive
---------
``.. aq-notebook-view::``
    Doctest-format content, shown as code, run when the docs are built (in
    the page's own namespace, in the build sandbox of ``_ext/aq_sandbox.py``)
    and followed by what a Jupyter notebook shows for the value of its last
    line: its ``_repr_html_()``.  The doc tests run the same lines and check
    their text output.
"""
import traceback

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from aq_sandbox import SANDBOX

logger = logging.getLogger(__name__)

#: Around a notebook view: what marks it as the notebook's output.
_VIEW_HTML = ('<div class="aq-notebook-view" style="border: 1px solid #8884; border-radius: 4px; '
              'padding: 0.5em 1em; margin: -0.5em 0 1.5em 0; overflow-x: auto">'
              '<p style="font-size: 0.8em; opacity: 0.7; margin: 0 0 0.5em 0">In a notebook '
              '(rendered when these pages were built):</p>\n{}\n</div>')


class NotebookView(SphinxDirective):
    """``.. aq-notebook-view::`` -- code, run at build time, and its HTML view."""
    has_content = True

    def run(self):
        text = '\n'.join(self.content)
        block = nodes.doctest_block(text, text)
        self.set_source_info(block)
        source, line = self.get_source_info()
        location = f'{source}:{line}'
        try:
            value = SANDBOX.run_examples(self.env.docname, text, location)
            html = getattr(value, '_repr_html_', lambda: None)()
        except Exception:
            logger.warning(f'aq-notebook-view: the code failed:\n{traceback.format_exc()}',
                           location=self.get_location(), type='aq', subtype='run')
            return [block]
        if not html:
            logger.warning(f'aq-notebook-view: {type(value).__name__} has no HTML view',
                           location=self.get_location(), type='aq', subtype='run')
            return [block]
        return [block, nodes.raw('', _VIEW_HTML.format(html), format='html')]


def setup(app):
    # The views run in the sandbox: without its events they would run in the
    # user's own job store and cache.
    app.setup_extension('aq_sandbox')
    app.add_directive('aq-notebook-view', NotebookView)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
