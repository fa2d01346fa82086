// Server CPU per signed intake request at a fixed rate below saturation, for aegir-taskd (paused
// queue, as in the throughput rows) and the bare fastify route. Steadier than requests per second
// when the client shares the cores, so it is what A/B comparisons of a change were made with.
//   npm run build && node bench/intake-cpu.mjs [requests per second] [requests]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { pauseQueue, readCpuSeconds, startBareFastify, startTaskd } from './services.mjs';
import { makeSecret } from './signing.mjs';
import { newNidPool } from './throughput.mjs';

const rate = Number(process.argv[2]) || 12_000;
const total = Number(process.argv[3]) || 60_000;
const warmup = 20_000;

async function cpuPerRequest(service, pool) {
  let next = 0;
  const run = (amount) =>
    autocannon({
      url: `${service.url}/v1/tasks`,
      connections: 16,
      amount,
      overallRate: rate,
      requests: [{ method: 'POST', setupRequest: (request) => ({ ...request, ...pool[next++] }) }],
    });
  await run(warmup);
  const before = readCpuSeconds(service.pid);
  const result = await run(total);
  const cpu = readCpuSeconds(service.pid) - before;
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`unexpected answers: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return (cpu * 1e6) / result.requests.total;
}

/** A paused service with these settings, its CPU per request, and stopped. */
async function taskdCpu({ workDir, name, secret, pool, settings = {} }) {
  const taskd = await startTaskd({ workDir, name, secret, settings: { TASKD_RATE_LIMIT: '0', TASKD_COMMAND: JSON.stringify(['true', '{nid}']), ...settings } });
  try {
    await pauseQueue(taskd);
    return await cpuPerRequest(taskd, pool);
  } finally {
    await taskd.stop();
  }
}

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'aegir-taskd-intake-cpu-'));
try {
  const { secret, key } = makeSecret();
  const pool = () => newNidPool(key, warmup + total, 1);
  // Journal on (the default), then off: what the journal costs the intake, beside the bare route.
  const ours = await taskdCpu({ workDir, name: 'intake-cpu', secret, pool: pool() });
  const noJournal = await taskdCpu({ workDir, name: 'intake-cpu-no-journal', secret, pool: pool(), settings: { TASKD_JOURNAL: 'off' } });
  const bare = await startBareFastify({ workDir });
  let theirs;
  try {
    theirs = await cpuPerRequest(bare, pool());
  } finally {
    await bare.stop();
  }
  console.log(
    `server CPU per signed request at ${rate}/s over ${total} requests: aegir-taskd ${ours.toFixed(1)} µs (journal off: ${noJournal.toFixed(1)} µs), bare fastify ${theirs.toFixed(1)} µs`,
  );
} finally {
  fs.rmSync(workDir, { recursive: true, force: true });
}
