import { request } from 'undici';
import { collectGarbage, processTree, readCpuSeconds, readRssBytes, settle, startTaskd, startWebhook, sumOver, waitForIdleQueue, webhookHooks } from './services.mjs';
import { hexSignedTask, signedTask } from './signing.mjs';
import { sleep } from './stats.mjs';

const WEBHOOK_SECRET = 'bench-webhook-secret';
const cheapCommand = JSON.stringify(['true', '{nid}']);

/** CPU and RSS of running processes with their children, side by side over the same window so all see the same machine. */
async function watchIdle(pids, seconds) {
  // The children are listed once: a start process that ends in the window stops counting.
  const trees = pids.map(processTree);
  const cpuBefore = trees.map((tree) => sumOver(tree, readCpuSeconds));
  const rssMax = trees.map((tree) => sumOver(tree, readRssBytes));
  const startedAt = performance.now();
  for (let second = 0; second < seconds; second += 1) {
    await sleep(1000);
    trees.forEach((tree, i) => {
      rssMax[i] = Math.max(rssMax[i], sumOver(tree, readRssBytes));
    });
  }
  const elapsed = (performance.now() - startedAt) / 1000;
  return trees.map((tree, i) => ({
    cpuPercentOfCore: ((sumOver(tree, readCpuSeconds) - cpuBefore[i]) / elapsed) * 100,
    rssBytes: sumOver(tree, readRssBytes),
    rssMaxBytes: rssMax[i],
    ownRssBytes: readRssBytes(tree[0]),
    children: tree.length - 1,
  }));
}

/** The service as an operator would leave it: defaults apart from where it listens and what it runs. */
export async function measureIdle({ workDir, secret, seconds, settleSeconds, withWebhook }) {
  const taskd = await startTaskd({ workDir, name: 'idle-taskd', secret, settings: { TASKD_COMMAND: cheapCommand } });
  const webhook = withWebhook ? await startWebhook({ workDir, name: 'idle-webhook', hooks: webhookHooks({ secret: WEBHOOK_SECRET, argv: ['/bin/true'] }) }) : null;
  try {
    // Start-up is not idling: V8 is still compiling and, some seconds in, shrinks its heap with a few
    // full collections. That work is measured apart, and the idle window opens after it.
    const startupCpu = readCpuSeconds(taskd.pid);
    await settle(settleSeconds * 1000);
    const settlingCpu = readCpuSeconds(taskd.pid) - startupCpu;
    const [taskdIdle, webhookIdle] = await watchIdle(webhook ? [taskd.pid, webhook.pid] : [taskd.pid], seconds);
    return { taskd: { ...taskdIdle, startupCpu, settlingCpu }, webhook: webhookIdle ?? null, settleSeconds };
  } finally {
    await taskd.stop();
    await webhook?.stop();
  }
}

/** Keeps `inFlight` requests going until `total` have been answered. */
async function sendAll({ total, inFlight, post }) {
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next;
      next += 1;
      await post(i);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

async function post(url, { body, headers }, expectedStatus) {
  const response = await request(url, { method: 'POST', body, headers });
  await response.body.dump();
  if (response.statusCode !== expectedStatus) throw new Error(`POST ${url} answered ${response.statusCode}, expected ${expectedStatus}`);
}

/** RSS as found, then RSS and live JS heap after a full garbage collection. */
async function memoryOf(service) {
  const rss = readRssBytes(service.pid);
  const usage = await collectGarbage(service);
  await settle(500);
  return { rss, rssAfterGc: readRssBytes(service.pid), heapUsed: usage.heapUsed };
}

/**
 * Memory after a warm-up round (JIT, heap sizing, history filled) against memory after `tasks` more,
 * each started and ended; growth between the two is what a long-running service keeps on gaining.
 * Read both as found and after a forced full GC: only the second says whether anything is kept.
 */
export async function measureTaskdLeak({ workDir, secret, key, tasks, warmupTasks }) {
  const service = await startTaskd({
    workDir,
    name: 'leak-taskd',
    secret,
    inspect: true,
    settings: { TASKD_COMMAND: cheapCommand, TASKD_CONCURRENCY: '64', TASKD_RATE_LIMIT: '0' },
  });
  const url = `${service.url}/v1/tasks`;
  const round = async (firstNid, count) => {
    await sendAll({ total: count, inFlight: 16, post: (i) => post(url, signedTask(key, firstNid + i, firstNid + i), 202) });
    await waitForIdleQueue(service, 300_000);
    await settle(2000);
  };
  try {
    await settle(2000);
    const start = readRssBytes(service.pid);
    await round(1, warmupTasks);
    const before = await memoryOf(service);
    const startedAt = performance.now();
    await round(1_000_000, tasks);
    const seconds = (performance.now() - startedAt) / 1000 - 2;
    const after = await memoryOf(service);
    return {
      rssStart: start,
      before,
      after,
      growth: after.rssAfterGc - before.rssAfterGc,
      growthAsFound: after.rss - before.rss,
      heapGrowth: after.heapUsed - before.heapUsed,
      tasksPerSecond: tasks / seconds,
    };
  } finally {
    await service.stop();
  }
}

/** The same rounds against adnanh/webhook, which runs each command as it accepts the request. */
export async function measureWebhookLeak({ workDir, tasks, warmupTasks }) {
  const service = await startWebhook({ workDir, name: 'leak-webhook', hooks: webhookHooks({ secret: WEBHOOK_SECRET, argv: ['/bin/true'] }) });
  const round = async (firstNid, count) => {
    await sendAll({ total: count, inFlight: 16, post: (i) => post(service.hookUrl, hexSignedTask(WEBHOOK_SECRET, firstNid + i, firstNid + i), 200) });
    await settle(2000);
  };
  try {
    await settle(2000);
    const rssStart = readRssBytes(service.pid);
    await round(1, warmupTasks);
    const rssBefore = readRssBytes(service.pid);
    await round(1_000_000, tasks);
    const rssAfter = readRssBytes(service.pid);
    return { rssStart, rssBefore, rssAfter, growthAsFound: rssAfter - rssBefore };
  } finally {
    await service.stop();
  }
}
