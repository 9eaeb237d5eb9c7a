"""Result records (Submission, Job, Calibration), the WCS header we return,
nova's calibration numbers, and annotations as a Table.

Pure data: no I/O, so both backends and the server share it.  A record's
notebook view (``_repr_html_``), which may fetch what it shows through the
client that made the record, is the function `HTML_VIEWS` holds for its class:
`astrometry_query.reprs` fills it in (it imports this module, never the reverse).
"""
import dataclasses
import functools
import math
import re
import weakref
from dataclasses import dataclass, field
from datetime import datetime

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS

from ._text import one_line, scale_text
from .exceptions import InvalidInputError
from .projection import tan_deproject

__all__ = ['Submission', 'Job', 'Calibration', 'calibration_from_wcs', 'make_wcs_header',
           'wcs_from_header', 'is_wcs_key', 'annotations_table', 'jobs_table', 'job_ref', 'parity_text',
           'calibration_table', 'JOB_ID_CARD', 'SUBMISSION_ID_CARD', 'PARITY_WORDS', 'HTML_VIEWS']

JOB_ID_CARD = 'AN_JOBID'
# The keywords of a primary WCS (alternates, CTYPE1A..., are another description).
_WCS_KEY = re.compile(r'^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|'
                      r'PV\d_\d+|PS\d_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|WCSNAME|'
                      r'IMAGEW|IMAGEH|(A|B|AP|BP)_(ORDER|DMAX|\d+_\d+))$')
# What else of a header a WCS object reads: when the frame was taken.
_WCS_TIME_KEYS = {'DATE-OBS', 'MJD-OBS', 'DATE-AVG', 'MJD-AVG', 'MJDREF', 'TIMESYS'}
SUBMISSION_ID_CARD = 'AN_SUBID'

#: A solution's parity (nova's, the sign of det(CD)) in words.  The solver's
#: ``parity`` setting names the same two cases 'pos' and 'neg'.
PARITY_WORDS = {-1: 'normal (pos: not mirrored)', 1: 'mirrored (neg)'}


#: The notebook view of each record class: a function of the record that returns HTML (or
#: None: IPython then shows the text repr).  `astrometry_query.reprs` registers the
#: package's views here when the package is imported.
HTML_VIEWS = {}


def _html_view(record):
    """A record's ``_repr_html_``: the view `HTML_VIEWS` holds for its class (or a base)."""
    view = next((HTML_VIEWS[c] for c in type(record).__mro__ if c in HTML_VIEWS), None)
    return view(record) if view is not None else None


def parity_text(parity):
    """A solution's parity in words: -1 is an image as the sky looks (north up,
    east left), +1 a mirrored one (`PARITY_WORDS`); anything else as it is."""
    try:
        value = float(parity)
    except (TypeError, ValueError):
        return str(parity)
    return PARITY_WORDS[-1] if value < 0 else PARITY_WORDS[1] if value > 0 else str(parity)


def _value(quantity, unit, native=None):
    """A Quantity's value in ``unit``; a plain number is taken in ``native``
    (the field's unit in nova's JSON), by default ``unit``."""
    return u.Quantity(quantity, native or unit).to_value(unit)


def _never_raises(text_repr):
    """A __repr__ that falls back on the field values when the fields are
    not what they should be (a repr must help debugging, never fail it)."""
    @functools.wraps(text_repr)
    def safe(self):
        try:
            return text_repr(self)
        except Exception:
            fields = ', '.join(f'{f.name}={getattr(self, f.name, None)!r}'
                               for f in dataclasses.fields(self))
            return f'<{type(self).__name__} {fields}>'
    return safe


