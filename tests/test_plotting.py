"""Plots of a real local solve (astrometry_query.plotting): the WCSAxes, the
annotation circles and labels, the matches and residuals of the corr file,
what the saved figure holds, and typed errors for bad arguments.

The field is the Pleiades drawn from the Tycho-2 index itself
(astrometry_query.datasets), so it has named stars and NGC/IC objects.
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
from astrometry_query.datasets import render_field

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


@pytest.fixture(scope='module')
def solve(solved, store):
    """solve(name, **render_field arguments) -> (header, path, field): more Pleiades fields
    (another shape, a flip...), solved once each by the same client."""
    client, done = solved[0], {}

    def solve(name, **kwargs):
        if name not in done:
            kwargs.setdefault('rotation', 20 * u.deg)
            field = render_field(SkyCoord(56.75, 24.12, unit='deg'), fwhm=2.5, background=50.0,
                                 pixel_scale=SCALE * u.arcsec / u.pix, seed=5, **kwargs)
            path = field.writeto(store / f'{name}.fits', truth='none')
            header = client.solve_from_image(path, scale=(11, 13) * u.arcsec / u.pix,
                                             verbose=False, cache=False, solve_timeout=60)
            done[name] = header, path, field
        return done[name]
    return solve


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


def _arrows(ax):
    """x, y, U, V of every residual arrow drawn (cut or not), and which were cut."""
    quivers = _by_gid(ax, 'residuals') + _by_gid(ax, 'residuals-cut')
    cut = np.concatenate([np.full(q.N, q.get_gid() == 'residuals-cut') for q in quivers])
    x, y, u_, v_ = (np.concatenate([np.asarray(getattr(q, k), float) for q in quivers])
                    for k in ('X', 'Y', 'U', 'V'))
    return x, y, u_, v_, cut


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
    # client=None: never the package's AstrometryNet (the plots are below it) ...
    monkeypatch.delattr(astrometry_query, 'AstrometryNet')
    # ... but the client a record is bound to,
    ax = plot_annotations(path, record.bind(client), nbright=2)
    assert len(_by_gid(ax, 'annotations')[0].get_paths()) == len(bright)
    # and for a header, the objects computed from its WCS, as the local backend does
    ax = plot_annotations(path, header)
    circles = _by_gid(ax, 'annotations')[0].get_paths()
    assert len(circles) == n
    table = client.get_annotations(header)
    assert np.allclose(sorted(c.get_extents().x0 + c.get_extents().width / 2 for c in circles),
                       sorted(np.asarray(table['pixelx']) - 1.0), atol=0.01)


def test_without_a_client_what_needs_one_says_so(solved, monkeypatch):
    client, header, path, _ = solved
    job_id = int(header['AN_JOBID'])
    with pytest.raises(InvalidInputError, match=r'job_or_header: .*pass client=, the '
                                                r'AstrometryNetClass'):
        plot_annotations(path, job_id)
    unbound = client.get_job_info(header).bind(None)
    with pytest.raises(InvalidInputError, match=r'job_or_header: .*pass client='):
        plot_solution(path, unbound)
    with pytest.raises(InvalidInputError, match=r"corr and sources: the job's files are "
                                                r'downloaded through a client; pass client='):
        plot_solution(path, header)
    corr = _corr(client, header)
    with pytest.raises(InvalidInputError, match=r'^sources: .*pass client='):
        plot_solution(path, header, corr=corr)
    ax = plot_solution(path, header, corr=corr, sources=False)
    assert len(_by_gid(ax, 'catalog-stars')[0].get_offsets()) == len(corr)
    # no astrometry.net to compute the objects from the WCS: the error names client=
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(InvalidInputError, match=r'annotations: without a client .*missing '
                                                r'here .*pass client=.*or give annotations='):
        plot_annotations(path, header)


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
    x, y, u_, v_, cut = _arrows(ax)
    # matched to the corr rows by where they start (the catalogue stars)
    order = [int(np.argmin(np.hypot(ix - 1 - a, iy - 1 - b))) for a, b in zip(x, y)]
    assert sorted(order) == list(range(len(corr)))
    dx, dy = (corr['field_x'] - ix)[order], (corr['field_y'] - iy)[order]
    np.testing.assert_allclose(u_[~cut], dx[~cut])
    np.testing.assert_allclose(v_[~cut], dy[~cut])
    # an arrow cut at the frame keeps its direction
    np.testing.assert_allclose(np.arctan2(v_[cut], u_[cut]), np.arctan2(dy[cut], dx[cut]),
                               atol=1e-6)
    assert np.all(np.hypot(u_[cut], v_[cut]) < np.hypot(dx[cut], dy[cut]))
    rms = np.sqrt(np.mean((corr['field_x'] - ix) ** 2 + (corr['field_y'] - iy) ** 2))
    text = _by_gid(ax, 'solution-summary')[0].get_text()
    assert float(re.search(r'RMS residual ([\d.]+) px', text).group(1)) == pytest.approx(rms, rel=5e-3)


def test_solution_scale_and_key(solved):
    client, header, _, _ = solved
    ax = plot_solution(None, header, client=client, scale=250, key_length=1 * u.arcsec,
                       legend=False)
    (arrows,) = _by_gid(ax, 'residuals')
    assert arrows.scale == pytest.approx(1 / 250)
    key = _key(ax)
    assert key.get_gid() == 'residuals-key'
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
    x, y, u_, v_, cut = _arrows(ax)
    assert len(x) == len(corr)
    text = _by_gid(ax, 'solution-summary')[0].get_text()
    rms = float(re.search(r'RMS residual ([\d.]+) px', text).group(1))
    assert rms == pytest.approx(np.sqrt(np.mean(good[1:] ** 2)), rel=5e-3)
    assert '1 over ' in text and 'not in the RMS' in text


def test_arrows_leaving_the_frame_are_cut_at_its_edge_and_counted(solved):
    client, header, _, _ = solved
    corr = _corr(client, header)
    corr['field_x'][0] += 14.0                    # magnified, 14 px go far out of the image
    ax = plot_solution(None, header, client=client, corr=corr, sources=False, residuals='corr')
    (arrows,) = _by_gid(ax, 'residuals')
    x, y, u_, v_, cut = _arrows(ax)
    # every arrow drawn ends in the frame (scale_units='xy': U / scale data units long)
    ends = np.c_[x + u_ / arrows.scale, y + v_ / arrows.scale]
    assert np.all((ends >= -0.5) & (ends <= [SHAPE[1] - 0.5, SHAPE[0] - 0.5]))
    # the false match's arrow is one of those cut: orange, its end marked with a square
    start = np.array([corr['index_x'][0] - 1, corr['index_y'][0] - 1])
    false = int(np.argmin(np.hypot(x - start[0], y - start[1])))
    assert cut[false] and cut.sum() >= 1
    (cut_arrows,) = _by_gid(ax, 'residuals-cut')
    assert matplotlib.colors.to_hex(cut_arrows.get_facecolor()[0]) == '#ff922b'
    (marks,) = _by_gid(ax, 'residuals-cut-ends')
    np.testing.assert_allclose(marks.get_offsets(), ends[cut])
    edge = np.min(np.abs(np.r_[ends[false] + 0.5, [SHAPE[1] - 0.5, SHAPE[0] - 0.5] - ends[false]]))
    assert edge < 0.02 * min(SHAPE)               # at the edge, not short of it
    # counted in the summary and the legend
    text = _by_gid(ax, 'solution-summary')[0].get_text()
    n = int(cut.sum())
    assert f'{n} arrow{"s" if n > 1 else ""} cut at the frame' in text
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f'arrows cut at the frame ({n})' in legend
    # the figure shows them: orange pixels at the frame's edge
    assert _near(_png(ax), (0xff, 0x92, 0x2b), tol=25) > 10


def _key(ax):
    (key,) = [a for a in ax.get_children() if type(a).__name__ == 'QuiverKey']
    return key


def _extents(ax):
    """Display boxes, after a draw, of the key (arrow and label), the summary (with its
    box), the legend and the guides, for the figure as saved."""
    from matplotlib.transforms import Bbox
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    key = _key(ax)
    offset = key.get_transform().transform((key.X, key.Y))
    arrow = Bbox.union([p.get_extents(key.vector.get_transform())
                        for p in key.vector.get_paths()]).translated(*offset)
    (summary,) = _by_gid(ax, 'solution-summary')
    boxes = {'key': Bbox.union([arrow, key.text.get_window_extent(renderer)]),
             'summary': Bbox.union([summary.get_window_extent(renderer),
                                    summary.get_bbox_patch().get_window_extent(renderer)])}
    if ax.get_legend() is not None:
        boxes['legend'] = ax.get_legend().get_window_extent(renderer)
    guides = _by_gid(ax, 'guides')
    if guides:
        boxes['guides'] = guides[0].get_window_extent(renderer)
    return boxes


@pytest.mark.parametrize('shape', [pytest.param(SHAPE, id='landscape'),
                                   # another field to solve for each:
                                   pytest.param((900, 240), id='tall', marks=pytest.mark.slow),
                                   pytest.param((220, 900), id='wide', marks=pytest.mark.slow)])
@pytest.mark.parametrize('guides', [False, True], ids=['plain', 'guides'])
def test_the_key_never_overlaps_the_summary(solved, solve, shape, guides):
    client = solved[0]
    header, path, _ = solved[1:] if shape == SHAPE else solve(f'{shape[0]}x{shape[1]}',
                                                               shape=shape)
    extra = {'compass': True, 'scalebar': True} if guides else {}
    ax = plot_solution(path, header, client=client, **extra)
    boxes = _extents(ax)
    key = boxes.pop('key')
    frame = ax.get_window_extent()
    assert frame.x0 - 1 <= key.x0 and key.x1 <= frame.x1 + 1
    assert frame.y0 - 1 <= key.y0 and key.y1 <= frame.y1 + 1
    for name, box in boxes.items():
        assert not key.overlaps(box), f'the key overlaps the {name}'
    # the same in axes that the user made, here a panel of a figure: the key keeps clear of
    # the summary even where the panel is too small for everything to fit
    fig = plt.figure(figsize=(10, 4))
    panel = fig.add_subplot(1, 2, 1, projection=WCS(header))
    plot_solution(path, header, ax=panel, client=client, **extra)
    boxes = _extents(panel)
    assert not boxes['key'].overlaps(boxes['summary'])


@pytest.mark.slow
def test_a_sparse_field_keeps_a_dark_sky(solve):
    """Twelve stars on a noisy sky: a percentile range would be all noise (grey)."""
    header, path, field = solve('sparse', shape=SHAPE, max_stars=12, zeropoint=17)
    ax = plot_annotations(path, header, annotations=[], grid=False)
    norm = ax.get_images()[0].norm
    shown = np.ma.filled(norm(field.data), 0.0)
    assert np.median(shown) < 0.15                 # the sky: dark
    sky = np.median(field.data)
    noise = 1.4826 * np.median(np.abs(field.data - sky))
    assert norm.vmin < sky < norm.vmin + 3 * noise   # ...with its noise still showing
    assert np.mean(shown > 0.02) > 0.5
    # every star shows, the brightest white
    peaks = np.array([shown[int(round(y)), int(round(x))] for x, y in field.stars['x', 'y']
                      if 2 <= x < SHAPE[1] - 2 and 2 <= y < SHAPE[0] - 2])
    assert len(peaks) >= 10 and peaks.min() > 3 * np.median(shown) and peaks.max() > 0.95
    # the same normalization as display_norm's and the annotated PNG's
    from astrometry_query.display import display_levels
    from astrometry_query.plotting import display_norm
    assert np.allclose(np.ma.filled(display_norm(field.data)(field.data), 0.0), shown)
    assert np.median(display_levels(field.data)) < 0.15 * 255


def test_axis_labels_on_the_users_axes(solved):
    client, header, path, _ = solved
    ax = plt.figure().add_subplot(projection=WCS(header))
    assert ax.coords[0].get_axislabel() == 'pos.eq.ra'        # astropy's default
    plot_annotations(path, header, ax=ax, client=client)
    assert ax.coords[0].get_axislabel() == 'Right ascension (ICRS)'
    assert ax.coords[1].get_axislabel() == 'Declination (ICRS)'
    # labels of the user's own are kept
    ax = plt.figure().add_subplot(projection=WCS(header))
    ax.coords[0].set_axislabel('RA')
    plot_solution(path, header, ax=ax, client=client)
    assert ax.coords[0].get_axislabel() == 'RA'
    assert ax.coords[1].get_axislabel() == 'Declination (ICRS)'


def _compass(ax):
    """The north and east arrows' directions on the screen (unit vectors, y up)."""
    (guides,) = _by_gid(ax, 'guides')
    out = {}
    for name in ('north', 'east'):
        (arrow,) = [a for a in _descendants(guides) if a.get_gid() == f'compass-{name}']
        path = arrow.get_path()
        # the shaft: from the tail to the first MOVETO after it (the head)
        moves = np.flatnonzero(path.codes == path.MOVETO)
        tail, tip = path.vertices[0], path.vertices[moves[1] - 1]
        out[name] = (tip - tail) / np.hypot(*(tip - tail))
    return out


