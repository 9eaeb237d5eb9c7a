"""Real solves with the local astrometry.net engine (no mocks): finding the
installation, running ``astrometry-engine``, the `solve` pipeline (header hints
and their fallback, time limits, process pools), job directories with their
lazily built files, objects in the field and annotations.

The synthetic fields use stars of the Tycho-2 index itself, drawn through a
known WCS (astrometry_query.datasets), so each solution is checked against the
truth; astroquery's recorded thumbnail is checked against nova's own solution.
"""
import concurrent.futures
import dataclasses
import io
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from astrometry_query import AstrometryNetClass
from astrometry_query.exceptions import (InvalidInputError, InvalidSettingError, JobNotFoundError,
                                         LocalSolverNotFoundError, SolveFailedError,
                                         SolveTimeoutError)
from astrometry_query.hints import SolveHints, header_hints
from astrometry_query.images import open_image
from astrometry_query.jobs import RESULT_KINDS, SolveRequest, files as job_files, outputs, runner
from astrometry_query.local import annotate, pipeline
from astrometry_query.local.axy import write_axy
from astrometry_query.local.solver import (EngineOutcome, find_installation, kill_process_group,
                                           run_engine, solver_available, write_engine_config)
from astrometry_query.results import calibration_from_wcs
from astrometry_query.datasets import render_field, wcs_rms_error

from real_server import requires_solver

pytestmark = [pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning'), requires_solver]

try:
    import astroquery.astrometry_net
    ASTROQUERY_DATA = Path(astroquery.astrometry_net.__file__).parent / 'tests' / 'data'
except ImportError:      # pragma: no cover
    ASTROQUERY_DATA = None

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
W, H, SCALE, ROTATION = 1000, 800, 10.0, 30.0      # px, px, arcsec/px, deg
CENTER = (83.8, -5.4)                               # Orion's sword, M42
THETA1_ORI_C = (83.8186, -5.3897)                   # the Trapezium's brightest star
ORION_HINTS = {'scale_units': 'arcsecperpix', 'scale_lower': 9.0, 'scale_upper': 11.0,
               'center_ra': CENTER[0], 'center_dec': CENTER[1], 'radius': 2.0}
# small image fields: 700x600 pixels
SHAPE = (600, 700)
SCALE_10 = {'scale_units': 'arcsecperpix', 'scale_lower': 9.0, 'scale_upper': 11.0}
SCALE_12 = {'scale_units': 'arcsecperpix', 'scale_lower': 11.0, 'scale_upper': 13.0}


def run_job(job_dir, *, image=None, args=None, **fields):
    """A job as the runner runs it: an image file is named by its request, an
    image in memory travels with it."""
    in_memory = image is not None and not isinstance(image, (str, os.PathLike))
    request = SolveRequest(settings=args or {}, **fields,
                           image_path=None if in_memory or image is None else str(image))
    return runner.run_job(job_dir, request, image=image if in_memory else None)


def _separation_arcsec(ra1, dec1, ra2, dec2):
    return SkyCoord(ra1, dec1, unit='deg').separation(SkyCoord(ra2, dec2, unit='deg')).arcsec


def _random_sources(n, seed, width=W, height=H):
    rng = np.random.default_rng(seed)
    return {'x': rng.uniform(1, width, n), 'y': rng.uniform(1, height, n)}


def _processes_in(directory):
    """Names of the processes whose working directory is ``directory``."""
    import psutil
    found = []
    for proc in psutil.process_iter(['pid', 'name', 'cwd']):
        if proc.info['cwd'] == str(directory):
            found.append(proc.info['name'])
    return found


class _Watcher:
    """Records the processes running in a directory while a block runs."""

    def __init__(self, directory):
        self.directory, self.seen = directory, set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        while not self._done.is_set():
            self.seen.update(_processes_in(self.directory))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def orion(tmp_path_factory):
    """A synthetic Orion source list, solved in a job directory: (job_dir, result, field)."""
    field = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=SCALE * u.arcsec / u.pix,
                         shape=(H, W), rotation=ROTATION * u.deg, seed=3)
    stars = field.source_list()            # 1-based x, y; brightest first, as nova expects
    job_dir = tmp_path_factory.mktemp('orion') / 'job'
    result = run_job(job_dir, sources={'x': np.asarray(stars['x']),
                                            'y': np.asarray(stars['y'])},
                          width=W, height=H, args=ORION_HINTS, timeout=30,
                          original_filename='json-xy')
    return job_dir, result, field


@pytest.fixture
def orion_copy(orion, tmp_path):
    """A copy of the solved Orion job, without any lazily built file."""
    job_dir, result, field = orion
    copy = tmp_path / 'job'
    shutil.copytree(job_dir, copy)
    for name in ('extras.json', 'annotated.png', 'image-radec.fits', 'new-image.fits'):
        (copy / name).unlink(missing_ok=True)
    return copy, result, field


@pytest.fixture(scope='module')
def thumbnail(tmp_path_factory):
    """astroquery's recorded 256x256 image, solved: (job_dir, result)."""
    if ASTROQUERY_DATA is None or not (ASTROQUERY_DATA / 'thumbnail-image.fit.gz').is_file():
        pytest.skip("astroquery's test data are not installed")
    job_dir = tmp_path_factory.mktemp('thumb') / 'job'
    result = run_job(job_dir, image=ASTROQUERY_DATA / 'thumbnail-image.fit.gz',
                          args={'scale_units': 'arcminwidth', 'scale_lower': 30.0,
                                'scale_upper': 45.0},
                          timeout=30, original_filename='thumbnail-image.fit.gz')
    return job_dir, result


