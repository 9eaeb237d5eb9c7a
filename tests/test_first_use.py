"""What a new user hits in the first hour, with the real solver and the real
server: a centre given as a string, a batch given as a folder or a pattern, a
usable WCS object, and a journal that remembers what failed."""
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.batch import Journal
from astrometry_query.exceptions import InvalidInputError, InvalidSettingError
from astrometry_query.images import expand_images, image_stem
from astrometry_query.settings import normalize_settings, parse_position
from astrometry_query.datasets import render_field, wcs_rms_error
from real_server import requires_solver

pytestmark = requires_solver

CENTRE = SkyCoord('05h35m17s -05d23m28s')
WCS_LIMIT = 0.15


@pytest.fixture(autouse=True)
def fast_polls():
    with conf.set_temp('poll_interval', 0.1):
        yield


@pytest.fixture(scope='module')
def night(tmp_path_factory):
    """A folder of three small fields near M42 (headers without hints) and
    their truths, plus a file that is not an image."""
    folder = tmp_path_factory.mktemp('night')
    fields = []
    for i, rotation in enumerate((10.0, 100.0, 220.0)):
        field = render_field(CENTRE, pixel_scale=11 * u.arcsec / u.pix, shape=(400, 500),
                             rotation=rotation * u.deg, fwhm=2.8, hot_pixels=5, seed=20 + i)
        fields.append((field.writeto(folder / f'frame{i:02d}.fits', truth='none'), field))
    (folder / 'notes.txt').write_text('seeing 2"')
    return folder, fields


# -- 6: a centre given as a string ------------------------------------------------------------
@pytest.mark.parametrize('text', ['05h35m17s -05d23m28s', '05:35:17 -05:23:28',
                                  '05 35 17 -05 23 28', '83.82083 -5.39111', '83.82083, -5.39111',
                                  '83.82083d -5.39111d'])
def test_centre_strings_read_as_skycoord_does(text):
    position = parse_position(text)
    assert position.separation(CENTRE) < 1 * u.arcsec
    args = normalize_settings({'center': text, 'radius': 1 * u.deg})
    assert args['center_ra'] == pytest.approx(CENTRE.ra.deg, abs=1e-3)
    assert args['center_dec'] == pytest.approx(CENTRE.dec.deg, abs=1e-3)


@pytest.mark.parametrize('text', ['M42', '83.82', '400 95', 'north'])
def test_unreadable_centre_strings_say_what_is_accepted(text):
    with pytest.raises(InvalidSettingError, match=r"center: cannot read .*'05h35m17s") as info:
        normalize_settings({'center': text, 'radius': 1})
    assert info.value.setting == 'center'


@pytest.mark.slow
def test_centre_string_solves_locally_and_through_the_server(night, local, nova_server):
    (path, field) = night[1][0]
    hints = dict(center='05h35m17s -05d23m28s', radius=1 * u.deg,
                 scale=(9, 13) * u.arcsec / u.pix)
    header = local.solve_from_image(path, verbose=False, cache=False, **hints)
    assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT
    assert local.get_job_info(header).solved
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url,
                            backend='nova') as nova:
        header = nova.solve_from_image(path, verbose=False, cache=False, **hints)
    assert wcs_rms_error(field.wcs, header, field.data.shape) < WCS_LIMIT


def test_a_bad_centre_string_fails_before_any_job(night, local):
    before = len(local.backend.my_jobs())
    with pytest.raises(InvalidSettingError, match='center'):
        local.solve_from_image(night[1][0][0], verbose=False, center='M42', radius=1)
    assert len(local.backend.my_jobs()) == before


# -- 7: a batch given as a folder or a pattern ---------------------------------------------
def test_expand_images_lists_folders_and_patterns(night, tmp_path):
    folder, fields = night
    paths = [p for p, _ in fields]
    assert expand_images(folder) == paths                    # notes.txt is not an image
    assert expand_images(str(folder / 'frame*.fits')) == paths
    assert expand_images([paths[1], str(folder / '*.fits')]) == [paths[1], paths[0], paths[2]]
    assert image_stem('m42.fits.gz') == 'm42' and image_stem('frame.FIT') == 'frame'
    (tmp_path / 'empty').mkdir()
    with pytest.raises(InvalidInputError, match='holds no image files'):
        expand_images(tmp_path / 'empty')
    with pytest.raises(InvalidInputError, match='no file matches'):
        expand_images(str(tmp_path / '*.fits'))


