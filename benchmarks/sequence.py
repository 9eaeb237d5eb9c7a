"""A night's sequence: tracked against independent solves and bare solve-field.

50 frames of one field (1024 x 768 px at 3"/px, SIP distortion, hot pixels,
cosmic rays), as an unguided mount takes them: the pointing drifts 3" a frame
with a periodic error on top, the field turns slowly.  The stars drawn are the
index's, each moved by half an arcsecond RMS and re-coloured (another band than
the catalogue's), so the catalogue fits them no better than a real sky.

Per-frame time: the sequence through ``solve_many(track=True)`` (each frame
follows the one before) against ``solve_many`` of the same frames one by one
(each searched, with the header's pointing and scale hints), one frame at a
time and on every core, the runs alternated; against bare ``solve-field``
given the same hints as flags.  Then frames under cloud (3 to 6 stars left,
the cloud thicker on one side), each after a clear frame: solved and how well,
tracked and not, and by bare solve-field.
"""
import statistics
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass
from astrometry_query.datasets import index_stars, jitter_catalog, render_field
from astrometry_query.hints import header_hints
from astrometry_query.sources import extract_sources

from common import bare_solve_field, fmt, ratio, rms, table

CENTRE = SkyCoord(83.8, -5.4, unit='deg')
FRAME = dict(pixel_scale=3 * u.arcsec / u.pix, shape=(768, 1024), fwhm=3.2, hot_pixels=25,
             cosmic_rays=6, sip={'A_2_0': 2e-7, 'B_0_2': -1.5e-7, 'k1': 4e-10}, read_noise=8.0)
#: Cloud (magnitudes lost) of the cloudy frames: 3 to 6 stars are left.
CLOUDS = (4.4, 4.6, 4.8, 5.0, 5.2, 5.4)


def _catalog(seed=5):
    """The index's stars around the field, moved and re-coloured (a real sky)."""
    return jitter_catalog(index_stars(CENTRE, 1.0 * u.deg), 0.5, np.random.default_rng(seed),
                          mag_jitter=0.3)


def _pointing(i):
    """Frame i of an unguided night: a drift, a periodic error, a slow turn."""
    east = 3.0 * i + 8.0 * np.sin(2 * np.pi * i / 12)        # arcsec
    north = -1.5 * i
    at = SkyCoord(CENTRE.ra + east * u.arcsec / np.cos(CENTRE.dec.radian),
                  CENTRE.dec + north * u.arcsec)
    return at, (12.0 + 0.02 * i) * u.deg


def _render(i, catalog, cloud=0.0, seed=0):
    at, rotation = _pointing(i)
    nx = FRAME['shape'][1]

    def extinction(x, y):           # thicker to the east
        return cloud - 0.4 + 0.8 * x / nx if cloud else 0.0 * x
    return render_field(at, rotation=rotation, catalog=catalog, extinction=extinction,
                        seed=1000 * seed + i, **FRAME)


def _write(frames, folder):
    folder.mkdir(parents=True, exist_ok=True)
    return [f.writeto(folder / f'frame{i:03d}.fits', truth='none', overwrite=True)
            for i, f in enumerate(frames)]


def _batch(client, paths, track, workers):
    t0 = time.perf_counter()
    table_ = client.solve_many(paths, track=track, cache=False, verbose=False,
                               max_concurrency=workers)
    return time.perf_counter() - t0, table_


