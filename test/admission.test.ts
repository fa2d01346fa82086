import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Admission, freeDiskMb, waitingForVerdict } from '../src/admission.js';
import { tempDir } from './helpers.js';

describe('Admission', () => {
  it('has no room while paused, closing or at the concurrency limit, and says which', () => {
    const a = new Admission({ limits: { concurrency: 2 } });
    expect(a.hasRoom(1)).toEqual({ open: true });
    expect(a.hasRoom(2)).toMatchObject({ open: false, reason: 'concurrency' });
    a.paused = true;
    expect(a.hasRoom(0)).toMatchObject({ open: false, reason: 'paused' });
    a.close();
    expect(a.hasRoom(0)).toMatchObject({ open: false, reason: 'closing' });
  });

  it('holds starts at the starts-per-minute budget until the oldest start is a minute old', () => {
    const a = new Admission({ limits: { concurrency: 5, maxStartsPerMinute: 2 } });
    a.recordStart(1_000);
    a.recordStart(2_000);
    expect(a.check(3_000)).toEqual({ open: false, reason: 'rate', until: 61_000, recheckInMs: 58_001 });
    expect(a.deferredBy).toBe('rate');
    expect(a.check(61_000)).toEqual({ open: true });
    expect(a.deferredBy).toBeNull();
    expect(a.startsInLastMinute(61_000)).toBe(1);
  });

  it('defers starts while the load average is above the limit, with the load it saw', () => {
    let load = 9;
    const a = new Admission({ limits: { concurrency: 1, maxLoad: 4 }, loadAverage: () => load, loadRecheckMs: 250 });
    expect(a.check(0)).toEqual({ open: false, reason: 'load', load: 9, limit: 4, perCpu: false, recheckInMs: 250 });
    expect(a.deferredBy).toBe('load');
    load = 4;
    expect(a.check(0)).toEqual({ open: true });
  });

  it('counts no starts when there is no starts-per-minute limit', () => {
    const a = new Admission({ limits: { concurrency: 1 } });
    a.recordStart(0);
    expect(a.startsInLastMinute(1)).toBe(0);
  });

  it('defers starts while the load per CPU is above its limit, as BOA counts it', () => {
    let load = 6.3;
    const a = new Admission({ limits: { concurrency: 1, maxLoadPerCpu: 3.1 }, loadAverage: () => load, cpus: 2, loadRecheckMs: 100 });
    expect(a.check(0)).toEqual({ open: false, reason: 'load', load: 6.3, limit: 6.2, perCpu: true, recheckInMs: 100 });
    load = 6.2;
    expect(a.check(0)).toEqual({ open: true });
  });

  it('starts nothing while the pause file exists', async () => {
    const pauseFile = path.join(await tempDir(), 'pause');
    const a = new Admission({ limits: { concurrency: 1, pauseFile }, loadRecheckMs: 100 });
    expect(a.check(0)).toEqual({ open: true });
    await fs.writeFile(pauseFile, '');
    expect(a.check(0)).toEqual({ open: false, reason: 'pause_file', path: pauseFile, recheckInMs: 100 });
    expect(a.deferredBy).toBe('pause_file');
    await fs.rm(pauseFile);
    expect(a.check(0)).toEqual({ open: true });
  });

  it('holds starts while the watched folder has less free space than the minimum, or cannot be read', async () => {
    const dir = await tempDir();
    const free = freeDiskMb(dir)!;
    expect(free).toBeGreaterThan(0);
    expect(new Admission({ limits: { concurrency: 1, minFreeDiskMb: free + 1_000_000, diskPath: dir } }).check(0)).toMatchObject({ open: false, reason: 'disk', path: dir, freeMb: expect.any(Number) });
    expect(new Admission({ limits: { concurrency: 1, minFreeDiskMb: 1, diskPath: dir } }).check(0)).toEqual({ open: true });
    const missing = path.join(dir, 'no-such-folder');
    expect(new Admission({ limits: { concurrency: 1, minFreeDiskMb: 1, diskPath: missing } }).check(0)).toMatchObject({ open: false, reason: 'disk', freeMb: null });
  });

  it('says why in words an operator reads, with the values that decided it', () => {
    expect(waitingForVerdict({ open: false, reason: 'disk', path: '/var/aegir', freeMb: 90, limit: 100, recheckInMs: 1 }, 1)).toEqual({
      reason: 'disk',
      path: '/var/aegir',
      freeMb: 90,
      limit: 100,
      message: '/var/aegir has 90 MB free, less than 100 MB (TASKD_MIN_FREE_DISK)',
    });
    expect(waitingForVerdict({ open: false, reason: 'concurrency', recheckInMs: null }, 3)).toMatchObject({ reason: 'concurrency', limit: 3 });
    expect(waitingForVerdict({ open: false, reason: 'rate', until: 0, recheckInMs: 1 }, 1)).toMatchObject({ until: '1970-01-01T00:00:00.000Z' });
  });
});
