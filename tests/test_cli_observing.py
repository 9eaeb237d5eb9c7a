"""The observatory workflow through the command line, with the real solver:
a sequence solved with --track and written --in-place, the matched stars of
a solution (``stars``), camera formats (TIFF, XISF, RAW) solved by ``solve``."""
import json

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from astrometry_query.cli import main
from astrometry_query.datasets import render_field, wcs_rms_error
from real_server import requires_solver
from test_formats import FORMATS, field, files  # noqa: F401 (fixtures)

KW = dict(pixel_scale=12 * u.arcsec / u.pix, shape=(400, 500), fwhm=2.8, hot_pixels=3,
          sip={'k1': 2e-8})
HERE = SkyCoord(150.3, 25.1, unit='deg')


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope='module')
def sequence(tmp_path_factory):
    """Four drifting frames, the third under thick cloud (five or six stars)."""
    folder = tmp_path_factory.mktemp('sequence')
    frames = []
    for i in range(4):
        at = SkyCoord(HERE.ra + 0.3 * i * u.arcmin, HERE.dec - 0.2 * i * u.arcmin)
        frame = render_field(at, rotation=37 * u.deg, extinction=3.0 if i == 2 else 0.0,
                             seed=60 + i, **KW)
        path = frame.writeto(folder / f'm42_{i:03d}.fits', truth='none')
        with fits.open(path, mode='update') as hdul:
            hdul[0].header['OBJECT'] = 'M 42'
        frames.append((path, frame))
    return frames


@pytest.mark.slow
@requires_solver
def test_solve_track_in_place(sequence, capsys):
    folder = sequence[0][0].parent
    data = [fits.getdata(p) for p, _ in sequence]
    code, out, err = run(capsys, 'solve', folder / 'm42_*.fits', '--track', '--in-place',
                         '--json', '-q', '--no-cache', '--scale-low', 10, '--scale-high', 14)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r['status'] for r in records] == ['success'] * 4
    assert [r['tracked'] for r in records] == [False, True, True, True]
    for record, (path, frame), pixels in zip(records, sequence, data):
        assert record['wcs'] == str(path)
        header = fits.getheader(path)
        assert header['OBJECT'] == 'M 42' and np.array_equal(fits.getdata(path), pixels)
        assert wcs_rms_error(frame.wcs, header, frame.data.shape) < 0.3
    # The summary says how many followed the field.
    for path, _ in sequence:
        with fits.open(path, mode='update') as hdul:      # solve again, from scratch
            for key in [k for k in hdul[0].header if k.startswith('AN_')]:
                del hdul[0].header[key]
    code, out, _ = run(capsys, 'solve', folder / 'm42_*.fits', '--track', '--no-cache',
                       '--scale-low', 10, '--scale-high', 14, '--output-dir', folder / 'wcs')
    assert code == 0 and '4 of 4 images solved (3 by following the field of another)' in out


@requires_solver
def test_stars_of_a_solution(sequence, capsys, tmp_path):
    path, frame = sequence[0]
    wcs_file = tmp_path / 'first.wcs'
    code, _, err = run(capsys, 'solve', path, '-o', wcs_file, '-q', '--no-cache',
                       '--scale-low', 10, '--scale-high', 14)
    assert code == 0, err
    code, out, err = run(capsys, 'stars', wcs_file)
    assert code == 0, err
    assert 'residual (px)' in out and 'stars matched' in out and 'RMS' in out
    code, out, _ = run(capsys, 'stars', wcs_file, '-o', tmp_path / 'stars.ecsv')
    assert code == 0 and 'matched stars written to' in out
    table = Table.read(tmp_path / 'stars.ecsv')
    assert len(table) >= 20 and table['residual'].unit == u.pix
    assert table['residual_sky'].unit == u.arcsec and table['ra'].unit == u.deg
    assert table.meta['rms_px'] < 0.15
    # each matched catalogue star lies on a star drawn there (through the true WCS)
    x, y = frame.wcs.all_world2pix(table['ra'].quantity.to_value(u.deg),
                                   table['dec'].quantity.to_value(u.deg), 1)
    assert np.median(np.hypot(x - table['x'], y - table['y'])) < 0.3
    code, out, _ = run(capsys, 'stars', wcs_file, '--all', '--json')
    every = [json.loads(line) for line in out.splitlines()]
    assert len(every) >= len(table) and sum(r['matched'] for r in every) == len(table)
    code, _, err = run(capsys, 'stars', wcs_file, '-o', tmp_path / 'stars.ecsv')
    assert code == 2 and '--overwrite' in err
    code, _, err = run(capsys, 'stars', wcs_file, '-o', tmp_path / 'stars.docx')
    assert code == 2 and '.ecsv' in err


@requires_solver
@pytest.mark.parametrize('name', ['tiff-rgb16', 'xisf-mono16', 'dng'])
def test_camera_formats_through_solve(name, files, field, capsys):  # noqa: F811
    path = files[name]
    code, out, err = run(capsys, 'solve', path, '--json', '-q', '--no-cache',
                         '--scale-low', 10, '--scale-high', 14)
    assert code == 0, err
    record = json.loads(out)
    assert record['status'] == 'success'
    limit = FORMATS[name][2]
    assert wcs_rms_error(field.wcs, fits.getheader(record['wcs']), field.data.shape) < limit
