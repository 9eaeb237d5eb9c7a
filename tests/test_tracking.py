"""Tracking a sequence: a frame solved by following the field of a solved one
(no search), with the real solver's catalogue; cloudy frames with three to six
stars; wrong matches refused; a sequence split into fields."""
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from astrometry_query.datasets import index_stars, jitter_catalog, render_field, wcs_rms_error
from astrometry_query.local.pipeline import solve
from astrometry_query.tracking import Sequence, track
from real_server import requires_solver

KW = dict(pixel_scale=12 * u.arcsec / u.pix, shape=(400, 500), fwhm=2.8, hot_pixels=3,
          sip={'k1': 2e-8})
HERE = SkyCoord(150.3, 25.1, unit='deg')
ELSEWHERE = SkyCoord(210.5, -12.2, unit='deg')
SCALE = {'scale_units': 'arcsecperpix', 'scale_lower': 10.0, 'scale_upper': 14.0}


def _frame(centre, *, drift=(0.0, 0.0), roll=0.0, cloud=0.0, seed=0):
    """A frame of the sequence: the pointing drifted by ``drift`` arcmin, turned
    by ``roll`` degrees, under ``cloud`` magnitudes of extinction."""
    at = SkyCoord(centre.ra + drift[0] * u.arcmin, centre.dec + drift[1] * u.arcmin)
    return render_field(at, rotation=(37 + roll) * u.deg, extinction=cloud, seed=seed, **KW)


# -- track() alone, on a known geometry -------------------------------------------------------
def _geometry(n_stars=200, seed=1):
    rng = np.random.default_rng(seed)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    wcs.wcs.crval, wcs.wcs.crpix = [150.0, 20.0], [250.5, 200.5]
    wcs.wcs.cd = np.array([[-12.0, 0.0], [0.0, 12.0]]) / 3600
    header = wcs.to_header()
    header['IMAGEW'], header['IMAGEH'] = 500, 400
    x, y = rng.uniform(-50, 550, n_stars), rng.uniform(-50, 450, n_stars)
    ra, dec = wcs.all_pix2world(x, y, 1)
    mag = rng.uniform(6, 12, n_stars)
    return header, wcs, ra, dec, mag, rng


@pytest.mark.parametrize('n', [3, 5, 40])
def test_track_follows_a_drift_and_a_roll(n):
    header, wcs, ra, dec, mag, rng = _geometry()
    moved = wcs.deepcopy()
    moved.wcs.crval = wcs.all_pix2world([[250.5 - 7.3, 200.5 + 4.1]], 1)[0]      # drifted
    c, s = np.cos(np.radians(0.3)), np.sin(np.radians(0.3))
    moved.wcs.cd = np.array([[c, -s], [s, c]]) @ wcs.wcs.cd                         # rolled
    x, y = moved.all_world2pix(ra, dec, 1)
    inside = (x > 1) & (x < 500) & (y > 1) & (y < 400)
    brightest = np.argsort(mag[inside])[:n]
    sx = x[inside][brightest] + rng.normal(0, 0.1, n)
    sy = y[inside][brightest] + rng.normal(0, 0.1, n)
    found = track(sx, sy, header, ra, dec, ref_mag=mag, width=500, height=400)
    assert found is not None and found.matches == n
    assert found.roll == pytest.approx(0.3, abs=0.05)
    got = WCS(found.header)
    gx, gy = got.all_world2pix(ra[inside], dec[inside], 1)
    assert np.sqrt(np.mean((gx - x[inside]) ** 2 + (gy - y[inside]) ** 2)) < 0.3


def test_track_refuses_another_field_and_too_few_stars():
    header, wcs, ra, dec, mag, rng = _geometry()
    # sources that are not these stars (another field)
    for seed in range(20):
        other = np.random.default_rng(100 + seed)
        assert track(other.uniform(1, 500, 8), other.uniform(1, 400, 8), header, ra, dec,
                     ref_mag=mag, width=500, height=400) is None
    x, y = wcs.all_world2pix(ra, dec, 1)
    assert track(x[:2], y[:2], header, ra, dec, width=500, height=400) is None


def test_track_refuses_a_meridian_flip():
    header, wcs, ra, dec, mag, _ = _geometry()
    flipped = wcs.deepcopy()
    flipped.wcs.cd = -wcs.wcs.cd                       # turned by 180 degrees
    x, y = flipped.all_world2pix(ra, dec, 1)
    inside = (x > 1) & (x < 500) & (y > 1) & (y < 400)
    assert track(x[inside], y[inside], header, ra, dec, ref_mag=mag, width=500,
                 height=400) is None


