"""The HTML of the server's web pages, from the templates in the ``web/``
directory next to this module.

Every user-provided string is HTML-escaped (`esc`); the page script sets text,
never markup, and the Content-Security-Policy (`HEADERS`) allows no inline
script.
"""
import html
import string
from functools import lru_cache
from pathlib import Path

from starlette.responses import HTMLResponse

from ..results import parity_text
from .web_auth import CSRF_COOKIE, CSRF_FIELD
from .web_forms import FORM_FIELDS, PARITIES, SCALE_UNITS
from .web_links import sky_links

__all__ = ['esc', 'page', 'form_html', 'table_html', 'facts_html', 'solution_html',
           'extraction_html', 'solved_logodds', 'refresh', 'ASSETS', 'HEADERS']

#: The templates, style sheet and script (package data ``web/*``).
ASSETS = Path(__file__).with_name('web')
HEADERS = {'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                      "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
           'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'same-origin',
           'Cache-Control': 'no-store'}


def esc(value):
    """HTML-escape any value (quotes too: it may land in an attribute)."""
    return html.escape(str(value), quote=True)


@lru_cache(maxsize=None)
def _template(name):
    return string.Template((ASSETS / name).read_text(encoding='utf-8'))


def page(ctx, title, content, status=200, head='', *, sign_in):
    """A whole page around ``content``, setting the CSRF cookie when ``ctx`` has a fresh
    nonce; ``sign_in``: the server has API keys, so strangers are offered a sign-in link."""
    if ctx.signed_in:
        account = (f'<div><span>Signed in</span><form method="post" action="/signout">'
                   f'<input type="hidden" name="{CSRF_FIELD}" value="{ctx.token}">'
                   '<button type="submit">Sign out</button></form></div>')
    elif sign_in:
        account = '<div><a href="/#signin-heading">Sign in</a></div>'
    else:
        account = '<div><span>Open server: no sign-in needed</span></div>'
    api_url = str(ctx.request.base_url).rstrip('/') + '/api/'
    body = _template('base.html').substitute(title=esc(title), head=head, account=account,
                                             content=content, api_url=esc(api_url))
    resp = HTMLResponse(body, status_code=status, headers=HEADERS)
    if ctx.fresh:
        resp.set_cookie(CSRF_COOKIE, ctx.nonce, httponly=True, samesite='lax', path='/',
                        secure=ctx.request.url.scheme == 'https')
    return resp


def form_html(ctx, errors, values):
    """The upload form (with ``values`` and ``errors``), or the sign-in form for
    those who may not submit."""
    errors_html = ''
    if errors:
        what = 'You are not signed in' if ctx.user is None else 'The image was not submitted'
        errors_html = (f'<div class="errors" role="alert"><h3>{what}</h3><ul>'
                       + ''.join(f'<li>{esc(e)}</li>' for e in errors) + '</ul></div>')
    if ctx.user is None:
        return _template('signin.html').substitute(errors=errors_html, csrf=ctx.token)
    values = values or {'scale_units': 'degwidth', 'parity': '2', 'publicly_visible': ''}

    def options(choices, chosen):
        return ''.join(f'<option value="{v}"{" selected" if v == chosen else ""}>{esc(t)}</option>'
                       for v, t in choices)
    fields = {k: esc(values.get(k) or '') for k in FORM_FIELDS}
    fields.update(scale_units=options(SCALE_UNITS, values.get('scale_units')),
                  parity=options(PARITIES, values.get('parity')),
                  public=' checked' if values.get('publicly_visible') == 'y' else '')
    del fields['publicly_visible']
    return _template('upload.html').substitute(errors=errors_html, csrf=ctx.token, **fields)


def table_html(subs, poll, heading, caption):
    """A live list of submission summaries; the script polls ``poll`` for updates."""
    rows = ''.join(_row_html(s) for s in subs) or (
        '<tr><td class="empty" colspan="4">No submissions yet.</td></tr>')
    return _template('table.html').substitute(
        heading=esc(heading), poll=esc(poll), caption=esc(caption), rows=rows,
        final='yes' if all(s['final'] for s in subs) else 'no')


def _row_html(sub):
    """A list row; app.js builds the same from the JSON."""
    cells = ''.join((f'<a class="badge s-{b["kind"]}" href="{esc(b["href"])}">{esc(b["text"])}</a>'
                     if b['href'] else f'<span class="badge s-{b["kind"]}">{esc(b["text"])}</span>')
                    for b in sub['badges'])
    if sub['error']:
        cells += f'<span class="error-text">{esc(sub["error"])}</span>'
    return (f'<tr data-sub="{sub["id"]}"><td><a href="{sub["href"]}">{sub["id"]}</a></td>'
            f'<td class="name">{esc(sub["name"])}</td><td>{esc(sub["submitted"])}</td>'
            f'<td class="state">{cells}</td></tr>')


