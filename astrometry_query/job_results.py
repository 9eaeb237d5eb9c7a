"""Internal: what a job offers once it exists, for any backend: `JobResults`, which the
facade gives the backend in use (WCS, calibration, annotations, objects,
tags, matched stars, job lists, result files, pruning).

Wherever a job is asked for, a job id, a `Job` record, a Header returned by a
solve (cards AN_JOBID/AN_SUBID) or a Table row with ``job_id`` is accepted.
"""
import io
import logging
import math
from datetime import timedelta
from pathlib import Path

import astropy.units as u
from astropy.io import fits
from astropy.table import Table

from . import matches
from .exceptions import InvalidInputError, ResultNotAvailableError
from .files import write_atomic
from .jobs.files import DOWNLOAD_KINDS, RESULT_KINDS
from .results import (Calibration, annotations_table, job_ref, jobs_table, make_wcs_header,
                      wcs_from_header)
from .solving import check_flag

__all__ = ['JobResults', 'as_timedelta']

log = logging.getLogger(__name__)


def as_timedelta(age, name='older_than'):
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


class JobResults:
    """The results of the jobs of one backend.

    Parameters
    ----------
    backend : `~astrometry_query.backends.Backend`
    """

    def __init__(self, backend):
        self.backend = backend

    def job_id(self, job):
        """(job id, submission id or None) of anything that names a job."""
        job_id, sub_id = job_ref(job)
        if job_id is None:
            jobs = self.backend.submission(sub_id).job_ids
            if not jobs:
                raise ResultNotAvailableError(f'Submission {sub_id} has no job yet.',
                                              submission_id=sub_id)
            job_id = jobs[0]
        return job_id, sub_id

    def wcs_header(self, job, *, cache=True):
        job_id, sub_id = self.job_id(job)
        content = self.backend.download(job_id, 'wcs', cache=cache)
        if sub_id is None:
            sub_id = self.backend.submission_id_of(job_id)
        return make_wcs_header(fits.Header.fromstring(content.decode('ascii', errors='replace')),
                               job_id, sub_id)

    def wcs(self, job, *, cache=True):
        if isinstance(job, fits.Header) and 'CTYPE1' in job and 'CRVAL1' in job:
            return wcs_from_header(job)
        return wcs_from_header(self.wcs_header(job, cache=cache))

    def calibration(self, job, *, cache=True):
        return Calibration.from_api(self.backend.calibration(self.job_id(job)[0], cache=cache))

    def annotations(self, job, *, nbright=None, cache=True):
        if nbright is not None and (isinstance(nbright, bool) or not isinstance(nbright, int)
                                    or nbright < 0):
            raise InvalidInputError(f'nbright must be a non-negative int, got {nbright!r}.')
        job_id, _ = self.job_id(job)
        annotations = self.backend.annotations(job_id, nbright=nbright, cache=cache)
        return annotations_table(annotations, self.wcs_header(job_id, cache=cache))

    def objects_in_field(self, job, *, cache=True):
        return list(self.backend.objects_in_field(self.job_id(job)[0], cache=cache))

    def tags(self, job, *, machine=False):
        return list(self.backend.tags(self.job_id(job)[0], machine=machine))

    def job_info(self, job):
        job_id, sub_id = self.job_id(job)
        return self.backend.job_info(job_id, sub_id)

    def job_records(self):
        return [self.backend.job_info(j) for j in self.backend.my_jobs()]

    def jobs_table(self):
        return jobs_table(self.job_records())

    def prune(self, older_than, *, dry_run=False):
        age = as_timedelta(older_than)
        check_flag(dry_run, 'dry_run')
        return self.backend.prune(age, dry_run=dry_run)

    def jobs_by_tag(self, tag, exact=False):
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidInputError(f'tag must be a non-empty string, got {tag!r}.')
        return self.backend.jobs_by_tag(tag, exact=bool(exact))

    def download(self, job, kind='wcs', destination_dir=None, overwrite=False, *, cache=True):
        if kind not in DOWNLOAD_KINDS:
            raise InvalidInputError(f'kind must be one of {sorted(DOWNLOAD_KINDS)}, got {kind!r}.')
        target = None
        job_id, _ = self.job_id(job)
        if destination_dir is not None:
            folder = Path(destination_dir)
            if not folder.is_dir():
                raise InvalidInputError(f'destination_dir is not a directory: {str(folder)!r}')
            target = folder / f'job{job_id}-{RESULT_KINDS[kind].download_name}'
            if target.exists() and not overwrite:
                raise FileExistsError(f'{target} exists; pass overwrite=True to replace it.')
        content = self.backend.download(job_id, kind, cache=cache)
        if target is not None:
            return write_atomic(target, content)
        if kind == 'annotated':
            return content
        return fits.open(io.BytesIO(content))

    def matched_stars(self, job, *, cache=True):
        job_id, _ = self.job_id(job)
        try:
            table = matches.read_matches(self.backend.download(job_id, 'matches', cache=cache))
        except ResultNotAvailableError as lacking:
            # A server without the matches file (nova.astrometry.net): the engine's own.
            log.info('job %s: no matches file (%s); using the solver\'s matched stars (corr)',
                     job_id, lacking)
            table = self._matches_from_corr(job_id, lacking, cache)
        table.meta = {'job_id': job_id, **table.meta}
        return table

    def _matches_from_corr(self, job_id, lacking, cache):
        try:
            corr = _fits_table(self.backend.download(job_id, 'corr', cache=cache))
        except ResultNotAvailableError as exc:
            raise ResultNotAvailableError(f'Job {job_id} has no matched stars: {lacking} Nor '
                                          f'the solver\'s: {exc}', job_id=job_id) from exc
        rdls = None
        if matches.mag_column(corr.colnames) is None:
            try:        # the magnitudes of the index stars in the field
                rdls = _fits_table(self.backend.download(job_id, 'rdls', cache=cache))
            except ResultNotAvailableError:
                pass
        return matches.from_corr(corr, self.wcs(job_id, cache=cache), rdls)

    def image_stars(self, job, *, cache=True):
        job_id, _ = self.job_id(job)
        matched = self.matched_stars(job_id, cache=cache)
        sources = _fits_table(self.backend.download(job_id, 'image_rd', cache=cache))
        return matches.image_stars(sources, matched)


def _fits_table(content):
    """The first table of a FITS file (its bytes), columns as they are (no units parsed:
    the solver writes some astropy does not know)."""
    with fits.open(io.BytesIO(content)) as hdul:
        return Table(hdul[1].data)
