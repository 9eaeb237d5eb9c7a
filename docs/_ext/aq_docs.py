"""Sphinx extension of the astrometry_query docs: pages generated from the
code at build time, so that they cannot drift from it.

Directives
----------
``.. aq-settings-table::``
    Every solve setting, read from `astrometry_query.settings.SETTINGS`:
    name (which is the nova argument), type and units, allowed values,
    default, the astrometry-engine directives it drives (found by building
    the .axy with and without it) and what it does.
``.. aq-astropy-settings::``
    The astropy forms (``center=SkyCoord``, ``scale=Quantity`` ...) and the
    nova arguments `astrometry_query.settings.normalize_settings` makes of
    them, computed at build time.
``.. aq-conf-table::``
    The items of `astrometry_query.Conf`: name, default, description.
``.. aq-exception-tree::``
    The hierarchy of `astrometry_query.exceptions`, from the classes.
``.. aq-error:: ClassName``
    The troubleshooting text of one error class.  Every class exported by
    `astrometry_query.exceptions` must have one: a class without one (or a
    directive naming no class) is a warning, so ``sphinx-build -W`` fails.
``.. aq-command-help:: [SUBCOMMAND ...]``
    The ``--help`` text of ``astrometry-query`` (or of a subcommand), made by
    the command's own parser (``astrometry_query.cli.build_parser``) at build
    time; ``:recursive:`` adds every subcommand's.
``.. aq-exit-codes::``
    The exit statuses of ``astrometry-query``, read from the text its
    ``--help`` prints (``astrometry_query.cli._common.EXIT_CODES``).
``.. aq-notebook-view::``
    Doctest-format content, shown as code, run when the docs are built (in
    the page's own namespace) and followed by what a Jupyter notebook shows
    for the value of its last line: its ``_repr_html_()``.  The doc tests run
    the same lines and check their text output.

Code run at build time
----------------------
Figures (matplotlib's ``.. plot::``), notebook views and the web page
screenshots (``_ext/aq_screenshots.py``) solve for real while the docs are
built.  They run as the doc tests do (``docs/conftest.py``): no API key (none
from the environment or the keyring), and for each page a new local job
store, solution cache and astropy cache in a temporary directory, deleted at
the end of the build.  So job ids start at 1 on every page, as in the doc
tests, and nothing is written into your own cache.

Also: a resolver for short references (```Job``` in a docstring finds
``astrometry_query.results.Job`` when that is the only documented object of
the name), and the private mixins of `~astrometry_query.AstrometryNetClass`
left out of its "Bases" line.
"""
import argparse
import contextlib
import doctest
import inspect
import io
import os
import re
import shutil
import tempfile
import traceback
import warnings
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode, nested_parse_with_titles

logger = logging.getLogger(__name__)

PACKAGE = 'astrometry_query'
#: Width of the generated ``--help`` texts (independent of the terminal).
HELP_WIDTH = 88


# -- helpers ---------------------------------------------------------------------
def _parse_rst(directive, lines):
    """Parse generated reST lines in the directive's context; returns the nodes."""
    node = nodes.container()
    source = directive.get_source_info()[0]
    content = StringList()
    for line in lines:
        content.append(line, source)
    nested_parse_with_titles(directive.state, content, node)
    return node.children


def _list_table(header, rows, widths=None, title=None):
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


def _literal(value):
    return f'``{value!r}``'


# -- settings --------------------------------------------------------------------
#: Sample nova arguments (normalised, as the backends receive them) from which the
#: engine directives of each setting are found: the .axy cards that change when
#: the setting is left out.  Two samples, one per scale type.
_AXY_SAMPLES = (
    dict(scale_units='arcsecperpix', scale_type='ul', scale_lower=8.0, scale_upper=10.0,
         center_ra=83.8, center_dec=-5.4, radius=2.0, tweak_order=3, crpix_center=True,
         parity=1, positional_error=2.0),
    dict(scale_units='arcminwidth', scale_type='ev', scale_est=60.0, scale_err=10.0),
)


