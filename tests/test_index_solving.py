"""End to end: a narrow field that Debian's Tycho-2 files cannot solve, solved
from index files built out of a star catalogue, through the local backend and
through the real server; and refused, with the fix, when only Tycho-2 is there.

The catalogue is synthetic (4000 stars in a 0.5 degree cone, as a Gaia cone of
an observatory's target would be); the 10 arcmin field is rendered from it
through a known WCS with SIP distortion.
"""
import re

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import IndexCoverageError, InvalidInputError
from astrometry_query.index import build_index, installed_indexes
from astrometry_query.datasets import render_field, synthetic_catalog, wcs_rms_error

from real_server import INDEX_DIR, requires_solver

pytestmark = requires_solver

#: The issue's bound: within 0.15 px of the true WCS.
WCS_LIMIT = 0.15
TARGET = SkyCoord(210.80, 54.35, unit='deg')          # near M101
FIELD = SkyCoord(210.86, 54.30, unit='deg')
SCALE = {'scale_units': 'arcsecperpix', 'scale_lower': 0.9, 'scale_upper': 1.1}


@pytest.fixture(scope='module')
def narrow_field(tmp_path_factory):
    """(image path, the SyntheticField, its star catalogue): a field far
    narrower than Tycho-2's quads."""
    base = tmp_path_factory.mktemp('narrow')
    catalog = synthetic_catalog(TARGET, 0.5 * u.deg, 4000, seed=11)
    field = render_field(FIELD, pixel_scale=1.0 * u.arcsec / u.pix, shape=(600, 640),
                         rotation=-37 * u.deg, flip=True, sip={'k1': 4e-10}, catalog=catalog,
                         zeropoint=24.0, fwhm=2.8, hot_pixels=3, cosmic_rays=1, seed=5)
    path = field.writeto(base / 'narrow.fits', truth='extension')
    return path, field, catalog


@pytest.fixture(scope='module')
def narrow(narrow_field, tmp_path_factory):
    """(image path, the SyntheticField, the index directory built for it):
    building takes seconds, so the tests that use it are slow."""
    path, field, catalog = narrow_field
    built = build_index(catalog, tmp_path_factory.mktemp('narrow-index'), verbose=False)
    return path, field, built[0].parent


@pytest.mark.slow
def test_the_index_was_built_for_the_field(narrow):
    _, field, index_dir = narrow
    table = installed_indexes(index_dir)
    assert table['scale'][0] == 0 and table['quad_min'][0] == pytest.approx(2.0)
    assert len(table) >= 5 and set(table['series']) == {9000}
    # the field, 10.7 x 10 arcmin, is far below Tycho-2's smallest quads (22 arcmin)
    assert field.data.shape[1] / 60 < float(installed_indexes(INDEX_DIR)['quad_min'].min()) / 2


@pytest.mark.slow
def test_local_backend_solves_it_from_the_built_index(narrow):
    path, field, index_dir = narrow
    with conf.set_temp('index_dir', str(index_dir)), AstrometryNetClass(backend='local') as client:
        header = client.solve_from_image(path, verbose=False, cache=False, **SCALE)
        assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT
        blind = client.solve_from_image(path, verbose=False, cache=False, solve_timeout=60)
        assert wcs_rms_error(field.wcs, blind, field.data.shape) < WCS_LIMIT
        stars = field.source_list()
        listed = client.solve_from_source_list(stars['x'], stars['y'], 640, 600, verbose=False,
                                               cache=False, **SCALE)
        assert wcs_rms_error(field.wcs, listed, field.data.shape) < WCS_LIMIT


@pytest.mark.slow
def test_server_solves_it_from_the_built_index(narrow, make_nova_server):
    path, field, index_dir = narrow
    server = make_nova_server(index_dir=str(index_dir))
    with AstrometryNetClass(api_key=server.api_key, server=server.url, backend='nova') as client:
        header = client.solve_from_image(path, verbose=False, cache=False, **SCALE)
        assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT
        uploaded = client.solve_from_image(path, verbose=False, cache=False,
                                           force_image_upload=True, **SCALE)
        assert wcs_rms_error(field.wcs, uploaded, field.data.shape) < WCS_LIMIT


