"""Failures that say why, and the solve-field command line of every job.

A failed solve names the sources it used, the scales and sky area searched,
the index files consulted, the best match and the next step (in the
exception, the job's info and the server's job page); every job records the
``solve-field`` command equivalent to it, which solves the same field when
run.  Against the real solver, on rendered fields with a known WCS.
"""
import re
import shutil
import subprocess

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query import AstrometryNetClass
from astrometry_query.cli import main
from astrometry_query.datasets import render_field, wcs_rms_error
from astrometry_query.exceptions import SolveFailedError
from astrometry_query.local import pipeline
from astrometry_query.solve_field import solve_field_command
from astrometry_query.local.failures import EngineSearch, engine_search, failure_details
from astrometry_query.sources import extract_sources
from real_server import requires_solver

ORION = SkyCoord(83.8, -5.4, unit='deg')
SHAPE = (500, 600)
RIGHT_SCALE = {'scale_units': 'arcsecperpix', 'scale_lower': 5.5, 'scale_upper': 6.5}
#: The right scale, but pointing 60 degrees away from the field.
WRONG_POSITION = dict(RIGHT_SCALE, center_ra=150.0, center_dec=30.0, radius=1.0)


@pytest.fixture(scope='module')
def orion(tmp_path_factory):
    """A 600 x 500 px field at 6 arcsec/px (its file, its true WCS)."""
    sf = render_field(ORION, pixel_scale=6 * u.arcsec / u.pix, shape=SHAPE, rotation=20 * u.deg,
                      seed=3, hot_pixels=5)
    path = sf.writeto(tmp_path_factory.mktemp('orion') / 'orion field.fits', truth='extension')
    return path, sf.wcs


def _says_why(message, *, scale, where):
    """Each element a failure must name is in ``message``."""
    assert re.search(r'\b\d+ sources used', message), message
    assert scale in message and where in message, message
    assert re.search(r'index files consulted: index-tycho2-\d\d\.\.\d\d \(\d+ files\)',
                     message), message
    assert 'log-odds' in message, message                 # the best match, or that there was none
    assert re.search(r'Next: \w', message), message


# -- pieces -----------------------------------------------------------------------------------
def test_the_engine_log_says_which_index_files_and_the_best_match():
    log = ('Set odds ratio to solve to 1e+09 (log = 20.7233)\n'
           'Trying index /usr/share/astrometry/index-tycho2-12.littleendian.fits...\n'
           'Got a new best match: logodds 6.15424.\n'
           'Field 1 did not solve (index index-tycho2-12.littleendian.fits, field objects 1-10).\n'
           'Trying index /usr/share/astrometry/index-tycho2-11.littleendian.fits...\n'
           'Got a new best match: logodds 9.63894.\n'
           'Got a new best match: logodds 2.5.\n')
    found = engine_search(log)
    assert found.indexes == ['index-tycho2-12.littleendian.fits',
                             'index-tycho2-11.littleendian.fits']
    assert found.best_logodds == pytest.approx(9.63894)
    assert found.best_index == 'index-tycho2-11.littleendian.fits'
    # inparallel: the run lists its indexes
    listed = engine_search('indexes:\n  /a/index-5001-00.fits\n  /a/index-5001-01.fits\nfieldfname x\n')
    assert listed.indexes == ['index-5001-00.fits', 'index-5001-01.fits']
    assert listed.best_logodds is None


def test_the_next_step_follows_from_what_was_given():
    search = EngineSearch(indexes=['index-tycho2-10.littleendian.fits'])
    few = failure_details({}, 5, 7, 9, search, has_position=True, has_scale=True)
    assert 'Next: more sources: only 9 were used' in few
    blind = failure_details({}, None, None, 200, search, has_position=False, has_scale=False)
    assert 'Next: give the pixel scale' in blind
    parity = failure_details({'parity': 1}, 5, 7, 200, search, has_position=False, has_scale=True)
    assert 'parity=2' in parity
    nothing = failure_details({}, 5, 7, 200, EngineSearch(), has_position=False, has_scale=True)
    assert 'no index file' in nothing and 'another index series' in nothing


