"""The WCS written into the observer's own frame (write_wcs, --in-place), with
the real solver: pixel data byte for byte, every other card and HDU kept, the
old WCS commented out, atomic, permissions kept; sidecars where a header
cannot be rewritten."""
import gzip
import os

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from astrometry_query import AstrometryNetClass, conf
from astrometry_query.cli import main
from astrometry_query.exceptions import InvalidInputError
from astrometry_query.frames import ORIGINAL_KEY, sidecar_path, write_wcs
from astrometry_query.datasets import render_field, wcs_rms_error
from real_server import requires_solver

pytestmark = requires_solver

SCALE = {'scale': (10, 14) * u.arcsec / u.pix}
CAMERA = {'OBJECT': 'NGC 3077', 'EXPTIME': 120.0, 'FILTER': 'Ha', 'DATE-OBS': '2026-12-07T21:04:05',
          'GAIN': 1.6, 'CCD-TEMP': -10.0}


@pytest.fixture(scope='module')
def field():
    return render_field(SkyCoord(150.3, 25.1, unit='deg'), pixel_scale=12 * u.arcsec / u.pix,
                        shape=(300, 400), rotation=37 * u.deg, fwhm=2.8, hot_pixels=4, seed=8)


def _frame(field, path, *, old_wcs=True, layout='mef'):
    """A camera frame: 16-bit data with BZERO, camera cards, a wrong old WCS
    (with SIP), and (``mef``) the image in an extension between two others."""
    data = np.clip(field.data, 0, 65000).astype(np.uint16)
    header = fits.Header(CAMERA)
    if old_wcs:
        wrong = WCS(naxis=2)
        wrong.wcs.ctype = ['RA---TAN-SIP', 'DEC--TAN-SIP']
        wrong.wcs.crval, wrong.wcs.crpix = [10.0, 10.0], [1.0, 1.0]
        wrong.wcs.cdelt = [-0.01, 0.01]
        header.extend(wrong.to_header(relax=True))
        header['A_ORDER'], header['B_ORDER'], header['A_2_0'] = 2, 2, 1e-6
    if layout == 'mef':
        table = fits.BinTableHDU.from_columns([fits.Column('star', 'J', array=[1, 2, 3])],
                                              name='CAT')
        fits.HDUList([fits.PrimaryHDU(header=fits.Header({'ORIGIN': 'cam'})),
                      fits.ImageHDU(data, header, name='SCI'), table]).writeto(path)
    else:
        fits.PrimaryHDU(data, header).writeto(path)
    return path


def _bytes_after_header(path, index):
    with fits.open(path) as hdul:
        info = hdul.fileinfo(index)
    return open(path, 'rb').read()[info['datLoc']:]


def test_the_wcs_goes_into_the_frame_and_nothing_else_changes(field, local, tmp_path):
    path = _frame(field, tmp_path / 'frame.fits')
    os.chmod(path, 0o640)
    data_and_after = _bytes_after_header(path, 1)
    primary = open(path, 'rb').read()[:2880]
    header = local.solve_from_image(path, verbose=False, cache=False, write_wcs=True, **SCALE)
    assert open(path, 'rb').read()[:2880] == primary                   # HDU 0 untouched
    assert _bytes_after_header(path, 1) == data_and_after              # data and HDU 2 too
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)
    with fits.open(path) as hdul:
        sci = hdul['SCI'].header
        assert [h.name for h in hdul] == ['PRIMARY', 'SCI', 'CAT']
        assert list(hdul['CAT'].data['star']) == [1, 2, 3]
        np.testing.assert_array_equal(hdul['SCI'].data,
                                      np.clip(field.data, 0, 65000).astype(np.uint16))
    for key, value in CAMERA.items():
        assert sci[key] == value
    assert sci['AN_JOBID'] == header['AN_JOBID']
    assert any(f'job {header["AN_JOBID"]}' in h for h in sci['HISTORY'])
    originals = [c for c in sci['COMMENT'] if c.startswith(ORIGINAL_KEY)]
    assert any('CRVAL1' in c and '10.0' in c for c in originals)
    assert any('A_2_0' in c for c in originals)
    assert sci.get('A_2_0') == header.get('A_2_0')            # the solution's SIP, if any, only
    assert sci['CRVAL1'] == header['CRVAL1']
    # the frame's own WCS is now the solution, as right as the one returned
    assert wcs_rms_error(field.wcs, sci, field.data.shape) < 0.15
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        WCS(sci)                  # one WCS, nothing mixed: astropy reads it without a word


