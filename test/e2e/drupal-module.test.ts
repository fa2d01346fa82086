import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { HttpFrontend } from '../../src/frontend.js';
import { ADMIN, TEST_KEY, TEST_SECRET, fixture, repoRoot, tempDir, testConfig, waitFor } from '../helpers.js';

const moduleTests = path.join(repoRoot, 'drupal-module', 'hosting_taskd', 'tests');
const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The module's real page callbacks, served by PHP's built-in server over the Drupal shim and a SQLite file. */
async function serveModule(db: string): Promise<string> {
  const port = await freePort();
  const php: ChildProcess = spawn('php', ['-S', `127.0.0.1:${port}`, path.join(moduleTests, 'serve.php')], {
    env: { ...process.env, HOSTING_TASKD_DB: db, HOSTING_TASKD_SECRET: TEST_SECRET },
    stdio: 'ignore',
  });
  cleanup.push(() => php.kill('SIGKILL'));
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/hosting/taskd/queue`).catch(() => null))?.status === 401, { what: 'php -S to answer' });
  return `${base}/hosting/taskd`;
}

/** hosting_add_task() through the module's real hooks and shutdown function; the webhook goes to serviceUrl. */
async function enqueue(db: string, serviceUrl: string, rid: number) {
  // Asynchronous: the service answering the webhook runs in this very process.
  const php = spawn('php', [path.join(moduleTests, 'enqueue.php')], {
    env: { ...process.env, HOSTING_TASKD_DB: db, HOSTING_TASKD_URL: serviceUrl, HOSTING_TASKD_SECRET: TEST_SECRET, HOSTING_TASKD_RID: String(rid) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  php.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const status = await new Promise<number | null>((resolve) => php.on('close', resolve));
  return { status, output: JSON.parse(stdout.trim()) as { task: { nid: number; rid: number }; webhooks: Array<{ code: number }> } };
}

/** A fresh SQLite Aegir served by the real module, and a service wired to it whose hosting-task ends with finalStatus. */
async function serviceOverModule(finalStatus: string, env: Record<string, string> = {}) {
  const db = path.join(await tempDir(), 'aegir.sqlite');
  const frontendUrl = await serveModule(db);
  const config = await testConfig({
    TASKD_SECRET: TEST_SECRET,
    TASKD_FRONTEND_URL: frontendUrl,
    TASKD_COMMAND: JSON.stringify(['php', fixture('sqlite-hosting-task.php'), '{nid}']),
    TASKD_RECONCILE_INTERVAL: '0.3',
    ...env,
  });
  const app: FastifyInstance = await buildApp({ config, defaultMetrics: false, env: { ...process.env, HOSTING_TASKD_DB: db, FINAL_STATUS: finalStatus } });
  cleanup.push(() => app.close());
  return { db, app };
}

describe('the hosting_taskd module and the service together', () => {
  it("takes the module's own answer for an unknown nid as 'no such task'", async () => {
    const db = path.join(await tempDir(), 'aegir.sqlite');
    const frontendUrl = await serveModule(db);
    const client = new HttpFrontend({ baseUrl: frontendUrl, key: TEST_KEY });
    cleanup.push(() => client.close());
    expect(await client.getTask(987_654)).toBeNull();
  });

  it('the module webhook runs the task, and the outcome comes back through the module task endpoint', { timeout: 100_000 }, async () => {
    expect(spawnSync('php', ['--version']).status, 'php must be installed: bash .ci/install-php').toBe(0);
    const { db, app } = await serviceOverModule('3');
    const serviceUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    const task = async (nid: number) => (await app.inject({ url: `/v1/tasks/${nid}`, headers: ADMIN })).json();

    const first = await enqueue(db, serviceUrl, 501);
    expect(first.status).toBe(0);
    expect(first.output.webhooks).toEqual([expect.objectContaining({ code: 202 })]);
    const nid = first.output.task.nid;
    // Generous waits: every step is a PHP process (the built-in server is one at a time), slow on a
    // loaded machine; one retry of the service (5 s) fits too. A timeout says where the task stood.
    const settled = async (n: number, what: string) =>
      waitFor(async () => (await task(n)).state === 'warning', { timeoutMs: 40_000, what }).catch(async (error: Error) => {
        throw new Error(`${error.message}; the task then: ${JSON.stringify(await task(n))}`);
      });
    await settled(nid, 'the warning outcome read through the module');
    expect(await task(nid)).toMatchObject({ rid: 501, lane: 'rid:501', source: 'webhook', aegirStatus: 3, outcomeConfirmed: true });

    // A webhook that never arrives: the reconciler reads the module's queue endpoint and runs it.
    const lost = await enqueue(db, `http://127.0.0.1:${await freePort()}`, 502);
    expect(lost.status).toBe(1);
    await settled(lost.output.task.nid, 'the reconciler to find the lost task');
    expect(await task(lost.output.task.nid)).toMatchObject({ source: 'reconcile', rid: 502 });
  });

  it('finishes a timed-out task in the real module: error in the task table, the reason in its log', async () => {
    const { db, app } = await serviceOverModule('hang', { TASKD_TASK_TIMEOUT: '1', TASKD_KILL_GRACE: '0.5' });
    const serviceUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    const { output } = await enqueue(db, serviceUrl, 503);
    const nid = output.task.nid;
    const row = () => {
      const read = spawnSync('php', ['-r', READ_TASK, db, String(nid)], { encoding: 'utf8' });
      return JSON.parse(read.stdout) as { task_status: number; vid: number; delta: number | null; log: Array<{ type: string; message: string }> };
    };
    await waitFor(() => row().task_status === 2, { timeoutMs: 15_000, what: 'the module to finish the task as an error' });
    const finished = row();
    expect(finished.log.at(-1)).toEqual({ type: 'error', message: 'aegir-taskd: drush was killed by SIGTERM after 1 s (TASKD_TASK_TIMEOUT)' });
    expect(finished.delta).not.toBeNull();
    await waitFor(async () => (await app.inject({ url: `/v1/tasks/${nid}`, headers: ADMIN })).json().aegirStatus === 2, { what: 'the service to record Aegir\'s status' });
    expect((await app.inject({ url: `/v1/tasks/${nid}`, headers: ADMIN })).json()).toMatchObject({ state: 'timed_out', aegirStatus: 2 });
  });
});

/** The live revision of a task and its log, straight from the SQLite copy of Aegir's tables. */
const READ_TASK = `
$pdo = new PDO('sqlite:' . $argv[1]);
$t = $pdo->prepare('SELECT t.task_status, t.vid, t.delta FROM node n INNER JOIN hosting_task t ON t.vid = n.vid WHERE n.nid = ?');
$t->execute(array((int) $argv[2]));
$task = $t->fetch(PDO::FETCH_ASSOC);
$log = $pdo->prepare('SELECT type, message FROM hosting_task_log WHERE vid = ? ORDER BY lid');
$log->execute(array($task['vid']));
echo json_encode(array('task_status' => (int) $task['task_status'], 'vid' => (int) $task['vid'], 'delta' => $task['delta'] === null ? null : (int) $task['delta'], 'log' => $log->fetchAll(PDO::FETCH_ASSOC)));
`;
