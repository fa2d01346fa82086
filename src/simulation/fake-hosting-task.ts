#!/usr/bin/env node
/**
 * Behaves like `drush @hostmaster hosting-task NID` against the simulated frontend: refuses a task
 * that is not queued (exit 1, Aegir's message on stderr, before any log callback exists), marks it
 * processing, then writes every step as an entry of the task's log in Aegir ({hosting_task_log},
 * through _hosting_task_log()) and prints nothing of it: the real command prints its log only with
 * --debug. Only when the service started it (AEGIR_TASKD_NID set), hosting_taskd's drush pre-hook
 * tees each entry to stderr as "[type] message", as this does. At the end Aegir derives the status
 * from the revision's log (hosting_task_parse_log()); the exit code is 0 or 1 only and a warning
 * exits 0, as with the real command. "hang" never ends and "die" is killed half way, leaving the
 * task processing.
 */

const [nidArg] = process.argv.slice(2);
const base = process.env.AEGIR_SIM_URL;
const nid = Number(nidArg);
const teed = process.env.AEGIR_TASKD_NID === String(nid);

async function call(path: string, body: unknown = {}) {
  const response = await fetch(`${base}/_sim/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** drush_log() with DRUSH_LOG_CALLBACK set to _hosting_task_log(), wrapped by hosting_taskd when teed. */
async function log(type: string, message: string): Promise<void> {
  await call(`tasks/${nid}/log`, { type, message });
  if (teed) process.stderr.write(`[${type}] ${message}\n`);
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
  await log('notice', `Task starts processing: ${task.type} (nid ${nid})`);
  const steps = 4;
  for (let i = 1; i <= steps; i += 1) {
    await sleep(task.seconds / steps);
    await log('notice', `Running provision-${task.type}: step ${i} of ${steps}`);
    if (task.behaviour === 'die' && i === 2) {
      process.stderr.write('Segmentation fault\n');
      process.kill(process.pid, 'SIGKILL');
    }
  }
  if (task.behaviour === 'hang') {
    await log('notice', 'Waiting for a lock that never comes…');
    for (;;) await sleep(3600);
  }
  if (task.behaviour === 'warning') await log('warning', 'Could not clear the cache');
  if (task.behaviour === 'error') await log('error', 'Drush command terminated abnormally due to an unrecoverable error.');
  else await log('success', 'Command dispatched successfully');
  // The shutdown function: hosting_task_update_status() derives the status from the log.
  const finished = await call(`tasks/${nid}/finish`);
  return finished.body.status === 2 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  },
);
