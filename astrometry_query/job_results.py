"""What the facade offers once a job exists: WCS, calibration, annotations,
objects, tags, job lists and result files, for any backend.

Wherever a job is asked for, a job id, a `Job` record, a Header returned by a
solve (cards AN_JOBID/AN_SUBID) or a Table row with ``job_id`` is accepted.
"""
import io
import math
from datetime import timedelta
from pathlib import Path

import astropy.units as u
from astropy.io import fits

from .exceptions import InvalidInputError, InvalidSettingError, ResultNotAvailableError
from .files import write_atomic
from .nova.protocol import FILE_ROUTES, api_url, decode_response, encode_request, site_url
from .results import (Calibration, annotations_table, job_ref, jobs_table, make_wcs_header,
                      wcs_from_header)
from .solving import _flag

__all__ = ['JobResultsMixin', 'DOWNLOAD_NAMES']

#: File name of each download kind (as nova names them).
DOWNLOAD_NAMES = {'wcs': 'wcs.fits', 'new_fits': 'new-image.fits', 'rdls': 'rdls.fits',
                  'axy': 'axy.fits', 'corr': 'corr.fits', 'image_rd': 'image-radec.fits',
                  'annotated': 'annotated.png'}


def _as_timedelta(age, name='older_than'):
    """A `~datetime.timedelta` of 0 or more from a time Quantity or a timedelta."""
    if isinstance(age, timedelta):
        seconds = age.total_seconds()
    elif isinstance(age, u.Quantity) and age.isscalar and age.unit.is_equivalent(u.s):
        seconds = age.to_value(u.s)
    else:
        raise InvalidInputError(f'{name} must be a time: a Quantity such as 30 * u.day, or a '
                                f'datetime.timedelta; got {age!r}.')
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InvalidInputError(f'{name} must be 0 or more and finite, got {age!r}.')
    return timedelta(seconds=float(seconds))


