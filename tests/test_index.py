"""Index files: series facts, tiles, listing, the coverage check, downloads
(against a loopback file server) and builds (with build-astrometry-index)."""
import json
import os
import re
import shutil
import subprocess

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from astrometry_query import conf
from astrometry_query.cli import main as cli_main
from astrometry_query.exceptions import (IndexBuildError, IndexDownloadError, InvalidInputError,
                                         InvalidSettingError)
from astrometry_query.datasets import synthetic_catalog
from astrometry_query.hints import SolveHints
from astrometry_query.index import (QUAD_SCALES, build_index, check_field, choose_scales,
                                    download_indexes, get_series, installed_indexes,
                                    planned_files, quad_range, read_index_header)
from astrometry_query.index.locations import (DEFAULT_INDEX_DIR, default_destination,
                                              default_index_dirs, user_index_dir)
from astrometry_query.index.series import scale_of_quads
from astrometry_query.index.tiles import nested_to_xy, tile_center, tile_of, tiles_around
from astrometry_query.local.solver import find_installation

from index_server import IndexFileServer, fake_index

TYCHO = sorted(DEFAULT_INDEX_DIR.glob('index-tycho2-*.fits'))
needs_tycho = pytest.mark.skipif(len(TYCHO) < 13, reason='the Tycho-2 index packages')
SCALE_1AS = {'scale_units': 'arcsecperpix', 'scale_lower': 0.9, 'scale_upper': 1.1}


# -- series and tiles -------------------------------------------------------------
def test_quad_scales_are_the_presets():
    assert quad_range(0) == (2.0, 2.8) and quad_range(19) == (1400.0, 2000.0)
    for s in range(19):   # contiguous, each about sqrt(2) larger
        assert QUAD_SCALES[s][1] == QUAD_SCALES[s + 1][0]
        assert QUAD_SCALES[s + 1][0] / QUAD_SCALES[s][0] == pytest.approx(2 ** 0.5, rel=0.08)
    assert scale_of_quads(4.0, 5.6) == 2 and scale_of_quads(3.0, 5.0) is None
    with pytest.raises(ValueError, match='0 to 19'):
        quad_range(20)


def test_series_files_and_urls():
    lite = get_series('5200')
    assert get_series(5200) is lite and get_series('LITE') is lite
    assert get_series('5200_heavy').name == '5200-heavy'
    assert lite.filename(3, 17) == 'index-5203-17.fits'
    assert lite.url('http://m/', 3, 17) == 'http://m/5200/LITE/index-5203-17.fits'
    assert get_series('4100').url('http://m', 7) == 'http://m/4100/index-4107.fits'
    assert get_series('4200').filename(0, 47) == 'index-4200-47.fits'
    assert get_series('4200').tiles(5) == 12 and get_series('4200').tiles(8) == 1
    # the whole LITE series is the "36 GB" users dread
    assert 35e9 < lite.size() < 38e9
    assert get_series('5200-heavy').size() is None
    with pytest.raises(ValueError, match='4100, 4200, 5200'):
        get_series('9999')


@pytest.mark.skipif(shutil.which('get-healpix') is None, reason="astrometry.net's get-healpix")
@pytest.mark.parametrize('nside', [1, 2, 4])
def test_tile_numbers_are_astrometry_nets(nside):
    """Checked against astrometry.net's own get-healpix on random positions."""
    rng = np.random.default_rng(nside)
    for _ in range(12):
        ra, dec = rng.uniform(0, 360), np.degrees(np.arcsin(rng.uniform(-1, 1)))
        out = subprocess.run(['get-healpix', '-N', str(nside), '--', str(ra), str(dec)],
                             capture_output=True, text=True, check=True).stdout
        expected = int(re.search(r'Healpix=(\d+) in the XY scheme', out).group(1))
        assert tile_of((ra, dec), nside) == expected
        assert tile_center(expected, nside).separation(SkyCoord(ra, dec, unit='deg')).deg < 60 / nside


