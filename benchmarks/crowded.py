"""Crowded fields: a star cluster that no index holds, in front of the index's stars.

Each field is 1.2 degrees (2048 x 2048 px at 2.1"/px); its cluster
(`astrometry_query.datasets.cluster_catalog`) is brighter than most field
stars, so that the brightest sources of the image are the cluster's; the
index stars are drawn everywhere, each moved by 0.5" RMS
(`render_crowded_field`).  An open cluster (Plummer profile, 11,000 stars,
9' scale radius) and a globular one (King profile, 30,000 stars, 2' core:
the core blends into one glow).  Ours: ``AstrometryNet(backend='local')
.solve_from_image`` with the header's hints, and blind (``header_hints=False``);
the same with the selection of old (no crowd thinning: the brightest 1000
sources over solve-field's 10 boxes); bare ``solve-field`` given the same
hints as flags, and bare default (blind), each with ``--cpulimit``.
"""
import math
import os
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from astrometry_query import AstrometryNetClass
from astrometry_query.datasets import cluster_catalog, render_crowded_field
from astrometry_query.exceptions import SolveFailedError, SolveTimeoutError
from astrometry_query.hints import header_hints
from astrometry_query.images import open_image
from astrometry_query.local import selection
from astrometry_query.sources import extract_sources

from common import fmt, ratio, rms, table

#: Seconds given to every search that may not end (ours of old, bare solve-field).
LIMIT = 120
#: name: centre, cluster (n, profile, core', tidal', magnitudes), render options
FIELDS = {
    'open cluster (Mon)': ((100.0, 5.0), (11000, 'plummer', 9.0, 22.0, (7.5, 12.0)),
                           dict(rotation=30 * u.deg, fwhm=3.0, hot_pixels=10, cosmic_rays=3,
                                seed=3)),
    'globular (Sgr)': ((279.1, -23.9), (30000, 'king', 2.0, 25.0, (7.0, 12.5)),
                       dict(rotation=-20 * u.deg, fwhm=3.5, zeropoint=21.0, hot_pixels=20,
                            cosmic_rays=5, seed=5)),
}


def _render(name, folder):
    (ra, dec), (n, profile, core, tidal, mags), options = FIELDS[name]
    centre = SkyCoord(ra, dec, unit='deg')
    cluster = cluster_catalog(centre, n, core_radius=core * u.arcmin,
                              tidal_radius=tidal * u.arcmin, profile=profile, mag_range=mags,
                              seed=len(name))
    field = render_crowded_field(centre, cluster=cluster, pixel_scale=2.1 * u.arcsec / u.pix,
                                 shape=(2048, 2048), saturation=60000.0, **options)
    path = field.writeto(folder / f'{name.split()[0]}.fits', overwrite=True, truth='none')
    return field, path


def _composition(field, path):
    """How many of the brightest sources are the cluster's."""
    from scipy.spatial import cKDTree
    sources = extract_sources(path, max_sources=3000)
    stars = field.stars
    d, i = cKDTree(np.column_stack([stars['x'], stars['y']])).query(
        np.column_stack([np.asarray(sources['x']) - 1, np.asarray(sources['y']) - 1]))
    member = np.asarray(stars['member'])[i] & (d < 2)
    catalogued = ~np.asarray(stars['member'])[i] & (d < 2)
    return (len(sources), int(member[:1000].sum()), int(member.sum()), int(catalogued.sum()),
            int(np.count_nonzero(~np.asarray(stars['member']))))


def _ours(client, path, truth, shape, **kw):
    t0 = time.perf_counter()
    try:
        header = client.solve_from_image(path, verbose=False, cache=False, **kw)
    except (SolveFailedError, SolveTimeoutError):
        header = None
    return time.perf_counter() - t0, rms(truth, header, shape)


def _bare(path, work, hints, limit=LIMIT):
    """solve-field with --cpulimit (its engine is killed with it if it overruns)."""
    work = Path(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = ['solve-field', '--overwrite', '--dir', str(work), '--cpulimit', str(limit)]
    if hints is not None:
        cmd += ['--no-plots', '--scale-units', 'arcsecperpix',
                '--scale-low', str(hints.scale['scale_lower']),
                '--scale-high', str(hints.scale['scale_upper']),
                '--ra', str(hints.position['center_ra']),
                '--dec', str(hints.position['center_dec']),
                '--radius', str(hints.position['radius'])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd + [str(path)], cwd=work, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(limit * 2 + 60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    elapsed = time.perf_counter() - t0
    wcs = work / (Path(path).stem + '.wcs')
    return elapsed, (fits.getheader(wcs) if wcs.is_file() else None)


def _cell(seconds, error):
    return f'{"yes" if error is not None else "no"}', fmt(error, '.3f'), f'{seconds:.1f}'


def crowded(work, repeat, say):
    say('\n## Crowded fields: a cluster no index holds\n')
    say(' '.join(__doc__.split('\n\n')[1].split()))
    folder = Path(work) / 'crowded'
    folder.mkdir(parents=True, exist_ok=True)
    rows, made = [], []
    for name in FIELDS:
        field, path = _render(name, folder)
        made.append((name, field, path))
        n, top, members, catalogued, index = _composition(field, path)
        rows.append([name, n, f'{top}/1000', f'{members}/{n}', f'{catalogued}/{index}'])
    say('\nThe fields (sources: the 3000 brightest sources sep finds)\n')
    say(table(rows, ['field', 'sources', 'cluster in brightest 1000', 'cluster in all',
                     'index stars found / drawn']))
    rows = []
    with AstrometryNetClass(backend='local') as client:
        for name, field, path in made:
            truth, shape = field.wcs, field.data.shape
            img = open_image(path)
            hints = header_hints(img.header, img.shape, img.wcs())
            runs = [_ours(client, path, truth, shape, solve_timeout=LIMIT)
                    for _ in range(repeat)]
            ours_t = statistics.median(t for t, _ in runs)
            ours_e = runs[-1][1]
            blind_t, blind_e = _ours(client, path, truth, shape, solve_timeout=LIMIT,
                                     header_hints=False)
            factor = selection.CROWD_FACTOR
            selection.CROWD_FACTOR = math.inf          # the selection of old
            try:
                old_t, old_e = _ours(client, path, truth, shape, solve_timeout=LIMIT)
            finally:
                selection.CROWD_FACTOR = factor
            bare_t, bare_h = _bare(path, folder / f'bare-{name.split()[0]}', hints)
            blind_bare_t, blind_bare_h = _bare(path, folder / f'bare-blind-{name.split()[0]}',
                                               None)
            bare_e, blind_bare_e = rms(truth, bare_h, shape), rms(truth, blind_bare_h, shape)
            rows.append([name, 'hinted', *_cell(ours_t, ours_e), *_cell(old_t, old_e),
                         *_cell(bare_t, bare_e), ratio(ours_t, bare_t if bare_e else None)])
            rows.append([name, 'blind', *_cell(blind_t, blind_e), '-', '-', '-',
                         *_cell(blind_bare_t, blind_bare_e),
                         ratio(blind_t, blind_bare_t if blind_bare_e else None)])
    say(f'\nSolved, RMS against the true WCS (px) and seconds (ours hinted: median of {repeat}; '
        f'the others once: ours with solve_timeout={LIMIT}, bare with --cpulimit {LIMIT}, '
        f'killed after {2 * LIMIT + 60} s)\n')
    say(table(rows, ['field', 'search', 'ours', 'RMS px', 's', 'ours, old selection',
                     'RMS px', 's', 'bare solve-field', 'RMS px', 's', 'ours / bare s']))
