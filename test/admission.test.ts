import { describe, expect, it } from 'vitest';
import { Admission } from '../src/admission.js';

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
    expect(a.gates(3_000)).toEqual({ open: false, reason: 'rate', until: 61_000, recheckInMs: 58_001 });
    expect(a.deferredBy).toBe('rate');
    expect(a.gates(61_000)).toEqual({ open: true });
    expect(a.deferredBy).toBeNull();
    expect(a.startsInLastMinute(61_000)).toBe(1);
  });

  it('defers starts while the load average is above the limit, with the load it saw', () => {
    let load = 9;
    const a = new Admission({ limits: { concurrency: 1, maxLoad: 4 }, loadAverage: () => load, loadRecheckMs: 250 });
    expect(a.gates(0)).toEqual({ open: false, reason: 'load', load: 9, recheckInMs: 250 });
    expect(a.deferredBy).toBe('load');
    load = 4;
    expect(a.gates(0)).toEqual({ open: true });
  });

  it('counts no starts when there is no starts-per-minute limit', () => {
    const a = new Admission({ limits: { concurrency: 1 } });
    a.recordStart(0);
    expect(a.startsInLastMinute(1)).toBe(0);
  });
});
