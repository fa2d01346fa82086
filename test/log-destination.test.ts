import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchedLogDestination, LOG_BATCH_MS } from '../src/log-destination.js';
import { tempDir, waitFor } from './helpers.js';

async function logFile() {
  const file = path.join(await tempDir(), 'service.log');
  return { file, fd: fs.openSync(file, 'a') };
}

const line = (i: number) => `${JSON.stringify({ level: 30, msg: 'request completed', i, pad: 'x'.repeat(60) })}\n`;

afterEach(() => {
  vi.restoreAllMocks();
});

describe('BatchedLogDestination', () => {
  it('writes a lone line soon after, not at once', async () => {
    const { file, fd } = await logFile();
    const destination = new BatchedLogDestination(fd);
    destination.write(line(1));
    expect(fs.readFileSync(file, 'utf8')).toBe('');
    const startedAt = Date.now();
    await waitFor(() => fs.readFileSync(file, 'utf8') || null, { timeoutMs: 2000, what: 'the line' });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(LOG_BATCH_MS - 5);
    expect(fs.readFileSync(file, 'utf8')).toBe(line(1));
    destination.close();
  });

  it('gathers lines logged over many turns of the event loop into a few writes, in order', async () => {
    const { file, fd } = await logFile();
    const writes = vi.spyOn(fs, 'write');
    const destination = new BatchedLogDestination(fd);
    const lines = Array.from({ length: 300 }, (_, i) => line(i));
    // As under a burst of webhooks: one access-log line per request, each in its own turn.
    for (const text of lines) {
      destination.write(text);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await waitFor(() => (fs.readFileSync(file, 'utf8').length === lines.join('').length ? true : null), { timeoutMs: 2000, what: 'every line' });
    expect(fs.readFileSync(file, 'utf8')).toBe(lines.join(''));
    // 300 lines of about 100 bytes: two full batches and what the timer flushes.
    expect(writes.mock.calls.filter(([target]) => target === fd).length).toBeLessThanOrEqual(6);
    destination.close();
  });

  it('writes what waits synchronously on flushSync, for exit paths', async () => {
    const { file, fd } = await logFile();
    const destination = new BatchedLogDestination(fd);
    destination.write(line(1));
    destination.write(line(2));
    destination.flushSync();
    expect(fs.readFileSync(file, 'utf8')).toBe(line(1) + line(2));
    destination.close();
  });

  it('after close, writes each line at once, so the last words of a stopping service are kept', async () => {
    const { file, fd } = await logFile();
    const destination = new BatchedLogDestination(fd);
    destination.write(line(1));
    destination.close();
    destination.write(line(2));
    expect(fs.readFileSync(file, 'utf8')).toBe(line(1) + line(2));
  });
});
