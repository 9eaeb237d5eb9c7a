"""Real solves with the local astrometry.net (no mocks): solver, annotations,
result files, failures, timeouts and installation errors.

The synthetic field uses stars of the Tycho-2 index itself (query-starkd),
projected with a known TAN WCS, so the solution can be checked exactly.
"""
import dataclasses
import json
import math
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrometry_query.exceptions import LocalSolverNotFoundError
from astrometry_query.local import annotate, jobs
from astrometry_query.local.solver import (find_installation, run_solve_field,
                                           solver_available)
from astrometry_query.results import calibration_from_wcs

pytestmark = [pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning'),
              pytest.mark.skipif(not solver_available(),
                                 reason='astrometry.net and its index files are not installed')]

ASTROQUERY_DATA = None
try:
    import astroquery.astrometry_net
    ASTROQUERY_DATA = Path(astroquery.astrometry_net.__file__).parent / 'tests' / 'data'
except ImportError:
    pass

W, H, SCALE, ROTATION = 1000, 800, 10.0, 30.0      # px, px, arcsec/px, deg
CENTER = (83.8, -5.4)                               # Orion's sword, M42
THETA1_ORI_C = (83.8186, -5.3897)                   # the Trapezium's brightest star
ORION_HINTS = {'scale_units': 'arcsecperpix', 'scale_lower': 9.0, 'scale_upper': 11.0,
               'center_ra': CENTER[0], 'center_dec': CENTER[1], 'radius': 2.0}


def true_wcs():
    """TAN WCS, East left (det CD < 0), up 30 deg East of North."""
    w = WCS(naxis=2)
    w.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    w.wcs.crval = CENTER
    w.wcs.crpix = [(W + 1) / 2, (H + 1) / 2]
    c, s = math.cos(math.radians(ROTATION)), math.sin(math.radians(ROTATION))
    w.wcs.cd = SCALE / 3600 * np.array([[-c, s], [s, c]])
    w.pixel_shape = (W, H)
    return w


def index_stars(tmp_path):
    index = next(f for f in find_installation().index_files if 'tycho2-10' in f.name)
    out = tmp_path / 'stars.fits'
    # FITS output keeps full precision (the ASCII listing has 6 digits).
    subprocess.run(['query-starkd', '-r', str(CENTER[0]), '-d', str(CENTER[1]), '-R', '2.5',
                    '-T', '-o', str(out), str(index)], check=True, capture_output=True)
    stars = fits.getdata(out)
    return (np.array(stars['RA'], float), np.array(stars['DEC'], float),
            np.array(stars['MAG_VT'], float))


def write_xylist(path, x, y):
    fits.BinTableHDU.from_columns([fits.Column('X', 'D', array=x),
                                   fits.Column('Y', 'D', array=y)]).writeto(path)
    return path


@pytest.fixture(scope='module')
def orion(tmp_path_factory):
    """A solved synthetic Orion source list: (job_dir, result, truth table)."""
    tmp = tmp_path_factory.mktemp('orion')
    ra, dec, mag = index_stars(tmp)
    x, y = true_wcs().all_world2pix(ra, dec, 1)
    inside = (x > 0.5) & (x < W + 0.5) & (y > 0.5) & (y < H + 0.5)
    order = np.argsort(mag[inside])          # brightest first, as nova expects
    truth = {k: v[inside][order] for k, v in dict(x=x, y=y, ra=ra, dec=dec).items()}
    xyls = write_xylist(tmp / 'orion.xyls', truth['x'], truth['y'])
    job_dir = tmp / 'job'
    start = time.monotonic()
    result = jobs.solve_job(job_dir, xyls, ORION_HINTS, source_list=True, width=W, height=H,
                            timeout=60)
    print(f'orion source list ({len(truth["x"])} stars) solved in '
          f'{time.monotonic() - start:.2f} s (solve-field {result["elapsed"]:.2f} s)')
    return job_dir, result, truth


@pytest.fixture(scope='module')
def thumbnail(tmp_path_factory):
    """astroquery's recorded 256x256 image, solved: (job_dir, result)."""
    if ASTROQUERY_DATA is None or not (ASTROQUERY_DATA / 'thumbnail-image.fit.gz').is_file():
        pytest.skip("astroquery's test data are not installed")
    job_dir = tmp_path_factory.mktemp('thumb') / 'job'
    start = time.monotonic()
    result = jobs.solve_job(job_dir, ASTROQUERY_DATA / 'thumbnail-image.fit.gz',
                            {'scale_units': 'arcminwidth', 'scale_lower': 30.0,
                             'scale_upper': 45.0}, timeout=60)
    print(f'thumbnail image solved in {time.monotonic() - start:.2f} s')
    return job_dir, result


