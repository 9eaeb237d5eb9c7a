"""How the server's modules depend on each other (issue 16): the HTTP plumbing
below the nova API and the web pages, no import cycle among them (imports
inside functions counted), no module importing another's private names, and
the names shared with the rest of the package defined once."""
import ast
from pathlib import Path

import astrometry_query.server as server
from astrometry_query.local import backend as local_backend
from astrometry_query.nova import client as nova_client
from astrometry_query.nova import protocol

SERVER = Path(server.__file__).parent


def _imports():
    """Module name -> [(server module imported, names imported)], every import counted."""
    out = {}
    for path in SERVER.glob('*.py'):
        mod = path.stem
        out[mod] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [a.name for a in node.names]
                if node.module is None:      # from . import x
                    out[mod] += [(n, []) for n in names]
                else:
                    out[mod].append((node.module.split('.')[0], names))
    return out


def test_no_import_cycle_among_the_server_modules():
    graph = {mod: {t for t, _ in targets if t != mod and (SERVER / f'{t}.py').exists()}
             for mod, targets in _imports().items()}
    graph['__init__'] = set()          # `from . import x` in __main__: the package itself
    done, path = set(), []

    def visit(mod):
        assert mod not in path, f'import cycle: {" -> ".join(path[path.index(mod):] + [mod])}'
        if mod in done:
            return
        path.append(mod)
        for target in graph.get(mod, ()):
            visit(target)
        path.pop()
        done.add(mod)
    for mod in graph:
        visit(mod)
    # The plumbing is below both the API and the pages.
    assert 'http' in graph['app'] and 'http' in graph['web'] and 'http' in graph['web_auth']
    assert not graph['http'] and 'app' not in graph['web'] | graph['web_auth'] | graph['web_html']


def test_no_private_names_imported_across_modules():
    for mod, targets in _imports().items():
        for target, names in targets:
            private = [n for n in names if n.startswith('_') and not n.startswith('__')]
            assert not private, f'{mod} imports {private} from .{target}'


def test_shared_names_are_defined_once():
    assert nova_client.LONG_POLL_HEADER is protocol.LONG_POLL_HEADER
    assert 'LONG_POLL_HEADER' not in vars(server.http) or \
        server.http.LONG_POLL_HEADER is protocol.LONG_POLL_HEADER
    # The server's own data directory and the local backend's job store are different places
    # with different names.
    assert not hasattr(server, 'default_data_dir')
    assert server.default_server_dir() != local_backend.default_store_dir()
    assert server.default_server_dir().name == 'server'


def test_secrets_are_written_owner_only(tmp_path):
    """write_atomic (the server's web secret uses it) gives a new file its mode from
    its creation on, so that no other user can read it even while it is written."""
    from astrometry_query.files import write_atomic
    write_atomic(tmp_path / 'secret', b'x' * 32, mode=0o600)
    assert (tmp_path / 'secret').stat().st_mode & 0o777 == 0o600
    write_atomic(tmp_path / 'text', 'é\n')
    assert (tmp_path / 'text').read_text(encoding='utf-8') == 'é\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['secret', 'text']
