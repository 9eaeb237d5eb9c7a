"""SQLite state of the nova-compatible server: users, sessions, submissions,
images, jobs, calibrations and tags.

One connection guarded by a lock: every statement is short, so serialising
them costs microseconds and spares us SQLite's multi-connection locking.
The methods return plain dicts already shaped (and key-ordered) like nova's
JSON, so the routes only serialise them.
"""
import hashlib
import json
import secrets
import sqlite3
import string
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

__all__ = ['Store', 'now_string', 'SESSION_AGE']

#: Django's default SESSION_COOKIE_AGE, which nova keeps: 14 days, sliding.
SESSION_AGE = 14 * 24 * 3600.0
_SESSION_ALPHABET = string.ascii_lowercase + string.digits

# AUTOINCREMENT: an id, once given out, never names another submission or job.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, email TEXT NOT NULL DEFAULT '',
    last_start REAL);
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY, user_id INTEGER, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL, args TEXT NOT NULL,
    source TEXT NOT NULL, url TEXT, upload TEXT, original_filename TEXT, hash TEXT,
    submitted_on TEXT NOT NULL, processing_started TEXT, processing_finished TEXT,
    error_message TEXT);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, kind TEXT NOT NULL,
    width INTEGER, height INTEGER, solve_width INTEGER, solve_height INTEGER);
