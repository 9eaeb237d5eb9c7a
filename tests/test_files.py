"""Atomic writes (astrometry_query.files): one way to replace a file whole, also for
writers that need a path (astropy's writeto, a program's output), used everywhere
the package writes a file a reader may see."""
import ast
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import astrometry_query
from astrometry_query.files import atomic_path, write_atomic

ROOT = Path(astrometry_query.__file__).parent


def test_atomic_path_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / 'wcs.fits'
    target.write_bytes(b'old')
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith('.wcs.fits.')
        fits.PrimaryHDU(np.zeros((2, 3))).writeto(tmp)
        assert target.read_bytes() == b'old'            # not before the block ends
    assert fits.getdata(target).shape == (2, 3)
    with pytest.raises(ValueError, match='half written'):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b'partial')
            raise ValueError('half written')
    assert fits.getdata(target).shape == (2, 3)         # the old file stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ['wcs.fits']    # no temporary left
    assert write_atomic(tmp_path / 'a.txt', 'x') == tmp_path / 'a.txt'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.txt', 'wcs.fits']


def _replacing_modules():
    """Modules that call os.replace (or Path.replace/rename) themselves."""
    out = set()
    for path in ROOT.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ('replace', 'rename'):
                owner = node.func.value
                if isinstance(owner, ast.Name) and owner.id == 'os' \
                        or node.func.attr == 'rename':
                    out.add(path.relative_to(ROOT).as_posix())
    return out


@pytest.mark.slow
def test_files_are_replaced_through_files_py_only():
    # index/download.py keeps its partial file under one name across calls (to resume
    # it), and local/backend.py renames whole job directories, not files.
    assert _replacing_modules() <= {'files.py', 'index/download.py', 'local/backend.py'}
    assert 'files.py' in _replacing_modules()
