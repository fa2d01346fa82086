import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { GateSpawner, RemoteGate } from '../src/gate-spawner.js';
import { logFilePath, pidFilePath, readPidFile } from '../src/runner.js';
import { encodeGateTask, gateArguments, GATE_UNUSED, spawnGate, WarmGates } from '../src/start-gate.js';
import { tempDir, waitFor } from './helpers.js';

const spawners: GateSpawner[] = [];

async function spawnerIn(dir?: string) {
  const logDir = dir ?? (await tempDir());
  const spawner = new GateSpawner(gateArguments(logDir), process.env);
  spawners.push(spawner);
  return { spawner, logDir };
}

async function parentOf(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

afterEach(() => {
  for (const spawner of spawners.splice(0)) spawner.release();
});

describe('GateSpawner', () => {
  it('forks a gate on its worker that is a child of this process, in its own group, and runs the task written to it', async () => {
    const { spawner, logDir } = await spawnerIn();
    const gate = spawner.spawn()!;
    expect(await gate.ready).toBe(true);
    expect(await parentOf(gate.pid!)).toBe(process.pid);
    // detached: the gate leads its own process group, so a timeout can signal the whole group.
    const stat = await fs.readFile(`/proc/${gate.pid}/stat`, 'utf8');
    expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])).toBe(gate.pid);
    expect(gate.stdin.writable).toBe(true);
    gate.stdin.end(encodeGateTask({ nid: 5, header: 'the header', meta: '{}', argv: ['/bin/sh', '-c', 'echo "ran as $$"; exit 3'] }));
    expect(gate.stdin.writable).toBe(false);
    const result = await gate;
    expect(result).toEqual({ exitCode: 3, signal: undefined });
    expect(gate.exitCode).toBe(3);
    expect(await fs.readFile(logFilePath(logDir, 5), 'utf8')).toBe(`the header\nran as ${gate.pid}\n`);
    expect((await readPidFile(pidFilePath(logDir, 5)))?.pid).toBe(gate.pid);
  });

  it("gives a gate exactly the environment it was made with, never the service's own", async () => {
    const logDir = await tempDir();
    process.env.TASKD_SECRET = 'whsec_not-for-children';
    try {
      const spawner = new GateSpawner(gateArguments(logDir), { PATH: process.env.PATH, KEEP_ME: 'yes' });
      spawners.push(spawner);
      const gate = spawner.spawn()!;
      await gate.ready;
      const environ = (await fs.readFile(`/proc/${gate.pid}/environ`, 'utf8')).split('\0').filter(Boolean);
      expect(environ.sort()).toEqual([`PATH=${process.env.PATH}`, 'KEEP_ME=yes'].sort());
      gate.stdin.end();
      await gate;
    } finally {
      delete process.env.TASKD_SECRET;
    }
  });

  it('hands over a task bigger than the pipe holds, the rest through the worker', async () => {
    const { spawner, logDir } = await spawnerIn();
    const gate = spawner.spawn()!;
    await gate.ready;
    const args = Array.from({ length: 1500 }, (_, i) => `${i}:${'x'.repeat(100)}`);
    gate.stdin.end(encodeGateTask({ nid: 6, header: 'h', meta: '{}', argv: ['/bin/sh', '-c', 'echo "$# ${1%%:*} ${1500%%:*}"', 'sh', ...args] }));
    expect((await gate).exitCode).toBe(0);
    expect(await fs.readFile(logFilePath(logDir, 6), 'utf8')).toBe('h\n1500 0 1499\n');
  });

  it('lets a waiting gate go without running anything, and ends its worker once no gate it forked is alive', async () => {
    const { spawner, logDir } = await spawnerIn();
    const [first, second] = [spawner.spawn()!, spawner.spawn()!];
    await Promise.all([first.ready, second.ready]);
    expect(spawner.running).toBe(true);
    spawner.release();
    first.stdin.end();
    expect((await first).exitCode).toBe(GATE_UNUSED);
    // One gate still waits: its exit must still be reaped and reported.
    expect(spawner.running).toBe(true);
    second.stdin.end();
    expect((await second).exitCode).toBe(GATE_UNUSED);
    expect(spawner.running).toBe(false);
    expect(spawner.live).toBe(0);
    expect(await fs.readdir(logDir)).toEqual([]);
  });

  it('reports a gate killed by a signal as the signal, with no exit code', async () => {
    const { spawner } = await spawnerIn();
    const gate = spawner.spawn()!;
    await gate.ready;
    process.kill(gate.pid!, 'SIGKILL');
    expect(await gate).toEqual({ exitCode: undefined, signal: 'SIGKILL' });
    expect(gate.signalCode).toBe('SIGKILL');
    expect(gate.stdin.writable).toBe(false);
  });
});

describe('warm gates with a spawner', () => {
  it('replaces a taken gate with one forked on the worker, then, once idle, with one forked here, and ends the worker', async () => {
    const dir = await tempDir();
    const { spawner } = await spawnerIn(dir);
    const gates = new WarmGates(1, () => spawnGate(dir, process.env), { spawner, settleAfterMs: 300 });
    gates.fill();
    expect(spawner.running).toBe(false);
    const taken = gates.take()!;
    expect(taken).not.toBeInstanceOf(RemoteGate);
    taken.stdin.end(encodeGateTask({ nid: 1, header: 'h', meta: '{}', argv: ['/bin/true'] }));
    expect((await taken).exitCode).toBe(0);
    await waitFor(() => gates.idle === 1 || null, { what: 'the replacement gate' });
    expect(spawner.running).toBe(true);
    const replacement = gates.take()!;
    expect(replacement).toBeInstanceOf(RemoteGate);
    replacement.stdin.end(encodeGateTask({ nid: 2, header: 'h', meta: '{}', argv: ['/bin/true'] }));
    expect((await replacement).exitCode).toBe(0);
    // Quiet for settleAfterMs: the worker's gate goes, one forked on this thread takes its place.
    await waitFor(() => (!spawner.running && gates.idle === 1) || null, { what: 'the worker to end', timeoutMs: 5_000 });
    const settled = gates.take()!;
    expect(settled).not.toBeInstanceOf(RemoteGate);
    gates.close();
    settled.stdin.end();
    expect((await settled).exitCode).toBe(GATE_UNUSED);
  });
});