def test_tycho_only_refuses_it_at_once_with_the_fix(narrow_field):
    path, _, _ = narrow_field
    with conf.set_temp('index_dir', str(INDEX_DIR)), AstrometryNetClass(backend='local') as client:
        jobs_before = len(client.list_jobs())
        with pytest.raises(IndexCoverageError) as info:
            client.solve_from_image(path, verbose=False, cache=False, **SCALE)
        assert len(client.list_jobs()) == jobs_before             # nothing was submitted
    message = str(info.value)
    assert 'No installed index file can solve this field' in message
    assert 'quads of 22-2000 arcmin' in message and '9-11.7 arcmin' in message
    # the header's pointing makes it the tiles around the field: megabytes, not 18 GB; the
    # directories were chosen (conf.index_dir), so the command names where the files must go
    assert info.value.command == ('astrometry-query index download 5200 --scales 1-5 '
                                  f'--around 210.8600,+54.3000 --radius 2 --dest {INDEX_DIR}')
    assert info.value.needed_scales == [1, 2, 3, 4, 5]
    assert re.search(r'about \d+ MB for the tiles within 2 deg .* GB for the whole sky', message)


@pytest.fixture
def hinted(narrow_field, tmp_path):
    """The narrow field with the pointing and the scale (1"/px) in its header."""
    path, _, _ = narrow_field
    with fits.open(path) as hdul:
        header = hdul[0].header
        assert header['PIXSCALE'] == pytest.approx(1.0)
        header['RA'], header['DEC'] = FIELD.ra.deg, FIELD.dec.deg
        hdul.writeto(tmp_path / 'hinted.fits')
    return tmp_path / 'hinted.fits'


def test_tycho_only_with_the_scale_in_the_header_refuses_at_once(hinted):
    """A header scale is trusted: no index file can serve it, so the solve is
    refused before any job or search, saying what to fetch and how to distrust
    the header."""
    with conf.set_temp('index_dir', str(INDEX_DIR)), AstrometryNetClass(backend='local') as client:
        jobs_before = len(client.backend.my_jobs())
        with pytest.raises(IndexCoverageError) as info:
            client.solve_from_image(hinted, verbose=False, cache=False, solve_timeout=120)
        assert len(client.backend.my_jobs()) == jobs_before          # nothing was searched
    message = str(info.value)
    assert "header's PIXSCALE card" in message and "header_hints='verify'" in message
    assert 'found nothing either' not in message
    assert '--around 210.8600,+54.3000' in message
    assert info.value.command.startswith('astrometry-query index download 5200')


def test_tycho_only_with_the_scale_in_the_header_in_a_batch(hinted):
    """The same refusal on the batch path (hints read in the worker)."""
    with conf.set_temp('index_dir', str(INDEX_DIR)), AstrometryNetClass(backend='local') as client:
        table = client.solve_many([hinted], verbose=False, cache=False, solve_timeout=120)
    assert list(table['status']) == ['failure']
    assert "header's PIXSCALE card" in table['error'][0]
    assert 'found nothing either' not in table['error'][0]


@pytest.mark.slow
def test_tycho_only_with_a_header_to_verify(hinted, caplog):
    """header_hints='verify': the header may be wrong: warned at once, then a
    search without it; when that fails too, the error says what to fetch."""
    with conf.set_temp('index_dir', str(INDEX_DIR)), AstrometryNetClass(backend='local') as client:
        with pytest.raises(IndexCoverageError) as info:
            client.solve_from_image(hinted, verbose=False, cache=False, solve_timeout=8,
                                    header_hints='verify')
    assert "header's PIXSCALE card" in caplog.text           # said before the search
    message = str(info.value)
    assert 'found nothing either' in message and '--around 210.8600,+54.3000' in message
    assert info.value.job_id is not None                     # the job ran: its id is kept


def test_header_hints_takes_true_verify_or_false(hinted):
    with AstrometryNetClass(backend='local') as client:
        with pytest.raises(InvalidInputError, match="header_hints must be True.*'verify'"):
            client.solve_from_image(hinted, verbose=False, header_hints='yes')
        with pytest.raises(InvalidInputError, match="header_hints must be True"):
            client.solve_many([hinted], verbose=False, header_hints='check')


