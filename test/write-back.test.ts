import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { AegirStatus } from '../src/frontend.js';
import { findLocalRun } from '../src/orphans.js';
import { ACTIVE_STATES } from '../src/task.js';
import { ADMIN_TOKEN, signedHeaders, waitFor } from './helpers.js';
import { fakeHostingTask, simulatedAegir } from './simulation.js';

const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function setup(env: Record<string, string> = {}) {
  const s = await simulatedAegir({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_RECONCILE_INTERVAL: '0.2', ...env });
  closers.push(() => s.close());
  const task = async (nid: number) => (await s.app.inject({ url: `/v1/tasks/${nid}`, headers: ADMIN })).json();
  const ended = (nid: number) => waitFor(async () => !ACTIVE_STATES.includes((await task(nid)).state), { timeoutMs: 15_000, what: `task ${nid} to end` });
  const aegirShows = (nid: number, status: number) => waitFor(() => s.sim.state.tasks.get(nid)!.status === status, { timeoutMs: 15_000, what: `Aegir to show task ${nid} with status ${status}` });
  return { ...s, task, ended, aegirShows };
}

const lastEntry = (s: Awaited<ReturnType<typeof setup>>, nid: number) => {
  const t = s.sim.state.tasks.get(nid)!;
  return { ...t.log.at(-1), live: t.log.at(-1)?.vid === t.vid };
};

describe('closing the loop into Aegir', () => {
  it('finishes a timed-out task in Aegir as an error with the reason in its log, and keeps timed_out as what happened', async () => {
    const s = await setup({ TASKD_TASK_TIMEOUT: '0.5', TASKD_KILL_GRACE: '0.5' });
    const t = await s.sim.addTask({ rid: 1, behaviour: 'hang', seconds: 0.1 });
    await s.ended(t.nid);
    await s.aegirShows(t.nid, AegirStatus.error);
    expect(lastEntry(s, t.nid)).toMatchObject({ type: 'error', message: 'aegir-taskd: drush was killed by SIGTERM after 0.5 s (TASKD_TASK_TIMEOUT)', live: true });
    await waitFor(async () => (await s.task(t.nid)).aegirStatus === AegirStatus.error, { what: 'the service to record Aegir\'s status' });
    expect(await s.task(t.nid)).toMatchObject({ state: 'timed_out', aegirStatus: AegirStatus.error });
    expect(s.sim.state.tasks.get(t.nid)!.delta).not.toBeNull();
  });

  it('finishes a task stopped with DELETE ?force=1 in Aegir, saying who stopped it', async () => {
    const s = await setup();
    const t = await s.sim.addTask({ rid: 1, behaviour: 'hang', seconds: 0.1 });
    await waitFor(() => s.sim.state.tasks.get(t.nid)!.status === AegirStatus.processing, { what: 'the task to be processing' });
    expect((await s.app.inject({ method: 'DELETE', url: `/v1/tasks/${t.nid}?force=1`, headers: ADMIN })).statusCode).toBe(202);
    await s.aegirShows(t.nid, AegirStatus.error);
    expect(lastEntry(s, t.nid)).toMatchObject({ type: 'error', message: 'aegir-taskd: drush was stopped by an operator (SIGTERM to its process group)' });
    expect(await s.task(t.nid)).toMatchObject({ state: 'cancelled', message: 'stopped by an operator while running; finishing it in Aegir' });
  });

  it('stops a running task on the module\'s signed Stop request, and Aegir shows who stopped it', async () => {
    const s = await setup();
    const t = await s.sim.addTask({ rid: 1, behaviour: 'hang', seconds: 0.1 });
    // hosting_taskd offers Stop on a task Aegir shows processing, that is once hosting-task has claimed it.
    await waitFor(() => s.sim.state.tasks.get(t.nid)!.status === AegirStatus.processing, { what: 'the task to be processing' });
    const payload = JSON.stringify({ reason: 'stopped by admin' });
    const response = await s.app.inject({ method: 'POST', url: `/v1/tasks/${t.nid}/stop`, payload, headers: signedHeaders(payload) });
    expect(response.statusCode).toBe(202);
    expect(response.json()).toMatchObject({ nid: t.nid, stopping: true });
    await s.aegirShows(t.nid, AegirStatus.error);
    expect(lastEntry(s, t.nid).message).toBe('aegir-taskd: drush was stopped by admin (SIGTERM to its process group)');
    expect((await s.task(t.nid)).message).toMatch(/^stopped by admin while running/);
  });

  it('refuses an unsigned Stop without the token, and a Stop for a task it does not know', async () => {
    const s = await setup();
    const payload = JSON.stringify({ reason: 'stopped by admin' });
    const unsigned = await s.app.inject({ method: 'POST', url: '/v1/tasks/5/stop', payload, headers: { 'content-type': 'application/json', authorization: 'Bearer wrong-token-wrong-token' } });
    expect(unsigned.statusCode).toBe(401);
    const unknown = await s.app.inject({ method: 'POST', url: '/v1/tasks/5/stop', payload, headers: signedHeaders(payload) });
    expect(unknown.json()).toMatchObject({ error: 'TASKD_ERR_TASK_NOT_FOUND' });
  });

  it('drops a queued task at once when the module says Aegir cancelled it (status 3)', async () => {
    const s = await setup();
    await s.app.inject({ method: 'POST', url: '/v1/queue/pause', headers: ADMIN });
    const t = await s.sim.addTask({ rid: 1 });
    expect((await s.task(t.nid)).state).toBe('queued');
    s.sim.state.finish(t.nid, AegirStatus.warning);
    const payload = JSON.stringify({ nid: t.nid, rid: 1, status: AegirStatus.warning });
    const response = await s.app.inject({ method: 'POST', url: '/v1/tasks', payload, headers: signedHeaders(payload) });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ nid: t.nid, state: 'cancelled' });
    expect(await s.task(t.nid)).toMatchObject({ state: 'cancelled', message: 'cancelled in Aegir (status 3)' });
  });
});

