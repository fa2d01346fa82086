import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN, TEST_SECRET, fixture, readRecords, signedHeaders, tempDir, testApp, waitFor } from '../helpers.js';
import { FLOOD, SEED, printSummaryAfterAll, random, seconds, summary } from './chaos.js';
import { groupBy, intervals, peakOverlap } from '../intervals.js';

printSummaryAfterAll();

const CONCURRENCY = 8;
const apps: FastifyInstance[] = [];
const agents: Agent[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  for (const agent of agents.splice(0)) await agent.close();
});

async function floodedService() {
  const recordFile = path.join(await tempDir('taskd-chaos-flood-'), 'records');
  const { app } = await testApp(
    {
      TASKD_SECRET: TEST_SECRET,
      TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']),
      TASKD_CONCURRENCY: String(CONCURRENCY),
      // The flood is the test: the per-client limit (its own defence) would refuse part of it.
      TASKD_RATE_LIMIT: '0',
      TASKD_HISTORY_SIZE: String(10 * FLOOD),
    },
    { env: { ...process.env, RECORD_FILE: recordFile, SLEEP_SECONDS: '0' } },
  );
  apps.push(app);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  // Many connections at once, as a burst from a busy frontend would open.
  const agent = new Agent({ connections: 64 });
  agents.push(agent);
  const post = async (body: string, headers: Record<string, string>) => {
    const response = await request(`${url}/v1/tasks`, { method: 'POST', body, headers, dispatcher: agent });
    return { status: response.statusCode, body: (await response.body.json()) as { nid: number; duplicate?: boolean } };
  };
  const idle = () =>
    waitFor(async () => {
      const queue = (await app.inject({ url: '/v1/queue' })).json();
      return queue.depth === 0 && queue.starting === 0 && queue.running === 0;
    }, { timeoutMs: 240_000, intervalMs: 50, what: 'the queue to drain' });
  return { app, url, post, idle, records: () => readRecords(recordFile) };
}

function shuffle<T>(list: T[], rand: () => number): T[] {
  for (let i = list.length - 1; i > 0; i -= 1) {
    const j = Math.floor(rand() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

const countBy = <T>(list: T[], key: (x: T) => string) => Object.fromEntries([...groupBy(list, key)].map(([k, v]) => [k, v.length]));

describe('webhook floods', () => {
  it(`runs each of ${FLOOD} webhooks for one lane and ${FLOOD} over 100 lanes once, sent in one burst with every one replayed, one task a lane and at most ${CONCURRENCY} at once`, async () => {
    const began = Date.now();
    const rand = random(SEED);
    const { post, idle, records } = await floodedService();
    const laneOf = new Map<number, number>();
    for (let i = 1; i <= FLOOD; i += 1) laneOf.set(i, 1);
    for (let i = 1; i <= FLOOD; i += 1) laneOf.set(FLOOD + i, 1000 + (i % 100));
    const sends: Array<{ body: string; headers: Record<string, string> }> = [];
    for (const [nid, rid] of laneOf) {
      const body = JSON.stringify({ nid, rid, type: 'verify' });
      const headers = signedHeaders(body);
      // The same bytes and webhook-id twice: a replay racing its original.
      sends.push({ body, headers }, { body, headers });
    }
    const answers = await Promise.all(shuffle(sends, rand).map((s) => post(s.body, s.headers)));
    await idle();
    const runs = intervals(await records());
    const startsPerNid = groupBy(runs, (r) => r.nid);
    const ranTwice = [...startsPerNid].filter(([, list]) => list.length > 1).map(([nid]) => nid);
    const neverRan = [...laneOf.keys()].filter((nid) => !startsPerNid.has(nid));
    const laneOverlaps = [...groupBy(runs, (r) => laneOf.get(r.nid)!).values()].filter((list) => peakOverlap(list) > 1).length;
    const peak = peakOverlap(runs);
    const byStatus = countBy(answers, (a) => `${a.status}${a.body.duplicate ? ' duplicate' : ''}`);
    summary(
      `flood: webhooks ${sends.length} (${laneOf.size} tasks, 101 lanes, every one replayed), answers ${JSON.stringify(byStatus)}, ` +
        `runs ${runs.length}, ran twice ${ranTwice.length}, never ran ${neverRan.length}, lane overlaps ${laneOverlaps}, peak running ${peak}/${CONCURRENCY}, ${seconds(began)} s`,
    );
    expect(byStatus).toEqual({ '202': laneOf.size, '200 duplicate': laneOf.size });
    expect(ranTwice).toEqual([]);
    expect(neverRan).toEqual([]);
    expect(runs.length).toBe(laneOf.size);
    expect(laneOverlaps).toBe(0);
    expect(peak).toBeLessThanOrEqual(CONCURRENCY);
    // Otherwise the burst never tested the limit at all.
    expect(peak).toBeGreaterThan(1);
  });

  it('answers duplicates with fresh webhook-ids for queued nids as duplicates, runs each nid once, and each lane oldest first', async () => {
    const began = Date.now();
    const rand = random(SEED + 1);
    const { app, post, idle, records } = await floodedService();
    expect((await app.inject({ method: 'POST', url: '/v1/queue/pause', headers: ADMIN })).json()).toEqual({ paused: true });
    const tasks = Array.from({ length: Math.max(10, Math.floor(FLOOD / 2)) }, (_, i) => ({ nid: 50_000 + i, rid: 1 + (i % 10), changed: 1_764_300_000 + Math.floor(rand() * 1000) }));
    const sends = tasks.flatMap((t) => {
      const body = JSON.stringify(t);
      // Each copy signed anew: the replay cache cannot catch them, only the nid dedupe can.
      return Array.from({ length: 2 + Math.floor(rand() * 3) }, () => ({ body, headers: signedHeaders(body) }));
    });
    const answers = await Promise.all(shuffle(sends, rand).map((s) => post(s.body, s.headers)));
    expect((await app.inject({ method: 'POST', url: '/v1/queue/resume', headers: ADMIN })).json()).toEqual({ paused: false });
    await idle();
    const runs = intervals(await records());
    const byStatus = countBy(answers, (a) => `${a.status}${a.body.duplicate ? ' duplicate' : ''}`);
    const ridOf = new Map(tasks.map((t) => [t.nid, t]));
    const outOfOrder = [...groupBy(runs, (r) => ridOf.get(r.nid)!.rid).values()].filter((lane) => {
      const order = lane.map((r) => r.nid);
      const expected = [...order].sort((a, b) => ridOf.get(a)!.changed - ridOf.get(b)!.changed || a - b);
      return JSON.stringify(order) !== JSON.stringify(expected);
    }).length;
    const laneOverlaps = [...groupBy(runs, (r) => ridOf.get(r.nid)!.rid).values()].filter((list) => peakOverlap(list) > 1).length;
    summary(
      `duplicates: webhooks ${sends.length} for ${tasks.length} queued tasks, answers ${JSON.stringify(byStatus)}, runs ${runs.length}, ` +
        `lanes out of order ${outOfOrder}, lane overlaps ${laneOverlaps}, peak running ${peakOverlap(runs)}/${CONCURRENCY}, ${seconds(began)} s`,
    );
    expect(byStatus).toEqual({ '202': tasks.length, '200 duplicate': sends.length - tasks.length });
    expect(runs.map((r) => r.nid).sort((a, b) => a - b)).toEqual(tasks.map((t) => t.nid));
    expect(outOfOrder).toBe(0);
    expect(laneOverlaps).toBe(0);
    expect(peakOverlap(runs)).toBeLessThanOrEqual(CONCURRENCY);
  });
});
