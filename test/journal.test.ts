import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Journal, JournalError, JournalWriteError, JOURNAL_FILE, readJournal, type JournalEntry } from '../src/journal.js';
import { newTask, type Task } from '../src/task.js';
import { silentLog, tempDir } from './helpers.js';

const task = (nid: number, fields: Partial<Task> = {}): Task =>
  Object.assign(newTask({ nid, rid: 1, type: 'verify', vid: null, changed: null, lane: null, state: 'queued', source: 'webhook', receivedAt: 1_000, confirmedAt: null }, 1_000), fields);

async function journalIn(dir?: string, snapshot: () => Iterable<JournalEntry> = () => [], compactAtBytes?: number) {
  const stateDir = dir ?? (await tempDir());
  const journal = new Journal({ dir: stateDir, mode: 'write', log: silentLog, snapshot, ...(compactAtBytes ? { compactAtBytes } : {}) });
  return { journal, file: path.join(stateDir, JOURNAL_FILE), dir: stateDir };
}

describe('Journal', () => {
  it('reads back the last record of every nid, in the order they were last written', async () => {
    const { journal, file } = await journalIn();
    journal.record(task(1));
    journal.record(task(2));
    journal.record(task(1, { state: 'succeeded', endedAt: 2_000 }));
    journal.record(task(3, { state: 'stuck' }), true);
    journal.close();
    const contents = readJournal(file);
    expect(contents.tornTail).toBe(false);
    expect(contents.lines).toBe(4);
    expect(contents.entries.map((e) => [e.task.nid, e.task.state, e.stuck ?? false])).toEqual([
      [2, 'queued', false],
      [1, 'succeeded', false],
      [3, 'stuck', true],
    ]);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
  });

  it('ignores a last record a crash cut short, and says so', async () => {
    const { journal, file } = await journalIn();
    journal.record(task(1));
    journal.close();
    await fs.appendFile(file, '{"task":{"nid":2,"rid":1,');
    const contents = readJournal(file);
    expect(contents).toMatchObject({ tornTail: true, lines: 1 });
    expect(contents.entries.map((e) => e.task.nid)).toEqual([1]);
  });

  it('refuses a journal it cannot read, with one line that names it and how to move it aside', async () => {
    const { journal, file } = await journalIn();
    journal.record(task(1));
    journal.close();
    await fs.appendFile(file, 'not json\n');
    await fs.appendFile(file, `${JSON.stringify({ task: task(2) })}\n`);
    expect(() => readJournal(file)).toThrow(JournalError);
    expect(() => readJournal(file)).toThrow(new RegExp(`^${file} line 2 is not a journal record \\(.*\\); move it aside \\(mv ${file} ${file}\\.bad\\)`));
  });

  it('cuts a torn last line at open, so that the next record does not land on it', async () => {
    const { journal, file, dir } = await journalIn();
    journal.record(task(1));
    journal.close();
    await fs.appendFile(file, '{"task":{"nid":2,"rid":1,');
    const again = new Journal({ dir, mode: 'write', log: silentLog, snapshot: () => [] });
    again.record(task(3));
    again.close();
    expect(readJournal(file)).toMatchObject({ tornTail: false, lines: 2 });
    expect(readJournal(file).entries.map((e) => e.task.nid)).toEqual([1, 3]);
  });

  it('removes what a killed compaction left, and never a file an operator moved aside', async () => {
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, `${JOURNAL_FILE}.123456789`), 'half a compaction');
    await fs.writeFile(path.join(dir, `${JOURNAL_FILE}.bad`), 'the old journal');
    new Journal({ dir, mode: 'write', log: silentLog, snapshot: () => [] }).close();
    expect((await fs.readdir(dir)).sort()).toEqual([JOURNAL_FILE, `${JOURNAL_FILE}.bad`]);
  });

  it('starts empty when there is no journal yet', async () => {
    expect(readJournal(path.join(await tempDir(), JOURNAL_FILE))).toEqual({ entries: [], lines: 0, tornTail: false });
  });

  it('compacts to what is live once it has grown, so its size follows the state and not the uptime', async () => {
    const live = new Map<number, Task>();
    const { journal, file } = await journalIn(undefined, () => [...live.values()].map((t) => ({ task: t })), 4_096);
    journal.startCompacting();
    for (let round = 0; round < 2_000; round += 1) {
      const t = task(1 + (round % 5), { attempts: round });
      live.set(t.nid, t);
      journal.record(t);
      if (round % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await journal.committed();
    await new Promise((r) => setImmediate(r));
    const size = (await fs.stat(file)).size;
    expect(size).toBeLessThan(3 * 4_096);
    const byNid = (list: Array<[number, number]>) => list.sort((a, b) => a[0] - b[0]);
    expect(byNid(readJournal(file).entries.map((e) => [e.task.nid, e.task.attempts]))).toEqual(byNid([...live.values()].map((t) => [t.nid, t.attempts])));
    // Appends after a compaction go to the new file.
    journal.record(task(99));
    await journal.committed();
    expect(readJournal(file).entries.at(-1)?.task.nid).toBe(99);
    journal.close();
  });

  it('rejects committed() with JournalWriteError when the group cannot be handed to the kernel (a full disk)', async () => {
    const dir = await tempDir();
    await fs.symlink('/dev/full', path.join(dir, JOURNAL_FILE));
    const { journal } = await journalIn(dir);
    journal.record(task(1));
    const first = journal.committed();
    await expect(first).rejects.toThrow(JournalWriteError);
    await expect(first).rejects.toThrow(/ENOSPC/);
    journal.record(task(2));
    await expect(journal.committed()).rejects.toThrow(JournalWriteError);
    journal.close();
  });

  it('writes what one turn recorded together, after the turn, and resolves committed() only then', async () => {
    const { journal, file } = await journalIn();
    await expect(journal.committed()).resolves.toBeUndefined();
    journal.record(task(1));
    journal.record(task(2));
    const committed = journal.committed();
    // Still this turn: nothing is in the file, and nobody has been told it is.
    expect(readJournal(file).lines).toBe(0);
    let told = false;
    void committed.then(() => {
      told = true;
    });
    await Promise.resolve();
    expect(told).toBe(false);
    await committed;
    expect(readJournal(file).entries.map((e) => e.task.nid)).toEqual([1, 2]);
    journal.close();
  });

  it('writes what is pending when it closes, and nothing after', async () => {
    const { journal, file } = await journalIn();
    journal.record(task(7));
    journal.close();
    expect(readJournal(file).entries.map((e) => e.task.nid)).toEqual([7]);
    journal.record(task(8));
    await journal.committed();
    await new Promise((r) => setImmediate(r));
    expect(readJournal(file).entries.map((e) => e.task.nid)).toEqual([7]);
  });
});
