import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeFrontend } from '../../src/simulation/fake-frontend.js';
import { pidFilePath, readProcessStartTime, runFilePath } from '../../src/runner.js';
import { ADMIN_TOKEN, fixture, readRecords, TEST_KEY, tempDir, waitFor } from '../helpers.js';
import { intervals } from '../intervals.js';
import { serviceEnvFor } from '../simulation.js';
import { cliPath, startService, type ServiceProcess } from './service-process.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

async function call(url: string, method = 'GET', body?: unknown) {
  const response = await fetch(url, { method, headers: auth, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

function track(s: ServiceProcess): ServiceProcess {
  cleanup.push(() => s.child.exitCode === null && s.child.kill('SIGKILL'));
  return s;
}

async function kill(s: ServiceProcess) {
  s.child.kill('SIGKILL');
  await s.exited;
}

/** A service with no frontend, running record-run.sh for each task, its journal and logs in one folder. */
async function noFrontendEnv(extra: Record<string, string> = {}) {
  const dir = await tempDir();
  const recordFile = path.join(dir, 'records');
  return {
    dir,
    records: () => readRecords(recordFile),
    env: {
      TASKD_ADMIN_TOKEN: ADMIN_TOKEN,
      TASKD_LOG_DIR: path.join(dir, 'logs'),
      TASKD_STATE_DIR: path.join(dir, 'state'),
      TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']),
      RECORD_FILE: recordFile,
      SLEEP_SECONDS: '0.05',
      ...extra,
    },
  };
}

describe('the journal', () => {
  it('brings queued tasks back in their lanes and order, and the history, after a SIGKILL without a frontend', async () => {
    const { env, records, dir } = await noFrontendEnv();
    const first = track(await startService(env));
    await call(`${first.url}/v1/tasks`, 'POST', { nid: 1, rid: 5 });
    await waitFor(async () => (await call(`${first.url}/v1/tasks/1`)).body.state === 'succeeded', { what: 'task 1 to end' });
    await call(`${first.url}/v1/queue/pause`, 'POST');
    for (const [nid, rid, changed] of [[30, 7, 300], [20, 7, 200], [10, 8, 100]]) expect((await call(`${first.url}/v1/tasks`, 'POST', { nid, rid, changed })).status).toBe(202);
    await kill(first);

    // A pause file holds the restarted service's starts, so that what came back can be looked at first.
    const pauseFile = path.join(dir, 'maintenance');
    await fs.writeFile(pauseFile, '');
    const second = track(await startService({ ...env, TASKD_PAUSE_FILE: pauseFile }));
    expect((await call(`${second.url}/v1/tasks/1`)).body).toMatchObject({ state: 'succeeded', lane: 'rid:5' });
    expect((await call(`${second.url}/v1/tasks?state=succeeded`)).body.tasks.map((t: { nid: number }) => t.nid)).toEqual([1]);
    expect((await call(`${second.url}/v1/queue`)).body).toMatchObject({ depth: 3, laneCount: 2 });
    expect((await call(`${second.url}/v1/tasks/30`)).body).toMatchObject({ state: 'queued', lane: 'rid:7', waitingFor: { reason: 'lane_busy', nid: 20 } });
    expect((await call(`${second.url}/v1/tasks/10`)).body).toMatchObject({ state: 'queued', lane: 'rid:8', waitingFor: { reason: 'pause_file' } });
    await fs.rm(pauseFile);
    await waitFor(async () => intervals(await records()).length === 4, { timeoutMs: 10_000, what: 'every task to run once' });
    expect(intervals(await records()).map((r) => r.nid)).toEqual([1, 10, 20, 30]);
  });

  it('does not run again a task that ran to its end while the service was down', async () => {
    const { env, records } = await noFrontendEnv({ SLEEP_SECONDS: '1.5' });
    const first = track(await startService(env));
    await call(`${first.url}/v1/tasks`, 'POST', { nid: 4, rid: 1 });
    await waitFor(async () => (await records()).length === 1, { what: 'the task to start' });
    await kill(first);
    await waitFor(async () => (await records()).length === 2, { timeoutMs: 10_000, what: 'the orphaned child to finish on its own' });

    const second = track(await startService(env));
    const task = (await call(`${second.url}/v1/tasks/4`)).body;
    expect(task).toMatchObject({ state: 'failed', outcomeConfirmed: false });
    expect(task.message).toMatch(/the outcome is unknown/);
    await new Promise((r) => setTimeout(r, 300));
    expect((await records()).filter((r) => r.event === 'start')).toHaveLength(1);
  });

  it('stops start-up with one clear line when the journal cannot be read', async () => {
    const { env, dir } = await noFrontendEnv();
    await fs.mkdir(path.join(dir, 'state'), { recursive: true });
    await fs.writeFile(path.join(dir, 'state', 'journal.jsonl'), 'garbage\n');
    const child = spawn(process.execPath, [cliPath], { env: { PATH: process.env.PATH, TASKD_PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    const file = path.join(dir, 'state', 'journal.jsonl');
    expect(stderr).toBe(`aegir-taskd: could not start: ${file} line 1 is not a journal record (Unexpected token 'g', "garbage" is not valid JSON); move it aside (mv ${file} ${file}.bad) to start with an empty queue, then check what it held\n`);
  });
});

describe('one service per state folder', () => {
  it('refuses to start a second service on a state folder a live one uses, and takes over a stale lock', async () => {
    const { env, dir } = await noFrontendEnv();
    const first = track(await startService(env));
    const second = spawn(process.execPath, [cliPath], { env: { PATH: process.env.PATH, TASKD_PORT: '0', ...env, TASKD_LOG_DIR: path.join(dir, 'other-logs') }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    second.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    expect(await new Promise((resolve) => second.on('exit', resolve))).toBe(1);
    expect(stderr).toBe(`aegir-taskd: could not start: another aegir-taskd (pid ${first.child.pid}) uses the state folder ${path.join(dir, 'state')}; give each instance its own TASKD_STATE_DIR\n`);
    await kill(first);
    // SIGKILL left the lock behind; its process is gone, so the next start takes it over.
    track(await startService(env));
  });
});

describe('re-adoption asks Aegir', () => {
  it('leaves alone a live child whose nid Aegir does not show processing, and holds no lane for it', async () => {
    const sim = new FakeFrontend({ key: TEST_KEY });
    await sim.listen();
    cleanup.push(() => sim.close());
    const dir = await tempDir();
    const logDir = path.join(dir, 'logs');
    await fs.mkdir(logDir, { recursive: true, mode: 0o700 });
    // Another service's run files in a shared folder: a live process, nid 4242, which this Aegir has never heard of.
    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    cleanup.push(() => stranger.kill('SIGKILL'));
    await fs.writeFile(pidFilePath(logDir, 4242), `${stranger.pid} ${await readProcessStartTime(stranger.pid!)}`, { mode: 0o600 });
    await fs.writeFile(runFilePath(logDir, 4242), JSON.stringify({ nid: 4242, rid: 2, lane: 'rid:2', startedAt: Date.now() }), { mode: 0o600 });

    const s = track(await startService(serviceEnvFor(sim, logDir, { TASKD_ADMIN_TOKEN: ADMIN_TOKEN, TASKD_STATE_DIR: path.join(dir, 'state') })));
    sim.serviceUrl = s.url;
    expect((await call(`${s.url}/v1/tasks/4242`)).status).toBe(404);
    const real = await sim.addTask({ rid: 2, seconds: 0.1 });
    await waitFor(async () => (await call(`${s.url}/v1/tasks/${real.nid}`)).body.state === 'succeeded', { timeoutMs: 10_000, what: 'the real task of that site to run' });
    expect(s.logs.some((line) => line.includes('not adopting a live child: Aegir does not show its task processing'))).toBe(true);
    expect(stranger.exitCode).toBeNull();
  });
});
