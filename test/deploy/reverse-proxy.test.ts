import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, ADMIN_TOKEN, fixture, tempDir, testApp, waitFor } from '../helpers.js';
import { openEventStream } from '../sse.js';
import { csrfToken } from '../../src/ui-session.js';
import { readDeployFile, tool } from './deploy-files.js';

const nginx = tool('nginx', "bash .ci/install-ui-tools installs Debian's nginx package");
const apache2 = tool('apache2', "bash .ci/install-ui-tools installs Debian's apache2 package");

const USER = 'operator';
const PASSWORD = 'proxy-password-1';
const BASIC = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The shipped snippet with this test's service port and password file put in, nothing else changed. */
async function snippet(name: string, servicePort: number, htpasswd: string): Promise<string> {
  const text = await readDeployFile(name);
  expect(text).toContain('127.0.0.1:8765');
  expect(text).toContain('/etc/aegir-taskd/htpasswd');
  return text.replaceAll('127.0.0.1:8765', `127.0.0.1:${servicePort}`).replaceAll('/etc/aegir-taskd/htpasswd', htpasswd);
}

let app: FastifyInstance;
let servicePort: number;
let dir: string;
let htpasswd: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  ({ app } = await testApp({ TASKD_COMMAND: JSON.stringify([fixture('record-run.sh'), '{nid}']) }, { env: { ...process.env, RECORD_FILE: '/dev/null', SLEEP_SECONDS: '0.2' } }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  servicePort = Number(new URL(url).port);
  dir = await tempDir('taskd-proxy-');
  // The web servers' workers run as an unprivileged user when started as root: they must read these.
  await fs.chmod(dir, 0o755);
  htpasswd = path.join(dir, 'htpasswd');
  // {SHA} is a scheme both nginx and Apache read.
  await fs.writeFile(htpasswd, `${USER}:{SHA}${createHash('sha1').update(PASSWORD).digest('base64')}\n`, { mode: 0o644 });
});

afterAll(async () => {
  for (const child of children) child.kill('SIGTERM');
  await app?.close();
});

/** What an operator's browser does through the proxy: the proxy's login, then the service's, then the page, its events and an action. */
async function operatorThrough(base: string) {
  const host = new URL(base).host;
  // Without the proxy's credentials the service is never reached.
  const refused = await request(`${base}/taskd/ui`);
  expect(refused.statusCode).toBe(401);
  expect(String(refused.headers['www-authenticate'])).toMatch(/^Basic /);
  await refused.body.dump();
  // With them, the service's own login form: the proxy's credentials are not its token.
  const login = await request(`${base}/taskd/ui`, { headers: BASIC });
  expect(login.statusCode).toBe(401);
  expect(await login.body.text()).toContain('id="login"');
  // The queue read as an operator on the host could: the Basic header must not reach the service (it would be a wrong token there).
  const queue = await request(`${base}/taskd/v1/queue`, { headers: BASIC });
  expect(queue.statusCode).toBe(200);
  await queue.body.dump();

  const signIn = await request(`${base}/taskd/ui`, {
    method: 'POST',
    headers: { ...BASIC, origin: base, 'content-type': 'application/x-www-form-urlencoded' },
    body: `token=${encodeURIComponent(ADMIN_TOKEN)}`,
  });
  expect(signIn.statusCode).toBe(303);
  expect(signIn.headers.location).toBe('ui');
  const setCookie = String(signIn.headers['set-cookie']);
  // Scoped to the proxy's path: the hostmaster's Drupal beside it never gets the token.
  expect(setCookie).toContain('; Path=/taskd/;');
  expect(setCookie).toContain('HttpOnly; SameSite=Strict');
  await signIn.body.dump();
  const cookie = setCookie.split(';')[0]!;

  const page = await request(`${base}/taskd/ui`, { headers: { ...BASIC, cookie } });
  expect(page.statusCode).toBe(200);
  const html = await page.body.text();
  expect(html).toContain('csrf-token');
  for (const asset of [...html.matchAll(/(?:src|href)="(ui\/assets\/[^"]+)"/g)].map((m) => m[1]!)) {
    const answer = await request(`${base}/taskd/${asset}`, { headers: BASIC });
    expect(answer.statusCode, asset).toBe(200);
    await answer.body.dump();
  }

  // The event stream is not held back by the proxy: a change reaches the client at once.
  const stream = await openEventStream(`${base}/taskd/v1/events`, { ...BASIC, cookie });
  expect(stream.statusCode).toBe(200);
  await waitFor(() => stream.comments.includes('connected'), { what: 'the stream to open through the proxy' });
  const sent = Date.now();
  const nid = 5000 + servicePort % 1000 + Math.floor(Math.random() * 1000);
  await app.inject({ method: 'POST', url: '/v1/tasks', payload: { nid, rid: 9 }, headers: ADMIN });
  await waitFor(() => stream.json<{ nid: number }>('task').some((t) => t.nid === nid), { timeoutMs: 2000, what: 'the task event through the proxy' });
  expect(Date.now() - sent).toBeLessThan(1000);
  stream.close();

  // A change from the page goes through (Origin is the proxy's host, as X-Forwarded-Host says); from another origin it does not.
  const headers = { ...BASIC, cookie, origin: base, 'x-taskd-csrf': csrfToken(ADMIN_TOKEN) };
  const cross = await request(`${base}/taskd/v1/queue/pause`, { method: 'POST', headers: { ...headers, origin: 'https://evil.example' } });
  expect(cross.statusCode).toBe(403);
  await cross.body.dump();
  const pause = await request(`${base}/taskd/v1/queue/pause`, { method: 'POST', headers });
  expect(await pause.body.json()).toEqual({ paused: true });
  const resume = await request(`${base}/taskd/v1/queue/resume`, { method: 'POST', headers });
  expect(await resume.body.json()).toEqual({ paused: false });
  expect(host).toContain('127.0.0.1');

  // The hostmaster's own pages are not behind the proxy's login.
  const hostmaster = await request(`${base}/index.txt`);
  expect(await hostmaster.body.text()).toBe('hostmaster');
}