def engine_directives(name):
    """The .axy header cards (astrometry-engine directives) a setting drives."""
    from astrometry_query.local.axy import axy_header

    cards = set()
    for sample in _AXY_SAMPLES:
        if name not in sample:
            continue
        with_it = axy_header(sample, 600, 450)
        without = axy_header({k: v for k, v in sample.items() if k != name}, 600, 450)
        for key in set(with_it) | set(without):
            if with_it.get(key) != without.get(key):
                cards.add(key)
    return sorted(cards)


def _type_text(setting):
    text = setting.type.__name__
    if setting.unit == 'scale_units':
        return text + ' (in ``scale_units``)'
    return text + (f' ({setting.unit})' if setting.unit else '')


def _allowed_text(setting):
    if setting.type is bool:
        return '``True``, ``False``'
    if setting.type is str:
        return (', '.join(_literal(a) for a in setting.allowed) if setting.allowed
                else 'any non-empty string')
    low, high = setting.allowed
    return f'{low:g} to {high:g}'


def _default_text(setting, always_sent):
    if setting.name in always_sent:
        return f'{_literal(setting.default)} (always sent)'
    if setting.default is None:
        return 'not sent'
    return _literal(setting.default)


class SettingsTable(SphinxDirective):
    """``.. aq-settings-table::`` -- one row per entry of ``settings.SETTINGS``."""

    def run(self):
        from astrometry_query.settings import SETTINGS, to_nova_args

        always_sent = set(to_nova_args({}))
        rows = []
        for name, setting in SETTINGS.items():
            cards = engine_directives(name)
            rows.append([f'``{name}``', _type_text(setting), _allowed_text(setting),
                         _default_text(setting, always_sent),
                         ', '.join(f'``{c}``' for c in cards) or '--', setting.doc])
        header = ['Setting (= nova argument)', 'Type (units)', 'Allowed values', 'Default',
                  'astrometry-engine (.axy)', 'What it does']
        return _parse_rst(self, _list_table(header, rows, widths=[18, 12, 18, 11, 14, 27]))


#: Astropy forms shown by ``aq-astropy-settings``: evaluated at build time.
ASTROPY_EXAMPLES = (
    "center=SkyCoord(83.82, -5.39, unit='deg')",
    "center=SkyCoord('05h35m17s -05d23m28s'), radius=2 * u.deg",
    "center=(83.82, -5.39), radius=30 * u.arcmin",
    "scale=(8, 10) * u.arcsec / u.pix",
    "scale=9 * u.arcsec / u.pix",
    "scale=(1, 2) * u.deg",
    "scale=(40, 60) * u.arcmin, scale_units='arcminwidth'",
    "scale=(35, 50) * u.mm",
    "scale_err=5 * u.percent, scale=9 * u.arcsec / u.pix",
    "positional_error=1.5 * u.pix",
    "parity='neg'",
)


