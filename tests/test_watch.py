"""A watched folder: files taken only once complete, frames already solved left
alone, frames solved with the real solver as a thread writes them (tracked, in
place or beside), a restart solving only what is new, the command stopped by
SIGTERM within seconds with its engines."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query import AstrometryNetClass
from astrometry_query.datasets import render_field, wcs_rms_error
from astrometry_query.exceptions import InvalidInputError
from astrometry_query.watch import JOURNAL_NAME, FolderFeed, already_solved
from real_server import requires_solver

KW = dict(pixel_scale=12 * u.arcsec / u.pix, shape=(300, 400), fwhm=2.8, hot_pixels=3,
          sip={'k1': 2e-8})
HERE = SkyCoord(150.3, 25.1, unit='deg')
SCALE = (10, 14) * u.arcsec / u.pix


def _frames(n, seed=0):
    """A sequence drifting by 0.3 arcmin a frame."""
    return [render_field(SkyCoord(HERE.ra + 0.3 * i * u.arcmin, HERE.dec - 0.1 * i * u.arcmin),
                         rotation=37 * u.deg, seed=seed + i, **KW) for i in range(n)]


def _take_all(feed, seconds):
    """Everything a feed gives within ``seconds``."""
    taken, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = feed.take(wait=0.1)
        if got is not None:
            taken.append(got[1].name)
    return taken


def _fits_bytes(shape=(64, 64)):
    hdu = fits.PrimaryHDU(np.zeros(shape, dtype=np.float32))
    import io
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()


# -- the feed, alone ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('poll', [False, True])
def test_a_file_being_written_is_taken_once_complete(tmp_path, poll):
    """A FITS file written in pieces over 1.5 s, with pauses longer than ``settle``,
    is not taken before its last byte (its header announces the data it lacks)."""
    data = _fits_bytes((256, 256))
    feed = FolderFeed(tmp_path, settle=0.2, poll=poll)
    finished = threading.Event()

    def camera():
        step = len(data) // 5 + 1
        with open(tmp_path / 'slow.fits', 'wb') as f:
            for start in range(0, len(data), step):
                time.sleep(0.3)
                if start + step >= len(data):
                    finished.set()          # (a moment early: never late)
                f.write(data[start:start + step])
                f.flush()
    writer = threading.Thread(target=camera)
    try:
        writer.start()
        got = None
        while got is None and time.monotonic():
            got = feed.take(wait=0.1)
            if finished.is_set() and got is None:
                got = feed.take(wait=3.0)
                break
            assert got is None or finished.is_set(), 'taken before it was complete'
        assert got is not None and got[1].name == 'slow.fits' and finished.is_set()
        assert feed.polling == poll
    finally:
        writer.join()
        feed.close()


@pytest.mark.slow
def test_what_is_taken_and_what_is_left_alone(tmp_path):
    (tmp_path / 'notes.txt').write_text('not an image')
    (tmp_path / '.hidden.fits').write_bytes(_fits_bytes())
    (tmp_path / 'a.fits').write_bytes(_fits_bytes())
    (tmp_path / 'b.fit').write_bytes(_fits_bytes())
    (tmp_path / 'b.wcs').write_bytes(_fits_bytes((1, 1)))       # newer than b.fit: solved
    solved = fits.PrimaryHDU(np.zeros((64, 64), np.float32))
    solved.header['AN_JOBID'] = 12
    solved.writeto(tmp_path / 'c.fits')                             # its WCS written in place
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'd.fits').write_bytes(_fits_bytes())
    (tmp_path / 'truncated.fits').write_bytes(_fits_bytes()[:4000])
    old = time.time() - 60
    os.utime(tmp_path / 'a.fits', (old, old))
    feed = FolderFeed(tmp_path, settle=0.3)
    try:
        assert _take_all(feed, 1.5) == ['a.fits']
        assert sorted(p.name for p in feed.skipped) == ['b.fit', 'c.fits']
        (tmp_path / 'e.fits').write_bytes(_fits_bytes())            # arrives while watched
        assert _take_all(feed, 1.5) == ['e.fits']
    finally:
        feed.close()
    recursive = FolderFeed(tmp_path, settle=0.1, recursive=True, patterns=['d*', 'a.*'])
    try:
        assert sorted(_take_all(recursive, 1.5)) == ['a.fits', 'd.fits']
    finally:
        recursive.close()
    assert already_solved(tmp_path / 'c.fits') and not already_solved(tmp_path / 'a.fits')
    assert already_solved(tmp_path / 'a.fits', output_dir=tmp_path / 'nowhere') is False


@pytest.mark.slow
def test_a_reused_name_is_taken_again_but_not_our_own_writes(tmp_path):
    (tmp_path / 'latest.fits').write_bytes(_fits_bytes())
    feed = FolderFeed(tmp_path, settle=0.1)
    try:
        assert _take_all(feed, 0.8) == ['latest.fits']
        assert _take_all(feed, 0.5) == []
        time.sleep(0.05)
        (tmp_path / 'latest.fits').write_bytes(_fits_bytes((80, 80)))     # the next exposure
        assert _take_all(feed, 1.0) == ['latest.fits']
        header = fits.getheader(tmp_path / 'latest.fits')
        header['AN_JOBID'] = 3                                              # as write_wcs does
        fits.PrimaryHDU(np.zeros((80, 80), np.float32), header).writeto(
            tmp_path / 'latest.fits', overwrite=True)
        assert _take_all(feed, 1.0) == []
    finally:
        feed.close()


def test_arguments_are_checked_before_anything(tmp_path):
    client = AstrometryNetClass(backend='local')
    with pytest.raises(InvalidInputError, match='directory'):
        client.watch(tmp_path / 'missing')
    with pytest.raises(InvalidInputError, match='in_place and output_dir'):
        client.watch(tmp_path, in_place=True, output_dir=tmp_path / 'wcs')
    with pytest.raises(InvalidInputError, match='settle'):
        client.watch(tmp_path, settle=-1)
    with pytest.raises(InvalidInputError, match='patterns'):
        client.watch(tmp_path, patterns=[3])
    with pytest.raises(InvalidInputError, match='stop'):
        client.watch(tmp_path, stop=True)
    with pytest.raises(InvalidInputError, match='recursive'):
        client.watch(tmp_path, recursive='yes')
    with pytest.raises(InvalidInputError, match='max_concurrency'):
        client.watch(tmp_path, max_concurrency=0)
    assert not (tmp_path / 'wcs').exists() and not (tmp_path / JOURNAL_NAME).exists()


# -- the real solver ---------------------------------------------------------------------------
def _camera(folder, frames, every, stop=None, linger=2.0, names=None):
    """Write frames into a folder one by one (each in pieces), then set ``stop``."""
    def run():
        for i, frame in enumerate(frames):
            time.sleep(every)
            name = names[i] if names else f'frame{i:03d}.fits'
            frame.writeto(folder / f'.{name}.part', truth='none')
            data = (folder / f'.{name}.part').read_bytes()
            (folder / f'.{name}.part').unlink()
            with open(folder / name, 'wb') as f:         # written slowly, as a camera does
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                time.sleep(0.4)
                f.write(data[half:])
        if stop is not None:
            time.sleep(linger)
            stop.set()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.slow
@requires_solver
def test_frames_are_solved_as_they_land_and_a_restart_solves_only_new_ones(local, tmp_path):
    frames = _frames(5)
    frames[0].writeto(tmp_path / 'frame000.fits', truth='none')     # there before the watch
    stop = threading.Event()
    camera = _camera(tmp_path, frames[1:4], every=0.8, stop=stop,
                     names=[f'frame{i:03d}.fits' for i in range(1, 4)])
    started = time.monotonic()
    rows = list(local.watch(tmp_path, stop=stop, verbose=False, cache=False, scale=SCALE,
                            settle=0.3))
    camera.join()
    assert time.monotonic() - started < 60
    assert [Path(r['input']).name for r in rows] == [f'frame{i:03d}.fits' for i in range(4)]
    assert all(r['status'] == 'success' for r in rows), [r['error'] for r in rows]
    assert [r['tracked'] for r in rows] == [False, True, True, True]
    for row, frame in zip(rows, frames):
        assert row['wcs_file'] == str(Path(row['input']).with_suffix('.wcs'))
        assert wcs_rms_error(frame.wcs, fits.getheader(row['wcs_file']), frame.data.shape) < 0.3
    assert (tmp_path / JOURNAL_NAME).is_file()
    # A restart: the four are left alone, the new one solved.
    frames[4].writeto(tmp_path / 'frame004.fits', truth='none')
    stop = threading.Event()
    again = []
    for row in local.watch(tmp_path, stop=stop, verbose=False, cache=False, scale=SCALE,
                           settle=0.3):
        again.append(row)
        stop.set()
    assert [Path(r['input']).name for r in again] == ['frame004.fits']
    assert again[0]['status'] == 'success' and again[0]['origin'] == 'new'


@pytest.mark.slow
@requires_solver
def test_in_place_writes_each_frame_once_and_keeps_its_cards(local, tmp_path):
    frames = _frames(3, seed=10)
    for i, frame in enumerate(frames):
        path = frame.writeto(tmp_path / f'f{i}.fits', truth='none')
        with fits.open(path, mode='update') as hdul:
            hdul[0].header['OBJECT'] = 'NGC 3190'
            hdul[0].header['FILTER'] = 'L'
    data_before = [fits.getdata(tmp_path / f'f{i}.fits') for i in range(3)]
    stop = threading.Event()
    rows = []
    for row in local.watch(tmp_path, in_place=True, stop=stop, verbose=False, cache=False,
                           scale=SCALE, settle=0.2):
        rows.append(row)
        if len(rows) == 3:
            threading.Timer(2.0, stop.set).start()      # time for our own writes to come back
    assert len(rows) == 3 and all(r['status'] == 'success' for r in rows)
    for i, frame in enumerate(frames):
        path = tmp_path / f'f{i}.fits'
        header = fits.getheader(path)
        assert header['OBJECT'] == 'NGC 3190' and header['FILTER'] == 'L' and 'AN_JOBID' in header
        assert np.array_equal(fits.getdata(path), data_before[i])
        assert wcs_rms_error(frame.wcs, header, frame.data.shape) < 0.3
    assert not list(tmp_path.glob('*.wcs'))


@pytest.mark.slow
@requires_solver
def test_output_dir_and_a_frame_that_fails_is_not_searched_again(local, tmp_path):
    frames = _frames(2, seed=20)
    frames[0].writeto(tmp_path / 'good.fits', truth='none')
    rng = np.random.default_rng(1)
    fits.PrimaryHDU(rng.normal(100, 5, (300, 400)).astype(np.float32)).writeto(
        tmp_path / 'blank.fits')
    out = tmp_path / 'wcs'
    stop = threading.Event()
    rows = []
    for row in local.watch(tmp_path, output_dir=out, stop=stop, verbose=False, cache=False,
                           scale=SCALE, settle=0.2, track=False):
        rows.append(row)
        if len(rows) == 2:
            stop.set()
    by_name = {Path(r['input']).name: r for r in rows}
    assert by_name['good.fits']['status'] == 'success'
    assert by_name['good.fits']['wcs_file'] == str(out / 'good.wcs') and (out / 'good.wcs').is_file()
    assert by_name['blank.fits']['status'] == 'failure'
    assert not (tmp_path / 'good.wcs').exists()
    stop = threading.Event()
    again = []
    for row in local.watch(tmp_path, output_dir=out, stop=stop, verbose=False, cache=False,
                           scale=SCALE, settle=0.2, track=False):
        again.append(row)
        stop.set()
    assert [Path(r['input']).name for r in again] == ['blank.fits']
    assert again[0]['origin'] == 'journal' and 'not searched again' in again[0]['error']


@pytest.mark.slow
@requires_solver
def test_a_folder_watched_through_a_nova_server(open_nova_server, tmp_path):
    """The nova backend (our own server on loopback): frames uploaded as they
    land, each WCS beside its frame; no client-side tracking there."""
    frames = _frames(2, seed=40)
    frames[0].writeto(tmp_path / 'n0.fits', truth='none')
    stop = threading.Event()
    camera = _camera(tmp_path, frames[1:], every=0.5, names=['n1.fits'])
    rows = []
    with AstrometryNetClass(server=open_nova_server.url, backend='nova') as client:
        for row in client.watch(tmp_path, stop=stop, verbose=False, cache=False, scale=SCALE,
                                settle=0.3):
            rows.append(row)
            if len(rows) == 2:
                stop.set()
    camera.join()
    assert sorted(Path(r['input']).name for r in rows) == ['n0.fits', 'n1.fits']
    for row in rows:
        frame = frames[int(Path(row['input']).stem[1:])]
        assert row['status'] == 'success' and row['job_id'] is not None
        assert wcs_rms_error(frame.wcs, fits.getheader(row['wcs_file']), frame.data.shape) < 0.3


# -- the command --------------------------------------------------------------------------------
def _command_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'ASTROMETRY_NET_API_KEY'}
    for name in ('cache', 'config'):
        (tmp_path / name / 'astropy').mkdir(parents=True, exist_ok=True)
        env[f'XDG_{name.upper()}_HOME'] = str(tmp_path / name)
    env['PYTHON_KEYRING_BACKEND'] = 'keyring.backends.null.Keyring'
    return env


def _engines_under(pid):
    """The pids of the engines a process started (through its workers)."""
    out = subprocess.run(['ps', '-e', '-o', 'pid=,ppid=,stat=,comm='], capture_output=True,
                         text=True).stdout
    table = [line.split(None, 3) for line in out.splitlines()]
    family, found = {pid}, True
    while found:
        found = False
        for p, parent, stat, comm in table:
            if int(parent) in family and int(p) not in family:
                family.add(int(p))
                found = True
    return {int(p) for p, parent, stat, comm in table
            if int(p) in family and comm.startswith('astrometry-eng') and 'Z' not in stat}


def _alive(pids):
    alive = set()
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as f:
                if f.read().split(') ')[1][0] != 'Z':
                    alive.add(pid)
        except OSError:
            pass
    return alive


@pytest.mark.slow
@requires_solver
def test_the_command_prints_a_line_per_frame_and_stops_on_sigterm(tmp_path):
    folder = tmp_path / 'night'
    folder.mkdir()
    frames = _frames(3, seed=30)
    frames[0].writeto(folder / 'a.fits', truth='none')
    # A field no index can solve, searched blind: the solve runs when SIGTERM comes.
    rng = np.random.default_rng(3)
    stars = np.zeros((600, 600), np.float32) + 100
    yy, xx = np.mgrid[:600, :600]
    for x, y, f in zip(rng.uniform(10, 590, 150), rng.uniform(10, 590, 150),
                       rng.lognormal(8, 1, 150)):
        stars += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.5)
    script = Path(sys.executable).with_name('astrometry-query')
    proc = subprocess.Popen([str(script), 'watch', str(folder), '--json', '--settle', '0.3',
                             '--no-cache', '--timeout', '600'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_command_env(tmp_path), start_new_session=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first['status'] == 'success' and first['wcs'] == str(folder / 'a.wcs')
        frames[1].writeto(folder / 'b.fits', truth='none')
        second = json.loads(proc.stdout.readline())
        assert second['input'] == str(folder / 'b.fits') and second['status'] == 'success'
        fits.PrimaryHDU(stars).writeto(folder / 'nowhere.fits')
        time.sleep(4)                                   # its blind search is running
        engines = _engines_under(proc.pid)
        assert engines
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    time.sleep(0.5)
    assert not _alive(engines)                          # no engine left behind
    assert 'Traceback' not in err
    # Started again, in lines: it waits for nothing but the frame it did not finish.
    proc = subprocess.Popen([str(script), 'watch', str(folder), '--settle', '0.3', '--no-cache',
                             '--scale-low', '10', '--scale-high', '14'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_command_env(tmp_path), start_new_session=True)
    try:
        (folder / 'nowhere.fits').unlink()
        frames[2].writeto(folder / 'c.fits', truth='none')
        line = proc.stdout.readline()
        assert 'c.fits  solved' in line and 'c.wcs' in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0
    assert '1 new frame in' in out and '1 solved' in out
