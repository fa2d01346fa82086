import { duration, fill, h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
}

/** Queued and running over the last hour, as two step lines on one time axis. */
function lineChart(activity) {
  const W = 600, H = 160, L = 32, B = 20, T = 8;
  const max = Math.max(1, ...activity.slots.map((x) => Math.max(x.queuedMax, x.runningMax)));
  const x = (at) => L + ((at - activity.from) / (activity.to - activity.from || 1)) * (W - L - 8);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const path = (key) => activity.slots.map((slot, i) => `${i === 0 ? 'M' : 'L'}${x(slot.at).toFixed(1)},${y(slot[key]).toFixed(1)}`).join('');
  const last = activity.slots.at(-1) ?? { queued: 0, running: 0 };
  return s(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `Queue depth and running tasks over the last hour; now ${last.queued} queued, ${last.running} running, at most ${max}.` },
    s('line', { x1: L, y1: y(0), x2: W - 8, y2: y(0), class: 'axis' }),
    s('text', { x: L - 4, y: y(max) + 4, 'text-anchor': 'end', class: 'tick' }, String(max)),
    s('text', { x: L - 4, y: y(0) + 4, 'text-anchor': 'end', class: 'tick' }, '0'),
    s('text', { x: L, y: H - 4, class: 'tick' }, '−60 min'),
    s('text', { x: W - 8, y: H - 4, 'text-anchor': 'end', class: 'tick' }, 'now'),
    s('path', { d: path('queuedMax'), class: 'line-queued' }),
    s('path', { d: path('runningMax'), class: 'line-running' }),
  );
}

/** Median queue-to-start and run time by task type, as paired bars with the numbers beside them. */
function barChart(byType) {
  const W = 600, row = 34, L = 90;
  const H = Math.max(1, byType.length) * row + 8;
  const max = Math.max(1, ...byType.flatMap((t) => [t.waitMedianMs ?? 0, t.runMedianMs ?? 0]));
  const w = (ms) => ((ms ?? 0) / max) * (W - L - 130);
  return s(
    'svg',
    { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Median queue-to-start and run time by task type over the last hour.' },
    ...byType.flatMap((t, i) => {
      const top = 4 + i * row;
      return [
        s('text', { x: L - 6, y: top + 18, 'text-anchor': 'end', class: 'tick' }, t.type),
        s('rect', { x: L, y: top + 2, width: w(t.waitMedianMs), height: 12, class: 'bar-wait' }),
        s('text', { x: L + w(t.waitMedianMs) + 4, y: top + 12, class: 'tick' }, `wait ${duration(t.waitMedianMs)}`),
        s('rect', { x: L, y: top + 16, width: w(t.runMedianMs), height: 12, class: 'bar-run' }),
        s('text', { x: L + w(t.runMedianMs) + 4, y: top + 26, class: 'tick' }, `run ${duration(t.runMedianMs)} (${t.count})`),
      ];
    }),
  );
}

export function drawCharts(el, activity) {
  fill(
    el,
    h('figure', {}, lineChart(activity), h('figcaption', {}, h('span', { class: 'key key-queued' }, 'queued'), ' ', h('span', { class: 'key key-running' }, 'running'), ', highest in each 10 s')),
    h(
      'figure',
      {},
      activity.byType.length ? barChart(activity.byType) : h('p', { class: 'empty' }, 'No task ended in the last hour.'),
      h('figcaption', {}, h('span', { class: 'key key-wait' }, 'queue-to-start'), ' ', h('span', { class: 'key key-run' }, 'run time'), ', median by task type'),
    ),
  );
}
