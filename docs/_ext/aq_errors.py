"""The error hierarchy of `astrometry_query.exceptions` and its troubleshooting
texts, with a check that every error class has one.

Directives
----------
``.. aq-exception-tree::``
    The hierarchy of `astrometry_query.exceptions`, from the classes.
``.. aq-error:: ClassName``
    The troubleshooting text of one error class.  Every class exported by
    `astrometry_query.exceptions` must have one: a class without one (or a
    directive naming no class) is a warning, so ``sphinx-build -W`` fails.

The documented classes are kept in the build environment (``env.aq_errors``,
{class name: docname}) so that the check sees every page, also in an
incremental or parallel build.  ``tests/test_docs.py`` checks the same
without Sphinx.
"""
import inspect

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from aq_rst import PACKAGE, parse_rst

logger = logging.getLogger(__name__)


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
        return parse_rst(self, lines)


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
        return parse_rst(self, lines)


# -- the check, over every page of the build ---------------------------------------
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


def setup(app):
    app.add_directive('aq-exception-tree', ExceptionTree)
    app.add_directive('aq-error', ErrorHelp)
    app.connect('env-purge-doc', _purge_errors)
    app.connect('env-merge-info', _merge_errors)
    app.connect('env-check-consistency', _check_errors)
    # env_version: this extension keeps data (env.aq_errors) in the environment.
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True,
            'env_version': 1}
