"""Tables of the solve settings and the configuration, generated from the code
at build time so that they cannot drift from it.

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
"""
from sphinx.util.docutils import SphinxDirective

from aq_rst import list_table, literal, parse_rst

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
        return (', '.join(literal(a) for a in setting.allowed) if setting.allowed
                else 'any non-empty string')
    low, high = setting.allowed
    return f'{low:g} to {high:g}'


def _default_text(setting, always_sent):
    if setting.name in always_sent:
        return f'{literal(setting.default)} (always sent)'
    if setting.default is None:
        return 'not sent'
    return literal(setting.default)


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
        return parse_rst(self, list_table(header, rows, widths=[18, 12, 18, 11, 14, 27]))


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
        return parse_rst(self, list_table(['You write', 'nova arguments sent'], rows,
                                          widths=[50, 50]))


# -- configuration ---------------------------------------------------------------
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
                             literal(default) if default != '' else "``''`` (unset)",
                             item.description])
        return parse_rst(self, list_table(['Item', 'Type', 'Default', 'Meaning'], rows,
                                          widths=[14, 8, 24, 54]))


def setup(app):
    app.add_directive('aq-settings-table', SettingsTable)
    app.add_directive('aq-astropy-settings', AstropySettings)
    app.add_directive('aq-conf-table', ConfTable)
    return {'version': '1.0', 'parallel_read_safe': True, 'parallel_write_safe': True}