class JobResultsMixin:
    """Result accessors of `AstrometryNetClass` (needs ``self.backend``)."""

    def _job_id(self, job):
        job_id, sub_id = job_ref(job)
        if job_id is None:
            jobs = self.backend.submission(sub_id).job_ids
            if not jobs:
                raise ResultNotAvailableError(f'Submission {sub_id} has no job yet.',
                                              submission_id=sub_id)
            job_id = jobs[0]
        return job_id, sub_id

    def get_wcs_header(self, job, *, cache=True):
        """The solved WCS of a job as a `~astropy.io.fits.Header` (with AN_JOBID/AN_SUBID)."""
        job_id, sub_id = self._job_id(job)
        content = self.backend.download(job_id, 'wcs', cache=cache)
        if sub_id is None and self.backend.name == 'local':
            sub_id = job_id
        return make_wcs_header(fits.Header.fromstring(content.decode('ascii', errors='replace')),
                               job_id, sub_id)

    def get_wcs(self, job, *, cache=True):
        """The solved WCS of a job as an `~astropy.wcs.WCS`, ready to use.

        This is the way to a usable WCS: it has the image size
        (``pixel_shape`` = IMAGEW, IMAGEH) and is made without warnings,
        while the Header that `solve_from_image` returns keeps astroquery's
        NAXIS = 0 for compatibility.

        Parameters
        ----------
        job : Header, `Job`, int or Table row
            A Header returned by a solve is used as it is (no request);
            anything else names a job whose WCS is fetched.

        Returns
        -------
        `~astropy.wcs.WCS`
        """
        if isinstance(job, fits.Header) and 'CTYPE1' in job and 'CRVAL1' in job:
            return wcs_from_header(job)
        return wcs_from_header(self.get_wcs_header(job, cache=cache))

    def get_calibration(self, job, *, cache=True):
        """Centre, radius, pixel scale, orientation and parity, with units (`Calibration`)."""
        return Calibration.from_api(self.backend.calibration(self._job_id(job)[0], cache=cache))

    def get_annotations(self, job, *, nbright=None, cache=True):
        """Objects annotated in the field as a `~astropy.table.Table`.

        Columns: type, name, names, pixelx, pixely (FITS 1-based), radius
        (pixels), vmag, and ra/dec computed from the solved WCS.

        Parameters
        ----------
        nbright : int, optional
            Keep only the N brightest named stars.
        """
        if nbright is not None and (isinstance(nbright, bool) or not isinstance(nbright, int)
                                    or nbright < 0):
            raise InvalidInputError(f'nbright must be a non-negative int, got {nbright!r}.')
        job_id, _ = self._job_id(job)
        annotations = self.backend.annotations(job_id, nbright=nbright, cache=cache)
        return annotations_table(annotations, self.get_wcs_header(job_id, cache=cache))

    def get_objects_in_field(self, job, *, cache=True):
        """Names of the objects in the field (list of str, nova's fragments)."""
        return list(self.backend.objects_in_field(self._job_id(job)[0], cache=cache))

    def get_tags(self, job, *, machine=False):
        """Tags of a job's image (``machine=True``: only the solver's own)."""
        return list(self.backend.tags(self._job_id(job)[0], machine=machine))

    def get_job_info(self, job):
        """Status, calibration, tags and file name of a job as a `Job` record."""
        job_id, sub_id = self._job_id(job)
        return self.backend.job_info(job_id, sub_id).bind(self)

    def list_job_records(self):
        """Every job of this account (or of the local job store) as `Job` records."""
        return [self.backend.job_info(j).bind(self) for j in self.backend.my_jobs()]

    def list_jobs(self):
        """Every job of this account as a `~astropy.table.Table` (one row per job)."""
        return jobs_table(self.list_job_records())

    def prune_jobs(self, older_than, *, dry_run=False):
        """Delete the local jobs that ended more than ``older_than`` ago.

        Each local solve keeps a directory of files (the image, the engine's
        output, the results); this frees the space of old ones.  Jobs that
        have not ended are never deleted.  Headers of pruned jobs keep their
        WCS, but their job's results (annotations, files) are gone.

        Parameters
        ----------
        older_than : `~astropy.units.Quantity` or `~datetime.timedelta`
            A time, e.g. ``30 * u.day``.
        dry_run : bool
            Only report what would be deleted.

        Returns
        -------
        PrunedJobs
            A record of ``job_ids`` (and their ``count``) deleted, oldest first,
            the ``bytes`` freed, ``kept_unfinished``: the old jobs kept because
            they have not ended, and ``dry_run``.

        Raises
        ------
        InvalidSettingError
            When this client uses the nova backend (nova has no way to delete jobs).
        InvalidInputError
            For an age that is not a time of 0 or more.
        """
        age = _as_timedelta(older_than)
        _flag(dry_run, 'dry_run')
        if self.backend.name != 'local':
            raise InvalidSettingError(
                'prune_jobs deletes jobs of the local job store, but this client uses the '
                f'{self.backend.name} backend (a nova server keeps its own jobs): use '
                "AstrometryNetClass(backend='local').", setting='backend', allowed=['local'])
        return self.backend.prune(age, dry_run=dry_run)

    def find_jobs_by_tag(self, tag, exact=False):
        """Ids of jobs whose image has a tag (substring match unless ``exact``)."""
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidInputError(f'tag must be a non-empty string, got {tag!r}.')
        return self.backend.jobs_by_tag(tag, exact=bool(exact))

    def download(self, job, kind='wcs', destination_dir=None, overwrite=False, *, cache=True):
        """A result file of a job, in memory or saved.

        Parameters
        ----------
        kind : {'wcs', 'new_fits', 'rdls', 'axy', 'corr', 'image_rd', 'annotated'}
        destination_dir : path-like, optional
            Save the file there and return its `~pathlib.Path`.
        overwrite : bool
            Replace an existing file (else `FileExistsError`).

        Returns
        -------
        `~astropy.io.fits.HDUList`, bytes (annotated image) or `~pathlib.Path`
        """
        if kind not in FILE_ROUTES:
            raise InvalidInputError(f'kind must be one of {sorted(FILE_ROUTES)}, got {kind!r}.')
        target = None
        job_id, _ = self._job_id(job)
        if destination_dir is not None:
            folder = Path(destination_dir)
            if not folder.is_dir():
                raise InvalidInputError(f'destination_dir is not a directory: {str(folder)!r}')
            target = folder / f'job{job_id}-{DOWNLOAD_NAMES[kind]}'
            if target.exists() and not overwrite:
                raise FileExistsError(f'{target} exists; pass overwrite=True to replace it.')
        content = self.backend.download(job_id, kind, cache=cache)
        if target is not None:
            return write_atomic(target, content)
        if kind == 'annotated':
            return content
        return fits.open(io.BytesIO(content))

    # -- raw escape hatches (nova backend) ----------------------------------
    def request(self, method, path, *, args=None, authenticated=False, **kwargs):
        """Send a raw request to the nova server; returns the response.

        Parameters
        ----------
        path : str
            Relative to the server root, e.g. ``'api/jobs/12/info'`` or ``'wcs_file/12'``.
        args : dict, optional
            Sent as nova's ``request-json`` form field.
        authenticated : bool
            Add the session key to ``args`` (logging in if needed).
        """
        nova = self._nova()
        if args is not None or authenticated:
            payload = dict(args or {})
            if authenticated:
                payload['session'] = nova.session_key()
            kwargs['data'] = encode_request(payload)
        url = f'{site_url(self.server)}/{path.lstrip("/")}'
        kwargs.setdefault('timeout', self.timeout)
        kwargs.setdefault('cache', False)
        return self._request(method, url, **kwargs)

    def get_json(self, path, params=None):
        """GET an API path (``'jobs/12/info'`` or ``'api/jobs/12/info'``) and decode it."""
        path = path.lstrip('/')
        path = path[4:] if path.startswith('api/') else path
        url = api_url(self.server, path)
        response = self._request('GET', url, params=params, timeout=self.timeout, cache=False)
        return decode_response(response.status_code, response.text, url=url)
