import { afterEach, describe, expect, it } from 'vitest';
import { AegirStatus, type HttpFrontend } from '../src/frontend.js';
import { WriteBackOutbox, type WriteBack } from '../src/outbox.js';
import { silentLog, tempDir, waitFor } from './helpers.js';
import { fakeFrontendClient, idleMetrics } from './simulation.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function aegir() {
  const { sim, frontend } = await fakeFrontendClient(closers);
  /** A task hosting-task claimed and then died in: processing at its claimed revision. */
  const processing = () => {
    const t = sim.state.addTask({ rid: 1 });
    sim.state.claim(t.nid);
    return t;
  };
  return { sim, frontend, processing };
}

function outboxFor(frontend: HttpFrontend, stateDir: string | null) {
  const done: Array<{ writeBack: WriteBack; kind: string }> = [];
  const metrics = idleMetrics();
  const outbox = new WriteBackOutbox({ frontend, stateDir, metrics, log: silentLog, maxBackoffMs: 200, onDone: (writeBack, answer) => done.push({ writeBack, kind: answer.kind }) });
  closers.push(() => outbox.close());
  return { outbox, done, metrics };
}

describe('the write-back outbox (better-queue, wrapped)', () => {
  it('finishes a task in Aegir through the module endpoint, and Aegir derives the status from the log', async () => {
    const { sim, frontend, processing } = await aegir();
    const t = processing();
    const { outbox, done } = outboxFor(frontend, null);
    outbox.push({ nid: t.nid, vid: t.vid, reason: 'aegir-taskd: drush was killed by SIGKILL without finishing the task', cause: 'killed' });
    await waitFor(() => done.length === 1, { what: 'the write-back to be done' });
    expect(done[0]!.kind).toBe('finished');
    expect(sim.state.tasks.get(t.nid)).toMatchObject({ status: AegirStatus.error });
    expect(sim.state.tasks.get(t.nid)!.log.at(-1)).toMatchObject({ vid: t.vid, type: 'error' });
  });

  it('retries while the frontend is down, and delivers once it is back', async () => {
    const { sim, frontend, processing } = await aegir();
    const t = processing();
    sim.fault = 'down';
    const { outbox, done, metrics } = outboxFor(frontend, null);
    outbox.push({ nid: t.nid, vid: t.vid, reason: 'r', cause: 'timeout' });
    await waitFor(async () => /^taskd_write_backs_total\{cause="timeout",result="retry"\} [2-9]/m.test(await metrics.registry.metrics()), { what: 'two retries' });
    expect(sim.state.tasks.get(t.nid)!.status).toBe(AegirStatus.processing);
    sim.fault = null;
    await waitFor(() => done.length === 1, { what: 'the write-back to be delivered' });
    expect(sim.state.tasks.get(t.nid)!.status).toBe(AegirStatus.error);
    await waitFor(() => outbox.pending().length === 0, { what: 'the outbox to be empty' });
  });

  it('lets the others through while Aegir keeps refusing one finish, and keeps that one', async () => {
    const { sim, frontend, processing } = await aegir();
    const refused = processing();
    const others = [processing(), processing(), processing()];
    sim.failingFinishes.add(refused.nid);
    const stateDir = await tempDir();
    const { outbox, done, metrics } = outboxFor(frontend, stateDir);
    outbox.push({ nid: refused.nid, vid: refused.vid, reason: 'refused every time', cause: 'killed' });
    for (const t of others) outbox.push({ nid: t.nid, vid: t.vid, reason: 'behind the refused one', cause: 'killed' });
    await waitFor(() => done.length === others.length, { timeoutMs: 10_000, what: 'the others to be delivered' });
    expect(done.map((d) => d.writeBack.nid).sort()).toEqual(others.map((t) => t.nid).sort());
    for (const t of others) expect(sim.state.tasks.get(t.nid)!.status).toBe(AegirStatus.error);
    expect(sim.state.tasks.get(refused.nid)!.status).toBe(AegirStatus.processing);
    expect(outbox.pending().map((w) => w.nid)).toEqual([refused.nid]);
    // Alone, it is retried where it is: sampled on every turn over two more refusals, it is never
    // a copy of itself queued behind itself.
    const seen = new Set<number>();
    const refusals = () => metrics.registry.getSingleMetric('taskd_write_backs_total')!.get().then((m) => m.values.find((v) => v.labels.cause === 'killed' && v.labels.result === 'retry')?.value ?? 0);
    const before = await refusals();
    let sampling = true;
    const sample = () => {
      seen.add(outbox.pending().length);
      if (sampling) setImmediate(sample);
    };
    sample();
    await waitFor(async () => (await refusals()) >= before + 2, { timeoutMs: 10_000, what: 'two more refusals' });
    sampling = false;
    expect([...seen]).toEqual([1]);
    sim.failingFinishes.delete(refused.nid);
    await waitFor(() => done.length === others.length + 1, { timeoutMs: 10_000, what: 'the refused one once Aegir takes it' });
    expect(sim.state.tasks.get(refused.nid)!.status).toBe(AegirStatus.error);
  });

  it('keeps what it could not deliver over a restart, in its state folder', async () => {
    const { sim, frontend, processing } = await aegir();
    const t = processing();
    const stateDir = await tempDir();
    sim.fault = 'down';
    const first = outboxFor(frontend, stateDir);
    first.outbox.push({ nid: t.nid, vid: t.vid, reason: 'kept over a restart', cause: 'orphan' });
    await waitFor(async () => /result="retry"\} [1-9]/m.test(await first.metrics.registry.metrics()), { what: 'a failed attempt' });
    first.outbox.close();
    sim.fault = null;
    const second = outboxFor(frontend, stateDir);
    await waitFor(() => second.done.length === 1, { what: 'the restarted outbox to deliver it' });
    expect(sim.state.tasks.get(t.nid)!.log.at(-1)).toMatchObject({ type: 'error', message: 'kept over a restart' });
  });

  it('keeps one write-back per nid: the newer revision wins, also over one whose delivery failed', async () => {
    const { sim, frontend, processing } = await aegir();
    const t = processing();
    sim.fault = 'down';
    const { outbox, done } = outboxFor(frontend, null);
    outbox.push({ nid: t.nid, vid: t.vid - 2, reason: 'in flight', cause: 'timeout' });
    await waitFor(() => outbox.pending().length === 1, { what: 'the first to be taken' });
    await new Promise((r) => setTimeout(r, 50));
    outbox.push({ nid: t.nid, vid: t.vid - 1, reason: 'older', cause: 'timeout' });
    outbox.push({ nid: t.nid, vid: t.vid, reason: 'newer', cause: 'timeout' });
    // The two waiting merge into the newer; the one in flight fails again with it waiting, goes to
    // the back and merges into it too (merge alone does not see a task in flight).
    await waitFor(() => outbox.pending().length === 1 && outbox.pending()[0]!.reason === 'newer', { what: 'one write-back left, the newer' });
    sim.fault = null;
    await waitFor(() => done.length === 1, { what: 'delivery' });
    expect(done.map((d) => [d.writeBack.reason, d.kind])).toEqual([['newer', 'finished']]);
    expect(sim.state.tasks.get(t.nid)!.log.map((e) => e.message)).toEqual(['newer']);
  });

  it('merges a twin pushed while its first is in flight once that delivery fails, and finishes the task once', async () => {
    const { sim, frontend, processing } = await aegir();
    const t = processing();
    sim.fault = 'down';
    const { outbox, done } = outboxFor(frontend, null);
    outbox.push({ nid: t.nid, vid: t.vid, reason: 'twin', cause: 'stopped' });
    await new Promise((r) => setTimeout(r, 100));
    outbox.push({ nid: t.nid, vid: t.vid, reason: 'twin', cause: 'stopped' });
    await new Promise((r) => setTimeout(r, 400));
    expect(outbox.pending()).toHaveLength(1);
    sim.fault = null;
    await waitFor(() => done.length === 1, { timeoutMs: 10_000, what: 'the finish' });
    expect(done[0]!.kind).toBe('finished');
    expect(sim.state.tasks.get(t.nid)!.log.filter((e) => e.message === 'twin')).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(done).toHaveLength(1);
  });

  it('takes a 409 from the module (no longer processing at that revision) as done, changing nothing', async () => {
    const { sim, frontend } = await aegir();
    const t = sim.state.addTask({ rid: 1 });
    const { outbox, done } = outboxFor(frontend, null);
    outbox.push({ nid: t.nid, vid: t.vid, reason: 'r', cause: 'orphan' });
    await waitFor(() => done.length === 1, { what: 'the answer' });
    expect(done[0]!.kind).toBe('not_processing');
    expect(sim.state.tasks.get(t.nid)!.status).toBe(AegirStatus.queued);
    expect(sim.state.tasks.get(t.nid)!.log).toEqual([]);
  });
});
