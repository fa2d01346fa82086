import fs from 'node:fs/promises';
import type { WriteBackSink } from './scheduler.js';
import type { Logger, Orphan } from './task.js';

/**
 * The pid of a process on this host whose command line runs hosting-task for this nid (an argument
 * containing "hosting-task", and the nid as an argument of its own; or every argument TASKD_COMMAND
 * gives it after its program), or null. An operator's manual
 * `drush @hostmaster hosting-task 123 --force`, or another runner's, is found this way and is never
 * finished under it.
 */
export async function findLocalRun(nid: number, procDir = '/proc', commandArgs: readonly string[] = []): Promise<number | null> {
  let entries: string[];
  try {
    entries = await fs.readdir(procDir);
  } catch {
    return null;
  }
  const wanted = String(nid);
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = await fs.readFile(`${procDir}/${entry}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const argv = cmdline.split('\0');
    if (argv.some((a) => a.includes('hosting-task')) && argv.includes(wanted)) return Number(entry);
    // TASKD_COMMAND's own arguments for this nid (a wrapper, --task={nid}…), all of them, after its program.
    if (commandArgs.length > 0 && commandArgs.every((a) => argv.includes(a))) return Number(entry);
  }
  return null;
}

export interface OrphanResolverOptions {
  /** Processing in Aegir this long with nothing here running it before it is finished; 0: never by itself. */
  graceMs: number;
  orphans(): Orphan[];
  outbox: WriteBackSink;
  log: Logger;
  /** A task the scheduler has active (starting, running, adopted) is never an orphan, whatever Aegir listed. */
  isActive(nid: number): boolean;
  /** Whether a live process of ours still holds this nid's pid file (a child left alone at a restart). */
  pidFileAlive(nid: number): Promise<boolean>;
  findLocalRun?: (nid: number) => Promise<number | null>;
}

export type ResolveResult = { result: 'queued'; vid: number } | { result: 'not_orphan' } | { result: 'running_here'; pid: number } | { result: 'no_revision' };

/**
 * Orphans are resolved, not only listed: a task Aegir shows processing that no process on this host
 * runs (no child, no adopted pid, no hosting-task of that nid in /proc) is finished in Aegir once it
 * has been an orphan for TASKD_ORPHAN_GRACE, or at once by an operator.
 */
export class OrphanResolver {
  readonly #options: OrphanResolverOptions;
  readonly #find: (nid: number) => Promise<number | null>;
  /** Orphans a local process was found running, so that it is said once, not at every reconcile. */
  readonly #seenRunning = new Set<number>();

  constructor(options: OrphanResolverOptions) {
    this.#options = options;
    this.#find = options.findLocalRun ?? ((nid) => findLocalRun(nid));
  }

  /** After every reconcile: finishes the orphans older than the grace. */
  async sweep(now = Date.now()): Promise<number[]> {
    if (this.#options.graceMs <= 0) return [];
    const resolved: number[] = [];
    for (const orphan of this.#options.orphans()) {
      if (now - orphan.since < this.#options.graceMs) continue;
      const answer = await this.resolve(orphan.nid, `it has been processing in Aegir for ${Math.round((now - orphan.since) / 1000)} s with no process on this host running it (TASKD_ORPHAN_GRACE)`);
      if (answer.result === 'queued') resolved.push(orphan.nid);
    }
    return resolved;
  }

  async resolve(nid: number, why = 'an operator resolved it as an orphan'): Promise<ResolveResult> {
    const orphan = this.#options.orphans().find((o) => o.nid === nid);
    if (!orphan || this.#options.isActive(nid)) return { result: 'not_orphan' };
    if (orphan.vid === null) return { result: 'no_revision' };
    const pid = (await this.#options.pidFileAlive(nid)) ? -1 : await this.#find(nid);
    if (pid !== null) {
      if (!this.#seenRunning.has(nid)) this.#options.log.warn({ nid, pid: pid === -1 ? 'its pid file' : pid }, 'not finishing an orphan: a hosting-task of that nid runs on this host');
      this.#seenRunning.add(nid);
      return { result: 'running_here', pid };
    }
    this.#seenRunning.delete(nid);
    this.#options.outbox.push({ nid, vid: orphan.vid, cause: 'orphan', reason: `aegir-taskd: no drush runs this task any more; ${why}` });
    return { result: 'queued', vid: orphan.vid };
  }
}
