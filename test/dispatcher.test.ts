import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { DISPATCH_HEADER_PREFIX, DISPATCH_LOG_MAX_BYTES, type DispatchView } from '../src/dispatcher.js';
import { FakeFrontend } from '../src/simulation/fake-frontend.js';
import { captureLogs, isProcessAlive, TEST_KEY, TEST_SECRET, tempDir, waitFor } from './helpers.js';
import { fakeDispatchCommand, simulatedAegir } from './simulation.js';

type Sim = Awaited<ReturnType<typeof simulatedAegir>>;
const open: Sim[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

const nowSeconds = () => Math.floor(Date.now() / 1000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function aegir(env: Record<string, string>, before: (s: Sim['sim']) => void, options: Parameters<typeof simulatedAegir>[1] = {}) {
  const s = await simulatedAegir(
    { TASKD_DISPATCH_COMMAND: fakeDispatchCommand, TASKD_DISPATCH_MIN_INTERVAL: '0.3', ...env },
    { before, ...options },
  );
  open.push(s);
  return s;
}

const dispatchView = async (s: Sim): Promise<DispatchView> => (await s.app.inject({ url: '/v1/queue' })).json().dispatch;
const metricsText = async (s: Sim) => (await s.app.inject({ url: '/metrics' })).body;

describe('dispatching hosting queues', () => {
  it('starts nothing while no queue is due, and says which comes due first', async () => {
    const now = nowSeconds();
    const s = await aegir({}, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 3600, last: now });
      sim.state.addQueue({ name: 'backup', frequency: 86_400, last: now - 100 });
      // Due long ago, but disabled: hosting-dispatch would skip it ("Queue … disabled.").
      sim.state.addQueue({ name: 'backup_gc', frequency: 60, last: 0, enabled: false });
    });
    await waitFor(() => s.sim.requests >= 5, { what: 'five reconciles' });
    await sleep(800);
    expect(s.sim.state.dispatchRuns).toEqual([]);
    const view = await dispatchView(s);
    expect(view).toMatchObject({ enabled: true, state: 'scheduled', aegirEnabled: true, runs: 0, lastRun: null });
    expect(view.nextQueue).toMatchObject({ name: 'cron', frequency: 3600, next: new Date((now + 3600) * 1000).toISOString() });
    expect(view.nextStartAt).toBe(new Date((now + 3600) * 1000).toISOString());
    await expect(fs.stat(path.join(s.config.logDir, 'dispatch.log'))).rejects.toThrow(/ENOENT/);
    expect(await metricsText(s)).toMatch(/taskd_dispatch_runs_total\{result="ok"\} 0/);
  });

  it('runs a due queue once, at its due time, and reads the due times again at once after the run', async () => {
    const now = nowSeconds();
    const dueAt = now + 2;
    // A 30 s reconcile: any listing read after the run is the dispatcher's own.
    const s = await aegir({ TASKD_RECONCILE_INTERVAL: '30' }, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 3600, last: dueAt - 3600 });
      sim.state.addQueue({ name: 'backup', frequency: 86_400, last: now });
    }, { childEnv: { TASKD_SECRET: TEST_SECRET, TASKD_ADMIN_TOKEN: 'x'.repeat(20) } });
    const run = await waitFor(() => s.sim.state.dispatchRuns[0], { timeoutMs: 6000, what: 'a dispatch run' });
    expect(run.atMs).toBeGreaterThanOrEqual(dueAt * 1000);
    expect(run.atMs).toBeLessThan(dueAt * 1000 + 1500);
    expect(run).toMatchObject({ ran: ['cron'], byService: true, sawSecrets: false });
    const view = await waitFor(async () => {
      const v = await dispatchView(s);
      return v.lastRun ? v : null;
    });
    expect(view.lastRun).toMatchObject({ result: 'ok', exitCode: 0, due: ['cron'], message: null });
    // The listing read before the due time, and the one read right after the run: nothing else.
    const nextCron = new Date((run.at + 3600) * 1000).toISOString();
    await waitFor(async () => (await dispatchView(s)).nextQueue?.next === nextCron, { what: 'due times read after the run' });
    expect(s.sim.requests).toBe(2);
    await sleep(1000);
    expect(s.sim.state.dispatchRuns).toHaveLength(1);
    expect(s.sim.state.queues.get('cron')!.runs).toBe(1);
    const log = await fs.readFile(path.join(s.config.logDir, 'dispatch.log'), 'utf8');
    expect(log).toMatch(/^--- aegir-taskd: dispatch started \S+ \[.*fake-hosting-dispatch\.js"\] due: cron\n/);
    expect(log).toContain('Found 0 running tasks, starting hosting-cron.');
    expect(log).toContain('Too early for queue backup.');
    const metrics = await metricsText(s);
    expect(metrics).toMatch(/taskd_dispatch_runs_total\{result="ok"\} 1/);
    expect(metrics).toMatch(/taskd_dispatch_duration_seconds_count 1/);
  });

  it('reads the listing again before a start when it is old, and starts nothing when the queue already ran', async () => {
    const now = nowSeconds();
    const s = await aegir({ TASKD_RECONCILE_INTERVAL: '30', TASKD_CONFIRM_MAX_AGE: '0.5' }, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 3600, last: now + 2 - 3600 });
    });
    await waitFor(() => s.sim.requests === 1);
    // The cron line (or hosting-cron itself) runs the queue meanwhile.
    await sleep(1000);
    s.sim.state.queues.get('cron')!.last = nowSeconds();
    await waitFor(() => s.sim.requests === 2, { timeoutMs: 4000, what: 'the look-up before the start' });
    await sleep(500);
    expect(s.sim.state.dispatchRuns).toEqual([]);
    expect((await dispatchView(s)).state).toBe('scheduled');
  });

  it('runs a queue that is always due once every TASKD_DISPATCH_MIN_INTERVAL, as the cron line runs it every minute', async () => {
    const s = await aegir({ TASKD_DISPATCH_MIN_INTERVAL: '0.5' }, (sim) => {
      // A batch queue over many sites: calc_frequency below a minute.
      sim.state.addQueue({ name: 'cron', frequency: 0, last: 0 });
    });
    await waitFor(() => s.sim.state.dispatchRuns.length >= 1, { what: 'the first run' });
    const first = s.sim.state.dispatchRuns[0]!.atMs;
    await sleep(2600);
    const runs = s.sim.state.dispatchRuns.filter((r) => r.atMs <= first + 2500);
    expect(runs.length).toBeGreaterThanOrEqual(4);
    expect(runs.length).toBeLessThanOrEqual(6);
    // The spacing is the service's: its start times in dispatch.log, not when each run's node process
    // got round to telling the simulation (its start-up time varies with the machine's load).
    const log = await fs.readFile(path.join(s.config.logDir, 'dispatch.log'), 'utf8');
    const starts = [...log.matchAll(new RegExp(`^${DISPATCH_HEADER_PREFIX}(\\S+)`, 'gm'))].map((m) => Date.parse(m[1]!));
    expect(starts.length).toBeGreaterThanOrEqual(runs.length);
    for (let i = 1; i < starts.length; i += 1) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(400);
    expect(runs.every((r) => r.ran.join() === 'cron')).toBe(true);
  });

  it('times a hung dispatch out like a task, never starts a second beside it, and never holds a site task back', async () => {
    const s = await aegir({ TASKD_DISPATCH_TIMEOUT: '3', TASKD_KILL_GRACE: '0.3', TASKD_DISPATCH_MIN_INTERVAL: '0.2', TASKD_CONCURRENCY: '1' }, (sim) => {
      sim.state.dispatchBehaviour = 'hang';
      sim.state.addQueue({ name: 'cron', frequency: 0, last: 0 });
    });
    const hung = await waitFor(() => s.sim.state.dispatchRuns[0], { what: 'the hung run' });
    // Each run reads its behaviour as it starts: the next one will be an ordinary one.
    s.sim.state.dispatchBehaviour = 'normal';
    expect((await dispatchView(s)).state).toBe('running');
    // With TASKD_CONCURRENCY=1 and the dispatch running, a site task still runs at once.
    const task = await s.sim.addTask({ rid: 5, seconds: 0.2 });
    await waitFor(async () => (await s.task(task.nid)).state === 'succeeded', { what: 'the site task' });
    expect(Date.now() - hung.atMs).toBeLessThan(2500);
    expect(s.sim.state.dispatchRuns).toHaveLength(1);
    const view = await waitFor(async () => {
      const v = await dispatchView(s);
      return v.lastRun ? v : null;
    }, { timeoutMs: 5000, what: 'the timeout' });
    expect(view.lastRun).toMatchObject({ result: 'timed_out', signal: 'SIGTERM', due: ['cron'] });
    expect(view.lastRun!.durationSeconds).toBeGreaterThanOrEqual(2.9);
    expect(isProcessAlive(hung.pid)).toBe(false);
    expect(await metricsText(s)).toMatch(/taskd_dispatch_runs_total\{result="timed_out"\} 1/);
    const next = await waitFor(() => s.sim.state.dispatchRuns[1], { what: 'the run after the timeout' });
    expect(next.ran).toEqual(['cron']);
  });

  it('starts nothing while the frontend is down, says so in its log, and dispatches once it answers', async () => {
    const logs = captureLogs();
    const now = nowSeconds();
    const s = await aegir({}, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 3600, last: now + 2 - 3600 });
    }, { loggerInstance: logs.logger });
    await waitFor(() => s.sim.requests >= 1);
    s.sim.fault = 'down';
    await sleep(3000);
    expect(s.sim.state.dispatchRuns).toEqual([]);
    expect(await dispatchView(s)).toMatchObject({ state: 'frontend_down' });
    expect(logs.lines.filter((l) => l.includes('the frontend does not answer; no dispatch until it does'))).toHaveLength(1);
    s.sim.fault = null;
    const run = await waitFor(() => s.sim.state.dispatchRuns[0], { what: 'the run after recovery' });
    expect(run.ran).toEqual(['cron']);
    expect(logs.lines.some((l) => l.includes('the frontend answers again'))).toBe(true);
  });

  it('starts nothing while hosting_dispatch_enabled is off in Aegir', async () => {
    const s = await aegir({}, (sim) => {
      sim.state.dispatchEnabled = false;
      sim.state.addQueue({ name: 'cron', frequency: 60, last: 0 });
    });
    await waitFor(() => s.sim.requests >= 4);
    await sleep(300);
    expect(s.sim.state.dispatchRuns).toEqual([]);
    expect(await dispatchView(s)).toMatchObject({ state: 'disabled_in_aegir', aegirEnabled: false });
    s.sim.state.dispatchEnabled = true;
    expect((await waitFor(() => s.sim.state.dispatchRuns[0])).ran).toEqual(['cron']);
  });

  it('is off with TASKD_DISPATCH_COMMAND empty, whatever is due', async () => {
    const s = await aegir({ TASKD_DISPATCH_COMMAND: '' }, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 60, last: 0 });
    });
    await waitFor(() => s.sim.requests >= 3);
    await sleep(300);
    expect(s.sim.state.dispatchRuns).toEqual([]);
    expect(await dispatchView(s)).toMatchObject({ enabled: false, state: 'off', command: null });
  });

  it('moves a large dispatch.log aside before a run, so the log never grows without end', async () => {
    const logDir = await tempDir('taskd-logs-');
    const old = path.join(logDir, 'dispatch.log');
    await fs.writeFile(old, 'x'.repeat(DISPATCH_LOG_MAX_BYTES + 1));
    const s = await aegir({ TASKD_LOG_DIR: logDir }, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 3600, last: 0 });
    });
    await waitFor(async () => (await dispatchView(s)).lastRun, { what: 'the run' });
    expect((await fs.stat(`${old}.1`)).size).toBe(DISPATCH_LOG_MAX_BYTES + 1);
    expect(await fs.readFile(old, 'utf8')).toMatch(/^--- aegir-taskd: dispatch started .* due: cron\n/);
  });

  it('never starts a second dispatch while one started before a restart of the service still runs', async () => {
    const sim = new FakeFrontend({ key: TEST_KEY });
    await sim.listen();
    sim.state.dispatchBehaviour = 'hang';
    sim.state.addQueue({ name: 'cron', frequency: 0, last: 0 });
    const logDir = await tempDir('taskd-logs-');
    const config = loadConfig({
      TASKD_LOG_DIR: logDir,
      TASKD_LOG_LEVEL: 'silent',
      TASKD_SECRET: TEST_SECRET,
      TASKD_FRONTEND_URL: sim.baseUrl,
      TASKD_COMMAND: JSON.stringify(['true', '{nid}']),
      TASKD_DISPATCH_COMMAND: fakeDispatchCommand,
      TASKD_DISPATCH_MIN_INTERVAL: '0.2',
      TASKD_RECONCILE_INTERVAL: '0.2',
    });
    const start = async () => {
      const app = await buildApp({ config, env: { ...process.env, AEGIR_SIM_URL: sim.url }, defaultMetrics: false });
      await app.listen({ host: '127.0.0.1', port: 0 });
      return app;
    };
    const first = await start();
    const hung = await waitFor(() => sim.state.dispatchRuns[0], { what: 'the first run' });
    sim.state.dispatchBehaviour = 'normal';
    // The service stops; its dispatch, like a task's drush, goes on.
    await first.close();
    const second = await start();
    try {
      await waitFor(async () => (await second.inject({ url: '/v1/queue' })).json().dispatch.running?.pid === hung.pid, { what: 'the survivor held' });
      expect((await second.inject({ url: '/v1/queue' })).json().dispatch).toMatchObject({ state: 'running', running: { startedAt: null, due: [] } });
      await sleep(800);
      expect(sim.state.dispatchRuns).toHaveLength(1);
      process.kill(-hung.pid, 'SIGKILL');
      const next = await waitFor(() => sim.state.dispatchRuns[1], { what: 'the run after the survivor ended' });
      expect(next.ran).toEqual(['cron']);
    } finally {
      await second.close();
      await sim.close();
    }
  });

  it('keeps the spacing of the run before a restart, read from the header line in dispatch.log', async () => {
    const logDir = await tempDir('taskd-logs-');
    const before = Date.now();
    await fs.writeFile(path.join(logDir, 'dispatch.log'), `--- aegir-taskd: dispatch started ${new Date(before).toISOString()} ["drush"] due: cron\nFound 0 running tasks, starting hosting-cron.\n`);
    const s = await aegir({ TASKD_LOG_DIR: logDir, TASKD_DISPATCH_MIN_INTERVAL: '2' }, (sim) => {
      sim.state.addQueue({ name: 'cron', frequency: 0, last: 0 });
    });
    const run = await waitFor(() => s.sim.state.dispatchRuns[0], { what: 'the first run', timeoutMs: 6000 });
    expect(run.atMs).toBeGreaterThanOrEqual(before + 2000);
  });
});
