import { act, cancelTask, resolveOrphan, stopTask } from './actions.js';
import { api } from './api.js';
import { drawCharts } from './charts.js';
import { $, duration, fill, h, stateBadge, taskLink, time } from './dom.js';
import { showTask, taskChanged } from './task-page.js';

const ACTIVE = new Set(['queued', 'starting', 'running']);
const STATES = ['succeeded', 'warning', 'failed', 'timed_out', 'skipped', 'cancelled', 'stuck'];
const state = { tasks: new Map(), queue: null, reconcile: null, tails: new Map(), buffered: null };

$('#pause').addEventListener('click', () => act('Pause', 'POST', 'v1/queue/pause'));
$('#resume').addEventListener('click', () => act('Resume', 'POST', 'v1/queue/resume'));
$('#reconcile').addEventListener('click', () => act('Reconcile', 'POST', 'v1/reconcile'));

// ---- state: a snapshot, then the event stream ----

async function snapshot() {
  state.buffered = [];
  try {
    const [queue, list] = await Promise.all([api('GET', 'v1/queue'), api('GET', 'v1/tasks?limit=1000')]);
    state.queue = queue;
    state.tasks = new Map(list.tasks.map((t) => [t.nid, t]));
  } finally {
    // Events that came while the snapshot was read are newer than it.
    const buffered = state.buffered;
    state.buffered = null;
    for (const [name, data] of buffered) apply(name, data);
  }
  render();
}

function apply(name, data) {
  if (state.buffered) {
    state.buffered.push([name, data]);
    return;
  }
  if (name === 'task') {
    state.tasks.set(data.nid, data);
    taskChanged(data);
  } else if (name === 'queue') state.queue = data;
  else if (name === 'reconcile') state.reconcile = data;
  schedule();
}

function connect() {
  const events = new EventSource('v1/events');
  const conn = $('#conn');
  events.addEventListener('open', () => {
    conn.textContent = 'live';
    conn.className = 'badge ok';
    snapshot().catch((error) => (conn.textContent = `${error.code ?? 'error'}: ${error.message}`));
  });
  events.addEventListener('error', () => {
    conn.textContent = 'reconnecting…';
    conn.className = 'badge warn';
  });
  for (const name of ['task', 'queue', 'reconcile']) events.addEventListener(name, (event) => apply(name, JSON.parse(event.data)));
  events.addEventListener('closing', () => (conn.textContent = 'the service is restarting…'));
}

// A click is a press and a release on one element, and a render rebuilds the lists: one between the
// two puts a new button under the release, and the click is lost (a Stop while a task's events
// arrive). So a render waits for the release; a press held longer than a second is no click.
const PRESS_HOLDS_RENDER_MS = 1000;
let pressedAt = null;
document.addEventListener('pointerdown', () => (pressedAt = performance.now()), true);
for (const type of ['pointerup', 'pointercancel']) document.addEventListener(type, () => (pressedAt = null), true);

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  // The frame after a release comes after its click, which the release's own task dispatches.
  requestAnimationFrame(function frame() {
    if (pressedAt !== null && performance.now() - pressedAt < PRESS_HOLDS_RENDER_MS) return void requestAnimationFrame(frame);
    scheduled = false;
    render();
  });
}

// ---- the overview ----

const byNid = (a, b) => a.nid - b.nid;
const tasksIn = (...states) => [...state.tasks.values()].filter((t) => states.includes(t.state));

function render() {
  const queue = state.queue;
  if (!queue) return;
  $('#paused-badge').hidden = !queue.paused;
  renderRunning();
  renderQueued(queue);
  renderOrphans(queue);
  renderHealth(queue);
  renderLimits(queue);
  renderHistory();
}

