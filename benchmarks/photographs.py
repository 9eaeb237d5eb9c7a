"""Photographs: rendered fields made to look like amateur deep-sky pictures.

Each picture is a field of the index's stars (each moved 0.5" and 0.3 mag,
as a real sky differs from its catalogue) with uncatalogued fainter stars,
in colour, with vignetting, a sky gradient, hot pixels and an asinh stretch
to 8 or 16 bits (`astrometry_query.datasets.render_photograph`): a bright
nebula filling the frame (the case that left sep's coarse background with
"only 13 sources"), a galaxy, a globular cluster of 4000 uncatalogued stars,
satellite trails; then one picture in every encoding
(`write_photograph`: JPEG, PNG 8/16-bit, palette, RGBA with transparent
corners, grey 16-bit, 16-bit TIFF, a JPEG stored turned with its EXIF
orientation tag).  1000 x 800 px at 3"/px.  Ours
(``solve_from_image``, local backend) against bare ``solve-field`` (its own
JPEG/PNG conversion), blind and with a scale hint; RMS against the true WCS
of the stored pixels.
"""
import statistics
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import astropy.units as u
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass
from astrometry_query.datasets import PHOTO_ENCODINGS, render_photograph, write_photograph
from astrometry_query.sources import extract_sources

from common import bare_solve_field, fmt, ratio, rms, table

FRAME = dict(pixel_scale=3 * u.arcsec / u.pix, shape=(800, 1000), rotation=25 * u.deg,
             sip={'A_2_0': 2e-7, 'B_0_2': -1.5e-7}, hot_pixels=40)
#: name: (centre, picture options, encoding)
SCENES = {
    'nebula (bright, frame-filling)': ((83.8, -5.4), dict(nebula=400.0, stretch=0.3, trails=1,
                                                          seed=3), 'jpeg'),
    'nebula (moderate)': ((83.8, -5.4), dict(nebula=40.0, trails=1, seed=3), 'jpeg'),
    'galaxy': ((10.7, 41.3), dict(galaxy=30.0, trails=2, seed=3), 'jpeg'),
    'globular cluster': ((250.4, 36.46), dict(cluster=4000, seed=3), 'jpeg'),
    'satellite trails': ((120.0, 15.0), dict(trails=4, seed=5), 'jpeg'),
}
#: The picture every encoding is tried on.
ENCODED = ((56.75, 24.12), dict(nebula=60.0, trails=1, seed=8))
BARE_TIMEOUT = 300


#: The scale hint (arcsec/pixel) of the hinted runs, both solvers.
HINT = (2.5, 3.5)


def _bare(path, work, hinted):
    hints = SimpleNamespace(scale={'scale_lower': HINT[0], 'scale_upper': HINT[1]},
                            position=None) if hinted else None
    try:
        return bare_solve_field(path, work, hints=hints, timeout=BARE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return BARE_TIMEOUT, None


def _ours(client, path, hinted):
    hints = dict(scale_units='arcsecperpix', scale_lower=HINT[0],
                 scale_upper=HINT[1]) if hinted else {}
    t0 = time.perf_counter()
    try:
        header = client.solve_from_image(path, cache=False, verbose=False, solve_timeout=120,
                                         **hints)
    except Exception:       # failed or refused: counted, never hidden
        header = None
    return time.perf_counter() - t0, header


def photographs(work, repeat, say):
    say('\n## Photographs: colour, stretched, nebulae, a cluster, trails, every encoding\n')
    say(__doc__.split('\n\n')[1].replace('\n', ' '))
    folder = Path(work) / 'photographs'
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, (centre, options, encoding) in SCENES.items():
        photo = render_photograph(SkyCoord(*centre, unit='deg'), **FRAME, **options)
        slug = name.split(' ')[0] + str(len(jobs))
        path, truth = write_photograph(photo, folder / f'{slug}{PHOTO_ENCODINGS[encoding]}',
                                       encoding)
        jobs.append((name, encoding, path, truth))
    photo = render_photograph(SkyCoord(*ENCODED[0], unit='deg'), **FRAME, **ENCODED[1])
    for encoding, suffix in PHOTO_ENCODINGS.items():
        path, truth = write_photograph(photo, folder / f'encoded-{encoding}{suffix}', encoding)
        jobs.append(('nebula, Pleiades', encoding, path, truth))
    rows = {False: [], True: []}
    missed, slower = [], []
    with AstrometryNetClass(backend='local') as client:
        client.solve_from_image(jobs[-1][2], cache=False, verbose=False)     # warm the indexes
        for k, (name, encoding, path, truth) in enumerate(jobs):
            shape = truth.pixel_shape[::-1]
            n = len(extract_sources(path))
            for hinted in (False, True):
                times, header = [], None
                for _ in range(repeat):
                    seconds, header = _ours(client, path, hinted)
                    times.append(seconds)
                ours_t = statistics.median(times)
                bare_t, bare = _bare(path, folder / f'bare-{k}-{hinted}', hinted)
                ours_e, bare_e = rms(truth, header, shape), rms(truth, bare, shape)
                label = f'{name} ({encoding}{", scale hint" if hinted else ""})'
                if bare is not None and header is None:
                    missed.append(label)
                if bare is not None and header is not None and ours_t >= bare_t:
                    slower.append(label)
                rows[hinted].append([name, encoding, n, fmt(ours_e, '.3f'), f'{ours_t:.1f}',
                                     fmt(bare_e, '.3f'), f'{bare_t:.1f}' + (
                                         '' if bare is not None else ' (gave up)'
                                         if bare_t >= BARE_TIMEOUT else ''),
                                     ratio(bare_t, ours_t)])
                print(label, rows[hinted][-1], flush=True)
    say(f'\nOurs: median of {repeat} runs; bare solve-field: one run, given up after '
        f'{BARE_TIMEOUT} s.  RMS in pixels against the true WCS ("failed": no solution).')
    header = ['picture', 'encoding', 'sources', 'ours RMS', 'ours s', 'bare RMS', 'bare s',
              'bare / ours']
    for hinted in (False, True):
        say('\n' + ('With a scale hint (2.5-3.5"/px), both solvers:' if hinted else
                    'Blind, both solvers:') + '\n')
        say(table(rows[hinted], header))
        solved_ours = sum(r[3] != 'failed' for r in rows[hinted])
        solved_bare = sum(r[5] != 'failed' for r in rows[hinted])
        say(f'\nSolved: ours {solved_ours}/{len(rows[hinted])}, bare solve-field '
            f'{solved_bare}/{len(rows[hinted])}.')
    if not missed and not slower:
        say('\nEvery picture bare solve-field solves, ours solves, faster (blind and hinted).')
    else:
        say('\nExceptions: ' + '; '.join([f'bare solves, ours not: {m}' for m in missed]
                                         + [f'ours slower: {s}' for s in slower]) + '.')
