"""The docs keep up with the code: every error class has its troubleshooting
text in docs/troubleshooting.rst.  (The Sphinx build checks the same, and
fails on it; this test needs no Sphinx.)  And the built pages work offline:
their maths is MathML made at build time, with no script from elsewhere
(this one needs the docs extra: Sphinx, sphinx-astropy, latex2mathml).
"""
import inspect
import io
import re
from pathlib import Path

import pytest

from astrometry_query import exceptions

DOCS = Path(__file__).resolve().parent.parent / 'docs'
TROUBLESHOOTING = DOCS / 'troubleshooting.rst'
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


# -- the built pages work offline ------------------------------------------------------
MATHS_PAGE = r"""Maths
=====

Inline: :math:`\sqrt{2}` larger.

.. math::

   \sqrt{\overline{dx^2 + dy^2}}
"""


def _build(tmp_path, **overrides):
    """Build a page of maths with the docs' own conf.py; its HTML."""
    for module in ('sphinx', 'sphinx_astropy', 'latex2mathml'):       # the docs extra
        pytest.importorskip(module)
    from sphinx.application import Sphinx
    source = tmp_path / 'source'
    source.mkdir(exist_ok=True)
    (source / 'index.rst').write_text(MATHS_PAGE, encoding='utf-8')
    out = tmp_path / 'html'
    app = Sphinx(str(source), str(DOCS), str(out), str(tmp_path / 'doctrees'), 'html',
                 confoverrides=overrides, status=None, warning=io.StringIO(), freshenv=True)
    app.build(force_all=True)
    return (out / 'index.html').read_text(encoding='utf-8')


@pytest.mark.slow
def test_maths_are_mathml_and_no_page_loads_a_remote_script(tmp_path):
    page = _build(tmp_path)
    assert re.search(r'Inline: <math [^>]*display="inline">(<mrow>)*<msqrt>(<mrow>)*<mn>2</mn>',
                     page)
    assert re.search(r'<div class="math[^"]*"><math [^>]*display="block">.*<mover>', page)
    scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]*)"', page)
    assert scripts, 'the page has its own scripts (the theme\'s), served with it'
    remote = [s for s in scripts if re.match(r'([a-z][a-z0-9+.-]*:)?//', s, re.I)
              or re.search('mathjax|katex', s, re.I)]
    assert not remote


@pytest.mark.slow
def test_the_build_fails_rather_than_load_mathjax_from_elsewhere(tmp_path):
    errors = pytest.importorskip('sphinx.errors')       # the docs extra; CI installs it after
    ExtensionError = errors.ExtensionError
    with pytest.raises(ExtensionError, match='would load .*mathjax'):
        _build(tmp_path, html_math_renderer='mathjax')
