"""No secret anywhere: full solves with DEBUG logging on both backends and
through the real server; the API key and every session key must not appear in
a log record (any logger, any level), a repr, an exception message, or any
file under the cache, the local job store or the server's data directory."""
import logging
import re
from pathlib import Path

import astropy.units as u
import pytest
from astropy.coordinates import SkyCoord

from astroquery import log as astroquery_log
from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import AstrometryNetError
from astrometry_query.server import ServerThread
from astrometry_query.datasets import render_field
from real_server import requires_solver

pytestmark = requires_solver
API_KEY = 'secretkeyqwertyu'


class _Everything(logging.Handler):
    def __init__(self):
        super().__init__(level=1)
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.mark.slow
def test_no_secret_in_logs_reprs_errors_or_files(tmp_path):
    field = render_field(SkyCoord(150.3, 25.1, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                         shape=(400, 500), rotation=37 * u.deg, fwhm=2.8, seed=1)
    image = field.writeto(tmp_path / 'field.fits', truth='none')
    handler = _Everything()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in
              ('', 'astroquery', 'astrometry_query', 'urllib3', 'uvicorn', 'requests')}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(1)
    astroquery_level = astroquery_log.level
    astroquery_log.setLevel(5)          # astroquery's own "super-DEBUG", response bodies too
    astroquery_log.addHandler(handler)
    texts, sessions = [], set()
    try:
        with ServerThread(workers=1, api_keys=[API_KEY], data_dir=tmp_path / 'server',
                          log_level='debug') as server, \
                conf.set_temp('poll_interval', 0.05):
            with AstrometryNetClass(api_key=API_KEY, server=server.url) as nova:
                header = nova.solve_from_image(image, verbose=True, cache=True)
                nova.get_annotations(header)
                nova.get_objects_in_field(header)
                for kind in ('wcs', 'corr', 'rdls', 'annotated'):
                    nova.download(header, kind, destination_dir=tmp_path, overwrite=True)
                nova.solve_from_image(image, verbose=True)          # from the cache
                nova.solve_many([image, tmp_path / 'missing.fits'], verbose=False, cache=False)
                sessions.add(nova.backend.session_key())
                nova.backend.session_key(renew=True)               # a second session
                sessions.add(nova.backend.session_key())
                texts += [repr(nova), repr(nova.backend)]
                for call in (lambda: nova.wait(999999, solve_timeout=1, verbose=False),
                             lambda: nova.download(999999, 'wcs'),
                             lambda: AstrometryNetClass(api_key='wrongkeyabcdefgh',
                                                        server=server.url).login()):
                    with pytest.raises(AstrometryNetError) as info:
                        call()
                    texts += [str(info.value), repr(info.value)]
            with AstrometryNetClass(backend='local') as local:
                header = local.solve_from_image(image, verbose=True)
                local.get_annotations(header)
                texts.append(repr(local))
    finally:
        root.removeHandler(handler)
        astroquery_log.removeHandler(handler)
        astroquery_log.setLevel(astroquery_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert len(handler.lines) > 50          # DEBUG really was on
    assert len(sessions) == 2 and all(re.fullmatch(r'[a-z0-9]{32}', s) for s in sessions)
    secrets = [API_KEY] + sorted(sessions)
    for text in handler.lines + texts:
        for secret in secrets:
            assert secret not in text, text[:300]
    searched = 0
    for folder in (tmp_path, tmp_path / 'server', conf.local_data_dir):
        for path in (p for p in Path(folder).rglob('*') if p.is_file()):
            content = path.read_bytes()
            searched += 1
            for secret in secrets:
                assert secret.encode() not in content, path
    from astropy.config import get_cache_dir
    for path in (p for p in Path(get_cache_dir()).rglob('*')
                 if p.is_file()):
        content = path.read_bytes()
        searched += 1
        for secret in secrets:
            assert secret.encode() not in content, path
    assert searched > 20
