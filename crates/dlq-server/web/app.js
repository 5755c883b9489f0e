// The dlq dashboard: a static page that asks for a token once, keeps it in
// sessionStorage, and calls the JSON API with it as a bearer token.
//
// Every value from the server is put into the page with textContent or as
// an attribute value, never as HTML, so a payload such as "<script>" is
// shown as text. No inline scripts or styles: the server's CSP forbids them.
'use strict';

(() => {
  const TOKEN_KEY = 'dlq.token';
  const REFRESH_MS = 10000;
  let timers = [];
  const charts = new Set();
  let me = null;
  // Bumped by every page change: a page still loading for an older one
  // draws into a detached element and its timers stop.
  let generation = 0;

  // ------------------------------------------------------------- helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const isOperator = () => me && me.role === 'operator';
  const enc = encodeURIComponent;

  function age(seconds) {
    if (seconds === null || seconds === undefined) return '-';
    if (seconds < 60) return `${seconds}s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
    return `${Math.floor(seconds / 86400)}d ${Math.floor((seconds % 86400) / 3600)}h`;
  }

  function cut(text, n) {
    const s = String(text ?? '');
    return s.length > n ? `${s.slice(0, n - 1)}…` : s;
  }

  function flash(message) {
    const f = $('flash');
    f.textContent = message || '';
    f.hidden = !message;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token()}` };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (method === 'POST') {
      headers['X-DLQ-CSRF'] = '1';
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body || {});
    }
    const resp = await fetch(path, init);
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (resp.status === 401) {
      signOut('The token was refused; sign in again.');
      throw new ApiError(401, 'unauthorized');
    }
    if (!resp.ok) {
      const message = data && data.error ? data.error.message : `HTTP ${resp.status}`;
      throw new ApiError(resp.status, message);
    }
    return data;
  }

  function clearPage() {
    generation += 1;
    for (const t of timers) clearInterval(t);
    timers = [];
    for (const c of [...charts]) dropChart(c);
    flash('');
    const root = el('div', { class: 'page' });
    $('view').replaceChildren(root);
    return root;
  }

  function every(ms, fn) {
    const mine = generation;
    const timer = setInterval(() => {
      if (mine !== generation) clearInterval(timer);
      else fn().catch((e) => flash(e.message));
    }, ms);
    timers.push(timer);
  }

  // Headers starting with '#' are numeric columns (right-aligned).
  function table(headers, rows, attrs) {
    const th = (h) => (h.startsWith('#') ? el('th', { class: 'num' }, h.slice(1)) : el('th', {}, h));
    return el('table', attrs || {},
      el('thead', {}, el('tr', {}, headers.map(th))),
      el('tbody', {}, rows));
  }

  function dropChart(c) {
    if (c && charts.delete(c)) c.destroy();
  }

  function stat(label, value, id) {
    return el('div', { class: 'stat' },
      el('div', { class: 'stat-value', id, 'data-testid': id }, value),
      el('div', { class: 'stat-label' }, label));
  }

  // A line chart of {at, pending} points per series, with uPlot.
  function chart(target, seriesList, height) {
    if (!window.uPlot) return null;
    const times = [...new Set(seriesList.flatMap((s) => s.points.map((p) => p.at)))].sort();
    const xs = times.map((t) => Date.parse(t) / 1000);
    const data = [xs];
    const palette = ['#c0392b', '#2471a3', '#239b56', '#b9770e', '#7d3c98'];
    const series = [{}];
    seriesList.forEach((s, i) => {
      const byTime = new Map(s.points.map((p) => [p.at, p.pending]));
      data.push(times.map((t) => (byTime.has(t) ? byTime.get(t) : null)));
      series.push({ label: s.label, stroke: palette[i % palette.length], width: 2, spanGaps: true,
        points: { show: xs.length < 60 } });
    });
    if (xs.length === 0) {
      target.append(el('p', { class: 'muted' }, 'No size history yet: the server samples every few seconds.'));
      return null;
    }
    const width = Math.max(320, Math.min(target.clientWidth || 800, 1100));
    // A single sample would make uPlot stretch the time axis over years:
    // show the ten minutes around it instead.
    const scales = xs.length === 1 ? { x: { time: true, range: () => [xs[0] - 300, xs[0] + 300] } } : {};
    const u = new window.uPlot({ width, height: height || 220, series, scales, axes: [{}, { label: 'pending' }] }, data, target);
    charts.add(u);
    return u;
  }

  // A group's arrivals from its records' own failure times (the analysis's
  // hourly `timeline`), so a DLQ's history shows at once, not only what the
  // server sampled since it started. Empty buckets in between count 0; the
  // bucket widens (hour, day, week, 30 days) until at most 500 remain.
  function arrivals(timeline) {
    const points = (timeline || []).map((b) => [Date.parse(b.hour) / 1000, Number(b.count)]);
    if (!points.length) return { xs: [], ys: [], step: 3600 };
    const first = Math.min(...points.map((p) => p[0]));
    const last = Math.max(...points.map((p) => p[0]));
    const steps = [3600, 86400, 7 * 86400, 30 * 86400];
    const step = steps.find((st) => (last - first) / st < 500) || steps[steps.length - 1];
    const start = Math.floor(first / step) * step;
    const n = Math.floor((last - start) / step) + 1;
    const xs = Array.from({ length: n }, (_, i) => start + i * step);
    const ys = new Array(n).fill(0);
    for (const [t, c] of points) ys[Math.floor((t - start) / step)] += c;
    return { xs, ys, step };
  }

  const STEP_NAMES = { 3600: 'hour', 86400: 'day', 604800: 'week', 2592000: '30 days' };
  const shortTime = (t) => String(t || '').replace('T', ' ').slice(0, 16);

  // A small bar chart of a group's arrivals, with its time span under it.
  function arrivalsChart(g) {
    const { xs, ys, step } = arrivals(g.timeline);
    const total = ys.reduce((a, b) => a + b, 0);
    const plot = el('div', { class: 'spark' });
    const box = el('div', {
      class: 'group-timeline', 'data-testid': 'group-timeline',
      'data-total': total, 'data-buckets': xs.length, 'data-step': step,
      title: `${total} records by the time of their last failure, per ${STEP_NAMES[step]}`,
    }, plot, el('div', { class: 'muted small' },
      xs.length > 1 ? `${shortTime(g.first_seen)} → ${shortTime(g.last_seen)}` : shortTime(g.last_seen),
      ` · per ${STEP_NAMES[step]}`));
    if (window.uPlot && xs.length) {
      // One bucket alone would make uPlot stretch the axis over years.
      const range = [xs[0] - step, xs[xs.length - 1] + step];
      const u = new window.uPlot({
        width: 220, height: 44,
        legend: { show: false }, cursor: { show: false }, select: { show: false },
        axes: [{ show: false }, { show: false }],
        scales: { x: { time: true, range: () => range }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series: [{}, {
          stroke: '#2471a3', fill: 'rgba(36, 113, 163, 0.45)', width: 1,
          paths: window.uPlot.paths.bars({ size: [0.9, 14] }), points: { show: false },
        }],
      }, [xs, ys], plot);
      charts.add(u);
    }
    return box;
  }

  // A group's verdict, the rule (or `record`) that gave it, and why.
  function verdictCell(g) {
    return el('td', {},
      el('span', { class: `verdict ${g.verdict}`, 'data-testid': 'verdict' }, g.verdict),
      g.verdict_rule ? el('div', { class: 'mono small', 'data-testid': 'verdict-rule' }, g.verdict_rule) : null,
      el('div', { class: 'reason', 'data-testid': 'verdict-reason', title: g.verdict_reason }, cut(g.verdict_reason, 160)));
  }

  async function history(dlq) {
    const h = await api('GET', `/api/dlqs/${enc(dlq)}/history`);
    return { label: dlq, points: h.points };
  }

  // ------------------------------------------------------------- sign in

  function showLogin(message) {
    clearPage();
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('signout').hidden = true;
    $('who').textContent = '';
    $('token').focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    me = null;
    showLogin(message);
  }

  async function signIn(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      const health = await api('GET', '/api/health');
      me = health.you;
    } catch (e) {
      if (e.status !== 401) showLogin(e.message);
      return false;
    }
    $('login').hidden = true;
    $('signout').hidden = false;
    $('who').textContent = `${me.label} (${me.role})`;
    return true;
  }

  // ------------------------------------------------------------- pages

  async function overview(view) {
    view.append(el('h1', {}, 'Dead letter queues'));
    const alertsBox = el('div', { id: 'alerts' });
    const tableBox = el('div', { id: 'dlq-table' });
    const chartBox = el('div', { class: 'chart', id: 'overview-chart' });
    let trend = null;
    view.append(alertsBox, el('div', { class: 'card' }, tableBox),
      el('div', { class: 'card' }, el('h2', {}, 'Pending records over time'), chartBox));

    async function load() {
      const [{ dlqs }, alerts] = await Promise.all([api('GET', '/api/dlqs'), api('GET', '/api/alerts')]);
      const rows = dlqs.map((d) => el('tr', { 'data-dlq': d.dlq },
        el('td', {}, el('a', { href: `#/dlq/${enc(d.dlq)}` }, d.dlq)),
        el('td', { class: 'num', 'data-testid': 'pending' }, d.pending),
        el('td', { class: 'num' }, d.parked),
        el('td', { class: 'num' }, d.replayed),
        el('td', { class: 'num', 'data-testid': 'archived' }, d.archived),
        el('td', { class: 'num' }, d.total),
        el('td', { class: 'num' }, age(d.oldest_pending_age_seconds))));
      tableBox.replaceChildren(dlqs.length
        ? table(['DLQ', '#pending', '#parked', '#replayed', '#archived', '#total', '#oldest pending'], rows, { id: 'dlqs' })
        : el('p', { class: 'muted' }, 'The store holds no DLQ yet.'));
      alertsBox.replaceChildren(...(alerts.alerts.length
        ? [el('div', { class: 'card alerts' }, el('h2', {}, 'Firing alerts'),
          el('ul', {}, alerts.alerts.map((a) => el('li', { class: `alert ${a.severity}` },
            el('strong', {}, a.rule), a.dlq ? ` on ${a.dlq}` : '', `: ${a.message}`))))]
        : [el('p', { class: 'ok' }, 'No alert is firing.')]));
      const series = await Promise.all(dlqs.map((d) => history(d.dlq)));
      dropChart(trend);
      chartBox.replaceChildren();
      trend = chart(chartBox, series);
    }
    await load();
    every(REFRESH_MS, load);
  }

  // A record's status, coloured by a class of its name (app.css).
  function statusBadge(status) {
    return el('span', { class: `status ${status}`, 'data-testid': 'status' }, status);
  }

  function maskedPayload(dlq, record) {
    const p = record.payload;
    const cell = el('span', { class: 'masked' },
      `${p.kind} · ${p.bytes} B · sha256 ${p.sha256_prefix}…`);
    const box = el('div', { class: 'payload' }, cell);
    if (isOperator()) {
      box.append(' ', el('button', {
        type: 'button',
        class: 'small',
        'data-testid': 'reveal',
        onclick: async (ev) => {
          ev.target.disabled = true;
          try {
            const r = await api('POST', `/api/dlqs/${enc(dlq)}/records/${enc(record.id)}/reveal`);
            const text = r.payload.encoding === 'text' ? r.payload.text : `base64: ${r.payload.base64}`;
            box.replaceChildren(el('pre', { class: 'revealed', 'data-testid': 'revealed' }, text));
          } catch (e) {
            flash(e.message);
            ev.target.disabled = false;
          }
        },
      }, 'Reveal'));
    }
    return box;
  }

  async function dlqPage(view, dlq) {
    view.append(el('p', {}, el('a', { href: '#/' }, '← all DLQs')), el('h1', {}, dlq));
    const stats = el('div', { class: 'stats', id: 'dlq-stats' });
    const chartBox = el('div', { class: 'chart', id: 'dlq-chart' });
    let sizeChart = null;
    const groupsBox = el('div', { id: 'groups' });
    const recordsBox = el('div', { id: 'records' });
    const filter = el('input', { id: 'records-filter', type: 'text', placeholder: 'filter, e.g. error_class == "validation.wrong_type"', spellcheck: 'false' });
    let cursor = null;

    view.append(stats,
      el('div', { class: 'card' }, el('h2', {}, 'Size over time'), chartBox),
      el('div', { class: 'card' }, el('h2', {}, 'Failure groups'), groupsBox),
      el('div', { class: 'card' }, el('h2', {}, 'Records'),
        el('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); loadRecords(false).catch((e) => flash(e.message)); } },
          filter, el('button', { type: 'submit' }, 'Apply')),
        recordsBox));

    async function loadStats() {
      const d = await api('GET', `/api/dlqs/${enc(dlq)}`);
      stats.replaceChildren(
        stat('pending', d.pending, 'dlq-pending'),
        stat('parked', d.parked, 'dlq-parked'),
        stat('replayed', d.replayed, 'dlq-replayed'),
        stat('archived', d.archived, 'dlq-archived'),
        stat('total', d.total, 'dlq-total'),
        stat('oldest pending', age(d.oldest_pending_age_seconds), 'dlq-age'));
      const series = await history(dlq);
      dropChart(sizeChart);
      chartBox.replaceChildren();
      sizeChart = chart(chartBox, [series]);
    }

    async function loadGroups() {
      const { groups } = await api('GET', `/api/dlqs/${enc(dlq)}/groups`);
      const rows = groups.map((g) => el('tr', { 'data-fingerprint': g.fingerprint },
        el('td', { class: 'mono' }, g.fingerprint),
        el('td', {}, g.error_class),
        el('td', {}, g.stage),
        el('td', { class: 'num', 'data-testid': 'group-count' }, g.count),
        el('td', {}, arrivalsChart(g)),
        verdictCell(g),
        el('td', { class: 'mono' }, cut(g.typed_template, 90)),
        el('td', {}, g.fields.length ? cut(g.fields[0].detail, 80) : ''),
        el('td', {},
          el('button', { type: 'button', class: 'small', onclick: () => { filter.value = g.replay_filter; loadRecords(false).catch((e) => flash(e.message)); } }, 'Records'),
          ' ',
          el('a', { class: 'button small', 'data-testid': 'replay-group', href: `#/replay/${enc(dlq)}?fingerprint=${enc(g.fingerprint)}` }, 'Replay…'))));
      groupsBox.replaceChildren(groups.length
        ? table(['fingerprint', 'error class', 'stage', '#count', 'arrivals', 'verdict', 'template', 'fields', ''], rows, { id: 'groups-table' })
        : el('p', { class: 'muted' }, 'No pending records.'));
    }

    async function loadRecords(more) {
      if (!more) cursor = null;
      const q = new URLSearchParams({ limit: '25' });
      if (filter.value.trim()) q.set('filter', filter.value.trim());
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', `/api/dlqs/${enc(dlq)}/records?${q}`);
      cursor = page.next_cursor;
      const rows = page.records.map((r) => el('tr', {},
        el('td', { class: 'mono' }, el('a', { href: `#/dlq/${enc(dlq)}/record/${enc(r.id)}` }, cut(r.id, 40))),
        el('td', {}, statusBadge(r.status)),
        el('td', {}, r.error_class),
        el('td', {}, cut(r.error, 100)),
        el('td', {}, maskedPayload(dlq, r))));
      let body = recordsBox.querySelector('tbody');
      if (!more || !body) {
        recordsBox.replaceChildren(table(['id', 'status', 'error class', 'error', 'payload'], [], { id: 'records-table' }));
        body = recordsBox.querySelector('tbody');
      }
      body.append(...rows);
      recordsBox.querySelector('.more')?.remove();
      if (cursor) {
        recordsBox.append(el('button', { type: 'button', class: 'more', onclick: () => loadRecords(true).catch((e) => flash(e.message)) }, 'More'));
      }
    }

    await Promise.all([loadStats(), loadGroups(), loadRecords(false)]);
    every(REFRESH_MS, loadStats);
  }

  async function recordPage(view, dlq, id) {
    view.append(el('p', {}, el('a', { href: `#/dlq/${enc(dlq)}` }, `← ${dlq}`)), el('h1', { class: 'mono' }, id));
    const { record: r } = await api('GET', `/api/dlqs/${enc(dlq)}/records/${enc(id)}`);
    const rows = [
      ['status', statusBadge(r.status)], ['fingerprint', r.fingerprint], ['stage', r.stage],
      ['error class', r.error_class], ['retryable', String(r.retryable)], ['attempts', r.attempts],
      ['replays', r.replays], ['replay of', r.replay_of || '-'], ['first failed', r.first_failed_at],
      ['last failed', r.failed_at], ['stored', r.stored_at], ['settled', r.settled_at || '-'],
      ['source', [r.source.system, r.source.topic, r.source.partition, r.source.offset].filter((x) => x !== undefined && x !== null).join(' / ')],
      ['key', r.key ?? '-'], ['origin', r.origin],
      ['headers', r.headers.length ? r.headers.map((h) => `${h.name} (${h.bytes ?? 'null'} B)`).join(', ') : '-'],
    ];
    view.append(el('div', { class: 'card' },
      el('dl', { class: 'meta' }, rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
      el('h2', {}, 'Error'), el('pre', { class: 'error-text' }, r.error),
      el('h2', {}, 'Payload'), maskedPayload(dlq, r)));
  }

  async function replayPage(view, dlq, params) {
    view.append(el('p', {}, el('a', { href: `#/dlq/${enc(dlq)}` }, `← ${dlq}`)), el('h1', {}, `Replay from ${dlq}`));
    if (!isOperator()) {
      view.append(el('p', { class: 'error' }, 'Replays need an operator token.'));
      return;
    }
    const [{ groups }, { targets }] = await Promise.all([
      api('GET', `/api/dlqs/${enc(dlq)}/groups`), api('GET', '/api/replay-targets')]);
    const group = el('select', { id: 'replay-group' },
      el('option', { value: '' }, '(no group: use the filter only)'),
      groups.map((g) => el('option', { value: g.fingerprint, selected: g.fingerprint === params.get('fingerprint') },
        `${g.count} · ${g.error_class} · ${cut(g.typed_template, 70)}`)));
    const filter = el('input', { id: 'replay-filter', type: 'text', spellcheck: 'false', placeholder: 'optional filter, e.g. payload.price exists' });
    const fix = el('input', { id: 'replay-fix', type: 'text', spellcheck: 'false', placeholder: 'optional jq fix, e.g. .price |= tonumber' });
    const target = el('select', { id: 'replay-target' }, targets.map((t) => el('option', { value: t.name }, t.name)));
    const result = el('div', { id: 'replay-result' });
    const form = el('form', { class: 'card form', id: 'replay-form' },
      el('label', { for: 'replay-group' }, 'Failure group'), group,
      el('label', { for: 'replay-filter' }, 'Filter'), filter,
      el('label', { for: 'replay-fix' }, 'Fix (jq)'), fix,
      el('label', { for: 'replay-target' }, 'Target (allow-listed on the server)'), target,
      el('div', {}, el('button', { type: 'submit', id: 'preview-button' }, 'Preview (dry run)')));
    view.append(form, result);
    if (!targets.length) {
      result.append(el('p', { class: 'error' }, 'No replay target is allow-listed: add [serve.replay_targets] to the server config.'));
    }

    const request = () => ({
      dlq,
      target: target.value,
      fingerprint: group.value || undefined,
      filter: filter.value.trim() || undefined,
      fix: fix.value.trim() || undefined,
    });

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      result.replaceChildren(el('p', { class: 'muted' }, 'Running the dry run…'));
      let preview;
      const req = request();
      try {
        preview = await api('POST', '/api/replays/preview', req);
      } catch (e) {
        result.replaceChildren(el('p', { class: 'error', 'data-testid': 'preview-error' }, e.message));
        return;
      }
      const samples = preview.samples.map((s) => el('tr', {},
        el('td', { class: 'mono' }, cut(s.id, 30)),
        el('td', {}, el('pre', {}, s.before)),
        el('td', {}, s.fix_error ? el('pre', { class: 'error' }, `fix failed: ${s.fix_error}`) : el('pre', {}, s.after)),
        el('td', {}, s.changed ? 'yes' : 'no')));
      const confirm = el('button', { type: 'button', id: 'confirm-replay', class: 'danger', disabled: preview.matched === 0 },
        `Replay ${preview.matched} records to ${preview.target}`);
      result.replaceChildren(el('div', { class: 'card' },
        el('p', { class: 'big' }, el('span', { id: 'preview-matched', 'data-testid': 'preview-matched' }, preview.matched),
          ' records match', preview.filter ? ` (${preview.filter})` : ''),
        samples.length ? table(['id', 'before', 'after the fix', 'changed'], samples, { id: 'preview-samples' }) : '',
        el('p', { class: 'muted' }, 'Nothing has changed yet. Records are settled only once the target has them.'),
        confirm));
      confirm.addEventListener('click', async () => {
        confirm.disabled = true;
        let job;
        try {
          ({ job } = await api('POST', '/api/replays', req));
        } catch (e) {
          flash(e.message);
          confirm.disabled = false;
          return;
        }
        const progress = el('div', { class: 'card', id: 'replay-progress' });
        result.append(progress);
        const bar = el('progress', { max: Math.max(1, preview.matched), value: 0 });
        const show = (j) => {
          bar.value = j.selected;
          progress.replaceChildren(el('h2', {}, 'Progress'), bar,
            el('p', {}, el('span', { id: 'job-status', 'data-testid': 'job-status' }, j.status),
              ` · selected ${j.selected} · replayed `, el('span', { id: 'job-replayed' }, j.replayed),
              ` · failed again ${j.failed} · parked ${j.parked} · fix failed ${j.fix_failed}`),
            j.error ? el('p', { class: 'error' }, j.error) : '',
            j.done ? el('p', {}, el('a', { href: `#/dlq/${enc(dlq)}`, id: 'back-to-dlq' }, `Back to ${dlq}`)) : '');
        };
        show(job);
        const poll = setInterval(async () => {
          try {
            const { job: j } = await api('GET', `/api/replays/${enc(job.id)}`);
            show(j);
            if (j.done) clearInterval(poll);
          } catch (e) {
            flash(e.message);
            clearInterval(poll);
          }
        }, 400);
        timers.push(poll);
      });
    });
  }

  // ------------------------------------------------------------- router

  async function render() {
    if (!token()) {
      showLogin();
      return;
    }
    if (!me && !(await signIn(token()))) return;
    const view = clearPage();
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    try {
      if (parts.length === 0) await overview(view);
      else if (parts[0] === 'dlq' && parts.length === 2) await dlqPage(view, parts[1]);
      else if (parts[0] === 'dlq' && parts[2] === 'record' && parts.length === 4) await recordPage(view, parts[1], parts[3]);
      else if (parts[0] === 'replay' && parts.length === 2) await replayPage(view, parts[1], new URLSearchParams(query || ''));
      else view.append(el('p', {}, 'No such page. ', el('a', { href: '#/' }, 'Overview')));
    } catch (e) {
      if (e.status !== 401) flash(e.message);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const value = $('token').value.trim();
      $('token').value = '';
      if (value && (await signIn(value))) render();
    });
    $('signout').addEventListener('click', () => signOut('Signed out.'));
    window.addEventListener('hashchange', render);
    render();
  });
})();
