import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, TEST_SECRET, readRecords, fixture, tempDir, waitFor } from '../helpers.js';
import { cliPath, startService, type ServiceProcess } from './service-process.js';

const running: ServiceProcess[] = [];
afterEach(() => {
  for (const s of running.splice(0)) s.child.kill('SIGKILL');
});

function cli(args: string[], env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cliPath, ...args], { env: { PATH: process.env.PATH, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

describe('aegir-taskd check-config', () => {
  it('accepts a working configuration and says what is switched off', async () => {
    const result = await cli(['check-config'], { TASKD_COMMAND: JSON.stringify(['sh', '-c', 'true', 'x', '{nid}']), TASKD_LOG_DIR: await tempDir() });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^configuration OK\n/);
    expect(result.stdout).toContain('switched off: signed webhook intake (TASKD_SECRET is not set)');
  });

  it('says whether dispatching is on, and refuses a dispatch command that cannot run', async () => {
    const base = { TASKD_COMMAND: JSON.stringify(['sh', '{nid}']), TASKD_LOG_DIR: await tempDir(), TASKD_SECRET: TEST_SECRET, TASKD_FRONTEND_URL: 'http://127.0.0.1:9/hosting/taskd' };
    const on = await cli(['check-config'], { ...base, TASKD_DISPATCH_COMMAND: JSON.stringify(['sh', '-c', 'true']) });
    expect(on.status).toBe(0);
    expect(on.stdout).toMatch(/dispatching is on: \["sh","-c","true"\] \(\/\S+\/sh\) runs when one of Aegir's other queues is due, at most once every 60s, timeout 600s/);
    const off = await cli(['check-config'], { ...base, TASKD_DISPATCH_COMMAND: '' });
    expect(off.status).toBe(0);
    expect(off.stdout).toContain("switched off: dispatching Aegir's other queues (TASKD_DISPATCH_COMMAND is empty)");
    expect(off.stdout).not.toContain('dispatching is on');
    const missing = await cli(['check-config'], { ...base, TASKD_DISPATCH_COMMAND: JSON.stringify(['no-such-drush', 'hosting-dispatch']) });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe('aegir-taskd: TASKD_DISPATCH_COMMAND: no-such-drush is not an executable file on PATH\n');
  });

  it.each([
    [{ TASKD_COMMAND: JSON.stringify(['no-such-drush', '{nid}']) }, 'aegir-taskd: TASKD_COMMAND: no-such-drush is not an executable file on PATH\n'],
    [{ TASKD_LOG_DIR: '/etc/passwd/logs' }, 'aegir-taskd: TASKD_LOG_DIR: /etc/passwd/logs cannot be created or written (ENOTDIR)\n'],
    [{ TASKD_RECONCILE_INTERVAL: 'often' }, 'aegir-taskd: TASKD_RECONCILE_INTERVAL: expected a number of seconds (got "often")\n'],
  ])('exits 2 with the reason for %j', async (env, message) => {
    const result = await cli(['check-config'], { TASKD_COMMAND: JSON.stringify(['sh', '{nid}']), TASKD_LOG_DIR: await tempDir(), ...env });
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(message);
  });
});

describe('aegir-taskd enqueue', () => {
  it('sends a signed webhook to a running service and prints its answer', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const env = { TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), RECORD_FILE: recordFile, SLEEP_SECONDS: '5' };
    const service = await startService(env);
    running.push(service);
    const result = await cli(['enqueue', '808', '--rid', '9', '--url', service.url], env);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^202 \{"nid":808,"state":"(queued|starting|running)"\}\n$/);
    const again = await cli(['enqueue', '808', '--url', service.url], env);
    expect(again.stdout).toMatch(/^200 \{"nid":808,"state":"running","duplicate":true\}/);
    await waitFor(async () => (await readRecords(recordFile)).length === 1);
    expect((await readRecords(recordFile)).map((r) => [r.event, r.nid])).toEqual([['start', 808]]);
  });

  it('uses the admin token when no secret is configured, and fails on a refusal', async () => {
    const dir = await tempDir();
    const service = await startService({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify(['true', '{nid}']) });
    running.push(service);
    expect((await cli(['enqueue', '5', '--url', service.url], { TASKD_ADMIN_TOKEN: ADMIN_TOKEN })).status).toBe(0);
    const refused = await cli(['enqueue', '6', '--url', service.url], { TASKD_ADMIN_TOKEN: 'another-token-0123456789' });
    expect(refused.status).toBe(1);
    expect(refused.stdout).toMatch(/^401 .*TASKD_ERR_UNAUTHORIZED/);
  });

  it('refuses a nid that is not a positive integer', async () => {
    const result = await cli(['enqueue', '12; rm -rf /'], {});
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('usage: aegir-taskd enqueue NID [--rid RID] [--url URL]\n');
  });
});