def sequence(work, repeat, say, n=50):
    say('\n## A night\'s sequence: tracked frames against independent solves\n')
    say(__doc__.split('\n\n')[1].replace('\n', ' '))
    catalog = _catalog()
    frames = [_render(i, catalog) for i in range(n)]
    paths = _write(frames, Path(work) / 'sequence')
    truths = [f.wcs for f in frames]
    shape = frames[0].data.shape
    times = {}
    errors = {}
    with AstrometryNetClass(backend='local') as client:
        client.solve_from_image(paths[0], cache=False, verbose=False)      # warm the index cache
        for workers, label in ((1, 'one at a time'), (None, 'every core')):
            for _ in range(repeat):
                for track in (True, False):         # alternated: the machine is noisy
                    seconds, result = _batch(client, paths, track, workers)
                    times.setdefault((label, track), []).append(seconds / n)
                    solved = result['status'] == 'success'
                    errors[track] = ([rms(t, h, shape) for t, h in zip(truths, result['header'])]
                                     if solved.all() else None)
                    if track:
                        tracked = int(result['tracked'].sum())
    bare_times, bare_errors = [], []
    for i, (path, truth) in enumerate(zip(paths, truths)):
        hints = header_hints(_hint_header(path), shape)
        seconds, header = bare_solve_field(path, Path(work) / 'sequence-bare' / str(i),
                                           hints=hints)
        bare_times.append(seconds)
        bare_errors.append(rms(truth, header, shape) if header is not None else None)
    rows = []
    bare = statistics.median(bare_times)
    for label in ('one at a time', 'every core'):
        ours_t = statistics.median(times[(label, True)])
        ours_i = statistics.median(times[(label, False)])
        rows.append([label, f'{1000 * ours_t:.0f}', f'{1000 * ours_i:.0f}', ratio(ours_i, ours_t),
                     f'{1000 * bare:.0f}', ratio(bare, ours_t)])
    say(f'\n{n} frames, {repeat} alternated runs each, medians; {tracked} of {n} frames were '
        'tracked (the first is searched).\n')
    say(table(rows, ['frames solved', 'tracked ms/frame', 'independent ms/frame',
                     'independent / tracked', 'bare solve-field ms/frame (one at a time)',
                     'bare / tracked']))
    accuracy = [['tracked', *_spread(errors[True])], ['independent', *_spread(errors[False])],
                ['bare solve-field', *_spread(bare_errors)]]
    say('\nAccuracy over the sequence: RMS against the true WCS (px)\n')
    say(table(accuracy, ['solve', 'solved', 'median', 'max']))
    clouds(work, catalog, say)


def _hint_header(path):
    from astropy.io import fits
    return fits.getheader(path)


def _stars_among(sources, field):
    """How many of the sources are stars drawn (the others: hot pixels, cosmic rays)."""
    sx, sy = np.asarray(field.stars['x']), np.asarray(field.stars['y'])
    if not len(sx):
        return 0
    # extract_sources gives FITS (1-based) pixels, the drawn stars 0-based ones
    return int(sum(np.min(np.hypot(sx - x + 1, sy - y + 1)) < 2
                   for x, y in zip(sources['x'], sources['y'])))


def _spread(errors):
    if errors is None:
        return ['not all', '-', '-']
    got = [e for e in errors if e is not None]
    return [f'{len(got)}/{len(errors)}', fmt(statistics.median(got), '.4f') if got else '-',
            fmt(max(got), '.4f') if got else '-']


def clouds(work, catalog, say):
    """Cloudy frames, each after a clear one: tracked, searched, bare solve-field."""
    folder = Path(work) / 'clouds'
    rows = []
    results = {'tracked': [], 'searched': [], 'bare': []}
    with AstrometryNetClass(backend='local') as client:
        for k, cloud in enumerate(CLOUDS):
            clear, cloudy = _render(2 * k, catalog, seed=7), _render(2 * k + 1, catalog,
                                                                      cloud=cloud, seed=7)
            paths = _write([clear, cloudy], folder / str(k))
            shape = cloudy.data.shape
            sources = extract_sources(paths[1])
            n_stars = _stars_among(sources, cloudy)
            tracked = client.solve_many(paths, track=True, cache=False, verbose=False)[1]
            searched = client.solve_many(paths[1:], cache=False, verbose=False)[0]
            hints = header_hints(_hint_header(paths[1]), shape)
            _, bare = bare_solve_field(paths[1], folder / f'bare-{k}', hints=hints)
            cells = []
            for name, header in (('tracked', tracked['header']), ('searched', searched['header']),
                                 ('bare', bare)):
                error = rms(cloudy.wcs, header, shape) if header is not None else None
                results[name].append(error)
                cells.append('not solved' if error is None else f'{error:.3f}')
            rows.append([f'{cloud:.1f}', f'{len(sources)} ({n_stars} stars)', *cells,
                         'yes' if tracked['tracked'] else 'no'])
    say('\nFrames under cloud (each after a clear frame of the field): RMS against the true '
        'WCS (px)\n')
    say(table(rows, ['cloud (mag)', 'sources found', 'tracked', 'searched (hints)',
                     'bare solve-field (hints)', 'followed']))
    within = {name: sum(e is not None and e <= 0.3 for e in errs)
              for name, errs in results.items()}
    say(f"\nWithin 0.3 px: tracked {within['tracked']}/{len(CLOUDS)}, searched "
        f"{within['searched']}/{len(CLOUDS)}, bare solve-field {within['bare']}/{len(CLOUDS)}.")
