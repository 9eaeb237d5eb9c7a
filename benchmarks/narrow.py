"""Narrow fields (5-15 arcmin) solved from index files built from a catalogue.

For each target: a synthetic catalogue (a 0.5 degree cone of 4000 stars, as a
Gaia cone of an observatory's target), index files built from it with
`astrometry_query.index.build_index`, and fields rendered from it through a
known WCS.  Ours (the local backend, header hints on) is measured beside bare
``solve-field`` given the same index files (``--config``) and the header's
hints as flags, and beside bare default ``solve-field`` (blind, plots).  Then
the same fields with only the Tycho-2 packages: how long until each says it
cannot solve, and what it says.
"""
import statistics
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import IndexCoverageError, SolveFailedError
from astrometry_query.hints import header_hints
from astrometry_query.images import open_image
from astrometry_query.index import build_index, get_series, planned_files
from astrometry_query.datasets import render_field, synthetic_catalog

from common import bare_solve_field, fmt, ratio, rms, table

#: name: catalogue centre, field centre offset (deg), scale ("/px), shape, rotation, flip, sip
TARGETS = {
    'uma_1as_10am': ((210.80, 54.35), (0.06, -0.05), 1.0, (600, 640), -37.0, True, {'k1': 4e-10}),
    'for_0.6as_6am': ((50.0, -30.0), (-0.04, 0.10), 0.6, (600, 600), 75.0, False, None),
    'aql_1.5as_15am': ((295.0, 8.0), (0.10, 0.03), 1.5, (640, 600), 160.0, False,
                       {'A_2_0': 3e-7, 'B_0_2': -2e-7}),
    'cam_0.8as_9am': ((95.0, 70.0), (0.0, 0.0), 0.8, (700, 700), 250.0, True, None),
}
TYCHO = '/usr/share/astrometry'


def _median(values):
    """Median of the values, None when any run did not solve (shown as a failure)."""
    values = list(values)
    return None if any(v is None for v in values) else statistics.median(values)


#: Each target is rendered with these noise seeds; RMS figures are medians over them
#: (one render's RMS, ~0.01-0.03 px, is within its own noise of another's: three
#: renders were too few to rank two solvers 0.004 px apart).
SEEDS = tuple(range(7, 17))


def _fields(work):
    out = []
    for name, (centre, offset, scale, shape, rot, flip, sip) in TARGETS.items():
        target = SkyCoord(*centre, unit='deg')
        catalog = synthetic_catalog(target, 0.5 * u.deg, 4000, seed=len(out) + 1)
        index_dir = Path(work) / 'narrow' / name
        t0 = time.perf_counter()
        built = build_index(catalog, index_dir, verbose=False, overwrite=True, index_id=9000)
        build_seconds = time.perf_counter() - t0
        here = SkyCoord(centre[0] + offset[0] / np.cos(np.radians(centre[1])),
                        centre[1] + offset[1], unit='deg')
        renders = []
        for seed in SEEDS:
            sf = render_field(here, pixel_scale=scale * u.arcsec / u.pix, shape=shape,
                              rotation=rot * u.deg, flip=flip, sip=sip, catalog=catalog,
                              zeropoint=24.0, fwhm=2.8, hot_pixels=5, cosmic_rays=2, seed=seed)
            path = sf.writeto(index_dir.parent / f'{name}-{seed}.fits', overwrite=True,
                              truth='extension')
            img = open_image(path)
            renders.append(dict(path=path, truth=sf.wcs,
                                hints=header_hints(img.header, img.shape, img.wcs())))
        out.append(dict(name=name, shape=shape, index_dir=index_dir, renders=renders,
                        path=renders[0]['path'], hints=renders[0]['hints'],
                        build=build_seconds, files=len(built)))
    return out


