import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildArgv, prepareLogDir, childEnvironment, logFilePath, pidFilePath, readPidFile, readProcessStartTime, readTail, runFilePath, startRun, type RunSpec } from '../src/runner.js';
import { encodeGateTask, gateProcessStart, handTask, spawnGate, WarmGates, GATE_UNUSED, type WarmGateGrowth } from '../src/start-gate.js';
import { fixture, isProcessAlive, readRecords, tempDir, waitFor } from './helpers.js';

async function spec(overrides: Partial<RunSpec> = {}): Promise<RunSpec> {
  return {
    nid: 42,
    argvTemplate: [fixture('print-args.sh'), '{nid}'],
    logDir: await tempDir(),
    timeoutMs: 10_000,
    killGraceMs: 500,
    env: process.env,
    meta: {},
    ...overrides,
  };
}

/** A run of record-run.sh, which notes in its own record file whether the command ran at all. */
async function recordingSpec(): Promise<RunSpec> {
  return spec({ argvTemplate: [fixture('record-run.sh'), '{nid}'], env: { ...process.env, RECORD_FILE: path.join(await tempDir(), 'records') } });
}

/** Warm gates in a fresh folder that keep every gate they start, in order. */
async function recordingGates(size: number, growth?: WarmGateGrowth) {
  const dir = await tempDir();
  const started: ReturnType<typeof spawnGate>[] = [];
  const gates = new WarmGates(
    size,
    () => {
      const gate = spawnGate(dir, process.env);
      started.push(gate);
      return gate;
    },
    growth,
  );
  return { gates, started };
}

/** Time held still, so that starts a test makes one after another are one burst however busy the machine is. */
const timeHeldStill = () => 0;

/** Ends the pool and every gate it started, waiting for each to exit. */
async function releaseGates(gates: WarmGates, started: ReturnType<typeof spawnGate>[]) {
  gates.close();
  for (const gate of started) gate.stdin.end();
  await Promise.all(started.map((gate) => gate.catch(() => undefined)));
}

describe('buildArgv', () => {
  it('replaces {nid} wherever it stands, and nothing else', () => {
    expect(buildArgv(['drush', '@hostmaster', 'hosting-task', '{nid}', '--task={nid}', '{rid}'], 7)).toEqual([
      'drush',
      '@hostmaster',
      'hosting-task',
      '7',
      '--task=7',
      '{rid}',
    ]);
  });

  it('refuses a nid that is not a positive integer', () => {
    for (const nid of [0, -1, 1.5, Number.NaN]) expect(() => buildArgv(['x', '{nid}'], nid)).toThrow(TypeError);
  });
});

