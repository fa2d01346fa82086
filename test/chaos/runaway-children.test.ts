import fs from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN, TEST_SECRET, fixture, signedHeaders, tempDir, waitFor } from '../helpers.js';
import { startService, type ServiceProcess } from '../e2e/service-process.js';
import { isRunningProcess, printSummaryAfterAll, rssKiB, seconds, summary } from './chaos.js';

printSummaryAfterAll();

const running: ServiceProcess[] = [];
const leftovers: number[] = [];
afterEach(() => {
  for (const s of running.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  // A hung tree whose service is gone is nobody's to time out: end each whole group, not only its leader.
  for (const pid of leftovers.splice(0)) {
    // 0 or a negative number would signal the test's own process group.
    if (!Number.isSafeInteger(pid) || pid <= 1) continue;
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        /* gone, or not a group leader */
      }
    }
  }
});

async function service(env: Record<string, string>) {
  const s = await startService({ TASKD_SECRET: TEST_SECRET, TASKD_RATE_LIMIT: '0', ...env });
  running.push(s);
  return s;
}

async function postSigned(url: string, task: Record<string, unknown>) {
  const body = JSON.stringify(task);
  const response = await request(`${url}/v1/tasks`, { method: 'POST', body, headers: signedHeaders(body) });
  await response.body.dump();
  return response.statusCode;
}

const getJson = async (url: string) => (await (await request(url, { headers: ADMIN })).body.json()) as Record<string, unknown>;

/** Processes still able to run whose process group is pgid (zombies have nothing left to run). */
async function liveGroupMembers(pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await fs.readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] !== undefined && fields[0] !== 'Z' && Number(fields[2]) === pgid) out.push(Number(name));
  }
  return out;
}

const MiB = 1024 * 1024;

describe('runaway children', () => {
  it('kills every process of hung task trees on timeout, even those that ignore SIGTERM, and frees their lanes', async () => {
    const began = Date.now();
    const dir = await tempDir('taskd-chaos-hung-');
    const tasks = 4;
    const s = await service({
      TASKD_LOG_DIR: dir,
      TASKD_COMMAND: JSON.stringify([fixture('chaos-hung-tree.sh'), '{nid}']),
      TASKD_TASK_TIMEOUT: '0.5',
      TASKD_KILL_GRACE: '0.3',
      TASKD_CONCURRENCY: String(tasks),
      PID_DIR: dir,
    });
    const nids = Array.from({ length: tasks }, (_, i) => 7001 + i);
    for (const nid of nids) expect(await postSigned(s.url, { nid, rid: nid })).toBe(202);
    // Leader, the two TERM-ignoring descendants and the plain child: four shells a tree.
    const trees = await waitFor(
      async () => {
        const lists = await Promise.all(nids.map(async (nid) => (await fs.readFile(path.join(dir, `${nid}.pids`), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map(Number)));
        return lists.every((l) => l.length === 4) ? lists : null;
      },
      { what: 'every tree to be up' },
    );
    const all = trees.flat();
    leftovers.push(...all);
    expect((await Promise.all(all.map(isRunningProcess))).every(Boolean)).toBe(true);
    for (const nid of nids) {
      await waitFor(async () => (await getJson(`${s.url}/v1/tasks/${nid}`)).state === 'timed_out', { timeoutMs: 20_000, what: `task ${nid} to time out` });
    }
    const survivors = (await Promise.all(all.map(async (pid) => ((await isRunningProcess(pid)) ? pid : null)))).filter((p) => p !== null);
    const groupSurvivors = (await Promise.all(trees.map((t) => liveGroupMembers(t[0]!)))).flat();
    // A lane freed by the kill runs its next task.
    expect(await postSigned(s.url, { nid: 7101, rid: nids[0] })).toBe(202);
    // Its tree writes its leader's pid first: that is the group to end after the test.
    const nextLeader = await waitFor(async () => Number((await fs.readFile(path.join(dir, '7101.pids'), 'utf8').catch(() => '')).split('\n')[0]), {
      what: 'the next task of a freed lane to start',
    });
    leftovers.push(nextLeader);
    expect((await getJson(`${s.url}/v1/tasks/7101`)).state).toBe('running');
    summary(`hung trees: trees ${tasks}, processes ${all.length}, survivors ${survivors.length + groupSurvivors.length}, ${seconds(began)} s`);
    expect(survivors).toEqual([]);
    expect(groupSurvivors).toEqual([]);
  });

  it('keeps its memory bounded while a child prints 100 MB, while the output is followed live, and while the whole log is read', async () => {
    const began = Date.now();
    const dir = await tempDir('taskd-chaos-print-');
    const bytes = 100 * 1024 * 1024;
    const s = await service({ TASKD_LOG_DIR: dir, TASKD_COMMAND: JSON.stringify([fixture('chaos-print-flood.sh'), '{nid}']), BYTES: String(bytes) });
    const pid = s.child.pid!;
    // Settle first: the first requests load code and fill caches, which is not what is measured.
    for (let i = 0; i < 20; i += 1) await getJson(`${s.url}/v1/queue`);
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await rssKiB(pid));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const phase = async (work: () => Promise<void>) => {
      const before = await rssKiB(pid);
      peak = before;
      await work();
      return (peak - before) / 1024;
    };
    const ended = (nid: number) =>
      waitFor(async () => {
        const t = await getJson(`${s.url}/v1/tasks/${nid}`);
        return t.state === 'succeeded' ? t : null;
      }, { timeoutMs: 120_000, intervalMs: 200, what: `task ${nid} to end` });
    const drain = async (url: string) => {
      let total = 0;
      for await (const chunk of (await request(url, { headers: ADMIN })).body) total += (chunk as Buffer).length;
      return total;
    };

    // Nobody reads: the output goes from the child straight into the file.
    let quiet: Record<string, unknown> = {};
    const printing = await phase(async () => {
      expect(await postSigned(s.url, { nid: 8001, rid: 1 })).toBe(202);
      quiet = await ended(8001);
    });
    // A live follower reads while the child writes: the service feeds it from the file, a chunk at a time.
    let followed = 0;
    const following = await phase(async () => {
      expect(await postSigned(s.url, { nid: 8002, rid: 1 })).toBe(202);
      await waitFor(async () => (await getJson(`${s.url}/v1/tasks/8002`)).state !== 'queued', { what: 'task 8002 to start' });
      followed = await drain(`${s.url}/v1/tasks/8002/log?follow=1`);
      await ended(8002);
    });
    let read = 0;
    const reading = await phase(async () => {
      read = await drain(`${s.url}/v1/tasks/8001/log`);
    });
    sampling = false;
    await sampler;
    const size = (await fs.stat(path.join(dir, '8001.log'))).size;
    const followedSize = (await fs.stat(path.join(dir, '8002.log'))).size;

    summary(
      `loud children: 2 x ${(bytes / MiB).toFixed(0)} MiB printed; service RSS growth while printing ${printing.toFixed(1)} MiB, ` +
        `while followed live ${following.toFixed(1)} MiB (${(followed / MiB).toFixed(1)} MiB sent), while read back ${reading.toFixed(1)} MiB (${(read / MiB).toFixed(1)} MiB sent), ${seconds(began)} s`,
    );
    expect(size).toBeGreaterThan(bytes);
    expect(followed).toBe(followedSize);
    expect(read).toBe(size);
    // The API shows the tail only.
    expect((quiet.output as string).length).toBeLessThanOrEqual(262_144);
    expect(quiet.outputTruncated).toBe(true);
    expect(printing).toBeLessThan(16);
    expect(following).toBeLessThan(64);
    expect(reading).toBeLessThan(64);
  });
});