def narrow(work, repeat, say):
    say('\n## Narrow fields from index files built out of a catalogue\n')
    say('Each target: 4000 catalogue stars in a 0.5 deg cone; `build_index` chooses the '
        'scales (0-8).  Ours: the local backend with `conf.index_dir` set to the built files '
        '(header hints on).  Bare hinted: `solve-field --no-plots --config` naming the same '
        'files, with the header\'s scale and position as flags.  Bare default: the same '
        'without flags (blind, plots).  RMS against the true WCS, pixels, median over '
        f'{len(SEEDS)} renders of each field (noise seeds {SEEDS[0]}-{SEEDS[-1]}); seconds '
        'are medians.')
    fields = _fields(work)
    rows = []
    for f in fields:
        ours_t, hint_t = [], []
        errs = {'ours': {}, 'hinted': {}, 'default': {}}
        with conf.set_temp('index_dir', str(f['index_dir'])), \
                AstrometryNetClass(backend='local') as local:
            renders = f['renders']
            for i in range(max(repeat, len(renders))):     # alternate ours and the reference
                r = renders[i % len(renders)]
                t0 = time.perf_counter()
                header = local.solve_from_image(r['path'], verbose=False, cache=False)
                ours_t.append(time.perf_counter() - t0)
                errs['ours'][i % len(renders)] = rms(r['truth'], header, f['shape'])
                t, bare = bare_solve_field(r['path'], Path(work) / f'narrow-bare-{f["name"]}',
                                           hints=r['hints'], index_dir=f['index_dir'])
                hint_t.append(t)
                errs['hinted'][i % len(renders)] = rms(r['truth'], bare, f['shape'])
        default_ts = []
        for i, r in enumerate(f['renders']):
            t, default = bare_solve_field(r['path'], Path(work) / f'narrow-def-{f["name"]}',
                                          index_dir=f['index_dir'], timeout=600)
            default_ts.append(t)
            errs['default'][i] = rms(r['truth'], default, f['shape'])
        ours, hinted, default_t = (statistics.median(v) for v in (ours_t, hint_t, default_ts))
        med = {k: _median(v.values()) for k, v in errs.items()}
        arcmin = max(f['shape']) * f['hints'].scale['scale_upper'] / 1.1 / 60
        rows.append([f['name'], f'{arcmin:.1f}', f'{f["build"]:.2f}', f'{ours:.3f}',
                     f'{hinted:.2f}', f'{hinted / ours:.1f}x', f'{default_t:.2f}',
                     f'{default_t / ours:.1f}x', fmt(med['ours']), fmt(med['hinted']),
                     fmt(med['default']), ratio(med['ours'], med['hinted'])])
    say(table(rows, ['field', "size '", 'build s', 'ours s', 'bare hinted s', 'speed-up',
                     'bare default s', 'speed-up', 'ours RMS', 'hinted RMS', 'default RMS',
                     'ours/hinted']))

    say('\nThe same fields with only the Tycho-2 packages (quads of 22 arcmin and more). '
        'Ours: the header\'s scale is a hint, so it warns at once and searches without it '
        'until `solve_timeout` (30 s here), then raises `IndexCoverageError` with the fix; '
        'given the scale as a setting it raises at once.  Bare: `solve-field --no-plots` '
        'with the header\'s hints as flags.')
    rows = []
    for f in fields:
        scale = f['hints'].scale
        with conf.set_temp('index_dir', TYCHO), AstrometryNetClass(backend='local') as local:
            t0 = time.perf_counter()
            try:
                local.solve_from_image(f['path'], verbose=False, cache=False,
                                       scale_units='arcsecperpix', scale_lower=scale['scale_lower'],
                                       scale_upper=scale['scale_upper'])
                said = 'solved?!'
            except IndexCoverageError as exc:
                said = exc.command
            setting_t = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                local.solve_from_image(f['path'], verbose=False, cache=False, solve_timeout=30)
                hint_said = 'solved?!'
            except IndexCoverageError:
                hint_said = 'IndexCoverageError'
            except SolveFailedError as exc:     # reported, so a regression shows in the table
                hint_said = f'{type(exc).__name__}: {exc}'
            hint_t = time.perf_counter() - t0
        bare_t, bare = bare_solve_field(f['path'], Path(work) / f'narrow-tycho-{f["name"]}',
                                        hints=f['hints'], index_dir=TYCHO)
        rows.append([f['name'], f'{setting_t:.3f}', f'{hint_t:.1f}', hint_said, f'{bare_t:.2f}',
                     'solved?!' if bare is not None else 'did not solve (no reason given)',
                     said])
    say(table(rows, ['field', 'ours, scale setting s', 'ours, header hint s', 'header hint raised', 'bare s',
                     'bare says', 'ours says (the command of the fix)']))

    lite = get_series('5200')
    around = planned_files('5200', '1-4', around=SkyCoord(210.8, 54.35, unit='deg'),
                           radius=2 * u.deg)
    near = sum(p['estimate'] for p in around)
    whole = lite.size(range(1, 5))
    say(f'\nFetching series 5200 scales 1-4 for 10 arcmin fields: {len(around)} tiles within '
        f'2 deg of M101, about {near / 1e6:.0f} MB, against {whole / 1e9:.1f} GB for the whole '
        f'sky ({whole / near:.0f}x less); the whole LITE series is {lite.size() / 1e9:.1f} GB.')
