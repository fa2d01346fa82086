import fs from 'node:fs';
import path from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import { TASK_STATES, type Logger, type Task } from './task.js';

export const JOURNAL_FILE = 'journal.jsonl';

/** How far a record is taken before an intake is answered: the kernel (survives a crash of the service) or the disk (survives a power loss). */
export type JournalMode = 'write' | 'fsync';

/** One line of the journal: a task as it is now, and whether repeated runs left it stuck. */
export interface JournalEntry {
  task: Task;
  stuck?: boolean;
}

/** What start-up reads back: the last entry of every nid, oldest write first. */
export interface JournalContents {
  entries: JournalEntry[];
  /** Lines that were read, and whether the last one was torn by a crash mid-write and ignored. */
  lines: number;
  tornTail: boolean;
}

const nullableInt = z.number().int().nullable();
const taskSchema = z.object({
  nid: z.number().int().positive(),
  rid: nullableInt,
  type: z.string().nullable(),
  vid: nullableInt,
  changed: nullableInt,
  lane: z.string().nullable(),
  state: z.enum(TASK_STATES),
  source: z.enum(['webhook', 'operator', 'reconcile', 'adopted']),
  receivedAt: z.number(),
  confirmedAt: z.number().nullable(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  attempts: z.number().int().nonnegative(),
  exitCode: nullableInt,
  signal: z.string().nullable(),
  aegirStatus: nullableInt,
  outcomeConfirmed: z.boolean().nullable(),
  message: z.string().nullable(),
  pid: nullableInt,
  retryAt: z.number().nullable(),
  orderKey: z.number(),
});
const entrySchema = z.object({ task: taskSchema, stuck: z.boolean().optional() });

/** The journal cannot be read: start-up stops with one line that says what to do. */
export class JournalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JournalError';
  }
}

/** A record could not be handed to the kernel (a full disk, a read-only folder): nothing was accepted. */
export class JournalWriteError extends Error {
  constructor(override readonly cause: Error) {
    super(`the journal could not be written: ${cause.message}`);
    this.name = 'JournalWriteError';
  }
}

export function readJournal(file: string): JournalContents {
  let text: string;
  try {
    // A device or a fifo in its place would be read for ever.
    if (!fs.statSync(file).isFile()) throw new Error('it is not a regular file');
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], lines: 0, tornTail: false };
    throw new JournalError(`${file} cannot be read (${(error as Error).message}); fix its permissions, or move it aside (mv ${file} ${file}.bad) to start with an empty queue`);
  }
  const lines = text.split('\n');
  // A crash mid-write leaves a last line without its line break: that record was never answered for.
  const tornTail = lines.pop() !== '';
  const latest = new Map<number, JournalEntry>();
  lines.forEach((line, index) => {
    let entry: JournalEntry;
    try {
      entry = entrySchema.parse(JSON.parse(line)) as JournalEntry;
    } catch (error) {
      const why = error instanceof z.ZodError ? (error.issues[0]?.message ?? 'invalid') : (error as Error).message;
      throw new JournalError(`${file} line ${index + 1} is not a journal record (${why}); move it aside (mv ${file} ${file}.bad) to start with an empty queue, then check what it held`);
    }
    // Last write wins, and takes its place at the end: replaying keeps the order tasks last changed in.
    latest.delete(entry.task.nid);
    latest.set(entry.task.nid, entry);
  });
  return { entries: [...latest.values()], lines: lines.length, tornTail };
}

function fsyncFolder(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A last line a crash cut short is cut off, so the next record does not land on the same line; answers the size. */
function cutTornTail(fd: number): number {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return 0;
  const chunk = Buffer.alloc(Math.min(size, 64 * 1024));
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - chunk.length);
    const read = fs.readSync(fd, chunk, 0, end - start, start);
    const lastNewline = chunk.subarray(0, read).lastIndexOf(0x0a);
    if (lastNewline >= 0) {
      const keep = start + lastNewline + 1;
      if (keep < size) fs.ftruncateSync(fd, keep);
      return keep;
    }
    end = start;
  }
  fs.ftruncateSync(fd, 0);
  return 0;
}

export interface JournalOptions {
  dir: string;
  mode: JournalMode;
  log: Logger;
  /** Every entry that must survive a compaction: the queue, the tasks that run, the history, the stuck ones. */
  snapshot: () => Iterable<JournalEntry>;
  /** Compacts once the file has grown past this many bytes and twice its last compacted size. */
  compactAtBytes?: number;
}

/**
 * The queue's way back after a restart: an append-only file of task snapshots, one JSON line per
 * change that matters (accepted, starting, back in the queue, ended); the queue itself is never read
 * from here. Records are committed in groups: what one turn of the event loop records goes to the
 * kernel in one write (and one fdatasync in fsync mode), right after that turn's callbacks, and an
 * intake is answered once `committed()` says its record got there. A task may start before that:
 * it waits for nothing but its slot. Compaction rewrites the file atomically from the live state, so
 * its size follows the queue and the history, not the uptime.
 */