def test_a_sequence_remembers_its_fields():
    header, *_ = _geometry()
    sequence = Sequence()
    assert sequence.reference_for(500, 400) is None
    sequence.solved(header, 500, 400)
    assert sequence.reference_for(500, 400) is header
    assert sequence.reference_for(250, 200) is None                        # binned: never
    assert sequence.reference_for(500, 400, (150.01, 20.0)) is header
    assert sequence.reference_for(500, 400, (10.0, -30.0)) is None         # points elsewhere
    other = header.copy()
    other['CRVAL1'] = 10.0
    sequence.solved(other, 500, 400)
    assert len(sequence) == 2 and sequence.reference_for(500, 400) is other
    drifted = header.copy()
    drifted['CRVAL1'] = 150.02
    sequence.solved(drifted, 500, 400)                                     # the same field
    assert len(sequence) == 2 and sequence.reference_for(500, 400, (150, 20)) is drifted


# -- with the real solver and its catalogue --------------------------------------------------
@pytest.fixture(scope='module')
def reference():
    result = solve(image=_frame(HERE, seed=1).data, settings=SCALE)
    assert result.solved
    return result.header()


@requires_solver
@pytest.mark.parametrize('cloud, seed', [(2.8, 11), (3.0, 11), (2.8, 12), (3.0, 12), (2.9, 13), (3.0, 13)])
def test_a_cloudy_frame_is_solved_by_tracking(reference, cloud, seed):
    frame = _frame(HERE, drift=(0.6, -0.4), roll=0.05, cloud=cloud, seed=seed)
    tracked = solve(image=frame.data, reference=reference)
    assert 3 <= tracked.n_sources <= 6
    assert tracked.solved and tracked.tracking['tracked'], tracked.error
    assert wcs_rms_error(frame.wcs, tracked.header(), frame.data.shape) < 0.3
    assert 'engine' not in tracked.timings                        # no search at all
    # without the reference these few stars cannot be solved
    assert not solve(image=frame.data, settings=SCALE).solved


@requires_solver
@pytest.mark.parametrize('seed', [14, 15])
def test_hot_pixels_outnumbering_the_stars_left_do_not_stop_tracking(reference, seed):
    """Under thick cloud a camera's hot pixels and cosmic rays outnumber the
    stars: they are no field to follow (a pixel holds their flux) and are set
    aside, the few stars left are followed."""
    at = SkyCoord(HERE.ra + 0.6 * u.arcmin, HERE.dec - 0.4 * u.arcmin)
    frame = render_field(at, rotation=37.05 * u.deg, extinction=3.0, seed=seed,
                         **dict(KW, hot_pixels=40), cosmic_rays=3)
    tracked = solve(image=frame.data, reference=reference)
    assert tracked.n_sources >= 10                                # mostly artefacts
    assert tracked.solved and tracked.tracking['tracked'], tracked.error
    assert tracked.tracking['matches'] <= 6
    assert wcs_rms_error(frame.wcs, tracked.header(), frame.data.shape) < 0.3


@pytest.mark.slow
@requires_solver
def test_a_frame_of_another_field_is_searched(reference):
    frame = render_field(ELSEWHERE, rotation=37 * u.deg, seed=4, **KW)
    result = solve(image=frame.data, reference=reference, settings=SCALE)
    assert result.tracking == {'tracked': False}                  # no false match
    assert result.solved and wcs_rms_error(frame.wcs, result.header(), frame.data.shape) < 0.15


@pytest.mark.slow
@requires_solver
def test_a_clear_frame_tracked_is_as_good_as_searched(reference):
    frame = _frame(HERE, drift=(1.5, 0.8), roll=-0.1, seed=21)
    tracked = solve(image=frame.data, reference=reference)
    searched = solve(image=frame.data, settings=SCALE)
    assert tracked.tracking['tracked'] and tracked.tracking['matches'] > 30
    error = wcs_rms_error(frame.wcs, tracked.header(), frame.data.shape)
    assert error < 0.15 and error <= 1.5 * wcs_rms_error(frame.wcs, searched.header(),
                                                        frame.data.shape) + 0.02


