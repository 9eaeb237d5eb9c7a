"""What a job directory holds, and the one table of result kinds.

Every place that names a job's results (the nova protocol's routes, the
server's file routes and its web page's download list, the facade's
``download`` and the job directory itself) reads `RESULT_KINDS`.

Files of a job directory
------------------------
``request.json``     the `~astrometry_query.jobs.SolveRequest` (what was asked)
``<input>``          a copy of the image (a reflink where the filesystem can), or ``input.fits``
``astrometry.cfg``   the engine config of this solve
``log``              the engine's output (nova's engine log)
``job.log``          what went wrong in the job's own code, if anything
``worker.log``       the server's account of the job (which worker, how long)
``error.txt``        why the input could not be had (a URL that could not be fetched)
``job.axy``          sources and solver directives
``wcs.fits``         the solution (header only, TAN-SIP); exists only when solved
``corr.fits``        matched field/index star pairs
``rdls.fits``        index stars in the field
``matches.fits``     every source matched with a catalogue star, with residuals (first request)
``result.json``      the outcome, written last and atomically
``extras.json``      objects in the field and annotations (first request)
``annotated.png``    the image (or a black canvas) with named objects (first request)
``extraction.png``   the sources given to the solver, circled (first request)
``new-image.fits``   the image with the solved WCS (first request)
``image-radec.fits`` job.axy plus RA, DEC per source (first request)
"""
import json
import logging
import shutil
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..files import write_atomic

__all__ = ['ResultKind', 'RESULT_KINDS', 'KIND_OF_ROUTE', 'DOWNLOAD_KINDS', 'REQUEST_FILE',
           'RESULT_FILE', 'EXTRAS_FILE', 'JOB_LOG', 'WORKER_LOG', 'ERROR_FILE', 'ENGINE_LOG',
           'AXY_FILE', 'ENGINE_OUTPUTS', 'JOB_CONFIG', 'EXTRACTION_FILE', 'JobStore',
           'read_result', 'write_json', 'place_input', 'note_error', 'utc_now']

log = logging.getLogger(__name__)

# What the engine reads and writes (the engine's modules take these names from here).
AXY_FILE = 'job.axy'
ENGINE_LOG = 'log'
JOB_CONFIG = 'astrometry.cfg'
#: The engine's outputs, by the .axy directive that names them.
ENGINE_OUTPUTS = {'wcs': 'wcs.fits', 'corr': 'corr.fits', 'rdls': 'rdls.fits', 'solved': 'job.solved'}
EXTRACTION_FILE = 'extraction.png'
REQUEST_FILE = 'request.json'
RESULT_FILE = 'result.json'
EXTRAS_FILE = 'extras.json'
JOB_LOG = 'job.log'
WORKER_LOG = 'worker.log'
ERROR_FILE = 'error.txt'
#: Where a prune notes the highest id it deleted (ids are never given twice).
PRUNED_ID_FILE = '.highest-pruned-id'


@dataclass(frozen=True)
class ResultKind:
    """One kind of result a job offers.

    Attributes
    ----------
    name : str
        The kind, as ``download(job, kind)`` names it.
    file : str
        The file in the job directory.
    routes : tuple of str
        nova's routes serving it (``/<route>/<job id>``); the first is the one
        clients ask.
    gated : bool
        nova redirects a request without a Referer to ``/ask_human``.
    media_type : str or None
        The Content-Type served (None: sniffed, PNG or JPEG).
    download_name : str
        The file name a download gets (``job<id>-<download_name>``).
    label : str
        What it is, for the web page's list of downloads.
    listed : bool
        Listed among the job page's downloads (the pictures are shown instead).
    nova : bool
        nova.astrometry.net serves it too; False: only this package's server
        does, and a client asking another server for it is told the result is
        not available (`~astrometry_query.exceptions.ResultNotAvailableError`).
    """
    name: str
    file: str
    routes: tuple
    gated: bool
    media_type: str | None
    download_name: str
    label: str
    listed: bool = True
    nova: bool = True


_FITS = 'application/fits'
#: Every result kind, in the order the web page lists them.
RESULT_KINDS = {k.name: k for k in (
    ResultKind('wcs', ENGINE_OUTPUTS['wcs'], ('wcs_file',), False, _FITS, 'wcs.fits', 'WCS header'),
    ResultKind('new_fits', 'new-image.fits', ('new_fits_file',), True, _FITS, 'new-image.fits',
               'image with the WCS'),
    ResultKind('corr', ENGINE_OUTPUTS['corr'], ('corr_file',), True, _FITS, 'corr.fits',
               "the solver's matched stars"),
    ResultKind('matches', 'matches.fits', ('matches_file',), False, _FITS, 'matches.fits',
               'every star matched with the catalogue, with residuals', nova=False),
    ResultKind('rdls', ENGINE_OUTPUTS['rdls'], ('rdls_file',), False, _FITS, 'rdls.fits',
               'index stars in the field'),
    ResultKind('axy', AXY_FILE, ('axy_file',), False, _FITS, 'axy.fits', 'detected sources'),
    ResultKind('image_rd', 'image-radec.fits', ('image_rd_file',), False, _FITS,
               'image-radec.fits', 'sources with RA, Dec'),
    ResultKind('log', ENGINE_LOG, ('joblog',), False, 'text/plain', 'log', 'solver log'),
    ResultKind('worker_log', WORKER_LOG, ('joblog2',), False, 'text/plain', 'worker.log',
               "the server's account of the job", listed=False),
    ResultKind('annotated', 'annotated.png', ('annotated_full', 'annotated_display'), True, None,
               'annotated.png', 'annotated image', listed=False),
    ResultKind('extraction', EXTRACTION_FILE, ('extraction_image_full',
                                                'extraction_image_display'), True, 'image/png',
               'extraction.png', 'sources given to the solver, circled', listed=False),
)}
#: nova route -> result kind name.
KIND_OF_ROUTE = {route: k.name for k in RESULT_KINDS.values() for route in k.routes}
#: The kinds a client may download through the facade (as nova's API offers them;
#: not 'matches', which nova lacks: ``get_matched_stars`` has it from any server).
DOWNLOAD_KINDS = ('wcs', 'new_fits', 'rdls', 'axy', 'corr', 'image_rd', 'annotated')