describe('orphans are resolved, not only listed', () => {
  it('finishes a task Aegir shows processing with nothing on this host running it, after TASKD_ORPHAN_GRACE', async () => {
    const s = await setup({ TASKD_ORPHAN_GRACE: '0.5' });
    // A nid no other test uses: the orphan check looks for any hosting-task of it on this host.
    const t = s.sim.state.addTask({ rid: 1, nid: 970_001 });
    s.sim.state.claim(t.nid);
    await s.aegirShows(t.nid, AegirStatus.error);
    expect(lastEntry(s, t.nid).message).toMatch(/^aegir-taskd: no drush runs this task any more; it has been processing in Aegir for \d+ s with no process on this host running it \(TASKD_ORPHAN_GRACE\)$/);
    await waitFor(async () => /^taskd_write_backs_total\{cause="orphan",result="finished"\} 1$/m.test((await s.app.inject({ url: '/metrics' })).body), { what: 'the resolution to be counted' });
  });

  it('never finishes an orphan whose hosting-task runs on this host (an operator\'s run), and resolves one at once on request', async () => {
    const s = await setup({ TASKD_ORPHAN_GRACE: '0' });
    const manual = s.sim.state.addTask({ rid: 1, nid: 970_002 });
    s.sim.state.claim(manual.nid);
    const other = s.sim.state.addTask({ rid: 2, nid: 970_003 });
    s.sim.state.claim(other.nid);
    const operatorsRun = spawn('sh', ['-c', 'sleep 30', 'drush', '@hostmaster', 'hosting-task', String(manual.nid), '--force'], { stdio: 'ignore' });
    closers.push(() => operatorsRun.kill('SIGKILL'));
    await waitFor(async () => (await findLocalRun(manual.nid)) === operatorsRun.pid, { what: 'the operator\'s run to show in /proc' });
    await waitFor(async () => (await s.app.inject({ url: '/v1/queue', headers: ADMIN })).json().orphans.length === 2, { what: 'both orphans to be listed' });
    const refused = await s.app.inject({ method: 'POST', url: `/v1/orphans/${manual.nid}/resolve`, headers: ADMIN });
    expect(refused.json()).toMatchObject({ error: 'TASKD_ERR_ORPHAN_RUNNING' });
    const resolved = await s.app.inject({ method: 'POST', url: `/v1/orphans/${other.nid}/resolve`, headers: ADMIN });
    expect(resolved.statusCode).toBe(202);
    await s.aegirShows(other.nid, AegirStatus.error);
    expect(lastEntry(s, other.nid).message).toBe('aegir-taskd: no drush runs this task any more; an operator resolved it as an orphan');
    expect(s.sim.state.tasks.get(manual.nid)!.status).toBe(AegirStatus.processing);
    expect((await s.app.inject({ method: 'POST', url: '/v1/orphans/999999/resolve', headers: ADMIN })).json()).toMatchObject({ error: 'TASKD_ERR_ORPHAN_NOT_FOUND' });
  });
});

describe('Aegir\'s log, live', () => {
  it('shows Aegir\'s own entries in the task output while it runs, and counts warnings and errors', async () => {
    const s = await setup();
    const t = await s.sim.addTask({ rid: 1, behaviour: 'warning', seconds: 0.4 });
    await s.ended(t.nid);
    const detail = await s.task(t.nid);
    expect(detail.output).toMatch(/^\[notice\] Task starts processing: verify \(nid \d+\)$/m);
    expect(detail.output).toMatch(/^\[warning\] Could not clear the cache$/m);
    expect(detail).toMatchObject({ state: 'warning', warnings: 1, errors: 0 });
  });

  it('prints nothing of Aegir\'s log when it was not started by the service, as the real hosting-task without --debug', async () => {
    const s = await setup();
    await s.app.inject({ method: 'POST', url: '/v1/queue/pause', headers: ADMIN });
    const t = s.sim.state.addTask({ rid: 1, seconds: 0.05 });
    const child = spawn(process.execPath, [fakeHostingTask, String(t.nid)], { env: { PATH: process.env.PATH, AEGIR_SIM_URL: s.sim.url }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(0);
    expect(output).toBe('');
    expect(s.sim.state.tasks.get(t.nid)!.log.map((e) => e.type)).toEqual(['notice', 'notice', 'notice', 'notice', 'notice', 'success']);
    expect(s.sim.state.tasks.get(t.nid)!.status).toBe(AegirStatus.success);
  });
});