def test_calibration_matches_truth(orion):
    job_dir, result, _ = orion
    assert result['status'] == 'success', result['error']
    cal = result['calibration']
    assert cal['ra'] == pytest.approx(CENTER[0], abs=2 / 3600)
    assert cal['dec'] == pytest.approx(CENTER[1], abs=2 / 3600)
    assert cal['pixscale'] == pytest.approx(SCALE, rel=1e-3)
    assert cal['orientation'] == pytest.approx(ROTATION, abs=0.05)
    assert cal['parity'] == -1.0
    assert cal['width_arcsec'] == pytest.approx(W * SCALE, rel=1e-3)
    assert cal['radius'] == pytest.approx(SCALE * math.hypot(W, H) / 2 / 3600, rel=1e-3)
    assert (result['width'], result['height']) == (W, H)
    assert result['source_list'] is True and result['timed_out'] is False
    assert result['original_filename'] == 'orion.xyls' and result['input'] == 'orion.xyls'
    assert json.loads((job_dir / 'result.json').read_text()) == result
    assert jobs.read_result(job_dir) == result


def test_source_list_size_defaults_to_max_xy(orion, tmp_path):
    # Without width/height the field is ceil(max x) x ceil(max y), as on nova.
    _, _, truth = orion
    result = jobs.solve_job(tmp_path, write_xylist(tmp_path / 'in.fits', truth['x'], truth['y']),
                            ORION_HINTS, source_list=True)
    assert result['status'] == 'success'
    assert result['width'] == math.ceil(truth['x'].max())
    assert result['height'] == math.ceil(truth['y'].max())
    assert fits.getheader(tmp_path / 'wcs.fits')['IMAGEW'] == result['width']


def test_objects_in_field(orion):
    _, result, _ = orion
    objects = result['objects_in_field']
    for name in ('M 42', 'Orion Nebula', 'NGC 1976', 'M 43'):
        assert name in objects
    assert all(o and o == o.strip() and '/' not in o for o in objects)
    assert len(set(objects)) == len(objects)
    assert result['machine_tags'] == objects


def test_annotations_shape_order_and_pixels(orion):
    job_dir, result, _ = orion
    ann = result['annotations']
    assert ann and {a['type'] for a in ann} <= {'bright', 'ngc', 'ic'}
    for a in ann:
        assert set(a) == {'type', 'names', 'pixelx', 'pixely', 'radius'}
        assert a['names'] and all(n and ' / ' not in n for n in a['names'])
        if a['type'] == 'bright':
            assert a['radius'] == 0.0
    # nova's order: point-like NGC/IC, bright stars, NGC/IC with a radius.
    rank = [0 if a['type'] != 'bright' and a['radius'] == 0 else 1 if a['type'] == 'bright'
            else 2 for a in ann]
    assert rank == sorted(rank)
    m42 = next(a for a in ann if 'M 42' in a['names'])
    assert m42['type'] == 'ngc' and m42['radius'] > 0
    assert any(a['type'] == 'ic' and a['names'][0].startswith('IC ') for a in ann)
    hatysa = next(a for a in ann if 'Hatysa' in a['names'])
    assert hatysa['names'] == ['Hatysa', 'ι Ori', '44 Ori']
    # pixels are FITS 1-based: compare with astropy on the solved WCS.
    star = next(a for a in ann if 'θ1 Ori C' in a['names'])
    solved = WCS(fits.getheader(job_dir / 'wcs.fits'))
    x1, y1 = solved.all_world2pix([THETA1_ORI_C[0]], [THETA1_ORI_C[1]], 1)
    assert star['pixelx'] == pytest.approx(x1[0], abs=0.3)     # 0-based would be 1 px off
    assert star['pixely'] == pytest.approx(y1[0], abs=0.3)


def test_annotations_nbright(orion):
    job_dir, result, _ = orion
    stars = [a for a in result['annotations'] if a['type'] == 'bright']
    assert len(stars) > 2
    two = annotate.annotations(job_dir / 'wcs.fits', nbright=2)
    assert [a for a in two if a['type'] == 'bright'] == stars[:2]
    assert len(two) == len(result['annotations']) - len(stars) + 2


