"""reST helpers shared by the docs' extensions (``aq_tables``, ``aq_errors``,
``aq_cli``): their directives write reST lines, parsed in the directive's
context so that references and labels in them work as in a page.

Not an extension itself: nothing to register.
"""
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

#: The documented package.
PACKAGE = 'astrometry_query'


def parse_rst(directive, lines):
    """Parse generated reST lines in the directive's context; returns the nodes."""
    node = nodes.container()
    source = directive.get_source_info()[0]
    content = StringList()
    for line in lines:
        content.append(line, source)
    nested_parse_with_titles(directive.state, content, node)
    return node.children


def list_table(header, rows, widths=None, title=None):
    """reST of a list-table; cells are reST strings (single line each)."""
    lines = [f'.. list-table:: {title or ""}'.rstrip(), '   :header-rows: 1']
    if widths:
        lines.append('   :widths: ' + ' '.join(str(w) for w in widths))
    lines.append('')
    for row in [header] + rows:
        for i, cell in enumerate(row):
            cell = str(cell).replace('\n', ' ') or ' '
            lines.append(('   * - ' if i == 0 else '     - ') + cell)
    lines.append('')
    return lines


def literal(value):
    """A Python value as inline reST code: its repr."""
    return f'``{value!r}``'
