"""astroquery's private surface of AstrometryNet, kept so code (and tests)
written against astroquery keep working: ``_constraints``,
``empty_settings``, ``_validate_settings``, ``_construct_payload``, ``_login``.
"""
from .nova.protocol import encode_request
from .settings import SETTINGS, allowed_settings_text, validate_settings

__all__ = ['AstroqueryCompatMixin']


class AstroqueryCompatMixin:
    """The astroquery-compatible helpers of `AstrometryNetClass`."""

    _constraints = {name: {'default': s.default, 'type': s.type,
                           'allowed': s.allowed if s.type is not bool else ()}
                    for name, s in SETTINGS.items()}

    @property
    def empty_settings(self):
        """Every setting with its default value."""
        return {k: v['default'] for k, v in self._constraints.items()}

    def show_allowed_settings(self):
        """Print every setting with its type, default and allowed values."""
        print(allowed_settings_text())

    def _validate_settings(self, settings):
        validate_settings(settings)

    def _construct_payload(self, settings):
        return encode_request(settings)


def _login(self):
    """astroquery's private login (raises RuntimeError without an API key)."""
    self.login(self.api_key)


# Set after the class body: astroquery's metaclass would otherwise replace the
# facade's login() with a wrapper that calls a base class's login.
AstroqueryCompatMixin._login = _login
