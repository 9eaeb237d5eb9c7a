"""Matched stars (issue 17, point 4): a job's sources matched with catalogue
stars through its solution, with their residuals, and every source with
whether it is matched.  With the real solver and the real server: local jobs,
our server's ``matches`` file, a server without it (nova.astrometry.net: the
solver's corr file instead, chosen because the download fails), and a frame
solved by tracking (no corr file at all)."""
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from scipy.spatial import cKDTree

from astrometry_query import AstrometryNetClass, matches
from astrometry_query.datasets import render_field
from astrometry_query.exceptions import InvalidInputError, ResultNotAvailableError
from astrometry_query.jobs import DOWNLOAD_KINDS, RESULT_KINDS
from fault_proxy import FaultProxy
from nova_mock import FakeNova, attach
from real_server import requires_solver

HERE = SkyCoord(150.3, 25.1, unit='deg')
KW = dict(pixel_scale=12 * u.arcsec / u.pix, shape=(400, 500), fwhm=2.8, sip={'k1': 2e-8})
SCALE = (10, 14) * u.arcsec / u.pix
SOLVE = dict(scale=SCALE, verbose=False, cache=False, solve_timeout=120)
UNITS = {'x': u.pix, 'y': u.pix, 'flux': None, 'ra': u.deg, 'dec': u.deg, 'mag': u.mag,
         'dx': u.pix, 'dy': u.pix, 'residual': u.pix, 'residual_sky': u.arcsec}


@pytest.fixture(scope='module')
def field():
    return render_field(HERE, rotation=37 * u.deg, seed=1, **KW)


@pytest.fixture
def image(field, tmp_path):
    return field.writeto(tmp_path / 'field.fits', truth='none')


@pytest.fixture
def nova(nova_server):
    with AstrometryNetClass(api_key=nova_server.api_key, server=nova_server.url,
                            backend='nova') as client:
        yield client


def _check(stars, field, solved_wcs, *, rms=0.1, mags=True):
    """The matched stars of a solve of ``field``, checked against its truth."""
    assert stars.colnames == list(UNITS)
    assert {name: stars[name].unit for name in UNITS} == UNITS
    assert stars.meta['n_matched'] == len(stars) and len(stars) >= 15
    # Each catalogue star is the one drawn at that source: its position through
    # the true WCS is the drawn star's to a few hundredths of a pixel.
    drawn = np.column_stack([field.stars['x'], field.stars['y']]) + 1       # FITS 1-based
    _, nearest = cKDTree(drawn).query(np.column_stack([stars['x'], stars['y']]))
    tx, ty = field.wcs.all_world2pix(stars['ra'], stars['dec'], 1)
    assert np.hypot(tx - drawn[nearest, 0], ty - drawn[nearest, 1]).max() < 0.03
    # ... and found there (a star cut by the frame's edge has its centroid pulled in)
    ny, nx = field.data.shape
    inside = (stars['x'] > 4) & (stars['x'] < nx - 3) & (stars['y'] > 4) & (stars['y'] < ny - 3)
    offset = np.hypot(stars['x'] - drawn[nearest, 0], stars['y'] - drawn[nearest, 1])
    assert offset[inside].max() < 0.5 and np.median(offset) < 0.15
    if mags:       # the Tycho-2 index files carry MAG_VT, the stars drawn from them
        assert np.isfinite(stars['mag']).all()
        np.testing.assert_allclose(stars['mag'], field.stars['mag'][nearest], atol=1e-3)
    # The residuals: the catalogue star through the solved WCS minus the source.
    cx, cy = solved_wcs.all_world2pix(stars['ra'], stars['dec'], 1)
    np.testing.assert_allclose(stars['dx'], cx - stars['x'], atol=1e-6)
    np.testing.assert_allclose(stars['dy'], cy - stars['y'], atol=1e-6)
    np.testing.assert_allclose(stars['residual'], np.hypot(stars['dx'], stars['dy']))
    np.testing.assert_allclose(stars['residual_sky'], 12.0 * stars['residual'], rtol=0.02,
                               atol=1e-3)
    assert stars.meta['rms_px'] == pytest.approx(np.sqrt(np.mean(stars['residual'] ** 2)))
    assert stars.meta['rms_px'] < rms
    assert stars.meta['rms_arcsec'] == pytest.approx(12.0 * stars.meta['rms_px'], rel=0.02)


