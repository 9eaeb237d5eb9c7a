"""Internal: the stars that tie a solution to the sky, as Tables with units (the facade's
``get_matched_stars`` and ``get_image_stars``).

A job's sources matched with catalogue stars through its solved WCS, each
with its residual: the catalogue position through the WCS minus the image
position.  Two sources of matches:

* `match_sources`: every source of the job's ``job.axy`` matched with every
  catalogue star of the field in the installed index files (the local
  backend's and our server's ``matches`` result, ``matches.fits``);
* `from_corr`: the engine's own matches, the quad stars of ``corr.fits``
  (all that nova.astrometry.net offers), with magnitudes from ``rdls.fits``
  when ``corr.fits`` has none.

`image_stars` marks the matched ones among all the sources of a job.
Pixels are FITS 1-based throughout, as in the solver's files.
"""
import io

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, angular_separation
from astropy.io import fits
from astropy.table import Table

from .files import atomic_path
from .local.refine import isolated, mutual_matches
from .local.solver import xy_columns

__all__ = ['match_sources', 'from_corr', 'read_matches', 'write_matches', 'image_stars',
           'mag_column', 'FROM_INDEX_FILES', 'FROM_CORR']

#: meta['source'] of matches made from every catalogue star of the index files.
FROM_INDEX_FILES = 'index files'
#: meta['source'] of the engine's matched quad stars (``corr.fits``).
FROM_CORR = 'corr'
#: The columns of a table of matched stars, and their units.
COLUMNS = {'x': u.pix, 'y': u.pix, 'flux': None, 'ra': u.deg, 'dec': u.deg, 'mag': u.mag,
           'dx': u.pix, 'dy': u.pix, 'residual': u.pix, 'residual_sky': u.arcsec}
# meta key -> FITS card of matches.fits (and its comment).
_CARDS = {'n_matched': ('NMATCH', 'stars matched'),
          'rms_px': ('RMS_PX', '[pix] RMS of the residuals'),
          'rms_arcsec': ('RMS_AS', '[arcsec] RMS of the residuals'),
          'source': ('MSOURCE', 'where the matches come from'),
          'mag_source': ('MAGSRC', 'where the magnitudes come from'),
          'match_radius_px': ('MATCHRAD', '[pix] largest distance of a match'),
          'isolation_px': ('ISOLATE', '[pix] no other star or source this close')}
# Tolerance of the same position read from two files (pixels; arcsec).
_SAME_PX, _SAME_ARCSEC = 1e-3, 0.1


def mag_column(names):
    """The magnitude column of an index star table (``MAG_VT``, ``MAG``...), or None."""
    return next((n for n in names if n.upper().startswith('MAG')), None)


def _matched_table(x, y, flux, ra, dec, mag, wcs, meta):
    """The table of matched stars with their residuals through ``wcs``."""
    x, y, ra, dec = (np.asarray(a, float) for a in (x, y, ra, dec))
    # Stars far outside the field may not convert: NaN, no warning.
    with np.errstate(all='ignore'):
        cx, cy = wcs.all_world2pix(ra, dec, 1, quiet=True)
        sky_ra, sky_dec = wcs.all_pix2world(x, y, 1)
    dx, dy = cx - x, cy - y
    sky = angular_separation(ra * u.deg, dec * u.deg, sky_ra * u.deg, sky_dec * u.deg)
    values = {'x': x, 'y': y, 'flux': flux, 'ra': ra, 'dec': dec, 'mag': mag, 'dx': dx,
              'dy': dy, 'residual': np.hypot(dx, dy), 'residual_sky': sky.to_value(u.arcsec)}
    table = Table([np.asarray(values[name], float) for name in COLUMNS], names=list(COLUMNS),
                  units=list(COLUMNS.values()))
    return _with_meta(table, meta)


def _rms(values):
    values = np.asarray(values, float)
    return float(np.sqrt(np.mean(values ** 2))) if len(values) else float('nan')


def _with_meta(table, meta):
    """``table`` with meta: ``meta`` plus the count and RMS of its residuals."""
    table.meta.clear()
    table.meta.update(meta)
    table.meta.update(n_matched=len(table), rms_px=_rms(table['residual']),
                      rms_arcsec=_rms(table['residual_sky']))
    return table