def test_tiles_around():
    here = SkyCoord(150.0, 20.0, unit='deg')
    assert tiles_around(here, 0 * u.deg, 2) == [tile_of(here, 2)]
    assert len(tiles_around(here, 180 * u.deg, 2)) == 48
    near = tiles_around(here, 20 * u.deg, 2)
    assert tile_of(here, 2) in near and 2 <= len(near) < 48
    # every tile whose centre lies within the cone is in
    for tile in range(48):
        if tile_center(tile, 2).separation(here).deg < 20:
            assert tile in near
    assert nested_to_xy(2, 2) == 1       # get-healpix: nested 2 is x=0, y=1


# -- listing ---------------------------------------------------------------------
@needs_tycho
def test_installed_indexes_reads_the_debian_files():
    table = installed_indexes(DEFAULT_INDEX_DIR)
    assert list(table['index_id']) == list(range(4107, 4120))
    assert list(table['scale']) == list(range(7, 20)) and set(table['series']) == {4100}
    for row in table:
        low, high = QUAD_SCALES[row['scale']]
        assert row['quad_min'] == pytest.approx(low, rel=1e-3)
        assert row['quad_max'] == pytest.approx(high, rel=1e-3)
    assert set(table['healpix']) == {-1} and table['quad_min'].unit == u.arcmin
    assert all(table['nstars'] > 0) and table['size'].unit == u.byte
    assert table.meta['index_dirs'] == [str(DEFAULT_INDEX_DIR)]


def test_installed_indexes_several_dirs_and_junk(tmp_path, capsys):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir(), b.mkdir()
    fake_index(a / 'index-5203-17.fits', 5203, healpix=17, nside=2, nbytes=3000)
    fake_index(b / 'index-4110.fits', 4110, nbytes=3000)
    fits.PrimaryHDU().writeto(b / 'index-notreally.fits')          # no INDEXID: skipped
    (b / 'index-broken.fits').write_bytes(b'not fits')
    (b / 'index-5203-18.fits.part').write_bytes(b'partial')          # never listed
    for spec in (f'{a}{os.pathsep}{b}', [a, b], [str(a), b]):
        table = installed_indexes(spec)
        assert list(table['index_id']) == [5203, 4110]
        assert list(table['healpix']) == [17, -1] and list(table['nside']) == [2, 0]
        assert list(table['series']) == [5200, 4100]
    with conf.set_temp('index_dir', f'{b}{os.pathsep}{a}'):
        # index/ reads no conf: its default is astrometry.net's directories ...
        default = installed_indexes()
        assert default.meta['index_dirs'] == [str(d) for d in default_index_dirs()]
        assert str(a) not in default.meta['index_dirs']
        # ... and the command line passes conf.index_dir down
        assert cli_main(['index', 'list', '--json']) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed['index_dirs'] == [str(b), str(a)]
    assert sorted(f['index_id'] for f in listed['files']) == [4110, 5203]
    info = read_index_header(a / 'index-5203-17.fits')
    assert info.scale == 3 and not info.all_sky
    with pytest.raises(InvalidInputError, match='not an astrometry.net index'):
        read_index_header(b / 'index-notreally.fits')


def test_solver_sees_files_added_later(tmp_path):
    """A file built or fetched after a first solve is seen by the next one."""
    fake_index(tmp_path / 'index-4110.fits', 4110, nbytes=3000)
    first = find_installation(tmp_path)
    fake_index(tmp_path / 'index-4111.fits', 4111, nbytes=3000)
    again = find_installation(tmp_path)
    assert len(first.index_files) == 1 and len(again.index_files) == 2


