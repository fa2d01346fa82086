import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { waitFor } from '../helpers.js';
import { cliPath } from './service-process.js';

const execFileAsync = promisify(execFile);
const children: Array<ReturnType<typeof spawn>> = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

describe('aegir-taskd demo', () => {
  it('prints curl lines that queue a task in the simulated Aegir and show it run', async () => {
    const child = spawn(process.execPath, [cliPath, 'demo', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    await waitFor(() => out.includes('Ctrl-C stops the demo.'), { what: 'the demo banner' });
    const firstCurl = out.split('\n').find((l) => l.startsWith('curl -s -X POST'))!;
    const [, simTasksUrl, body] = /^curl -s -X POST (\S+) -H 'content-type: application\/json' -d '([^']+)'$/.exec(firstCurl)!;
    const service = /the service listens on (http:\/\/\S+);/.exec(out)![1]!;
    const created = await request(simTasksUrl!, { method: 'POST', body: body!.replace('"seconds":3', '"seconds":0.2'), headers: { 'content-type': 'application/json' } });
    const task = (await created.body.json()) as { nid: number };
    // The printed line itself, run by a shell as a newcomer would paste it: it carries the token the service made.
    const showTask = out.split('\n').find((l) => l.startsWith(`curl -s ${service}/v1/tasks/100 `))!;
    expect(showTask).toMatch(/ -H "authorization: Bearer \$\(cat \/\S+\/admin-token\)"$/);
    await waitFor(
      async () => {
        const { stdout } = await execFileAsync('sh', ['-c', showTask.replace('/v1/tasks/100 ', `/v1/tasks/${task.nid} `)]);
        return (JSON.parse(stdout) as { state?: string }).state === 'succeeded';
      },
      { timeoutMs: 10_000, what: 'the demo task to succeed' },
    );
    const unauthenticated = await request(`${service}/v1/tasks/${task.nid}`);
    expect(unauthenticated.statusCode).toBe(401);
    await unauthenticated.body.dump();
    expect(out).toContain(`curl -s ${service}/v1/queue`);
    // Its cron queue comes due within seconds: the service runs the simulated hosting-dispatch for it.
    const queuesUrl = /curl -s (\S+\/_sim\/queues)/.exec(out)![1]!;
    const runs = await waitFor(
      async () => {
        const answer = (await (await request(queuesUrl)).body.json()) as { runs: Array<{ byService: boolean; ran: string[] }> };
        return answer.runs.length > 0 ? answer.runs : null;
      },
      { timeoutMs: 15_000, what: 'the demo dispatch' },
    );
    expect(runs[0]).toMatchObject({ byService: true, ran: ['cron'] });
  });
});