def astropy_forms():
    """(keyword text, nova arguments) for each of `ASTROPY_EXAMPLES`."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from astrometry_query.settings import normalize_settings

    out = []
    for text in ASTROPY_EXAMPLES:
        kwargs = eval(f'dict({text})', {'u': u, 'SkyCoord': SkyCoord})  # noqa: S307 (our text)
        args = normalize_settings(kwargs)
        shown = ', '.join(f'{k}={_short(v)}' for k, v in args.items())
        out.append((text, shown))
    return out


def _short(value):
    if isinstance(value, float):
        return f'{value:.6g}'
    return repr(value)


class AstropySettings(SphinxDirective):
    """``.. aq-astropy-settings::`` -- astropy keyword forms and their nova arguments."""

    def run(self):
        rows = [[f'``{text}``', f'``{args}``'] for text, args in astropy_forms()]
        return _parse_rst(self, _list_table(['You write', 'nova arguments sent'], rows,
                                            widths=[50, 50]))


class ConfTable(SphinxDirective):
    """``.. aq-conf-table::`` -- the items of ``astrometry_query.Conf``."""

    def run(self):
        from astropy.config import ConfigItem

        from astrometry_query import Conf

        rows = []
        for name, item in vars(Conf).items():
            if isinstance(item, ConfigItem):
                default = item.defaultvalue
                rows.append([f'``{name}``', item.cfgtype,
                             _literal(default) if default != '' else "``''`` (unset)",
                             item.description])
        return _parse_rst(self, _list_table(['Item', 'Type', 'Default', 'Meaning'], rows,
                                            widths=[14, 8, 24, 54]))


# -- errors ----------------------------------------------------------------------
def error_classes():
    """The exported error classes of ``astrometry_query.exceptions``, by name."""
    from astrometry_query import exceptions

    return {name: getattr(exceptions, name) for name in exceptions.__all__
            if inspect.isclass(getattr(exceptions, name))}


def _other_bases(cls):
    """Direct bases outside this package (ValueError, TimeoutError...), as text."""
    names = []
    for base in cls.__bases__:
        if base.__module__.startswith(PACKAGE) or base in (object, Exception, BaseException):
            continue
        mod = base.__module__
        names.append(base.__name__ if mod == 'builtins' else f'{mod}.{base.__name__}')
    return names


def _package_children(cls, classes):
    return [c for c in classes.values() if cls in c.__bases__]


class ExceptionTree(SphinxDirective):
    """``.. aq-exception-tree::`` -- the hierarchy as a nested list."""

    def run(self):
        classes = error_classes()
        roots = [c for c in classes.values()
                 if not any(b in classes.values() for b in c.__bases__)]
        lines = []

        def add(cls, depth):
            extra = _other_bases(cls)
            parents = [b.__name__ for b in cls.__bases__ if b in classes.values()]
            also = [p for p in parents[1:]]
            note = ''
            if extra or also:
                note = ' (also ' + ', '.join(f'``{n}``' for n in also + extra) + ')'
            lines.append('  ' * depth + f'* :ref:`{cls.__name__} <aq-error-{cls.__name__}>`'
                         + note)
            children = _package_children(cls, classes)
            if children:
                lines.append('')
            for child in children:
                if child.__bases__[0] is cls:          # listed under its first base
                    add(child, depth + 1)
            if children:
                lines.append('')

        for root in roots:
            add(root, 0)
        return _parse_rst(self, lines)


class ErrorHelp(SphinxDirective):
    """``.. aq-error:: ClassName`` -- what an error means and what to do.

    Makes the section label ``aq-error-ClassName``, a line with the class's
    place in the hierarchy and a link to its API entry, then the content.
    """
    required_arguments = 1
    has_content = True

    def run(self):
        name = self.arguments[0]
        classes = error_classes()
        cls = classes.get(name)
        if cls is None:
            logger.warning(f'aq-error: {name!r} is not an error class exported by '
                           f'{PACKAGE}.exceptions', location=self.get_location(), type='aq',
                           subtype='error')
            return []
        if not self.content:
            logger.warning(f'aq-error: {name} has no text', location=self.get_location(),
                           type='aq', subtype='error')
        section = self.state.parent
        if isinstance(section, nodes.section) and section[0].astext() != name:
            logger.warning(f'aq-error: {name} is in a section titled {section[0].astext()!r}',
                           location=self.get_location(), type='aq', subtype='error')
        env = self.env
        if not hasattr(env, 'aq_errors'):
            env.aq_errors = {}
        env.aq_errors[name] = env.docname

        parents = [b.__name__ for b in cls.__bases__ if b.__name__ in classes]
        lines = [f'.. _aq-error-{name}:', '',
                 f':class:`~{PACKAGE}.exceptions.{name}`'
                 + (' is a ' + ' and a '.join(f':class:`~{PACKAGE}.exceptions.{p}`'
                                             for p in parents) if parents else
                    ' is the root of every error of the package')
                 + ('; also ' + ', '.join(f'``{b}``' for b in _other_bases(cls))
                    if _other_bases(cls) else '') + '.', '']
        lines.extend(self.content)
        return _parse_rst(self, lines)


def _purge_errors(app, env, docname):
    errors = getattr(env, 'aq_errors', {})
    for name in [n for n, doc in errors.items() if doc == docname]:
        del errors[name]


def _merge_errors(app, env, docnames, other):
    if not hasattr(env, 'aq_errors'):
        env.aq_errors = {}
    env.aq_errors.update(getattr(other, 'aq_errors', {}))


def _check_errors(app, env):
    """Every exported error class has its troubleshooting text."""
    documented = getattr(env, 'aq_errors', {})
    missing = sorted(set(error_classes()) - set(documented))
    for name in missing:
        logger.warning(f'{PACKAGE}.exceptions.{name} has no troubleshooting text: add an '
                       f'".. aq-error:: {name}" section to docs/troubleshooting.rst',
                       type='aq', subtype='error')


# -- command line ----------------------------------------------------------------
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
        return _parse_rst(self, _list_table(['Status', 'Constant (cli._common)', 'Meaning'],
                                            cells, widths=[8, 22, 70]))


def _rst_text(text):
    """Plain text as reST: error class names and options as literals."""
    text = text.replace('\\', '\\\\').replace('*', r'\*').replace('`', r'\`')
    text = re.sub(r'\b([A-Z]\w*Error)\b', r'``\1``', text)
    return re.sub(r'(?<![\w-])(--[a-z][\w-]*)', r'``\1``', text)


# -- code run at build time --------------------------------------------------------
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


# -- references ------------------------------------------------------------------
def _resolve_short_names(app, env, node, contnode):
    """Resolve ```Job``` and the like to the one documented object of that name."""
    if node.get('refdomain') != 'py':
        return None
    target = node.get('reftarget', '')
    if not target or target.startswith(PACKAGE + '.'):
        suffix = None
    else:
        suffix = '.' + target.lstrip('~.')
    if suffix is None:
        return None
    domain = env.get_domain('py')
    # Canonical aliases (the module that defines an object re-exported by the
    # package) do not count as another object.
    matches = [name for name, entry in domain.objects.items()
               if name.startswith(PACKAGE + '.') and name.endswith(suffix)
               and not getattr(entry, 'aliased', False)]
    if len(matches) != 1:
        return None
    obj = domain.objects[matches[0]]
    return make_refnode(app.builder, node['refdoc'], obj.docname, obj.node_id, contnode,
                        matches[0])


def _public_bases(app, name, obj, options, bases):
    """Leave the private mixins out of a class's "Bases" line."""
    bases[:] = [b for b in bases
                if not (getattr(b, '__module__', '').startswith(PACKAGE + '.')
                        and b.__name__.endswith('Mixin'))]


def setup(app):
    app.add_directive('aq-settings-table', SettingsTable)
    app.add_directive('aq-astropy-settings', AstropySettings)
    app.add_directive('aq-conf-table', ConfTable)
    app.add_directive('aq-exception-tree', ExceptionTree)
    app.add_directive('aq-error', ErrorHelp)
    app.add_directive('aq-command-help', CommandHelp)
    app.add_directive('aq-exit-codes', ExitCodes)
    app.add_directive('aq-notebook-view', NotebookView)
    app.connect('builder-inited', _sandbox_start)
    app.connect('source-read', _sandbox_page)
    app.connect('build-finished', _sandbox_finish)
    app.connect('env-purge-doc', _purge_errors)
    app.connect('env-merge-info', _merge_errors)
    app.connect('env-check-consistency', _check_errors)
    app.connect('missing-reference', _resolve_short_names)
    app.connect('autodoc-process-bases', _public_bases)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True,
            'env_version': 1}
