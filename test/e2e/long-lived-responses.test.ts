import path from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN, TEST_SECRET, fixture, readRecords, signedHeaders, tempDir, waitFor } from '../helpers.js';
import { startService, type ServiceProcess } from './service-process.js';

const running: ServiceProcess[] = [];
const children: number[] = [];
afterEach(() => {
  for (const s of running.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const pid of children.splice(0)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

async function postSigned(url: string, task: Record<string, unknown>) {
  const payload = JSON.stringify(task);
  const response = await request(`${url}/v1/tasks`, { method: 'POST', body: payload, headers: signedHeaders(payload) });
  return response.statusCode;
}

describe('long-lived answers of the service process', () => {
  it('exits promptly on SIGTERM with --shutdown-grace 1 while clients follow a running and a queued task, ending their follows', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const s = await startService(
      { TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), RECORD_FILE: recordFile, SLEEP_SECONDS: '30' },
      ['--shutdown-grace', '1'],
    );
    running.push(s);
    // One lane: 2 waits queued behind 1, which runs for 30 s.
    expect(await postSigned(s.url, { nid: 1, rid: 1 })).toBe(202);
    expect(await postSigned(s.url, { nid: 2, rid: 1 })).toBe(202);
    const [start] = await waitFor(async () => {
      const records = await readRecords(recordFile);
      return records.length === 1 ? records : null;
    });
    children.push(start!.pid);
    const follows = [1, 1, 2, 2].map(async (nid) => {
      const response = await request(`${s.url}/v1/tasks/${nid}/log?follow=1`, { signal: AbortSignal.timeout(20_000), headers: ADMIN });
      expect(response.statusCode).toBe(200);
      return response.body.text();
    });
    // Headers come at once, so every follow is open before the signal.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const signalledAt = Date.now();
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    const took = Date.now() - signalledAt;
    console.log(`exited ${took} ms after SIGTERM with --shutdown-grace 1 and 4 follows open`);
    expect(took).toBeLessThan(3500);
    const texts = await Promise.all(follows);
    for (const text of texts) expect(text).toMatch(/--- aegir-taskd: the service is stopping; this follow ends here, the task goes on\n$/);
  });
});