function renderRunning() {
  const running = tasksIn('starting', 'running').sort(byNid);
  $('#n-running').textContent = String(running.length);
  if (running.length === 0) return fill($('#running'), h('p', { class: 'empty' }, 'Nothing runs.'));
  fill(
    $('#running'),
    h(
      'ul',
      { class: 'cards' },
      running.map((t) =>
        h(
          'li',
          { class: 'card', dataset: { nid: t.nid } },
          h('p', {}, taskLink(t.nid), ' ', h('strong', {}, t.type ?? 'task'), ' ', h('span', { class: 'lane' }, t.lane ?? ''), ' ', stateBadge(t.state)),
          h('p', {}, 'for ', h('span', { class: 'elapsed', dataset: { since: t.startedAt ?? t.receivedAt } }, duration(Date.now() - Date.parse(t.startedAt ?? t.receivedAt))), `, attempt ${t.attempts}`),
          h('pre', { class: 'tail', 'aria-label': `Last log lines of task ${t.nid}` }, state.tails.get(t.nid) ?? ''),
          h('button', { type: 'button', onclick: () => stopTask(t.nid) }, 'Stop'),
        ),
      ),
    ),
  );
}

function renderQueued(queue) {
  const queued = tasksIn('queued');
  $('#n-queued').textContent = String(queued.length);
  if (queued.length === 0) return fill($('#queued'), h('p', { class: 'empty' }, 'Nothing waits.'));
  const why = new Map(queue.waiting.map((w) => [w.nid, w.waitingFor]));
  const lanes = new Map();
  for (const t of queued.sort(byNid)) {
    const lane = t.lane ?? 'site not known yet';
    if (!lanes.has(lane)) lanes.set(lane, []);
    lanes.get(lane).push(t);
  }
  fill(
    $('#queued'),
    [...lanes.entries()].map(([lane, tasks]) =>
      h(
        'section',
        { class: 'lane-group', 'aria-label': `Lane ${lane}` },
        h('h3', {}, lane, ' ', h('span', { class: 'count' }, String(tasks.length))),
        h(
          'ul',
          {},
          tasks.map((t) => {
            const waiting = why.get(t.nid) ?? t.waitingFor;
            return h(
              'li',
              { dataset: { nid: t.nid } },
              taskLink(t.nid),
              ' ',
              h('strong', {}, t.type ?? 'task'),
              ' ',
              h('span', { class: 'waiting', dataset: { reason: waiting?.reason ?? '' } }, waiting ? waiting.message : 'about to start'),
              ' ',
              h('button', { type: 'button', onclick: () => cancelTask(t.nid) }, 'Cancel'),
            );
          }),
        ),
      ),
    ),
  );
}

function renderOrphans(queue) {
  $('#n-orphans').textContent = String(queue.orphans.length);
  if (queue.orphans.length === 0) return fill($('#orphans'), h('p', { class: 'empty' }, 'None.'));
  fill(
    $('#orphans'),
    h(
      'ul',
      {},
      queue.orphans.map((o) =>
        h('li', {}, taskLink(o.nid), ` ${o.type ?? 'task'} since ${time(o.since)}: ${o.reason ?? ''} `, h('button', { type: 'button', onclick: () => resolveOrphan(o.nid) }, 'Resolve')),
      ),
    ),
  );
}

function pairs(el, entries) {
  fill(el, entries.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v === null || v === undefined || v === '' ? '–' : String(v))]));
}

function renderHealth(queue) {
  const r = queue.reconcile;
  const last = state.reconcile;
  pairs($('#health'), [
    ['Reconcile', r.enabled ? (r.lastError ? 'failing' : 'ok') : 'off (no frontend)'],
    ['Last good reconcile', r.lastSuccessAt ? time(r.lastSuccessAt) : null],
    ['Last error', r.lastError],
    ['Failures in a row', r.consecutiveFailures],
    ['Last result', last ? `${last.ok ? 'ok' : 'failed'} at ${time(last.at)}${last.listed !== undefined ? `, ${last.listed} listed` : ''}` : null],
    ['Dispatch', `${queue.dispatch.state}${queue.dispatch.why ? ` (${queue.dispatch.why})` : ''}`],
  ]);
}

