#!/usr/bin/env node
/**
 * Behaves like `drush @hostmaster hosting-task NID` against the simulated frontend: refuses a task
 * that is not queued (exit 1, Aegir's message), marks it processing, works for a while printing
 * like drush does, then writes the final status. Its exit code is 0 or 1 only, and a warning exits 0,
 * as with the real command; "hang" never ends and "die" exits half way, leaving the task processing.
 */
import { AegirStatus } from '../frontend.js';

const [nidArg] = process.argv.slice(2);
const base = process.env.AEGIR_SIM_URL;
const nid = Number(nidArg);

async function call(path: string, body: unknown = {}) {
  const response = await fetch(`${base}/_sim/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const sleep = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

async function main(): Promise<number> {
  if (!base || !Number.isSafeInteger(nid) || nid <= 0) {
    process.stderr.write('usage: AEGIR_SIM_URL=http://… fake-hosting-task NID\n');
    return 1;
  }
  const lookup = await fetch(`${base}/_sim/tasks/${nid}`);
  const found = lookup.status === 200 ? ((await lookup.json()) as { behaviour: string }) : null;
  if (found?.behaviour === 'leave-queued') {
    // Fails before it claims the task (as when drush cannot bootstrap the site): the row stays queued.
    process.stderr.write('Drush was not able to start (bootstrap) the Drupal database.\n');
    return 1;
  }
  const claim = await call(`tasks/${nid}/claim`);
  if (claim.status !== 200) {
    process.stderr.write(`${String(claim.body.message)}\n`);
    return 1;
  }
  const task = claim.body as { type: string; behaviour: string; seconds: number };
  process.stdout.write(`Task starts processing: ${task.type} (nid ${nid})\n`);
  const steps = 4;
  for (let i = 1; i <= steps; i += 1) {
    await sleep(task.seconds / steps);
    process.stdout.write(`Running provision-${task.type}: step ${i} of ${steps}\n`);
    if (task.behaviour === 'die' && i === 2) {
      process.stderr.write('Segmentation fault\n');
      process.kill(process.pid, 'SIGKILL');
    }
  }
  if (task.behaviour === 'hang') {
    process.stdout.write('Waiting for a lock that never comes…\n');
    for (;;) await sleep(3600);
  }
  switch (task.behaviour) {
    case 'success':
      await call(`tasks/${nid}/finish`, { status: AegirStatus.success });
      process.stdout.write('Command dispatched successfully\n');
      return 0;
    case 'warning':
      await call(`tasks/${nid}/finish`, { status: AegirStatus.warning });
      process.stdout.write('[warning] Could not clear the cache\n');
      return 0;
    default:
      await call(`tasks/${nid}/finish`, { status: AegirStatus.error });
      process.stderr.write('[error] Drush command terminated abnormally due to an unrecoverable error.\n');
      return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  },
);
