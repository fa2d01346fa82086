import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeFrontend } from '../src/simulation/fake-frontend.js';
import { Agent, request } from '../src/undici-parts.js';
import { TEST_KEY, fixture, tempDir, waitFor } from './helpers.js';
import { serviceEnvFor } from './simulation.js';
import { startService } from './e2e/service-process.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});

describe('undici parts', () => {
  it('sends the method, headers and body to the path and query of the URL, GET when no method is given', async () => {
    const seen: Array<{ method?: string; url?: string; header?: string; body: string }> = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, header: req.headers['x-probe'] as string | undefined, body });
        res.writeHead(201, { 'content-type': 'text/plain' }).end(`answer to ${req.url}`);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => server.close(resolve)));
    const agent = new Agent();
    cleanup.push(() => agent.close());
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const posted = await request(`${base}/hosting/taskd/task/7/finish?x=1&y=2`, { method: 'POST', headers: { 'x-probe': 'yes' }, body: '{"vid":3}', dispatcher: agent });
    expect(posted.statusCode).toBe(201);
    expect(await posted.body.text()).toBe('answer to /hosting/taskd/task/7/finish?x=1&y=2');
    const read = await request(`${base}/queue`, { dispatcher: agent });
    await read.body.dump();
    expect(seen).toEqual([
      { method: 'POST', url: '/hosting/taskd/task/7/finish?x=1&y=2', header: 'yes', body: '{"vid":3}' },
      { method: 'GET', url: '/queue', header: undefined, body: '' },
    ]);
  });

  it('leaves undici’s main entry unloaded in the running service, which still talks to Aegir', async () => {
    const sim = new FakeFrontend({ key: TEST_KEY });
    await sim.listen();
    cleanup.push(() => sim.close());
    const service = await startService(serviceEnvFor(sim, await tempDir()), [], ['--import', fixture('report-undici-files.mjs')]);
    cleanup.push(() => service.child.exitCode === null && service.child.kill('SIGKILL'));
    // The reconciler's signed GETs go through the parts.
    await waitFor(() => sim.requests >= 2, { timeoutMs: 10_000, what: 'the reconciler asking the simulated Aegir twice' });
    service.child.kill('SIGTERM');
    expect((await service.exited).code).toBe(0);
    // Its stderr may still be arriving after the exit.
    const line = await waitFor(() => service.logs.join('\n').split('\n').find((l) => l.startsWith('undici files loaded: ')), { what: 'the report of the files loaded' });
    const report = JSON.parse(line.slice('undici files loaded: '.length)) as { mainEntry: boolean; files: number };
    expect(report.files).toBeGreaterThan(0);
    expect(report.mainEntry).toBe(false);
  });
});
