import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ADMIN_TOKEN, TEST_SECRET, fixture, isProcessAlive, readRecords, signedHeaders, tempDir, waitFor } from '../helpers.js';
import { cliPath, startService, type ServiceProcess } from './service-process.js';

const running: ServiceProcess[] = [];
afterEach(() => {
  for (const s of running.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
});

async function service(env: Record<string, string>) {
  const s = await startService(env);
  running.push(s);
  return s;
}

async function postSigned(url: string, task: Record<string, unknown>) {
  const payload = JSON.stringify(task);
  const response = await request(`${url}/v1/tasks`, { method: 'POST', body: payload, headers: signedHeaders(payload) });
  return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> };
}

/** Processes whose command line holds every one of these strings (start gates carry the log folder as an argument). */
async function processesWith(...parts: string[]): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (parts.every((part) => cmdline.split('\0').includes(part))) found.push(Number(entry));
  }
  return found;
}

describe('aegir-taskd as a process', () => {
  it('runs the command with the nid when a signed webhook arrives over HTTP', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const s = await service({ TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), RECORD_FILE: recordFile });
    const answer = await postSigned(s.url, { nid: 4242, rid: 7, type: 'verify' });
    expect(answer.status).toBe(202);
    await waitFor(async () => (await readRecords(recordFile)).length === 2);
    expect((await readRecords(recordFile)).map((r) => [r.event, r.nid])).toEqual([
      ['start', 4242],
      ['end', 4242],
    ]);
    expect(await fs.readFile(path.join(dir, '4242.log'), 'utf8')).toContain('working on 4242');
  });

  it('prints --help and --version, and refuses a bad value with one line naming it', () => {
    const help = spawnSync(process.execPath, [cliPath, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--concurrency');
    expect(help.stdout).toContain('TASKD_FRONTEND_URL');
    const version = spawnSync(process.execPath, [cliPath, '--version'], { encoding: 'utf8' });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const bad = spawnSync(process.execPath, [cliPath], { encoding: 'utf8', env: { ...process.env, TASKD_CONCURRENCY: 'many' } });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('aegir-taskd: TASKD_CONCURRENCY: expected an integer from 1 to 1000 (got "many")\n');
  });

  it('starts on 127.0.0.1:8765 with nothing configured and says what is switched off', async () => {
    const s = await service({ TASKD_PORT: '' });
    expect(s.url).toBe('http://127.0.0.1:8765');
    const off = s.logs.filter((l) => l.includes('switched off')).join('\n');
    expect(off).toContain('signed webhook intake (TASKD_SECRET is not set)');
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
  });

  it('on SIGTERM refuses new webhooks with 503, lets a short task finish, then exits 0', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const s = await service({ TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), RECORD_FILE: recordFile, SLEEP_SECONDS: '2' });
    await postSigned(s.url, { nid: 1, rid: 1 });
    await waitFor(async () => (await readRecords(recordFile)).length === 1);
    s.child.kill('SIGTERM');
    await waitFor(() => s.logs.some((l) => l.includes('shutting down')));
    const refused = await postSigned(s.url, { nid: 2, rid: 2 });
    expect(refused).toMatchObject({ status: 503, body: { error: 'TASKD_ERR_SHUTTING_DOWN' } });
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect((await readRecords(recordFile)).map((r) => r.event)).toEqual(['start', 'end']);
  });

  it('after the shutdown grace exits 0 and leaves a running task alive to finish', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const s = await service({ TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_SHUTDOWN_GRACE: '0.3', TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), RECORD_FILE: recordFile, SLEEP_SECONDS: '4' });
    await postSigned(s.url, { nid: 3, rid: 1 });
    await waitFor(async () => (await readRecords(recordFile)).length === 1);
    const [start] = await readRecords(recordFile);
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(isProcessAlive(start!.pid)).toBe(true);
    await waitFor(async () => (await readRecords(recordFile)).length === 2, { timeoutMs: 10_000, what: 'the orphaned child to finish' });
    expect(s.logs.join('\n')).toMatch(/leaving running tasks alive/);
  });

  it('exits at once on a second signal, still leaving the child alive', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const s = await service({ TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_SHUTDOWN_GRACE: '30', TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), RECORD_FILE: recordFile, SLEEP_SECONDS: '4' });
    await postSigned(s.url, { nid: 4, rid: 1 });
    await waitFor(async () => (await readRecords(recordFile)).length === 1);
    const [start] = await readRecords(recordFile);
    s.child.kill('SIGTERM');
    await waitFor(() => s.logs.some((l) => l.includes('shutting down')));
    s.child.kill('SIGINT');
    expect(await s.exited).toEqual({ code: 130, signal: null });
    expect(isProcessAlive(start!.pid)).toBe(true);
    await waitFor(async () => (await readRecords(recordFile)).length === 2, { timeoutMs: 10_000 });
  });

  it('a child that keeps printing finishes its work after the service is SIGKILLed', async () => {
    const dir = await tempDir();
    const doneFile = path.join(dir, 'done');
    const s = await service({ TASKD_SECRET: TEST_SECRET, TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('keep-printing.sh'), '{nid}']), DONE_FILE: doneFile, SECONDS_TO_RUN: '2' });
    await postSigned(s.url, { nid: 5, rid: 1 });
    await waitFor(async () => (await fs.readFile(path.join(dir, '5.log'), 'utf8').catch(() => '')).includes('line 3'));
    s.child.kill('SIGKILL');
    await s.exited;
    await waitFor(() => fs.readFile(doneFile, 'utf8').catch(() => ''), { timeoutMs: 6000, what: 'the child to finish after the service died' });
    const log = await fs.readFile(path.join(dir, '5.log'), 'utf8');
    expect(Number(/line (\d+)\n$/.exec(log)?.[1])).toBeGreaterThan(20);
  });

  it('keeps warm start processes waiting while it listens, runs tasks in them, and leaves none behind when SIGKILLed', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const s = await service({
      TASKD_SECRET: TEST_SECRET,
      TASKD_LOG_DIR: dir,
      TASKD_CONCURRENCY: '4',
      TASKD_WARM_STARTS: '2',
      TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']),
      RECORD_FILE: recordFile,
    });
    const waiting = await waitFor(async () => {
      const gates = await processesWith('aegir-taskd-gate', dir);
      return gates.length === 2 ? gates : null;
    }, { what: 'two warm start processes' });
    await postSigned(s.url, { nid: 77, rid: 1 });
    await waitFor(async () => (await readRecords(recordFile)).length === 2, { what: 'the task to run' });
    // The task ran in one of the processes that were waiting before it arrived.
    expect(waiting).toContain((await readRecords(recordFile))[0]!.pid);
    await waitFor(async () => ((await processesWith('aegir-taskd-gate', dir)).length === 2 ? true : null), { what: 'a replacement start process' });
    s.child.kill('SIGKILL');
    await s.exited;
    await waitFor(async () => ((await processesWith('aegir-taskd-gate', dir)).length === 0 ? true : null), { timeoutMs: 5000, what: 'the waiting start processes to exit' });
  });

  it('keeps the service secrets out of its warm start processes and of the tasks run in them', async () => {
    const dir = await tempDir();
    const s = await service({
      TASKD_SECRET: TEST_SECRET,
      TASKD_ADMIN_TOKEN: ADMIN_TOKEN,
      TASKD_LOG_DIR: dir,
      TASKD_COMMAND: JSON.stringify([fixture('print-env.sh'), '{nid}']),
      KEEP_ME: 'yes',
    });
    const [waiting] = await waitFor(async () => {
      const gates = await processesWith('aegir-taskd-gate', dir);
      return gates.length === 1 ? gates : null;
    }, { what: 'the warm start process' });
    // What the waiting process holds is what the task will inherit through exec.
    const environ = (await fs.readFile(`/proc/${waiting}/environ`, 'utf8')).split('\0');
    expect(environ).toContain('KEEP_ME=yes');
    expect(environ.filter((v) => /^TASKD_(SECRET|ADMIN_TOKEN)=/.test(v))).toEqual([]);
    await postSigned(s.url, { nid: 78, rid: 1 });
    const log = await waitFor(async () => {
      const text = await fs.readFile(path.join(dir, '78.log'), 'utf8').catch(() => '');
      return text.includes('KEEP_ME=yes') ? text : null;
    }, { what: 'the task output' });
    expect(log).not.toContain(TEST_SECRET.slice('whsec_'.length));
    expect(log).not.toContain(ADMIN_TOKEN);
  });
});