class _ClientBound:
    """The client a record came from, held weakly.

    A record's notebook view fetches what it shows (a job's annotated image,
    the jobs of a submission) through the client, or backend, that produced
    it.  The reference is weak, so a record kept in a list does not keep a
    closed client's session alive, and it is dropped by pickling and copying:
    a record stays plain data.
    """
    _TRANSIENT = ('_client_ref', '_thumbnail')

    @property
    def client(self):
        """The `~astrometry_query.AstrometryNetClass` (or backend) that made this record, or None."""
        ref = self.__dict__.get('_client_ref')
        return ref() if ref is not None else None

    @client.setter
    def client(self, value):
        if value is None:
            self.__dict__.pop('_client_ref', None)
            return
        try:
            self.__dict__['_client_ref'] = weakref.ref(value)
        except TypeError:       # not weakly referenceable: hold it
            self.__dict__['_client_ref'] = lambda: value
        self.__dict__.pop('_thumbnail', None)

    def bind(self, client):
        """Remember (weakly) the client that made this record; returns the record.

        Parameters
        ----------
        client : `~astrometry_query.AstrometryNetClass` or backend
            Anything with ``download(job_id, kind)`` and ``get_job_info(job_id)``
            (a client) or ``job_info(job_id, submission_id)`` (a backend).
        """
        self.client = client
        return self

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in self._TRANSIENT:
            state.pop(key, None)
        return state


def _timestamp(value):
    """nova sends str(datetime) or the literal string 'None'."""
    if value in (None, 'None', ''):
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


@dataclass(repr=False)
class Submission(_ClientBound):
    """A submission: one upload, which becomes one or more jobs.

    In a notebook it shows a table of its jobs and their states, looked up
    through its `client` when it has one (see `bind`).
    """
    id: int
    user: int | None = None
    processing_started: datetime | None = None
    processing_finished: datetime | None = None
    user_images: list = field(default_factory=list)
    images: list = field(default_factory=list)
    jobs: list = field(default_factory=list)
    job_calibrations: list = field(default_factory=list)
    error_message: str | None = None
    hash: str | None = None
    # Named here, not only inherited, so that the API docs list them.
    client = _ClientBound.client
    bind = _ClientBound.bind

    @classmethod
    def from_api(cls, submission_id, payload):
        """Build from the JSON of ``/api/submissions/<id>`` (or an upload reply)."""
        return cls(id=int(submission_id), user=payload.get('user'),
                   processing_started=_timestamp(payload.get('processing_started')),
                   processing_finished=_timestamp(payload.get('processing_finished')),
                   user_images=list(payload.get('user_images') or []),
                   images=list(payload.get('images') or []),
                   jobs=list(payload.get('jobs') or []),
                   job_calibrations=[tuple(p) for p in payload.get('job_calibrations') or []],
                   error_message=payload.get('error_message') or None,
                   hash=payload.get('hash'))

    @property
    def job_ids(self):
        """Ids of the jobs that exist so far (nova lists null while queued)."""
        return [j for j in self.jobs if j is not None]

    @property
    def failed(self):
        """True when the server gave up on the submission: no job will come."""
        return bool(self.error_message) and not self.user_images

    @property
    def state(self):
        """A word for where the submission is: queued, processing, failed, ...."""
        if self.failed:
            return 'failed'
        if self.job_calibrations:
            return 'solved'
        if self.job_ids:
            return 'solving'
        if self.user_images:
            return 'waiting for a job'
        return 'processing' if self.processing_started else 'queued'

    @_never_raises
    def __repr__(self):
        state = self.state
        if state == 'failed':
            return f'<Submission {self.id}: failed: {one_line(self.error_message)!r}>'
        jobs = self.job_ids
        if not jobs:
            return f'<Submission {self.id}: {state}>'
        listed = ', '.join(str(j) for j in jobs[:10]) + (', ...' if len(jobs) > 10 else '')
        return f'<Submission {self.id}: {state}, job{"s" if len(jobs) > 1 else ""} {listed}>'

    _repr_html_ = _html_view


