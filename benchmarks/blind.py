"""Blind solves: no hint at all, ours against bare solve-field on the same image.

Fields of about 1000 x 1000 pixels from the benchmark set (`common.FIELDS`:
2-25"/px, both parities, SIP distortion, hot pixels, cosmic rays), solved
blind: ours in process (`astrometry_query.local.pipeline.solve`, no hints)
and through the client (``solve_from_image(path, header_hints=False,
cache=False)``, the local backend: job directory, result file, the image
kept), against bare default ``solve-field image.fits`` (blind, with its
plots).  Runs alternate ours and the reference; seconds are medians.  The
stage breakdown gives our extraction beside sep alone on the same file
(read, ``sep.Background``, ``sep.extract`` with its defaults: the floor of
any extraction with sep), the refit and the engine.

Then the split search: fields whose single blind search takes seconds
(Tycho-2 index files 07-19, no scale hint), solved with one engine given
every index file (``inparallel``: each quad of the field looked up in all of
them in step) and with the default, where engines that search the index
files apart (one per file) join that engine when it has not solved within
0.2 s, the first to solve stopping the others (``search_workers``); and,
for reference, one engine searching the index files one after the other
(the engine's default without ``inparallel``, as bare solve-field runs it).
"""
import os
import statistics
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.datasets import render_field
from astrometry_query.images import open_image
from astrometry_query.local.pipeline import AXY_FILE, solve
from astrometry_query.local.search import search_workers
from astrometry_query.local.solver import find_installation, run_engine

from common import bare_solve_field, fmt, make_fields, rms, table

#: The ~1000 x 1000 fields of the benchmark set solved blind.
FIELDS = ('ori_6as', 'peg_25as_sip_flip', 'cnc_2as', 'vir_18as_flip_k1', 'and_3as')
#: Fields whose blind search takes the single engine seconds: centre, "/px, rotation.
HARD = {'ori_8as': ((83.8, -5.4), 8.0, 30.0), 'cnc_2as_b': ((120.0, 15.0), 2.0, 30.0),
        'per_2as': ((50.0, 45.0), 2.0, 40.0)}
#: A bare solve-field run under this many seconds is repeated like ours.
_SHORT = 10.0


def _sep(path, *, centroids=False, fwhm=3.0, keep=1300):
    """Seconds of sep's own extraction of the file: read, background, extract
    (the floor of any extraction with sep); with ``centroids``, also the
    windowed centroids sep gives (``flux_radius`` sizing each window,
    ``winpos``) on its brightest sources: what our extraction costs when
    built from sep's own calls, as it was."""
    import sep
    t0 = time.perf_counter()
    img = open_image(path)
    data = np.ascontiguousarray(img.rows(0, img.shape[0]), dtype=np.float32)
    bkg = sep.Background(data)
    bkg.subfrom(data)
    objects = sep.extract(data, 5.0, err=bkg.globalrms, minarea=3)
    if centroids:
        objects = objects[np.argsort(-objects['flux'])[:keep]]
        x, y = objects['x'], objects['y']
        half, _ = sep.flux_radius(data, x, y, np.full(len(x), 2.0 * fwhm), 0.5, subpix=5)
        sigma = 2.0 / 2.3548 * np.where(np.isfinite(half) & (half > 0.3), half, fwhm / 2.0)
        sep.winpos(data, x, y, sigma, subpix=0)
    return time.perf_counter() - t0