def test_the_command_line_says_what_the_solve_was_given():
    text = solve_field_command(
        {'scale_units': 'arcminwidth', 'scale_type': 'ev', 'scale_est': 60, 'scale_err': 10,
         'center_ra': 370.0, 'center_dec': -5.5, 'radius': 2, 'parity': 0, 'tweak_order': 0,
         'downsample_factor': 2, 'crpix_center': True, 'positional_error': 1.5},
        filename="it's a field.fits", timeout=30.2, index_dirs=['/data/idx'])
    command, *notes = text.splitlines()
    assert command.startswith('solve-field --overwrite --no-plots --scale-units arcminwidth '
                              '--scale-low 54 --scale-high 66 --ra 10 --dec -5.5 --radius 2 '
                              '--parity pos --no-tweak --crpix-center --pixel-error 1.5 '
                              '--downsample 2 --cpulimit 31 ')
    assert command.endswith(""" 'it'"'"'s a field.fits'""")       # quoted for a shell
    assert all(n.startswith('# ') for n in notes)
    assert any('/data/idx' in n and '--config' in n for n in notes)
    # header hints fill what the settings left open, and are said to be hints
    hinted = solve_field_command({}, hints={'scale': RIGHT_SCALE, 'position': {}},
                                 hint_sources=['PIXSCALE'], filename='a.fits')
    assert '--scale-low 5.5 --scale-high 6.5' in hinted and 'PIXSCALE' in hinted
    listed = solve_field_command({}, source_list=True, width=600, height=500, filename='job.axy')
    assert '--width 600 --height 500 job.axy' in listed


# -- real failures -------------------------------------------------------------------------------
@requires_solver
@pytest.mark.slow
def test_a_failed_local_solve_says_why(local, orion, capsys):
    path, _ = orion
    with pytest.raises(SolveFailedError) as info:
        local.solve_from_image(path, verbose=False, cache=False, header_hints=False,
                               solve_timeout=60, **WRONG_POSITION)
    _says_why(str(info.value), scale='pixel scales of 5.5-6.5 arcsec/pixel',
              where='within 1 deg of RA 150.0000 Dec +30.0000')
    job = local.get_job_info(info.value.job_id)
    assert job.status == 'failure'
    _says_why(job.error_message, scale='5.5-6.5 arcsec/pixel', where='RA 150.0000')
    assert ('--scale-low 5.5 --scale-high 6.5 --ra 150 --dec 30 --radius 1'
            in job.command_line)
    assert job.command_line.splitlines()[0].endswith("'orion field.fits'")
    # and on the command line
    code = main(['jobs', 'show', str(job.id), '--backend', 'local'])
    out = capsys.readouterr().out
    assert code == 0 and 'index files consulted' in out and 'solve-field command:' in out
    assert '    solve-field --overwrite --no-plots --scale-units arcsecperpix' in out


@requires_solver
@pytest.mark.slow
def test_a_search_stopped_by_its_time_limit_names_its_best_match(orion):
    path, _ = orion
    # A wrong scale (3-4 times the true one), over the whole sky: false matches only.
    result = pipeline.solve(path, timeout=12, settings={
        'scale_units': 'arcsecperpix', 'scale_lower': 20, 'scale_upper': 25})
    assert not result.solved and result.timed_out
    assert re.search(r'the best match found in index-tycho2-\d\d\.littleendian\.fits had '
                     r'log-odds \d+\.\d \(a solution needs 20\.7\)', result.error), result.error
    _says_why(result.error, scale='pixel scales of 20-25 arcsec/pixel',
              where='over the whole sky')
    assert 'or give a longer solve_timeout' in result.error


@requires_solver
def test_too_few_sources_say_nothing_was_searched(tmp_path):
    path = tmp_path / 'blank.fits'
    fits.PrimaryHDU(np.random.default_rng(1).normal(100, 5, SHAPE).astype('f4')).writeto(path)
    result = pipeline.solve(path, settings=RIGHT_SCALE, timeout=30)
    assert result.error_kind == 'too_few_sources'
    assert 'no index file was consulted' in result.error
    assert 'pixel scales of 5.5-6.5 arcsec/pixel, over the whole sky was not searched' in result.error
    assert 'Next: check the image' in result.error