@pytest.mark.slow
@requires_solver
def test_a_batch_follows_a_sequence_through_cloud_and_a_jump(local, tmp_path):
    frames = [_frame(HERE, drift=(0.2 * i, -0.1 * i), roll=0.01 * i, seed=30 + i,
                     cloud=3.0 if i in (2, 3) else 0.0) for i in range(5)]
    frames += [render_field(ELSEWHERE, rotation=37 * u.deg, seed=40 + i, **KW) for i in range(2)]
    frames += [_frame(HERE, drift=(1.2, -0.6), cloud=3.0, seed=50)]       # back, under cloud
    paths = [f.writeto(tmp_path / f'{i:02d}.fits', truth='none') for i, f in enumerate(frames)]
    scale = (10, 14) * u.arcsec / u.pix
    table = local.solve_many(paths, track=True, verbose=False, cache=False, scale=scale)
    assert list(table['status']) == ['success'] * len(frames), list(table['error'])
    for row, frame in zip(table, frames):
        assert wcs_rms_error(frame.wcs, row['header'], frame.data.shape) < 0.3
    # One at a time, which frames follow is fixed: the first of each field is searched.
    one = local.solve_many(paths, track=True, verbose=False, cache=False, scale=scale,
                           max_concurrency=1)
    assert list(one['tracked']) == [False, True, True, True, True, False, True, True]
    untracked = local.solve_many(paths, verbose=False, cache=False,
                                 scale=(10, 14) * u.arcsec / u.pix)
    assert list(untracked['status'][2:4]) == ['failure', 'failure']       # cloud: too few stars


@requires_solver
def test_a_drifting_sequence_reads_its_catalogue_stars_once(monkeypatch):
    """The frames of a sequence drift: a circle inside a region already read is
    answered from it (no query-starkd), with the stars a fresh query gives."""
    from astrometry_query.local import refine
    from astrometry_query.local.solver import find_installation
    inst = find_installation()
    files = inst.index_files
    refine._REGIONS.clear()
    first = refine.reference_stars(files, 83.8, -5.4, 0.4, query_starkd=inst.query_starkd)
    queries = []
    real_query = refine._query
    monkeypatch.setattr(refine, '_query', lambda *a: (queries.append(a), real_query(*a)))
    # 30" to the east and north: inside the region (read 25 % wider than asked)
    near = refine.reference_stars(files, 83.8 + 30 / 3600, -5.4 + 30 / 3600, 0.4,
                                  query_starkd=inst.query_starkd)
    assert not queries and len(near[0]) > 20
    refine._REGIONS.clear()
    fresh = refine.reference_stars(files, 83.8 + 30 / 3600, -5.4 + 30 / 3600, 0.4,
                                   query_starkd=inst.query_starkd)
    assert queries
    assert sorted(near[0]) == sorted(fresh[0]) and sorted(near[1]) == sorted(fresh[1])
    assert len(first[0]) > 20
    with pytest.raises(ValueError):      # read-only: shared by the next callers
        near[0][0] = 0.0


@requires_solver
@pytest.mark.slow
def test_a_cloudy_frame_is_registered_on_the_frame_before(local, tmp_path):
    """Each catalogue star is off by its own error (drawn here at 3", a quarter
    of a pixel), the same in every frame: on the few stars left under cloud
    the catalogue fit keeps that error.  Registered on the frame before, star
    by star, it drops out."""
    stars = jitter_catalog(index_stars(HERE, 1.5 * u.deg), 3.0, np.random.default_rng(3))
    at = SkyCoord(HERE.ra + 0.6 * u.arcmin, HERE.dec - 0.4 * u.arcmin)
    frames = [render_field(HERE, rotation=37 * u.deg, catalog=stars, seed=61, **KW),
              render_field(at, rotation=37.05 * u.deg, catalog=stars, extinction=3.0, seed=62,
                           **KW)]
    paths = [f.writeto(tmp_path / f'{i}.fits', truth='none') for i, f in enumerate(frames)]
    table = local.solve_many(paths, track=True, verbose=False, cache=False, max_concurrency=1,
                             scale=(10, 14) * u.arcsec / u.pix)
    assert list(table['tracked']) == [False, True]
    cloudy = frames[1]
    assert 3 <= table['header'][1]['AN_TRREG'] <= 8
    registered = wcs_rms_error(cloudy.wcs, table['header'][1], cloudy.data.shape)
    alone = solve(image=cloudy.data, reference=table['header'][0])
    assert alone.tracking['tracked'] and alone.tracking['registered'] == 0
    catalogue_only = wcs_rms_error(cloudy.wcs, alone.header(), cloudy.data.shape)
    assert registered < 0.2 and registered < 0.6 * catalogue_only, (registered, catalogue_only)
