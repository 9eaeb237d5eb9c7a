"""The ``astrometry-query`` command line: every subcommand in process
(``main([...])`` with capsys), the installed console script once in a
subprocess, real local solves of small rendered fields, and a real nova
server on 127.0.0.1 for jobs, annotate and download.

Each solution is checked against the true WCS the field was rendered from.
"""
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import keyring
import keyring.backend
import numpy as np
import pytest
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from keyring.backends import null as null_keyring

from astrometry_query import AstrometryNetClass, auth
from astrometry_query.cli import example_image_path, main
from astrometry_query.cli._common import (EXIT_AUTH, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_SERVER,
                                          EXIT_SETUP, EXIT_TIMEOUT, EXIT_UNSOLVED, EXIT_USAGE,
                                          dec_degrees, exit_code, join_signed_values, ra_degrees,
                                          radius_degrees)
from astrometry_query.cli.solve import wcs_path_for
from astrometry_query.images import expand_images
from astrometry_query.exceptions import (IndexCoverageError, InvalidInputError, InvalidSettingError,
                                         JobNotFoundError, LocalSolverNotFoundError, LoginError,
                                         MissingAPIKeyError, ResultNotAvailableError, ServerError,
                                         SolveFailedError, SolveTimeoutError)
from astrometry_query.cli import build_parser
from astrometry_query.cli.solve import solve_settings
from astrometry_query.results import calibration_from_wcs, parity_text
from astrometry_query.datasets import read_truth_wcs, render_field, wcs_rms_error
from real_server import requires_solver