@dataclass(repr=False)
class Calibration:
    """Where the field is on the sky, as nova's ``calibration`` reports it
    (in a notebook: a table with units)."""
    ra: u.Quantity
    dec: u.Quantity
    radius: u.Quantity
    pixscale: u.Quantity
    orientation: u.Quantity
    parity: float
    width: u.Quantity | None = None
    height: u.Quantity | None = None

    @classmethod
    def from_api(cls, payload):
        width = payload.get('width_arcsec')
        height = payload.get('height_arcsec')
        return cls(ra=payload['ra'] * u.deg, dec=payload['dec'] * u.deg,
                   radius=payload['radius'] * u.deg,
                   pixscale=payload['pixscale'] * u.arcsec / u.pix,
                   orientation=payload['orientation'] * u.deg,
                   parity=float(payload['parity']),
                   width=None if width is None else width * u.arcsec,
                   height=None if height is None else height * u.arcsec)

    @property
    def center(self):
        """The field centre as a `~astropy.coordinates.SkyCoord`."""
        return SkyCoord(self.ra, self.dec, frame='icrs')

    def to_api(self):
        """The calibration as nova's JSON dict."""
        out = {'ra': self.ra.to_value(u.deg), 'dec': self.dec.to_value(u.deg)}
        if self.width is not None:
            out['width_arcsec'] = self.width.to_value(u.arcsec)
            out['height_arcsec'] = self.height.to_value(u.arcsec)
        out.update(radius=self.radius.to_value(u.deg),
                   pixscale=self.pixscale.to_value(u.arcsec / u.pix),
                   orientation=self.orientation.to_value(u.deg), parity=self.parity)
        return out

    def _position_text(self):
        """'RA 83.8220 Dec -5.3911, 2.01 arcsec/pix' (degrees)."""
        return (f'RA {_value(self.ra, u.deg):.4f} Dec {_value(self.dec, u.deg):.4f}, '
                f'{scale_text(_value(self.pixscale, u.arcsec / u.pix))} arcsec/pix')

    @_never_raises
    def __repr__(self):
        size = ''
        if self.width is not None and self.height is not None:
            size = (f', {_value(self.width, u.arcmin, u.arcsec):.1f} x '
                    f'{_value(self.height, u.arcmin, u.arcsec):.1f} arcmin')
        return (f'<Calibration {self._position_text()}{size}, '
                f'orientation {_value(self.orientation, u.deg):.2f} deg, '
                f'parity {parity_text(self.parity)}>')

    _repr_html_ = _html_view


@dataclass(repr=False)
class Job(_ClientBound):
    """One solve of one image: status and, once solved, what was found.

    In a notebook it shows its calibration and, once solved, a thumbnail of
    the annotated image, fetched through its `client` (see `bind`).

    ``command_line`` is the ``solve-field`` command equivalent to the job
    (local jobs and jobs of an astrometry_query server; for nova's, what the
    client that submitted them sent, else None), and
    ``error_message`` says why a failed job found nothing: the sources used,
    the scales and sky area searched, the index files consulted, the best
    match, and the next step.
    """
    id: int
    status: str
    submission_id: int | None = None
    calibration: Calibration | None = None
    objects_in_field: list = field(default_factory=list)
    machine_tags: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    original_filename: str | None = None
    command_line: str | None = None
    error_message: str | None = None
    client = _ClientBound.client
    bind = _ClientBound.bind

    @classmethod
    def from_api(cls, job_id, payload, submission_id=None):
        """Build from ``/api/jobs/<id>/info`` (or ``/api/jobs/<id>``) JSON."""
        cal = payload.get('calibration')
        return cls(id=int(job_id), status=payload.get('status', '?'),
                   submission_id=submission_id,
                   calibration=Calibration.from_api(cal) if cal else None,
                   objects_in_field=list(payload.get('objects_in_field') or []),
                   machine_tags=list(payload.get('machine_tags') or []),
                   tags=list(payload.get('tags') or []),
                   original_filename=payload.get('original_filename'),
                   command_line=payload.get('command_line') or None,
                   error_message=payload.get('error_message') or None)

    @property
    def solved(self):
        return self.status == 'success'

    @property
    def finished(self):
        return self.status in ('success', 'failure', '?')

    @_never_raises
    def __repr__(self):
        text = f'<Job {self.id}: {one_line(self.status, 30)}'
        if self.calibration is not None:
            text += f', {self.calibration._position_text()}'
        if self.original_filename:
            text += f', file {one_line(self.original_filename)!r}'
        return text + '>'

    _repr_html_ = _html_view


