"""Crowded fields: a star cluster no index holds, in front of the index's stars.

The selection (`astrometry_query.local.selection`) must spread the sources
the engine gets over the field and thin the crowd, so that the catalogue
stars around a cluster are used; a field without a crowd keeps the order
of old (solve-field's ``--uniformize 10``).
"""
import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query.datasets import cluster_catalog, render_crowded_field, wcs_rms_error
from astrometry_query.local.axy import write_axy
from astrometry_query.local.pipeline import solve
from astrometry_query.sources import FLAG_BLENDED
from astrometry_query.local.selection import (CROWD_CELLS, crowding,
                                              needs_deeper, select_sources, uniformize)
from astrometry_query.local.solver import solver_available
from astrometry_query.sources import extract_sources

needs_solver = pytest.mark.skipif(not solver_available(), reason='astrometry.net not installed')


def _cluster_list(seed=1, n_field=300, n_cluster=3000, size=2000):
    """Sources brightest first: a Gaussian cluster (brighter) in the middle, field stars
    everywhere; returns x, y, is_cluster."""
    rng = np.random.default_rng(seed)
    fx, fy = rng.uniform(1, size, (2, n_field))
    cx, cy = np.clip(rng.normal(size / 2, size / 12, (2, n_cluster)), 1, size)
    x, y = np.concatenate([cx, fx]), np.concatenate([cy, fy])
    member = np.r_[np.ones(n_cluster, bool), np.zeros(n_field, bool)]
    flux = np.where(member, 10 ** rng.uniform(3, 5, len(x)), 10 ** rng.uniform(1, 3.5, len(x)))
    order = np.argsort(-flux)
    return x[order], y[order], member[order]


def test_selection_spreads_the_sources_and_caps_the_crowd():
    x, y, member = _cluster_list()
    crowd = crowding(x, y, 2000, 2000)
    assert crowd.any and crowd.crowded[member].mean() > 0.8 and not crowd.crowded[~member].all()
    order = select_sources(x, y, 2000, 2000, limit=1000)
    assert len(set(order)) == len(order)
    # Every uncrowded cell's brightest first, then the crowd's.
    calm = np.nonzero((crowd.counts > 0) & ~crowd.crowded_cells)[0]
    assert set(crowd.cell[order[:len(calm)]]) == set(calm)
    in_crowd = crowd.crowded[order]
    assert not in_crowd[:np.argmax(in_crowd)].any() and in_crowd[np.argmax(in_crowd):].all()
    assert set(crowd.cell[order[in_crowd][:crowd.crowded_cells.sum()]]) == \
        set(np.nonzero(crowd.crowded_cells)[0])
    # Crowded cells give no more than the median cell holds (or their share of 1000).
    picked = np.bincount(crowd.cell[order], minlength=len(crowd.counts))
    assert (picked[crowd.crowded_cells] <= crowd.cap(1000)).all()
    # The field stars outside the crowd all go to the engine, though 3000 brighter
    # sources came first; the old order gave it the crowd.
    outside = ~member & ~crowd.crowded
    assert set(np.nonzero(outside)[0]) <= set(order)
    assert member[order].mean() < 0.5
    old = np.arange(1000)[uniformize(x[:1000], y[:1000], 2000, 2000)]
    assert member[old].mean() > 0.95


def test_selection_sets_blends_in_the_crowd_aside():
    x, y, member = _cluster_list(seed=2)
    flag = np.where(member & (np.arange(len(x)) % 2 == 0), FLAG_BLENDED, 0)
    crowd = crowding(x, y, 2000, 2000)
    order = select_sources(x, y, 2000, 2000, flag=flag, limit=1000)
    chosen = order[crowd.crowded[order]]
    # Crowded cells have far more unblended sources than their cap: no blend is chosen.
    assert chosen.size and not (flag[chosen] & FLAG_BLENDED).any()


