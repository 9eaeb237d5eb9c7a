// Live status for the submission lists and the job page.  The pages are complete
// without this script; it only keeps them current by polling JSON.
'use strict';
(function () {
  var FAST = 1500, SLOW = 5000, RETRY = 3000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;   // text, never markup: names are user input
    return node;
  }

  // The same markup as the server's (web.py, _row_html).
  function stateCell(sub) {
    var td = el('td', 'state');
    sub.badges.forEach(function (badge) {
      var node = el(badge.href ? 'a' : 'span', 'badge s-' + badge.kind, badge.text);
      if (badge.href) node.href = badge.href;
      td.appendChild(node);
    });
    if (sub.error) td.appendChild(el('span', 'error-text', sub.error));
    return td;
  }

  function row(sub) {
    var tr = el('tr');
    tr.dataset.sub = String(sub.id);
    var link = el('a', '', String(sub.id));
    link.href = sub.href;
    var first = el('td');
    first.appendChild(link);
    tr.appendChild(first);
    tr.appendChild(el('td', 'name', sub.name));
    tr.appendChild(el('td', '', sub.submitted));
    tr.appendChild(stateCell(sub));
    return tr;
  }

  function announce(text) {
    var live = document.getElementById('live-note');
    if (live) live.textContent = text;
  }

  function render(table, subs) {
    var body = table.tBodies[0];
    var seen = table._seen || {};
    var order = subs.map(function (s) { return s.id; }).join(',');
    var changed = [];
    if (order !== table._order || !subs.length) {
      // New or removed submissions: rebuild the body.
      body.replaceChildren.apply(body, subs.length ? subs.map(row) : [emptyRow(table)]);
    } else {
      // Same rows: touch only the state cells that changed (keeps focus and selection).
      subs.forEach(function (sub, i) {
        var key = JSON.stringify(sub);
        if (seen[sub.id] !== undefined && seen[sub.id] !== key) {
          body.rows[i].replaceChild(stateCell(sub), body.rows[i].cells[3]);
          changed.push('Submission ' + sub.id + ': ' + sub.badges.map(function (b) {
            return b.text; }).join(', '));
        }
      });
    }
    table._order = order;
    table._seen = {};
    subs.forEach(function (sub) { table._seen[sub.id] = JSON.stringify(sub); });
    if (changed.length) announce(changed.join('; '));
    // A submission's page: its processing times too.
    if (subs.length === 1) {
      ['started', 'finished'].forEach(function (key) {
        var node = document.getElementById('sub-' + key);
        if (node) node.textContent = subs[0][key];
      });
    }
  }

  function emptyRow(table) {
    var tr = el('tr'), td = el('td', 'empty', table.dataset.empty || 'Nothing yet.');
    td.colSpan = 4;
    tr.appendChild(td);
    return tr;
  }

  function pollList(table) {
    function tick() {
      fetch(table.dataset.poll, {cache: 'no-store', credentials: 'same-origin',
                                 headers: {Accept: 'application/json'}})
        .then(function (reply) {
          if (!reply.ok) throw new Error('HTTP ' + reply.status);
          return reply.json();
        })
        .then(function (data) {
          render(table, data.submissions);
          table.dataset.final = data.final ? 'yes' : 'no';
          setTimeout(tick, data.final ? SLOW : FAST);
        })
        .catch(function () { setTimeout(tick, RETRY); });   // a restart: try again
    }
    table._seen = {};
    table._order = null;     // the first answer rebuilds the rows the server rendered
    setTimeout(tick, table.dataset.final === 'yes' ? SLOW : FAST);
  }

  function pollJob(node) {
    var last = node.dataset.status;
    function tick() {
      fetch('/api/jobs/' + node.dataset.job, {cache: 'no-store'})
        .then(function (reply) { return reply.json(); })
        .then(function (data) {
          if (data.status !== last) {
            last = data.status;
            node.textContent = data.status === 'processing' ? 'queued' : data.status;
            node.className = 'badge s-' + data.status;
            announce('Job ' + node.dataset.job + ': ' + data.status);
          }
          // Finished: the page shows results the server renders.
          if (data.status === 'success' || data.status === 'failure') window.location.reload();
          else setTimeout(tick, FAST);
        })
        .catch(function () { setTimeout(tick, RETRY); });
    }
    setTimeout(tick, FAST);
  }

  // The solve-field command of a job page: a button that copies it.
  function copyButton(pre) {
    if (!navigator.clipboard) return;
    var button = el('button', 'copy', 'Copy the command');
    button.type = 'button';
    button.addEventListener('click', function () {
      navigator.clipboard.writeText(pre.textContent).then(function () {
        announce('The command was copied.');
      });
    });
    pre.insertAdjacentElement('afterend', button);
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('pre.command').forEach(copyButton);
    document.querySelectorAll('table[data-poll]').forEach(pollList);
    document.querySelectorAll('[data-job][data-status]').forEach(function (node) {
      if (node.dataset.status !== 'success' && node.dataset.status !== 'failure') pollJob(node);
    });
  });
})();
