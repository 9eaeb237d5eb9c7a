"""The .axy built in process (astrometry_query.local.axy), checked against what
Debian's ``solve-field --just-augment`` writes for the same options."""
import math
import shlex
import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits

from astrometry_query.local.axy import OUTPUT_FILES, UNIFORM_BOXES, axy_header, uniformize, write_axy
from astrometry_query.settings import scale_bounds

requires_solve_field = pytest.mark.skipif(shutil.which('solve-field') is None,
                                          reason="needs astrometry.net's solve-field")

# Output file names differ by naming only (solve-field: <base>.wcs..., ours: wcs.fits...).
NAME_CARDS = {'ANSOLVED', 'ANRDLS', 'ANWCS', 'ANCORR', 'ANMATCH'}

# (id, solve-field options, nova args, width, height, cpulimit)
CASES = [
    ('full', '--scale-units arcsecperpix --scale-low 5 --scale-high 7 --ra 150 --dec 2 '
             '--radius 3 --parity pos --tweak-order 3 --cpulimit 30 --pixel-error 1.5 '
             '--crpix-center',
     {'scale_units': 'arcsecperpix', 'scale_lower': 5.0, 'scale_upper': 7.0, 'center_ra': 150.0,
      'center_dec': 2.0, 'radius': 3.0, 'parity': 0, 'tweak_order': 3,
      'positional_error': 1.5, 'crpix_center': True}, 600, 400, 30),
    # a portrait field: widths are divided by the image width, not the longer side
    ('degwidth', '--scale-units degwidth --scale-low 0.5 --scale-high 2',
     {'scale_units': 'degwidth', 'scale_lower': 0.5, 'scale_upper': 2.0}, 400, 600, None),
    ('arcminwidth-notweak-neg', '--scale-units arcminwidth --scale-low 30 --scale-high 45 '
                                '--no-tweak --parity neg',
     {'scale_units': 'arcminwidth', 'scale_lower': 30.0, 'scale_upper': 45.0, 'tweak_order': 0,
      'parity': 1}, 600, 400, None),
    ('focalmm', '--scale-units focalmm --scale-low 50 --scale-high 200',
     {'scale_units': 'focalmm', 'scale_lower': 50.0, 'scale_upper': 200.0}, 640, 480, None),
    ('estimate', '--scale-units arcsecperpix --scale-low 4.8 --scale-high 7.2 --cpulimit 5',
     {'scale_units': 'arcsecperpix', 'scale_type': 'ev', 'scale_est': 6.0, 'scale_err': 20.0},
     500, 500, 5),
    ('position-tweak1', '--scale-units arcsecperpix --scale-high 7 --ra 83.8 --dec -5.4 '
                        '--radius 1.5 --tweak-order 1 --parity neg',
     {'scale_units': 'arcsecperpix', 'scale_upper': 7.0, 'center_ra': 83.8, 'center_dec': -5.4,
      'radius': 1.5, 'tweak_order': 1, 'parity': 1}, 300, 200, None),
    ('blind', '', {}, 1000, 800, None),
    # parity 2 ("try both") writes no directive, as solve-field without --parity
    ('both-parities', '--scale-units arcsecperpix --scale-low 1 --scale-high 2',
     {'scale_units': 'arcsecperpix', 'scale_lower': 1.0, 'scale_upper': 2.0, 'parity': 2},
     100, 100, None),
]


def _directives(header):
    return {k: v for k, v in header.items()
            if (k.startswith('AN') or k in ('IMAGEW', 'IMAGEH')) and k not in NAME_CARDS}