def test_clean_field_keeps_the_old_order(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(1, 1500, (2, 1400))
    assert not crowding(x, y, 1500, 1200).any
    order = select_sources(x, y, 1500, 1200, limit=1000)
    assert np.array_equal(order, np.arange(1000)[uniformize(x[:1000], y[:1000], 1500, 1200)])
    assert not needs_deeper(x, y, 1500, 1200, 1000)
    # write_axy: the sources sorted by flux, then solve-field's order, as before.
    flux = rng.uniform(1, 100, len(x))
    write_axy(tmp_path / 'a.axy', x, y, flux, {}, 1500, 1200)
    table = fits.getdata(tmp_path / 'a.axy', 1)
    best = np.argsort(-flux, kind='stable')[:1000]
    expected = best[uniformize(x[best], y[best], 1500, 1200)]
    assert np.array_equal(table['X'], x[expected])


def test_sources_in_part_of_the_field_are_no_crowd():
    rng = np.random.default_rng(5)
    x, y = rng.uniform(1, 1000, 3000), rng.uniform(1, 600, 3000)     # the top 40 % hidden
    assert not crowding(x, y, 1000, 1500).any
    order = select_sources(x, y, 1000, 1500, limit=1000)
    assert np.array_equal(order, np.arange(1000)[uniformize(x[:1000], y[:1000], 1000, 1500)])


def test_crowding_grid_and_going_deeper():
    x, y, member = _cluster_list(seed=4)
    crowd = crowding(x, y, 2000, 1000)
    assert (crowd.nx, crowd.ny) == (CROWD_CELLS, CROWD_CELLS // 2)
    assert needs_deeper(x[:1000], y[:1000], 2000, 2000, 1000)
    assert not needs_deeper(x[:999], y[:999], 2000, 2000, 1000)     # all were found


def test_cluster_catalog_profiles():
    centre = SkyCoord(100, 5, unit='deg')
    for profile in ('plummer', 'king'):
        stars = cluster_catalog(centre, 4000, core_radius=2 * u.arcmin,
                                tidal_radius=20 * u.arcmin, profile=profile, seed=1)
        r = SkyCoord(stars['ra'], stars['dec']).separation(centre).arcmin
        assert len(stars) == 4000 and r.max() <= 20.001
        assert 0.1 < np.mean(r < 2) < 0.7        # a core, and a halo
        assert np.all(np.diff(stars['mag']) >= 0)
    with pytest.raises(ValueError):
        cluster_catalog(centre, 10, core_radius=1 * u.arcmin, profile='gauss')


#: The target field: 1.2 deg (2048 px at 2.1"/px) in Monoceros; 11,000 stars of a
#: cluster no index holds (Plummer, 9' scale radius) make ~2,800 of the 3,000
#: brightest sources (measured: 2,822, with 91 index stars among them).
CENTRE = SkyCoord(100.0, 5.0, unit='deg')


#: A globular cluster (King profile, 2' core that blends into one glow, 30,000 stars) in
#: front of the Milky Way in Sagittarius: 938 of the brightest 1000 sources are its.
GLOBULAR = SkyCoord(279.1, -23.9, unit='deg')


def _open_cluster_field(seed=3):
    cluster = cluster_catalog(CENTRE, 11000, core_radius=9 * u.arcmin,
                              tidal_radius=22 * u.arcmin, mag_range=(7.5, 12.0), seed=1)
    return render_crowded_field(CENTRE, cluster=cluster, pixel_scale=2.1 * u.arcsec / u.pix,
                                shape=(2048, 2048), rotation=30 * u.deg, fwhm=3.0,
                                saturation=60000.0, hot_pixels=10, cosmic_rays=3, seed=seed)


def _globular_field(seed=5):
    cluster = cluster_catalog(GLOBULAR, 30000, core_radius=2 * u.arcmin,
                              tidal_radius=25 * u.arcmin, profile='king', mag_range=(7.0, 12.5),
                              seed=14)
    return render_crowded_field(GLOBULAR, cluster=cluster, pixel_scale=2.1 * u.arcsec / u.pix,
                                shape=(2048, 2048), rotation=-20 * u.deg, fwhm=3.5,
                                zeropoint=21.0, saturation=60000.0, hot_pixels=20,
                                cosmic_rays=5, seed=seed)


@pytest.mark.slow
@needs_solver
@pytest.mark.parametrize('render', [_open_cluster_field, _globular_field],
                         ids=['open', 'globular'])
def test_cluster_field_of_1_2_deg_solves(tmp_path, render):
    field = render()
    assert field.stars['member'].sum() > 10000 and (~field.stars['member']).sum() > 50
    path = field.writeto(tmp_path / 'cluster.fits', truth='none')
    result = solve(path, hints='header', timeout=90)
    assert result.solved, result.error
    assert wcs_rms_error(field.wcs, result.header(), field.data.shape) < 0.15
    # The sources went deeper than the crowd, which was thinned for the engine.
    assert result.n_sources > 1000 and result.attempts[-1]['sources'] < 1000


class _Capture:
    """Stands for a nova client: records the source list it is sent."""

    def submit_source_list(self, x, y, settings, *, width, height):
        self.x, self.y = np.asarray(x), np.asarray(y)
        return 'submitted'


@pytest.mark.slow
def test_nova_upload_sends_the_stars_around_a_crowd():
    from astropy.table import vstack
    from astrometry_query.datasets import render_field, synthetic_catalog
    from astrometry_query.images import open_image
    from astrometry_query.nova.uploads import send_image
    centre = SkyCoord(40.0, 20.0, unit='deg')
    around = synthetic_catalog(centre, 0.8 * u.deg, 800, mag_range=(10.5, 13.0), seed=1)
    cluster = cluster_catalog(centre, 8000, core_radius=8 * u.arcmin,
                              tidal_radius=18 * u.arcmin, mag_range=(7.0, 10.5), seed=2)
    field = render_field(centre, pixel_scale=4.0 * u.arcsec / u.pix, shape=(1024, 1024),
                         catalog=vstack([around, cluster]), fwhm=2.0, seed=3)
    client = _Capture()
    assert send_image(client, open_image(field.data), {}, fwhm=2.0,
                      verbose=False) == 'submitted'
    # The sources sent reach the field stars far from the cluster (18' = 270 px):
    # the brightest 1000 hold few of them.
    far = np.hypot(client.x - 512.5, client.y - 512.5) > 300
    brightest = extract_sources(field.data, fwhm=2.0)
    far_before = np.hypot(brightest['x'] - 512.5, brightest['y'] - 512.5) > 300
    assert far.sum() > 200 and far.sum() > 3 * far_before.sum()
    assert far.mean() > 0.5 > far_before.mean()