# -- the coverage check ------------------------------------------------------------------
@needs_tycho
def test_check_field_refuses_a_narrow_field_with_tycho_only():
    cov = check_field(TYCHO, 600, 600, SCALE_1AS, index_dirs=[DEFAULT_INDEX_DIR])
    assert not cov.ok and cov.hard and cov.limit == 'scale'
    assert cov.needed_scales == [1, 2, 3, 4]
    text = cov.message
    assert '9-11 arcmin' in text and 'quads of 22-2000 arcmin' in text
    assert 'astrometry-query index download 5200 --scales 1-4' in text
    assert 'GB for the whole sky' in text and 'build_index' in text
    assert cov.command == 'astrometry-query index download 5200 --scales 1-4'
    # with a pointing: only the tiles around it, megabytes
    near = dict(SCALE_1AS, center_ra=150.0, center_dec=20.0, radius=1.0)
    cov = check_field(TYCHO, 600, 600, near, index_dirs=[DEFAULT_INDEX_DIR], explicit_dirs=True)
    assert '--around 150.0000,+20.0000 --radius 2' in cov.command
    assert f'--dest {DEFAULT_INDEX_DIR}' in cov.command
    assert re.search(r'about \d+ MB for the tiles within 2 deg', cov.message)


@needs_tycho
def test_check_field_passes_what_tycho_solves():
    wide = {'scale_units': 'arcsecperpix', 'scale_lower': 8.0, 'scale_upper': 10.0}
    cov = check_field(TYCHO, 600, 450, wide)
    assert cov.ok and {i.scale for i in cov.usable} >= {7, 8, 9}
    assert check_field(TYCHO, 600, 600, {}).ok              # no scale: a blind search decides
    degwidth = {'scale_units': 'degwidth', 'scale_lower': 0.1, 'scale_upper': 0.2}
    assert not check_field(TYCHO, 600, 600, degwidth).ok     # 6-12 arcmin wide
    assert not cov.thin                                      # 60-100 arcmin: well served


@needs_tycho
def test_check_field_flags_a_field_only_larger_quads_reach():
    # 14-18 arcmin: the engine may try the 22-30 arcmin quads of 4107 (its diagonal is 24
    # arcmin), but a match needs stars near the corners: allowed, flagged for the error
    edge = {'scale_units': 'arcsecperpix', 'scale_lower': 1.35, 'scale_upper': 1.65}
    cov = check_field(TYCHO, 640, 600, edge)
    assert cov.ok and cov.thin and [i.index_id for i in cov.usable] == [4107]
    assert 'barely reach this field' in cov.reason and 'quads of 22-30 arcmin' in cov.reason
    assert cov.command.startswith('astrometry-query index download 5200 --scales 2-6')
    # 30 arcmin: 4107's quads fit inside it
    fits_it = {'scale_units': 'arcsecperpix', 'scale_lower': 2.7, 'scale_upper': 3.3}
    assert not check_field(TYCHO, 640, 600, fits_it).thin


@needs_tycho
def test_header_hints_are_trusted_unless_to_verify():
    hints = SolveHints(scale={'scale_units': 'arcsecperpix', 'scale_lower': 0.9,
                              'scale_upper': 1.1}, scale_source='PIXSCALE')
    cov = check_field(TYCHO, 600, 600, {}, hints)
    assert not cov.ok and cov.hard and "header's PIXSCALE card" in cov.reason
    assert "header_hints='verify'" in cov.reason
    hints.verify = True
    cov = check_field(TYCHO, 600, 600, {}, hints)
    assert not cov.ok and not cov.hard and "header's PIXSCALE card" in cov.reason
    # a scale setting wins over the header
    assert check_field(TYCHO, 600, 600, {'scale_units': 'degwidth', 'scale_lower': 0.5,
                                         'scale_upper': 1.0}, hints).ok