def test_result_files_of_source_list(orion):
    job_dir, _, truth = orion
    for kind in ('wcs', 'rdls', 'axy', 'corr', 'image_rd'):
        path = jobs.result_file(job_dir, kind)
        with fits.open(path) as hdul:
            assert hdul[0].header['SIMPLE']
    assert fits.getheader(jobs.result_file(job_dir, 'wcs'))['CTYPE1'] == 'RA---TAN-SIP'
    assert 'MAG_VT' in fits.getdata(jobs.result_file(job_dir, 'rdls')).columns.names
    radec = fits.getdata(jobs.result_file(job_dir, 'image_rd'))
    assert {'X', 'Y', 'RA', 'DEC'} <= set(radec.columns.names)
    # The list was made from these stars: RA/Dec agree to an arcsec. (job.axy
    # is reordered by solve-field's uniformize step, so match by position.)
    match = [np.argmin(np.hypot(truth['x'] - x, truth['y'] - y))
             for x, y in zip(radec['X'], radec['Y'])]
    ra, dec = truth['ra'][match], truth['dec'][match]
    dra = (radec['RA'] - ra) * np.cos(np.radians(dec))
    assert np.max(np.hypot(dra, radec['DEC'] - dec)) * 3600 < 1.0
    assert jobs.result_file(job_dir, 'annotated').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(FileNotFoundError, match='source list'):
        jobs.result_file(job_dir, 'new_fits')
    with pytest.raises(ValueError):
        jobs.result_file(job_dir, 'kmz')


def test_plot_failure_keeps_calibration(orion, tmp_path):
    _, _, truth = orion
    broken = dataclasses.replace(find_installation(), plot_constellations=shutil.which('false'))
    result = jobs.solve_job(tmp_path, write_xylist(tmp_path / 'in.fits', truth['x'], truth['y']),
                            ORION_HINTS, source_list=True, width=W, height=H,
                            installation=broken)
    assert result['status'] == 'failure'
    assert result['calibration']['parity'] == -1.0
    assert 'objects in the field' in result['error']
    assert jobs.result_file(tmp_path, 'wcs').is_file()


def test_thumbnail_matches_nova(thumbnail):
    job_dir, result = thumbnail
    assert result['status'] == 'success', result['error']
    assert (result['width'], result['height']) == (256, 256)
    assert result['original_filename'] == 'thumbnail-image.fit'
    nova_header = fits.getheader(ASTROQUERY_DATA / 'wcs-sol-from-thumbnail-image-index-5200.fit')
    nova = calibration_from_wcs(nova_header, 256, 256)
    ours = result['calibration']
    sep = math.hypot((ours['ra'] - nova['ra']) * math.cos(math.radians(nova['dec'])),
                     ours['dec'] - nova['dec']) * 3600
    assert sep < 3.0
    assert ours['pixscale'] == pytest.approx(nova['pixscale'], rel=2e-3)
    assert ours['orientation'] == pytest.approx(nova['orientation'], abs=0.1)
    assert ours['parity'] == nova['parity']
    try:
        from astrometry_query.simulate import wcs_rms_error
    except ImportError:
        wcs_rms_error = None
    solved = fits.getheader(job_dir / 'wcs.fits')
    if wcs_rms_error is not None:
        rms = wcs_rms_error(nova_header, solved, (256, 256))
    else:
        gx, gy = np.meshgrid(np.linspace(1, 256, 10), np.linspace(1, 256, 10))
        ra, dec = WCS(solved).all_pix2world(gx.ravel(), gy.ravel(), 1)
        nx, ny = WCS(nova_header).all_world2pix(ra, dec, 1)
        rms = float(np.sqrt(np.mean((nx - gx.ravel())**2 + (ny - gy.ravel())**2)))
    assert rms < 0.5


def test_result_files_of_image(thumbnail):
    job_dir, _ = thumbnail
    new = jobs.result_file(job_dir, 'new_fits')
    assert new.name == 'new-image.fits'
    original = fits.getdata(ASTROQUERY_DATA / 'thumbnail-image.fit.gz')
    with fits.open(new) as hdul:
        assert np.array_equal(hdul[0].data, original)
        header = hdul[0].header
        assert header['CTYPE1'] == 'RA---TAN-SIP' and 'A_ORDER' in header
        assert header['EXPTIME'] == 90.0        # the image's own cards are kept
    assert jobs.result_file(job_dir, 'new_fits') == new     # built once
    png = jobs.result_file(job_dir, 'annotated').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    assert int.from_bytes(png[16:20], 'big') == 256     # IHDR width: the image's
    radec = fits.getdata(jobs.result_file(job_dir, 'image_rd'))
    assert {'X', 'Y', 'FLUX', 'RA', 'DEC'} <= set(radec.columns.names)


