import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, TEST_SECRET, signedHeaders, waitFor } from '../helpers.js';
import { parseSecret, sign } from '../../src/signature.js';
import { ACTIVE_STATES } from '../../src/task.js';
import { body, post, useRouteApps } from './route-apps.js';

const intakeApp = useRouteApps();

describe('POST /v1/tasks', () => {
  it('returns 202 for a signed webhook and runs the task with its nid', async () => {
    const { app, records } = await intakeApp();
    const payload = body({ nid: 123, rid: 45, type: 'verify', vid: 456, changed: 1764300000 });
    const response = await post(app, payload, signedHeaders(payload));
    expect(response.statusCode).toBe(202);
    expect(response.json()).toMatchObject({ nid: 123 });
    expect(ACTIVE_STATES).toContain(response.json().state);
    await waitFor(async () => (await records()).length === 2);
    expect((await records()).map((r) => r.nid)).toEqual([123, 123]);
  });

  it('returns 200 with duplicate: true when the nid is already queued or running', async () => {
    const { app } = await intakeApp();
    const payload = body({ nid: 7, rid: 1 });
    expect((await post(app, payload, signedHeaders(payload))).statusCode).toBe(202);
    const again = await post(app, payload, signedHeaders(payload));
    expect(again.statusCode).toBe(200);
    expect(again.json()).toEqual({ nid: 7, state: 'running', duplicate: true });
  });

  it('answers a replayed webhook-id with 200 duplicate and does nothing', async () => {
    const { app, records } = await intakeApp();
    const payload = body({ nid: 8, rid: 1 });
    const headers = signedHeaders(payload);
    expect((await post(app, payload, headers)).statusCode).toBe(202);
    await waitFor(() => app.taskd.scheduler.get(8)?.state === 'succeeded');
    const replay = await post(app, payload, headers);
    expect(replay.statusCode).toBe(200);
    expect(replay.json()).toEqual({ nid: 8, state: 'succeeded', duplicate: true });
    await new Promise((r) => setTimeout(r, 150));
    expect((await records()).length).toBe(2);
  });

  it('accepts a webhook signed with a second secret during rotation', async () => {
    const newSecret = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const { app } = await intakeApp({ TASKD_SECRET: `${newSecret} ${TEST_SECRET}` });
    const payload = body({ nid: 9 });
    expect((await post(app, payload, signedHeaders(payload))).statusCode).toBe(202);
    expect((await post(app, body({ nid: 10 }), signedHeaders(body({ nid: 10 }), { key: parseSecret(newSecret) }))).statusCode).toBe(202);
  });

  it('returns 400 naming the field and why, and runs nothing', async () => {
    const { app, records } = await intakeApp();
    const cases: Array<[unknown, RegExp]> = [
      [{}, /^body\.nid: /],
      [{ nid: 0 }, /^body\.nid: /],
      [{ nid: -5 }, /^body\.nid: /],
      [{ nid: 1.5 }, /^body\.nid: /],
      [{ nid: '12' }, /^body\.nid: /],
      [{ nid: 2 ** 40 }, /^body\.nid: /],
      [{ nid: 1, rid: 'x' }, /^body\.rid: /],
      [{ nid: 1, type: 'verify; rm -rf /' }, /^body\.type: expected a task type/],
      [{ nid: 1, changed: -1 }, /^body\.changed: /],
      [[1, 2], /^body: /],
    ];
    for (const [value, message] of cases) {
      const payload = body(value);
      const response = await post(app, payload, signedHeaders(payload));
      expect(response.statusCode, payload).toBe(400);
      expect(response.json().error).toBe('TASKD_ERR_INVALID_REQUEST');
      expect(response.json().message).toMatch(message);
    }
    const broken = '{"nid": 1';
    const response = await post(app, broken, signedHeaders(broken));
    expect(response.json()).toEqual({ error: 'TASKD_ERR_INVALID_JSON', message: 'The request body is not valid JSON.' });
    expect(await records()).toEqual([]);
  });

  it('returns 401 when the signature is missing, wrong or stale', async () => {
    const { app } = await intakeApp();
    const payload = body({ nid: 1 });
    const good = signedHeaders(payload);
    const cases: Array<[Record<string, string>, string]> = [
      [{ ...good, 'webhook-signature': good['webhook-signature'].replace(/.{4}=$/, 'AAA=') }, 'TASKD_ERR_SIGNATURE_INVALID'],
      [{ ...good, 'webhook-id': 'other' }, 'TASKD_ERR_SIGNATURE_INVALID'],
      [signedHeaders(payload, { timestamp: Math.floor(Date.now() / 1000) - 301 }), 'TASKD_ERR_SIGNATURE_STALE'],
      [signedHeaders(payload, { timestamp: Math.floor(Date.now() / 1000) + 400 }), 'TASKD_ERR_SIGNATURE_STALE'],
      [{ 'content-type': 'application/json', 'webhook-signature': good['webhook-signature'] }, 'TASKD_ERR_SIGNATURE_MISSING'],
    ];
    for (const [headers, code] of cases) {
      const response = await post(app, payload, headers);
      expect(response.statusCode).toBe(401);
      expect(response.json().error).toBe(code);
    }
    const tampered = await post(app, body({ nid: 2 }), good);
    expect(tampered.json().error).toBe('TASKD_ERR_SIGNATURE_INVALID');
  });

  it('returns 401 for a signed webhook when no secret is configured', async () => {
    const { app } = await intakeApp({ TASKD_SECRET: '' });
    const payload = body({ nid: 1 });
    const response = await post(app, payload, signedHeaders(payload));
    expect(response.statusCode).toBe(401);
    expect(response.json().error).toBe('TASKD_ERR_SIGNATURE_DISABLED');
  });

  it('takes the admin token instead of a signature, and refuses a wrong one', async () => {
    const { app } = await intakeApp({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN });
    const payload = body({ nid: 3 });
    const ok = await post(app, payload, { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` }, '10.1.2.3');
    expect(ok.statusCode).toBe(202);
    const wrong = await post(app, payload, { 'content-type': 'application/json', authorization: 'Bearer nope' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json().error).toBe('TASKD_ERR_UNAUTHORIZED');
    const none = await post(app, payload, { 'content-type': 'application/json' });
    expect(none.json().error).toBe('TASKD_ERR_SIGNATURE_MISSING');
  });

  it('refuses unsigned intake without the token from loopback too, also when no token is configured', async () => {
    for (const token of [ADMIN_TOKEN, '']) {
      const { app, records } = await intakeApp({ TASKD_ADMIN_TOKEN: token });
      for (const address of ['127.0.0.1', '::1', '192.0.2.10']) {
        const refused = await post(app, body({ nid: 4 }), { 'content-type': 'application/json' }, address);
        expect(refused.statusCode).toBe(401);
        expect(refused.json().error).toBe('TASKD_ERR_SIGNATURE_MISSING');
      }
      expect(app.taskd.scheduler.get(4)).toBeUndefined();
      expect(await records()).toEqual([]);
    }
  });

  it('returns 413 for a body over 64 KiB, before looking at its type or signature', async () => {
    const { app } = await intakeApp();
    const big = body({ nid: 1, pad: 'x'.repeat(70_000) });
    const variants: Array<Record<string, string>> = [signedHeaders(big), { 'content-type': 'text/plain' }, {}];
    for (const headers of variants) {
      const response = await post(app, big, headers);
      expect(response.statusCode).toBe(413);
      expect(response.json().error).toBe('TASKD_ERR_BODY_TOO_LARGE');
    }
  });

  it('returns 415 for a body that is not JSON, before checking its signature', async () => {
    const { app } = await intakeApp();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx']) {
      const response = await post(app, 'nid=1', { 'content-type': type });
      expect(response.statusCode).toBe(415);
      expect(response.json().error).toBe('TASKD_ERR_UNSUPPORTED_MEDIA_TYPE');
    }
  });

  it('checks the signature before the body: a bad body with a bad signature is a 401', async () => {
    const { app } = await intakeApp();
    const response = await post(app, '{"nid":"x"}', { 'content-type': 'application/json', 'webhook-id': 'a', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,AAAA' });
    expect(response.statusCode).toBe(401);
  });

  it('returns 429 with retry-after past the rate limit, and the task is not lost (it is only refused)', async () => {
    const { app } = await intakeApp({ TASKD_RATE_LIMIT: '2' });
    for (const nid of [1, 2]) expect((await post(app, body({ nid }), signedHeaders(body({ nid })))).statusCode).toBe(202);
    const limited = await post(app, body({ nid: 3 }), signedHeaders(body({ nid: 3 })));
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error).toBe('TASKD_ERR_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('counts every loopback address (127.0.0.0/8, ::1, ::ffff:127.x) as one client for the rate limit, and a mapped IPv4 address as that address', async () => {
    const { app } = await intakeApp({ TASKD_RATE_LIMIT: '2' });
    const signedFrom = (nid: number, address: string) => post(app, body({ nid }), signedHeaders(body({ nid })), address);
    expect((await signedFrom(1, '127.0.0.1')).statusCode).toBe(202);
    expect((await signedFrom(2, '127.0.0.1')).statusCode).toBe(202);
    for (const [i, address] of ['127.0.0.2', '127.5.6.7', '127.255.255.254', '::1', '::ffff:127.0.0.9'].entries()) {
      const limited = await signedFrom(10 + i, address);
      expect(limited.statusCode, address).toBe(429);
    }
    expect((await signedFrom(20, '10.0.0.1')).statusCode).toBe(202);
    expect((await signedFrom(21, '::ffff:10.0.0.1')).statusCode).toBe(202);
    expect((await signedFrom(22, '10.0.0.1')).statusCode).toBe(429);
  });

  it('answers 503 TASKD_ERR_QUEUE_FULL for a new task beyond TASKD_MAX_QUEUED, and still answers duplicates', async () => {
    const { app, records } = await intakeApp({ TASKD_MAX_QUEUED: '2' });
    app.taskd.scheduler.pause();
    for (const nid of [1, 2]) expect((await post(app, body({ nid, rid: nid }), signedHeaders(body({ nid, rid: nid })))).statusCode).toBe(202);
    const full = await post(app, body({ nid: 3, rid: 3 }), signedHeaders(body({ nid: 3, rid: 3 })));
    expect(full.statusCode).toBe(503);
    expect(full.json().error).toBe('TASKD_ERR_QUEUE_FULL');
    expect(app.taskd.scheduler.get(3)).toBeUndefined();
    const again = await post(app, body({ nid: 2, rid: 2 }), signedHeaders(body({ nid: 2, rid: 2 })));
    expect(again.json()).toEqual({ nid: 2, state: 'queued', duplicate: true });
    expect((await app.inject({ url: '/metrics' })).body).toMatch(/taskd_webhook_rejections_total\{reason="TASKD_ERR_QUEUE_FULL"\} 1/);
    // Room again once the queue moves: nothing was lost, the next webhook (or reconcile) queues it.
    app.taskd.scheduler.resume();
    await waitFor(() => app.taskd.scheduler.stats().queued === 0);
    expect((await post(app, body({ nid: 3, rid: 3 }), signedHeaders(body({ nid: 3, rid: 3 })))).statusCode).toBe(202);
    await waitFor(async () => (await records()).filter((r) => r.nid === 3).length === 2);
  });

  it('returns 503 while shutting down', async () => {
    const { app } = await intakeApp();
    app.taskd.lifecycle.closing = true;
    const payload = body({ nid: 1 });
    const response = await post(app, payload, signedHeaders(payload));
    expect(response.statusCode).toBe(503);
    expect(response.json().error).toBe('TASKD_ERR_SHUTTING_DOWN');
  });

  it('counts rejections by reason in the metrics', async () => {
    const { app } = await intakeApp();
    await post(app, body({ nid: 1 }), { 'content-type': 'application/json', 'webhook-id': 'x', 'webhook-timestamp': '1', 'webhook-signature': 'v1,x' });
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.body).toMatch(/taskd_webhook_rejections_total\{reason="TASKD_ERR_SIGNATURE_STALE"\} 1/);
  });

  it('signs over the raw bytes: whitespace the sender chose is part of the signature', async () => {
    const { app } = await intakeApp();
    const payload = '{ "nid" : 11 }';
    const headers = signedHeaders(payload);
    expect((await post(app, payload, headers)).statusCode).toBe(202);
    const id = 'msg_raw';
    const ts = Math.floor(Date.now() / 1000);
    const signature = sign(parseSecret(TEST_SECRET), id, ts, '{"nid":12}');
    const reformatted = await post(app, '{ "nid": 12 }', { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signature });
    expect(reformatted.statusCode).toBe(401);
  });
});
