import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminTokenFile } from './admin-token.js';
import { loadConfig, type Config } from './config.js';
import { handleSignals, startServer } from './server.js';
import { generateSecret } from './signature.js';
import { FakeFrontend } from './simulation/fake-frontend.js';

/**
 * Starts the service wired to a simulated Aegir (a fake frontend and a fake hosting-task), and
 * prints curl lines that queue tasks, so a newcomer sees the whole loop work in a minute.
 */
export async function runDemo(flags: Parameters<typeof loadConfig>[1]): Promise<void> {
  const secret = generateSecret();
  const sim = new FakeFrontend({ key: Buffer.from(secret.slice('whsec_'.length), 'base64') });
  await sim.listen();
  const fakeHostingTask = fileURLToPath(new URL('./simulation/fake-hosting-task.js', import.meta.url));
  const fakeHostingDispatch = fileURLToPath(new URL('./simulation/fake-hosting-dispatch.js', import.meta.url));
  // Hosting's other queues: cron due within seconds and every minute after, backups not today.
  const now = Math.floor(Date.now() / 1000);
  sim.state.addQueue({ name: 'cron', frequency: 60, last: now - 57 });
  sim.state.addQueue({ name: 'backup', frequency: 86_400, last: now });
  const config: Config = loadConfig(
    {
      TASKD_SECRET: secret,
      TASKD_FRONTEND_URL: sim.baseUrl,
      TASKD_COMMAND: JSON.stringify([process.execPath, fakeHostingTask, '{nid}']),
      TASKD_DISPATCH_COMMAND: JSON.stringify([process.execPath, fakeHostingDispatch]),
      TASKD_CONCURRENCY: '2',
      TASKD_RECONCILE_INTERVAL: '5',
      // Short enough to watch a timeout finish in Aegir, and an orphan be resolved.
      TASKD_TASK_TIMEOUT: '20',
      TASKD_KILL_GRACE: '2',
      TASKD_ORPHAN_GRACE: '30',
      TASKD_LOG_DIR: path.join(os.tmpdir(), `aegir-taskd-demo-${process.pid}`),
      TASKD_STATE_DIR: path.join(os.tmpdir(), `aegir-taskd-demo-state-${process.pid}`),
      TASKD_LOG_LEVEL: 'warn',
    },
    flags,
  );
  const server = await startServer(config, { env: { ...process.env, AEGIR_SIM_URL: sim.url } });
  sim.serviceUrl = server.address;
  // No token is configured, so the service made one; changes and task output need it, from loopback too.
  const auth = config.adminToken ? '' : ` -H "authorization: Bearer $(cat ${adminTokenFile(config.stateDir)})"`;
  const add = (body: string) => `curl -s -X POST ${sim.url}/_sim/tasks -H 'content-type: application/json' -d '${body}'`;
  process.stdout.write(
    [
      '',
      `aegir-taskd demo: the service listens on ${server.address}; a simulated Aegir frontend on ${sim.url}.`,
      'Paste these into another terminal.',
      '',
      '# Queue a verify task in the simulated Aegir: its hosting_taskd module sends the signed webhook, the task starts at once',
      add('{"rid":1,"type":"verify","seconds":3}'),
      '# Two more on the same site: they run one after the other; one on another site runs alongside',
      add('{"rid":1,"type":"backup"}') + ' ; ' + add('{"rid":1,"type":"verify"}') + ' ; ' + add('{"rid":2,"type":"install","seconds":2}'),
      '# A task whose webhook is lost: the reconciler finds it within 5 seconds',
      add('{"rid":3,"type":"verify","webhook":false}'),
      '# Outcomes come from Aegir, not the exit code: a warning exits 0 and still shows as warning',
      add('{"rid":4,"type":"migrate","behaviour":"warning"}') + ' ; ' + add('{"rid":5,"type":"delete","behaviour":"error"}'),
      '# A drush that dies half way would leave the task processing in Aegir: the service finishes it there as an error',
      add('{"rid":6,"type":"clone","behaviour":"die"}'),
      '# A drush that hangs is killed after TASKD_TASK_TIMEOUT (20 s here) and finished in Aegir with the reason in its log',
      add('{"rid":7,"type":"backup","behaviour":"hang"}'),
      '# Stop from Aegir\'s task page: hosting_taskd sends this signed request; as an operator, with the token:',
      add('{"rid":8,"type":"migrate","behaviour":"hang","nid":800}'),
      `curl -s -X POST ${server.address}/v1/tasks/800/stop${auth} -H 'content-type: application/json' -d '{"reason":"stopped by admin"}'`,
      `curl -s ${sim.url}/_sim/tasks/800      # status 2 (error), and "aegir-taskd: drush was stopped by admin" in its log`,
      "# Aegir's other queues: hosting-dispatch runs only when one is due (cron, every minute here), never idly",
      `curl -s ${sim.url}/_sim/queues         # the queues, their due times and every dispatch run`,
      '',
      '# Watch it live in a browser: sign in with the admin token' + (config.adminToken ? ' you set' : ` (in ${adminTokenFile(config.stateDir)})`),
      `${server.address}/ui`,
      '# Watch',
      `curl -s ${server.address}/v1/queue`,
      `curl -s '${server.address}/v1/tasks?limit=20'`,
      `curl -s ${server.address}/v1/tasks/100${auth}`,
      `curl -s -X POST ${server.address}/v1/queue/pause${auth} ; curl -s -X POST ${server.address}/v1/queue/resume${auth}`,
      `curl -s ${sim.url}/_sim/tasks          # the simulated hosting_task table`,
      '',
      'Ctrl-C stops the demo.',
      '',
    ].join('\n'),
  );
  handleSignals(server);
}
