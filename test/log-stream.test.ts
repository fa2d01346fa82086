import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { followLog, LogFollowers } from '../src/log-stream.js';
import { tempDir, waitFor } from './helpers.js';

const openDescriptors = () => fs.readdirSync('/proc/self/fd').length;

afterEach(() => {
  vi.restoreAllMocks();
});

describe('following a log', () => {
  it('leaves no file handle behind when followers are destroyed at any point, during a stat or a read included', async () => {
    const file = path.join(await tempDir(), '1.log');
    await fsp.writeFile(file, 'x'.repeat(200_000));
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.message);
    process.on('warning', onWarning);
    const baseline = openDescriptors();
    try {
      for (let i = 0; i < 2000; i += 1) {
        const follow = followLog(file, { ended: () => false, pollMs: 5 });
        follow.on('data', () => undefined);
        follow.on('error', () => undefined);
        // Anywhere from before the first stat to after a few reads.
        const wait = i % 4;
        if (wait === 1) await new Promise((r) => setImmediate(r));
        else if (wait === 2) await new Promise((r) => setTimeout(r, 0));
        else if (wait === 3) await new Promise((r) => setTimeout(r, 2));
        follow.destroy();
      }
      await waitFor(() => openDescriptors() <= baseline + 20, { timeoutMs: 5000, what: `descriptors back near ${baseline} (now ${openDescriptors()})` });
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.filter((w) => /Closing file descriptor/.test(w))).toEqual([]);
  });

  it('gives every follower of a file all of its output through one poller: one stat a poll, not one per follower', async () => {
    const file = path.join(await tempDir(), '2.log');
    let ended = false;
    const followers = new LogFollowers({ pollMs: 20 });
    const stat = vi.spyOn(fsp, 'stat');
    const follows = Array.from({ length: 200 }, () => followers.follow(file, { ended: () => ended }));
    const texts = follows.map((follow) => {
      const chunks: Buffer[] = [];
      follow.on('data', (chunk: Buffer) => chunks.push(chunk));
      return new Promise<string>((resolve, reject) => {
        follow.on('end', () => resolve(Buffer.concat(chunks).toString()));
        follow.on('error', reject);
      });
    });
    expect(followers.watchedFiles).toBe(1);
    for (let i = 0; i < 10; i += 1) {
      await fsp.appendFile(file, `line ${i}\n`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const statsBefore = stat.mock.calls.length;
    await new Promise((r) => setTimeout(r, 500));
    // About 25 polls in 500 ms; 200 followers polling each on their own would stat 5,000 times.
    expect(stat.mock.calls.length - statsBefore).toBeLessThan(60);
    ended = true;
    const expected = Array.from({ length: 10 }, (_, i) => `line ${i}\n`).join('');
    expect(await Promise.all(texts)).toEqual(follows.map(() => expected));
    await waitFor(() => followers.watchedFiles === 0, { what: 'the poller to stop with its last follower' });
  });

  it('ends a follow early with a note when asked, after everything the log holds by then, even what no poll has seen yet', async () => {
    const file = path.join(await tempDir(), '3.log');
    await fsp.writeFile(file, 'before\n');
    const followers = new LogFollowers({ pollMs: 60_000 });
    const follow = followers.follow(file, { ended: () => false });
    const chunks: string[] = [];
    follow.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
    await waitFor(() => chunks.join('') === 'before\n');
    await fsp.appendFile(file, 'after\n');
    follow.finish('--- closing\n');
    await new Promise((resolve) => follow.on('end', resolve));
    expect(chunks.join('')).toBe('before\nafter\n--- closing\n');
    await waitFor(() => followers.watchedFiles === 0);
  });
});