def _engine_only(path):
    """The same blind solve with the refit step left out: the engine's own WCS."""
    from astrometry_query.local import pipeline
    kept = pipeline._refine
    pipeline._refine = lambda *args, **kwargs: None
    try:
        return solve(path)
    finally:
        pipeline._refine = kept


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _blind_fields(work, repeat, say):
    fields = make_fields(Path(work) / 'fields', FIELDS)
    rows, stages, refits = [], [], []
    with AstrometryNetClass(backend='local') as client:
        for f in fields:
            solve(f.path)     # the index files' pages in memory, as for the next solves
            t = {'pipe': [], 'client': [], 'bare': [], 'sep': [], 'sepwin': [], 'extract': [],
                 'engine': [], 'refit': []}
            errs = {'pipe': [], 'client': [], 'bare': [], 'engine': []}
            kept = []
            for i in range(repeat):      # alternated: the machine is shared
                r = solve(f.path)
                t['pipe'].append(r.elapsed)
                errs['pipe'].append(rms(f.truth, r.header(), f.shape))
                for stage in ('extract', 'engine', 'refit'):
                    t[stage].append(r.timings.get(stage))
                kept.append(r.refit is not None)
                t['sep'].append(_sep(f.path))
                t['sepwin'].append(_sep(f.path, centroids=True))
                errs['engine'].append(rms(f.truth, _engine_only(f.path).header(), f.shape))
                t0 = time.perf_counter()
                header = client.solve_from_image(f.path, verbose=False, cache=False,
                                                 header_hints=False)
                t['client'].append(time.perf_counter() - t0)
                errs['client'].append(rms(f.truth, header, f.shape))
                if i == 0 or t['bare'][0] < _SHORT:
                    seconds, bare = bare_solve_field(f.path, Path(work) / f'blind-bare-{f.name}',
                                                     timeout=900)
                    t['bare'].append(seconds)
                    errs['bare'].append(rms(f.truth, bare, f.shape))
            m = {k: _median(v) for k, v in t.items()}
            e = {k: _median(v) for k, v in errs.items()}
            rows.append([f.name, f'{f.shape[1]}x{f.shape[0]}', f'{m["pipe"]:.3f}',
                         f'{m["client"]:.3f}', f'{m["bare"]:.2f}',
                         f'{m["bare"] / m["pipe"]:.1f}x', f'{m["bare"] / m["client"]:.1f}x',
                         fmt(e['pipe']), fmt(e['client']), fmt(e['bare'])])
            stages.append([f.name, f'{m["extract"]:.3f}', f'{m["sep"]:.3f}',
                           f'{m["extract"] / m["sep"]:.2f}x', f'{m["sepwin"]:.3f}',
                           f'{m["extract"] / m["sepwin"]:.2f}x', f'{m["engine"]:.3f}',
                           f'{m["refit"]:.3f}', f'{m["pipe"] - m["extract"] - m["engine"]:.3f}'])
            refits.append([f.name, f'{sum(kept)} of {len(kept)}', fmt(e['engine']),
                           fmt(e['pipe']), fmt(e['bare'])])
    say(table(rows, ['field', 'pixels', 'ours in process s', 'ours client s', 'bare default s',
                     'speed-up', 'speed-up client', 'ours RMS px', 'client RMS px',
                     'bare RMS px']))
    say('\nWhere our in-process time goes (seconds, medians): extraction beside sep alone on '
        'the same file (background and detection: no centroids) and beside sep with the '
        'windowed centroids it offers (``flux_radius`` sizing each window, ``winpos``, on its '
        '1300 brightest sources, as our extraction was built before), the engine (all its '
        'runs), the refit, and the rest (the refit included: the .axy, the WCS read and '
        'written).')
    say(table(stages, ['field', 'extraction', 'sep alone', 'ours/sep', 'sep + centroids',
                       'ours/(sep + centroids)', 'engine', 'refit',
                       'all but extraction and engine']))
    say('\nThe refit, kept only where it improves the solution (judged per degree of freedom '
        'on the matched stars): how often it was kept, and the RMS against the true WCS of '
        'the engine\'s own solution (the same solve without the refit step) and of ours.')
    say(table(refits, ['field', 'refit kept', 'engine alone RMS px', 'ours RMS px',
                       'bare RMS px']))


def _one_engine_in_turn(path, work):
    """Seconds of one engine searching the index files one after the other."""
    r = solve(path, work_dir=work, search_workers=1)        # writes the .axy
    if not r.solved:
        return None
    outcome = run_engine(Path(work) / AXY_FILE, work, timeout=300,
                         installation=find_installation(), inparallel=False)
    return outcome.elapsed if outcome.solved else None


def _split(work, repeat, say):
    folder = Path(work) / 'blind-hard'
    folder.mkdir(parents=True, exist_ok=True)
    n = search_workers(None, len(find_installation().index_files))
    rows = []
    for name, (centre, scale, rot) in HARD.items():
        sf = render_field(SkyCoord(*centre, unit='deg'), pixel_scale=scale * u.arcsec / u.pix,
                          shape=(1000, 1000), rotation=rot * u.deg, fwhm=3.0, hot_pixels=15,
                          cosmic_rays=3, seed=3 if name != 'per_2as' else 5)
        path = sf.writeto(folder / f'{name}.fits', overwrite=True, truth='extension')
        solve(path, search_workers=1)
        t, engine, errs, engines = {}, {}, {}, []
        for _ in range(repeat):
            for workers in (1, None):           # alternated
                r = solve(path, search_workers=workers)
                t.setdefault(workers, []).append(r.elapsed if r.solved else None)
                engine.setdefault(workers, []).append(r.timings.get('engine'))
                errs.setdefault(workers, []).append(rms(sf.wcs, r.header(), (1000, 1000)))
                if workers is None:
                    engines.append(r.attempts[-1].get('engines', 1))
        in_turn = _one_engine_in_turn(path, folder / f'{name}-in-turn')
        one, split = _median(t[1]), _median(t[None])
        rows.append([name, f'{scale:g}', fmt(in_turn, '.2f'), fmt(one, '.2f'), fmt(split, '.2f'),
                     f'{one / split:.2f}x' if one and split else 'n/a', str(max(engines)),
                     fmt(_median(engine[1]), '.2f'), fmt(_median(engine[None]), '.2f'),
                     fmt(_median(errs[1])), fmt(_median(errs[None]))])
    say(f'\nWhole solve seconds (medians), the engine\'s share, RMS against the true WCS '
        f'({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; up to '
        f'{n} engines join the first).')
    say(table(rows, ['field', '"/px', 'one engine in turn s', 'one engine s', 'split s',
                     'speed-up', 'engines', 'engine s (one)', 'engine s (split)',
                     'RMS px (one)', 'RMS px (split)']))


def blind(work, repeat, say):
    say('\n## Blind solves: ours against bare solve-field, and the split search\n')
    say(__doc__.split('\n\n')[1].replace('\n', ' '))
    say(f'\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start '
        f'(the machine is shared: figures are medians of alternated runs); '
        f'conf.search_workers = {conf.search_workers} (automatic).\n')
    _blind_fields(work, repeat, say)
    say('\n' + __doc__.split('\n\n')[2].replace('\n', ' '))
    _split(work, repeat, say)