def refresh(final):
    """Without the script, pages of unfinished work reload themselves."""
    return '' if final else '<noscript><meta http-equiv="refresh" content="5"></noscript>'


def facts_html(facts):
    return '<dl class="facts">' + ''.join(f'<dt>{t}</dt><dd>{v}</dd>' for t, v in facts) + '</dl>'


def extraction_html(job_id, size, n_sources):
    """The job's extraction image: the sources given to the solver, circled."""
    w, h = size
    dims = f' width="{int(w)}" height="{int(h)}"' if w and h else ''
    given = f'{int(n_sources)} given to the solver; ' if n_sources else ''
    return (f'<h2>Detected sources</h2><figure class="extraction">'
            f'<img id="extraction" src="/extraction_image_display/{job_id}"'
            f'{dims} alt="The image with the detected sources circled">'
            f'<figcaption>Circled: the sources found in the image ({given}<a '
            f'href="/extraction_image_full/{job_id}">full size</a>)</figcaption></figure>')


def command_html(command):
    """The job's equivalent solve-field command, in a block to copy (the script
    adds a Copy button)."""
    return ('<h2 id="command-heading">The same solve with solve-field</h2>'
            '<p class="sub">Run it where the input file is (astrometry.net installed); the '
            'lines starting with # say what it does not reproduce.</p>'
            f'<pre class="command" id="command-line" tabindex="0" '
            f'aria-labelledby="command-heading">{esc(command)}</pre>')


def solved_logodds(result):
    """The log-odds of the engine run that solved (``result.json``'s attempts), or None."""
    return next((a.get('logodds') for a in result.get('attempts') or () if a.get('solved')), None)


def solution_html(job_id, job, result):
    """Annotated image, calibration (with its log-odds and links to sky viewers)
    and objects in the field of a calibrated job."""
    import astropy.units as u
    from astropy.coordinates import Angle
    cal = job['calibration']
    ra, dec = cal['ra'], cal['dec']
    ra_text = Angle(ra, u.deg).to_string(unit=u.hourangle, sep='hms', precision=2, pad=True)
    dec_text = Angle(dec, u.deg).to_string(unit=u.deg, sep=('°', '′', '″'), precision=1, pad=True,
                                           alwayssign=True)
    width, height = cal.get('width_arcsec'), cal.get('height_arcsec')
    if width and height:
        unit, scale = ((' degrees', 3600.0) if max(width, height) >= 7200 else
                       (' arcmin', 60.0) if max(width, height) >= 120 else (' arcsec', 1.0))
        digits = {3600.0: 2, 60.0: 1, 1.0: 0}[scale]
        size = f'{width / scale:.{digits}f} × {height / scale:.{digits}f}{unit}'
    else:
        size = 'unknown'
    w, h = result.get('width'), result.get('height')
    objects = ''.join(f'<li>{esc(o)}</li>' for o in _whole_names(job['objects']))
    logodds = solved_logodds(result)
    links = ''.join(f'<li><a href="{esc(url)}" rel="noopener noreferrer">{esc(name)}</a></li>'
                    for name, url in sky_links(cal, job.get('original_filename') or f'job {job_id}'))
    return _template('solution.html').substitute(
        job_id=job_id, size=f' width="{int(w)}" height="{int(h)}"' if w and h else '',
        ra=f'{ra:.8f}', ra_hms=esc(ra_text), ra_deg=f'{ra:.5f}',
        dec=f'{dec:.8f}', dec_dms=esc(dec_text), dec_deg=f'{dec:+.5f}',
        pixscale=f'{cal["pixscale"]:.6f}', pixscale_text=f'{cal["pixscale"]:.3f}',
        width=esc(width), height=esc(height), size_text=esc(size),
        radius=f'{cal["radius"]:.6f}', radius_text=f'{cal["radius"]:.3f}',
        orientation=f'{cal["orientation"]:.4f}', orientation_text=f'{cal["orientation"]:.2f}',
        parity=f'{cal["parity"]:g}',
        parity_text=parity_text(cal['parity']),
        logodds='' if logodds is None else f'{logodds:g}',
        logodds_text='not recorded' if logodds is None else
        f'{logodds:.1f} <span class="sub">(natural log of the odds that the match is real; '
        'the solver accepts a match from 20.7, odds of 10<sup>9</sup> to 1)</span>',
        sky_links=links, objects=objects or '<li>None listed.</li>')


def _whole_names(objects):
    """nova's objects in field are fragments split on "/" ("The star Alcyone (η Tau",
    "25 Tau)"): join those whose parentheses only balance together, for reading."""
    out, open_ = [], 0
    for name in objects:
        if open_ > 0 and out:
            out[-1] += ' / ' + name
        else:
            out.append(name)
        open_ = max(0, open_ + name.count('(') - name.count(')'))
    return out
