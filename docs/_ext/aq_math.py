"""Maths rendered when the docs are built, so the pages work offline.

``:math:`` and ``.. math::`` are turned into MathML by latex2mathml while the
HTML is written.  Browsers draw MathML themselves: a page needs no script and
nothing from the network to show its formulas (Sphinx's default, MathJax,
loads a script from a CDN).  ``conf.py`` makes this the HTML maths renderer
(``html_math_renderer = 'mathml'``).

The build fails, rather than making pages that need the network, when
latex2mathml is missing, when a formula cannot be converted, or when a page
would load a maths script or any script from another site.
"""
import re

from docutils import nodes
from sphinx.errors import ExtensionError

try:
    from latex2mathml.converter import convert
except ImportError as exc:      # the docs extra installs it
    raise ExtensionError('aq_math renders the maths of the docs with latex2mathml, which is not '
                         'installed: pip install -e ".[docs]" (or pip install latex2mathml)') from exc

#: The name of this renderer (``html_math_renderer`` in conf.py).
RENDERER = 'mathml'
#: A script that is not served with the pages: from another site, or maths.
_REMOTE = re.compile(r'^([a-z][a-z0-9+.-]*:)?//|mathjax|katex', re.I)


def _mathml(node, display):
    latex = node.astext()
    try:
        return convert(latex, display=display)
    except Exception as exc:        # latex2mathml raises its own, and plain, exceptions
        raise ExtensionError(f'aq_math: cannot render {latex!r} as MathML ({node.source}, '
                             f'line {node.line}): {type(exc).__name__}: {exc}') from exc


def _visit_inline(self, node):
    self.body.append(_mathml(node, 'inline'))
    raise nodes.SkipNode


def _visit_block(self, node):
    number = node.get('number')
    label = (f'<span class="eqno">({number})</span>' if number else '')
    self.body.append(f'<div class="math notranslate nohighlight">{label}'
                     f'{_mathml(node, "block")}</div>\n')
    raise nodes.SkipNode


def _no_remote_scripts(app, pagename, templatename, context, doctree):
    """Fail the build when a page would load a script from elsewhere."""
    for script in context.get('script_files', []):
        src = str(getattr(script, 'filename', script) or '')
        if _REMOTE.search(src):
            raise ExtensionError(f'aq_math: page {pagename!r} would load {src!r}, which is not '
                                 f"served with the docs; the maths must render offline "
                                 f"(html_math_renderer = {RENDERER!r} in conf.py)")


def setup(app):
    app.add_html_math_renderer(RENDERER, (_visit_inline, None), (_visit_block, None))
    app.connect('html-page-context', _no_remote_scripts)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
