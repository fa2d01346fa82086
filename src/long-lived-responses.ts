import type { ServerResponse } from 'node:http';
import { TaskdError } from './errors.js';

export interface LongLivedLimits {
  /** Open at once in all. */
  maxTotal: number;
  /** Open at once for one key (one task). */
  maxPerKey: number;
  /** How long a closing app waits for an ended answer to reach a slow client before it cuts the connection. */
  closeGraceMs?: number;
}

interface Entry {
  key: string | null;
  response: ServerResponse;
  end: () => void;
}

/**
 * Every answer that stays open (a log follow, an event stream) is registered here: it counts
 * against a cap in all and per task, its headers go out at once (a client knows it is connected
 * before the first byte of output exists), and it is ended when the app closes. Without that,
 * app.close() waits for each one to end by itself, which for a follower of a queued task during a
 * shutdown is never.
 */
export class LongLivedResponses {
  readonly #limits: Required<LongLivedLimits>;
  readonly #open = new Set<Entry>();
  readonly #perKey = new Map<string, number>();
  #closing = false;

  constructor(limits: LongLivedLimits) {
    this.#limits = { closeGraceMs: 1000, ...limits };
  }

  get size(): number {
    return this.#open.size;
  }

  count(key: string): number {
    return this.#perKey.get(key) ?? 0;
  }

  /**
   * Registers an answer about to stream; throws (503 or 429) when a cap is reached or the app is
   * closing. `end` must end the answer's body cleanly; it is called when the app closes.
   */
  open(key: string | null, response: ServerResponse, end: () => void): void {
    if (this.#closing) throw new TaskdError('SHUTTING_DOWN', 'The service is shutting down.');
    if (this.#open.size >= this.#limits.maxTotal) throw new TaskdError('TOO_MANY_STREAMS');
    if (key !== null && this.count(key) >= this.#limits.maxPerKey) throw new TaskdError('TOO_MANY_TASK_STREAMS');
    const entry: Entry = { key, response, end };
    this.#open.add(entry);
    if (key !== null) this.#perKey.set(key, this.count(key) + 1);
    response.once('close', () => this.#release(entry));
    // Fastify sets the headers just before it pipes the body in; Node would hold them back until the
    // first byte of it, which for a quiet task may be minutes away.
    response.once('pipe', () => {
      if (!response.headersSent && !response.destroyed) response.flushHeaders();
    });
  }

  /** Ends every open answer, waits up to closeGraceMs for them to reach their clients, then cuts what is left. */
  async closeAll(): Promise<void> {
    this.#closing = true;
    const entries = [...this.#open];
    if (entries.length === 0) return;
    const closed = entries.map((entry) => new Promise<void>((resolve) => (entry.response.closed ? resolve() : entry.response.once('close', () => resolve()))));
    for (const entry of entries) entry.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(closed), new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#limits.closeGraceMs)))]);
    clearTimeout(timer);
    for (const entry of this.#open) entry.response.destroy();
  }

  #release(entry: Entry): void {
    if (!this.#open.delete(entry)) return;
    if (entry.key === null) return;
    const left = this.count(entry.key) - 1;
    if (left > 0) this.#perKey.set(entry.key, left);
    else this.#perKey.delete(entry.key);
  }
}