def test_solve_many_takes_a_folder_or_a_pattern(night, local):
    folder, fields = night
    by_folder = local.solve_many(folder, verbose=False, scale=(9, 13) * u.arcsec / u.pix)
    by_pattern = local.solve_many(str(folder / 'frame0[0-2].fits'), verbose=False,
                                  scale=(9, 13) * u.arcsec / u.pix)
    for table in (by_folder, by_pattern):
        assert list(table['input']) == [str(p) for p, _ in fields]
        for row, (_, field) in zip(table, fields):
            assert row['status'] == 'success', row['error']
            assert wcs_rms_error(field.wcs, row['header'], field.data.shape) < WCS_LIMIT
    assert list(by_pattern['origin']) == ['cache'] * 3       # the folder's solves, reused


def test_solve_many_refuses_a_pattern_matching_nothing(night, local, tmp_path):
    with pytest.raises(InvalidInputError, match='images: no file matches'):
        local.solve_many(str(tmp_path / '*.fits'), verbose=False)


# -- 8: a usable WCS object -------------------------------------------------------------------
def test_get_wcs_has_the_image_size_and_no_warning(night, local):
    (path, field) = night[1][2]
    header = local.solve_from_image(path, verbose=False, scale=(9, 13) * u.arcsec / u.pix)
    assert header['NAXIS'] == 0                   # astroquery's header, unchanged
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        wcs = local.get_wcs(header)
        from_id = local.get_wcs(int(header['AN_JOBID']))
        from_record = local.get_wcs(local.get_job_info(header))
    for w in (wcs, from_id, from_record):
        assert isinstance(w, WCS)
        assert w.pixel_shape == (500, 400) and w.array_shape == (400, 500)
    corners = wcs.calc_footprint()
    truth = field.wcs.calc_footprint(axes=(500, 400))
    assert np.allclose(corners, truth, atol=3 * 11 / 3600)
    ra, dec = wcs.pixel_to_world_values(249.5, 199.5)
    assert SkyCoord(ra, dec, unit="deg").separation(field.wcs.pixel_to_world(249.5, 199.5)) \
        < 1 * u.arcsec


def test_get_wcs_warns_in_no_thread(night, local):
    """Batches make WCS objects in threads: warnings filters are not thread-safe,
    so no warning may be raised in the first place."""
    header = local.solve_from_image(night[1][0][0], verbose=False,
                                    scale=(9, 13) * u.arcsec / u.pix)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with ThreadPoolExecutor(4) as pool:
            shapes = list(pool.map(lambda _: local.get_wcs(header).pixel_shape, range(40)))
    assert set(shapes) == {(500, 400)}
    assert not [w for w in caught if 'WCS' in str(w.message)]


# -- 10: a journal remembers failures -----------------------------------------------------------
WRONG_SCALE = {'scale': (3, 4) * u.arcsec / u.pix}     # the fields are 11"/px: no solution


@pytest.mark.slow
def test_a_journal_does_not_search_again_for_what_failed(night, local, tmp_path):
    folder, fields = night
    journal = tmp_path / 'night.jsonl'
    paths = [fields[0][0], fields[1][0]]
    first = local.solve_many(paths, journal=journal, verbose=False, cache=False, **WRONG_SCALE)
    assert list(first['status']) == ['failure', 'failure']
    assert list(first['origin']) == ['new', 'new']
    entries = list(Journal(journal).entries.values())
    assert [e['failure'] for e in entries] == ['no_solution', 'no_solution']
    jobs = len(local.backend.my_jobs())
    again = local.solve_many(paths, journal=journal, verbose=False, cache=False, **WRONG_SCALE)
    assert len(local.backend.my_jobs()) == jobs                  # nothing searched
    assert list(again['status']) == ['failure', 'failure']
    assert list(again['origin']) == ['journal', 'journal']
    assert all('not searched again' in e and 'retry_failed=True' in e for e in again['error'])
    assert list(again['job_id']) == list(first['job_id'])
    forced = local.solve_many(paths, journal=journal, verbose=False, cache=False,
                              retry_failed=True, **WRONG_SCALE)
    assert len(local.backend.my_jobs()) == jobs + 2             # searched again, as new jobs
    assert list(forced['origin']) == ['new', 'new']
    # Other settings are another search: the right scale solves them.
    right = local.solve_many(paths, journal=journal, verbose=False, cache=False,
                             scale=(9, 13) * u.arcsec / u.pix)
    assert list(right['status']) == ['success', 'success']


