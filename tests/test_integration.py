"""End-to-end: the facade solving real images through the local backend and
through the real nova-compatible server (on 127.0.0.1), checked against the
true WCS of synthetic fields and against nova's own recorded solutions."""
import functools
import http.server
import threading
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

import astroquery.astrometry_net.tests as aq_tests
from astrometry_query import AstrometryNetClass, conf
from astrometry_query.cli import example_image_path
from astrometry_query.exceptions import (InvalidInputError, LoginError, SolveFailedError,
                                         SolveTimeoutError)
from astrometry_query.simulate import read_truth_wcs, render_field, wcs_rms_error
from server_fixtures import nova_server, requires_solver  # noqa: F401

pytestmark = requires_solver

AQ_DATA = Path(aq_tests.__file__).parent / 'data'
WCS_LIMIT = 0.15   # pixels: the acceptance bound on synthetic fields


@pytest.fixture(autouse=True)
def fast_polls():
    with conf.set_temp('poll_interval', 0.1):
        yield


@pytest.fixture(scope='module')
def fields(tmp_path_factory):
    """Synthetic images (no WCS in their headers) with their truth."""
    folder = tmp_path_factory.mktemp('fields')
    specs = {
        # name: centre, scale "/px, rotation, flip, sip
        'plain': ((150.3, 25.1), 12.0, 37.0, False, None),
        'flipped': ((280.5, -40.2), 10.0, -65.0, True, None),
        'distorted': ((30.2, 60.3), 11.0, 120.0, False, {'k1': 2e-8}),
    }
    out = {}
    for name, (center, scale, rot, flip, sip) in specs.items():
        field = render_field(SkyCoord(*center, unit='deg'), pixel_scale=scale * u.arcsec / u.pix,
                             shape=(600, 700), rotation=rot * u.deg, flip=flip, sip=sip,
                             fwhm=2.8, hot_pixels=10, seed=7)
        out[name] = (field.writeto(folder / f'{name}.fits', truth='none'), field, scale)
    return out


def _scale_hint(scale):
    return {'scale': (0.9 * scale, 1.1 * scale) * u.arcsec / u.pix}


@pytest.fixture
def local(tmp_path):
    with AstrometryNetClass(backend='local') as client:
        yield client


@pytest.fixture
def nova(nova_server):  # noqa: F811
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url,
                            backend='nova') as client:
        yield client


# -- accuracy against the truth, both backends ---------------------------------
@pytest.mark.parametrize('name', ['plain', 'flipped', 'distorted'])
def test_local_backend_recovers_true_wcs(local, fields, name):
    path, field, scale = fields[name]
    extra = {'tweak_order': 3} if name == 'distorted' else {}
    header = local.solve_from_image(path, verbose=False, **_scale_hint(scale), **extra)
    error = wcs_rms_error(field.wcs, header, field.data.shape)
    assert error < WCS_LIMIT, f'{name}: RMS {error:.3f} px'
    cal = local.get_calibration(header)
    assert cal.parity == (1.0 if name == 'flipped' else -1.0)
    assert cal.pixscale.to_value(u.arcsec / u.pix) == pytest.approx(scale, rel=2e-3)


@pytest.mark.parametrize('name', ['plain', 'flipped'])
def test_server_recovers_true_wcs(nova, fields, name):
    path, field, scale = fields[name]
    header = nova.solve_from_image(path, verbose=False, solve_timeout=120, **_scale_hint(scale))
    assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT
    assert header['AN_JOBID'] > 0 and header['AN_SUBID'] > 0


def test_bundled_example_solves_blind(local):
    header = local.solve_from_image(example_image_path(), verbose=False)
    truth = read_truth_wcs(example_image_path())
    assert wcs_rms_error(truth, header) < WCS_LIMIT
    names = local.get_objects_in_field(header)
    assert 'M 42' in names and 'Orion Nebula' in names


# -- astroquery's real recorded data --------------------------------------------
def test_real_image_matches_nova_solution(local):
    header = local.solve_from_image(AQ_DATA / 'thumbnail-image.fit.gz', verbose=False,
                                    scale=(30, 45) * u.arcmin)
    nova_solution = fits.getheader(AQ_DATA / 'wcs-sol-from-thumbnail-image-index-5200.fit')
    assert wcs_rms_error(nova_solution, header, (256, 256)) < 0.5


def test_real_source_list_through_server_matches_nova(nova):
    sources = Table.read(AQ_DATA / 'test-source-list.fit')
    nova_solution = fits.getheader(AQ_DATA / 'wcs-sol-from-source-list-index-5200.fit')
    width, height = int(nova_solution['IMAGEW']), int(nova_solution['IMAGEH'])
    header, sub_id = nova.solve_from_source_list(
        sources['X'], sources['Y'], width, height, verbose=False, solve_timeout=120,
        scale_units='arcminwidth', scale_lower=30, scale_upper=45, return_submission_id=True)
    assert header['AN_SUBID'] == sub_id
    # A 0.56"/px field: two solutions from different index sets agree within 1".
    pixscale = nova.get_calibration(header).pixscale.to_value(u.arcsec / u.pix)
    assert wcs_rms_error(nova_solution, header, (height, width)) * pixscale < 1.0