def test_check_field_knows_tiles_and_cones(tmp_path):
    tile = tile_of((150.0, 20.0), 2)
    fake_index(tmp_path / f'index-5203-{tile:02d}.fits', 5203, healpix=tile, nside=2, nbytes=3000)
    files = sorted(tmp_path.glob('index-*.fits'))
    field = {'scale_units': 'arcsecperpix', 'scale_lower': 1.8, 'scale_upper': 2.2}
    here = dict(field, center_ra=150.0, center_dec=20.0, radius=0.5)
    there = dict(field, center_ra=330.0, center_dec=-40.0, radius=0.5)
    assert check_field(files, 600, 600, here).ok
    cov = check_field(files, 600, 600, there)
    assert not cov.ok and cov.hard and cov.limit == 'position'
    assert 'covers this part of the sky' in cov.reason and '--around 330.0000,-40.0000' in cov.fix
    # a header pointing elsewhere is trusted, unless it is to be verified (warn, search on)
    hints = SolveHints(position={'center_ra': 330.0, 'center_dec': -40.0, 'radius': 1.0},
                       position_source='RA/DEC')
    cov = check_field(files, 600, 600, field, hints)
    assert not cov.ok and cov.hard and "header_hints='verify'" in cov.reason
    hints.verify = True
    cov = check_field(files, 600, 600, field, hints)
    assert not cov.ok and not cov.hard
    # a built index knows its catalogue's cone
    with fits.open(files[0], mode='update') as hdul:
        hdul[0].header.update(HEALPIX=-1, HPNSIDE=0, AQ_RA=150.0, AQ_DEC=20.0, AQ_RAD=0.5)
    assert check_field(files, 600, 600, here).ok
    assert not check_field(files, 600, 600, dict(field, center_ra=152.0, center_dec=20.0,
                                                 radius=0.2)).ok


# -- downloads, against a loopback file server ----------------------------------------
@pytest.fixture(scope='module')
def mirror_files(tmp_path_factory):
    """The files of a mirror of parts of series 5200 (LITE, scales 3-4, all 48
    tiles) and 4100 (scales 7-8), made once: tests that change them copy them."""
    root = tmp_path_factory.mktemp('mirror')
    (root / '5200' / 'LITE').mkdir(parents=True)
    (root / '4100').mkdir()
    for scale in (3, 4):
        for tile in range(48):
            fake_index(root / '5200' / 'LITE' / f'index-520{scale}-{tile:02d}.fits', 5200 + scale,
                       healpix=tile, nside=2, nbytes=30_000 if scale == 3 else 8000, seed=tile)
    for scale in (7, 8):
        fake_index(root / '4100' / f'index-410{scale}.fits', 4100 + scale, nbytes=400_000)
    return root


@pytest.fixture
def mirror(mirror_files):
    """The mirror served on loopback by a server of this test's own (faults and
    requests are the test's)."""
    with IndexFileServer(mirror_files) as server:
        yield server


def _final_files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_download_around_a_position_fetches_its_tiles(mirror, tmp_path):
    dest = tmp_path / 'indexes'
    here = SkyCoord(150.0, 20.0, unit='deg')
    table = download_indexes('5200', '3-4', dest, around=here, radius=5 * u.deg,
                             base_url=mirror.url, verbose=False)
    tiles = tiles_around(here, 5 * u.deg, 2)
    expected = sorted(f'index-520{s}-{t:02d}.fits' for s in (3, 4) for t in tiles)
    assert sorted(table['name']) == expected == _final_files(dest)
    assert set(table['status']) == {'downloaded'} and len(mirror.gets()) == len(expected)
    for row in table:
        served = mirror.root / '5200' / 'LITE' / row['name']
        assert (dest / row['name']).read_bytes() == served.read_bytes()
        assert row['size'] == served.stat().st_size and row['tile'] in tiles
    listed = installed_indexes(dest)
    assert len(listed) == len(expected) and set(listed['series']) == {5200}
    # again: everything is there and checked, nothing fetched
    before = len(mirror.gets())
    again = download_indexes('5200', [3, 4], dest, around=here, radius=5 * u.deg,
                             base_url=mirror.url, verbose=False)
    assert set(again['status']) == {'present'} and len(mirror.gets()) == before


