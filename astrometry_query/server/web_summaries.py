"""What the web pages' submission lists show: the submissions a user may see
(public ones and their own) with their status badges, as JSON-ready dicts that
the pages render and the page script polls, so both show the same.
"""
import json

__all__ = ['summaries', 'public', 'JOB_WORDS', 'LIST_LENGTH']

LIST_LENGTH = 50
#: nova's job status -> (badge class, word shown)
JOB_WORDS = {'processing': ('queued', 'queued'), 'solving': ('solving', 'solving'),
             'success': ('success', 'success'), 'failure': ('failure', 'failure'), '?': ('failure', '?')}


def summaries(store, user, sub_id=None, everyone=False):
    """The submissions ``user`` may see (public ones and their own; ``everyone``: all,
    as on an open server), newest first, each with the badges the lists show."""
    rows = store.visible_submissions(user, sub_id, LIST_LENGTH, everyone)
    statuses = [store.submission_status(row['id']) for row in rows]
    states = store.job_states(j for s in statuses for j in s['jobs'] if j is not None)
    return [_summary(row, status, states) for row, status in zip(rows, statuses)]


def public(args):
    """Whether a submission's stored arguments (JSON) make it visible to everyone."""
    try:
        return json.loads(args).get('publicly_visible') == 'y'
    except (TypeError, ValueError, AttributeError):
        return False


def _summary(row, status, states):
    """One submission as the lists show it: JSON-ready, the same for page and script."""
    def badge(kind, text, href=None):
        return {'kind': kind, 'text': text, 'href': href}
    error, final = status.get('error_message', ''), True
    if row['processing_started'] is None:
        badges, final = [badge('queued', 'queued')], False
    elif row['processing_finished'] is None:
        badges, final = [badge('processing', 'reading the image')], False
    elif error or not status['jobs']:
        badges = [badge('failed', 'failed')]
    else:
        badges = []
        for job in status['jobs']:
            if job is None:
                badges.append(badge('waiting', 'waiting for a solver'))
                final = False
                continue
            kind, word = JOB_WORDS.get(states.get(job), ('failure', '?'))
            badges.append(badge(kind, f'job {job}: {word}', f'/job/{job}'))
            final = final and kind in ('success', 'failure')
    stamp = (row['submitted_on'] or '')[:19]
    return {'id': row['id'], 'href': f'/status/{row["id"]}',
            'name': row['original_filename'] or row['url'] or '(no data)', 'submitted': stamp,
            'started': (row['processing_started'] or 'not yet')[:19],
            'finished': (row['processing_finished'] or 'not yet')[:19],
            'public': public(row['args']), 'badges': badges, 'error': error, 'final': final}
