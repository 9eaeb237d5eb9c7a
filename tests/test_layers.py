"""How the package's modules depend on each other (issue 16): no import cycle
anywhere (imports inside functions counted), no module importing another's
private names, the arrows of docs' layout one way (records below their views,
index files below the engine, the drawing below both the plots and the local
backend, no package singleton below the facade), and ``conf`` read only by
the facade and the command line."""
import ast
from pathlib import Path

import pytest

import astrometry_query

ROOT = Path(astrometry_query.__file__).parent
PACKAGE = ROOT.name


def _modules():
    """Module name -> path, for every module of the package."""
    out = {}
    for path in sorted(ROOT.rglob('*.py')):
        parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix('').parts
        out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return out


MODULES = _modules()


def _imports(name):
    """[(module imported, name imported or None)] of a module, every import counted
    (also inside functions): relative imports made absolute, outside ones left out."""
    path = MODULES[name]
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.split('.')[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            elif (node.module or '').split('.')[0] == PACKAGE:
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f'{target}.{alias.name}'
                out.append((sub, None) if sub in MODULES else (target, alias.name))
    return out


def _module_of(target):
    while target not in MODULES:
        target = target.rpartition('.')[0]
    return target


def _graph():
    """Module -> modules it imports; the conventional ``conf`` edge to the package root
    (astropy's and astroquery's own convention) is not an edge."""
    graph = {}
    for name in MODULES:
        graph[name] = {_module_of(t) for t, n in _imports(name)
                       if not (t == PACKAGE and n == 'conf')} - {name}
    return graph


def _reaches(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_no_import_cycle_in_the_package():
    graph = _graph()
    for name in MODULES:
        reached = _reaches(graph, name)
        cycle = sorted(m for m in reached if name in _reaches(graph, m))
        assert not cycle, f'{name} is in an import cycle with {cycle}'


def test_no_private_names_imported_across_modules():
    for name in MODULES:
        for target, imported in _imports(name):
            if not imported or not imported.startswith('_') or imported.startswith('__'):
                continue
            module = _module_of(target)
            # a private helper module of the same package may share its private names
            helper = (module.rpartition('.')[2].startswith('_')
                      and module.rpartition('.')[0] == name.rpartition('.')[0])
            assert helper, f'{name} imports the private name {imported} of {module}'


@pytest.mark.parametrize('lower, upper', [
    ('results', 'reprs'),            # the records below their notebook views
    ('local', 'plotting'),           # the engine and its pictures below the plots
    ('drawing', 'plotting'),
    ('display', 'plotting'),
    ('index', 'local'),              # index files below the engine
    ('plotting', 'core'),            # the plots take a client: no package singleton
    ('local', 'core'),
    ('index', 'core'),
])
def test_layers_point_one_way(lower, upper):
    """No module of ``lower`` reaches (directly or not) a module of ``upper``."""
    graph = _graph()
    prefix = f'{PACKAGE}.{upper}'
    for name in MODULES:
        if name == f'{PACKAGE}.{lower}' or name.startswith(f'{PACKAGE}.{lower}.'):
            above = sorted(m for m in _reaches(graph, name) | {name}
                           if m == prefix or m.startswith(prefix + '.'))
            assert not above, f'{name} reaches {above}'


def test_the_plots_import_no_package_singleton():
    for name in MODULES:
        if name.startswith(f'{PACKAGE}.plotting'):
            imported = {n for t, n in _imports(name) if t == PACKAGE}
            assert not imported, f'{name} imports {imported} from the package root'


def test_only_the_facade_and_the_command_line_read_conf():
    readers = sorted(name for name in MODULES
                     if any(t == PACKAGE and n == 'conf' for t, n in _imports(name)))
    assert readers and all(name == f'{PACKAGE}.core' or name.startswith(f'{PACKAGE}.cli.')
                           for name in readers), readers