def test_download_resumes_a_broken_connection(mirror, tmp_path):
    name = 'index-4107.fits'
    size = (mirror.root / '4100' / name).stat().st_size
    mirror.drop_after[name] = 150_000
    table = download_indexes('4100', 7, tmp_path, base_url=mirror.url, verbose=False)
    assert table['status'][0] == 'downloaded' and (tmp_path / name).stat().st_size == size
    ranges = [r[2] for r in mirror.gets(name)]
    assert ranges == [None, 'bytes=150000-']               # continued, not started over
    assert mirror.bytes_sent == size
    assert (tmp_path / name).read_bytes() == (mirror.root / '4100' / name).read_bytes()


def test_an_interrupted_download_is_atomic_and_resumed_later(mirror, tmp_path):
    name = 'index-4108.fits'
    mirror.drop_after[name] = 100_000
    tmp_path = tmp_path / 'dest'
    with pytest.raises(IndexDownloadError, match='Call again to resume') as info:
        download_indexes('4100', 8, tmp_path, base_url=mirror.url, verbose=False, retries=1)
    assert list(info.value.failed) == [name] and info.value.results['status'][0] == 'failed'
    assert 'IncompleteRead' in info.value.failed[name] or 'closed' in info.value.failed[name]
    assert not (tmp_path / name).exists()                  # never a partial file under its name
    assert (tmp_path / (name + '.part')).stat().st_size == 100_000
    with pytest.raises(Exception):                          # and the solver ignores the part
        find_installation(tmp_path)
    table = download_indexes('4100', 8, tmp_path, base_url=mirror.url, verbose=False)
    assert table['status'][0] == 'resumed' and _final_files(tmp_path) == [name]
    assert mirror.gets(name)[-1][2] == 'bytes=100000-'
    assert (tmp_path / name).read_bytes() == (mirror.root / '4100' / name).read_bytes()


def test_a_server_without_ranges_starts_over(mirror, tmp_path):
    name = 'index-4107.fits'
    mirror.drop_after[name] = 50_000
    mirror.ignore_range = True
    table = download_indexes('4100', 7, tmp_path, base_url=mirror.url, verbose=False)
    assert table['status'][0] == 'downloaded'
    assert (tmp_path / name).read_bytes() == (mirror.root / '4100' / name).read_bytes()


def test_a_wrong_file_is_refused(mirror_files, tmp_path):
    # a mirror that serves scale 8's file under scale 7's name
    root = tmp_path / 'mirror'
    shutil.copytree(mirror_files / '4100', root / '4100')
    shutil.copy(root / '4100' / 'index-4108.fits', root / '4100' / 'index-4107.fits')
    dest = tmp_path / 'dest'
    with IndexFileServer(root) as mirror:
        with pytest.raises(IndexDownloadError, match='INDEXID is 4108, not 4107'):
            download_indexes('4100', [7, 8], dest, base_url=mirror.url, verbose=False)
        assert _final_files(dest) == ['index-4108.fits']     # the good one is kept, no part
        mirror.fail['index-4107.fits'] = 404
        with pytest.raises(IndexDownloadError, match='404'):
            download_indexes('4100', 7, dest, base_url=mirror.url, verbose=False, retries=2)


def test_a_damaged_local_file_is_fetched_again(mirror, tmp_path):
    download_indexes('4100', 7, tmp_path, base_url=mirror.url, verbose=False)
    path = tmp_path / 'index-4107.fits'
    path.write_bytes(path.read_bytes()[:2880 * 10])
    table = download_indexes('4100', 7, tmp_path, base_url=mirror.url, verbose=False)
    assert table['status'][0] == 'downloaded'
    assert path.read_bytes() == (mirror.root / '4100' / 'index-4107.fits').read_bytes()