def test_server_refuses_a_trusted_header_scale_at_once(hinted, make_nova_server):
    """Through the real server: the upload's header scale cannot be served, and
    the client does not go on to a wider search."""
    server = make_nova_server(index_dir=str(INDEX_DIR))
    with AstrometryNetClass(api_key=server.api_key, server=server.url, backend='nova') as client:
        with pytest.raises(IndexCoverageError) as info:
            client.solve_from_image(hinted, verbose=False, cache=False, solve_timeout=120)
        assert len(client.list_job_records()) == 1          # one job: no wider attempt
    assert 'index download 5200' in str(info.value)


@pytest.mark.slow
def test_server_with_tycho_only_says_why(narrow_field, make_nova_server):
    path, _, _ = narrow_field
    server = make_nova_server(index_dir=str(INDEX_DIR))
    with AstrometryNetClass(api_key=server.api_key, server=server.url, backend='nova') as client:
        with pytest.raises(IndexCoverageError) as info:
            client.solve_from_image(path, verbose=False, cache=False, **SCALE)
    message = str(info.value)
    # refused before any search (a search would say it 'found nothing either')
    assert message.startswith('No installed index file can solve this field')
    assert 'found nothing either' not in message
    assert 'index download 5200 --scales 1-5' in message
    assert info.value.command.startswith('astrometry-query index download 5200 --scales 1-5')
    assert str(INDEX_DIR) in str(info.value) and info.value.submission_id is not None


@pytest.mark.slow
def test_batch_rows_carry_the_fix(narrow):
    path, field, index_dir = narrow
    with conf.set_temp('index_dir', str(INDEX_DIR)), AstrometryNetClass(backend='local') as client:
        table = client.solve_many([path, path], verbose=False, cache=False, **SCALE)
    assert list(table['status']) == ['failure', 'failure']
    assert all('index download 5200 --scales 1-5' in e for e in table['error'])
    with conf.set_temp('index_dir', str(index_dir)), AstrometryNetClass(backend='local') as client:
        table = client.solve_many([path], verbose=False, cache=False, executor='threads', **SCALE)
    assert table['status'][0] == 'success'
    assert wcs_rms_error(field.wcs, table['header'][0], field.data.shape) < WCS_LIMIT


@pytest.mark.slow
def test_index_dir_may_name_several_directories(narrow):
    path, field, index_dir = narrow
    both = f'{INDEX_DIR}:{index_dir}'
    with conf.set_temp('index_dir', both), AstrometryNetClass(backend='local') as client:
        assert set(client.backend.index_dir) == {str(INDEX_DIR), str(index_dir)}
        header = client.solve_from_image(path, verbose=False, cache=False, **SCALE)
        assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT
        assert np.isfinite(header['CRVAL1'])


@pytest.mark.slow
def test_tycho_only_at_the_edge_says_why_it_failed(tmp_path):
    """16 arcmin: the engine may try Tycho-2's 22 arcmin quads, so the search
    runs; when it finds nothing the error says the files barely reach the
    field, and what to fetch (not 'give scale hints': they were given)."""
    target = SkyCoord(295.0, 8.0, unit='deg')
    catalog = synthetic_catalog(target, 0.5 * u.deg, 4000, seed=3)
    field = render_field(SkyCoord(295.1, 8.03, unit='deg'), pixel_scale=1.5 * u.arcsec / u.pix,
                         shape=(640, 600), rotation=160 * u.deg, catalog=catalog,
                         zeropoint=24.0, fwhm=2.8, seed=7)
    path = field.writeto(tmp_path / 'edge.fits', truth='extension')
    with conf.set_temp('index_dir', str(INDEX_DIR)), AstrometryNetClass(backend='local') as client:
        with pytest.raises(IndexCoverageError) as info:
            client.solve_from_image(path, verbose=False, cache=False, scale_units='arcsecperpix',
                                    scale_lower=1.35, scale_upper=1.65, solve_timeout=60)
    message = str(info.value)
    assert 'barely reach this field' in message and 'The search found no match.' in message
    assert 'index download 5200 --scales 2-6 --around 295.1000,+8.0300' in message
    assert info.value.job_id is not None
    assert info.value.command.startswith('astrometry-query index download 5200 --scales 2-6')
    assert info.value.needed_scales == [2, 3, 4, 5, 6]
