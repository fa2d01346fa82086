/** Builds an element; text is always set as text, never parsed as HTML (a log is whatever drush printed). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
  return el;
}

export const $ = (selector) => document.querySelector(selector);

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '–');

export const AEGIR_STATUS = { '-1': 'processing', 0: 'queued', 1: 'success', 2: 'error', 3: 'warning' };

export function stateBadge(state) {
  return h('span', { class: `state state-${state}` }, state.replace('_', ' '));
}

export const taskLink = (nid) => h('a', { href: `#task=${nid}` }, String(nid));

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}