def test_a_journal_retries_a_timeout_given_more_time(night, local, tmp_path):
    journal = tmp_path / 'timeouts.jsonl'
    path = night[1][2][0]
    first = local.solve_many([path], journal=journal, verbose=False, cache=False,
                             solve_timeout=0.01)
    assert first['status'][0] == 'failure'
    assert next(iter(Journal(journal).entries.values()))['failure'] == 'timeout'
    same = local.solve_many([path], journal=journal, verbose=False, cache=False,
                            solve_timeout=0.01)
    assert same['origin'][0] == 'journal'
    longer = local.solve_many([path], journal=journal, verbose=False, cache=False,
                              solve_timeout=60, scale=(9, 13) * u.arcsec / u.pix)
    assert longer['status'][0] == 'success' and longer['origin'][0] == 'new'


@pytest.mark.slow
def test_a_journal_remembers_failures_through_the_server(night, nova_server, tmp_path):
    journal = tmp_path / 'server.jsonl'
    path = night[1][0][0]
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url,
                            backend='nova') as nova:
        first = nova.solve_many([path], journal=journal, verbose=False, cache=False,
                                **WRONG_SCALE)
        submissions = len(nova.list_job_records())
        again = nova.solve_many([path], journal=journal, verbose=False, cache=False,
                                **WRONG_SCALE)
        assert len(nova.list_job_records()) == submissions         # nothing submitted
    assert first['status'][0] == 'failure' and first['origin'][0] == 'new'
    assert again['origin'][0] == 'journal' and 'not searched again' in again['error'][0]
    assert again['submission_id'][0] == first['submission_id'][0]


def test_retry_failed_must_be_a_flag(night, local):
    with pytest.raises(InvalidInputError, match='retry_failed must be True or False'):
        local.solve_many([night[1][0][0]], verbose=False, retry_failed='yes')


def test_folder_of_copies_keeps_its_order(night, tmp_path):
    """Sorted by name, whatever order the filesystem lists them in."""
    folder = tmp_path / 'copies'
    folder.mkdir()
    for name in ('b.fits', 'a.fit', 'c.fits.gz'):
        shutil.copyfile(night[1][0][0], folder / name)
    assert [p.name for p in expand_images(folder)] == ['a.fit', 'b.fits', 'c.fits.gz']


# -- 11: error texts ---------------------------------------------------------------------------
@pytest.mark.parametrize('scale, name', [((8, 10), 'scale'), (9, 'scale'),
                                         ((8, 10) * u.arcsec, 'scale'), (9 * u.arcsec, 'scale')])
def test_a_scale_without_per_pixel_asks_did_you_mean(night, local, scale, name):
    before = len(local.backend.my_jobs())
    with pytest.raises(InvalidSettingError, match='Did you mean arcsec/pix') as info:
        local.solve_from_image(night[1][0][0], verbose=False, scale=scale)
    assert info.value.setting == name
    assert len(local.backend.my_jobs()) == before            # refused before any job
    with pytest.raises(InvalidSettingError, match='scale_lower: .*Did you mean arcsec/pix'):
        normalize_settings({'scale_lower': 8 * u.arcsec, 'scale_upper': 10 * u.arcsec})


def test_a_field_width_in_arcmin_is_still_a_width():
    args = normalize_settings({'scale': (40, 60) * u.arcmin})
    assert args['scale_units'] == 'degwidth' and args['scale_upper'] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_failed_search_names_what_it_searched(night, local, nova_server):
    from astrometry_query.exceptions import SolveFailedError
    path = night[1][0][0]
    wrong = dict(scale=(3, 4) * u.arcsec / u.pix, center='05:35:17 -05:23:28', radius=1 * u.deg)
    searched = 'pixel scales of 3-4 arcsec/pixel, within 1 deg of RA 83.8208 Dec -5.3911'
    with pytest.raises(SolveFailedError) as info:
        local.solve_from_image(path, verbose=False, cache=False, **wrong)
    assert searched in str(info.value) and 'resume with' not in str(info.value)
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url,
                            backend='nova') as nova:
        with pytest.raises(SolveFailedError) as info:
            nova.solve_from_image(path, verbose=False, cache=False, **wrong)
    assert searched in str(info.value) and 'resume with' not in str(info.value)


