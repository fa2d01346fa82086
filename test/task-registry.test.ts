import { describe, expect, it } from 'vitest';
import { newTask, type Task } from '../src/task.js';
import { TaskRegistry } from '../src/task-registry.js';

const task = (nid: number, fields: Partial<Task> = {}): Task =>
  Object.assign(newTask({ nid, rid: nid, type: null, vid: null, changed: null, lane: null, state: 'queued', source: 'operator', receivedAt: 0, confirmedAt: null }, 0), fields);

describe('TaskRegistry', () => {
  it('keeps one active task per nid and counts the queued ones as the active ones not running', () => {
    const r = new TaskRegistry(10);
    const [a, b] = [task(1), task(2)];
    r.activate(a);
    r.activate(b);
    r.slots.add(a);
    a.state = 'running';
    expect(r.queuedCount).toBe(1);
    expect(r.isCurrent(a)).toBe(true);
    expect(r.isCurrent(task(1))).toBe(false);
    r.retire(a);
    expect(r.slots.size).toBe(0);
    expect(r.active(1)).toBeUndefined();
    expect(r.ended(1)).toBe(a);
  });

  it('bounds the history, dropping the oldest ended task first', () => {
    const r = new TaskRegistry(2);
    for (const nid of [1, 2, 3]) {
      const t = task(nid);
      r.activate(t);
      r.retire(t);
    }
    expect([...r.history()].map((t) => t.nid)).toEqual([3, 2]);
    expect(r.get(1)).toBeUndefined();
  });

  it('lists running, then queued, then ended newest first, up to the limit', () => {
    const r = new TaskRegistry(10);
    const [run, queued, old, recent] = [task(1, { state: 'running' }), task(2), task(3), task(4)];
    for (const t of [old, recent]) {
      r.activate(t);
      t.state = 'succeeded';
      r.retire(t);
    }
    r.activate(run);
    r.slots.add(run);
    r.activate(queued);
    expect(r.list(undefined, 10).map((t) => t.nid)).toEqual([1, 2, 4, 3]);
    expect(r.list(undefined, 2).map((t) => t.nid)).toEqual([1, 2]);
    expect(r.list('succeeded', 10).map((t) => t.nid)).toEqual([4, 3]);
  });

  it('remembers a stuck task until a submission brings a new revision or changed time', () => {
    const r = new TaskRegistry(10);
    const t = task(7, { vid: 70, changed: 700 });
    r.activate(t);
    r.retire(t);
    r.markStuck(t);
    expect(r.stuckFor({ nid: 7, source: 'webhook', confirmedAt: null })).toBe(t);
    expect(r.stuckFor({ nid: 7, vid: 70, changed: 700, source: 'webhook', confirmedAt: null })).toBe(t);
    expect(r.stuckFor({ nid: 7, vid: 71, source: 'webhook', confirmedAt: null })).toBeUndefined();
    r.forgetStuck(7);
    expect(r.stuckFor({ nid: 7, source: 'webhook', confirmedAt: null })).toBeUndefined();
  });

  it('reads the history newest first without the copies of nids that were queued again', () => {
    const r = new TaskRegistry(3);
    const end = (t: Task) => {
      r.activate(t);
      r.retire(t);
      return t;
    };
    const first = end(task(1));
    end(task(2));
    const again = end(task(1));
    expect([...r.history()].map((t) => t.nid)).toEqual([1, 2]);
    expect(r.ended(1)).toBe(again);
    expect([...r.endedOldestFirst()]).not.toContain(first);
    for (let nid = 10; nid < 200; nid += 1) end(task(nid));
    expect([...r.history()].map((t) => t.nid)).toEqual([199, 198, 197]);
    expect(r.get(1)).toBeUndefined();
  });

  it('retires only the task it holds for a nid, never one that replaced it', () => {
    const r = new TaskRegistry(3);
    const [old, current] = [task(5), task(5)];
    r.activate(current);
    r.retire(old);
    expect(r.active(5)).toBe(current);
    expect(r.ended(5)).toBeUndefined();
  });
});
