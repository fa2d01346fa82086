import { describe, expect, it } from 'vitest';
import { ADMIN, ADMIN_TOKEN, signedHeaders, waitFor } from '../helpers.js';
import { body, post, useRouteApps } from './route-apps.js';

const intakeApp = useRouteApps();

describe('operator task endpoints', () => {
  it('lists tasks, filters by state, and shows one with its output tail', async () => {
    const { app } = await intakeApp();
    const payload = body({ nid: 21, rid: 3 });
    await post(app, payload, signedHeaders(payload));
    await waitFor(async () => (await app.inject({ url: '/v1/tasks/21', headers: ADMIN })).json().state === 'succeeded');
    const one = (await app.inject({ url: '/v1/tasks/21', headers: ADMIN })).json();
    expect(one).toMatchObject({ nid: 21, rid: 3, lane: 'rid:3', state: 'succeeded', attempts: 1, exitCode: 0, source: 'webhook' });
    expect(one.output).toContain('working on 21');
    expect(Date.parse(one.startedAt)).toBeGreaterThanOrEqual(Date.parse(one.receivedAt));
    const tail = (await app.inject({ url: '/v1/tasks/21?tail=8', headers: ADMIN })).json();
    expect(tail.output).toHaveLength(8);
    expect(tail.outputTruncated).toBe(true);
    expect((await app.inject({ url: '/v1/tasks?state=succeeded' })).json().tasks.map((t: { nid: number }) => t.nid)).toEqual([21]);
    expect((await app.inject({ url: '/v1/tasks?state=queued' })).json().tasks).toEqual([]);
    expect((await app.inject({ url: '/v1/tasks?state=bogus' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/v1/tasks/999', headers: ADMIN })).json().error).toBe('TASKD_ERR_TASK_NOT_FOUND');
    expect((await app.inject({ url: '/v1/tasks/abc', headers: ADMIN })).statusCode).toBe(400);
  });

  it('deletes a queued task, refuses a running one with 409, and stops it with ?force=1', async () => {
    const { app } = await intakeApp();
    app.taskd.scheduler.pause();
    await post(app, body({ nid: 31, rid: 1 }), signedHeaders(body({ nid: 31, rid: 1 })));
    const dropped = await app.inject({ method: 'DELETE', url: '/v1/tasks/31', headers: ADMIN });
    expect(dropped.statusCode).toBe(200);
    expect(dropped.json()).toEqual({ nid: 31, state: 'cancelled' });
    expect((await app.inject({ method: 'DELETE', url: '/v1/tasks/32', headers: ADMIN })).statusCode).toBe(404);
  });

  it('lists tasks to loopback clients without the token, and to others only with it', async () => {
    const { app } = await intakeApp({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN });
    expect((await app.inject({ url: '/v1/tasks' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/v1/tasks', remoteAddress: '192.0.2.1' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/v1/tasks', headers: { authorization: 'Bearer wrong' } })).statusCode).toBe(401);
    expect((await app.inject({ url: '/v1/tasks', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, remoteAddress: '192.0.2.1' })).statusCode).toBe(200);
  });

  it('answers reads from elsewhere with 403 when no token is configured', async () => {
    const { app } = await intakeApp({ TASKD_ADMIN_TOKEN: '' });
    expect((await app.inject({ url: '/v1/tasks', remoteAddress: '::1' })).statusCode).toBe(200);
    const remote = await app.inject({ url: '/v1/queue', remoteAddress: '192.0.2.1' });
    expect(remote.statusCode).toBe(403);
    expect(remote.json().error).toBe('TASKD_ERR_FORBIDDEN');
  });
});