function renderLimits(queue) {
  const l = queue.limits;
  pairs($('#limits'), [
    ['Paused', queue.paused ? 'yes' : 'no'],
    ['Concurrency', `${queue.starting + queue.running} of ${l.concurrency}`],
    ['Gate holding starts', queue.deferredBy ?? 'none'],
    ['Starts last minute', `${queue.startsLastMinute}${l.maxStartsPerMinute ? ` of ${l.maxStartsPerMinute}` : ''}`],
    ['Max load', l.maxLoad ?? (l.maxLoadPerCpu ? `${l.maxLoadPerCpu} per CPU` : 'no limit')],
    ['Min free disk', l.minFreeDiskMb ? `${l.minFreeDiskMb} MB on ${l.diskPath}` : 'no limit'],
    ['Pause file', l.pauseFile],
    ['Task timeout', duration(l.taskTimeoutSeconds * 1000)],
  ]);
}

function renderHistory() {
  const form = $('#filters');
  const types = new Set([...state.tasks.values()].map((t) => t.type).filter(Boolean));
  const typeSelect = form.elements.type;
  for (const type of [...types].sort()) if (![...typeSelect.options].some((o) => o.value === type)) typeSelect.append(h('option', { value: type }, type));
  const want = { state: form.elements.state.value, type: typeSelect.value, site: form.elements.site.value.trim() };
  const rows = [...state.tasks.values()]
    .filter((t) => !ACTIVE.has(t.state))
    .filter((t) => (!want.state || t.state === want.state) && (!want.type || t.type === want.type) && (!want.site || (t.lane ?? '').includes(want.site)))
    .sort((a, b) => Date.parse(b.endedAt ?? 0) - Date.parse(a.endedAt ?? 0))
    .slice(0, 100);
  fill(
    $('#history tbody'),
    rows.map((t) =>
      h(
        'tr',
        { dataset: { nid: t.nid } },
        h('td', {}, taskLink(t.nid)),
        h('td', {}, t.type ?? ''),
        h('td', {}, t.lane ?? ''),
        h('td', {}, stateBadge(t.state)),
        h('td', {}, time(t.endedAt)),
        h('td', {}, t.startedAt && t.endedAt ? duration(Date.parse(t.endedAt) - Date.parse(t.startedAt)) : '–'),
        h('td', {}, t.message ?? ''),
      ),
    ),
  );
}

function setUpFilters() {
  const form = $('#filters');
  for (const s of STATES) form.elements.state.append(h('option', { value: s }, s.replace('_', ' ')));
  form.addEventListener('input', () => renderHistory());
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const nid = form.elements.nid.value.trim();
    if (/^[0-9]+$/.test(nid)) location.hash = `task=${nid}`;
  });
}

// ---- timers: elapsed times every second, the last log lines and the charts while they are shown ----

setInterval(() => {
  for (const el of document.querySelectorAll('.elapsed')) el.textContent = duration(Date.now() - Date.parse(el.dataset.since));
}, 1000);

async function refreshTails() {
  if ($('#overview').hidden) return;
  for (const t of tasksIn('running')) {
    try {
      const detail = await api('GET', `v1/tasks/${t.nid}?tail=4096`);
      // drush's own lines; the service's header of each attempt (its argv) is on the task's page.
      const lines = detail.output.trimEnd().split('\n').filter((line) => !line.startsWith('--- aegir-taskd: '));
      state.tails.set(t.nid, lines.slice(-4).join('\n'));
      const pre = document.querySelector(`#running [data-nid="${t.nid}"] .tail`);
      if (pre) pre.textContent = state.tails.get(t.nid);
    } catch {
      /* ended meanwhile */
    }
  }
}
setInterval(refreshTails, 1500);

async function refreshCharts() {
  if ($('#overview').hidden) return;
  try {
    drawCharts($('#charts'), await api('GET', 'v1/activity'));
  } catch (error) {
    fill($('#charts'), h('p', { class: 'error' }, `${error.code}: ${error.message}`));
  }
}
setInterval(refreshCharts, 10_000);

// ---- routing: #task=NID is a task's page, anything else the overview ----

function route() {
  const match = /^#task=(\d+)$/.exec(location.hash);
  $('#overview').hidden = Boolean(match);
  $('#task-page').hidden = !match;
  showTask(match ? Number(match[1]) : null);
  if (!match) {
    render();
    void refreshCharts();
  }
}

setUpFilters();
window.addEventListener('hashchange', route);
connect();
route();
