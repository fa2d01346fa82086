import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { adminTokenFile } from '../../src/admin-token.js';
import { readRecords, fixture, tempDir, waitFor } from '../helpers.js';
import { cliPath, startService, type ServiceProcess } from './service-process.js';

const running: ServiceProcess[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) {
    s.child.kill('SIGKILL');
    await s.exited;
  }
});

function cli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.on('exit', (status) => resolve({ status, stdout }));
  });
}

describe('a service started without TASKD_ADMIN_TOKEN', () => {
  it('makes a token of its own, 0600 in its state folder, says where it is without logging it, and keeps it across restarts', async () => {
    const stateDir = path.join(await tempDir(), 'state');
    const recordFile = path.join(await tempDir(), 'records');
    const env = {
      TASKD_ADMIN_TOKEN: '',
      TASKD_STATE_DIR: stateDir,
      TASKD_LOG_DIR: await tempDir(),
      TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']),
      RECORD_FILE: recordFile,
    };
    const first = await startService(env);
    running.push(first);
    const file = adminTokenFile(stateDir);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(stateDir)).mode & 0o777).toBe(0o700);
    const token = (await fs.readFile(file, 'utf8')).trim();
    expect(token.length).toBeGreaterThanOrEqual(32);
    const notice = first.logs.map((l) => JSON.parse(l) as { msg: string; file?: string }).find((l) => l.file === file);
    expect(notice?.msg).toMatch(/TASKD_ADMIN_TOKEN is not set/);
    expect(first.logs.join('\n')).not.toContain(token);

    // Loopback without the token changes nothing; with it (as the README's curl lines send it), it does.
    const refused = await request(`${first.url}/v1/queue/pause`, { method: 'POST' });
    expect(refused.statusCode).toBe(401);
    await refused.body.dump();
    const paused = await request(`${first.url}/v1/queue/pause`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(await paused.body.json()).toEqual({ paused: true });

    // The command line finds the same token in the same state folder.
    const enqueued = await cli(['enqueue', '41', '--url', first.url], { TASKD_STATE_DIR: stateDir });
    expect(enqueued.stdout).toMatch(/^202 /);

    first.child.kill('SIGTERM');
    await first.exited;
    const second = await startService(env);
    running.push(second);
    expect((await fs.readFile(file, 'utf8')).trim()).toBe(token);
    const resumed = await request(`${second.url}/v1/queue/resume`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(resumed.statusCode).toBe(200);
    await resumed.body.dump();
    const again = await cli(['enqueue', '42', '--url', second.url], { TASKD_STATE_DIR: stateDir });
    expect(again.stdout).toMatch(/^202 /);
    await waitFor(async () => (await readRecords(recordFile)).some((r) => r.event === 'end' && r.nid === 42), { what: 'the task queued with the kept token to run' });
  });
});