@pytest.fixture(scope='module')
def pleiades():
    """A 700x600 field at 12"/pixel, mirrored (parity +1), with hot pixels and cosmic rays."""
    return render_field(SkyCoord(56.75, 24.12, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                        shape=SHAPE, rotation=20 * u.deg, flip=True, fwhm=2.5, background=50.0,
                        hot_pixels=30, cosmic_rays=10, saturation=40000.0, seed=5)


@pytest.fixture(scope='module')
def wrong_pointing():
    """A field whose header points 40 degrees off, with a right PIXSCALE, solved from
    the header hints: (field, hints, result)."""
    field = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=10 * u.arcsec / u.pix,
                         shape=SHAPE, rotation=30 * u.deg, fwhm=2.5, seed=1, max_stars=30)
    header = field.header()
    for key in [k for k in field.wcs.to_header(relax=True)]:
        header.remove(key, ignore_missing=True, remove_all=True)        # no WCS: a camera's header
    header['OBJCTRA'] = Angle(CENTER[0] + 40, u.deg).to_string(u.hour, sep=':')
    header['OBJCTDEC'] = Angle(CENTER[1], u.deg).to_string(sep=':', alwayssign=True)
    header['PIXSCALE'] = 10.0
    for key in ('RA', 'DEC'):
        del header[key]
    image = fits.PrimaryHDU(field.data, header=header)
    img = open_image(image)
    assert img.wcs() is None
    hints = header_hints(img.header, img.shape, img.wcs())
    result = pipeline.solve(img, settings={}, hints=hints, timeout=30)
    return field, hints, result


# -- the installation ----------------------------------------------------------------------
def test_find_installation():
    inst = find_installation()
    assert inst is find_installation()       # cached
    assert Path(inst.engine).name == 'astrometry-engine' and os.access(inst.engine, os.X_OK)
    assert inst.plot_constellations and Path(inst.plot_constellations).name == 'plot-constellations'
    assert inst.index_files and all(f.name.startswith('index-') and f.is_file()
                                    for f in inst.index_files)
    assert all(any(f.parent == d for d in inst.index_dirs) for f in inst.index_files)
    if Path('/etc/astrometry.cfg').is_file():      # Debian's: add_path /usr/share/astrometry
        assert inst.config == Path('/etc/astrometry.cfg')
    assert solver_available() is True


def test_find_installation_with_an_index_dir(tmp_path):
    inst = find_installation()
    (tmp_path / 'index-test.fits').symlink_to(inst.index_files[-1])
    (tmp_path / 'notes-index.fits').write_text('not an index name')
    other = find_installation(index_dir=[str(tmp_path)])
    assert other.index_dirs == (tmp_path.resolve(),)
    assert [f.name for f in other.index_files] == ['index-test.fits']
    assert find_installation(index_dir=tmp_path) is other


def test_find_installation_errors(tmp_path, monkeypatch):
    with pytest.raises(LocalSolverNotFoundError) as err:
        find_installation(index_dir=tmp_path)
    assert 'sudo apt-get install astrometry-data-tycho2-10-19-littleendian' in str(err.value)
    assert str(tmp_path) in str(err.value)
    assert solver_available(index_dir=tmp_path) is False
    with pytest.raises(LocalSolverNotFoundError, match='config file .* does not exist'):
        find_installation(config=tmp_path / 'nope.cfg')
    monkeypatch.setenv('PATH', str(tmp_path))
    with pytest.raises(LocalSolverNotFoundError, match='sudo apt-get install astrometry.net'):
        find_installation()
    assert solver_available() is False


def test_find_installation_reads_add_path_of_a_config(tmp_path):
    inst = find_installation()
    (tmp_path / 'idx').mkdir()
    (tmp_path / 'idx' / 'index-one.fits').symlink_to(inst.index_files[0])
    config = tmp_path / 'my.cfg'
    config.write_text('# mine\ncpulimit 10\nadd_path idx\nautoindex\n')    # relative to the file
    found = find_installation(config=config)
    assert found.config == config
    assert found.index_dirs == (tmp_path / 'idx',)
    assert [f.name for f in found.index_files] == ['index-one.fits']


def test_write_engine_config(tmp_path):
    inst = find_installation()
    path = write_engine_config(tmp_path / 'a.cfg', inst, inparallel=True, cpulimit=2.2)
    lines = path.read_text().splitlines()
    assert 'inparallel' in lines and 'cpulimit 3' in lines and 'autoindex' in lines
    assert [f'add_path {d}' for d in inst.index_dirs] == [ln for ln in lines
                                                          if ln.startswith('add_path')]
    lines = write_engine_config(tmp_path / 'b.cfg', inst).read_text().splitlines()
    assert 'inparallel' not in lines and 'cpulimit 300' in lines


# -- run_engine ----------------------------------------------------------------------------
def test_run_engine_solves_an_axy(orion, tmp_path):
    _, _, field = orion
    stars = field.source_list()
    write_axy(tmp_path / 'job.axy', stars['x'], stars['y'], stars['flux'], ORION_HINTS, W, H,
              cpulimit=30)
    (tmp_path / 'wcs.fits').write_bytes(b'stale')        # replaced, never taken as is
    outcome = run_engine(tmp_path / 'job.axy', tmp_path, timeout=30)
    assert isinstance(outcome, EngineOutcome)
    assert outcome.solved and outcome.wcs_path == tmp_path / 'wcs.fits'
    assert outcome.returncode == 0 and not outcome.timed_out and 0 < outcome.elapsed < 30
    assert 'solved' in outcome.log.lower()
    assert wcs_rms_error(field.wcs, outcome.wcs_path, (H, W)) < 0.05
    for name in ('corr.fits', 'rdls.fits', 'job.solved', 'astrometry.cfg'):
        assert (tmp_path / name).is_file()


def test_run_engine_without_a_solution_leaves_no_wcs(tmp_path):
    src = _random_sources(40, 1)
    write_axy(tmp_path / 'job.axy', src['x'], src['y'], None, ORION_HINTS, W, H)
    (tmp_path / 'wcs.fits').write_bytes(b'stale')        # must not count as a solution
    outcome = run_engine(tmp_path / 'job.axy', tmp_path, timeout=30)
    assert not outcome.solved and outcome.wcs_path is None and not outcome.timed_out
    assert outcome.returncode == 0
    assert not (tmp_path / 'wcs.fits').exists()


