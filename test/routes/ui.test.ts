import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { contractViolations } from '../contract.js';
import { ADMIN, ADMIN_TOKEN, fixture, testApp } from '../helpers.js';
import { uiAssetsLoaded } from '../../src/routes/ui.js';
import { csrfToken } from '../../src/ui-session.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
  expect(contractViolations.splice(0), 'responses the OpenAPI document does not allow').toEqual([]);
});

async function ui(env: Record<string, string> = {}) {
  const { app } = await testApp({ TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']), ...env }, { env: { ...process.env, RECORD_FILE: '/dev/null' } });
  apps.push(app);
  await app.ready();
  return app;
}

const HOST = 'taskd.example.org';
const ORIGIN = `https://${HOST}`;
const form = { 'content-type': 'application/x-www-form-urlencoded', host: HOST };
const cookie = (token = ADMIN_TOKEN) => ({ cookie: `other=1; taskd_admin=${encodeURIComponent(token)}` });
/** What the dashboard's own requests carry: the cookie, its Origin and the page's CSRF token. */
const fromDashboard = () => ({ ...cookie(), host: HOST, origin: ORIGIN, 'x-taskd-csrf': csrfToken(ADMIN_TOKEN) });

describe('the dashboard at /ui', () => {
  it('reads none of its files before /ui is first asked for', async () => {
    const app = await ui();
    await app.inject({ url: '/v1/queue' });
    expect(uiAssetsLoaded()).toBe(false);
    await app.inject({ url: '/ui' });
    expect(uiAssetsLoaded()).toBe(true);
  });

  it('shows the login form, not the data, without the cookie or with a wrong one, to loopback too', async () => {
    const app = await ui();
    app.taskd.scheduler.pause();
    app.taskd.scheduler.submit({ nid: 4711, rid: 1, type: 'verify', source: 'operator', confirmedAt: null });
    for (const headers of [{}, cookie('not-the-admin-token-at-all'), ADMIN]) {
      const answer = await app.inject({ url: '/ui', headers, remoteAddress: '127.0.0.1' });
      expect(answer.statusCode).toBe(401);
      expect(answer.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(answer.body).toContain('<form method="post" action="ui" id="login">');
      expect(answer.body).toContain('type="password"');
      expect(answer.body).not.toContain('csrf-token');
      expect(answer.body).not.toContain('4711');
    }
  });

  it('signs in with the token into an HttpOnly, SameSite=Strict cookie, never in the address, and shows the dashboard with it', async () => {
    const app = await ui();
    const answer = await app.inject({ method: 'POST', url: '/ui', headers: { ...form, origin: ORIGIN }, payload: `token=${encodeURIComponent(ADMIN_TOKEN)}` });
    expect(answer.statusCode).toBe(303);
    expect(answer.headers.location).toBe('ui');
    const set = String(answer.headers['set-cookie']);
    expect(set).toBe(`taskd_admin=${ADMIN_TOKEN}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200`);
    const page = await app.inject({ url: '/ui', headers: { cookie: set.split(';')[0]! } });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain(`<meta name="csrf-token" content="${csrfToken(ADMIN_TOKEN)}">`);
    expect(page.body).not.toContain(ADMIN_TOKEN);
    expect(page.headers['cache-control']).toBe('no-store');
    // Behind TLS and below a path of the hostmaster's vhost, the cookie is Secure and goes to that path only.
    const proxied = await app.inject({
      method: 'POST',
      url: '/ui',
      headers: { ...form, origin: ORIGIN, 'x-forwarded-proto': 'https', 'x-forwarded-prefix': '/taskd' },
      payload: `token=${ADMIN_TOKEN}`,
    });
    expect(String(proxied.headers['set-cookie'])).toBe(`taskd_admin=${ADMIN_TOKEN}; Path=/taskd/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure`);
    const odd = await app.inject({ method: 'POST', url: '/ui', headers: { ...form, origin: ORIGIN, 'x-forwarded-prefix': '/x;Domain=evil' }, payload: `token=${ADMIN_TOKEN}` });
    expect(String(odd.headers['set-cookie'])).toContain('; Path=/;');
  });

  it('refuses a wrong token, and a sign-in from another site or with no Origin, without setting a cookie', async () => {
    const app = await ui();
    const wrong = await app.inject({ method: 'POST', url: '/ui', headers: { ...form, origin: ORIGIN }, payload: 'token=not-the-admin-token-at-all' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.body).toContain('TASKD_ERR_UNAUTHORIZED');
    for (const headers of [{ ...form, origin: 'https://evil.example' }, form, { ...form, origin: 'null' }]) {
      const answer = await app.inject({ method: 'POST', url: '/ui', headers, payload: `token=${ADMIN_TOKEN}` });
      expect(answer.statusCode).toBe(403);
      expect(answer.body).toContain('TASKD_ERR_CROSS_SITE_REQUEST');
      expect(answer.headers['set-cookie']).toBeUndefined();
    }
  });

  it('takes the cookie for the operator endpoints, from any address, and a wrong one nowhere', async () => {
    const app = await ui();
    app.taskd.scheduler.pause();
    app.taskd.scheduler.submit({ nid: 12, rid: 1, source: 'operator', confirmedAt: null });
    for (const url of ['/v1/tasks/12', '/v1/tasks/12/log', '/v1/queue', '/v1/tasks', '/v1/activity']) {
      expect((await app.inject({ url, headers: cookie(), remoteAddress: '192.0.2.7' })).statusCode, url).toBe(200);
      expect((await app.inject({ url, headers: cookie('not-the-admin-token-at-all') })).statusCode, url).toBe(401);
    }
  });

  it('refuses every change made with the cookie unless it comes from the dashboard (same Origin and the CSRF token), and changes nothing', async () => {
    const app = await ui();
    app.taskd.scheduler.pause();
    app.taskd.scheduler.submit({ nid: 21, rid: 1, source: 'operator', confirmedAt: null });
    const attempts = [
      { ...cookie(), host: HOST },
      { ...cookie(), host: HOST, origin: ORIGIN },
      { ...cookie(), host: HOST, 'x-taskd-csrf': csrfToken(ADMIN_TOKEN) },
      { ...fromDashboard(), origin: 'https://evil.example' },
      { ...fromDashboard(), origin: `https://${HOST}.evil.example` },
      { ...fromDashboard(), 'x-taskd-csrf': csrfToken('another-token-of-sixteen-chars') },
      { ...fromDashboard(), 'x-taskd-csrf': '' },
    ];
    for (const headers of attempts) {
      for (const [method, url] of [
        ['POST', '/v1/queue/resume'],
        ['DELETE', '/v1/tasks/21'],
        ['POST', '/v1/reconcile'],
        ['POST', '/v1/orphans/21/resolve'],
      ] as const) {
        const answer = await app.inject({ method, url, headers });
        expect(answer.statusCode, `${method} ${url} with ${JSON.stringify(headers)}`).toBe(403);
        expect(answer.json().error).toBe('TASKD_ERR_CROSS_SITE_REQUEST');
      }
    }
    expect(app.taskd.scheduler.stats().paused).toBe(true);
    expect(app.taskd.scheduler.get(21)?.state).toBe('queued');
    // From the dashboard itself: accepted, also through a proxy that names the host it was asked for.
    expect((await app.inject({ method: 'DELETE', url: '/v1/tasks/21', headers: fromDashboard() })).json()).toEqual({ nid: 21, state: 'cancelled' });
    const proxied = { ...fromDashboard(), host: '127.0.0.1:8765', 'x-forwarded-host': HOST };
    expect((await app.inject({ method: 'POST', url: '/v1/queue/resume', headers: proxied })).json()).toEqual({ paused: false });
    // A bearer header is not a browser's doing: no Origin is needed with it.
    expect((await app.inject({ method: 'POST', url: '/v1/queue/pause', headers: ADMIN })).statusCode).toBe(200);
  });

  it('signs out by clearing the cookie, from the dashboard only', async () => {
    const app = await ui();
    const out = await app.inject({ method: 'POST', url: '/ui/logout', headers: { host: HOST, origin: ORIGIN } });
    expect(out.statusCode).toBe(303);
    expect(out.headers.location).toBe('../ui');
    expect(String(out.headers['set-cookie'])).toMatch(/^taskd_admin=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0/);
    const cross = await app.inject({ method: 'POST', url: '/ui/logout', headers: { host: HOST, origin: 'https://evil.example' } });
    expect(cross.statusCode).toBe(403);
  });

  it('serves its own scripts and styles under a policy that allows nothing else, and no other file', async () => {
    const app = await ui();
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const page = await app.inject({ url: '/ui', headers: cookie() });
    const policy = String(page.headers['content-security-policy']);
    expect(policy).toMatch(/(^|; )default-src 'none'(;|$)/);
    expect(policy).toMatch(/(^|; )script-src 'self'(;|$)/);
    expect(policy).toMatch(/(^|; )connect-src 'self'(;|$)/);
    expect(policy).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    const sources = [...page.body.matchAll(/(?:src|href)="(ui\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    expect(sources.sort()).toEqual(['ui/assets/app.js', 'ui/assets/style.css']);
    const script = await app.inject({ url: '/ui/assets/app.js' });
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.body).toContain("from './api.js'");
    const again = await app.inject({ url: '/ui/assets/app.js', headers: { 'if-none-match': String(script.headers.etag) } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    for (const path of ['/ui/assets/index.html', '/ui/assets/login.html', '/ui/assets/nothing.js', '/ui/assets/..%2F..%2Fpackage.json', '/ui/assets/%2e%2e%2fapp.ts']) {
      const answer = await request(`${url}${path}`);
      expect(answer.statusCode, path).toBe(404);
      await answer.body.dump();
    }
  });
});