export class Journal {
  readonly file: string;
  readonly #options: JournalOptions;
  readonly #minCompactBytes: number;
  #fd: number;
  #bytes: number;
  #compactAt: number;
  #compactPending = false;
  /** Off until start-up has restored everything: a compaction before that would lose what is not back yet. */
  #compacting = false;
  #pending: string[] = [];
  #waiters: Array<{ resolve: () => void; reject: (error: JournalWriteError) => void }> = [];
  #flushScheduled = false;
  #closed = false;
  readonly #flushSoon = () => this.flush();

  constructor(options: JournalOptions) {
    this.#options = options;
    this.file = path.join(options.dir, JOURNAL_FILE);
    fs.mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    // What a compaction killed half way left behind (write-file-atomic's temporary name: the file, a
    // dot, a number); the journal itself is whole either way. An operator's journal.jsonl.bad stays.
    for (const name of fs.readdirSync(options.dir)) if (/^journal\.jsonl\.\d+$/.test(name)) fs.rmSync(path.join(options.dir, name), { force: true });
    this.#fd = fs.openSync(this.file, 'a+', 0o600);
    this.#bytes = cutTornTail(this.#fd);
    this.#minCompactBytes = options.compactAtBytes ?? 4 * 1024 * 1024;
    this.#compactAt = Math.max(this.#minCompactBytes, 2 * this.#bytes);
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Adds one entry to this turn's group; `committed()` tells when it is in the kernel (or on the disk in fsync mode). */
  record(task: Task, stuck = false): void {
    // After close() its descriptor number may already name another file: nothing more is written.
    if (this.#closed) {
      this.#options.log.warn({ nid: task.nid, state: task.state }, 'a change after the journal closed is not journaled');
      return;
    }
    this.#pending.push(`${JSON.stringify(stuck ? { task, stuck } : { task })}\n`);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // setImmediate runs after every callback of this turn's poll phase: the requests read together are written together.
      setImmediate(this.#flushSoon);
    }
  }

  /** Resolves once everything recorded so far has been written; rejects with JournalWriteError when that write failed. */
  committed(): Promise<void> {
    if (this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Writes the group now: one write for every record since the last one. */
  flush(): void {
    this.#flushScheduled = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    if (this.#pending.length === 0) {
      for (const waiter of waiters) waiter.resolve();
      return;
    }
    const lines = this.#pending;
    this.#pending = [];
    const data = Buffer.from(lines.length === 1 ? lines[0]! : lines.join(''));
    try {
      // A nearly full disk takes part of a write and refuses the rest: loop, then fail on the refusal.
      for (let written = 0; written < data.length; ) written += fs.writeSync(this.#fd, data, written);
      if (this.#options.mode === 'fsync') fs.fdatasyncSync(this.#fd);
    } catch (error) {
      // Cut the part that did get in, or every later record would follow a torn line.
      try {
        fs.ftruncateSync(this.#fd, this.#bytes);
      } catch {
        /* the next start reads a torn last line, which it ignores */
      }
      const failure = new JournalWriteError(error as Error);
      // Every record is a whole snapshot of its task: the next change of each task that does get written repairs the file.
      this.#options.log.error({ err: failure.message, records: lines.length, file: this.file }, 'could not write to the journal');
      for (const waiter of waiters) waiter.reject(failure);
      return;
    }
    this.#bytes += data.length;
    for (const waiter of waiters) waiter.resolve();
    if (this.#compacting && this.#bytes >= this.#compactAt && !this.#compactPending) {
      this.#compactPending = true;
      // Not in the turn that crossed the line: the answers waiting for this group must not wait for a rewrite.
      setImmediate(() => this.compact());
    }
  }

  /** Rewrites the journal from the live state: a new file renamed over the old one, so a crash leaves one or the other. */
  compact(): void {
    // What is pending is in the live state the rewrite is made from; writing it first keeps its
    // waiters' answers honest (and, with the flag still up, schedules no second compaction).
    this.#compactPending = true;
    this.flush();
    this.#compactPending = false;
    let text = '';
    for (const { task, stuck } of this.#options.snapshot()) text += `${JSON.stringify(stuck ? { task, stuck } : { task })}\n`;
    try {
      writeFileAtomic.sync(this.file, text, { mode: 0o600, fsync: true });
    } catch (error) {
      // The old file is whole and still appended to: try again once it has grown further.
      this.#compactAt = this.#bytes + this.#minCompactBytes;
      this.#options.log.error({ err: (error as Error).message, file: this.file }, 'could not compact the journal');
      return;
    }
    fs.closeSync(this.#fd);
    this.#fd = fs.openSync(this.file, 'a+', 0o600);
    // The rename is only on the disk once the folder is: fsync mode promises what a power loss keeps.
    if (this.#options.mode === 'fsync') fsyncFolder(this.#options.dir);
    this.#bytes = Buffer.byteLength(text);
    this.#compactAt = Math.max(this.#minCompactBytes, 2 * this.#bytes);
  }

  /** Compacts now (dropping what start-up read and superseded, a torn last line included) and from now on whenever it has grown. */
  startCompacting(): void {
    this.#compacting = true;
    this.compact();
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    fs.closeSync(this.#fd);
  }
}