def _check_image_stars(sources, stars, n_sources, solved_wcs):
    assert sources.colnames == ['x', 'y', 'flux', 'ra', 'dec', 'matched']
    assert [sources[c].unit for c in ('x', 'y', 'ra', 'dec')] == [u.pix, u.pix, u.deg, u.deg]
    assert sources['matched'].dtype == bool and len(sources) == n_sources
    assert sources.meta['n_matched'] == sources['matched'].sum() == len(stars)
    assert sources.meta['job_id'] == stars.meta['job_id']
    matched = sources[sources['matched']]
    assert sorted(zip(matched['x'], matched['y'])) == sorted(zip(stars['x'], stars['y']))
    ra, dec = solved_wcs.all_pix2world(sources['x'], sources['y'], 1)
    assert SkyCoord(ra, dec, unit='deg').separation(
        SkyCoord(sources['ra'], sources['dec'])).max() < 1 * u.mas


# -- the local backend --------------------------------------------------------------------------
@requires_solver
def test_local_matched_stars_are_the_stars_drawn_there(local, field, image):
    header = local.solve_from_image(image, **SOLVE)
    job_dir = local.backend.store.path(header['AN_JOBID'])
    assert not (job_dir / 'matches.fits').exists()           # made when first asked for
    stars = local.get_matched_stars(header)
    solved = local.get_wcs(header)
    _check(stars, field, solved)
    n_sources = local.backend.result(header['AN_JOBID'])['n_sources']
    assert len(stars) >= 0.8 * n_sources                      # every source, not only quads
    assert len(stars) > len(Table.read(job_dir / 'corr.fits', unit_parse_strict='silent'))
    assert stars.meta['job_id'] == header['AN_JOBID']
    assert stars.meta['source'] == 'index files' and stars.meta['mag_source'] == 'index files'
    assert (job_dir / 'matches.fits').is_file()               # ... and kept
    again = local.get_matched_stars(header['AN_JOBID'])
    assert again.meta == stars.meta and all((again[c] == stars[c]).all() for c in UNITS
                                            if c != 'flux')
    _check_image_stars(local.get_image_stars(header), stars, n_sources, solved)


@requires_solver
def test_magnitudes_from_rdls_when_corr_has_none(local, field, image):
    """nova's index files may put no magnitude in corr.fits: they come from rdls.fits."""
    header = local.solve_from_image(image, **SOLVE)
    corr = Table(local.download(header, 'corr')[1].data)
    rdls = Table(local.download(header, 'rdls')[1].data)
    assert 'MAG_VT' in corr.colnames and 'MAG_VT' in rdls.colnames    # Tycho-2's VT
    wcs = local.get_wcs(header)
    bare = corr.copy()
    bare.remove_column('MAG_VT')
    from_rdls = matches.from_corr(bare, wcs, rdls)
    assert from_rdls.meta['mag_source'] == 'rdls'
    np.testing.assert_array_equal(from_rdls['mag'], np.asarray(corr['MAG_VT'], float))
    _check(from_rdls, field, wcs)
    unknown = matches.from_corr(bare, wcs)
    assert unknown.meta['mag_source'] is None and np.isnan(unknown['mag']).all()


@pytest.mark.slow
@requires_solver
def test_a_frame_solved_by_tracking_has_matched_stars(local, tmp_path):
    frames = [render_field(SkyCoord(HERE.ra + 0.3 * i * u.arcmin, HERE.dec - 0.2 * i * u.arcmin),
                           rotation=(37 + 0.02 * i) * u.deg, seed=60 + i, **KW) for i in range(3)]
    paths = [f.writeto(tmp_path / f'{i}.fits', truth='none') for i, f in enumerate(frames)]
    table = local.solve_many(paths, track=True, verbose=False, cache=False, scale=SCALE,
                             max_concurrency=1)
    assert list(table['tracked']) == [False, True, True]
    for row, frame in zip(table[1:], frames[1:]):
        job_dir = local.backend.store.path(row['job_id'])
        assert not (job_dir / 'corr.fits').exists()           # no engine ran
        stars = local.get_matched_stars(row)
        _check(stars, frame, local.get_wcs(row['header']), rms=0.15)
        assert stars.meta['source'] == 'index files'