def wcs_from_header(header):
    """A usable `~astropy.wcs.WCS` from a solver's header, without warnings.

    The solver writes a header-only file (NAXIS = 0, which astroquery's
    headers keep): astropy then warns and leaves the WCS without a size.
    This one knows its image size (``pixel_shape`` from IMAGEW/IMAGEH), so
    ``footprint``, ``array_shape`` and plotting work.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        A solved WCS header (TAN or TAN-SIP).

    Returns
    -------
    `~astropy.wcs.WCS`
    """
    # Only the WCS cards: without NAXIS astropy has nothing to warn about (a
    # warnings filter would not be thread-safe: batches solve in threads), and
    # without a solver's hundred COMMENT cards it parses five times faster.
    header = fits.Header([card for card in header.cards
                          if is_wcs_key(card.keyword) or card.keyword in _WCS_TIME_KEYS])
    wcs = WCS(header, relax=True)
    width, height = header.get('IMAGEW'), header.get('IMAGEH')
    if width and height:
        wcs.pixel_shape = (int(width), int(height))
    return wcs


def is_wcs_key(keyword):
    """True for a keyword of a primary WCS (TAN-SIP and the linear part, and
    IMAGEW/IMAGEH, the size of the image it was solved on)."""
    return bool(_WCS_KEY.match(keyword))


def calibration_from_wcs(header, width=None, height=None, *, flip_orientation=False):
    """nova's calibration numbers for a solved WCS.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        The solver's WCS (TAN or TAN-SIP; only the TAN part is used, as nova does).
    width, height : int, optional
        Image size in pixels; by default IMAGEW/IMAGEH of the header.
    flip_orientation : bool
        nova maps the orientation to (180 - o) mod 360 for JPEG/PNG/GIF uploads.

    Returns
    -------
    dict
        ra, dec, width_arcsec, height_arcsec, radius, pixscale, orientation,
        parity, as nova's ``/api/jobs/<id>/calibration`` JSON.
    """
    width = float(width if width is not None else header['IMAGEW'])
    height = float(height if height is not None else header['IMAGEH'])
    centre = (0.5 + 0.5 * width, 0.5 + 0.5 * height)
    plain = _plain_tan(header)
    if plain is not None:       # a solver's TAN: a few lines of maths, not a WCS object
        crval, crpix, cd = plain
        ra, dec = _tan_pix2world(centre, crval, crpix, cd)
    else:
        tan = wcs_from_header(header)
        tan.sip = None
        cd = tan.wcs.cd if tan.wcs.has_cd() else tan.pixel_scale_matrix
        ra, dec = tan.wcs_pix2world([centre], 1)[0]
    (cd11, cd12), (cd21, cd22) = cd
    det = cd11 * cd22 - cd12 * cd21
    pixscale = 3600.0 * math.sqrt(abs(det))
    parity = 1.0 if det >= 0 else -1.0
    orientation = -math.degrees(math.atan2(parity * cd21 - cd12, parity * cd11 + cd22))
    if orientation <= -180:
        orientation += 360.0
    if flip_orientation:
        orientation = (180.0 - orientation + 360.0) % 360.0
    return {'ra': float(ra % 360.0), 'dec': float(dec),
            'width_arcsec': pixscale * width, 'height_arcsec': pixscale * height,
            'radius': pixscale * math.hypot(width, height) / 2.0 / 3600.0,
            'pixscale': pixscale, 'orientation': orientation, 'parity': parity}


