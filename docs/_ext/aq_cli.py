"""The ``astrometry-query`` command line in the docs, made by the command's own
parser at build time so that it cannot drift from it.

Directives
----------
``.. aq-command-help:: [SUBCOMMAND ...]``
    The ``--help`` text of ``astrometry-query`` (or of a subcommand), made by
    the command's own parser (``astrometry_query.cli.build_parser``) at build
    time; ``:recursive:`` adds every subcommand's.
``.. aq-exit-codes::``
    The exit statuses of ``astrometry-query``, read from the text its
    ``--help`` prints (``astrometry_query.cli._common.EXIT_CODES``).
"""
import argparse
import contextlib
import os
import re

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from aq_rst import list_table, parse_rst

logger = logging.getLogger(__name__)

#: Width of the generated ``--help`` texts (independent of the terminal).
HELP_WIDTH = 88


# -- help texts ------------------------------------------------------------------
@contextlib.contextmanager
def _terminal_width(columns):
    """argparse wraps help at the terminal's width: make it fixed."""
    saved = os.environ.get('COLUMNS')
    os.environ['COLUMNS'] = str(columns)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop('COLUMNS', None)
        else:
            os.environ['COLUMNS'] = saved


def _no_color(parser):
    """No ANSI colours in the help (Python >= 3.14 may add them)."""
    if hasattr(parser, 'color'):
        parser.color = False
    for sub in _subparsers(parser).values():
        _no_color(sub)
    return parser


def _build_parser():
    from astrometry_query import cli

    build = getattr(cli, 'build_parser', None) or getattr(cli, '_parser')
    return _no_color(build())


def _subparsers(parser):
    """{name: parser} of a parser's subcommands (an alias's parser once)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen, out = set(), {}
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out[name] = sub
            return out
    return {}


def command_help(*path, recursive=False):
    """[(command line, help text)] of ``astrometry-query [path...] --help``."""
    parser = _build_parser()
    for word in path:
        parser = _subparsers(parser)[word]
    out = []

    def walk(p, words):
        with _terminal_width(HELP_WIDTH):
            text = p.format_help().rstrip()
        out.append((' '.join(['astrometry-query', *words, '--help']), text))
        if recursive:
            for name, sub in _subparsers(p).items():
                walk(sub, [*words, name])

    walk(parser, list(path))
    return out


class CommandHelp(SphinxDirective):
    """``.. aq-command-help:: [SUBCOMMAND ...]`` with ``:recursive:``."""
    optional_arguments = 5
    option_spec = {'recursive': directives.flag}

    def run(self):
        result = []
        for command, text in command_help(*self.arguments, recursive='recursive' in self.options):
            block = nodes.literal_block(f'$ {command}\n{text}', f'$ {command}\n{text}')
            block['language'] = 'text'
            result.append(block)
        return result


# -- exit statuses ---------------------------------------------------------------
class ExitCodes(SphinxDirective):
    """``.. aq-exit-codes::`` -- the exit statuses, from the text of ``--help``."""

    def run(self):
        from astrometry_query.cli import _common

        names = {getattr(_common, n): n for n in dir(_common) if n.startswith('EXIT_')
                 and isinstance(getattr(_common, n), int)}
        rows = []
        for line in _common.EXIT_CODES.splitlines()[1:]:
            match = re.match(r'^  (\d+)\s+(.*)$', line)
            if match:
                rows.append([int(match.group(1)), match.group(2).strip()])
            elif line.strip() and rows:
                rows[-1][1] += ' ' + line.strip()
        if not rows:
            logger.warning('aq-exit-codes: no exit codes found in EXIT_CODES',
                           location=self.get_location(), type='aq', subtype='cli')
            return []
        cells = [[f'``{code}``', f'``{names[code]}``' if code in names else '--', _rst_text(text)]
                 for code, text in rows]
        return parse_rst(self, list_table(['Status', 'Constant (cli._common)', 'Meaning'],
                                          cells, widths=[8, 22, 70]))


def _rst_text(text):
    """Plain text as reST: error class names and options as literals."""
    text = text.replace('\\', '\\\\').replace('*', r'\*').replace('`', r'\`')
    text = re.sub(r'\b([A-Z]\w*Error)\b', r'``\1``', text)
    return re.sub(r'(?<![\w-])(--[a-z][\w-]*)', r'``\1``', text)


def setup(app):
    app.add_directive('aq-command-help', CommandHelp)
    app.add_directive('aq-exit-codes', ExitCodes)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