@pytest.mark.skipif(shutil.which('pnmtopng') is None, reason='netpbm is not installed')
def test_new_fits_from_png(thumbnail, tmp_path):
    job_dir, _ = thumbnail
    pixels = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) % 251
    ppm = tmp_path / 'a.ppm'
    annotate._write_ppm(ppm, pixels.astype(np.uint8))
    png = tmp_path / 'a.png'
    png.write_bytes(subprocess.run(['pnmtopng', str(ppm)], capture_output=True,
                                   check=True).stdout)
    assert annotate.image_format(png) == 'png'
    out = annotate.new_fits(png, job_dir / 'wcs.fits', tmp_path / 'new.fits')
    with fits.open(out) as hdul:
        assert np.array_equal(hdul[0].data, pixels)     # row 0 = top row = y=1
        assert hdul[0].header['CTYPE2'] == 'DEC--TAN-SIP'


def random_xylist(path, n, seed):
    rng = np.random.default_rng(seed)
    return write_xylist(path, rng.uniform(1, W, n), rng.uniform(1, H, n))


def test_failed_solve(tmp_path):
    (tmp_path / 'wcs.fits').write_bytes(b'stale')    # must not count as a solution
    result = jobs.solve_job(tmp_path, random_xylist(tmp_path / 'rand.fits', 60, 1), ORION_HINTS,
                            source_list=True, width=W, height=H, timeout=60)
    assert result['status'] == 'failure' and result['calibration'] is None
    assert result['error'] and not result['timed_out']
    assert result['objects_in_field'] == [] and result['annotations'] == []
    with pytest.raises(FileNotFoundError, match='not solved'):
        jobs.result_file(tmp_path, 'wcs')
    assert jobs.result_file(tmp_path, 'axy').is_file()


def _processes_in(directory):
    import psutil
    found = []
    for proc in psutil.process_iter(['pid', 'name', 'cwd']):
        if proc.info['cwd'] == str(directory):
            found.append(proc.info['name'])
    return found


def test_timeout_kills_the_process_tree(tmp_path):
    pytest.importorskip('psutil')
    job_dir = tmp_path.resolve()
    xyls = random_xylist(job_dir / 'rand.fits', 300, 2)
    seen, done = set(), threading.Event()

    def watch():
        while not done.is_set():
            seen.update(_processes_in(job_dir))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:    # no hints: this would run for minutes
        outcome = run_solve_field(xyls, job_dir, [], width=W, height=H, timeout=2.5)
    finally:
        done.set()
        watcher.join()
    assert outcome.timed_out and not outcome.solved and outcome.wcs_path is None
    assert outcome.elapsed < 2.5 + 3.0
    assert 'solve-field' in seen
    assert _processes_in(job_dir) == []
    assert 'timeout' in outcome.log_path.read_text()
    assert outcome.command[outcome.command.index('--cpulimit') + 1] == '3'


def test_find_installation_errors(tmp_path, monkeypatch):
    with pytest.raises(LocalSolverNotFoundError) as err:
        find_installation(index_dir=tmp_path)
    assert 'sudo apt-get install astrometry-data-tycho2-10-19-littleendian' in str(err.value)
    assert str(tmp_path) in str(err.value)
    assert solver_available(index_dir=tmp_path) is False
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(LocalSolverNotFoundError, match='sudo apt-get install astrometry.net'):
        find_installation()
    assert solver_available() is False


def test_find_installation(tmp_path):
    inst = find_installation()
    assert inst is find_installation()       # cached
    assert inst.index_files and all(f.name.startswith('index-') for f in inst.index_files)
    (tmp_path / 'index-test.fits').symlink_to(inst.index_files[-1])
    other = find_installation(index_dir=[str(tmp_path)])
    assert other.index_dirs == (tmp_path.resolve(),)
    assert [f.name for f in other.index_files] == ['index-test.fits']
    assert jobs.read_result(tmp_path) is None


def test_unreadable_input_fails_with_the_reason(tmp_path):
    (tmp_path / 'notes.txt').write_text('not an image')
    result = jobs.solve_job(tmp_path, tmp_path / 'notes.txt', {})
    assert result['status'] == 'failure' and not result['timed_out']
    assert result['error'].startswith('solve-field failed')
