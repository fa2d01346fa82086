import net from 'node:net';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN, tempDir, waitFor } from '../helpers.js';
import { startService, type ServiceProcess } from '../e2e/service-process.js';
import { FOLLOWERS, SLOW_CLIENTS, cpuMs, descriptors, printSummaryAfterAll, rssKiB, summary } from './chaos.js';

printSummaryAfterAll();

const running: ServiceProcess[] = [];
const sockets: net.Socket[] = [];
const groups: number[] = [];
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const s of running.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  for (const pid of groups.splice(0)) {
    if (!Number.isSafeInteger(pid) || pid <= 1) continue;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

async function service(env: Record<string, string>, args: string[] = []) {
  const s = await startService({ TASKD_RATE_LIMIT: '0', TASKD_MAX_CONNECTIONS: String(Math.max(SLOW_CLIENTS, 2 * FOLLOWERS) + 1000), ...env }, args);
  running.push(s);
  const url = new URL(s.url);
  return { ...s, pid: s.child.pid!, port: Number(url.port) };
}

interface Client {
  socket: net.Socket;
  received: string;
  connectedAt: number | null;
  headersAt: number | null;
  closedAt: number | null;
}

/** A raw client: what it is sent is all it ever sends; it records when the answer's headers came and when the server closed it. */
function client(port: number, send: string): Client {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  const c: Client = { socket, received: '', connectedAt: null, headersAt: null, closedAt: null };
  socket.setEncoding('utf8');
  socket.on('connect', () => {
    c.connectedAt = Date.now();
    socket.write(send);
  });
  socket.on('data', (chunk: string) => {
    c.received += chunk;
    if (c.headersAt === null && c.received.includes('\r\n\r\n')) c.headersAt = Date.now();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => (c.closedAt = Date.now()));
  return c;
}

async function openAll(count: number, make: () => Client): Promise<Client[]> {
  const clients: Client[] = [];
  // In batches, so the listen backlog never overflows and every client does connect.
  for (let i = 0; i < count; i += 200) {
    const batch = Array.from({ length: Math.min(200, count - i) }, make);
    await waitFor(() => batch.every((c) => c.connectedAt !== null || c.closedAt !== null), { timeoutMs: 10_000, what: 'a batch of clients to connect' });
    clients.push(...batch);
  }
  return clients;
}

const mib = (kib: number) => (kib / 1024).toFixed(0);

describe('slow and long-lived clients', () => {
  it(`disconnects ${SLOW_CLIENTS} connections that send headers and one byte of body, within the request timeout, and gives their descriptors back`, async () => {
    const s = await service({ TASKD_REQUEST_TIMEOUT: '3', TASKD_HEADERS_TIMEOUT: '2' });
    const baseline = await descriptors(s.pid);
    const cpuBefore = await cpuMs(s.pid);
    const startedAt = Date.now();
    const clients = await openAll(SLOW_CLIENTS, () =>
      client(s.port, 'POST /v1/tasks HTTP/1.1\r\nhost: taskd\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{'),
    );
    const opened = Date.now();
    // The service accepts them a little after they connected.
    const peakFds = await waitFor(async () => {
      const fds = await descriptors(s.pid);
      return fds >= baseline + clients.length ? fds : null;
    }, { timeoutMs: 2000, what: 'every slow connection to be accepted' });
    const peakRss = await rssKiB(s.pid);
    await waitFor(() => clients.every((c) => c.closedAt !== null), { timeoutMs: 15_000, intervalMs: 50, what: 'every slow connection to be closed' });
    const lastClosed = Math.max(...clients.map((c) => c.closedAt!));
    const answered408 = clients.filter((c) => c.received.startsWith('HTTP/1.1 408')).length;
    await waitFor(async () => (await descriptors(s.pid)) <= baseline + 5, { timeoutMs: 5000, what: 'the descriptors to be given back' });
    const after = await descriptors(s.pid);
    const cpu = (await cpuMs(s.pid)) - cpuBefore;
    summary(
      `slow bodies: ${clients.length} connections (opened in ${((opened - startedAt) / 1000).toFixed(1)} s), service fds ${baseline} → ${peakFds} → ${after}, RSS ${mib(peakRss)} MiB at the peak, ` +
        `all closed ${((lastClosed - opened) / 1000).toFixed(1)} s after the last opened (request timeout 3 s), ${answered408} answered 408, service CPU ${cpu} ms`,
    );
    expect(lastClosed - startedAt).toBeLessThan(3000 + (opened - startedAt) + 2500);
    expect(after).toBeLessThanOrEqual(baseline + 5);
    // The service still serves.
    expect((await request(`${s.url}/healthz`)).statusCode).toBe(200);
  });

  it(`keeps ${FOLLOWERS} followers of one task cheap while it waits, streams its output to all, and ends them all promptly on SIGTERM`, async () => {
    const dir = await tempDir('taskd-chaos-follow-');
    const s = await service(
      {
        TASKD_LOG_DIR: dir,
        // Task 1 prints and ends; any other prints and runs on past the signal.
        TASKD_COMMAND: JSON.stringify(['sh', '-c', 'echo "output of $1"; [ "$1" = 1 ] || exec sleep 60', 'x', '{nid}']),
        TASKD_MAX_STREAMS: String(2 * FOLLOWERS + 100),
        TASKD_MAX_STREAMS_PER_TASK: String(FOLLOWERS),
      },
      ['--shutdown-grace', '1'],
    );
    const post = async (path: string, body?: unknown) => {
      const response = await request(`${s.url}${path}`, body === undefined ? { method: 'POST', headers: ADMIN } : { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...ADMIN } });
      await response.body.dump();
      return response.statusCode;
    };
    expect(await post('/v1/queue/pause')).toBe(200);
    expect(await post('/v1/tasks', { nid: 1, rid: 1 })).toBe(202);
    const baselineFds = await descriptors(s.pid);
    const baselineRss = await rssKiB(s.pid);
    const follow = (nid: number) => client(s.port, `GET /v1/tasks/${nid}/log?follow=1 HTTP/1.1\r\nhost: taskd\r\nauthorization: ${ADMIN.authorization}\r\n\r\n`);
    const followers = await openAll(FOLLOWERS, () => follow(1));
    await waitFor(() => followers.every((c) => c.headersAt !== null), { timeoutMs: 15_000, what: 'every follower to get its headers' });
    const headersIn = Math.max(...followers.map((c) => c.headersAt! - c.connectedAt!));
    expect(followers.every((c) => c.received.startsWith('HTTP/1.1 200'))).toBe(true);
    const fds = await descriptors(s.pid);
    const rss = await rssKiB(s.pid);
    // The task waits (paused): what do the followers cost meanwhile?
    const idleFrom = await cpuMs(s.pid);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const idleCpu = ((await cpuMs(s.pid)) - idleFrom) / 3000;

    const resumedAt = Date.now();
    expect(await post('/v1/queue/resume')).toBe(200);
    await waitFor(() => followers.every((c) => /\r\n0\r\n\r\n$/.test(c.received)), { timeoutMs: 30_000, intervalMs: 50, what: 'every follower to get the whole output and its end' });
    const streamedIn = Date.now() - resumedAt;
    expect(followers.every((c) => c.received.includes('output of 1\n'))).toBe(true);

    // Second round: followers of a task that runs on past the signal, and of one queued behind it.
    for (const socket of sockets.splice(0)) socket.destroy();
    expect(await post('/v1/tasks', { nid: 2, rid: 2 })).toBe(202);
    expect(await post('/v1/tasks', { nid: 3, rid: 2 })).toBe(202);
    const runner = await waitFor(async () => {
      const view = (await (await request(`${s.url}/v1/tasks/2`, { headers: ADMIN })).body.json()) as { state: string; pid: number | null };
      return view.state === 'running' && view.pid ? view : null;
    });
    groups.push(runner.pid!);
    const second = await openAll(FOLLOWERS, () => follow(2));
    const third = await openAll(Math.min(FOLLOWERS, 100), () => follow(3));
    const open = [...second, ...third];
    await waitFor(() => open.every((c) => c.headersAt !== null), { timeoutMs: 15_000, what: 'the second round of followers to get their headers' });
    const signalledAt = Date.now();
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    const exitedIn = Date.now() - signalledAt;
    await waitFor(() => open.every((c) => c.closedAt !== null), { timeoutMs: 5000, what: 'every follower to be closed' });
    const endedCleanly = open.filter((c) => /the service is stopping; this follow ends here, the task goes on\n\r\n0\r\n\r\n$/.test(c.received)).length;
    summary(
      `followers: ${followers.length} of one queued task, headers within ${headersIn} ms, service fds ${baselineFds} → ${fds}, RSS ${mib(baselineRss)} → ${mib(rss)} MiB, ` +
        `CPU while waiting ${(idleCpu * 100).toFixed(1)} % of a core, all had the whole output and its end ${streamedIn} ms after the task was let start; ` +
        `SIGTERM with ${open.length} open (${second.length} of a running task, ${third.length} of one queued behind it) and --shutdown-grace 1: exited in ${exitedIn} ms, ${endedCleanly} ended with the closing note`,
    );
    expect(idleCpu).toBeLessThan(0.1);
    expect(exitedIn).toBeLessThan(4000);
    expect(exitedIn).toBeGreaterThanOrEqual(900);
    expect(endedCleanly).toBe(open.length);
  });

  it(`gives back every descriptor after ${FOLLOWERS} follows that connect and go away at random moments`, async () => {
    const dir = await tempDir('taskd-chaos-follow-');
    const s = await service({
      TASKD_LOG_DIR: dir,
      TASKD_COMMAND: JSON.stringify(['sh', '-c', 'while :; do echo "output of $1"; sleep 0.01; done', 'x', '{nid}']),
      TASKD_MAX_STREAMS: String(FOLLOWERS),
      TASKD_MAX_STREAMS_PER_TASK: String(FOLLOWERS),
    });
    const response = await request(`${s.url}/v1/tasks`, { method: 'POST', body: JSON.stringify({ nid: 9, rid: 9 }), headers: { 'content-type': 'application/json', ...ADMIN } });
    expect(response.statusCode).toBe(202);
    await response.body.dump();
    const task = await waitFor(async () => {
      const view = (await (await request(`${s.url}/v1/tasks/9`, { headers: ADMIN })).body.json()) as { state: string; pid: number | null };
      return view.state === 'running' && view.pid ? view : null;
    });
    groups.push(task.pid!);
    const baseline = await descriptors(s.pid);
    const startedAt = Date.now();
    for (let i = 0; i < FOLLOWERS; i += 100) {
      const batch = Array.from({ length: Math.min(100, FOLLOWERS - i) }, (_, j) => {
        const c = client(s.port, `GET /v1/tasks/9/log?follow=1 HTTP/1.1\r\nhost: taskd\r\nauthorization: ${ADMIN.authorization}\r\n\r\n`);
        // Gone before the answer, during its first reads, or a little later.
        setTimeout(() => c.socket.destroy(), (i + j) % 7 === 0 ? 0 : ((i + j) % 5) * 3);
        return c;
      });
      await waitFor(() => batch.every((c) => c.closedAt !== null), { timeoutMs: 10_000, what: 'a batch of follows to go away' });
    }
    await waitFor(async () => (await descriptors(s.pid)) <= baseline + 5, { timeoutMs: 5000, intervalMs: 50, what: `the descriptors back near ${baseline}` });
    const after = await descriptors(s.pid);
    const warnings = s.logs.filter((line) => /Closing file descriptor/.test(line)).length;
    summary(`follow churn: ${FOLLOWERS} follows that went away at random, service fds ${baseline} → ${after}, "Closing file descriptor" warnings ${warnings}, ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    expect(after).toBeLessThanOrEqual(baseline + 5);
    expect(warnings).toBe(0);
  });
});
