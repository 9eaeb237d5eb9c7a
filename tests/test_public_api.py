"""The public surface in one place (issue 16): `astrometry_query.PUBLIC_MODULES`
is the table of public modules, the API reference documents exactly those,
every module declares its names (``__all__``), and every other module says
that it is internal; old module names (``simulate``, ``local.commandline``) still
work, with a warning."""
import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.utils.exceptions import AstropyDeprecationWarning

import astrometry_query
from astrometry_query import PUBLIC_MODULES

ROOT = Path(astrometry_query.__file__).parent
API_PAGE = ROOT.parent / 'docs' / 'api.rst'


def _modules():
    """Module name -> path, for every module of the package."""
    out = {}
    for path in sorted(ROOT.rglob('*.py')):
        parts = (ROOT.name,) + path.relative_to(ROOT).with_suffix('').parts
        out['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return out


MODULES = _modules()


def _tree(name):
    return ast.parse(MODULES[name].read_text())


def test_every_module_declares_its_names():
    missing = [name for name in MODULES
               if not any(isinstance(node, (ast.Assign, ast.AnnAssign))
                          and any(isinstance(t, ast.Name) and t.id == '__all__'
                                  for t in (node.targets if isinstance(node, ast.Assign)
                                            else [node.target]))
                          for node in _tree(name).body)]
    assert not missing, f'modules without __all__: {missing}'


def test_the_api_reference_documents_the_public_modules():
    documented = re.findall(r'^\.\. automodapi:: (\S+)', API_PAGE.read_text(), flags=re.M)
    assert len(documented) == len(set(documented))
    assert documented == list(PUBLIC_MODULES)


@pytest.mark.parametrize('name', PUBLIC_MODULES)
def test_public_modules_have_the_names_they_declare(name):
    module = importlib.import_module(name)
    assert module.__all__ and all(hasattr(module, n) for n in module.__all__)
    assert name in MODULES and module.__doc__


def _says_internal(name):
    """Whether a module is marked internal: a leading underscore in its name, 'Internal'
    (or 'Deprecated') opening its docstring, or a package above it that says so (an
    internal package, or a public one whose docstring says its modules are internal)."""
    if any(part.startswith('_') and part != '__main__' for part in name.split('.')):
        return True
    doc = ast.get_docstring(_tree(name)) or ''
    if re.match(r'(Internal|Deprecated)\b', doc):
        return True
    package = name.rpartition('.')[0]
    while package != ROOT.name and package:
        doc = ast.get_docstring(_tree(package)) or ''
        if package not in PUBLIC_MODULES and re.match(r'Internal\b', doc):
            return True
        if package in PUBLIC_MODULES and re.search(r'\bmodules\b[^.]*\binternal\b', doc):
            return True
        package = package.rpartition('.')[0]
    return False


def test_every_other_module_says_it_is_internal():
    unmarked = [name for name in MODULES if name not in PUBLIC_MODULES and not _says_internal(name)]
    assert not unmarked, f'neither public nor marked internal: {unmarked}'
    assert set(PUBLIC_MODULES) <= set(MODULES)


#: Old module names that still work, with a warning: (old, new, names the same objects).
ALIASES = [('astrometry_query.simulate', 'astrometry_query.datasets',
            ['render_field', 'SyntheticField']),
           # the solve-field command serves nova jobs too: no longer under ``local``
           ('astrometry_query.local.commandline', 'astrometry_query.solve_field',
            ['solve_field_command', 'command_of_request'])]


@pytest.mark.slow
@pytest.mark.parametrize('old_name, new_name, names', ALIASES)
def test_deprecated_aliases(monkeypatch, old_name, new_name, names):
    new = importlib.import_module(new_name)
    monkeypatch.delitem(sys.modules, old_name, raising=False)
    with pytest.warns(AstropyDeprecationWarning,
                      match=re.escape(f'{old_name} is deprecated: import from {new_name}')):
        old = importlib.import_module(old_name)
    assert all(getattr(old, name) is getattr(new, name) for name in names)
    assert old.__all__ == new.__all__
    assert new_name in PUBLIC_MODULES and old_name not in PUBLIC_MODULES
    # once per process, however often it is imported
    code = (f'import {old_name}\nfrom {old_name} import {names[0]}\n'
            f'import {old_name} as again')
    out = subprocess.run([sys.executable, '-W', 'always', '-c', code], capture_output=True,
                         text=True, check=True)
    assert (out.stdout + out.stderr).count(f'{old_name} is deprecated') == 1
