"""The docs keep up with the code: every error class has its troubleshooting
text in docs/troubleshooting.rst.  (The Sphinx build checks the same, and
fails on it; this test needs no Sphinx.)"""
import inspect
import re
from pathlib import Path

import pytest

from astrometry_query import exceptions

TROUBLESHOOTING = Path(__file__).resolve().parent.parent / 'docs' / 'troubleshooting.rst'
DIRECTIVE = re.compile(r'^\.\. aq-error:: *(\S+) *\n((?:[ \t]*\n|   .*\n)*)', re.M)

pytestmark = pytest.mark.skipif(not TROUBLESHOOTING.is_file(), reason='no docs/ here')


def _sections():
    """{class name: its text} of the ``.. aq-error::`` directives."""
    text = TROUBLESHOOTING.read_text(encoding='utf-8') + '\n'
    found = {}
    for match in DIRECTIVE.finditer(text):
        name, body = match.group(1), match.group(2)
        assert name not in found, f'two troubleshooting sections for {name}'
        found[name] = body.strip()
    return found


def test_every_error_class_has_troubleshooting_text():
    classes = {name for name in exceptions.__all__
               if inspect.isclass(getattr(exceptions, name))}
    sections = _sections()
    missing = sorted(classes - set(sections))
    assert not missing, (f'add a ".. aq-error:: NAME" section with its cause and what to do '
                         f'to docs/troubleshooting.rst for: {", ".join(missing)}')
    unknown = sorted(set(sections) - classes)
    assert not unknown, f'docs/troubleshooting.rst names no such error class: {unknown}'
    empty = sorted(name for name, body in sections.items() if not body)
    assert not empty, f'troubleshooting sections without text: {empty}'
    # each directive sits in a section titled with the class name
    text = TROUBLESHOOTING.read_text(encoding='utf-8')
    for name in sections:
        assert re.search(rf'^{name}\n~+\n\n\.\. aq-error:: {name}\b', text, re.M), name