def test_a_crash_leaves_the_original_whole(field, local, tmp_path, monkeypatch):
    path = _frame(field, tmp_path / 'frame.fits', layout='single')
    before = path.read_bytes()
    header = local.solve_from_image(path, verbose=False, cache=False, **SCALE)

    def crash(*args):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(OSError, match='disk full'):
        write_wcs(path, header)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['frame.fits']   # no temporary left


def test_a_tile_compressed_frame_takes_it_too(field, local, tmp_path):
    data = np.clip(field.data, 0, 65000).astype(np.uint16)
    path = tmp_path / 'frame.fits.fz'
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, fits.Header(CAMERA))]).writeto(path)
    compressed = _bytes_after_header(path, 1)
    header = local.solve_from_image(path, verbose=False, cache=False, write_wcs=True, **SCALE)
    assert _bytes_after_header(path, 1) == compressed            # the compressed data untouched
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[1].data, data)
        assert hdul[1].header['CRVAL1'] == header['CRVAL1'] and hdul[1].header['OBJECT'] == 'NGC 3077'
    assert wcs_rms_error(field.wcs, fits.getheader(path, 1), field.data.shape) < 0.15


def test_gzip_and_pictures_get_a_sidecar(field, local, tmp_path):
    plain = _frame(field, tmp_path / 'frame.fits', old_wcs=False, layout='single')
    gz = tmp_path / 'night.fits.gz'
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    png = tmp_path / 'frame.png'
    levels = np.clip(field.data / np.percentile(field.data, 99.9) * 255, 0, 255).astype(np.uint8)
    Image.fromarray(levels).save(png)
    for path in (gz, png):
        before = path.read_bytes()
        header = local.solve_from_image(path, verbose=False, cache=False, write_wcs=True, **SCALE)
        assert path.read_bytes() == before                             # left alone
        wcs = sidecar_path(path)
        assert wcs.name in ('night.wcs', 'frame.wcs') and fits.getheader(wcs)['CRVAL1'] == \
            header['CRVAL1']
    with pytest.raises(InvalidInputError, match=r'gzip-compressed .* \(night.wcs\)'):
        write_wcs(gz, header)


def test_write_wcs_needs_a_file(field, local):
    before = len(local.backend.my_jobs())
    with pytest.raises(InvalidInputError, match='write_wcs=True .* file path'):
        local.solve_from_image(field.data, verbose=False, write_wcs=True, **SCALE)
    assert len(local.backend.my_jobs()) == before


@pytest.mark.slow
def test_a_batch_writes_every_frame_and_says_where(field, local, tmp_path):
    frames = [_frame(field, tmp_path / f'f{i}.fits', layout='single') for i in range(3)]
    table = local.solve_many(frames, verbose=False, cache=False, write_wcs=True, **SCALE)
    assert list(table['status']) == ['success'] * 3
    assert list(table['wcs_file']) == [str(p) for p in frames]
    for path in frames:
        assert wcs_rms_error(field.wcs, fits.getheader(path), field.data.shape) < 0.15


def test_through_the_server_too(field, tmp_path, nova_server):
    path = _frame(field, tmp_path / 'frame.fits')
    with conf.set_temp('poll_interval', 0.1), AstrometryNetClass(
            api_key=nova_server.api_key, server=nova_server.url, backend='nova') as nova:
        header = nova.solve_from_image(path, verbose=False, cache=False, write_wcs=True, **SCALE)
    sci = fits.getheader(path, 'SCI')
    assert sci['AN_JOBID'] == header['AN_JOBID'] and sci['OBJECT'] == 'NGC 3077'
    assert wcs_rms_error(field.wcs, sci, field.data.shape) < 0.15


@pytest.mark.slow
def test_the_command_line_in_place(field, tmp_path, capsys):
    frames = [_frame(field, tmp_path / f'n{i}.fits', layout='single') for i in range(2)]
    png = tmp_path / 'n2.png'
    Image.fromarray(np.clip(field.data / np.percentile(field.data, 99.9) * 255, 0, 255)
                    .astype(np.uint8)).save(png)
    code = main(['solve', *map(str, frames), str(png), '--in-place', '--scale-low', '10',
                 '--scale-high', '14', '--scale-units', 'arcsecperpix', '-q'])
    out = capsys.readouterr().out
    assert code == 0, out
    for path in frames:
        assert fits.getheader(path)['OBJECT'] == 'NGC 3077'
        assert wcs_rms_error(field.wcs, fits.getheader(path), field.data.shape) < 0.15
    assert (tmp_path / 'n2.wcs').is_file() and not (tmp_path / 'n0.wcs').exists()
    assert main(['solve', str(frames[0]), '--in-place', '-o', 'x.wcs']) == 2