def _plain_tan(header):
    """(crval, crpix, cd) of a celestial TAN header with nothing unusual
    (no PV, LONPOLE 180, degrees, a CD matrix or PC with CDELT), else None."""
    if not (str(header.get('CTYPE1', '')).startswith('RA---TAN')
            and str(header.get('CTYPE2', '')).startswith('DEC--TAN')):
        return None
    if float(header.get('LONPOLE', 180.0)) != 180.0 or any(
            str(header.get(k, 'deg')).strip().lower() != 'deg' for k in ('CUNIT1', 'CUNIT2')) \
            or any(k.startswith('PV') for k in header.keys()):
        return None
    try:
        crval = (float(header['CRVAL1']), float(header['CRVAL2']))
        crpix = (float(header['CRPIX1']), float(header['CRPIX2']))
        if 'CD1_1' in header:
            cd = np.array([[float(header.get(f'CD{i}_{j}', 0.0)) for j in (1, 2)]
                           for i in (1, 2)])
        else:
            pc = np.array([[float(header.get(f'PC{i}_{j}', float(i == j))) for j in (1, 2)]
                           for i in (1, 2)])
            cd = np.array([[float(header.get('CDELT1', 1.0))], [float(header.get('CDELT2', 1.0))]])
            cd = cd * pc
    except (KeyError, TypeError, ValueError):
        return None
    return crval, crpix, cd


def _tan_pix2world(pixel, crval, crpix, cd):
    """RA, Dec (deg) of a FITS (1-based) pixel through a plain TAN projection."""
    x, y = cd @ np.array([pixel[0] - crpix[0], pixel[1] - crpix[1]])
    return tan_deproject(x, y, crval[0], crval[1])


def make_wcs_header(wcs_header, job_id=None, submission_id=None):
    """The Header we return: the solver's WCS plus cards naming the job.

    Parameters
    ----------
    wcs_header : `~astropy.io.fits.Header`, bytes or str
        The solver's ``wcs.fits`` (a header-only FITS file) or its header.
    """
    if isinstance(wcs_header, (bytes, bytearray)):
        wcs_header = fits.Header.fromstring(bytes(wcs_header).decode('ascii', errors='replace'))
    elif isinstance(wcs_header, str):
        wcs_header = fits.Header.fromstring(wcs_header)
    header = wcs_header.copy()
    if job_id is not None:
        header[JOB_ID_CARD] = (int(job_id), 'astrometry.net job id')
    if submission_id is not None:
        header[SUBMISSION_ID_CARD] = (int(submission_id), 'astrometry.net submission id')
    return header


def job_ref(obj):
    """(job_id, submission_id) named by an id, a record, a Header or a Table row.

    A bare int is taken as a job id.  Raises `InvalidInputError` for anything else.
    """
    if isinstance(obj, Job):
        return obj.id, obj.submission_id
    if isinstance(obj, Submission):
        jobs = obj.job_ids
        return (jobs[0] if jobs else None), obj.id
    if isinstance(obj, fits.Header):
        job, sub = obj.get(JOB_ID_CARD), obj.get(SUBMISSION_ID_CARD)
        if job is None and sub is None:
            raise InvalidInputError(f'This header has no {JOB_ID_CARD}/{SUBMISSION_ID_CARD} card: '
                                    'pass a header returned by a solve, or a job id.')
        return job, sub
    if hasattr(obj, 'colnames') and hasattr(obj, 'table'):   # a Table Row
        for key in ('job_id', 'id', 'jobid'):
            if key in obj.colnames:
                sub = obj['submission_id'] if 'submission_id' in obj.colnames else None
                return int(obj[key]), (None if np.ma.is_masked(sub) or sub is None else int(sub))
        raise InvalidInputError('This table row has no job_id column.')
    if isinstance(obj, (bool, np.bool_)):
        raise InvalidInputError(f'A job must be an id, a Job, a Header or a Table row, not {obj!r}.')
    if isinstance(obj, (int, np.integer)) or (isinstance(obj, str) and obj.strip().isdigit()):
        if int(obj) < 1:
            raise InvalidInputError(f'A job id must be a positive integer (ids start at 1), '
                                    f'got {obj!r}.')
        return int(obj), None
    raise InvalidInputError(f'A job must be an id, a Job, a Header or a Table row, not {obj!r}.')


