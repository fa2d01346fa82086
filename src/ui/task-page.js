import { cancelTask, resolveOrphan, stopTask } from './actions.js';
import { api, followLog } from './api.js';
import { $, AEGIR_STATUS, fill, h, stateBadge, time } from './dom.js';

let current = null;

/** Shows one task: every field, its attempts, Aegir's status, and the log as it is written until the task ends. */
export function showTask(nid) {
  if (current?.nid === nid) return;
  current?.abort.abort();
  current = null;
  if (nid === null) return;
  current = { nid, abort: new AbortController(), task: null };
  $('#task-title').textContent = `Task ${nid}`;
  fill($('#task-fields'));
  fill($('#task-actions'));
  $('#task-log').textContent = '';
  fill($('#task-attempts'));
  $('#log-state').textContent = '';
  void load(current);
}

async function load(view) {
  try {
    const task = await api('GET', `v1/tasks/${view.nid}?tail=0`);
    if (view !== current) return;
    renderTask(task);
  } catch (error) {
    $('#task-title').textContent = `Task ${view.nid}: ${error.code}`;
    return;
  }
  $('#log-state').textContent = 'following';
  const log = $('#task-log');
  try {
    await followLog(view.nid, view.abort.signal, (text) => {
      for (const line of text.split(/(?<=\n)/)) {
        // The service writes a header line before each attempt's output: the list of attempts comes from it.
        const started = /^--- aegir-taskd: attempt started (\S+)/.exec(line)?.[1];
        if (started) $('#task-attempts').append(h('li', {}, `started ${new Date(started).toLocaleString()}`));
        const type = /^\[(\w+)\] /.exec(line)?.[1];
        log.append(type ? h('span', { class: `log-${type}` }, line) : line);
      }
      log.scrollTop = log.scrollHeight;
    });
    if (view === current) $('#log-state').textContent = 'ended';
  } catch (error) {
    if (view === current && error.name !== 'AbortError') $('#log-state').textContent = `${error.code ?? 'stopped'}: ${error.message}`;
  }
}

/** A task event for the task shown updates its fields (the log follows by itself). */
export function taskChanged(task) {
  if (current && task.nid === current.nid) renderTask({ ...current.task, ...task });
}

function renderTask(task) {
  current.task = task;
  $('#task-title').replaceChildren(`Task ${task.nid} `, stateBadge(task.state));
  const aegir = task.aegirStatus === null ? '–' : `${AEGIR_STATUS[task.aegirStatus] ?? 'unknown'} (${task.aegirStatus})`;
  const fields = [
    ['nid', task.nid],
    ['Type', task.type],
    ['Site (rid)', task.rid],
    ['Lane', task.lane],
    ['State', task.state],
    ['Waiting for', task.waitingFor?.message],
    ['Source', task.source],
    ['Revision (vid)', task.vid],
    ['Changed in Aegir', task.changed ? new Date(task.changed * 1000).toLocaleString() : null],
    ['Received', time(task.receivedAt)],
    ['Started', time(task.startedAt)],
    ['Ended', time(task.endedAt)],
    ['Attempts', `${task.attempts} (listed below; each one's output is in the log, one after the other)`],
    ['pid', task.pid],
    ['Exit code', task.exitCode],
    ['Signal', task.signal],
    ["Aegir's status", aegir],
    ['Outcome confirmed with Aegir', task.outcomeConfirmed === null ? null : task.outcomeConfirmed ? 'yes' : 'no'],
    ['Warnings / errors in the log', task.warnings === undefined ? null : `${task.warnings} / ${task.errors}`],
    ['Message', task.message],
  ];
  fill($('#task-fields'), fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v === null || v === undefined || v === '' ? '–' : String(v))]));
  const buttons = [];
  if (task.state === 'queued') buttons.push(h('button', { type: 'button', onclick: () => cancelTask(task.nid) }, 'Cancel'));
  if (task.state === 'running' || task.state === 'starting') buttons.push(h('button', { type: 'button', onclick: () => stopTask(task.nid) }, 'Stop'));
  // An ended task can be an orphan (its drush died while Aegir shows it processing); the answer says if it is not.
  if (!['queued', 'starting', 'running'].includes(task.state)) buttons.push(h('button', { type: 'button', onclick: () => resolveOrphan(task.nid) }, 'Resolve orphan'));
  fill($('#task-actions'), buttons);
}
