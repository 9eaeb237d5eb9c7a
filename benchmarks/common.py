"""Shared pieces of the benchmarks: test fields, timing, bare solve-field, RSS sampling."""
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query.hints import header_hints
from astrometry_query.images import open_image
from astrometry_query.datasets import render_field, wcs_rms_error

#: Fields at several sky positions, both parities, many rotations, SIP
#: distortion, scales 2-60 arcsec/px, with noise, hot pixels, cosmic rays and
#: saturated stars.  name: centre, scale ("/px), shape, rotation, flip, sip, saturation
FIELDS = {
    'and_3as': ((10.7, 41.3), 3.0, (800, 1000), 15.0, False, None, 40000.0),
    'sco_10as_flip': ((280.5, -40.2), 10.0, (900, 1200), -65.0, True, None, None),
    'cas_11as_radial': ((30.2, 60.3), 11.0, (800, 800), 120.0, False, {'k1': 2e-8}, None),
    'oct_60as': ((200.0, -70.0), 60.0, (900, 900), 100.0, False, None, None),
    'cnc_2as': ((120.0, 15.0), 2.0, (1000, 1100), 200.0, False, None, 30000.0),
    'peg_25as_sip_flip': ((330.0, 5.0), 25.0, (1000, 1000), -30.0, True,
                          {'A_2_0': 2e-6, 'B_0_2': -1.5e-6, 'A_1_1': 1e-6}, None),
    'ori_6as': ((83.8, -5.4), 6.0, (1024, 1024), 5.0, False, None, 50000.0),
    'vir_18as_flip_k1': ((186.0, 12.0), 18.0, (900, 1100), 250.0, True, {'k1': -1.5e-8}, None),
}


@dataclass
class Field:
    name: str
    path: Path
    truth: object
    shape: tuple
    scale: float
    hints: object = field(default=None)


def make_fields(folder, names=None, seed=11):
    """Render the fields (cached on disk) with camera-like headers (no WCS)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (center, scale, shape, rot, flip, sip, sat) in FIELDS.items():
        if names and name not in names:
            continue
        sf = render_field(SkyCoord(*center, unit='deg'), pixel_scale=scale * u.arcsec / u.pix,
                          shape=shape, rotation=rot * u.deg, flip=flip, sip=sip, fwhm=3.0,
                          hot_pixels=15, cosmic_rays=3, saturation=sat, seed=seed)
        path = sf.writeto(folder / f'{name}.fits', overwrite=True, truth='extension')
        img = open_image(path)
        out.append(Field(name, path, sf.wcs, shape, scale,
                         header_hints(img.header, img.shape, img.wcs())))
    return out


def rms(truth, header, shape):
    return None if header is None else wcs_rms_error(truth, header, shape)


def median_time(fn, repeat=3):
    """Median wall time of ``fn()`` and its last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def bare_solve_field(path, work, *, hints=None, timeout=600, index_dir=None):
    """Run Debian's solve-field as a user would: (seconds, WCS header or None).

    ``hints``: a SolveHints whose scale and position are passed as flags;
    None runs the bare default command (blind, with its plots).  ``index_dir``:
    a config file naming that directory is passed with ``--config``.
    """
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = ['solve-field', '--overwrite', '--dir', str(work)]
    if index_dir is not None:
        config = work / 'astrometry.cfg'
        config.write_text(f'add_path {index_dir}\nautoindex\n')
        cmd += ['--config', str(config)]
    if hints is not None:
        cmd += ['--no-plots']
        if hints.scale:
            cmd += ['--scale-units', 'arcsecperpix', '--scale-low', str(hints.scale['scale_lower']),
                    '--scale-high', str(hints.scale['scale_upper'])]
        if hints.position:
            cmd += ['--ra', str(hints.position['center_ra']), '--dec',
                    str(hints.position['center_dec']), '--radius', str(hints.position['radius'])]
    cmd.append(str(path))
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=work)
    elapsed = time.perf_counter() - t0
    wcs = work / (Path(path).stem + '.wcs')
    return elapsed, (fits.getheader(wcs) if wcs.is_file() else None)


def serve_process(data_dir, port, api_key, *, workers=2, extra=(), timeout=120.0):
    """`astrometry-query serve` in its own process (as deployed), once it
    answers on 127.0.0.1:``port``; returns the Popen.  ``api_key`` None: an
    open server (no keys)."""
    import requests
    keys = ('--api-key', api_key) if api_key is not None else ()
    proc = subprocess.Popen([sys.executable, '-m', 'astrometry_query.cli', 'serve', '--port',
                             str(port), '--workers', str(workers), '--data-dir', str(data_dir),
                             *keys, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f'http://127.0.0.1:{port}/', timeout=1)
            return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError('the server did not start')


class TreeRSS:
    """Peak of the summed RSS of a process and all its descendants, sampled
    every ``interval`` seconds in a thread (psutil)."""

    def __init__(self, pid=None, interval=0.005):
        import psutil
        self.process = psutil.Process(pid or os.getpid())
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        import psutil
        total = 0
        try:
            procs = [self.process] + self.process.children(recursive=True)
        except psutil.Error:
            return
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def ratio(ours, reference):
    if ours is None or reference is None or reference == 0:
        return 'n/a'
    return f'{ours / reference:.2f}x'


def fmt(value, spec='.3f'):
    return 'failed' if value is None else format(value, spec)


def table(rows, header):
    """A plain-text table (also valid reStructuredText 'simple table')."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    line = '  '.join('=' * w for w in widths)
    out = [line, '  '.join(str(h).ljust(w) for h, w in zip(header, widths)), line]
    out += ['  '.join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    out.append(line)
    return '\n'.join(out)


def synthetic_4k(path, n_stars=3000, size=4096, seed=1):
    """A 4096x4096 float32 star field (Gaussian stars, FWHM ~3 px) for extraction timing."""
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 5.0, (size, size)).astype(np.float32)
    ys, xs = rng.uniform(10, size - 10, (2, n_stars))
    flux = 10 ** rng.uniform(2.7, 4.7, n_stars)
    yy, xx = np.mgrid[-6:7, -6:7]
    sigma = 1.3
    for x, y, f in zip(xs, ys, flux):
        ix, iy = int(x), int(y)
        data[iy - 6:iy + 7, ix - 6:ix + 7] += (f / (2 * np.pi * sigma ** 2) * np.exp(
            -((xx + ix - x) ** 2 + (yy + iy - y) ** 2) / (2 * sigma ** 2))).astype(np.float32)
    fits.PrimaryHDU(data).writeto(path, overwrite=True)
    return data, xs, ys, flux