def _descendants(artist):
    for child in artist.get_children():
        yield child
        yield from _descendants(child)


def _sky_direction(wcs, angle):
    """Unit vector in pixels from the image centre towards position angle ``angle``."""
    ny, nx = SHAPE
    centre = wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
    x, y = wcs.world_to_pixel(centre.directional_offset_by(angle, 1 * u.arcmin))
    vector = np.array([x - (nx - 1) / 2, y - (ny - 1) / 2])
    return vector / np.hypot(*vector)


@pytest.mark.parametrize('flip', [pytest.param(False, id='rotated'),  # another field to solve:
                                  pytest.param(True, id='flipped', marks=pytest.mark.slow)])
def test_the_compass_points_where_the_wcs_says(solved, solve, flip):
    client = solved[0]
    header, path, field = solve('flipped', shape=SHAPE, flip=True, rotation=-35 * u.deg) \
        if flip else solved[1:]
    ax = plot_annotations(path, header, client=client, compass=True, labels=False)
    arrows = _compass(ax)
    for name, angle in (('north', 0 * u.deg), ('east', 90 * u.deg)):
        for wcs in (WCS(header), field.wcs):         # the solution, and the truth
            cosine = np.clip(np.dot(arrows[name], _sky_direction(wcs, angle)), -1, 1)
            assert np.degrees(np.arccos(cosine)) < 1       # (a dot of 1 + 2e-16 is no NaN)
    # north is 20 (35) degrees from the image's y axis; east is 90 degrees
    # counterclockwise from north on the sky as seen from inside (not flipped),
    # clockwise when the image is flipped
    north, east = arrows['north'], arrows['east']
    assert np.dot(north, east) == pytest.approx(0, abs=0.02)
    assert np.sign(north[0] * east[1] - north[1] * east[0]) == (-1 if flip else 1)
    tilt = np.degrees(np.arccos(north[1]))
    assert tilt == pytest.approx(35 if flip else 20, abs=1)
    (label,) = [a for a in _descendants(_by_gid(ax, 'guides')[0])
                if a.get_gid() == 'compass-north-label']
    assert label.get_text() == 'N'