def test_bad_jobs_are_refused_before_any_io(local):
    for job, match in (('abc', 'A job must be'), (0, 'positive integer'), (True, 'not True')):
        for method in (local.get_matched_stars, local.get_image_stars):
            with pytest.raises(InvalidInputError, match=match):
                method(job)
    assert list(local.backend.jobs_dir.iterdir()) == []


# -- our server, and a server without the matches file ------------------------------------------
def test_the_matches_kind_is_in_the_table_but_not_a_nova_download():
    kind = RESULT_KINDS['matches']
    assert (kind.file, kind.routes, kind.media_type, kind.nova) == (
        'matches.fits', ('matches_file',), 'application/fits', False)
    assert 'matches' not in DOWNLOAD_KINDS     # nova.astrometry.net has no such file


@pytest.mark.slow
@requires_solver
def test_our_server_serves_the_matches_file(nova, field, image):
    header = nova.solve_from_image(image, **SOLVE)       # sends the sources: no fluxes
    stars = nova.get_matched_stars(header)
    assert stars.meta['source'] == 'index files' and np.isnan(stars['flux']).all()
    solved = nova.get_wcs(header)
    _check(stars, field, solved)
    n_sources = len(nova.download(header, 'axy')[1].data)
    _check_image_stars(nova.get_image_stars(header), stars, n_sources, solved)


@requires_solver
@pytest.mark.parametrize('answer', [
    dict(kind='html'),                  # nova.astrometry.net: its home page for unknown paths
    dict(kind='status', status=404),    # another server: not found
], ids=['home page', '404'])
@pytest.mark.slow
def test_without_a_matches_file_the_solvers_matches_are_used(nova_server, field, image, answer):
    with FaultProxy(nova_server.url) as proxy, \
            AstrometryNetClass(api_key=nova_server.api_key, server=proxy.url,
                               backend='nova') as nova:
        proxy.fail('GET', r'^/matches_file/', times=None, **answer)
        # The image itself (the server finds the sources, with their fluxes).
        header = nova.solve_from_image(image, force_image_upload=True, **SOLVE)
        stars = nova.get_matched_stars(header)
        assert len(proxy.requests('GET', r'^/matches_file/', forwarded=False)) == 1
        corr = nova.download(header, 'corr')[1].data
        assert stars.meta['source'] == 'corr' and stars.meta['mag_source'] == 'corr'
        assert len(stars) == len(corr)
        np.testing.assert_array_equal(stars['x'], corr['field_x'])
        np.testing.assert_array_equal(stars['flux'], corr['FLUX'])
        solved = nova.get_wcs(header)
        _check(stars, field, solved)
        n_sources = len(nova.download(header, 'axy')[1].data)
        _check_image_stars(nova.get_image_stars(header), stars, n_sources, solved)
        assert not proxy.errors


def test_nova_lacking_the_file_and_the_job_unsolved(fake_clock):
    """The fallback follows the downloads: a server without the matches file,
    then no corr file either (an unsolved job) is a ResultNotAvailableError
    that says both."""
    fake = FakeNova()
    sid = fake.add_submission(['failure'])
    with attach(AstrometryNetClass(api_key=fake.api_key, server=fake.base), fake) as nova:
        with pytest.raises(ResultNotAvailableError, match='does not offer matches.*Nor the '
                           "solver's.*no corr file") as info:
            nova.get_matched_stars(fake.job_of(sid))
        assert info.value.job_id == fake.job_of(sid)
        solved = fake.solved_job()[1]
        stars = nova.get_matched_stars(solved)         # the mock's corr: one star, no flux
        assert stars.meta['source'] == 'corr' and stars.meta['mag_source'] is None
        assert list(stars['ra']) == [83.8] and np.isnan(stars['flux'][0])
    assert [r.path.split('/')[1] for r in fake.calls(r'_file/')][-4:] == [
        'matches_file', 'corr_file', 'rdls_file', 'wcs_file']
