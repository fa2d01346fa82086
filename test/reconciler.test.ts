import { afterEach, describe, expect, it } from 'vitest';
import { AegirStatus } from '../src/frontend.js';
import { ACTIVE_STATES } from '../src/task.js';
import { ADMIN, waitFor } from './helpers.js';
import { fakeHostingTask, simulatedAegir } from './simulation.js';

type Sim = Awaited<ReturnType<typeof simulatedAegir>>;
const open: Sim[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function setup(env: Record<string, string> = {}, options: { retryDelaysMs?: number[]; noReconcileTimer?: boolean } = {}) {
  const s = await simulatedAegir(env, options);
  open.push(s);
  return s;
}

const ended = (s: Sim, nid: number) => waitFor(async () => !ACTIVE_STATES.includes((await s.task(nid)).state), { timeoutMs: 10_000, what: `task ${nid} to end` });

describe('outcomes read from Aegir', () => {
  it('records succeeded, warning (although the exit code is 0) and failed from the status Aegir wrote', async () => {
    const s = await setup();
    const ok = await s.sim.addTask({ rid: 1, behaviour: 'success', seconds: 0.05 });
    const warn = await s.sim.addTask({ rid: 2, behaviour: 'warning', seconds: 0.05 });
    const bad = await s.sim.addTask({ rid: 3, behaviour: 'error', seconds: 0.05 });
    for (const t of [ok, warn, bad]) await ended(s, t.nid);
    expect(await s.task(ok.nid)).toMatchObject({ state: 'succeeded', exitCode: 0, aegirStatus: AegirStatus.success, outcomeConfirmed: true });
    expect(await s.task(warn.nid)).toMatchObject({ state: 'warning', exitCode: 0, aegirStatus: AegirStatus.warning });
    expect(await s.task(bad.nid)).toMatchObject({ state: 'failed', exitCode: 1, aegirStatus: AegirStatus.error });
    expect([ok, warn, bad].map((t) => s.sim.state.tasks.get(t.nid)!.claims)).toEqual([1, 1, 1]);
  });

  it('retries a task still queued in Aegir after its run, then marks it stuck until Aegir shows a new revision', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60' });
    const t = await s.sim.addTask({ rid: 1, behaviour: 'leave-queued' });
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ state: 'stuck', attempts: 3 });
    // The same revision announced again changes nothing.
    expect(await s.sim.sendWebhook(t.nid)).toBe(200);
    expect((await s.task(t.nid)).state).toBe('stuck');
    // Aegir queues it again (new vid): it runs again.
    s.sim.state.tasks.get(t.nid)!.behaviour = 'success';
    s.sim.state.requeue(t.nid);
    expect(await s.sim.sendWebhook(t.nid)).toBe(202);
    await waitFor(async () => (await s.task(t.nid)).state === 'succeeded', { timeoutMs: 10_000 });
  });

  it('skips a task that Aegir no longer has queued when it is about to start', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60', TASKD_CONFIRM_MAX_AGE: '0' });
    s.app.taskd.scheduler.pause();
    const t = await s.sim.addTask({ rid: 1 });
    s.sim.state.finish(t.nid, AegirStatus.success);
    s.app.taskd.scheduler.resume();
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ state: 'skipped', attempts: 0 });
    expect(s.sim.state.tasks.get(t.nid)!.claims).toBe(0);
  });

  it('looks up the lane of a task announced without rid', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60' });
    const t = s.sim.state.addTask({ rid: 77, seconds: 0.05 });
    const response = await s.app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: t.nid }, headers: ADMIN });
    expect(response.statusCode).toBe(202);
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ lane: 'rid:77', rid: 77, state: 'succeeded' });
  });

  it("keeps a task queued, counts the error and retries while a proxy answers 404 for the frontend, and never takes it for 'no such task'", async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60' });
    const t = s.sim.state.addTask({ rid: 78, seconds: 0.05 });
    s.sim.fault = 'proxy-404';
    expect((await s.app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid: t.nid }, headers: ADMIN })).statusCode).toBe(202);
    const errors = async () => Number(/^taskd_frontend_errors_total\{operation="lane_lookup",kind="http_status"\} (\d+)$/m.exec((await s.app.inject({ url: '/metrics' })).body)?.[1] ?? 0);
    await waitFor(async () => (await errors()) >= 1, { what: 'the failed look-up to be counted' });
    expect(await s.task(t.nid)).toMatchObject({ state: 'queued', message: expect.stringMatching(/HTTP 404 that is not hosting_taskd's answer.*retrying/) });
    s.sim.fault = null;
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ state: 'succeeded', lane: 'rid:78', outcomeConfirmed: true });
  });

  it('fails a task whose command cannot be executed (an argument over 128 KiB) at once, as a start failure, not through retries to stuck', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60', TASKD_COMMAND: JSON.stringify([process.execPath, fakeHostingTask, '{nid}', 'a'.repeat(140 * 1024)]) });
    const t = await s.sim.addTask({ rid: 1 });
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ state: 'failed', attempts: 1, exitCode: null, message: expect.stringMatching(/^the command could not be started: .*Argument list too long$/) });
    expect(s.sim.state.tasks.get(t.nid)!.claims).toBe(0);
  });

  it('takes the exit code when the outcome cannot be read, and corrects it at a later reconcile', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60' });
    const t = await s.sim.addTask({ rid: 1, behaviour: 'warning', seconds: 0.6 });
    await waitFor(() => s.sim.state.tasks.get(t.nid)!.claims === 1);
    s.sim.fault = 'error';
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ state: 'succeeded', outcomeConfirmed: false });
    s.sim.fault = null;
    const report = (await s.app.inject({ method: 'POST', url: '/v1/reconcile', headers: ADMIN })).json();
    expect(report.corrected).toEqual([t.nid]);
    expect(await s.task(t.nid)).toMatchObject({ state: 'warning', outcomeConfirmed: true });
  });
});