def test_the_scale_bar_has_a_round_length_in_arcmin(solved):
    client, header, path, _ = solved
    ax = plot_solution(path, header, client=client, scalebar=True)
    (guides,) = _by_gid(ax, 'guides')
    parts = list(_descendants(guides))
    (bar,) = [a for a in parts if a.get_gid() == 'scale-bar']
    (label,) = [a for a in parts if a.get_gid() == 'scale-bar-label']
    assert not [a for a in parts if a.get_gid() == 'compass-north']      # compass=False
    pixels = np.ptp(bar.get_xdata())
    assert np.ptp(bar.get_ydata()) == 0                                   # horizontal
    value, unit = re.fullmatch(r'([\d.]+)(\u2032|\u2033|\u00b0)', label.get_text()).groups()
    arcsec = float(value) * {'\u2032': 60, '\u2033': 1, '\u00b0': 3600}[unit]
    # the image is 500 px at 12"/px = 100': a quarter of it, rounded down, is 20'
    assert label.get_text() == '20\u2032'
    scale = np.sqrt(abs(np.linalg.det(WCS(header).pixel_scale_matrix))) * 3600
    assert pixels * scale == pytest.approx(arcsec, rel=1e-6)
    assert pixels * scale == pytest.approx(1200, rel=1e-6)


def test_a_picture_file_is_shown_as_it_is_seen(solved, tmp_path):
    """PNG, JPEG and GIF rows go top down (y = 1 is the top row): new axes keep that."""
    from PIL import Image
    client, header, _, field = solved
    grey = np.clip(field.data / 20, 0, 255).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / 'field.png')
    ax = plot_annotations(tmp_path / 'field.png', header, client=client, labels=False)
    assert ax.get_ylim() == (SHAPE[0] - 0.5, -0.5)
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), grey)
    # a FITS image is shown with y = 1 at the bottom
    ax = plot_annotations(field.data, header, client=client, labels=False)
    assert ax.get_ylim() == (-0.5, SHAPE[0] - 0.5)


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
        (plot_solution, (path, header), {'compass': 'yes'}, r'compass must be True or False'),
        (plot_annotations, (path, header), {'scalebar': 1}, r'scalebar must be True or False'),
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