def match_sources(x, y, flux, wcs, ref_ra, ref_dec, ref_mag=None, *, fwhm=3.0):
    """Match sources with catalogue stars through a solved WCS.

    The catalogue stars are put in the image with ``wcs``; a source and a
    star match when each is the other's nearest, closer than 2 FWHM (at
    least 3 pixels), and neither has a neighbour within 2 FWHM (at least 4
    pixels), as in the refit (`~astrometry_query.local.refine.refine_wcs`):
    a blend's centroid is pulled by its neighbour.  Matches further than 5
    robust sigmas (at least 1 pixel) are left out: a hot pixel beside a
    star too faint to be found is no match.

    Parameters
    ----------
    x, y, flux : array-like
        The sources, FITS 1-based pixels (``flux`` may be None).
    wcs : `~astropy.wcs.WCS`
        The solution.
    ref_ra, ref_dec, ref_mag : array-like
        Catalogue stars (degrees, magnitudes; NaN or None: unknown).
    fwhm : float
        Star FWHM, pixels.

    Returns
    -------
    `~astropy.table.Table`
        Columns x, y, flux, ra, dec, mag, dx, dy, residual, residual_sky
        (see `~astrometry_query.AstrometryNetClass.get_matched_stars`), in
        the order of the sources.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    flux = np.full(len(x), np.nan) if flux is None else np.asarray(flux, float)
    ref_ra, ref_dec = np.asarray(ref_ra, float), np.asarray(ref_dec, float)
    ref_mag = np.full(len(ref_ra), np.nan) if ref_mag is None else np.asarray(ref_mag, float)
    with np.errstate(all='ignore'):
        rx, ry = wcs.all_world2pix(ref_ra, ref_dec, 1, quiet=True)
    known = np.isfinite(rx) & np.isfinite(ry)
    stars = np.nonzero(known)[0]
    isolation, radius = max(4.0, 2.0 * fwhm), max(3.0, 2.0 * fwhm)
    stars = stars[isolated(rx[stars], ry[stars], isolation, ref_mag[stars])]
    sources = np.nonzero(isolated(x, y, isolation))[0]
    s, r = mutual_matches(x[sources], y[sources], rx[stars], ry[stars], radius)
    s, r = sources[s], stars[r]
    distance = np.hypot(rx[r] - x[s], ry[r] - y[s])
    clip = max(1.0, 5.0 * 1.4826 * float(np.median(distance))) if len(s) else radius
    keep = distance <= clip
    order = np.argsort(s[keep], kind='stable')
    s, r = s[keep][order], r[keep][order]
    meta = {'source': FROM_INDEX_FILES,
            'mag_source': FROM_INDEX_FILES if np.isfinite(ref_mag).any() else None,
            'match_radius_px': round(min(radius, clip), 4), 'isolation_px': isolation}
    return _matched_table(x[s], y[s], flux[s], ref_ra[r], ref_dec[r], ref_mag[r], wcs, meta)


def from_corr(corr, wcs, rdls=None):
    """The engine's matched stars (``corr.fits``) as a table of matched stars.

    Parameters
    ----------
    corr : `~astropy.table.Table`
        ``corr.fits``: field_x, field_y, index_ra, index_dec, FLUX (when the
        sources had fluxes) and the index's tag-along columns.
    wcs : `~astropy.wcs.WCS`
        The solution.
    rdls : `~astropy.table.Table`, optional
        ``rdls.fits`` (index stars in the field): magnitudes, when ``corr``
        has none.

    Returns
    -------
    `~astropy.table.Table`
        As `match_sources`; meta['source'] is ``'corr'``.
    """
    lower = {n.lower(): n for n in corr.colnames}
    col = [np.asarray(corr[lower[n]], float) for n in ('field_x', 'field_y', 'index_ra',
                                                         'index_dec')]
    flux = (np.asarray(corr[lower['flux']], float) if 'flux' in lower
            else np.full(len(corr), np.nan))
    mag, mag_source = np.full(len(corr), np.nan), None
    if mag_column(corr.colnames):
        mag, mag_source = np.asarray(corr[mag_column(corr.colnames)], float), 'corr'
    elif rdls is not None and mag_column(rdls.colnames) and len(rdls) and len(corr):
        # The same index stars in both files: the same positions.
        stars = SkyCoord(np.asarray(rdls['RA'], float), np.asarray(rdls['DEC'], float),
                         unit='deg')
        nearest, distance, _ = SkyCoord(col[2], col[3], unit='deg').match_to_catalog_sky(stars)
        found = distance.to_value(u.arcsec) < _SAME_ARCSEC
        mag[found] = np.asarray(rdls[mag_column(rdls.colnames)], float)[nearest[found]]
        mag_source = 'rdls'
    return _matched_table(*col[:2], flux, *col[2:], mag, wcs,
                          {'source': FROM_CORR, 'mag_source': mag_source})


def write_matches(table, path):
    """Write a table of matched stars as ``matches.fits`` (atomically)."""
    hdu = fits.table_to_hdu(Table(table, meta={}))
    for key, (card, comment) in _CARDS.items():
        value = table.meta.get(key)
        if value is not None and value == value:       # FITS has no NaN cards
            hdu.header[card] = (value, comment)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
    return path


def read_matches(content):
    """The table of matched stars of a ``matches.fits`` (its bytes)."""
    with fits.open(io.BytesIO(content)) as hdul:
        header = hdul[1].header
        table = Table(hdul[1].data)
    table = Table([np.asarray(table[name], float) for name in COLUMNS], names=list(COLUMNS),
                  units=list(COLUMNS.values()))
    return _with_meta(table, {key: header.get(card) for key, (card, _) in _CARDS.items()})


def image_stars(image_rd, matched):
    """All the sources of a job, with their sky positions and which are matched.

    Parameters
    ----------
    image_rd : `~astropy.table.Table`
        ``image-radec.fits``: the sources (X, Y, FLUX...) plus RA, DEC.
    matched : `~astropy.table.Table`
        The job's matched stars.

    Returns
    -------
    `~astropy.table.Table`
        Columns x, y (FITS 1-based pixels), flux, ra, dec (deg), matched
        (bool).
    """
    xcol, ycol = xy_columns(image_rd.colnames)
    lower = {n.lower(): n for n in image_rd.colnames}
    x, y = np.asarray(image_rd[xcol], float), np.asarray(image_rd[ycol], float)
    flux = (np.asarray(image_rd[lower['flux']], float) if 'flux' in lower
            else np.full(len(x), np.nan))
    # The matched stars' positions are the sources' own, read from another file.
    found, _ = mutual_matches(x, y, np.asarray(matched['x'], float),
                              np.asarray(matched['y'], float), _SAME_PX)
    is_matched = np.zeros(len(x), bool)
    is_matched[found] = True
    table = Table([x, y, flux, np.asarray(image_rd[lower['ra']], float),
                   np.asarray(image_rd[lower['dec']], float), is_matched],
                  names=('x', 'y', 'flux', 'ra', 'dec', 'matched'),
                  units=(u.pix, u.pix, None, u.deg, u.deg, None))
    table.meta.update(job_id=matched.meta.get('job_id'), n_sources=len(table),
                      n_matched=int(is_matched.sum()), source=matched.meta.get('source'))
    return table