@pytest.fixture(scope='module')
def augmented(tmp_path_factory):
    """The directive cards solve-field writes for each case (run all at once)."""
    base = tmp_path_factory.mktemp('augment')
    rng = np.random.default_rng(0)
    procs = {}
    for name, options, _, width, height, _ in CASES:
        work = base / name
        work.mkdir()
        fits.BinTableHDU.from_columns([
            fits.Column('X', 'D', array=rng.uniform(1, width, 20)),
            fits.Column('Y', 'D', array=rng.uniform(1, height, 20))]).writeto(work / 'xy.fits')
        cmd = ['solve-field', '--just-augment', '--tag-all', '--no-plots', '--width', str(width),
               '--height', str(height), *shlex.split(options), '--dir', str(work),
               str(work / 'xy.fits')]
        procs[name] = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)
    out = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, log.decode()
        out[name] = _directives(fits.getheader(base / name / 'xy.axy'))
    return out


@pytest.mark.slow
@requires_solve_field
@pytest.mark.parametrize('name, options, args, width, height, cpulimit', CASES,
                         ids=[c[0] for c in CASES])
def test_axy_header_matches_solve_field(augmented, name, options, args, width, height, cpulimit):
    theirs = augmented[name]
    ours = _directives(axy_header(args, width, height, cpulimit=cpulimit))
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        if isinstance(value, float) or isinstance(ours[key], float):
            # solve-field prints 12 significant digits
            assert ours[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
        else:
            assert ours[key] == value and type(ours[key]) is type(value), key


def test_axy_header_names_the_engine_outputs():
    header = axy_header({}, 100, 100)
    assert header['ANWCS'] == OUTPUT_FILES['wcs'] and header['ANCORR'] == OUTPUT_FILES['corr']
    assert header['ANRDLS'] == OUTPUT_FILES['rdls'] and header['ANSOLVED'] == OUTPUT_FILES['solved']
    other = axy_header({}, 100, 100, outputs={'wcs': 'a', 'corr': 'b', 'rdls': 'c', 'solved': 'd'})
    assert (other['ANWCS'], other['ANCORR'], other['ANRDLS'], other['ANSOLVED']) == tuple('abcd')


def test_axy_header_cpulimit_rounds_up_to_whole_seconds():
    assert 'ANCLIM' not in axy_header({}, 100, 100)
    assert axy_header({}, 100, 100, cpulimit=2.2)['ANCLIM'] == 3
    assert axy_header({}, 100, 100, cpulimit=0.01)['ANCLIM'] == 1
    assert axy_header({}, 100, 100, cpulimit=30)['ANCLIM'] == 30


@pytest.mark.parametrize('position', [
    {'center_ra': 0.0, 'center_dec': 10.0, 'radius': 1.0},   # nova drops a zero
    {'center_ra': 10.0, 'center_dec': 10.0},                 # no radius
    {'center_ra': 10.0, 'center_dec': 10.0, 'radius': 0},
])
def test_axy_header_position_needs_all_three_non_zero(position):
    header = axy_header(position, 100, 100)
    assert not {'ANERA', 'ANEDEC', 'ANERAD'} & set(header)


def test_axy_header_default_tweak_order_is_2():
    header = axy_header({'tweak_order': 2}, 100, 100)
    assert header['ANTWEAK'] is True and header['ANTWEAKO'] == 2
    assert _directives(axy_header({}, 100, 100)) == _directives(header)


# -- scale_bounds ------------------------------------------------------------------------
def test_scale_bounds_units():
    def bounds(units, low, high, width=600, height=400):
        return scale_bounds({'scale_units': units, 'scale_lower': low, 'scale_upper': high},
                            width, height)
    assert bounds('arcsecperpix', 5.0, 7.0) == (5.0, 7.0)
    assert bounds('degwidth', 0.5, 2.0) == (pytest.approx(3.0), pytest.approx(12.0))
    assert bounds('arcminwidth', 30.0, 45.0) == (pytest.approx(3.0), pytest.approx(4.5))
    # the image width, whichever side is longer
    assert bounds('degwidth', 0.5, 2.0, 400, 600) == (pytest.approx(4.5), pytest.approx(18.0))
    # focal length (35 mm equivalent): a longer lens is a smaller scale, so the bounds swap
    low, high = bounds('focalmm', 50.0, 200.0)
    assert low == pytest.approx(math.degrees(math.atan(36 / 400)) * 3600 / 600)
    assert high == pytest.approx(math.degrees(math.atan(36 / 100)) * 3600 / 600)
    assert low < high


def test_scale_bounds_default_units_are_degwidth():
    assert scale_bounds({'scale_lower': 1.0, 'scale_upper': 2.0}, 1000, 10) == \
        (pytest.approx(3.6), pytest.approx(7.2))


def test_scale_bounds_one_sided_and_missing():
    assert scale_bounds({}, 100, 100) == (None, None)
    assert scale_bounds({'scale_units': 'arcsecperpix'}, 100, 100) == (None, None)
    assert scale_bounds({'scale_units': 'arcsecperpix', 'scale_lower': 2.0}, 100, 100) == (2.0, None)
    assert scale_bounds({'scale_units': 'arcsecperpix', 'scale_upper': 2.0}, 100, 100) == (None, 2.0)


def test_scale_bounds_estimate_and_error():
    args = {'scale_units': 'arcsecperpix', 'scale_type': 'ev', 'scale_est': 10.0, 'scale_err': 25}
    assert scale_bounds(args, 100, 100) == (pytest.approx(7.5), pytest.approx(12.5))
    args['scale_units'] = 'arcminwidth'
    assert scale_bounds(args, 600, 100) == (pytest.approx(0.75), pytest.approx(1.25))
    assert scale_bounds({'scale_type': 'ev', 'scale_est': 10.0}, 100, 100) == (None, None)
    # 'ev' ignores scale_lower/scale_upper
    assert scale_bounds({'scale_units': 'arcsecperpix', 'scale_type': 'ev', 'scale_lower': 1,
                         'scale_upper': 2}, 100, 100) == (None, None)


# -- uniformize --------------------------------------------------------------------------
def _box_of(x, y, width, height, boxes=UNIFORM_BOXES):
    nw = max(1, int(round(math.sqrt(boxes * width / height))))
    nh = max(1, int(round(boxes / nw)))
    bx = np.clip(((np.asarray(x) - 0.5) * nw / width).astype(int), 0, nw - 1)
    by = np.clip(((np.asarray(y) - 0.5) * nh / height).astype(int), 0, nh - 1)
    return by * nw + bx, nw * nh


def test_uniformize_spreads_the_first_sources_over_the_field():
    rng = np.random.default_rng(3)
    width, height = 1000, 800
    # the 40 brightest are crowded in the lower left corner, the rest anywhere
    x = np.concatenate([rng.uniform(1, 150, 40), rng.uniform(1, width, 160)])
    y = np.concatenate([rng.uniform(1, 150, 40), rng.uniform(1, height, 160)])
    order = uniformize(x, y, width, height)
    assert sorted(order) == list(range(len(x)))        # a permutation
    box, _ = _box_of(x, y, width, height)
    occupied = len(set(box))
    assert occupied > 4
    first = box[order[:occupied]]
    assert len(set(first)) == occupied                 # one source of every box first
    # round by round, and brightest (= earliest) first within a round
    rank = np.array([np.sum(box[:i] == box[i]) for i in range(len(x))])
    assert np.all(np.diff(rank[order]) >= 0)
    for r in range(rank.max() + 1):
        in_round = order[rank[order] == r]
        assert np.all(np.diff(in_round) > 0)
    # the brightest source of all comes first
    assert order[0] == 0


def test_uniformize_trivial_cases():
    assert len(uniformize([], [], 100, 100)) == 0
    np.testing.assert_array_equal(uniformize([5, 1, 3], [5, 1, 3], 10, 10, boxes=1), [0, 1, 2])
    # all sources in one box: the order is kept
    np.testing.assert_array_equal(uniformize([1, 2, 3, 4], [1, 2, 3, 4], 1000, 1000),
                                  [0, 1, 2, 3])


# -- write_axy ---------------------------------------------------------------------------
def _read_axy(path):
    with fits.open(path) as hdul:
        return hdul[0].header, hdul[1].columns.names, {n: np.array(hdul[1].data[n])
                                                      for n in hdul[1].columns.names}, \
            [c.format for c in hdul[1].columns]


def test_write_axy_sorts_by_flux_then_uniformizes(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.uniform(1, 600, 120), rng.uniform(1, 400, 120)
    flux = rng.uniform(1, 1000, 120)
    flux[7] = np.nan
    args = {'scale_units': 'arcsecperpix', 'scale_lower': 5.0, 'scale_upper': 7.0}
    n = write_axy(tmp_path / 'a.axy', x, y, flux, args, 600, 400, cpulimit=10)
    assert n == 120
    header, names, data, formats = _read_axy(tmp_path / 'a.axy')
    assert names == ['X', 'Y', 'FLUX'] and formats == ['D', 'D', 'D']
    assert _directives(header) == _directives(axy_header(args, 600, 400, cpulimit=10))
    order = np.argsort(-np.nan_to_num(flux, nan=-np.inf), kind='stable')
    assert order[-1] == 7                               # NaN flux: last
    xs, ys = x[order], y[order]
    expect = uniformize(xs, ys, 600, 400)
    np.testing.assert_array_equal(data['X'], xs[expect])
    np.testing.assert_array_equal(data['Y'], ys[expect])
    np.testing.assert_array_equal(data['FLUX'], flux[order][expect])


def test_write_axy_keeps_the_order_without_flux(tmp_path):
    rng = np.random.default_rng(6)
    x, y = rng.uniform(1, 600, 50), rng.uniform(1, 400, 50)
    n = write_axy(tmp_path / 'a.axy', x, y, None, {}, 600, 400)
    assert n == 50
    header, names, data, formats = _read_axy(tmp_path / 'a.axy')
    assert names == ['X', 'Y'] and formats == ['D', 'D']
    expect = uniformize(x, y, 600, 400)
    np.testing.assert_array_equal(data['X'], x[expect])
    np.testing.assert_array_equal(data['Y'], y[expect])
    assert 'ANCLIM' not in header and header['IMAGEW'] == 600 and header['IMAGEH'] == 400


def test_write_axy_sort_false_keeps_the_order_with_flux(tmp_path):
    x, y, flux = [10.0, 300.0, 500.0], [10.0, 200.0, 390.0], [1.0, 3.0, 2.0]
    write_axy(tmp_path / 'a.axy', x, y, flux, {}, 600, 400, sort=False)
    _, _, data, _ = _read_axy(tmp_path / 'a.axy')
    np.testing.assert_array_equal(data['FLUX'], [1.0, 3.0, 2.0])   # three boxes: kept as given


@pytest.mark.parametrize('with_flux', [True, False])
def test_write_axy_keeps_at_most_1000_sources(tmp_path, with_flux):
    rng = np.random.default_rng(7)
    x, y = rng.uniform(1, 2000, 1500), rng.uniform(1, 2000, 1500)
    flux = rng.permutation(1500).astype(float) if with_flux else None
    n = write_axy(tmp_path / 'a.axy', x, y, flux, {}, 2000, 2000)
    assert n == 1000
    _, names, data, _ = _read_axy(tmp_path / 'a.axy')
    assert len(data['X']) == 1000
    kept = np.argsort(-flux, kind='stable')[:1000] if with_flux else np.arange(1000)
    assert set(zip(data['X'], data['Y'])) == set(zip(x[kept], y[kept]))
    if with_flux:
        assert data['FLUX'].min() == 500.0        # the 1000 brightest of 0..1499
    else:
        assert 'FLUX' not in names


def test_write_axy_overwrites(tmp_path):
    path = tmp_path / 'a.axy'
    write_axy(path, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], None, {}, 100, 100)
    write_axy(path, [5.0, 6.0], [5.0, 6.0], None, {'parity': 1}, 100, 100)
    header, _, data, _ = _read_axy(path)
    assert list(data['X']) == [5.0, 6.0] and header['ANPARITY'] == 'NEG'