# -- the command line ---------------------------------------------------------------------------
@requires_solver
@pytest.mark.slow
def test_the_recorded_command_line_solves_the_same_field(local, orion, tmp_path):
    path, truth = orion
    header = local.solve_from_image(path, verbose=False, cache=False, solve_timeout=60)
    job = local.get_job_info(header['AN_JOBID'])
    command = job.command_line
    assert command.startswith('solve-field ') and "'orion field.fits'" in command
    assert '--scale-units arcsecperpix' in command and '--ra ' in command   # the header's hints
    # Run as a user would, where the file is (the comments are the shell's).
    shutil.copy(path, tmp_path / path.name)
    subprocess.run(['bash', '-c', command], cwd=tmp_path, capture_output=True, timeout=300,
                   check=True)
    solved = tmp_path / 'orion field.wcs'
    assert solved.is_file()
    assert wcs_rms_error(truth, fits.getheader(solved), SHAPE) < 1.0


@requires_solver
@pytest.mark.slow
def test_server_jobs_record_the_command_line_and_why_they_failed(open_nova_server, orion):
    path, _ = orion
    table = extract_sources(path)
    x, y = np.asarray(table['x'], float)[:100], np.asarray(table['y'], float)[:100]
    with AstrometryNetClass(server=open_nova_server.url, backend='nova') as client:
        header = client.solve_from_source_list(x, y, SHAPE[1], SHAPE[0], verbose=False,
                                               cache=False, solve_timeout=120,
                                               center_ra=83.8, center_dec=-5.4, radius=1,
                                               **RIGHT_SCALE)
        job_id = header['AN_JOBID']
        job = client.get_job_info(job_id)
        assert job.command_line.splitlines()[0] == (
            'solve-field --overwrite --no-plots --scale-units arcsecperpix --scale-low 5.5 '
            '--scale-high 6.5 --ra 83.8 --dec -5.4 --radius 1 --width 600 --height 500 '
            '--cpulimit 300 job.axy')
        page = requests.get(f'{open_nova_server.url}/job/{job_id}', timeout=30).text
        assert 'id="command-line"' in page and '--scale-low 5.5 --scale-high 6.5' in page
        with pytest.raises(SolveFailedError) as info:
            client.solve_from_source_list(x, y, SHAPE[1], SHAPE[0], verbose=False, cache=False,
                                          solve_timeout=120, **WRONG_POSITION)
        _says_why(str(info.value), scale='5.5-6.5 arcsec/pixel', where='RA 150.0000')
        failed = client.get_job_info(info.value.job_id)
        _says_why(failed.error_message, scale='5.5-6.5 arcsec/pixel', where='RA 150.0000')
        page = requests.get(f'{open_nova_server.url}/job/{info.value.job_id}', timeout=30).text
        assert 'Why it failed' in page and 'index files consulted: index-tycho2-' in page
        assert '--ra 150 --dec 30 --radius 1' in page


@pytest.mark.slow
def test_a_nova_job_gets_its_command_line_from_what_the_client_sent():
    from nova_mock import FakeNova, attach
    fake = FakeNova()
    x, y = [10.5, 200.25, 35.0, 410.0, 99.0, 300.5], [20.0, 150.5, 400.0, 33.25, 250.0, 88.0]
    with AstrometryNetClass(api_key=fake.api_key, server=fake.base) as client:
        attach(client, fake)
        header = client.solve_from_source_list(x, y, 512, 480, verbose=False, scale_lower=1,
                                               scale_upper=2, scale_units='arcsecperpix')
        job = client.get_job_info(header)
        assert job.command_line.splitlines()[0] == (
            'solve-field --overwrite --no-plots --scale-units arcsecperpix --scale-low 1 '
            '--scale-high 2 --width 512 --height 480 job.axy')
    with AstrometryNetClass(api_key=fake.api_key, server=fake.base) as other:
        attach(other, fake)     # nova does not record it: another client cannot say it
        assert other.get_job_info(header).command_line is None