@pytest.mark.parametrize('kwargs, match', [
    (dict(series='9999'), 'series must be one of'),
    (dict(series='5200', scales=9), 'scales 0-6'),
    (dict(series='4100', scales='1-4'), 'scales 7-19'),
    (dict(series='5200', scales='x'), 'expected integers'),
    (dict(series='5200', scales=True), 'expected integers'),
    (dict(series='5200', radius=1.0), 'radius needs around'),
    (dict(series='5200', around='M31'), 'around must be'),
    (dict(series='5200', around=(10, 20), radius=-1), 'radius must be an angle'),
    (dict(series='5200', base_url='ftp://mirror'), 'base_url must be an http'),
    (dict(series='5200', max_workers=0), 'max_workers'),
])
def test_download_refuses_bad_arguments_before_any_request(mirror, tmp_path, kwargs, match):
    kwargs.setdefault('base_url', mirror.url)
    with pytest.raises(InvalidSettingError, match=match):
        download_indexes(destination_dir=tmp_path, verbose=False, **kwargs)
    assert mirror.requests == []


def test_planned_files_whole_sky_and_estimates():
    plans = planned_files('5200', 4)
    assert len(plans) == 48 and plans[0]['url'].endswith('/5200/LITE/index-5204-00.fits')
    assert planned_files('4100', '7-8')[1]['estimate'] == pytest.approx(94.6e6)


def test_cli_index_download_and_list(mirror, tmp_path, capsys):
    dest = tmp_path / 'cli'
    assert cli_main(['index', 'download', '5200', '--scales', '3', '--around', '10:00:00,+20:00:00',
                     '--radius', '1', '--dest', str(dest), '--base-url', mirror.url, '-q']) == 0
    out = capsys.readouterr().out
    assert re.search(r'\d+ index files in .*: \d+ downloaded', out)
    assert cli_main(['index', 'list', '--index-dir', str(dest)]) == 0
    out = capsys.readouterr().out
    assert 'index-5203-' in out and '5.6-8' in out
    assert cli_main(['index', 'list', '--index-dir', str(dest), '--json']) == 0
    assert '"index_id": 5203' in capsys.readouterr().out
    assert cli_main(['index', 'download', '5200', '--scales', '0-1', '--dry-run',
                     '--base-url', mirror.url]) == 0
    assert '96 files' in capsys.readouterr().out
    assert cli_main(['index', 'download', '5200', '--scales', '9', '--dest', str(dest)]) == 2
    assert 'scales 0-6' in capsys.readouterr().err
    # without --dest: the first directory of conf.index_dir (read by the command line)
    configured = tmp_path / 'configured'
    with conf.set_temp('index_dir', f'{configured}{os.pathsep}{dest}'):
        assert cli_main(['index', 'download', '5200', '--scales', '3', '--around',
                         '10:00:00,+20:00:00', '--base-url', mirror.url, '-q']) == 0
        # the library's own default is the user's index directory, whatever conf says
        assert default_destination() == user_index_dir()
    assert f'index files in {configured}:' in capsys.readouterr().out
    assert list(configured.glob('index-5203-*.fits'))


# -- building --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def catalog():
    return synthetic_catalog(SkyCoord(150.0, 20.0, unit='deg'), 0.5 * u.deg, 4000, seed=1)


def test_choose_scales():
    assert choose_scales(4000, 0.5) == list(range(0, 9))
    assert choose_scales(300, 0.5)[0] >= 2             # sparse: no tiny quads
    assert choose_scales(100000, 0.05) == [0, 1]        # small: no large quads


