import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { FakeFrontend } from '../../src/simulation/fake-frontend.js';
import { ADMIN, TEST_KEY, tempDir, waitFor } from '../helpers.js';
import { serviceEnvFor } from '../simulation.js';
import { startService, type ServiceProcess } from './service-process.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0)) await fn();
});

async function getJson(url: string) {
  const response = await request(url, { headers: ADMIN });
  return (await response.body.json()) as Record<string, unknown>;
}

describe('re-adoption after a crash', () => {
  it('shows a task that survived a SIGKILL of the service as running, records its real outcome, and holds its lane meanwhile', async () => {
    const sim = new FakeFrontend({ key: TEST_KEY });
    await sim.listen();
    cleanup.push(() => sim.close());
    const logDir = await tempDir();
    const env = serviceEnvFor(sim, logDir);
    const track = (s: ServiceProcess) => {
      cleanup.push(() => s.child.exitCode === null && s.child.kill('SIGKILL'));
      sim.serviceUrl = s.url;
      return s;
    };
    const first = track(await startService(env));
    // Long enough to outlive a restart of the service even on a loaded machine.
    const long = await sim.addTask({ rid: 1, behaviour: 'warning', seconds: 6 });
    await waitFor(() => sim.state.tasks.get(long.nid)!.claims === 1, { what: 'the first task to start' });
    first.child.kill('SIGKILL');
    await first.exited;
    // Queued while the service was down, in the same lane: it must wait for the survivor.
    const next = await sim.addTask({ rid: 1, behaviour: 'success', seconds: 0.1, webhook: false });

    const second = track(await startService(env));
    const adopted = await getJson(`${second.url}/v1/tasks/${long.nid}`);
    expect(adopted).toMatchObject({ state: 'running', source: 'adopted', lane: 'rid:1' });
    await waitFor(async () => (await getJson(`${second.url}/v1/tasks/${long.nid}`)).state === 'warning', { timeoutMs: 15_000, what: 'the adopted task to end' });
    await waitFor(async () => (await getJson(`${second.url}/v1/tasks/${next.nid}`)).state === 'succeeded', { timeoutMs: 10_000, what: 'the next task in its lane' });
    const survivor = sim.state.tasks.get(long.nid)!;
    const follower = sim.state.tasks.get(next.nid)!;
    expect(survivor.claims).toBe(1);
    expect(follower.claims).toBe(1);
    expect(follower.claimedAt!).toBeGreaterThanOrEqual(survivor.finishedAt!);
    expect((await getJson(`${second.url}/v1/queue`)).orphans).toEqual([]);
  });
});
