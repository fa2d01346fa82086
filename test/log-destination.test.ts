import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchedLogDestination, LOG_BATCH_MS, writeAllSync } from '../src/log-destination.js';
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
    const writes = vi.spyOn(fs, 'write');
    const toFile = () => writes.mock.calls.filter(([target]) => target === fd).length;
    // Node times a timer from the loop's clock as the turn began, so after a long turn it fires early
    // by the wall clock (42 ms for 50 once in CI): the wait is checked on the timers' own clock.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let destination: BatchedLogDestination;
    try {
      destination = new BatchedLogDestination(fd);
      destination.write(line(1));
      vi.advanceTimersByTime(LOG_BATCH_MS - 1);
      expect(toFile()).toBe(0);
      vi.advanceTimersByTime(1);
      expect(toFile()).toBe(1);
    } finally {
      vi.useRealTimers();
    }
    await waitFor(() => fs.readFileSync(file, 'utf8') || null, { timeoutMs: 2000, what: 'the line' });
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

  it('after close, hands what waits and every later line to the writer at once, in order', async () => {
    const { file, fd } = await logFile();
    const destination = new BatchedLogDestination(fd);
    const before = Array.from({ length: 200 }, (_, i) => line(i));
    for (const text of before) destination.write(text);
    destination.close();
    const after = line(1000);
    destination.write(after);
    const expected = before.join('') + after;
    await waitFor(() => (fs.readFileSync(file, 'utf8').length === expected.length ? true : null), { timeoutMs: 2000, what: 'every line' });
    expect(fs.readFileSync(file, 'utf8')).toBe(expected);
  });
});

describe('writeAllSync', () => {
  it('writes everything to a full non-blocking pipe, waiting for the reader, where a single write would lose the rest', async () => {
    // The reader starts draining only after 300 ms, long after the pipe is full, then counts what it got.
    const drain = "setTimeout(() => { let n = 0; process.stdin.on('data', (c) => (n += c.length)); process.stdin.on('end', () => process.stdout.write(String(n))); }, 300)";
    const reader = spawn(process.execPath, ['-e', drain], { stdio: ['pipe', 'pipe', 'inherit'] });
    let answer = '';
    reader.stdout!.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    const fd = (reader.stdin as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')).toMatch(/^flags:\s+\d*[4-7]\d{3}$/m);
    const text = 'x'.repeat(1024 * 1024);
    writeAllSync(fd, text);
    reader.stdin!.end();
    await new Promise((resolve) => reader.on('close', resolve));
    const received = Number(answer);
    expect(received).toBe(text.length);
  });
});
