"""Tidying of the API pages (automodapi / autodoc).

- Short references: ```Job``` in a docstring finds
  ``astrometry_query.results.Job`` when that is the only documented object of
  the name.
- The private mixins of `~astrometry_query.AstrometryNetClass` are left out
  of its "Bases" line.
"""
from sphinx.util.nodes import make_refnode

from aq_rst import PACKAGE


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
    app.connect('missing-reference', _resolve_short_names)
    app.connect('autodoc-process-bases', _public_bases)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