# -- the nova backend against the real server: every result --------------------
def test_everything_about_one_job(nova, fields, tmp_path):
    path, field, scale = fields['plain']
    sub = nova.submit_image(path, force_image_upload=True, **_scale_hint(scale))
    states = []
    job = nova.wait(sub.id, solve_timeout=120, verbose=False,
                    progress=lambda state, s, j: states.append(state))
    assert job.solved and job.submission_id == sub.id and states[-1] == 'success'
    cal = nova.get_calibration(job)
    assert cal.center.separation(SkyCoord(150.3, 25.1, unit='deg')) < 10 * u.arcsec
    assert cal.width.unit == u.arcsec and cal.pixscale.unit == u.arcsec / u.pix
    header = nova.get_wcs_header(job)
    assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT
    table = nova.get_annotations(header)
    assert set(table.colnames) >= {'type', 'names', 'pixelx', 'pixely', 'ra', 'dec'}
    assert isinstance(nova.get_objects_in_field(job), list)
    assert nova.get_job_info(job).calibration is not None
    for kind in ('wcs', 'new_fits', 'rdls', 'axy', 'corr', 'image_rd'):
        with nova.download(job, kind) as hdul:
            assert isinstance(hdul, fits.HDUList)
    new = nova.download(job, 'new_fits')
    assert new[0].data.shape == field.data.shape and new[0].header['CTYPE1'].startswith('RA---TAN')
    png = nova.download(job, 'annotated')
    assert png[:4] == b'\x89PNG' or png[:2] == b'\xff\xd8'
    saved = nova.download(job, 'corr', destination_dir=tmp_path)
    assert saved.is_file()
    with pytest.raises(FileExistsError):
        nova.download(job, 'corr', destination_dir=tmp_path)
    assert nova.download(job, 'corr', destination_dir=tmp_path, overwrite=True) == saved
    jobs = nova.list_jobs()
    assert job.id in list(jobs['job_id'])


def test_resume_by_id_from_a_new_client(nova_server, fields):  # noqa: F811
    path, field, scale = fields['flipped']
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url) as first:
        sub = first.submit_image(path, **_scale_hint(scale))
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.api_url) as second:
        header = second.monitor_submission(sub.id, solve_timeout=120, verbose=False)
    assert header['AN_SUBID'] == sub.id
    assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(fields):
    folder = Path(fields['plain'][0]).parent
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                            functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize('backend', ['nova', 'local'])
def test_solve_from_url(nova_server, file_server, fields, backend):  # noqa: F811
    _, field, scale = fields['plain']
    kwargs = ({'api_key': nova_server.api_key, 'server': nova_server.url}
              if backend == 'nova' else {})
    with AstrometryNetClass(backend=backend, **kwargs) as client:
        header = client.solve_from_url(f'{file_server}/plain.fits', verbose=False,
                                       solve_timeout=120, **_scale_hint(scale))
    assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT


def test_bad_url_fails_with_submission_id(nova):
    with pytest.raises(Exception) as info:
        nova.solve_from_url('http://127.0.0.1:9/nothing.fits', verbose=False, solve_timeout=60)
    assert getattr(info.value, 'submission_id', None) is not None


def test_unsolvable_field_raises_solve_failed(nova, local):
    rng = np.random.default_rng(1)
    x, y = rng.uniform(1, 1000, 60), rng.uniform(1, 1000, 60)
    for client in (nova, local):
        with pytest.raises(SolveFailedError) as info:
            client.solve_from_source_list(x, y, 1000, 1000, verbose=False, solve_timeout=120,
                                          scale=(10, 11) * u.arcsec / u.pix,
                                          center=SkyCoord(10, 10, unit='deg'), radius=1 * u.deg)
        assert info.value.submission_id is not None


def test_local_timeout_kills_the_solve(local, fields):
    path, field, scale = fields['plain']
    with pytest.raises(SolveTimeoutError) as info:
        local.solve_from_image(path, verbose=False, solve_timeout=0.05)
    assert isinstance(info.value, TimeoutError) and info.value.args[1] is not None
    # The solve was stopped, not left running: resuming reports the same.
    with pytest.raises(SolveTimeoutError):
        local.wait(info.value.submission_id, solve_timeout=60, verbose=False)


def test_timeout_carries_submission_id_and_resumes(nova, fields):
    path, field, scale = fields['plain']
    with pytest.raises(SolveTimeoutError) as info:
        nova.solve_from_image(path, verbose=False, solve_timeout=0.01, **_scale_hint(scale))
    assert isinstance(info.value, TimeoutError) and info.value.args[1] is not None
    assert f'wait({info.value.submission_id}' in str(info.value)
    job = nova.wait(info.value.submission_id, solve_timeout=120, verbose=False)
    assert wcs_rms_error(field.wcs, nova.get_wcs_header(job), field.data.shape) < WCS_LIMIT


def test_local_results_survive_a_new_instance(fields):
    path, field, scale = fields['plain']
    with AstrometryNetClass(backend='local') as first:
        header = first.solve_from_image(path, verbose=False, **_scale_hint(scale))
    with AstrometryNetClass(backend='local') as second:    # same job store (conf)
        assert second.get_calibration(header).parity == -1.0
        assert second.download(header, 'rdls')[1].data is not None
        assert header['AN_JOBID'] in list(second.list_jobs()['job_id'])


def test_rejected_key_and_bad_input(nova_server, fields):  # noqa: F811
    with AstrometryNetClass(api_key='notavalidkey1234', server=nova_server.url) as client:
        with pytest.raises(LoginError) as info:
            client.login()
        assert 'notavalidkey1234' not in str(info.value)
        with pytest.raises(InvalidInputError):
            client.solve_from_image(fields['plain'][0].parent / 'missing.fits')
