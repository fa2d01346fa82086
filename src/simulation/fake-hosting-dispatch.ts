#!/usr/bin/env node
/**
 * Behaves like `drush @hostmaster hosting-dispatch` against the simulated frontend: each run is one
 * drush start, recorded by the frontend with whether the service started it (AEGIR_TASKD_DISPATCH)
 * and whether any of the service's secrets reached it; the due queues' `last` moves as their runs
 * would move it. Like the real command it runs a queue only when it is due, prints drush's lines and
 * exits 0 whether or not anything was due. "fail" exits 1 before dispatching (drush could not
 * bootstrap); "hang" never ends (a lock wait that does not).
 */
export {};

const base = process.env.AEGIR_SIM_URL;

const sleep = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

async function main(): Promise<number> {
  if (!base) {
    process.stderr.write('usage: AEGIR_SIM_URL=http://… fake-hosting-dispatch\n');
    return 1;
  }
  const flag = process.env.AEGIR_TASKD_DISPATCH;
  const response = await fetch(`${base}/_sim/dispatch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      pid: process.pid,
      byService: flag !== undefined && flag !== '' && flag !== '0',
      sawSecrets: process.env.TASKD_SECRET !== undefined || process.env.TASKD_ADMIN_TOKEN !== undefined,
    }),
  });
  const answer = (await response.json()) as { run: { behaviour: string }; messages: string[] };
  if (answer.run.behaviour === 'fail') {
    process.stderr.write('Drush was not able to start (bootstrap) the Drupal database.\n');
    return 1;
  }
  if (answer.run.behaviour === 'hang') {
    process.stdout.write('Dispatching queues.\nWaiting for the lock on the cron queue…\n');
    for (;;) await sleep(3600);
  }
  for (const line of answer.messages) process.stdout.write(`${line}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  },
);