async function started(child: ChildProcess, port: number, logs: () => string) {
  children.push(child);
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('connect', () => (socket.destroy(), resolve(true)));
        socket.once('error', () => resolve(false));
      }),
    { timeoutMs: 10_000, intervalMs: 50, what: `the web server on ${port}: ${logs()}` },
  );
}

describe.skipIf(!nginx)('deploy/aegir-taskd.nginx.conf under a real nginx', () => {
  it('passes nginx -t inside a hostmaster server block, and serves the dashboard under /taskd/ behind its own login', async () => {
    const port = await freePort();
    const prefix = path.join(dir, 'nginx');
    await fs.mkdir(path.join(prefix, 'logs'), { recursive: true });
    await fs.writeFile(path.join(prefix, 'aegir-taskd.nginx.conf'), await snippet('aegir-taskd.nginx.conf', servicePort, htpasswd));
    const temp = (name: string) => `${name}_temp_path ${path.join(prefix, name)};`;
    const conf = path.join(prefix, 'nginx.conf');
    await fs.writeFile(
      conf,
      `pid ${path.join(prefix, 'nginx.pid')};
error_log ${path.join(prefix, 'logs', 'error.log')} info;
events { worker_connections 64; }
http {
  access_log off;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  server {
    listen 127.0.0.1:${port};
    server_name hostmaster.example;
    include ${path.join(prefix, 'aegir-taskd.nginx.conf')};
    location / { default_type text/plain; return 200 "hostmaster"; }
  }
}
`,
    );
    const check = spawnSync(nginx!, ['-t', '-p', prefix, '-c', conf], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    expect(check.stderr).toContain('syntax is ok');
    let stderr = '';
    const child = spawn(nginx!, ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    await started(child, port, () => stderr);
    await operatorThrough(`http://127.0.0.1:${port}`);
  }, 30_000);
});

describe.skipIf(!apache2)('deploy/aegir-taskd.apache.conf under a real Apache', () => {
  it('passes apache2 -t inside a hostmaster VirtualHost, and serves the dashboard under /taskd/ behind its own login', async () => {
    const port = await freePort();
    const root = path.join(dir, 'apache');
    await fs.mkdir(root, { recursive: true });
    await fs.writeFile(path.join(root, 'aegir-taskd.apache.conf'), await snippet('aegir-taskd.apache.conf', servicePort, htpasswd));
    const modules = ['mpm_event', 'authn_core', 'authn_file', 'authz_core', 'authz_user', 'auth_basic', 'headers', 'env', 'proxy', 'proxy_http', 'alias'];
    const conf = path.join(root, 'apache2.conf');
    await fs.writeFile(
      conf,
      `ServerRoot "${root}"
PidFile "${path.join(root, 'apache2.pid')}"
Mutex file:${root}
ErrorLog "${path.join(root, 'error.log')}"
LogLevel warn
Listen 127.0.0.1:${port}
ServerName hostmaster.example
${modules.map((m) => `LoadModule ${m}_module /usr/lib/apache2/modules/mod_${m}.so`).join('\n')}
${process.getuid?.() === 0 ? 'User nobody\nGroup nogroup' : ''}
<VirtualHost 127.0.0.1:${port}>
  ServerName hostmaster.example
  Alias "/index.txt" "${path.join(root, 'index.txt')}"
  Include "${path.join(root, 'aegir-taskd.apache.conf')}"
</VirtualHost>
`,
    );
    await fs.writeFile(path.join(root, 'index.txt'), 'hostmaster');
    await fs.chmod(root, 0o777);
    const check = spawnSync(apache2!, ['-t', '-f', conf], { encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    expect(check.stderr).toContain('Syntax OK');
    let stderr = '';
    const child = spawn(apache2!, ['-f', conf, '-DFOREGROUND'], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    await started(child, port, () => stderr);
    await operatorThrough(`http://127.0.0.1:${port}`);
  }, 30_000);
});
