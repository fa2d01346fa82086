import { describe, expect, it } from 'vitest';
import { EventRing } from '../src/event-ring.js';
import { TaskEvents } from '../src/task-events.js';
import { newTask, type Task } from '../src/task.js';
import { waitFor } from './helpers.js';

const task = (nid: number): Task =>
  newTask({ nid, rid: 1, type: 'verify', vid: null, changed: null, lane: 'rid:1', state: 'queued', source: 'operator', receivedAt: Date.now() - 500, confirmedAt: null }, Date.now());

function hub(batchMs = 20) {
  const ring = new EventRing();
  let views = 0;
  let queues = 0;
  const events = new TaskEvents({
    ring,
    batchMs,
    view: (t) => (views++, { nid: t.nid, state: t.state }),
    queue: () => (queues++, { depth: 0 }),
    counts: () => ({ queued: 2, running: 1 }),
  });
  return { events, ring, counts: () => ({ views, queues }) };
}

describe('TaskEvents', () => {
  it('serialises nothing while no client listens, and still records ended tasks and the counts', async () => {
    const { events, ring, counts } = hub();
    const t = task(1);
    events.changed(t);
    Object.assign(t, { state: 'succeeded', startedAt: t.receivedAt + 100, endedAt: t.receivedAt + 400 });
    events.changed(t);
    events.changed(t); // a later write (Aegir's status) is not a second end
    await waitFor(() => ring.view(Date.now()).byType.length === 1);
    expect(counts()).toEqual({ views: 0, queues: 0 });
    expect(ring.view(Date.now()).byType[0]).toMatchObject({ type: 'verify', count: 1, waitMedianMs: 100, runMedianMs: 300 });
    expect(ring.view(Date.now()).slots.at(-1)).toMatchObject({ queued: 2, running: 1 });
    events.close();
  });

  it('sends a task changed several times in one batch once, as it is then, and drops a client that does not read', async () => {
    const { events } = hub();
    const chunks: string[] = [];
    let dropped = false;
    events.subscribe({ write: (c) => (chunks.push(c), true), drop: () => {} });
    events.subscribe({ write: () => false, drop: () => (dropped = true) });
    const t = task(2);
    events.changed(t);
    t.state = 'starting';
    events.changed(t);
    t.state = 'running';
    events.changed(t);
    await waitFor(() => chunks.some((c) => c.includes('event: queue')));
    expect(chunks.filter((c) => c.includes('event: task'))).toEqual(['id: 1\nevent: task\ndata: {"nid":2,"state":"running"}\n\n']);
    expect(dropped).toBe(true);
    expect(events.subscribers).toBe(1);
    events.close();
  });
});