CREATE TABLE IF NOT EXISTS user_images (
    id INTEGER PRIMARY KEY AUTOINCREMENT, submission_id INTEGER NOT NULL,
    image_id INTEGER NOT NULL, original_filename TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, user_image_id INTEGER NOT NULL, queued_time TEXT,
    start_time TEXT, end_time TEXT, status TEXT, objects TEXT NOT NULL DEFAULT '[]',
    requeued INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER UNIQUE NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY, user_image_id INTEGER NOT NULL, text TEXT NOT NULL,
    machine INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ui_sub ON user_images(submission_id);
CREATE INDEX IF NOT EXISTS job_ui ON jobs(user_image_id);
CREATE INDEX IF NOT EXISTS tag_ui ON tags(user_image_id);
CREATE INDEX IF NOT EXISTS sub_user ON submissions(user_id);
CREATE INDEX IF NOT EXISTS job_queued ON jobs(id) WHERE start_time IS NULL;
"""


def now_string():
    """nova's timestamp: ``str()`` of a naive UTC datetime."""
    return str(datetime.now(timezone.utc).replace(tzinfo=None))


def _key_hash(key):
    # API and session keys are kept only as hashes: the database never holds a usable key.
    return hashlib.sha256(key.encode('utf-8')).hexdigest()


def _job_status(row):
    if row['start_time'] is None:
        return 'processing'
    if row['end_time'] is None:
        return 'solving'
    return {'S': 'success', 'F': 'failure'}.get(row['status'], '?')


class Store:
    """The server's database.

    Parameters
    ----------
    path : path-like
        SQLite file; created with its tables when missing.
    """

    def __init__(self, path):
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        # SQLite's lower() is ASCII-only; tags hold Greek letters ("The star ι Ori").
        self._db.create_function('ulower', 1, lambda t: None if t is None else t.lower(),
                                 deterministic=True)
        with self._lock:
            self._db.execute('PRAGMA journal_mode=WAL')
            self._db.execute('PRAGMA synchronous=NORMAL')
            self._db.executescript(_SCHEMA)
            columns = {r['name'] for r in self._db.execute('PRAGMA table_info(jobs)')}
            if 'requeued' not in columns:       # a database from an earlier version
                self._db.execute('ALTER TABLE jobs ADD COLUMN requeued INTEGER NOT NULL DEFAULT 0')

    def close(self):
        """Close the connection (further calls raise)."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self):
        with self._lock:
            self._db.execute('BEGIN IMMEDIATE')
            try:
                yield self._db
            except BaseException:
                self._db.execute('ROLLBACK')
                raise
            self._db.execute('COMMIT')

    def _all(self, sql, *args):
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _one(self, sql, *args):
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    # -- users and sessions ---------------------------------------------------
    def user_for_key(self, api_key):
        """The user id of an API key, creating the user on first use."""
        digest = _key_hash(api_key)
        with self._tx() as db:
            db.execute('INSERT OR IGNORE INTO users (key_hash) VALUES (?)', (digest,))
            row = db.execute('SELECT id, email FROM users WHERE key_hash = ?', (digest,)).fetchone()
        return row['id'], row['email']

    def create_session(self, user_id):
        """A new 32-character ``[a-z0-9]`` session key (Django's format)."""
        key = ''.join(secrets.choice(_SESSION_ALPHABET) for _ in range(32))
        with self._tx() as db:
            # Django's clearsessions, run at each login so the table stays small.
            db.execute('DELETE FROM sessions WHERE expires <= ?', (time.time(),))
            db.execute('INSERT INTO sessions VALUES (?, ?, ?)',
                       (_key_hash(key), user_id, time.time() + SESSION_AGE))
        return key

    def check_session(self, key):
        """Look a session up as nova's pre-checks 4 and 5 do.

        Returns
        -------
        None
            No such session (nova: ``no session with key``).
        0
            The session exists but is expired or anonymous (``user is not authenticated.``).
        int
            The user id; the expiry then slides to now + 14 days.
        """
        now = time.time()
        key = _key_hash(key)
        with self._tx() as db:
            row = db.execute('SELECT user_id, expires FROM sessions WHERE key = ?',
                             (key,)).fetchone()
            if row is None:
                return None
            if row['expires'] <= now or row['user_id'] is None:
                return 0
            db.execute('UPDATE sessions SET expires = ? WHERE key = ?', (now + SESSION_AGE, key))
        return row['user_id']

    def session_user(self, key):
        """The user of a live signed-in session, or None; unlike `check_session`
        the expiry does not slide (the web pages poll often)."""
        row = self._one('SELECT user_id FROM sessions WHERE key = ? AND user_id IS NOT NULL'
                        ' AND expires > ?', _key_hash(key), time.time())
        return row['user_id'] if row else None

    def end_session(self, key):
        """Sign out: the session is deleted, not only its cookie."""
        with self._tx() as db:
            db.execute('DELETE FROM sessions WHERE key = ?', (_key_hash(key),))

    def purge_sessions(self):
        """Delete expired sessions (Django's clearsessions)."""
        with self._tx() as db:
            db.execute('DELETE FROM sessions WHERE expires <= ?', (time.time(),))

    # -- submissions ------------------------------------------------------------
    def create_submission(self, user_id, args, *, source, url=None, upload=None,
                          original_filename=None, hash=None):
        """Store a new, unstarted submission and return its id."""
        with self._tx() as db:
            cur = db.execute(
                'INSERT INTO submissions (user_id, args, source, url, upload, original_filename,'
                ' hash, submitted_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                (user_id, json.dumps(args), source, url, upload, original_filename, hash,
                 now_string()))
        return cur.lastrowid

    def submission_status(self, sub_id):
        """``/api/submissions/<id>`` JSON, or None for an unknown id."""
        sub = self._one('SELECT * FROM submissions WHERE id = ?', sub_id)
        if sub is None:
            return None
        uis = self._all('SELECT id, image_id FROM user_images WHERE submission_id = ? ORDER BY id',
                        sub_id)
        jobs, pairs = [], []
        for ui in uis:
            best = self._best_job(ui['id'])
            jobs.append(best['id'] if best else None)
            if best is not None and best['cal_id'] is not None:
                pairs.append([best['id'], best['cal_id']])
        out = {'user': sub['user_id'],
               'processing_started': sub['processing_started'] or 'None',
               'processing_finished': sub['processing_finished'] or 'None',
               'user_images': [ui['id'] for ui in uis], 'images': [ui['image_id'] for ui in uis],
               'jobs': jobs, 'job_calibrations': pairs}
        message = sub['error_message']
        if message:
            # nova's column holds 255 characters: it keeps the tail behind '...'.
            out['error_message'] = message if len(message) <= 255 else '...' + message[-252:]
        return out

    def _best_job(self, user_image_id):
        # nova's best job: prefer calibrated jobs, then the latest end time.
        return self._one(
            'SELECT j.id, c.id AS cal_id FROM jobs j LEFT JOIN calibrations c ON c.job_id = j.id'
            ' WHERE j.user_image_id = ? ORDER BY c.id IS NULL, j.end_time IS NULL,'
            ' j.end_time DESC, j.id DESC LIMIT 1', user_image_id)

    def submission_exists(self, sub_id):
        return self._one('SELECT 1 FROM submissions WHERE id = ?', sub_id) is not None

    def user_images_of(self, sub_id):
        """UserImage ids of a submission (``submission_images``)."""
        return [r['id'] for r in self._all(
            'SELECT id FROM user_images WHERE submission_id = ? ORDER BY id', sub_id)]

    def claim_submission(self):
        """Mark the oldest unstarted submission started and return it (or None)."""
        with self._tx() as db:
            row = db.execute('SELECT * FROM submissions WHERE processing_started IS NULL'
                             ' ORDER BY id LIMIT 1').fetchone()
            if row is not None:
                db.execute('UPDATE submissions SET processing_started = ? WHERE id = ?',
                           (now_string(), row['id']))
        if row is None:
            return None
        sub = dict(row)
        sub['args'] = json.loads(sub['args'])
        return sub

    def finish_submission(self, sub_id, images, error=None):
        """Record the decoded images (one UserImage and one queued Job each)
        and mark the submission finished; or record its error."""
        with self._tx() as db:
            for image in images:
                cur = db.execute(
                    'INSERT INTO images (path, kind, width, height, solve_width, solve_height)'
                    ' VALUES (?, ?, ?, ?, ?, ?)',
                    (image['path'], image['kind'], image.get('width'), image.get('height'),
                     image.get('solve_width'), image.get('solve_height')))
                cur = db.execute('INSERT INTO user_images (submission_id, image_id, '
                                 'original_filename) VALUES (?, ?, ?)',
                                 (sub_id, cur.lastrowid, image['original_filename']))
                db.execute('INSERT INTO jobs (user_image_id, queued_time) VALUES (?, ?)',
                           (cur.lastrowid, now_string()))
            db.execute('UPDATE submissions SET processing_finished = ?, error_message = ?'
                       ' WHERE id = ?', (now_string(), error, sub_id))

    # -- jobs -------------------------------------------------------------------
    def claim_job(self):
        """Start a queued job; return what the solver needs (or None).

        Fair between users: the oldest queued job of the user served least
        recently goes first, so one user's batch cannot starve the others.
        """
        with self._tx() as db:
            row = db.execute(
                'SELECT j.id, ui.original_filename, i.id AS image_id, i.path, i.kind, i.width,'
                ' i.height, i.solve_width, i.solve_height, s.args, s.user_id FROM jobs j'
                ' JOIN user_images ui ON ui.id = j.user_image_id'
                ' JOIN images i ON i.id = ui.image_id JOIN submissions s ON s.id = ui.submission_id'
                ' JOIN users u ON u.id = s.user_id WHERE j.start_time IS NULL'
                ' ORDER BY u.last_start IS NOT NULL, u.last_start, j.id LIMIT 1').fetchone()
            if row is not None:
                db.execute('UPDATE jobs SET start_time = ? WHERE id = ?', (now_string(), row['id']))
                db.execute('UPDATE users SET last_start = ? WHERE id = ?',
                           (time.time(), row['user_id']))
        if row is None:
            return None
        job = dict(row)
        job['args'] = json.loads(job['args'])
        return job

    def finish_job(self, job_id, success, *, calibration=None, objects=(), machine_tags=(),
                   image_size=None):
        """Record a job's end: status S/F, calibration, sky objects and machine tags."""
        with self._tx() as db:
            db.execute('UPDATE jobs SET end_time = ?, status = ?, objects = ? WHERE id = ?',
                       (now_string(), 'S' if success else 'F', json.dumps(list(objects)), job_id))
            ui = db.execute('SELECT user_image_id, image_id FROM jobs JOIN user_images'
                            ' ON user_images.id = jobs.user_image_id WHERE jobs.id = ?',
                            (job_id,)).fetchone()
            if calibration is not None:
                db.execute('INSERT OR REPLACE INTO calibrations (job_id, data) VALUES (?, ?)',
                           (job_id, json.dumps(calibration)))
            db.execute('DELETE FROM tags WHERE user_image_id = ? AND machine = 1',
                       (ui['user_image_id'],))
            db.executemany('INSERT INTO tags (user_image_id, text, machine) VALUES (?, ?, 1)',
                           [(ui['user_image_id'], t) for t in machine_tags])
            if image_size and all(image_size):
                db.execute('UPDATE images SET width = coalesce(width, ?), height ='
                           ' coalesce(height, ?) WHERE id = ?', (*image_size, ui['image_id']))

    def set_objects(self, job_id, objects):
        """Store the objects in a solved job's field (nova's objects and machine tags)."""
        with self._tx() as db:
            db.execute('UPDATE jobs SET objects = ? WHERE id = ?', (json.dumps(list(objects)), job_id))
            ui = db.execute('SELECT user_image_id FROM jobs WHERE id = ?', (job_id,)).fetchone()
            db.execute('DELETE FROM tags WHERE user_image_id = ? AND machine = 1',
                       (ui['user_image_id'],))
            db.executemany('INSERT INTO tags (user_image_id, text, machine) VALUES (?, ?, 1)',
                           [(ui['user_image_id'], t) for t in objects])

    def has_objects(self, job_id):
        """True when the job's objects in field were stored."""
        row = self._one("SELECT objects != '[]' AS has FROM jobs WHERE id = ?", job_id)
        return bool(row and row['has'])

    def job(self, job_id):
        """A job's row with status, original filename, calibration and the recorded
        image size (``image_width``, ``image_height``), or None."""
        row = self._one('SELECT j.*, ui.original_filename, ui.id AS ui_id, c.data AS calibration,'
                        ' i.width AS image_width, i.height AS image_height'
                        ' FROM jobs j JOIN user_images ui ON ui.id = j.user_image_id'
                        ' JOIN images i ON i.id = ui.image_id'
                        ' LEFT JOIN calibrations c ON c.job_id = j.id WHERE j.id = ?', job_id)
        if row is None:
            return None
        job = dict(row)
        job['status'] = _job_status(row)
        job['objects'] = json.loads(row['objects'])
        job['calibration'] = json.loads(row['calibration']) if row['calibration'] else None
        # tags: every tag of the user image; machine_tags: the solver's only.
        tags = self._all('SELECT text, machine FROM tags WHERE user_image_id = ? ORDER BY id',
                         row['ui_id'])
        job['tags'] = [t['text'] for t in tags]
        job['machine_tags'] = [t['text'] for t in tags if t['machine']]
        return job

    def jobs_of_user(self, user_id):
        """Every job on every user image of a user (``myjobs``)."""
        return [r['id'] for r in self._all(
            'SELECT j.id FROM jobs j JOIN user_images ui ON ui.id = j.user_image_id'
            ' JOIN submissions s ON s.id = ui.submission_id WHERE s.user_id = ? ORDER BY j.id',
            user_id)]

    def jobs_by_tag(self, query, exact):
        """Job ids of images tagged with ``query`` (nova's jobs_by_tag).

        Raises
        ------
        LookupError
            Exact mode and several tags match case-insensitively (nova: 500).
        TypeError
            Substring mode without a query (nova: 500).
        """
        if exact:
            texts = {r['text'] for r in self._all(
                'SELECT DISTINCT text FROM tags WHERE ulower(text) = ulower(?)', query)}
            if len(texts) > 1:
                raise LookupError('several tags match')
            where, arg = 't.text = ?', (texts.pop() if texts else None)
        else:
            if query is None:
                raise TypeError('jobs_by_tag needs a query')
            where, arg = 'instr(ulower(t.text), ulower(?)) > 0', query
        # One row per matching tag: with substring matches an image can come back twice.
        rows = self._all('SELECT t.user_image_id AS ui FROM tags t JOIN user_images ui ON'
                         f' ui.id = t.user_image_id WHERE {where} ORDER BY ui.submission_id DESC,'
                         ' ui.id', arg)
        out = []
        for row in rows:
            out += [r['id'] for r in self._all(
                'SELECT id FROM jobs WHERE user_image_id = ? ORDER BY id', row['ui'])]
        return out

    def human_session(self, key):
        """True when ``key`` is a live logged-in session (the anti-bot cookie)."""
        row = self._one('SELECT 1 FROM sessions WHERE key = ? AND user_id IS NOT NULL'
                        ' AND expires > ?', _key_hash(key), time.time())
        return row is not None

    def requeue_job(self, job_id, limit):
        """Put a started job back in the queue (its solve was lost), at most
        ``limit`` times; returns False when it was requeued that often already."""
        with self._tx() as db:
            row = db.execute('SELECT requeued FROM jobs WHERE id = ?', (job_id,)).fetchone()
            if row is None or (row['requeued'] or 0) >= limit:
                return False
            db.execute('UPDATE jobs SET start_time = NULL, requeued = coalesce(requeued, 0) + 1'
                       ' WHERE id = ?', (job_id,))
        return True

    def recover(self):
        """Requeue work interrupted by a stop or a crash.

        Submissions started but not finished go back to unstarted (as nova).
        Jobs started but not ended go back to queued, keeping their ids (nova
        deletes them and makes new ones; keeping the id lets clients that
        already poll the job carry on).

        Returns
        -------
        tuple of int
            Number of submissions and jobs requeued.
        """
        with self._tx() as db:
            subs = db.execute('UPDATE submissions SET processing_started = NULL WHERE'
                              ' processing_started IS NOT NULL AND processing_finished IS NULL'
                              ).rowcount
            jobs = db.execute('UPDATE jobs SET start_time = NULL WHERE start_time IS NOT NULL'
                              ' AND end_time IS NULL').rowcount
        return subs, jobs

    # -- the web pages' views ---------------------------------------------------
    def visible_submissions(self, user_id, sub_id=None, limit=50, everyone=False):
        """Submissions ``user_id`` may see (public ones and their own; ``everyone``:
        all of them), newest first."""
        return self._all(
            'SELECT id, user_id, args, url, original_filename, submitted_on, processing_started,'
            ' processing_finished FROM submissions WHERE (? IS NULL OR id = ?) AND (? OR user_id = ?'
            " OR json_extract(args, '$.publicly_visible') = 'y') ORDER BY id DESC LIMIT ?",
            sub_id, sub_id, bool(everyone), -1 if user_id is None else user_id, limit)

    def job_states(self, job_ids):
        """{job id: 'processing' | 'solving' | 'success' | 'failure'}."""
        job_ids = list(job_ids)
        if not job_ids:
            return {}
        rows = self._all('SELECT id, start_time, end_time, status FROM jobs WHERE id IN '
                         f'({",".join("?" * len(job_ids))})', *job_ids)
        return {r['id']: _job_status(r) for r in rows}

    def job_submission(self, job_id):
        """The submission of a job (id, user_id, args), or None."""
        return self._one('SELECT s.id, s.user_id, s.args FROM jobs j JOIN user_images ui'
                         ' ON ui.id = j.user_image_id JOIN submissions s ON s.id = ui.submission_id'
                         ' WHERE j.id = ?', job_id)

    def counts(self):
        """Queued/running numbers, for logs and the home page."""
        row = self._one(
            "SELECT (SELECT count(*) FROM submissions WHERE processing_finished IS NULL) AS subs,"
            " (SELECT count(*) FROM jobs WHERE start_time IS NULL) AS queued,"
            " (SELECT count(*) FROM jobs WHERE start_time IS NOT NULL AND end_time IS NULL)"
            " AS running, (SELECT count(*) FROM jobs) AS jobs")
        return dict(row)