describe('reconciliation', () => {
  it('picks up a task whose webhook was lost', async () => {
    const s = await setup();
    const t = await s.sim.addTask({ rid: 1, webhook: false, seconds: 0.05 });
    await waitFor(async () => (await s.task(t.nid)).state === 'succeeded', { timeoutMs: 10_000 });
    expect(await s.task(t.nid)).toMatchObject({ source: 'reconcile' });
    expect(s.sim.state.tasks.get(t.nid)!.claims).toBe(1);
  });

  it('does not run a task cancelled in Aegir while it was queued here', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '60' });
    s.app.taskd.scheduler.pause();
    const t = await s.sim.addTask({ rid: 1 });
    expect((await s.task(t.nid)).state).toBe('queued');
    await new Promise((r) => setTimeout(r, 5));
    s.sim.state.delete(t.nid);
    const report = (await s.app.inject({ method: 'POST', url: '/v1/reconcile', headers: ADMIN })).json();
    expect(report.cancelled).toEqual([t.nid]);
    s.app.taskd.scheduler.resume();
    expect(await s.task(t.nid)).toMatchObject({ state: 'cancelled', message: 'Aegir no longer has it queued' });
  });

  it('finishes in Aegir a task whose child was killed half way, instead of leaving it processing, and never starts it again', async () => {
    const s = await setup();
    const t = await s.sim.addTask({ rid: 1, behaviour: 'die', seconds: 0.2 });
    await ended(s, t.nid);
    expect(await s.task(t.nid)).toMatchObject({ state: 'failed', signal: 'SIGKILL' });
    await waitFor(() => s.sim.state.tasks.get(t.nid)!.status === AegirStatus.error, { what: 'Aegir to show the task failed' });
    const sim = s.sim.state.tasks.get(t.nid)!;
    expect(sim.log.at(-1)).toMatchObject({ vid: sim.vid, type: 'error', message: 'aegir-taskd: drush was killed by SIGKILL without finishing the task' });
    await waitFor(async () => (await s.task(t.nid)).aegirStatus === AegirStatus.error, { what: 'the service to record what Aegir made of it' });
    await waitFor(async () => /^taskd_write_backs_total\{cause="killed",result="finished"\} 1$/m.test((await s.app.inject({ url: '/metrics' })).body), { what: 'the finish to be counted' });
    await new Promise((r) => setTimeout(r, 500));
    expect((await s.app.inject({ url: '/v1/queue' })).json().orphans).toEqual([]);
    expect(sim.claims).toBe(1);
  });

  it('backs off while the frontend is down, reports not ready, and recovers without a restart', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '2' });
    await waitFor(async () => (await s.app.inject({ url: '/readyz' })).statusCode === 200);
    s.sim.fault = 'down';
    const before = s.sim.requests;
    await waitFor(() => (s.app.taskd.reconciler?.consecutiveFailures ?? 0) >= 2, { timeoutMs: 10_000, what: 'two failed reconciles' });
    // 1 s then 2 s apart: a backoff, not a tight loop.
    expect(s.sim.requests - before).toBeLessThan(6);
    const lost = await s.sim.addTask({ rid: 1, webhook: false, seconds: 0.05 });
    s.sim.fault = null;
    await waitFor(async () => (await s.task(lost.nid)).state === 'succeeded', { timeoutMs: 10_000, what: 'recovery' });
    expect((await s.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    expect((await s.app.inject({ url: '/metrics' })).body).toMatch(/taskd_reconcile_runs_total\{result="error"\} [2-9]/);
  });

  it('turns not ready when the last good reconcile is older than three intervals', async () => {
    const s = await setup({ TASKD_RECONCILE_INTERVAL: '0.1' });
    await waitFor(async () => (await s.app.inject({ url: '/readyz' })).statusCode === 200);
    s.sim.fault = 'error';
    await waitFor(async () => (await s.app.inject({ url: '/readyz' })).statusCode === 503, { timeoutMs: 5000 });
    const { reason } = (await s.app.inject({ url: '/readyz' })).json();
    // Readiness is open to anyone: it says where to look, not what the frontend answered.
    expect(reason).toBe("the last successful reconcile is older than three intervals; the frontend's error is in GET /v1/queue (reconcile.lastError)");
    expect((await s.app.inject({ url: '/v1/queue' })).json().reconcile.lastError).toBe('GET queue: HTTP 500');
  });

  it('runs every task Aegir has queued after a restart, none twice', async () => {
    const s = await setup();
    await s.app.close();
    const tasks = [];
    for (let i = 0; i < 6; i += 1) tasks.push(s.sim.state.addTask({ rid: 1 + (i % 3), seconds: 0.05 }));
    const again = await simulatedAegir({ TASKD_LOG_DIR: s.config.logDir });
    open.push(again);
    again.sim.state.tasks.clear();
    for (const [nid, t] of s.sim.state.tasks) again.sim.state.tasks.set(nid, t);
    again.app.taskd.reconciler?.stop();
    await again.app.inject({ method: 'POST', url: '/v1/reconcile', headers: ADMIN });
    for (const t of tasks) await waitFor(async () => (await again.task(t.nid)).state === 'succeeded', { timeoutMs: 10_000 });
    expect(tasks.map((t) => again.sim.state.tasks.get(t.nid)!.claims)).toEqual([1, 1, 1, 1, 1, 1]);
  });
});