# Names an input placed in a job directory must not take.
_RESERVED = {k.file for k in RESULT_KINDS.values()} | {
    REQUEST_FILE, RESULT_FILE, EXTRAS_FILE, JOB_LOG, ERROR_FILE, JOB_CONFIG,
    ENGINE_OUTPUTS['solved'], 'input.fits'}
# Linux's FICLONE ioctl (_IOW(0x94, 9, int)): a copy-on-write clone of a whole file.
_FICLONE = 0x40049409


def utc_now():
    """Now, as a naive UTC datetime (nova's convention for its times)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def write_json(path, data):
    """Write JSON atomically: a reader never sees half a file."""
    write_atomic(path, json.dumps(data, indent=1))


def read_result(job_dir):
    """The ``result.json`` of a job, or None while it has none (not finished)."""
    try:
        return json.loads((Path(job_dir) / RESULT_FILE).read_text(encoding='utf-8'))
    except FileNotFoundError:
        return None


def note_error(job_dir, exc):
    """Record an exception of a job: its traceback in job.log, a line in the log."""
    log.warning('job %s: %s: %s', Path(job_dir).name, type(exc).__name__, exc)
    with open(Path(job_dir) / JOB_LOG, 'a', encoding='utf-8') as f:
        f.write(''.join(traceback.format_exception(exc)))


def place_input(job_dir, input_path):
    """The input's path inside job_dir: a copy of it when outside.

    Never a hard link: the user's file and the job's would be one, and
    editing the image in place would change what the job was solved from.
    Where the filesystem can (btrfs, XFS...), the copy is a reflink: it
    shares the blocks until either file is written, so it costs no space.
    """
    job_dir, input_path = Path(job_dir).resolve(), Path(input_path).resolve()
    if input_path.parent == job_dir:
        return input_path
    name = input_path.name
    target = job_dir / (f'input-{name}' if name in _RESERVED else name)
    if not target.exists():
        if not reflink(input_path, target):
            shutil.copyfile(input_path, target)
    return target


def reflink(source, target):
    """Clone ``source`` as a new file ``target`` (copy-on-write); False, and
    no ``target`` left behind, where the filesystem or the system cannot."""
    try:
        import fcntl
    except ImportError:      # not a POSIX system
        return False
    try:
        with open(source, 'rb') as src, open(target, 'xb') as dst:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        return True
    except FileExistsError:  # placed meanwhile by another process
        return True
    except OSError:
        Path(target).unlink(missing_ok=True)
        return False


class JobStore:
    """Job directories under one folder, ``<root>/<id>``, ids handed out once.

    Several processes may share a store: an id is taken by creating its
    directory, and ids of pruned jobs are never given again.

    Parameters
    ----------
    root : path-like
        The folder of the job directories (created if missing).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._next_id = None

    def __repr__(self):
        return f'<JobStore {str(self.root)!r}>'

    def path(self, job_id):
        """The directory of a job (which may not exist)."""
        return self.root / str(int(job_id))

    def new(self):
        """Create the directory of a new job: (id, path)."""
        with self._lock:
            if self._next_id is None:     # the store is listed once, then counted on
                taken = [int(p.name) for p in self.root.iterdir() if p.name.isdigit()]
                self._next_id = max([*taken, self.highest_pruned()], default=0) + 1
            job_id = self._next_id
            while True:
                try:
                    self.path(job_id).mkdir()
                    self._next_id = job_id + 1
                    return job_id, self.path(job_id)
                except FileExistsError:   # another process took it
                    job_id += 1

    def ids(self):
        """The ids of the jobs that have a request, ascending."""
        return sorted(int(p.name) for p in self.root.iterdir()
                      if p.name.isdigit() and (p / REQUEST_FILE).is_file())

    def highest_pruned(self):
        try:
            return int((self.root / PRUNED_ID_FILE).read_text().strip())
        except (OSError, ValueError):
            return 0

    def note_pruned(self, job_id):
        if job_id > self.highest_pruned():
            write_json(self.root / PRUNED_ID_FILE, int(job_id))
