"""Plots of a real local solve (astrometry_query.plotting): the WCSAxes, the
annotation circles and labels, the matches and residuals of the corr file,
what the saved figure holds, and typed errors for bad arguments.

The field is the Pleiades drawn from the Tycho-2 index itself
(astrometry_query.simulate), so it has named stars and NGC/IC objects.
"""
import io
import re
import subprocess
import sys

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import NDData
from astropy.table import Table
from astropy.wcs import WCS

import astrometry_query
from astrometry_query import AstrometryNetClass, conf
from astrometry_query.exceptions import (AstrometryNetError, InvalidInputError,
                                         JobNotFoundError)
from astrometry_query.simulate import render_field

from real_server import requires_solver

matplotlib = pytest.importorskip('matplotlib')
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from astropy.visualization import LinearStretch, ZScaleInterval  # noqa: E402
from astropy.visualization.wcsaxes import WCSAxes  # noqa: E402

from astrometry_query.plotting import plot_annotations, plot_solution  # noqa: E402

pytestmark = [pytest.mark.filterwarnings('ignore::astropy.wcs.FITSFixedWarning'), requires_solver]

SHAPE = (400, 500)            # ny, nx
SCALE = 12.0                  # arcsec / pixel
YELLOW = (0xfc, 0xc4, 0x19)   # the residual arrows
GOLD = (0xff, 0xd4, 0x3b)     # named stars


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    """This module's job store (conf is read at call time: every test uses it)."""
    return tmp_path_factory.mktemp('plotting')


@pytest.fixture(autouse=True)
def _module_store(store):
    with conf.set_temp('local_data_dir', str(store / 'local')):
        yield


@pytest.fixture(scope='module')
def solved(store):
    """The Pleiades solved by the local backend: (client, header, path, field)."""
    field = render_field(SkyCoord(56.75, 24.12, unit='deg'), pixel_scale=SCALE * u.arcsec / u.pix,
                         shape=SHAPE, rotation=20 * u.deg, fwhm=2.5, background=50.0, seed=5)
    path = field.writeto(store / 'pleiades.fits', truth='none')
    with conf.set_temp('local_data_dir', str(store / 'local')):
        client = AstrometryNetClass(backend='local')
        header = client.solve_from_image(path, scale=(11, 13) * u.arcsec / u.pix, verbose=False,
                                         cache=False, solve_timeout=60)
    yield client, header, path, field
    client.close()
    plt.close('all')


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close('all')