pytestmark = [pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning')]

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
WCS_LIMIT = 0.15            # RMS pixels of a solved WCS against the truth
SHAPE = (400, 500)
# centre (deg), scale (arcsec/px), rotation (deg), flip; field 0 holds NGC 3098
SPECS = [((150.3, 25.1), 12.0, 37.0, False), ((280.5, -40.2), 10.0, -65.0, True),
         ((30.2, 60.3), 14.0, 120.0, False)]
COMMANDS = [[], ['solve'], ['demo'], ['annotate'], ['download'], ['jobs'], ['jobs', 'show'],
            ['login'], ['serve'], ['index'], ['index', 'list'], ['index', 'download'],
            ['index', 'build']]


# -- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture(scope='module')
def fields(tmp_path_factory):
    """Three small fields (headers carry a pointing and a scale): [(path, field)]."""
    folder = tmp_path_factory.mktemp('cli-fields')
    out = []
    for i, (center, scale, rotation, flip) in enumerate(SPECS):
        field = render_field(SkyCoord(*center, unit='deg'), pixel_scale=scale * u.arcsec / u.pix,
                             shape=SHAPE, rotation=rotation * u.deg, flip=flip, fwhm=2.8, seed=i)
        out.append((field.writeto(folder / f'field{i}.fits', truth='none'), field))
    return out


@pytest.fixture
def images(fields, tmp_path):
    """Copies of the fields in a fresh directory (WCS files are written beside them)."""
    folder = tmp_path / 'night'
    folder.mkdir()
    return [(Path(shutil.copy(path, folder / path.name)), field) for path, field in fields]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``main(argv)``."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def truth(field):
    """The true calibration of a rendered field (nova's numbers)."""
    return calibration_from_wcs(field.header())


def check_record(record, field, wcs_path):
    """A --json record of a solved image against the truth, and the WCS file it names."""
    true = truth(field)
    assert record['status'] == 'success' and record['error'] == ''
    sep = SkyCoord(record['ra'], record['dec'], unit='deg').separation(
        SkyCoord(true['ra'], true['dec'], unit='deg'))
    assert sep < 1 * u.arcsec
    assert record['pixscale'] == pytest.approx(true['pixscale'], rel=1e-3)
    # The orientation is measured at the solver's reference pixel, not the truth's:
    # a few tenths of a degree apart in these 1-2 degree fields (the RMS below is exact).
    assert abs((record['orientation'] - true['orientation'] + 180) % 360 - 180) < 0.5
    assert record['parity'] == true['parity']
    assert isinstance(record['job_id'], int) and record['job_id'] > 0
    assert Path(record['wcs']) == Path(wcs_path)
    header = fits.getheader(wcs_path)
    assert header['AN_JOBID'] == record['job_id']
    assert wcs_rms_error(field.wcs, header, SHAPE) < WCS_LIMIT


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring in a dict, so the tests never touch the user's."""
    priority = 1

    def __init__(self):
        super().__init__()
        self.store = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        if self.store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError('no such password')


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


# -- help, parsing, exit codes (no solving) --------------------------------------------------
@pytest.mark.parametrize('command', COMMANDS, ids=lambda c: ' '.join(c) or 'top')
def test_help_of_every_command(command, capsys):
    code, out, err = run(capsys, *command, '--help')
    assert code == 0 and err == ''
    assert out.startswith(f"usage: {' '.join(['astrometry-query'] + command)}")
    assert 'examples:' in out and f"astrometry-query {' '.join(command)}" in out.split('examples:')[1]
    assert 'exit codes:' in out and '130' in out and 'SolveTimeoutError' in out


def test_version_and_no_command(capsys):
    code, out, _ = run(capsys, '--version')
    assert code == 0 and out.startswith('astrometry-query ')
    code, out, err = run(capsys)
    assert code == EXIT_USAGE and out == ''
    assert 'astrometry-query: UsageError: the following arguments are required: COMMAND' in err


@pytest.mark.parametrize('argv, named', [
    (['solve', 'missing.fits'], "IMAGE: no such file: 'missing.fits'"),
    (['solve', 'nowhere/*.fits'], "IMAGE: no file matches 'nowhere/*.fits'"),
    (['solve', '{dir}/empty'], 'holds no image files'),
    (['solve', '{image}', '--ra', '400', '--dec', '0'], 'argument --ra: must be between 0 and 360'),
    (['solve', '{image}', '--ra', '25:00:00', '--dec', '0'], "argument --ra: expected degrees"),
    (['solve', '{image}', '--ra', 'north', '--dec', '0'], 'argument --ra: expected degrees'),
    (['solve', '{image}', '--ra', '10', '--dec', '-95:00:00'], 'argument --dec: must be between'),
    (['solve', '{image}', '--ra', '10'], 'argument --dec: needed with --ra'),
    (['solve', '{image}', '--radius', '2'], 'argument --radius: needs --ra and --dec'),
    (['solve', '{image}', '--ra', '1', '--dec', '1', '--radius', '3 kg'], 'argument --radius'),
    (['solve', '{image}', '--scale-low', '20', '--scale-high', '10'],
     'argument --scale-low: scale_lower (20.0) is greater than scale_upper'),
    (['solve', '{image}', '--scale-low', '0'], 'argument --scale-low: must be a positive number'),
    (['solve', '{image}', '--scale-units', 'furlongs'], "argument --scale-units: invalid choice"),
    (['solve', '{image}', '--scale-units', 'degwidth'], 'argument --scale-units: needs'),
    (['solve', '{image}', '--timeout', '0'], 'argument --timeout: must be a positive number'),
    (['solve', '{image}', '--workers', '0'], 'argument --workers: must be at least 1'),
    (['solve', '{image}', '{image2}', '-o', 'x.wcs'], 'argument -o/--output: names one file'),
    (['solve', '{image}', '--output-dir', '{image}'], 'argument --output-dir: '),
    (['solve', '{image}', '--index-dir', '{dir}/none'], 'argument --index-dir: no such directory'),
    (['solve', '{image}', '--server', 'ftp://example.org'], 'argument --server: expected an http'),
    (['solve', '{image}', '--backend', 'gpu'], 'argument --backend: invalid choice'),
    (['annotate', 'nothing.wcs'], 'argument JOB_OR_WCS: expected a job id or a WCS file'),
    (['annotate', '{image}', '--png', '{dir}/no/such.png'], 'argument --png: no such directory'),
    (['annotate', '{image}', '--image', '{dir}/none.fits'], 'argument --image: no such file'),
    (['download', '12', 'everything'], "argument KIND: invalid choice: 'everything'"),
    (['download', '{image}', 'wcs'], 'JOB: '),
    (['download', '12', 'wcs', '-d', '{image}'], 'argument -d/--dest: '),
    (['solve', '{image}', '--parity', 'upside-down'], "argument --parity: invalid choice"),
    (['solve', '{image}', '--downsample', '65'], 'argument --downsample: Value 65 for '
     'downsample_factor is invalid. The valid values are 1 <= downsample_factor <= 64.'),
    (['solve', '{image}', '--tweak-order', '-1'], 'argument --tweak-order: must be at least 0'),
    (['solve', '{image}', '--tweak-order', '10'], 'argument --tweak-order: Value 10 for tweak_order'),
    (['solve', '{image}', '--set', 'paritty=1'], "InvalidSettingError: argument --set: there is no "
     "solve setting 'paritty'. Did you mean 'parity'? The settings are: album, "),
    (['solve', '{image}', '--set', 'tweak_order=x'],
     "InvalidSettingError: argument --set tweak_order: expected a whole number 0..9, got 'x'."),
    (['solve', '{image}', '--set', 'tweak_order=2.5'], 'expected a whole number 0..9'),
    (['solve', '{image}', '--set', 'positional_error=-1'],
     "argument --set positional_error: expected a number 0..100 pixels, got '-1'."),
    (['solve', '{image}', '--set', 'invert=maybe'],
     "argument --set invert: expected true/false, got 'maybe'."),
    (['solve', '{image}', '--set', 'parity=sideways'],
     "argument --set parity: expected positive|negative|both (or 0|1|2), got 'sideways'."),
    (['solve', '{image}', '--set', 'publicly_visible=maybe'], 'expected y|n'),
    (['solve', '{image}', '--set', 'invert'], "argument --set: expected NAME=VALUE, got 'invert'"),
    (['solve', '{image}', '--parity', 'both', '--set', 'parity=1'],
     'argument --set: parity is also given by --parity; give it once'),
    (['solve', '{image}', '--set', 'radius=2'], 'argument --set radius: radius needs a centre'),
    (['jobs', 'show', '0'], 'argument ID: a job id is a positive whole number'),
    (['jobs', '--limit', 'many'], 'argument --limit: expected a whole number'),
    (['jobs', '--limit', '3', '--all'], 'argument --all: not allowed with argument --limit'),
    (['jobs', 'prune'], 'the following arguments are required: --older-than'),
    (['jobs', 'prune', '--older-than', '30'], "argument --older-than: expected a number and a "
     "unit: s, m, h, d or w (e.g. 30d, 12h, 2w), got '30'"),
    (['jobs', 'prune', '--older-than', '30 years'], 'argument --older-than: expected a number'),
    (['serve', '--workers', '-1'], 'argument --workers: must be >= 0'),
    (['login', '--forget', '--stdin'], 'argument --forget: not allowed with --stdin'),
    (['frobnicate'], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_bad_input_names_the_argument(argv, named, tmp_path, capsys):
    image, image2 = tmp_path / 'a.fits', tmp_path / 'b.fits'
    (tmp_path / 'empty').mkdir()
    for path in (image, image2):
        fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(path)
    values = {'image': image, 'image2': image2, 'dir': tmp_path}
    argv = [a.format(**values) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE
    assert out == ''
    last = err.strip().splitlines()[-1]
    assert last.startswith('astrometry-query: ') and named.format(**values) in last
    assert list(tmp_path.glob('*.wcs')) == []


def test_solver_setting_values_take_the_setting_s_type(tmp_path):
    def settings(*options):
        return solve_settings(build_parser().parse_args(['solve', 'x.fits', *options]))
    assert settings('--parity', 'negative', '--downsample', '2', '--tweak-order', '0') == {
        'parity': 'negative', 'downsample_factor': 2, 'tweak_order': 0}
    given = settings('--set', 'use_sextractor=yes', '--set', 'invert=False', '--set',
                     'positional_error=1.5', '--set', 'tweak_order=3', '--set', 'parity=pos',
                     '--set', 'album=My night', '--set', 'crpix-center=1',
                     '--set', 'publicly_visible=n')
    assert given == {'use_sextractor': True, 'invert': False, 'positional_error': 1.5,
                     'tweak_order': 3, 'parity': 'pos', 'album': 'My night',
                     'crpix_center': True, 'publicly_visible': 'n'}
    assert type(given['tweak_order']) is int and type(given['positional_error']) is float
    assert settings('--set', 'parity=1') == {'parity': 1}
    # a scale estimate through --set takes --scale-units
    assert settings('--set', 'scale_est=9', '--scale-units', 'arcsecperpix') == {
        'scale_est': 9, 'scale_units': 'arcsecperpix'}


def test_solve_help_lists_every_setting(capsys):
    from astrometry_query.settings import SETTINGS
    code, out, _ = run(capsys, 'solve', '--help')
    assert code == 0
    table = out.split('solve settings (--set NAME=VALUE')[1].split('examples:')[0]
    for name in SETTINGS:
        assert re.search(rf'^  {name} ', table, re.M), name
    assert re.search(r'^  parity +positive\|negative\|both \(or 0\|1\|2\) \(--parity\)', table, re.M)
    assert '--parity {positive,negative,both}' in out and '--no-cache' in out
    assert 'astrometry-query solve big.fits --downsample 4 --set positional_error=2' in out


@pytest.mark.parametrize('exc, code', [
    (SolveFailedError('no'), EXIT_UNSOLVED), (IndexCoverageError('no'), EXIT_SETUP),
    (ResultNotAvailableError('no'), EXIT_UNSOLVED), (InvalidInputError('no'), EXIT_USAGE),
    (InvalidSettingError('no'), EXIT_USAGE), (JobNotFoundError('no'), EXIT_USAGE),
    (FileExistsError('no'), EXIT_USAGE), (ServerError('no'), EXIT_SERVER),
    (SolveTimeoutError('no'), EXIT_TIMEOUT), (MissingAPIKeyError('no'), EXIT_AUTH),
    (LoginError('no'), EXIT_AUTH), (LocalSolverNotFoundError('no'), EXIT_SETUP),
    (KeyboardInterrupt(), EXIT_INTERRUPTED), (ZeroDivisionError('bug'), EXIT_INTERNAL),
])
def test_exit_codes_follow_the_exception_hierarchy(exc, code):
    assert exit_code(exc) == code


def test_interrupt_and_internal_errors(tmp_path, monkeypatch, capsys):
    path = tmp_path / 'm.fits'
    fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(path)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(AstrometryNetClass, 'solve_from_image', interrupted)
    code, out, err = run(capsys, 'solve', path)
    assert code == EXIT_INTERRUPTED and err.strip() == 'astrometry-query: interrupted'

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError('a bug')
    monkeypatch.setattr(AstrometryNetClass, 'solve_from_image', broken)
    code, out, err = run(capsys, 'solve', path)
    assert code == EXIT_INTERNAL and 'astrometry-query: ZeroDivisionError: a bug' in err
    assert '--debug' in err
    with pytest.raises(ZeroDivisionError):
        main(['--debug', 'solve', str(path)])
    with pytest.raises(ZeroDivisionError):
        main(['solve', str(path), '--debug'])


def test_angles_and_signed_values():
    assert ra_degrees('05:35:17') == pytest.approx(83.820833, abs=1e-6)
    assert ra_degrees('05 35 17.0') == pytest.approx(83.820833, abs=1e-6)
    assert ra_degrees('5h35m17s') == pytest.approx(83.820833, abs=1e-6)
    assert ra_degrees('83.82') == 83.82 and ra_degrees('360') == 0.0
    assert dec_degrees('-05:23:28') == pytest.approx(-5.391111, abs=1e-6)
    assert dec_degrees('+05:23:28') == pytest.approx(5.391111, abs=1e-6)
    assert dec_degrees('-5d23m28s') == pytest.approx(-5.391111, abs=1e-6)
    assert dec_degrees('-5.39') == -5.39
    assert radius_degrees('2') == 2.0 and radius_degrees('30 arcmin') == pytest.approx(0.5)
    assert join_signed_values(['solve', 'x', '--dec', '-05:23:28', '--ra', '05:35:17']) == \
        ['solve', 'x', '--dec=-05:23:28', '--ra', '05:35:17']
    assert join_signed_values(['solve', '--', '--dec', '-1:00']) == ['solve', '--', '--dec', '-1:00']


def test_image_names_globs_and_wcs_paths(tmp_path):
    for name in ('b.fits', 'a.fits', 'c.fit', 'd.fits.gz', 'notes.txt'):
        (tmp_path / name).write_bytes(b'')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'e.fits').write_bytes(b'')
    found = expand_images([str(tmp_path / '*.fit*'), str(tmp_path / 'a.fits'),
                           str(tmp_path / '**' / 'e.fits')])
    assert [p.name for p in found] == ['a.fits', 'b.fits', 'c.fit', 'd.fits.gz', 'e.fits']
    assert wcs_path_for(Path('/x/m42.fits')) == Path('/x/m42.wcs')
    assert wcs_path_for(Path('/x/m42.FITS.gz'), '/out') == Path('/out/m42.wcs')
    assert wcs_path_for(Path('night.2024-01-05.fit')) == Path('night.2024-01-05.wcs')
    assert wcs_path_for(Path('frame')) == Path('frame.wcs')
    with pytest.raises(InvalidInputError, match='IMAGE: no such file'):
        expand_images([str(tmp_path / 'z.fits')], argument='IMAGE')


def test_output_collisions_are_refused_before_solving(tmp_path, capsys):
    for folder in ('n1', 'n2'):
        (tmp_path / folder).mkdir()
        fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(tmp_path / folder / 'm.fits')
    code, out, err = run(capsys, 'solve', tmp_path / 'n*' / 'm.fits', '--output-dir', tmp_path / 'w')
    assert code == EXIT_USAGE and 'would both write' in err
    assert list((tmp_path / 'w').iterdir()) == []


# -- local solves -----------------------------------------------------------------------------
@pytest.mark.slow
@requires_solver
def test_solve_one_image_prints_the_summary(images, capsys):
    path, field = images[0]
    code, out, err = run(capsys, 'solve', path)
    assert code == 0
    wcs = path.with_suffix('.wcs')
    assert wcs_rms_error(field.wcs, fits.getheader(wcs), SHAPE) < WCS_LIMIT
    true = truth(field)
    assert out.splitlines()[0].startswith('Solved: job ') and '(local backend)' in out
    ra, dec = (float(v) for v in re.search(r'\(([\d.]+), ([+-][\d.]+)\) deg', out).groups())
    assert ra == pytest.approx(true['ra'], abs=2e-4) and dec == pytest.approx(true['dec'], abs=2e-4)
    scale = float(re.search(r'pixel scale ([\d.]+) arcsec/pixel', out).group(1))
    assert scale == pytest.approx(true['pixscale'], rel=1e-3)
    assert f"parity      {parity_text(true['parity'])}" in out and f'WCS written to {wcs}' in out


@requires_solver
def test_solve_with_hints_in_sexagesimal_and_json(images, tmp_path, capsys):
    path, field = images[1]
    true = truth(field)
    ra = Angle(true['ra'], u.deg).to_string(u.hourangle, sep=':', precision=1)
    dec = Angle(true['dec'], u.deg).to_string(u.deg, sep=':', precision=0, alwayssign=True)
    assert dec.startswith('-')          # a value argparse would take for an option
    out_path = tmp_path / 'hinted.wcs'
    code, out, err = run(capsys, 'solve', path, '--ra', ra, '--dec', dec, '--radius', '30 arcmin',
                         '--scale-low', 9.5, '--scale-high', 10.5, '-o', out_path, '--json', '-q')
    assert code == 0, err
    (record,) = json_lines(out)
    assert record['input'] == str(path)
    check_record(record, field, out_path)
    assert not path.with_suffix('.wcs').exists()


@pytest.mark.slow
@requires_solver
def test_solve_many_glob_json_and_summary_table(images, tmp_path, capsys):
    folder = images[0][0].parent
    code, out, err = run(capsys, 'solve', folder / '*.fits', '--output-dir', tmp_path / 'wcs',
                         '--json')
    assert code == 0
    records = json_lines(out)
    assert [r['input'] for r in records] == [str(p) for p, _ in images]    # input order
    for record, (path, field) in zip(records, images):
        check_record(record, field, tmp_path / 'wcs' / f'{path.stem}.wcs')
    assert len({r['job_id'] for r in records}) == 3
    assert 'Solving' in err and '3/3' in err              # the progress bar, on stderr

    code, out, err = run(capsys, 'solve', *[p for p, _ in images], '-q', '--workers', '1')
    assert code == 0 and err == ''
    lines = out.splitlines()
    assert lines[0].split() == ['image', 'status', 'RA', '(deg)', 'Dec', '(deg)', 'scale',
                                '("/px)', 'orientation', 'job', 'error']
    for line, record in zip(lines[2:5], records):
        cells = line.split()
        assert cells[0] == record['input'] and cells[1] == 'success'
        assert float(cells[2]) == pytest.approx(record['ra'], abs=1e-5)
        assert float(cells[3]) == pytest.approx(record['dec'], abs=1e-5)
        assert float(cells[4]) == pytest.approx(record['pixscale'], abs=1e-3)
        assert float(cells[5]) == pytest.approx(record['orientation'], abs=0.01)
    assert '3 of 3 images solved' in out and 'next to the images' in out
    for path, _ in images:
        assert path.with_suffix('.wcs').is_file()


@requires_solver
def test_solve_many_with_failures_exits_1(images, tmp_path, capsys):
    tiny = images[0][0].parent / 'tiny.fits'
    fits.PrimaryHDU(np.zeros((5, 5), np.float32)).writeto(tiny)
    code, out, err = run(capsys, 'solve', images[0][0], tiny, '--json', '-q')
    assert code == EXIT_UNSOLVED
    good, bad = json_lines(out)
    check_record(good, images[0][1], images[0][0].with_suffix('.wcs'))
    assert bad['status'] == 'failure' and bad['wcs'] is None and bad['ra'] is None
    assert '16x16' in bad['error']
    assert not tiny.with_suffix('.wcs').exists()

    code, out, err = run(capsys, 'solve', images[0][0], tiny, '-q')
    assert code == EXIT_UNSOLVED
    row = next(line for line in out.splitlines() if line.startswith(str(tiny)))
    assert row.split()[1] == 'failure' and '16x16' in row
    assert '1 of 2 images solved' in out


@requires_solver
def test_one_image_that_fails_or_times_out(images, tmp_path, capsys):
    tiny = tmp_path / 'tiny.fits'
    fits.PrimaryHDU(np.zeros((5, 5), np.float32)).writeto(tiny)
    code, out, err = run(capsys, 'solve', tiny, '--json')
    assert code == EXIT_USAGE
    assert json_lines(out)[0]['status'] == 'failure'
    assert err.startswith('astrometry-query: InvalidInputError: ') and '16x16' in err
    # A blind solve (no hints in the header) cannot finish in 10 ms.
    blind = tmp_path / 'blind.fits'
    fits.PrimaryHDU(fits.getdata(images[2][0])).writeto(blind)
    code, out, err = run(capsys, 'solve', blind, '--timeout', '0.01', '--json', '-q')
    assert code == EXIT_TIMEOUT
    (record,) = json_lines(out)
    assert record['status'] == 'failure' and record['error'].startswith('SolveTimeoutError: ')
    assert 'resume with' not in record['error'] and record['job_id'] is not None
    assert 'astrometry-query: SolveTimeoutError: ' in err and f"job {record['job_id']}" in err
    assert not blind.with_suffix('.wcs').exists()
    code, out, err = run(capsys, 'jobs', 'show', record['job_id'], '--json')
    assert code == 0
    shown = json_lines(out)[0]
    assert shown['status'] == 'failure' and 'the time limit (0.01 s) stopped' in shown['error']
    assert shown['calibration'] is None


@requires_solver
def test_demo_solves_the_bundled_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, 'demo', '--json', '-q')
    assert code == 0
    (record,) = json_lines(out)
    assert record['input'] == str(example_image_path()) and record['wcs'] == 'example.wcs'
    truth_wcs = read_truth_wcs(example_image_path())
    assert wcs_rms_error(truth_wcs, fits.getheader(tmp_path / 'example.wcs'), (450, 600)) < WCS_LIMIT


@requires_solver
def test_local_annotate_jobs_and_download(images, tmp_path, capsys):
    path, field = images[0]
    assert run(capsys, 'solve', path, '-q')[0] == 0
    wcs = path.with_suffix('.wcs')
    job = fits.getheader(wcs)['AN_JOBID']

    code, out, err = run(capsys, 'annotate', wcs, '--json', '--png', tmp_path / 'ann.png')
    assert code == 0
    objects = json_lines(out)
    assert 'NGC 3098' in [o['name'] for o in objects]
    for obj in objects:           # positions agree with the true WCS (to WCS_LIMIT pixels)
        ra, dec = field.wcs.all_pix2world(obj['pixelx'] - 1, obj['pixely'] - 1, 0)
        assert SkyCoord(ra, dec, unit='deg').separation(SkyCoord(obj['ra'], obj['dec'], unit='deg')) \
            < WCS_LIMIT * SPECS[0][1] * u.arcsec
        assert isinstance(obj['names'], list) and obj['name'] == obj['names'][0]
    assert (tmp_path / 'ann.png').read_bytes()[:8] == PNG_MAGIC

    code, out, err = run(capsys, 'annotate', wcs)
    assert code == 0 and 'NGC 3098' in out and f'1 object in the field of job {job}.' in out

    # A WCS from elsewhere (no AN_JOBID) is annotated offline, with plot-constellations.
    header = fits.getheader(wcs)
    del header['AN_JOBID'], header['AN_SUBID']
    plain = tmp_path / 'plain.wcs'
    header.tofile(plain)
    code, out, err = run(capsys, 'annotate', plain, '--json', '--png', tmp_path / 'off.png',
                         '--image', path)
    assert code == 0
    assert sorted(o['name'] for o in json_lines(out)) == sorted(o['name'] for o in objects)
    assert (tmp_path / 'off.png').read_bytes()[:8] == PNG_MAGIC

    code, out, err = run(capsys, 'jobs', '--json')
    assert code == 0
    listed = {r['job_id']: r for r in json_lines(out)}
    assert listed[job]['status'] == 'success'
    assert listed[job]['pixscale'] == pytest.approx(truth(field)['pixscale'], rel=1e-3)
    code, out, err = run(capsys, 'jobs', 'show', job)
    assert code == 0 and out.startswith(f'Job {job}') and 'success' in out
    assert 'NGC 3098' in out

    code, out, err = run(capsys, 'download', wcs, 'wcs', 'image_rd', '-d', tmp_path / 'dl')
    assert code == 0
    written = [Path(line) for line in out.splitlines()]
    assert [p.name for p in written] == [f'job{job}-wcs.fits', f'job{job}-image-radec.fits']
    assert wcs_rms_error(field.wcs, fits.getheader(written[0]), SHAPE) < WCS_LIMIT


@pytest.mark.slow
@requires_solver
def test_solver_settings_reach_the_solver(images, tmp_path, capsys):
    path, field = images[0]             # not mirrored: parity -1, the solver's 'pos'
    hints = ['--scale-low', 11, '--scale-high', 13, '-q']
    code, out, err = run(capsys, 'solve', path, *hints, '--parity', 'positive', '--tweak-order', 3,
                         '--downsample', 2, '--set', 'crpix_center=yes', '--set',
                         'positional_error=1.5', '-o', tmp_path / 'pos.wcs', '--json')
    assert code == 0, err
    (record,) = json_lines(out)
    check_record(record, field, tmp_path / 'pos.wcs')
    header = fits.getheader(tmp_path / 'pos.wcs')
    assert header['A_ORDER'] == 3                                     # --tweak-order
    assert (header['CRPIX1'], header['CRPIX2']) == pytest.approx(     # crpix_center
        ((SHAPE[1] + 1) / 2, (SHAPE[0] + 1) / 2), abs=0.5)
    request = AstrometryNetClass(backend='local').backend.request(record['job_id'])
    assert {k: request.settings[k] for k in ('parity', 'tweak_order', 'downsample_factor',
                                            'crpix_center', 'positional_error')} == {
        'parity': 0, 'tweak_order': 3, 'downsample_factor': 2, 'crpix_center': True,
        'positional_error': 1.5}
    # the other parity has no solution for this field
    code, out, err = run(capsys, 'solve', path, *hints, '--parity', 'negative',
                         '-o', tmp_path / 'neg.wcs')
    assert code == EXIT_UNSOLVED and 'astrometry-query: SolveFailedError: ' in err
    assert not (tmp_path / 'neg.wcs').exists()


@requires_solver
def test_no_cache_solves_again(images, tmp_path, capsys):
    path, field = images[2]
    solve = ['solve', path, '--scale-low', 13, '--scale-high', 15, '--json', '-q']
    first = json_lines(run(capsys, *solve)[1])[0]
    again = json_lines(run(capsys, *solve)[1])[0]
    assert again['job_id'] == first['job_id']           # from the solution cache
    code, out, err = run(capsys, *solve, '--no-cache')
    fresh = json_lines(out)[0]
    assert code == 0 and fresh['job_id'] > first['job_id']
    check_record(fresh, field, path.with_suffix('.wcs'))


def _table_rows(out):
    """The data rows of a printed table, as lists of cells (two blanks apart)."""
    lines = out.split('\n\n')[0].splitlines()
    return [re.split(r'  +', line.strip()) for line in lines[2:]]


@requires_solver
def test_jobs_lists_the_newest_with_dates_and_says_how_many_more(images, tmp_path, capsys):
    from datetime import datetime, timezone
    started = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    path, field = images[0]
    assert run(capsys, 'solve', path, '-q')[0] == 0
    # 21 frames that fail at once (constant): jobs of the store all the same
    flats = tmp_path / 'flats'
    flats.mkdir()
    for i in range(21):
        fits.PrimaryHDU(np.full((40, 40), i, np.float32)).writeto(flats / f'flat{i:02d}.fits')
    assert run(capsys, 'solve', flats / '*.fits', '-q', '--workers', 1)[0] == EXIT_UNSOLVED
    ended = datetime.now(timezone.utc).replace(tzinfo=None)

    code, out, err = run(capsys, 'jobs')
    assert code == 0
    rows = _table_rows(out)
    assert re.split(r'  +', out.splitlines()[0].strip())[:4] == ['job', 'submission', 'status',
                                                                 'date (UTC)']
    assert [int(r[0]) for r in rows] == list(range(22, 2, -1))         # the 20 newest
    for row in rows:
        assert started <= datetime.strptime(row[3], '%Y-%m-%d %H:%M') <= ended
    assert out.rstrip().endswith('The 20 newest of 22 jobs in the local job store; 2 more '
                                 '(--limit N or --all shows them).')
    code, out, err = run(capsys, 'jobs', '--all')
    assert [int(r[0]) for r in _table_rows(out)] == list(range(22, 0, -1))
    assert out.rstrip().endswith('22 jobs in the local job store.')
    first = _table_rows(out)[-1]
    assert first[2] == 'success' and started <= datetime.strptime(first[3], '%Y-%m-%d %H:%M')

    records = json_lines(run(capsys, 'jobs', '--limit', 2, '--json')[1])
    assert [r['job_id'] for r in records] == [22, 21]
    for record in records:
        submitted, finished = (datetime.fromisoformat(record[k]) for k in ('submitted', 'finished'))
        assert started <= submitted <= finished <= ended
    code, out, err = run(capsys, 'jobs', 'show', 1)
    assert code == 0
    assert re.search(r'^  submitted   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$', out, re.M)
    assert re.search(r'^  finished    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$', out, re.M)
    assert f"  parity      {parity_text(truth(field)['parity'])}\n" in out
    shown = json_lines(run(capsys, 'jobs', 'show', 1, '--json')[1])[0]
    assert shown['calibration']['parity'] == truth(field)['parity']      # a number for scripts


def _age_job(store, job_id, days):
    """Make a job of the local store look as if it ended ``days`` ago (its recorded date)."""
    from datetime import datetime, timedelta, timezone
    path = Path(store) / 'jobs' / str(job_id) / 'result.json'
    result = json.loads(path.read_text())
    result['finished'] = str(datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(days=days))
    path.write_text(json.dumps(result))


@requires_solver
def test_jobs_prune_deletes_old_jobs_only(images, tmp_path, capsys):
    from astrometry_query import conf
    store = Path(conf.local_data_dir)
    path, field = images[1]
    flat = tmp_path / 'flat.fits'
    fits.PrimaryHDU(np.full((40, 40), 7, np.float32)).writeto(flat)
    assert run(capsys, 'solve', flat, '-q')[0] == EXIT_USAGE                    # job 1
    assert run(capsys, 'solve', path, '-q', '--scale-low', 9, '--scale-high', 11)[0] == 0   # job 2
    assert run(capsys, 'solve', flat, '-q', '--no-cache')[0] == EXIT_USAGE      # job 3
    _age_job(store, 1, 40)
    _age_job(store, 2, 31)
    _age_job(store, 3, 20)
    sizes = {j: sum(f.stat().st_size for f in (store / 'jobs' / str(j)).rglob('*') if f.is_file())
             for j in (1, 2)}

    code, out, err = run(capsys, 'jobs', 'prune', '--older-than', '30d', '--dry-run', '--json')
    assert code == 0
    assert json_lines(out) == [{'job_ids': [1, 2], 'bytes': sizes[1] + sizes[2],
                                'kept_unfinished': [], 'dry_run': True}]
    assert all((store / 'jobs' / str(j)).is_dir() for j in (1, 2, 3))
    code, out, err = run(capsys, 'jobs', 'prune', '--older-than', '4w')
    assert code == 0
    assert out.strip() == (f'Deleted 2 jobs that ended more than 4 weeks ago (ids 1, 2), freeing '
                           f"{(sizes[1] + sizes[2]) / 1e6:.1f} MB in {store / 'jobs'}.")
    assert sorted(p.name for p in (store / 'jobs').iterdir() if not p.name.startswith('.')) == ['3']
    code, out, err = run(capsys, 'jobs', 'show', 2)
    assert code == EXIT_USAGE and 'JobNotFoundError' in err
    code, out, err = run(capsys, 'jobs', 'prune', '--older-than', '30d')
    assert out.strip() == f"No job in {store / 'jobs'} ended more than 30 days ago."


# -- through a real nova server ------------------------------------------------------------
@pytest.mark.slow
@requires_solver
def test_nova_solve_jobs_annotate_download(make_nova_server, images, tmp_path, monkeypatch,
                                           capsys):
    server = make_nova_server()
    monkeypatch.setenv('ASTROMETRY_NET_API_KEY', server.api_key)
    url = server.url
    paths = [p for p, _ in images[:2]]
    code, out, err = run(capsys, 'solve', *paths, '--server', url, '--json', '-q')
    assert code == 0, err
    records = json_lines(out)
    for record, (path, field) in zip(records, images):
        check_record(record, field, path.with_suffix('.wcs'))
    jobs = [r['job_id'] for r in records]

    code, out, err = run(capsys, 'jobs', '--server', url, '--json')
    assert code == 0
    listed = {r['job_id']: r for r in json_lines(out)}
    assert set(jobs) <= set(listed)
    for record in records:
        assert listed[record['job_id']]['status'] == 'success'
        assert listed[record['job_id']]['pixscale'] == pytest.approx(record['pixscale'], rel=1e-6)
    code, out, err = run(capsys, 'jobs', '--server', url, '--limit', 1)
    assert code == 0 and f'The 1 newest of 2 jobs on {url}; 1 more' in out
    assert out.splitlines()[2].split()[0] == str(max(jobs))
    assert out.splitlines()[2].split()[3] == '-'         # nova's API gives no job dates

    code, out, err = run(capsys, 'jobs', '--server', url, 'show', jobs[0], '--json')
    assert code == 0
    shown = json_lines(out)[0]
    assert shown['status'] == 'success' and shown['original_filename'] == paths[0].name
    assert shown['calibration']['ra'] == pytest.approx(records[0]['ra'], abs=1e-6)
    assert 'NGC 3098' in shown['objects_in_field']

    wcs = paths[0].with_suffix('.wcs')
    code, out, err = run(capsys, 'annotate', wcs, '--server', url, '--png', tmp_path / 'a.png')
    assert code == 0 and 'NGC 3098' in out and f'of job {jobs[0]}.' in out
    assert (tmp_path / 'a.png').read_bytes()[:8] == PNG_MAGIC

    dest = tmp_path / 'dl'
    code, out, err = run(capsys, 'download', jobs[0], 'wcs', 'new_fits', '-d', dest, '--server', url)
    assert code == 0
    wcs_file, new_fits = (Path(line) for line in out.splitlines())
    assert wcs_rms_error(images[0][1].wcs, fits.getheader(wcs_file), SHAPE) < WCS_LIMIT
    with fits.open(new_fits) as hdul:
        assert hdul[0].data.shape == SHAPE
        assert wcs_rms_error(images[0][1].wcs, hdul[0].header, SHAPE) < WCS_LIMIT
    code, out, err = run(capsys, 'download', jobs[0], 'wcs', '-d', dest, '--server', url)
    assert code == EXIT_USAGE and 'FileExistsError' in err and '--overwrite' in err
    code, out, err = run(capsys, 'download', jobs[0], 'wcs', '-d', dest, '--server', url,
                         '--overwrite')
    assert code == 0 and out.strip() == str(wcs_file)

    code, out, err = run(capsys, 'jobs', 'show', 99999, '--server', url)
    assert code == EXIT_USAGE and 'astrometry-query: JobNotFoundError: ' in err

    # A key on the command line works, draws a warning, and is never printed.
    monkeypatch.delenv('ASTROMETRY_NET_API_KEY')
    code, out, err = run(capsys, 'jobs', '--server', url, '--api-key', server.other_api_key)
    assert code == 0 and 'warning: --api-key' in err and 'ASTROMETRY_NET_API_KEY' in err
    assert server.other_api_key not in out + err
    code, out, err = run(capsys, 'jobs', '--server', url, '--api-key', 'wrongkeyabcdefgh')
    assert code == EXIT_AUTH and 'astrometry-query: LoginError: ' in err
    assert 'wrongkeyabcdefgh' not in out + err
    code, out, err = run(capsys, 'jobs', '--server', url)
    assert code == EXIT_AUTH and 'MissingAPIKeyError' in err and 'astrometry-query login' in err


@pytest.mark.slow
def test_download_all_skips_what_a_source_list_job_lacks(make_nova_server, images, tmp_path,
                                                          monkeypatch, capsys):
    """One image goes to the server as a source list: no new_fits there.
    'all' says so on stderr and fetches every other kind; asked by name, it fails."""
    server = make_nova_server()
    monkeypatch.setenv('ASTROMETRY_NET_API_KEY', server.api_key)
    path, field = images[0]
    code, out, err = run(capsys, 'solve', path, '--server', server.url, '--json', '-q')
    assert code == 0, err
    job = json_lines(out)[0]['job_id']
    dest = tmp_path / 'all'
    code, out, err = run(capsys, 'download', job, 'all', '-d', dest, '--server', server.url)
    assert code == 0, err
    assert 'astrometry-query: skipped new_fits: ResultNotAvailableError' in err
    saved = {Path(line).name for line in out.splitlines()}
    assert f'job{job}-wcs.fits' in saved and f'job{job}-corr.fits' in saved
    assert not any('new-image' in name for name in saved)
    assert wcs_rms_error(field.wcs, fits.getheader(dest / f'job{job}-wcs.fits'), SHAPE) < WCS_LIMIT
    code, out, err = run(capsys, 'download', job, 'new_fits', '-d', tmp_path / 'one',
                         '--server', server.url)
    assert code == EXIT_UNSOLVED and 'ResultNotAvailableError' in err


@pytest.mark.slow
def test_unreachable_server_exits_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('ASTROMETRY_NET_API_KEY', 'abcdefghijklmnop')
    code, out, err = run(capsys, 'jobs', '--server', f'http://127.0.0.1:{free_port()}')
    assert code == EXIT_SERVER and out == ''
    assert err.startswith('astrometry-query: ServerError: Cannot reach the server')


# -- login and the keyring ----------------------------------------------------------------------
@requires_solver
def test_login_stores_the_key_in_the_keyring(make_nova_server, memory_keyring, monkeypatch,
                                             capsys):
    server = make_nova_server()
    entry = (auth.KEYRING_SERVICE, auth.keyring_user(server.url))
    prompts = []

    def fake_getpass(prompt):
        prompts.append(prompt)
        return server.api_key
    monkeypatch.setattr('getpass.getpass', fake_getpass)
    code, out, err = run(capsys, 'login', '--server', server.url)
    assert code == 0
    assert memory_keyring.store[entry] == server.api_key
    assert server.api_key not in out + err and 'stored in the keyring' in out
    assert prompts and server.url in prompts[0]
    # Later commands find it there: no key in the environment or the options.
    code, out, err = run(capsys, 'jobs', '--server', server.url, '--json')
    assert code == 0 and server.api_key not in out + err

    # A rejected key is not stored; the one before stays.
    monkeypatch.setattr('sys.stdin', io.StringIO('wrongkeyabcdefgh\n'))
    code, out, err = run(capsys, 'login', '--server', server.url, '--stdin')
    assert code == EXIT_AUTH and 'LoginError' in err and 'wrongkeyabcdefgh' not in out + err
    assert memory_keyring.store[entry] == server.api_key

    monkeypatch.setattr('sys.stdin', io.StringIO(server.other_api_key + '\n'))
    assert run(capsys, 'login', '--server', server.url, '--stdin')[0] == 0
    assert memory_keyring.store[entry] == server.other_api_key

    code, out, err = run(capsys, 'login', '--server', server.url, '--forget')
    assert code == 0 and 'Removed the API key' in out and entry not in memory_keyring.store
    code, out, err = run(capsys, 'login', '--server', server.url, '--forget')
    assert code == 0 and 'holds no API key' in out


def test_login_without_checking_and_without_a_keyring(memory_keyring, monkeypatch, capsys):
    offline = f'http://127.0.0.1:{free_port()}'
    monkeypatch.setattr('getpass.getpass', lambda prompt: 'abcdefghijklmnop')
    code, out, err = run(capsys, 'login', '--server', offline, '--no-check')
    assert code == 0 and 'abcdefghijklmnop' not in out + err
    assert memory_keyring.store[(auth.KEYRING_SERVICE, auth.keyring_user(offline))] == \
        'abcdefghijklmnop'
    monkeypatch.setattr('getpass.getpass', lambda prompt: 'has blanks in it')
    code, out, err = run(capsys, 'login', '--server', offline, '--no-check')
    assert code == EXIT_USAGE and 'InvalidInputError' in err and 'blanks in it' not in err
    monkeypatch.setattr('getpass.getpass', lambda prompt: '')
    code, out, err = run(capsys, 'login', '--server', offline)
    assert code == EXIT_USAGE and 'UsageError: no API key was given' in err
    # keyring's null backend forgets what it is given: say so instead of claiming success.
    keyring.set_keyring(null_keyring.Keyring())
    monkeypatch.setattr('getpass.getpass', lambda prompt: 'abcdefghijklmnop')
    code, out, err = run(capsys, 'login', '--server', offline, '--no-check')
    assert code == EXIT_SETUP and 'SetupError' in err and 'ASTROMETRY_NET_API_KEY' in err
    assert 'abcdefghijklmnop' not in out + err


# -- the installed console script -----------------------------------------------------------------
@pytest.mark.slow
@requires_solver
def test_console_script_in_a_subprocess(images, tmp_path):
    script = Path(sys.executable).with_name('astrometry-query')
    assert script.is_file()
    env = {k: v for k, v in os.environ.items() if k != 'ASTROMETRY_NET_API_KEY'}
    for name in ('cache', 'config'):        # astropy's (and so our) caches and config
        (tmp_path / name / 'astropy').mkdir(parents=True)
        env[f'XDG_{name.upper()}_HOME'] = str(tmp_path / name)
    env['PYTHON_KEYRING_BACKEND'] = 'keyring.backends.null.Keyring'
    folder = images[0][0].parent
    # The pattern is quoted (no shell here): the command expands it.
    proc = subprocess.run([str(script), 'solve', str(folder / 'field*.fits'), '--output-dir',
                           str(tmp_path / 'out'), '--json', '-q'],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = json_lines(proc.stdout)
    assert len(records) == 3
    for record, (path, field) in zip(records, images):
        check_record(record, field, tmp_path / 'out' / f'{path.stem}.wcs')
    assert list((tmp_path / 'cache' / 'astropy').iterdir())    # it used the private cache
    bad = subprocess.run([sys.executable, '-m', 'astrometry_query.cli', 'solve', '--dec', 'x',
                          str(images[0][0])], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert bad.returncode == EXIT_USAGE and bad.stdout == ''
    assert bad.stderr.strip().splitlines()[-1].startswith(
        'astrometry-query: UsageError: argument --dec: expected degrees')


@requires_solver
def test_every_line_on_stderr_is_the_command_s_and_says_it_once(images, capsys):
    """Status lines, warnings and the error alike start with the command's
    name, and the error's paragraph is printed once."""
    path = images[0][0]
    code, out, err = run(capsys, 'solve', path, '--scale-low', '2', '--scale-high', '3',
                         '--ra', '10', '--dec', '10', '--radius', '1', '--no-cache')
    assert code == EXIT_UNSOLVED
    lines = err.strip().splitlines()
    assert lines and all(line.startswith('astrometry-query: ') for line in lines), lines
    assert any(line.startswith('astrometry-query: job ') for line in lines)   # the status line
    failures = [line for line in lines if 'SolveFailedError' in line]
    assert len(failures) == 1 and err.count('no solution was found') == 1
    assert 'pixel scales of 2-3 arcsec/pixel, within 1 deg of RA 10.0000 Dec +10.0000' \
        in failures[0]
