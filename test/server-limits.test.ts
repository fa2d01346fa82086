import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { testApp, waitFor } from './helpers.js';

const apps: FastifyInstance[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const app of apps.splice(0)) await app.close();
});

async function listening(env: Record<string, string>) {
  const { app } = await testApp(env);
  apps.push(app);
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  return { app, port: Number(url.port) };
}

/** A raw connection that records when the server closed it and what it answered. */
function connect(port: number, send: string) {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  const state = { closedAt: null as number | null, received: '' };
  socket.on('data', (chunk) => (state.received += chunk.toString()));
  socket.on('error', () => undefined);
  socket.on('close', () => (state.closedAt = Date.now()));
  socket.on('connect', () => socket.write(send));
  return state;
}

describe('server limits', () => {
  it('disconnects clients that send a body, or headers, too slowly, and keep-alive connections left idle', async () => {
    const { port } = await listening({ TASKD_REQUEST_TIMEOUT: '0.6', TASKD_HEADERS_TIMEOUT: '0.4', TASKD_KEEP_ALIVE_TIMEOUT: '0.3' });
    const startedAt = Date.now();
    const slowBodies = Array.from({ length: 20 }, () => connect(port, 'POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{'));
    const slowHeaders = Array.from({ length: 20 }, () => connect(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\n'));
    const silent = connect(port, '');
    const idle = connect(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
    const all = [...slowBodies, ...slowHeaders, silent, idle];
    await waitFor(() => all.every((s) => s.closedAt !== null), { timeoutMs: 5000, what: 'every slow or idle connection to be closed' });
    for (const s of slowBodies) expect(s.received).toMatch(/^HTTP\/1\.1 408 /);
    expect(idle.received).toMatch(/^HTTP\/1\.1 200 /);
    // Closed after their timeout (within a sweep), not at once and not much later.
    const closedAfter = (list: typeof all) => list.map((s) => s.closedAt! - startedAt);
    console.log(`closed after (ms): slow bodies ${Math.min(...closedAfter(slowBodies))}-${Math.max(...closedAfter(slowBodies))}, slow headers ${Math.min(...closedAfter(slowHeaders))}-${Math.max(...closedAfter(slowHeaders))}, silent ${closedAfter([silent])}, idle ${closedAfter([idle])}`);
    expect(Math.max(...closedAfter(all))).toBeLessThan(2500);
    expect(Math.min(...slowBodies.map((s) => s.closedAt! - startedAt))).toBeGreaterThanOrEqual(550);
  });

  it('closes connections beyond TASKD_MAX_CONNECTIONS as they arrive, and serves again once some close', async () => {
    const { port } = await listening({ TASKD_MAX_CONNECTIONS: '5', TASKD_MAX_STREAMS: '5', TASKD_HEADERS_TIMEOUT: '20', TASKD_REQUEST_TIMEOUT: '20' });
    const held = Array.from({ length: 5 }, () => connect(port, 'GET /healthz HTTP/1.1\r\n'));
    await new Promise((r) => setTimeout(r, 200));
    const extra = connect(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    await waitFor(() => extra.closedAt !== null, { what: 'the connection over the cap to be closed' });
    expect(extra.received).toBe('');
    expect(held.every((s) => s.closedAt === null)).toBe(true);
    for (const socket of sockets.splice(0)) socket.destroy();
    await waitFor(async () => (await request(`http://127.0.0.1:${port}/healthz`).then((r) => r.statusCode, () => 0)) === 200, { what: 'room again' });
  });
});