describe('startRun', () => {
  it('passes every argument as it is, with no shell interpreting it, and writes the output to <nid>.log', async () => {
    const s = await spec({ argvTemplate: [fixture('print-args.sh'), '{nid}', '$(touch /tmp/should-not-exist); echo hi', '*'] });
    const run = await startRun(s);
    const result = await run.done;
    expect(result).toMatchObject({ exitCode: 0, signal: null, timedOut: false, spawnError: null });
    const log = await fs.readFile(logFilePath(s.logDir, 42), 'utf8');
    expect(log).toContain('[42]\n[$(touch /tmp/should-not-exist); echo hi]\n[*]\n');
    expect(result.output).toBe('[42]\n[$(touch /tmp/should-not-exist); echo hi]\n[*]\n');
  });

  it('puts the child in its own process group', async () => {
    const s = await spec({ argvTemplate: ['sh', '-c', 'ps -o pgid= -p $$; sleep 0.1', 'x', '{nid}'] });
    const run = await startRun(s);
    const result = await run.done;
    expect(Number(result.output.trim())).toBe(run.pid);
    expect(run.pid).not.toBe(process.pid);
  });

  it('records the exit code, and appends attempts to the same log', async () => {
    const s = await spec({ argvTemplate: ['sh', '-c', 'echo attempt; exit 3', 'x', '{nid}'] });
    expect((await (await startRun(s)).done).exitCode).toBe(3);
    expect((await (await startRun(s)).done).exitCode).toBe(3);
    const log = await fs.readFile(logFilePath(s.logDir, 42), 'utf8');
    expect(log.match(/^attempt$/gm)).toHaveLength(2);
  });

  it('leaves <nid>.pid (written by the child itself) and <nid>.run.json while it runs, and removes both after', async () => {
    const s = await spec({ argvTemplate: ['sh', '-c', 'sleep 0.3', 'x', '{nid}'] });
    const run = await startRun({ ...s, meta: { rid: 9 } });
    const pidFile = await waitFor(() => readPidFile(pidFilePath(s.logDir, 42)), { what: 'the pid file' });
    expect(pidFile.pid).toBe(run.pid);
    expect(pidFile.processStart).toBe(await readProcessStartTime(run.pid!));
    expect(JSON.parse(await fs.readFile(runFilePath(s.logDir, 42), 'utf8'))).toMatchObject({ nid: 42, rid: 9 });
    await run.done;
    await expect(fs.access(pidFilePath(s.logDir, 42))).rejects.toThrow();
    await expect(fs.access(runFilePath(s.logDir, 42))).rejects.toThrow();
  });

  it('creates <nid>.pid and <nid>.run.json for this user only, whatever the service umask', async () => {
    expect(process.umask() & 0o044, 'the umask of this test lets others read new files').toBe(0);
    const s = await spec({ argvTemplate: ['sh', '-c', 'sleep 0.3', 'x', '{nid}'] });
    const run = await startRun(s);
    await waitFor(() => readPidFile(pidFilePath(s.logDir, 42)), { what: 'the pid file' });
    expect((await fs.stat(pidFilePath(s.logDir, 42))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(runFilePath(s.logDir, 42))).mode & 0o777).toBe(0o600);
    expect((await fs.stat(logFilePath(s.logDir, 42))).mode & 0o777).toBe(0o600);
    await run.done;
  });

  it('reports an exec that fails (an argument over 128 KiB) as a start failure, not as the exit code of the command', async () => {
    const s = await recordingSpec();
    const result = await (await startRun({ ...s, argvTemplate: [...s.argvTemplate, 'a'.repeat(140 * 1024)] })).done;
    expect(result.spawnError).toMatch(/^the command could not be started: .*record-run\.sh: Argument list too long$/);
    expect(result.exitCode).toBeNull();
    expect(await readRecords(s.env.RECORD_FILE!)).toEqual([]);
    await expect(fs.access(pidFilePath(s.logDir, 42))).rejects.toThrow();
    await expect(fs.access(runFilePath(s.logDir, 42))).rejects.toThrow();
    expect(await fs.readFile(logFilePath(s.logDir, 42), 'utf8')).toMatch(/--- aegir-taskd: the command could not be started: .*Argument list too long\n$/);
  });

  it('reports a remembered command path that has gone as a start failure, and looks the command up again after it', async () => {
    const [first, second] = [await tempDir(), await tempDir()];
    const name = `taskd-test-drush-${process.pid}`;
    const script = '#!/bin/sh\necho "ran from $0"\n';
    await fs.writeFile(path.join(first, name), script, { mode: 0o755 });
    const s = await spec({ argvTemplate: [name, '{nid}'], env: { ...process.env, PATH: `${first}:${second}:${process.env.PATH}` } });
    expect((await (await startRun(s)).done).exitCode).toBe(0);
    // The command moves (a drush upgrade): the path remembered from the first run is gone.
    await fs.rm(path.join(first, name));
    await fs.writeFile(path.join(second, name), script, { mode: 0o755 });
    const gone = await (await startRun(s)).done;
    expect(gone.spawnError).toMatch(/^the command could not be started: .*not found$/);
    const again = await (await startRun(s)).done;
    expect(again).toMatchObject({ exitCode: 0, spawnError: null });
    expect(again.output).toBe(`ran from ${path.join(second, name)}\n`);
  });

  it('does not run the command when its pid file cannot be written', async () => {
    const s = await spec({ argvTemplate: [fixture('record-run.sh'), '{nid}'] });
    const recordFile = path.join(s.logDir, 'records');
    // A directory where the pid file should be: the gate cannot create the file.
    await fs.mkdir(pidFilePath(s.logDir, 42));
    const result = await (await startRun({ ...s, env: { ...process.env, RECORD_FILE: recordFile } })).done;
    expect(result.spawnError).toBe(`the command did not start: its log and run files could not be written in ${s.logDir}`);
    expect(await readRecords(recordFile)).toEqual([]);
  });

  it('gives the child the environment without the service secrets', async () => {
    const s = await spec({
      argvTemplate: [fixture('print-env.sh'), '{nid}'],
      env: { PATH: process.env.PATH, KEEP_ME: 'yes', TASKD_SECRET: 'whsec_leak', TASKD_ADMIN_TOKEN: 'token-leak', TASKD_PORT: '1' },
    });
    const { output } = await (await startRun(s)).done;
    expect(output).toContain('KEEP_ME=yes');
    expect(output).toContain('TASKD_PORT=1');
    expect(output).not.toContain('leak');
  });

  it('ends a task that outlives its timeout, killing the whole tree even a grandchild that ignores SIGTERM', async () => {
    const dir = await tempDir();
    const pidFile = path.join(dir, 'pids');
    const s = await spec({ argvTemplate: [fixture('stubborn-tree.sh'), '{nid}'], timeoutMs: 300, killGraceMs: 300, env: { ...process.env, PID_FILE: pidFile } });
    const run = await startRun(s);
    const [leader, grandchild] = (await waitFor(() => fs.readFile(pidFile, 'utf8').catch(() => ''), { what: 'pid file' })).trim().split(' ').map(Number);
    expect(isProcessAlive(grandchild!)).toBe(true);
    const result = await run.done;
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGTERM');
    expect(isProcessAlive(leader!)).toBe(false);
    expect(isProcessAlive(grandchild!)).toBe(false);
  });

  it('reports a command that is not found, without throwing', async () => {
    const result = await (await startRun(await spec({ argvTemplate: ['/nonexistent/drush', '{nid}'] }))).done;
    expect(result.spawnError).toBe('command not found: /nonexistent/drush (check TASKD_COMMAND and PATH)');
    expect(result.exitCode).toBeNull();
  });

  it('reports a command that is not executable, without throwing', async () => {
    const result = await (await startRun(await spec({ argvTemplate: [fixture('not-executable.sh'), '{nid}'] }))).done;
    expect(result.spawnError).toMatch(/^command is not executable: .*not-executable\.sh$/);
  });

  it('stop() ends the process group at once', async () => {
    const run = await startRun(await spec({ argvTemplate: ['sh', '-c', 'sleep 30', 'x', '{nid}'], killGraceMs: 200 }));
    run.stop();
    const result = await run.done;
    expect(result.signal).toBe('SIGTERM');
    expect(result.timedOut).toBe(false);
  });
});