@pytest.mark.slow
def test_build_index(catalog, tmp_path):
    paths = build_index(catalog, tmp_path, scales='0-2', verbose=False)
    assert [p.name for p in paths] == ['index-9000.fits', 'index-9001.fits', 'index-9002.fits']
    table = installed_indexes(tmp_path)
    assert list(table['scale']) == [0, 1, 2] and list(table['series']) == [9000] * 3
    info = read_index_header(paths[0])
    assert info.cone[0] == pytest.approx(150.0, abs=0.05) and info.cone[1] == pytest.approx(20, abs=0.05)
    assert 0.45 < info.cone[2] < 0.51 and info.nstars > 1000
    # a second catalogue in the same directory gets the next free ids
    more = build_index(catalog[:2000], tmp_path, scales=2, verbose=False)
    assert [p.name for p in more] == ['index-9102.fits']
    with pytest.raises(InvalidInputError, match='exist'):
        build_index(catalog, tmp_path, scales=2, index_id=9000, verbose=False)
    assert build_index(catalog, tmp_path, scales=2, index_id=9000, overwrite=True,
                       verbose=False) == [tmp_path / 'index-9002.fits']
    assert not list(tmp_path.glob('.aq-build-*'))            # nothing left behind


@pytest.mark.slow
def test_build_index_columns_units_and_files(catalog, tmp_path):
    gaia = Table({'RA_ICRS': catalog['ra'].to(u.rad), 'DE_ICRS': catalog['dec'],
                  'Gmag': MaskedColumn(catalog['mag'], mask=np.arange(len(catalog)) % 50 == 0)})
    paths = build_index(gaia, tmp_path / 'a', ra='RA_ICRS', dec='DE_ICRS', mag='Gmag', scales=3,
                        verbose=False)
    assert read_index_header(paths[0]).cone[0] == pytest.approx(150.0, abs=0.05)
    catalog.write(tmp_path / 'stars.ecsv')
    assert len(build_index(tmp_path / 'stars.ecsv', tmp_path / 'b', scales=[3, 4],
                           verbose=False)) == 2


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(ra='RA_ICRS'), InvalidInputError, "no column 'RA_ICRS'; its columns are ra, dec, mag"),
    (dict(mag='G'), InvalidInputError, "no column 'G'"),
    (dict(scales=20), InvalidSettingError, 'scales'),
    (dict(sweeps=0), InvalidSettingError, 'sweeps'),
    (dict(index_id=-5), InvalidSettingError, 'index_id'),
    (dict(index_id=True), InvalidSettingError, 'index_id'),
])
def test_build_index_refuses(catalog, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        build_index(catalog, tmp_path, verbose=False, **kwargs)
    assert not list(tmp_path.glob('index-*'))


def test_build_index_needs_stars(catalog, tmp_path):
    with pytest.raises(InvalidInputError, match='at least 20'):
        build_index(catalog[:10], tmp_path, verbose=False)
    with pytest.raises(InvalidInputError, match='too few for any index scale'):
        build_index(synthetic_catalog(SkyCoord(0, 0, unit='deg'), 0.01 * u.deg, 30, seed=2),
                    tmp_path, verbose=False)
    with pytest.raises(InvalidInputError, match='cannot read'):
        build_index(tmp_path / 'none.fits', tmp_path, verbose=False)


def test_build_index_reports_a_failing_builder(catalog, tmp_path, monkeypatch):
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'build-astrometry-index').write_text('#!/bin/sh\necho "out of cheese" >&2\nexit 3\n')
    (fake / 'build-astrometry-index').chmod(0o755)
    monkeypatch.setenv('PATH', f'{fake}{os.pathsep}{os.environ["PATH"]}')
    with pytest.raises(IndexBuildError, match='exit 3.*out of cheese'):
        build_index(catalog, tmp_path / 'x', scales=2, verbose=False)
    assert not list((tmp_path / 'x').glob('index-*'))


@pytest.mark.slow
def test_cli_index_build(catalog, tmp_path, capsys):
    catalog.write(tmp_path / 'stars.fits')
    assert cli_main(['index', 'build', str(tmp_path / 'stars.fits'), '--dest', str(tmp_path / 'd'),
                     '--scales', '2-3', '-q']) == 0
    out = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in out] == ['index-9002.fits', 'index-9003.fits']
    assert cli_main(['index', 'build', str(tmp_path / 'stars.fits'), '--mag', 'G',
                     '--dest', str(tmp_path / 'd')]) == 2
    assert "no column 'G'" in capsys.readouterr().err
