import { api } from './api.js';
import { $ } from './dom.js';

/** Each action calls the documented API and shows what it answered: the result, or the TASKD_ERR_ code. */

export async function act(label, method, path, body) {
  const notice = $('#notice');
  notice.className = '';
  notice.textContent = `${label}…`;
  try {
    const answer = await api(method, path, body);
    notice.className = 'ok';
    notice.textContent = `${label}: done${answer && typeof answer === 'object' ? ` (${summary(answer)})` : ''}`;
    return answer;
  } catch (error) {
    notice.className = 'error';
    notice.textContent = `${label}: ${error.code}: ${error.message}`;
    return null;
  }
}

function summary(answer) {
  if ('paused' in answer) return answer.paused ? 'paused' : 'resumed';
  if ('queued' in answer && Array.isArray(answer.queued)) return `queued ${answer.queued.length}, cancelled ${answer.cancelled.length}, orphans ${answer.orphans.length}`;
  if ('state' in answer) return `task ${answer.nid} ${answer.state}${answer.stopping ? ', stopping' : ''}`;
  return Object.entries(answer).map(([k, v]) => `${k}: ${v}`).join(', ');
}

export const cancelTask = (nid) => act(`Cancel ${nid}`, 'DELETE', `v1/tasks/${nid}`);
export function stopTask(nid) {
  if (!window.confirm(`Stop task ${nid}? Its drush gets SIGTERM; Aegir shows it as an error.`)) return null;
  return act(`Stop ${nid}`, 'DELETE', `v1/tasks/${nid}?force=1`);
}
export const resolveOrphan = (nid) => act(`Resolve orphan ${nid}`, 'POST', `v1/orphans/${nid}/resolve`);