def test_resume_is_offered_only_where_waiting_can_help(night, local):
    from astrometry_query.exceptions import SolveTimeoutError
    path = night[1][1][0]
    with pytest.raises(SolveTimeoutError) as stopped:        # the job itself ran out of time
        local.solve_from_image(path, verbose=False, cache=False, solve_timeout=0.01)
    text = str(stopped.value)
    assert not stopped.value.resumable
    assert 'resume with' not in text and 'give a longer solve_timeout' in text
    assert 'any pixel scale, over the whole sky' in text
    submission = local.submit_image(path, solve_timeout=60, scale=(9, 13) * u.arcsec / u.pix)
    with pytest.raises(SolveTimeoutError) as waiting:        # the wait ran out, not the job
        local.wait(submission, solve_timeout=1e-3, verbose=False)
    assert waiting.value.resumable
    assert f'resume with AstrometryNet.wait({submission.id})' in str(waiting.value)
    assert local.wait(submission, verbose=False).solved       # and resuming works


def test_plurals(tmp_path):
    from astrometry_query._text import plural
    from astrometry_query.local.pipeline import solve
    assert plural(1, 'source') == '1 source' and plural(2, 'source') == '2 sources'
    result = solve(sources={'x': [10.0], 'y': [20.0]}, width=100, height=100)
    assert result.error.startswith('only 1 source was found')


@pytest.mark.slow
def test_log_lines_carry_the_package_name(tmp_path):
    """With no logging configured by the application, a warning of a module
    that logs through the standard library says where it comes from (Python's
    last-resort handler would print the bare message)."""
    import subprocess
    import sys
    code = ('from astrometry_query.jobs import SolveRequest, run_job\n'
            f'run_job({str(tmp_path)!r}, SolveRequest(image_path={str(tmp_path / "missing.fits")!r}))\n')
    err = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True).stderr.strip().splitlines()
    assert len(err) == 1, err                                 # said once
    assert err[0].startswith('WARNING: job ') and err[0].endswith('[astrometry_query.jobs.files]')


def test_every_logger_is_the_packages():
    """Loggers are astroquery's or named under astrometry_query (so the
    default handler and `serve`'s configuration reach them)."""
    import re
    from pathlib import Path
    import astrometry_query
    root = Path(astrometry_query.__file__).parent
    for path in root.rglob('*.py'):
        if path.name == '_log.py':          # it sets the package logger up
            continue
        for name in re.findall(r'getLogger\(([^)]*)\)', path.read_text()):
            assert name == '__name__' or name.strip('\'"').startswith('astrometry_query'), \
                (path, name)


def test_auto_backend_without_index_files_says_so(tmp_path):
    from astrometry_query.exceptions import LocalSolverNotFoundError, MissingAPIKeyError
    (tmp_path / 'empty').mkdir()
    with conf.set_temp('index_dir', str(tmp_path / 'empty')), AstrometryNetClass() as client:
        with pytest.raises(LocalSolverNotFoundError, match='no astrometry.net index files') as info:
            client.solve_from_image(night_image(tmp_path), verbose=False)
    assert 'sudo apt-get install astrometry-data-tycho2' in str(info.value)
    assert not isinstance(info.value, MissingAPIKeyError)


def test_auto_backend_without_a_solver_says_what_to_do(tmp_path, monkeypatch):
    from astrometry_query.exceptions import MissingAPIKeyError
    image = night_image(tmp_path)
    monkeypatch.setenv('PATH', str(tmp_path))                # no astrometry-engine
    with AstrometryNetClass() as client:
        with pytest.raises(MissingAPIKeyError, match='no local astrometry.net is installed') as info:
            client.solve_from_image(image, verbose=False)
    assert 'sudo apt-get install astrometry.net' in str(info.value)
    assert 'api_key=' in str(info.value)


def night_image(folder):
    field = render_field(CENTRE, pixel_scale=11 * u.arcsec / u.pix, shape=(200, 200), seed=3)
    return field.writeto(folder / 'small.fits', truth='none')


@pytest.mark.slow
def test_threads_leave_the_warning_filters_as_they_were(night):
    """Batches read headers and refit in threads: warnings filters are the
    process's, and overlapping catch_warnings can leave one in place for good."""
    import warnings as w
    before = list(w.filters)
    with AstrometryNetClass(backend='local') as client:
        table = client.solve_many([p for p, _ in night[1]] * 2, executor='threads',
                                  max_concurrency=4, verbose=False, cache=False,
                                  scale=(9, 13) * u.arcsec / u.pix)
    assert list(table['status']) == ['success'] * 6
    assert w.filters == before
