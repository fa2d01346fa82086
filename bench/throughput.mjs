import autocannon from 'autocannon';
import { pauseQueue, readCpuSeconds, readQueue, startBareFastify, startTaskd, startWebhook, webhookHooks } from './services.mjs';
import { hexSignedTask, signedTask } from './signing.mjs';

const CONNECTIONS = 16;

/**
 * Every request is signed before the run starts, so the client spends its time sending, not hashing.
 * A pool that runs dry stops the run early rather than repeat a webhook-id (a repeat is a replay,
 * a different and cheaper path in the service).
 */
function pooledRequests(pool) {
  let next = 0;
  let instance = null;
  const requests = [
    {
      method: 'POST',
      setupRequest: (request) => {
        const entry = pool[next];
        next += 1;
        if (entry === undefined) {
          instance?.stop();
          return { ...request, ...pool[pool.length - 1] };
        }
        return { ...request, body: entry.body, headers: entry.headers };
      },
    },
  ];
  return {
    requests,
    attach: (running) => {
      instance = running;
    },
    exhausted: () => next > pool.length,
  };
}

/**
 * A timed run (seconds) or a counted one (amount); `pid` adds the server's CPU use over the run.
 * autocannon only notices the end of a run on its once-a-second tick, so the time to the last
 * answer is taken from its response events instead.
 */
export async function runAutocannon({ url, pool, seconds, amount, pid }) {
  const source = pooledRequests(pool);
  const cpuBefore = pid ? readCpuSeconds(pid) : NaN;
  const length = amount === undefined ? { duration: seconds } : { amount };
  const startedAt = performance.now();
  let answered = 0;
  let lastAnswerAt = startedAt;
  const running = autocannon({ url, connections: CONNECTIONS, pipelining: 1, ...length, requests: source.requests, timeout: 10 });
  running.on('response', () => {
    answered += 1;
    lastAnswerAt = performance.now();
  });
  source.attach(running);
  const result = await running;
  if (result.requests.total === 0) throw new Error(`no answer from ${url} (${result.errors} errors)`);
  const serverCpu = pid ? (readCpuSeconds(pid) - cpuBefore) / result.duration : NaN;
  const statusCounts = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, Number(count)]));
  return {
    requestsPerSecond: result.requests.total / result.duration,
    total: result.requests.total,
    seconds: result.duration,
    statusCounts,
    errors: result.errors + result.timeouts,
    latencyP99Ms: result.latency.p99,
    poolExhausted: source.exhausted(),
    serverCpu,
    answered,
    secondsToLastAnswer: (lastAnswerAt - startedAt) / 1000,
  };
}

/** Enough requests for the run at a rate above anything seen here (bare fastify: about 55,000/s), the same for every server, so no pool runs dry. */
function poolSize(seconds, ceilingPerSecond = 60_000) {
  return Math.ceil(seconds * ceilingPerSecond);
}

/** Distinct nids spread round-robin over `lanes` rids. */
export function newNidPool(key, size, firstNid, lanes = 10_000) {
  const pool = new Array(size);
  for (let i = 0; i < size; i += 1) pool[i] = signedTask(key, firstNid + i, 1 + ((firstNid + i) % lanes));
  return pool;
}

/** The same few nids over and over, each request with its own webhook-id: Aegir re-sending a task it already sent. */
function duplicatePool(key, size, nids) {
  const pool = new Array(size);
  for (let i = 0; i < size; i += 1) pool[i] = signedTask(key, nids[i % nids.length], nids[i % nids.length]);
  return pool;
}

function unexpectedStatuses(run, expected) {
  return Object.entries(run.statusCounts)
    .filter(([code]) => code !== String(expected))
    .reduce((sum, [, count]) => sum + count, 0);
}

/** A fresh, paused service per run: intake alone is measured, and no run inherits another's queue. */
async function withPausedTaskd({ workDir, name, secret, settings = {} }, use) {
  const service = await startTaskd({ workDir, name, secret, settings: { TASKD_RATE_LIMIT: '0', TASKD_COMMAND: JSON.stringify(['true', '{nid}']), ...settings } });
  try {
    await pauseQueue(service);
    return await use(service);
  } finally {
    await service.stop();
  }
}

/** settings: extra TASKD_* settings, e.g. TASKD_JOURNAL=off to measure the same build without its journal. */
export async function measureTaskdNewNids({ workDir, secret, key, seconds, warmupSeconds, settings = {} }) {
  return withPausedTaskd({ workDir, name: `intake-new${settings.TASKD_JOURNAL === 'off' ? '-no-journal' : ''}`, secret, settings }, async (service) => {
    const url = `${service.url}/v1/tasks`;
    await runAutocannon({ url, pool: newNidPool(key, poolSize(warmupSeconds), 1), seconds: warmupSeconds });
    const run = await runAutocannon({ url, pool: newNidPool(key, poolSize(seconds), 10_000_000), seconds, pid: service.pid });
    const queue = await readQueue(service);
    return { ...run, unexpected: unexpectedStatuses(run, 202) + run.errors, queued: queue.depth };
  });
}

export async function measureTaskdDuplicates({ workDir, secret, key, seconds, warmupSeconds }) {
  return withPausedTaskd({ workDir, name: 'intake-duplicates', secret }, async (service) => {
    const url = `${service.url}/v1/tasks`;
    const nids = Array.from({ length: 1000 }, (_, i) => 1 + i);
    const first = await runAutocannon({ url, pool: nids.map((nid) => signedTask(key, nid, nid)), seconds: 30 });
    if (first.statusCounts['202'] !== nids.length) throw new Error(`could not queue the nids to duplicate: ${JSON.stringify(first.statusCounts)}`);
    await runAutocannon({ url, pool: duplicatePool(key, poolSize(warmupSeconds), nids), seconds: warmupSeconds });
    const run = await runAutocannon({ url, pool: duplicatePool(key, poolSize(seconds), nids), seconds, pid: service.pid });
    return { ...run, unexpected: unexpectedStatuses(run, 200) + run.errors };
  });
}

export async function measureBareFastify({ workDir, key, seconds, warmupSeconds }) {
  const service = await startBareFastify({ workDir });
  try {
    const url = `${service.url}/v1/tasks`;
    await runAutocannon({ url, pool: newNidPool(key, poolSize(warmupSeconds), 1), seconds: warmupSeconds });
    const run = await runAutocannon({ url, pool: newNidPool(key, poolSize(seconds), 10_000_000), seconds, pid: service.pid });
    return { ...run, unexpected: unexpectedStatuses(run, 202) + run.errors };
  } finally {
    await service.stop();
  }
}

/** adnanh/webhook has no queue to pause: every accepted request runs its command (`true` here) at once. */
export async function measureWebhookIntake({ workDir, seconds, warmupSeconds }) {
  const hmacSecret = 'bench-webhook-secret';
  const service = await startWebhook({ workDir, name: 'intake-webhook', hooks: webhookHooks({ secret: hmacSecret, argv: ['/bin/true'] }) });
  try {
    const pool = (size, first) => Array.from({ length: size }, (_, i) => hexSignedTask(hmacSecret, first + i, first + i));
    await runAutocannon({ url: service.hookUrl, pool: pool(poolSize(warmupSeconds, 10_000), 1), seconds: warmupSeconds });
    const run = await runAutocannon({ url: service.hookUrl, pool: pool(poolSize(seconds, 10_000), 10_000_000), seconds, pid: service.pid });
    return { ...run, unexpected: unexpectedStatuses(run, 200) + run.errors };
  } finally {
    await service.stop();
  }
}
