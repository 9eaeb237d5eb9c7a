"""Shared pytest setup: no test reaches the internet, config is isolated."""
import pytest


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch, tmp_path_factory):
    """Each test sees default conf values, no API key from the environment or
    keyring, and private cache and job directories."""
    from astropy.config import set_temp_cache

    from astrometry_query import conf
    monkeypatch.delenv('ASTROMETRY_NET_API_KEY', raising=False)
    monkeypatch.setenv('PYTHON_KEYRING_BACKEND', 'keyring.backends.null.Keyring')
    base = tmp_path_factory.mktemp('aq')
    with conf.set_temp('api_key', ''), conf.set_temp('local_data_dir', str(base / 'local')), \
            set_temp_cache(str(base / 'cache')):
        yield