describe('childEnvironment', () => {
  it('removes TASKD_SECRET and TASKD_ADMIN_TOKEN and keeps the rest', () => {
    expect(childEnvironment({ A: '1', TASKD_SECRET: 's', TASKD_ADMIN_TOKEN: 't' })).toEqual({ A: '1' });
  });
});

describe('readTail', () => {
  it('returns the last bytes and says when it cut', async () => {
    const file = path.join(await tempDir(), 'x.log');
    await fs.writeFile(file, 'abcdefghij');
    expect(await readTail(file, 4)).toEqual({ text: 'ghij', size: 10, truncated: true });
    expect(await readTail(file, 100)).toEqual({ text: 'abcdefghij', size: 10, truncated: false });
    expect(await readTail(file + '.missing', 4)).toEqual({ text: '', size: 0, truncated: false });
  });
});

describe('the start gate', () => {
  it('writes the run record, the pid and kernel start time, and the header, then becomes the command with stdin from /dev/null', async () => {
    const dir = await tempDir();
    const gate = spawnGate(dir, process.env);
    const kernelStart = await readProcessStartTime(gate.pid!);
    handTask(gate, encodeGateTask({ nid: 7, header: 'the header', meta: '{"nid":7}', argv: ['/bin/sh', '-c', 'echo "$$"; readlink /proc/$$/fd/0; printf "[%s]" "$@"', 'x', 'a b', '$(nope)', '', '  lead and trail\t', 'back\\slash \\n', '*'] }));
    const started = await waitFor(() => readPidFile(pidFilePath(dir, 7)));
    expect((await gate).exitCode).toBe(0);
    expect(await fs.readFile(logFilePath(dir, 7), 'utf8')).toBe(`the header\n${gate.pid}\n/dev/null\n[a b][$(nope)][][  lead and trail\t][back\\slash \\n][*]`);
    expect(await fs.readFile(runFilePath(dir, 7), 'utf8')).toBe('{"nid":7}\n');
    expect(started.pid).toBe(gate.pid);
    expect(started.processStart).toMatch(/^\d+$/);
    expect(started.processStart).toBe(kernelStart);
  });

  it('reads its start time when it is forked, so that the gate need not read /proc before the exec', async () => {
    const gate = spawnGate(await tempDir(), process.env);
    try {
      expect(gateProcessStart(gate)).toMatch(/^\d+$/);
      expect(gateProcessStart(gate)).toBe(await readProcessStartTime(gate.pid!));
    } finally {
      gate.stdin.end();
      await gate;
    }
  });

  it('writes the start time it is handed into the pid file, and reads its own from /proc when none or a malformed one comes', async () => {
    const dir = await tempDir();
    const cases = [
      { nid: 11, first: '12345', handed: true },
      { nid: 12, first: '', handed: false },
      { nid: 13, first: '12 34', handed: false },
    ];
    for (const { nid, first, handed } of cases) {
      const gate = spawnGate(dir, process.env);
      const kernelStart = await readProcessStartTime(gate.pid!);
      gate.stdin.end(`${first}\n${encodeGateTask({ nid, header: 'h', meta: '{}', argv: ['/bin/true'] })}`);
      expect((await gate).exitCode).toBe(0);
      expect(await readPidFile(pidFilePath(dir, nid))).toEqual({ pid: gate.pid, processStart: handed ? first : kernelStart });
    }
  });

  it('creates the log for this user only, and runs the command with the service umask', async () => {
    const dir = await tempDir();
    const gate = spawnGate(dir, process.env);
    const previous = process.umask();
    handTask(gate, encodeGateTask({ nid: 8, header: 'h', meta: '{}', argv: ['/bin/sh', '-c', 'umask'] }));
    await gate;
    expect((await fs.stat(logFilePath(dir, 8))).mode & 0o777).toBe(0o600);
    expect(Number.parseInt((await fs.readFile(logFilePath(dir, 8), 'utf8')).split('\n')[1]!, 8)).toBe(previous);
  });

  it('exits without running anything when its stdin closes before a whole task arrives', async () => {
    const dir = await tempDir();
    const recordFile = path.join(dir, 'records');
    const env = { ...process.env, RECORD_FILE: recordFile };
    const idle = spawnGate(dir, env);
    idle.stdin.end();
    const partial = spawnGate(dir, env);
    // The task says two arguments and sends one.
    partial.stdin.end(`\n9\nheader\n{}\n2\n${fixture('record-run.sh')}\n`);
    expect((await idle).exitCode).toBe(GATE_UNUSED);
    expect((await partial).exitCode).toBe(GATE_UNUSED);
    expect(await readRecords(recordFile)).toEqual([]);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('refuses to encode a field with a line break, which would shift every field after it, or a NUL, which the shell drops', () => {
    expect(() => encodeGateTask({ nid: 1, header: 'h', meta: '{}', argv: ['/bin/echo', 'a\nb'] })).toThrow(TypeError);
    expect(() => encodeGateTask({ nid: 1, header: 'h', meta: '{}', argv: ['/bin/echo', 'a\0b'] })).toThrow(TypeError);
  });
});

describe('warm gates', () => {
  it('keeps at most its size waiting, replaces each one taken, and lets them go on close', async () => {
    const { gates, started } = await recordingGates(2);
    gates.fill();
    gates.fill();
    expect(started).toHaveLength(2);
    const taken = gates.take()!;
    expect(taken).not.toBeNull();
    handTask(taken, encodeGateTask({ nid: 3, header: 'h', meta: '{}', argv: ['/bin/true'] }));
    expect((await taken).exitCode).toBe(0);
    await waitFor(() => gates.idle === 2 || null, { what: 'the replacement gate' });
    expect(started).toHaveLength(3);
    const idle = [gates.take()!, gates.take()!];
    gates.close();
    for (const gate of idle) gate.stdin.end();
    expect((await Promise.all(idle)).map((r) => r.exitCode)).toEqual([GATE_UNUSED, GATE_UNUSED]);
    expect(gates.take()).toBeNull();
  });

  it('drops a gate that died while waiting, and skips one whose pipe is closed', async () => {
    const { gates, started } = await recordingGates(1);
    gates.fill();
    const killed = started[0]!;
    killed.kill('SIGKILL');
    await killed;
    expect(gates.idle).toBe(0);
    gates.fill();
    const broken = started[1]!;
    // Its stdin can no longer be written: handing it a task would lose the task.
    broken.stdin.destroy();
    expect(gates.take()).toBeNull();
    gates.close();
    broken.kill('SIGKILL');
    await broken;
  });

  it('closes waiting gates, which exit without running anything', async () => {
    const { gates, started } = await recordingGates(2);
    gates.fill();
    gates.close();
    expect((await Promise.all(started)).map((r) => r.exitCode)).toEqual([GATE_UNUSED, GATE_UNUSED]);
  });

  it('keeps one more waiting for each start that found none, up to its ceiling, and goes back to its floor after a quiet while', async () => {
    const { gates, started } = await recordingGates(2, { ceiling: 4, shrinkAfterMs: 2000, clock: timeHeldStill });
    gates.fill();
    const hits = [gates.take(), gates.take()];
    expect(hits.every((gate) => gate !== null)).toBe(true);
    // Three starts of a burst find none waiting: each would fork the service on the spot.
    expect([gates.take(), gates.take(), gates.take()]).toEqual([null, null, null]);
    expect(gates.target).toBe(4);
    await waitFor(() => gates.idle === 4 || null, { what: 'four gates waiting after the burst' });
    const grown = started.slice(2);
    expect(grown).toHaveLength(4);
    for (const gate of hits) gate!.stdin.end();
    await waitFor(() => gates.idle === 2 || null, { timeoutMs: 8000, what: 'the pool back at its floor' });
    expect(gates.target).toBe(2);
    // The two let go exit without running anything; the floor's two still wait.
    expect((await Promise.all(grown.slice(0, 2))).map((r) => r.exitCode)).toEqual([GATE_UNUSED, GATE_UNUSED]);
    expect(grown.slice(2).map((gate) => gate.exitCode)).toEqual([null, null]);
    gates.close();
    await Promise.all(started.map((gate) => gate.catch(() => undefined)));
    expect(started).toHaveLength(6);
  });

  it('grows to its target after a burst with nothing else waking the event loop', async () => {
    const { gates, started } = await recordingGates(1, { ceiling: 6, clock: timeHeldStill });
    gates.fill();
    expect(gates.take()).not.toBeNull();
    expect([gates.take(), gates.take(), gates.take(), gates.take(), gates.take()]).toEqual([null, null, null, null, null]);
    expect(gates.target).toBe(6);
    // One timer and no other I/O: growth that waited for something else to wake the loop would be one gate here.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(gates.idle).toBe(6);
    await releaseGates(gates, started);
  });

  it('times a burst from the end of a start that forked its own gate, so that starts slowed by their own forks still count as one', async () => {
    let now = 0;
    const { gates, started } = await recordingGates(1, { ceiling: 4, clock: () => now });
    gates.fill();
    expect(gates.take()).not.toBeNull();
    // Each start that found none forked on the spot, which held the loop longer than a refill's delay.
    for (let i = 0; i < 3; i += 1) {
      expect(gates.take()).toBeNull();
      now += 8;
      gates.startedOwn();
    }
    expect(gates.target).toBe(4);
    await releaseGates(gates, started);
  });

  it('does not grow for a lone start that found none, only for starts closer together than a refill', async () => {
    const { gates, started } = await recordingGates(1, { ceiling: 4, clock: timeHeldStill });
    gates.fill();
    const lost = started[0]!;
    lost.kill('SIGKILL');
    await lost.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(gates.take()).toBeNull();
    expect(gates.target).toBe(1);
    await waitFor(() => gates.idle === 1 || null, { what: 'the refill' });
    expect(gates.take()).not.toBeNull();
    expect(gates.take()).toBeNull();
    expect(gates.target).toBe(2);
    await releaseGates(gates, started);
  });

  it("starts no gate after close(), even with a burst's growth still to come", async () => {
    const { gates, started } = await recordingGates(1, { ceiling: 6, clock: timeHeldStill });
    gates.fill();
    const hit = gates.take();
    for (let i = 0; i < 4; i += 1) expect(gates.take()).toBeNull();
    expect(gates.target).toBe(5);
    gates.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(started).toHaveLength(1);
    hit!.stdin.end();
    await hit!.catch(() => undefined);
  });

  it('never grows when it is off (a floor of 0), however many starts find none', async () => {
    const { gates, started } = await recordingGates(0, { ceiling: 8 });
    gates.fill();
    for (let i = 0; i < 5; i += 1) expect(gates.take()).toBeNull();
    gates.fill();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(started).toHaveLength(0);
    expect(gates.target).toBe(0);
    gates.close();
  });
});

describe('startRun with warm gates', () => {
  it('runs the task in a waiting gate: the pid is the gate\'s, and the output and files are as for a fresh start', async () => {
    const s = await spec({ argvTemplate: [fixture('print-args.sh'), '{nid}', 'x y'], meta: { rid: 5 } });
    const gates = new WarmGates(1, () => spawnGate(s.logDir, childEnvironment(s.env)));
    gates.fill();
    const waiting = gates.take()!;
    gates.close();
    const pool = { take: () => waiting } as unknown as WarmGates;
    const run = await startRun(s, pool);
    expect(run.pid).toBe(waiting.pid);
    const result = await run.done;
    expect(result).toMatchObject({ exitCode: 0, spawnError: null, output: '[42]\n[x y]\n' });
  });

  it('fails the attempt with a clear message when the gate ends before it gets the task', async () => {
    const s = await recordingSpec();
    const dead = spawnGate(s.logDir, childEnvironment(s.env));
    dead.stdin.end();
    await dead;
    const result = await (await startRun(s, { take: () => dead } as unknown as WarmGates)).done;
    expect(result.spawnError).toBe(`the command did not start: its start gate ended (exit code ${GATE_UNUSED}) before it ran it`);
    expect(await readRecords(s.env.RECORD_FILE!)).toEqual([]);
  });

  it('fails the attempt, not with the output of an earlier one, when the gate was killed just before it was handed the task', async () => {
    const s = await recordingSpec();
    await fs.writeFile(logFilePath(s.logDir, 42), '--- aegir-taskd: attempt started earlier\nwhat the earlier attempt printed\n');
    const gate = spawnGate(s.logDir, childEnvironment(s.env));
    await waitFor(() => readProcessStartTime(gate.pid!));
    // Killed, and handed the task in the same turn: the service has not yet seen it die.
    gate.kill('SIGKILL');
    const result = await (await startRun(s, { take: () => gate } as unknown as WarmGates)).done;
    expect(result).toMatchObject({ signal: 'SIGKILL', spawnError: 'the command did not start: its start gate ended (killed by SIGKILL) before it ran it' });
    expect(result.output).toBe(result.spawnError);
    expect(await readRecords(s.env.RECORD_FILE!)).toEqual([]);
  });

  it('tells a gate that could not write its files from a command exiting 75, even beside a stale pid file', async () => {
    const s = await recordingSpec();
    await fs.writeFile(pidFilePath(s.logDir, 42), '1 1\n');
    await fs.mkdir(runFilePath(s.logDir, 42));
    const result = await (await startRun(s)).done;
    expect(result.spawnError).toBe(`the command did not start: its log and run files could not be written in ${s.logDir}`);
    expect(await readRecords(s.env.RECORD_FILE!)).toEqual([]);
    const ownExit = await (await startRun(await spec({ argvTemplate: ['sh', '-c', 'exit 75', 'x', '{nid}'] }))).done;
    expect(ownExit).toMatchObject({ exitCode: 75, spawnError: null });
  });

  it('reports a log it cannot write as the reason the command did not start', async () => {
    const s = await recordingSpec();
    await fs.mkdir(logFilePath(s.logDir, 42));
    const result = await (await startRun(s)).done;
    expect(result.spawnError).toBe(`the command did not start: its log and run files could not be written in ${s.logDir}`);
    expect(await readRecords(s.env.RECORD_FILE!)).toEqual([]);
  });
});

describe('prepareLogDir', () => {
  it('creates the folder for this user only, and refuses a symbolic link in its place', async () => {
    const base = await tempDir();
    const dir = path.join(base, 'logs');
    await prepareLogDir(dir);
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o700);
    const link = path.join(base, 'link');
    await fs.symlink(dir, link);
    await expect(prepareLogDir(link)).rejects.toThrow(/is not a directory \(a symbolic link\?\)$/);
  });

  // Handing a folder to another user takes root.
  it.skipIf(process.getuid?.() !== 0)('refuses a folder that belongs to another user', async () => {
    const dir = await tempDir();
    await fs.chown(dir, 65534, 65534);
    await expect(prepareLogDir(dir)).rejects.toThrow(/belongs to uid 65534, not to this service/);
  });
});