@pytest.mark.slow
def test_run_engine_time_limit_kills_the_engine(tmp_path):
    pytest.importorskip('psutil')
    work = tmp_path.resolve()
    src = _random_sources(300, 2)
    write_axy(work / 'job.axy', src['x'], src['y'], None, {}, W, H)    # blind: minutes of work
    with _Watcher(work) as watcher:
        outcome = run_engine(work / 'job.axy', work, timeout=1.5, inparallel=True)
    assert outcome.timed_out and not outcome.solved and outcome.wcs_path is None
    assert outcome.returncode == -signal.SIGTERM
    assert 1.5 <= outcome.elapsed < 1.5 + 2.0
    assert 'astrometry-engine' in watcher.seen
    assert _processes_in(work) == []
    assert 'stopped after the time limit of 1.5 s' in outcome.log
    assert 'cpulimit 2' in (work / 'astrometry.cfg').read_text().splitlines()


def test_kill_process_group_stops_children_and_stubborn_processes(tmp_path):
    psutil = pytest.importorskip('psutil')
    # a leader that ignores SIGTERM, with two children (one of which also ignores it)
    script = "trap '' TERM; sleep 60 & (trap '' TERM; sleep 60) & wait"
    proc = subprocess.Popen(['sh', '-c', script], start_new_session=True)
    deadline = time.monotonic() + 5
    while len(psutil.Process(proc.pid).children(recursive=True)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    start = time.monotonic()
    kill_process_group(proc, grace=0.3)
    assert time.monotonic() - start < 3
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.1)
    alive = [p for p in family if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    kill_process_group(proc, grace=0.3)      # already gone: no error


# -- run_job on a source list: Orion --------------------------------------------------------
def test_calibration_matches_truth(orion):
    job_dir, result, field = orion
    assert result['status'] == 'success', result['error']
    cal = result['calibration']
    assert _separation_arcsec(cal['ra'], cal['dec'], *CENTER) < 2.0
    assert cal['pixscale'] == pytest.approx(SCALE, rel=1e-3)
    assert cal['orientation'] == pytest.approx(ROTATION, abs=0.05)
    assert cal['parity'] == -1.0
    assert cal['width_arcsec'] == pytest.approx(W * SCALE, rel=1e-3)
    assert cal['radius'] == pytest.approx(SCALE * math.hypot(W, H) / 2 / 3600, rel=1e-3)
    assert wcs_rms_error(field.wcs, job_dir / 'wcs.fits', (H, W)) < 0.05
    assert (result['width'], result['height']) == (W, H)
    assert result['source_list'] is True and result['timed_out'] is False
    assert result['error'] is None and result['hints'] == []
    assert result['original_filename'] == 'json-xy' and result['input'] is None
    assert result['n_sources'] == len(field.stars)
    assert len(result['attempts']) == 1 and result['attempts'][0]['solved']
    assert set(result['timings']) >= {'engine', 'wcs'} and 'extract' not in result['timings']
    assert json.loads((job_dir / 'result.json').read_text()) == result
    assert job_files.read_result(job_dir) == result
    assert fits.getheader(job_dir / 'wcs.fits')['IMAGEW'] == W


def test_the_job_axy(orion):
    job_dir, _, field = orion
    header = fits.getheader(outputs.result_file(job_dir, 'axy'))
    assert (header['IMAGEW'], header['IMAGEH']) == (W, H)
    assert (header['ANERA'], header['ANEDEC'], header['ANERAD']) == (83.8, -5.4, 2.0)
    assert (header['ANAPPL1'], header['ANAPPU1']) == (9.0, 11.0)
    assert 1 <= header['ANCLIM'] <= 30
    data = fits.getdata(job_dir / 'job.axy')
    assert data.columns.names == ['X', 'Y']        # no flux was given
    assert len(data) == len(field.stars)


def test_objects_in_field(orion_copy):
    job_dir, _, _ = orion_copy
    assert not (job_dir / 'extras.json').exists()
    objects = outputs.objects_in_field(job_dir)
    for name in ('M 42', 'Orion Nebula', 'NGC 1976', 'M 43', 'IC 420'):
        assert name in objects
    assert all(o and o == o.strip() and '/' not in o for o in objects)
    assert len(set(objects)) == len(objects)
    # made once, then kept in extras.json
    extras = json.loads((job_dir / 'extras.json').read_text())
    assert extras['objects_in_field'] == objects
    extras['objects_in_field'] = ['kept']
    (job_dir / 'extras.json').write_text(json.dumps(extras))
    assert outputs.objects_in_field(job_dir) == ['kept']


def test_annotations_shape_order_and_pixels(orion_copy):
    job_dir, _, _ = orion_copy
    ann = outputs.annotations(job_dir)
    assert (job_dir / 'extras.json').is_file()
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
    assert outputs.annotations(job_dir) == ann


def test_annotations_nbright(orion):
    job_dir, _, _ = orion
    full = annotate.annotations(job_dir / 'wcs.fits')
    stars = [a for a in full if a['type'] == 'bright']
    assert len(stars) > 2
    two = annotate.annotations(job_dir / 'wcs.fits', nbright=2)
    assert [a for a in two if a['type'] == 'bright'] == stars[:2]
    assert len(two) == len(full) - len(stars) + 2


def test_result_files_of_a_source_list(orion_copy):
    job_dir, _, field = orion_copy
    for kind in ('wcs', 'rdls', 'axy', 'corr'):
        path = outputs.result_file(job_dir, kind)
        assert path.parent == job_dir and path.name == RESULT_KINDS[kind].file
    assert fits.getheader(outputs.result_file(job_dir, 'wcs'))['CTYPE1'].startswith('RA---TAN')
    rdls = fits.getdata(outputs.result_file(job_dir, 'rdls'))
    assert {'RA', 'DEC'} <= set(rdls.columns.names) and len(rdls) > 20
    corr = fits.getdata(outputs.result_file(job_dir, 'corr'))
    assert len(corr) > 20 and {'field_x', 'index_ra'} <= set(corr.columns.names)
    # image_rd: made on first request
    assert not (job_dir / 'image-radec.fits').exists()
    radec = fits.getdata(outputs.result_file(job_dir, 'image_rd'))
    assert {'X', 'Y', 'RA', 'DEC'} <= set(radec.columns.names)
    # The list was made from these stars: RA/Dec agree to an arcsec. (job.axy
    # is reordered by uniformize, so match by position.)
    x, y = np.asarray(field.stars['x']) + 1, np.asarray(field.stars['y']) + 1
    match = [np.argmin(np.hypot(x - xi, y - yi)) for xi, yi in zip(radec['X'], radec['Y'])]
    sep = _separation_arcsec(radec['RA'], radec['DEC'], np.asarray(field.stars['ra'])[match],
                             np.asarray(field.stars['dec'])[match])
    assert np.max(sep) < 1.0
    # the annotated PNG: a black canvas of the field's size, made once
    assert not (job_dir / 'annotated.png').exists()
    png = outputs.result_file(job_dir, 'annotated')
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert int.from_bytes(data[16:20], 'big') == W and int.from_bytes(data[20:24], 'big') == H
    mtime = png.stat().st_mtime_ns
    assert outputs.result_file(job_dir, 'annotated') == png and png.stat().st_mtime_ns == mtime
    with pytest.raises(FileNotFoundError, match='source list'):
        outputs.result_file(job_dir, 'new_fits')
    with pytest.raises(ValueError, match='Unknown result file kind'):
        outputs.result_file(job_dir, 'kmz')


def test_rdls_carries_the_index_magnitudes(orion):
    job_dir, _, _ = orion
    assert 'MAG_VT' in fits.getdata(outputs.result_file(job_dir, 'rdls')).columns.names


def test_plot_failure_does_not_touch_the_solution(orion_copy):
    job_dir, result, _ = orion_copy
    broken = dataclasses.replace(find_installation(), plot_constellations=shutil.which('false'))
    with pytest.raises(Exception, match='false failed'):
        annotate.objects_in_field(job_dir / 'wcs.fits', installation=broken)
    assert job_files.read_result(job_dir)['calibration'] == result['calibration']
    assert not (job_dir / 'extras.json').exists()


# -- run_job on images -------------------------------------------------------------------------
def test_thumbnail_matches_nova(thumbnail):
    job_dir, result = thumbnail
    assert result['status'] == 'success', result['error']
    assert (result['width'], result['height']) == (256, 256)
    assert result['original_filename'] == 'thumbnail-image.fit.gz'
    assert result['input'] == 'thumbnail-image.fit.gz' and (job_dir / result['input']).is_file()
    assert result['source_list'] is False and result['n_sources'] >= 10
    assert set(result['timings']) >= {'extract', 'engine', 'wcs'}
    nova_header = fits.getheader(ASTROQUERY_DATA / 'wcs-sol-from-thumbnail-image-index-5200.fit')
    nova = calibration_from_wcs(nova_header, 256, 256)
    ours = result['calibration']
    assert _separation_arcsec(ours['ra'], ours['dec'], nova['ra'], nova['dec']) < 3.0
    assert ours['pixscale'] == pytest.approx(nova['pixscale'], rel=2e-3)
    assert ours['orientation'] == pytest.approx(nova['orientation'], abs=0.1)
    assert ours['parity'] == nova['parity']
    assert wcs_rms_error(nova_header, job_dir / 'wcs.fits', (256, 256)) < 0.5


def test_result_files_of_an_image(thumbnail):
    job_dir, _ = thumbnail
    for name in ('new-image.fits', 'image-radec.fits', 'annotated.png'):
        assert not (job_dir / name).exists()       # made on first request only
    new = outputs.result_file(job_dir, 'new_fits')
    assert new.name == 'new-image.fits'
    with fits.open(ASTROQUERY_DATA / 'thumbnail-image.fit.gz') as hdul:
        original = hdul[0].data.copy()
    with fits.open(new) as hdul:
        assert np.array_equal(hdul[0].data, original)
        header = hdul[0].header
        assert header['CTYPE1'] == 'RA---TAN-SIP' and 'A_ORDER' in header
        assert header['EXPTIME'] == 90.0        # the image's own cards are kept
    assert outputs.result_file(job_dir, 'new_fits') == new     # built once
    png = outputs.result_file(job_dir, 'annotated').read_bytes()
    assert png[:8] == PNG_MAGIC
    assert int.from_bytes(png[16:20], 'big') == 256     # IHDR width: the image's
    radec = fits.getdata(outputs.result_file(job_dir, 'image_rd'))
    assert {'X', 'Y', 'FLUX', 'RA', 'DEC'} <= set(radec.columns.names)


def test_thumbnail_with_its_header_hints(thumbnail):
    """The thumbnail kept the WCS of its full-size frame (0.56"/pixel, CRPIX 2055; the
    thumbnail has 9"/pixel): a wrong scale and a pointing 0.4 deg off.  The user's
    scale wins over that hint, the pointing hint is used on the first attempt."""
    path = ASTROQUERY_DATA / 'thumbnail-image.fit.gz'
    img = open_image(path)
    hints = header_hints(img.header, img.shape, img.wcs())
    assert hints.sources == ['WCS']
    assert hints.scale['scale_upper'] < 1.0          # the wrong, full-frame scale
    assert hints.position['radius'] == 1.0
    settings = {'scale_units': 'arcminwidth', 'scale_lower': 30.0, 'scale_upper': 45.0}
    result = pipeline.solve(img, settings=settings, hints=hints, timeout=30)
    assert result.solved, result.error
    assert [a['hints'] for a in result.attempts] == [['center_ra']]
    _, job = thumbnail
    assert result.calibration['ra'] == pytest.approx(job['calibration']['ra'], abs=1e-4)


def test_in_memory_image_is_kept_for_new_fits(tmp_path, pleiades):
    result = run_job(tmp_path, image=pleiades.data, args=SCALE_12, timeout=30)
    assert result['status'] == 'success', result['error']
    assert result['input'] == 'input.fits' and result['original_filename'] is None
    new = outputs.result_file(tmp_path, 'new_fits')
    with fits.open(new) as hdul:
        np.testing.assert_array_equal(hdul[0].data, pleiades.data)
        assert wcs_rms_error(pleiades.wcs, hdul[0].header, SHAPE) < 0.1


def test_a_fits_file_is_copied_into_the_job(tmp_path, pleiades):
    path = pleiades.writeto(tmp_path / 'pleiades.fits', dtype=np.uint16, truth='extension')
    job_dir = tmp_path / 'job'
    result = run_job(job_dir, image=path, args=SCALE_12, timeout=30)
    assert result['status'] == 'success', result['error']
    assert result['input'] == 'pleiades.fits'
    assert (job_dir / 'pleiades.fits').read_bytes() == path.read_bytes()
    with fits.open(outputs.result_file(job_dir, 'new_fits')) as hdul:
        assert [h.name for h in hdul] == ['PRIMARY', 'TRUEWCS']       # every HDU kept
        assert hdul[0].header['BITPIX'] == 16 and hdul[0].header['BZERO'] == 32768
        assert hdul[0].header['CTYPE1'].startswith('RA---TAN')
        assert wcs_rms_error(pleiades.wcs, hdul[0].header, SHAPE) < 0.1


def test_editing_the_image_in_place_leaves_the_job_s_copy_alone(tmp_path, pleiades):
    path = pleiades.writeto(tmp_path / 'pleiades.fits', truth='none')
    original = path.read_bytes()
    an = AstrometryNetClass(backend='local')
    header = an.solve_from_image(path, verbose=False, **SCALE_12)
    job_id = header['AN_JOBID']
    kept = an.backend.jobs_dir / str(job_id) / 'pleiades.fits'
    assert kept.read_bytes() == original
    assert not os.path.samefile(kept, path) and os.stat(kept).st_nlink == 1
    # the user edits the image in place (as a reduction script may: the same inode)
    data_start = len(fits.getheader(path).tostring())
    with open(path, 'r+b') as f:
        f.seek(data_start)
        f.write(b'\x7f' * 4096)
    assert path.read_bytes() != original
    assert kept.read_bytes() == original
    # what the job gives back is what was solved
    with an.download(header, 'new_fits') as hdul:
        np.testing.assert_array_equal(hdul[0].data, fits.getdata(io.BytesIO(original)))


def test_a_reflink_is_a_copy_or_nothing(tmp_path):
    source = tmp_path / 'a.fits'
    source.write_bytes(b'stars' * 1000)
    target = tmp_path / 'b.fits'
    if job_files.reflink(source, target):      # btrfs, XFS...: a copy that shares blocks
        assert target.read_bytes() == source.read_bytes() and not os.path.samefile(source, target)
        with open(source, 'r+b') as f:
            f.write(b'moons')
        assert target.read_bytes() == b'stars' * 1000
    else:                                   # ext4, tmpfs...: nothing left behind
        assert not target.exists()


def _finished_days_ago(job_dir, days):
    """Record that a job ended ``days`` ago (what its age is counted from)."""
    path = Path(job_dir) / job_files.RESULT_FILE
    result = json.loads(path.read_text())
    result['finished'] = str(job_files.utc_now() - timedelta(days=days))
    path.write_text(json.dumps(result))


def _tree_bytes(folder):
    return sum(f.stat().st_size for f in Path(folder).rglob('*') if f.is_file())


@pytest.mark.slow
def test_prune_jobs_deletes_jobs_that_ended_long_ago(tmp_path, pleiades):
    an = AstrometryNetClass(backend='local')
    store = an.backend.jobs_dir
    path = pleiades.writeto(tmp_path / 'pleiades.fits', truth='none')
    old = an.solve_from_image(path, verbose=False, cache=False, **SCALE_12)['AN_JOBID']
    recent = an.solve_from_image(path, verbose=False, cache=False, **SCALE_12)['AN_JOBID']
    # a job still running, however long ago it was submitted, is never deleted
    stars = _random_sources(300, 4)
    running = an.submit_source_list(stars['x'], stars['y'], W, H, solve_timeout=8).id
    request = store / str(running) / 'request.json'
    asked = json.loads(request.read_text())
    request.write_text(json.dumps(dict(asked, submitted=str(job_files.utc_now() - timedelta(days=90)))))
    flat = tmp_path / 'flat.fits'
    fits.PrimaryHDU(np.full((50, 50), 3.0, np.float32)).writeto(flat)
    with pytest.raises(InvalidInputError):
        an.solve_from_image(flat, verbose=False)
    failed = max(an.backend.my_jobs())
    _finished_days_ago(store / str(old), 41)
    _finished_days_ago(store / str(recent), 10)
    _finished_days_ago(store / str(failed), 40)
    sizes = {j: _tree_bytes(store / str(j)) for j in (old, failed)}

    dry = an.prune_jobs(older_than=30 * u.day, dry_run=True)
    assert (dry.job_ids, dry.count, dry.bytes, dry.dry_run) == ([old, failed], 2,
                                                              sizes[old] + sizes[failed], True)
    assert dry.kept_unfinished == [running]
    assert all((store / str(j)).is_dir() for j in (old, recent, failed, running))

    pruned = an.prune_jobs(timedelta(days=30))
    assert (pruned.job_ids, pruned.bytes, pruned.dry_run) == ([old, failed], dry.bytes, False)
    assert pruned.kept_unfinished == [running]
    assert sorted(int(p.name) for p in store.iterdir() if not p.name.startswith('.')) == \
        [recent, running]
    with pytest.raises(JobNotFoundError):
        an.get_job_info(old)
    assert an.get_calibration(recent).pixscale.to_value(u.arcsec / u.pix) == \
        pytest.approx(12.0, rel=1e-3)
    with pytest.raises((SolveTimeoutError, SolveFailedError)):      # it ran on meanwhile
        an.wait(job_id=running, verbose=False)
    # the ids of deleted jobs are never given again (a cached header may name them)
    assert failed == max(old, recent, failed, running)
    again = AstrometryNetClass(backend='local')
    assert again.solve_from_image(path, verbose=False, cache=False, **SCALE_12)['AN_JOBID'] == \
        failed + 1
    # once ended, the formerly running job goes too (oldest end first)
    assert an.prune_jobs(0 * u.s).job_ids == [recent, running, failed + 1]
    assert [p.name for p in store.iterdir()] == ['.highest-pruned-id']


def test_prune_jobs_refuses_bad_ages_and_the_nova_backend():
    an = AstrometryNetClass(backend='local')
    for age in (30, -1 * u.day, 5 * u.m, [1, 2] * u.day, 'old', float('nan') * u.day):
        with pytest.raises(InvalidInputError, match='older_than'):
            an.prune_jobs(age)
    with pytest.raises(InvalidInputError, match='dry_run'):
        an.prune_jobs(1 * u.day, dry_run='yes')
    nova = AstrometryNetClass(api_key='prunenovakeyabcd', server='http://127.0.0.1:9')
    with pytest.raises(InvalidSettingError, match='local job store') as err:
        nova.prune_jobs(30 * u.day)
    assert err.value.setting == 'backend' and err.value.allowed == ['local']


def test_unreadable_input_fails_with_the_reason(tmp_path):
    (tmp_path / 'notes.txt').write_text('not an image')
    job_dir = tmp_path / 'job'
    result = run_job(job_dir, image=tmp_path / 'notes.txt', args={})
    assert result['status'] == 'failure' and not result['timed_out']
    assert result['error'] == ('InvalidInputError: image: notes.txt is not a FITS, PNG, JPEG '
                               'or GIF image, nor TIFF, XISF, camera RAW, BMP or WebP.')
    assert result['calibration'] is None and result['attempts'] == []
    assert job_files.read_result(job_dir) == result
    assert 'InvalidInputError' in (job_dir / 'job.log').read_text()
    with pytest.raises(FileNotFoundError, match='not solved'):
        outputs.result_file(job_dir, 'wcs')
    with pytest.raises(FileNotFoundError, match='not solved'):
        outputs.objects_in_field(job_dir)


def test_failed_job(tmp_path):
    (tmp_path / 'wcs.fits').write_bytes(b'stale')    # must not count as a solution
    result = run_job(tmp_path, sources=_random_sources(40, 1), width=W, height=H,
                          args=ORION_HINTS, timeout=30)
    assert result['status'] == 'failure' and result['calibration'] is None
    assert 'no solution' in result['error'] and not result['timed_out']
    assert [a['solved'] for a in result['attempts']] == [False]
    with pytest.raises(FileNotFoundError, match='not solved'):
        outputs.result_file(tmp_path, 'wcs')
    for kind in ('new_fits', 'annotated', 'image_rd'):
        with pytest.raises(FileNotFoundError):
            outputs.result_file(tmp_path, kind)
    with pytest.raises(FileNotFoundError, match='not solved'):
        outputs.annotations(tmp_path)
    assert outputs.result_file(tmp_path, 'axy').is_file()
    assert job_files.read_result(tmp_path / 'elsewhere') is None


def test_run_job_raises_when_astrometry_net_is_missing(tmp_path):
    with pytest.raises(LocalSolverNotFoundError):
        run_job(tmp_path / 'job', sources=_random_sources(10, 1), width=W, height=H,
                     args={}, index_dir=tmp_path)


def test_relative_job_directory(orion, tmp_path, monkeypatch):
    # The engine runs in the job directory: its config path must not be relative to
    # where the caller is (it was: exit 255, reported as 'no solution was found').
    _, _, field = orion
    stars = field.source_list()
    monkeypatch.chdir(tmp_path)
    result = run_job('job', sources={'x': stars['x'], 'y': stars['y']}, width=W, height=H,
                          args=ORION_HINTS, timeout=30)
    assert result['status'] == 'success', result['error']
    assert (tmp_path / 'job' / 'wcs.fits').is_file()
    outcome = run_engine('job/job.axy', 'job', timeout=30)
    assert outcome.solved and outcome.returncode == 0


def test_an_engine_failure_is_not_reported_as_no_solution(tmp_path):
    (tmp_path / 'index').mkdir()
    (tmp_path / 'index' / 'index-broken.fits').write_text('not an index file')
    result = pipeline.solve(sources=_random_sources(30, 4), width=W, height=H,
                            settings=SCALE_10, index_dir=tmp_path / 'index', timeout=10)
    assert not result.solved
    assert 'no solution was found' not in result.error


# -- pipeline.solve ----------------------------------------------------------------------------
def test_solve_an_image_in_a_temporary_directory(pleiades, tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    result = pipeline.solve(pleiades.data, settings=SCALE_12, timeout=30)
    assert result.solved and result.error is None and not result.timed_out
    assert list(tmp_path.iterdir()) == []            # the work directory is gone
    assert result.work_dir is None
    assert set(result.files) >= {'job.axy', 'log', 'wcs.fits', 'corr.fits', 'rdls.fits'}
    header = fits.Header.fromstring(result.files['wcs.fits'].decode('ascii').split('END' + ' ' * 77)[0]
                                    + 'END' + ' ' * 77)
    assert header['CTYPE1'] == result.header()['CTYPE1']     # the refit is in the file too
    assert header['CTYPE1'].startswith('RA---TAN')
    assert wcs_rms_error(pleiades.wcs, result.header(), SHAPE) < 0.1
    cal = result.calibration
    assert cal['parity'] == 1.0                       # a mirrored field
    assert cal['pixscale'] == pytest.approx(12.0, rel=1e-3)
    assert _separation_arcsec(cal['ra'], cal['dec'], 56.75, 24.12) < 3
    assert (result.width, result.height) == (700, 600)
    assert len(result.sources['x']) == len(result.sources['flux']) == result.n_sources >= 20
    assert set(result.timings) >= {'extract', 'engine', 'wcs'}
    assert result.elapsed >= result.timings['engine']
    record = json.loads(json.dumps(result.to_dict()))
    assert record['solved'] and 'files' not in record and 'sources' not in record
    clone = pickle.loads(pickle.dumps(result))
    assert clone.to_dict() == result.to_dict() and clone.files == result.files
    np.testing.assert_array_equal(clone.sources['x'], result.sources['x'])


def test_solve_keeps_files_in_a_work_dir(pleiades, tmp_path):
    result = pipeline.solve(pleiades.data, settings=SCALE_12, timeout=30, work_dir=tmp_path / 'w')
    assert result.solved and result.files == {} and result.work_dir == str(tmp_path / 'w')
    assert wcs_rms_error(pleiades.wcs, tmp_path / 'w' / 'wcs.fits', SHAPE) < 0.1
    assert 'solved' in (tmp_path / 'w' / 'log').read_text().lower()


def test_hot_pixels_and_cosmic_rays_are_not_used(pleiades):
    result = pipeline.solve(pleiades.data, settings=SCALE_12, timeout=30)
    assert result.solved
    x, y, flag = result.sources['x'], result.sources['y'], result.sources['flag']
    # every clean source away from the edges (stars beyond them leak in) is a true star
    # (or an unresolved pair of them): no hot pixel, no cosmic ray
    inner = (flag == 0) & (x > 8) & (x < SHAPE[1] - 8) & (y > 8) & (y < SHAPE[0] - 8)
    assert inner.sum() > 100
    sx, sy = np.asarray(pleiades.stars['x']) + 1, np.asarray(pleiades.stars['y']) + 1
    dist = np.array([np.min(np.hypot(sx - xi, sy - yi)) for xi, yi in zip(x[inner], y[inner])])
    assert np.max(dist) < 2.0 and np.median(dist) < 0.1
    assert np.percentile(dist, 95) < 0.3


@pytest.mark.slow
def test_radial_distortion_needs_a_third_order_tweak():
    field = render_field(SkyCoord(56.75, 24.12, unit='deg'), pixel_scale=10 * u.arcsec / u.pix,
                         shape=SHAPE, rotation=120 * u.deg, flip=True, sip={'k1': 5e-8},
                         fwhm=2.5, seed=7)
    tan = pipeline.solve(field.data, settings=dict(SCALE_10, tweak_order=0), timeout=30)
    sip3 = pipeline.solve(field.data, settings=dict(SCALE_10, tweak_order=3), timeout=30)
    assert tan.solved and sip3.solved
    assert 'A_ORDER' not in tan.header() and sip3.header()['A_ORDER'] == 3
    assert wcs_rms_error(field.wcs, tan.header(), SHAPE) > 0.3
    assert wcs_rms_error(field.wcs, sip3.header(), SHAPE) < 0.05


@pytest.mark.slow
def test_solve_a_png_row_0_is_the_top(tmp_path):
    pil = pytest.importorskip('PIL.Image')
    field = render_field(SkyCoord(150.1, 2.2, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                         shape=SHAPE, rotation=-50 * u.deg, fwhm=2.5, seed=5, background=50.0)
    grey = np.clip((field.data - 30.0) / 400.0 * 255.0, 0, 255).astype(np.uint8)
    path = tmp_path / 'field.png'
    pil.fromarray(grey).save(path)
    job_dir = tmp_path / 'job'
    result = run_job(job_dir, image=path, args=SCALE_12, timeout=30)
    assert result['status'] == 'success', result['error']
    # row 0 of the picture is solve-field's y = 1: the WCS is the truth, unflipped
    assert wcs_rms_error(field.wcs, job_dir / 'wcs.fits', SHAPE) < 0.1
    # and nova reports the orientation of pictures flipped: (180 - o) mod 360
    assert result['calibration']['orientation'] == pytest.approx((180 - -50) % 360, abs=0.05)
    assert result['calibration']['parity'] == -1.0
    assert result['input'] == 'field.png'
    # new_fits of a picture: its grey levels, row 0 first, with the solution
    with fits.open(outputs.result_file(job_dir, 'new_fits')) as hdul:
        np.testing.assert_array_equal(hdul[0].data, grey)
        assert wcs_rms_error(field.wcs, hdul[0].header, SHAPE) < 0.1
    png = outputs.result_file(job_dir, 'annotated').read_bytes()
    assert png[:8] == PNG_MAGIC and int.from_bytes(png[16:20], 'big') == SHAPE[1]


def test_solve_the_hdu_asked_for(tmp_path, pleiades):
    path = tmp_path / 'two.fits'
    noise = np.random.default_rng(0).normal(100.0, 5.0, SHAPE).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(noise), fits.ImageHDU(pleiades.data, name='SCI')]).writeto(path)
    assert not pipeline.solve(path, settings=SCALE_12, timeout=30).solved   # the noise
    result = pipeline.solve(path, settings=SCALE_12, timeout=30, hdu='SCI')
    assert result.solved and wcs_rms_error(pleiades.wcs, result.header(), SHAPE) < 0.1


@pytest.mark.slow
def test_input_names_in_the_job_directory(tmp_path, pleiades):
    # an input already in the job directory stays where it is
    job_dir = tmp_path / 'job'
    job_dir.mkdir()
    inside = pleiades.writeto(job_dir / 'upload.fits', truth='none')
    result = run_job(job_dir, image=inside, args=SCALE_12, timeout=30,
                          input_name='upload.fits')
    assert result['status'] == 'success'
    assert result['input'] == result['original_filename'] == 'upload.fits'
    # an input named like one of the job's own files does not replace it
    other = tmp_path / 'other'
    outside = pleiades.writeto(tmp_path / 'wcs.fits', truth='none')
    result = run_job(other, image=outside, args=SCALE_12, timeout=30)
    assert result['status'] == 'success' and result['input'] == 'input-wcs.fits'
    assert fits.getheader(other / 'wcs.fits')['NAXIS'] == 0           # still the solution
    assert (other / 'input-wcs.fits').read_bytes() == outside.read_bytes()


@pytest.mark.slow
def test_solve_with_right_header_hints(tmp_path):
    field = render_field(SkyCoord(*CENTER, unit='deg'), pixel_scale=10 * u.arcsec / u.pix,
                         shape=SHAPE, rotation=30 * u.deg, fwhm=2.5, seed=1)
    path = field.writeto(tmp_path / 'f.fits', truth='extension')   # OBJCTRA, RA, PIXSCALE cards
    img = open_image(path)
    hints = header_hints(img.header, img.shape, img.wcs())
    assert hints.sources == ['PIXSCALE', 'OBJCTRA/OBJCTDEC']
    result = pipeline.solve(img, settings={}, hints=hints.to_dict(), timeout=30)   # a dict too
    assert result.solved
    assert [a['hints'] for a in result.attempts] == [['center_ra', 'scale_lower']]
    assert result.hints == ['PIXSCALE', 'OBJCTRA/OBJCTDEC']
    assert wcs_rms_error(field.wcs, result.header(), SHAPE) < 0.1
    # the first .axy searched around the header's pointing, at its scale
    axy = pipeline.solve(img, settings={}, hints=hints, timeout=30, work_dir=tmp_path / 'w')
    header = fits.getheader(tmp_path / 'w' / 'job.axy')
    assert header['ANERA'] == pytest.approx(hints.position['center_ra'])
    assert header['ANAPPL1'] == pytest.approx(9.0) and axy.solved


@pytest.mark.slow
def test_wrong_header_pointing_falls_back(wrong_pointing):
    field, hints, result = wrong_pointing
    assert hints.sources == ['PIXSCALE', 'OBJCTRA/OBJCTDEC']
    assert abs(hints.position['center_ra'] - CENTER[0] - 40) < 0.01
    assert result.solved, result.error
    assert [a['hints'] for a in result.attempts] == [['center_ra', 'scale_lower'],
                                                    ['scale_lower']]
    assert [a['solved'] for a in result.attempts] == [False, True]
    assert not result.timed_out and result.elapsed < 10
    assert wcs_rms_error(field.wcs, result.header(), SHAPE) < 0.1


@pytest.mark.slow
def test_hints_name_only_the_cards_of_the_solving_attempt(wrong_pointing):
    _, _, result = wrong_pointing
    assert result.solved
    assert result.hints == ['PIXSCALE']


def test_user_settings_win_over_hints(orion):
    _, _, field = orion
    stars = field.source_list()
    wrong = SolveHints(position={'center_ra': 200.0, 'center_dec': 60.0, 'radius': 1.0},
                       scale={'scale_units': 'arcsecperpix', 'scale_lower': 1.0,
                              'scale_upper': 2.0}, position_source='RA/DEC',
                       scale_source='SECPIX')
    result = pipeline.solve(sources={'x': stars['x'], 'y': stars['y']}, width=W, height=H,
                            settings=ORION_HINTS, hints=wrong, timeout=30)
    assert result.solved and len(result.attempts) == 1
    assert result.attempts[0]['hints'] == [] and result.hints == []


def test_solve_a_source_list_sorts_by_flux(orion, tmp_path):
    _, _, field = orion
    stars = field.source_list()
    rng = np.random.default_rng(9)
    order = rng.permutation(len(stars))          # shuffled, with fluxes: sorted again
    result = pipeline.solve(sources={'x': np.asarray(stars['x'])[order],
                                     'y': np.asarray(stars['y'])[order],
                                     'flux': np.asarray(stars['flux'])[order]},
                            width=W, height=H, settings=SCALE_10, timeout=30,
                            work_dir=tmp_path)
    assert result.solved and result.sources == {}
    data = fits.getdata(tmp_path / 'job.axy')
    assert data.columns.names == ['X', 'Y', 'FLUX']
    assert data['FLUX'][0] == np.max(stars['flux'])
    assert wcs_rms_error(field.wcs, tmp_path / 'wcs.fits', (H, W)) < 0.05
    # an astropy Table with a flux column is taken too
    table = stars[order]
    assert pipeline.solve(sources=table, width=W, height=H, settings=SCALE_10, timeout=30).solved


def test_solve_too_few_sources():
    result = pipeline.solve(sources={'x': [10.0, 20.0, 30.0], 'y': [5.0, 50.0, 80.0]},
                            width=100, height=100, settings=SCALE_10, timeout=30)
    assert not result.solved and result.n_sources == 3 and result.attempts == []
    assert result.error.startswith('only 3 sources were found')
    blank = np.random.default_rng(0).normal(100.0, 1.0, (100, 100)).astype(np.float32)
    result = pipeline.solve(blank, settings=SCALE_10, timeout=30)
    assert not result.solved and result.n_sources < 5 and 'detect_threshold' in result.error


@pytest.mark.slow
def test_solve_time_limit_stops_the_engine(tmp_path):
    pytest.importorskip('psutil')
    work = tmp_path.resolve()
    with _Watcher(work) as watcher:
        result = pipeline.solve(sources=_random_sources(300, 2), width=W, height=H, settings={},
                                timeout=1.5, work_dir=work)
    assert not result.solved and result.timed_out
    assert result.error.startswith('the time limit (1.5 s) stopped the search of any pixel scale')
    assert result.attempts[-1]['timed_out'] and result.elapsed < 1.5 + 2.0
    assert 'astrometry-engine' in watcher.seen and _processes_in(work) == []
    assert 'stopped after the time limit' in (work / 'log').read_text()


def test_solve_refuses_bad_input(tmp_path):
    (tmp_path / 'notes.txt').write_text('not an image')
    with pytest.raises(InvalidInputError, match='image: notes.txt'):
        pipeline.solve(tmp_path / 'notes.txt', timeout=10)
    with pytest.raises(InvalidInputError, match='not both'):
        pipeline.solve(np.zeros((50, 50)), sources=_random_sources(10, 1), timeout=10)
    with pytest.raises(InvalidInputError, match='not both'):
        pipeline.solve(timeout=10)
    with pytest.raises(InvalidInputError, match='width and height'):
        pipeline.solve(sources=_random_sources(10, 1), timeout=10)
    with pytest.raises(LocalSolverNotFoundError):
        pipeline.solve(sources=_random_sources(10, 1), width=W, height=H, index_dir=tmp_path)


@pytest.mark.slow
def test_solve_in_a_process_pool(pleiades, orion, tmp_path):
    """`solve`, its arguments (an Image travels as its path) and its result pickle."""
    path = pleiades.writeto(tmp_path / 'p.fits', truth='none')
    img = open_image(path)
    stars = orion[2].source_list()
    sources = {'x': np.asarray(stars['x']), 'y': np.asarray(stars['y'])}
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        from_image = pool.submit(pipeline.solve, img, settings=SCALE_12, timeout=30)
        from_list = pool.submit(pipeline.solve, sources=sources, width=W, height=H,
                                settings=ORION_HINTS, timeout=30)
        image_result, list_result = from_image.result(60), from_list.result(60)
    assert isinstance(image_result, pipeline.SolveResult)
    assert image_result.solved and list_result.solved
    assert wcs_rms_error(pleiades.wcs, image_result.header(), SHAPE) < 0.1
    assert wcs_rms_error(orion[2].wcs, list_result.header(), (H, W)) < 0.05
    assert 'wcs.fits' in image_result.files and 'wcs.fits' in list_result.files
    here = pipeline.solve(img, settings=SCALE_12, timeout=30)
    assert image_result.calibration == pytest.approx(here.calibration)