def _by_gid(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _png(ax):
    """The figure saved as PNG, read back as an RGB array."""
    from PIL import Image
    buf = io.BytesIO()
    ax.figure.savefig(buf, format='png', dpi=80)
    buf.seek(0)
    with Image.open(buf) as im:
        assert im.format == 'PNG'
        return np.asarray(im.convert('RGB')).astype(int)


def _near(pixels, rgb, tol=30):
    return int(np.sum(np.all(np.abs(pixels - np.array(rgb)) <= tol, axis=2)))


def _same_wcs(ax, header):
    wcs = WCS(header)
    assert ax.wcs.wcs.ctype[0].startswith('RA---TAN')
    np.testing.assert_allclose(ax.wcs.wcs.crval, wcs.wcs.crval)
    np.testing.assert_allclose(ax.wcs.wcs.crpix, wcs.wcs.crpix)
    np.testing.assert_allclose(ax.wcs.pixel_scale_matrix, wcs.pixel_scale_matrix)
    x, y = np.array([0.0, 250.0, 499.0]), np.array([0.0, 200.0, 399.0])
    np.testing.assert_allclose(ax.wcs.all_pix2world(x, y, 0), wcs.all_pix2world(x, y, 0))


# -- plot_annotations ---------------------------------------------------------------------------
@pytest.mark.slow
def test_annotations_on_wcsaxes(solved):
    client, header, path, _ = solved
    table = client.get_annotations(header)
    assert len(table) >= 5 and 'Alcyone' in list(table['name'])
    ax = plot_annotations(path, header, client=client)
    assert isinstance(ax, WCSAxes)
    _same_wcs(ax, header)
    assert ax.get_xlim() == (-0.5, SHAPE[1] - 0.5) and ax.get_ylim() == (-0.5, SHAPE[0] - 0.5)
    (image,) = ax.get_images()
    assert image.get_array().shape == SHAPE
    # one circle per object, centred on its (FITS 1-based) pixel
    (circles,) = _by_gid(ax, 'annotations')
    boxes = [p.get_extents() for p in circles.get_paths()]
    assert len(boxes) == len(table)
    centres = np.array([[(b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2] for b in boxes])
    np.testing.assert_allclose(centres, np.c_[table['pixelx'], table['pixely']] - 1, atol=1e-6)
    # every object labelled with its name
    labels = _by_gid(ax, 'annotation-label')
    assert len(labels) == len(table)
    texts = {t.get_text() for t in labels}
    assert {'Alcyone', 'Merope', 'Electra'} <= texts
    # a label sits next to its object
    alcyone = next(t for t in labels if t.get_text() == 'Alcyone')
    row = table[list(table['name']).index('Alcyone')]
    assert alcyone.xy == pytest.approx((row['pixelx'] - 1, row['pixely'] - 1))
    # the labels were spread so that they do not cover each other
    boxes = [t.get_window_extent() for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            inter = a.intersection(a, b)
            small = min(a.width * a.height, b.width * b.height)
            assert inter is None or inter.width * inter.height < 0.1 * small
    # the figure holds the image (not blank) and the gold circles of the named stars
    pixels = _png(ax)
    assert pixels.std() > 20
    assert _near(pixels, GOLD) > 50


def test_annotations_from_a_job_id_a_record_and_the_default_client(solved, monkeypatch):
    client, header, path, _ = solved
    n = len(client.get_annotations(header))
    ax = plot_annotations(path, int(header['AN_JOBID']), client=client)
    _same_wcs(ax, header)
    assert len(_by_gid(ax, 'annotations')[0].get_paths()) == n
    record = client.get_job_info(header)
    ax = plot_annotations(path, record, client=client, nbright=2)
    bright = client.get_annotations(header, nbright=2)
    assert len(_by_gid(ax, 'annotations')[0].get_paths()) == len(bright) < n
    # client=None: the module's AstrometryNet, looked up at call time
    monkeypatch.setattr(astrometry_query, 'AstrometryNet', client)
    ax = plot_annotations(path, header)
    assert len(_by_gid(ax, 'annotations')[0].get_paths()) == n


@pytest.mark.parametrize('kind', ['array', 'hdulist', 'hdu', 'nddata', 'none'])
def test_annotations_on_any_image(solved, kind):
    client, header, path, field = solved
    image = {'array': field.data, 'hdulist': fits.open(path), 'hdu': fits.open(path)[0],
             'nddata': NDData(field.data), 'none': None}[kind]
    table = client.get_annotations(header)
    ax = plot_annotations(image, header, client=client, labels=False, grid=False,
                          marker_radius=1 * u.arcmin)
    assert _by_gid(ax, 'annotation-label') == []
    assert len(_by_gid(ax, 'annotations')[0].get_paths()) == len(table)
    if kind == 'none':
        assert ax.get_images() == [] and ax.get_facecolor()[:3] == (0, 0, 0)
        assert _near(_png(ax), GOLD) > 50
    else:
        np.testing.assert_allclose(ax.get_images()[0].get_array(), field.data, rtol=1e-6)


def test_marker_radius_takes_pixels_or_an_angle(solved):
    client, header, _, _ = solved
    table = client.get_annotations(header)
    point = np.asarray(table['radius']) == 0
    for radius, pixels in ((10 * u.pix, 10.0), (2 * u.arcmin, 120 / SCALE), (7, 7.0)):
        ax = plot_annotations(None, header, client=client, marker_radius=radius, labels=False)
        paths = _by_gid(ax, 'annotations')[0].get_paths()
        sizes = np.array([p.get_extents().width / 2 for p in paths])
        np.testing.assert_allclose(sizes[point], pixels, rtol=2e-3)


def test_annotations_given_as_a_table(solved):
    client, header, path, _ = solved
    wcs_only = fits.Header(header, copy=True)
    del wcs_only['AN_JOBID'], wcs_only['AN_SUBID']
    table = client.get_annotations(header)[:3]
    ax = plot_annotations(path, wcs_only, client=client, annotations=table)
    assert len(_by_gid(ax, 'annotations')[0].get_paths()) == 3
    with pytest.raises(InvalidInputError, match='annotations: the header names no job'):
        plot_annotations(path, wcs_only, client=client)


# -- plot_solution ----------------------------------------------------------------------------
def _corr(client, header):
    with client.download(header, 'corr') as hdul:
        return Table(hdul[1].data)


def test_solution_matches_and_residuals(solved):
    client, header, path, _ = solved
    corr = _corr(client, header)
    n = len(corr)
    assert n >= 12 and {'field_x', 'field_y', 'index_x', 'index_y', 'index_ra'} <= set(corr.colnames)
    with client.download(header, 'axy') as hdul:
        n_sources = len(hdul[1].data)
    ax = plot_solution(path, header, client=client, residuals='corr')
    assert isinstance(ax, WCSAxes)
    _same_wcs(ax, header)
    assert len(_by_gid(ax, 'sources')[0].get_offsets()) == n_sources > n
    matched = _by_gid(ax, 'matched-sources')[0].get_offsets()
    stars = _by_gid(ax, 'catalog-stars')[0].get_offsets()
    assert len(matched) == len(stars) == n
    np.testing.assert_allclose(matched, np.c_[corr['field_x'], corr['field_y']] - 1)
    np.testing.assert_allclose(stars, np.c_[corr['index_x'], corr['index_y']] - 1)
    (arrows,) = _by_gid(ax, 'residuals')
    dx, dy = corr['field_x'] - corr['index_x'], corr['field_y'] - corr['index_y']
    assert arrows.N == n
    np.testing.assert_allclose(arrows.U, dx)
    np.testing.assert_allclose(arrows.V, dy)
    # sub-pixel residuals are magnified to be seen: at least 100 times here
    assert arrows.scale_units == 'xy' and 1 / arrows.scale >= 100
    # the summary says what the corr file says
    (summary,) = _by_gid(ax, 'solution-summary')
    text = summary.get_text()
    rms = np.sqrt(np.mean(dx ** 2 + dy ** 2))
    assert int(re.search(r'(\d+) matches', text).group(1)) == n
    assert float(re.search(r'RMS residual ([\d.]+) px', text).group(1)) == pytest.approx(rms, rel=5e-3)
    arcsec = float(re.search(r'\(([\d.]+)\u2033\)', text).group(1))
    assert arcsec == pytest.approx(rms * SCALE, rel=1e-2)
    pixels = _png(ax)
    assert pixels.std() > 20
    assert _near(pixels, YELLOW, tol=40) > 30          # the arrows show


def test_solution_residuals_through_the_returned_wcs(solved):
    client, header, path, _ = solved
    corr = _corr(client, header)
    ix, iy = WCS(header).all_world2pix(corr['index_ra'], corr['index_dec'], 1)
    ax = plot_solution(path, header, client=client, sources=False)     # 'wcs': the default
    assert _by_gid(ax, 'sources') == []
    (arrows,) = _by_gid(ax, 'residuals')
    np.testing.assert_allclose(arrows.U, corr['field_x'] - ix)
    rms = np.sqrt(np.mean((corr['field_x'] - ix) ** 2 + (corr['field_y'] - iy) ** 2))
    text = _by_gid(ax, 'solution-summary')[0].get_text()
    assert float(re.search(r'RMS residual ([\d.]+) px', text).group(1)) == pytest.approx(rms, rel=5e-3)


def test_solution_scale_and_key(solved):
    client, header, _, _ = solved
    ax = plot_solution(None, header, client=client, scale=250, key_length=1 * u.arcsec,
                       legend=False)
    (arrows,) = _by_gid(ax, 'residuals')
    assert arrows.scale == pytest.approx(1 / 250)
    key = next(c for c in ax.artists + ax.get_children() if type(c).__name__ == 'QuiverKey')
    assert key.U == pytest.approx(1 / SCALE, rel=1e-3)
    assert '\u00d7250' in key.text.get_text()
    assert ax.get_legend() is None


def test_overlays_share_one_axes(solved):
    client, header, path, _ = solved
    ax = plot_solution(path, header, client=client)
    again = plot_annotations(None, header, ax=ax, client=client)
    assert again is ax and len(ax.get_images()) == 1
    assert _by_gid(ax, 'annotations') and _by_gid(ax, 'residuals')


def test_solution_from_given_tables(solved):
    client, header, _, _ = solved
    corr = _corr(client, header)[:5]
    sources = Table({'X': [10.0, 20.0], 'Y': [30.0, 40.0]})
    wcs_only = fits.Header(header, copy=True)
    del wcs_only['AN_JOBID'], wcs_only['AN_SUBID']
    ax = plot_solution(None, wcs_only, client=client, corr=corr, sources=sources)
    assert len(_by_gid(ax, 'catalog-stars')[0].get_offsets()) == 5
    assert len(_by_gid(ax, 'sources')[0].get_offsets()) == 2
    empty = plot_solution(None, wcs_only, client=client, corr=corr[:0], sources=False)
    assert _by_gid(empty, 'solution-summary')[0].get_text() == 'no matches'


def test_a_false_match_is_drawn_but_kept_out_of_the_rms(solved):
    client, header, _, _ = solved
    corr = _corr(client, header)
    good = np.hypot(corr['field_x'] - corr['index_x'], corr['field_y'] - corr['index_y'])
    corr['field_x'][0] += 14.0                    # a corner star paired with a neighbour
    ax = plot_solution(None, header, client=client, corr=corr, sources=False, residuals='corr')
    assert _by_gid(ax, 'residuals')[0].N == len(corr)
    text = _by_gid(ax, 'solution-summary')[0].get_text()
    rms = float(re.search(r'RMS residual ([\d.]+) px', text).group(1))
    assert rms == pytest.approx(np.sqrt(np.mean(good[1:] ** 2)), rel=5e-3)
    assert '1 over ' in text and 'not in the RMS' in text


# -- bad input --------------------------------------------------------------------------------
def test_bad_arguments_are_named(solved):
    client, header, path, _ = solved
    other = WCS(naxis=2)
    other.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    other.wcs.crval = [10.0, 10.0]
    other.wcs.cdelt = [-0.001, 0.001]
    cases = [
        (plot_annotations, (path / 'missing.fits', header), {}, r'image: no such file'),
        (plot_annotations, (np.ones((100, 120)), header), {}, r'image: .*120x100 .* for 500x400'),
        (plot_annotations, (path, 'abc'), {}, r'job_or_header: A job must be'),
        (plot_annotations, (path, fits.Header()), {}, r'job_or_header: this header has no WCS'),
        (plot_annotations, (path, header), {'client': object()}, r'client must be'),
        (plot_annotations, (path, header), {'ax': plt.figure().add_subplot()},
         r'ax must be a WCSAxes'),
        (plot_annotations, (path, header), {'ax': plt.figure().add_subplot(projection=other)},
         r'ax shows another WCS'),
        (plot_annotations, (path, header), {'interval': 'zscale'}, r'interval must be'),
        (plot_annotations, (path, header), {'stretch': 3}, r'stretch must be'),
        (plot_annotations, (path, header), {'marker_radius': 5 * u.kg}, r'marker_radius must'),
        (plot_annotations, (path, header), {'marker_radius': -2}, r'marker_radius must'),
        (plot_annotations, (path, header), {'annotations': 'M42'}, r'annotations must be'),
        (plot_solution, (path, header), {'residuals': 'both'}, r"residuals must be 'corr'"),
        (plot_solution, (path, header), {'scale': 0}, r'scale must be a positive number'),
        (plot_solution, (path, header), {'scale': 2 * u.m}, r'scale must be a positive number'),
        (plot_solution, (path, header), {'key_length': 'long'}, r'key_length must be'),
        (plot_solution, (path, header), {'corr': Table({'x': [1.0]})},
         r'corr has no column field_x'),
        (plot_solution, (path, header), {'sources': Table({'a': [1.0]})},
         r'sources must be a source list'),
        (plot_solution, (path, header), {'corr': 42}, r'corr must be a FITS table'),
    ]
    for function, args, kwargs, message in cases:
        kwargs.setdefault('client', client)
        with pytest.raises(InvalidInputError, match=message):
            function(*args, **kwargs)
    assert issubclass(InvalidInputError, (AstrometryNetError, ValueError))


def test_unknown_job_is_a_typed_error(solved):
    client, _, path, _ = solved
    with pytest.raises(JobNotFoundError):
        plot_solution(path, 987654, client=client)


@pytest.mark.slow
def test_importing_the_package_does_not_import_matplotlib():
    code = ('import sys, astrometry_query, astrometry_query.plotting, '
            'astrometry_query.local.annotate; '
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'False'


def test_interval_and_stretch_are_used(solved):
    client, header, path, field = solved
    ax = plot_annotations(path, header, client=client, interval=ZScaleInterval(),
                          stretch=LinearStretch(), labels=False)
    norm = ax.get_images()[0].norm
    low, high = ZScaleInterval().get_limits(field.data)
    assert (norm.vmin, norm.vmax) == pytest.approx((low, high))
    assert isinstance(norm.stretch, LinearStretch)
    ax = plot_annotations(path, header, client=client, interval=(100, 200 * u.one), labels=False)
    assert (ax.get_images()[0].norm.vmin, ax.get_images()[0].norm.vmax) == (100, 200)