def annotations_table(annotations, wcs_header=None):
    """nova annotations as a Table, with RA/Dec computed from the WCS.

    Parameters
    ----------
    annotations : list of dict
        nova's ``annotations`` list: type, names, pixelx, pixely, radius, [vmag].
    wcs_header : `~astropy.io.fits.Header`, optional
        The solved WCS; when given, ``ra`` and ``dec`` columns are added.
    """
    n = len(annotations)
    names = [[str(x) for x in a.get('names') or []] for a in annotations]
    table = Table()
    table['type'] = np.array([str(a.get('type', '')) for a in annotations], dtype=str)
    table['name'] = np.array([nm[0] if nm else '' for nm in names], dtype=str)
    table['names'] = np.array([' / '.join(nm) for nm in names], dtype=str)
    table['pixelx'] = np.array([float(a.get('pixelx', np.nan)) for a in annotations]) * u.pix
    table['pixely'] = np.array([float(a.get('pixely', np.nan)) for a in annotations]) * u.pix
    table['radius'] = np.array([float(a.get('radius', 0.0)) for a in annotations]) * u.pix
    vmag = [a.get('vmag') for a in annotations]
    table['vmag'] = MaskedColumn([np.nan if v is None else float(v) for v in vmag],
                                 mask=[v is None for v in vmag], unit=u.mag)
    if wcs_header is not None and n:
        wcs = wcs_from_header(wcs_header)
        # nova's pixel coordinates are FITS 1-based.
        ra, dec = wcs.all_pix2world(table['pixelx'].value, table['pixely'].value, 1)
        table['ra'] = np.asarray(ra) % 360.0 * u.deg
        table['dec'] = np.asarray(dec) * u.deg
    elif wcs_header is not None:
        table['ra'] = np.zeros(0) * u.deg
        table['dec'] = np.zeros(0) * u.deg
    table.meta['description'] = 'Objects annotated in the solved field (pixels are FITS 1-based)'
    return table


def calibration_table(calibration):
    """A calibration as a Table of quantity, value and unit (strings, for reading).

    Parameters
    ----------
    calibration : `~astrometry_query.results.Calibration`

    Returns
    -------
    `~astropy.table.Table`
    """
    cal = calibration
    rows = [('RA', f'{cal.ra.to_value(u.deg):.5f}', 'deg'),
            ('Dec', f'{cal.dec.to_value(u.deg):.5f}', 'deg'),
            ('centre', cal.center.to_string('hmsdms', sep=':', precision=2), 'h:m:s d:m:s'),
            ('radius', f'{cal.radius.to_value(u.deg):.4f}', 'deg'),
            ('pixel scale', f'{cal.pixscale.to_value(u.arcsec / u.pix):.4f}', 'arcsec / pix')]
    if cal.width is not None and cal.height is not None:
        rows.append(('field', f'{cal.width.to_value(u.arcmin):.2f} x '
                              f'{cal.height.to_value(u.arcmin):.2f}', 'arcmin'))
    rows += [('orientation', f'{cal.orientation.to_value(u.deg):.2f}', 'deg'),
             ('parity', parity_text(cal.parity), '')]
    return Table(rows=rows, names=('quantity', 'value', 'unit'), dtype=(str, str, str))


def jobs_table(jobs):
    """A Table of Job records: one row per job."""
    table = Table()
    table['job_id'] = np.array([j.id for j in jobs], dtype=int)
    table['submission_id'] = MaskedColumn([j.submission_id or 0 for j in jobs],
                                          mask=[j.submission_id is None for j in jobs], dtype=int)
    table['status'] = np.array([j.status for j in jobs], dtype=str)
    table['original_filename'] = np.array([j.original_filename or '' for j in jobs], dtype=str)
    cals = [j.calibration for j in jobs]
    for key, unit in (('ra', u.deg), ('dec', u.deg), ('radius', u.deg),
                      ('pixscale', u.arcsec / u.pix), ('orientation', u.deg)):
        values = [np.nan if c is None else getattr(c, key).to_value(unit) for c in cals]
        table[key] = MaskedColumn(values, mask=[c is None for c in cals], unit=unit)
    return table
