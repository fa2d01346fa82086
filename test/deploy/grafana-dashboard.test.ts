import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startService, type ServiceProcess } from '../e2e/service-process.js';
import { tempDir } from '../helpers.js';
import { readDeployFile, tool } from './deploy-files.js';

const promtool = tool('promtool', "bash .ci/install-deploy-tools installs Debian's prometheus package");

interface Panel {
  title?: string;
  type: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}

const FUNCTIONS_AND_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan']);

/** The metric names a PromQL expression reads: identifiers that are not functions, keywords, labels, strings or durations. */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/(?<![\w$.])([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)].map((m) => m[1]!).filter((n) => !FUNCTIONS_AND_KEYWORDS.has(n.toLowerCase()));
}

let service: ServiceProcess;
let exposed: Set<string>;
beforeAll(async () => {
  service = await startService({ TASKD_LOG_DIR: await tempDir(), TASKD_COMMAND: JSON.stringify(['true', '{nid}']) });
  const text = await (await request(`${service.url}/metrics`)).body.text();
  // Every sample's name, and every declared family (a labelled histogram such as the GC one has no
  // sample before its first observation) with the series names its type gives it.
  exposed = new Set(text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => /^[^{ ]+/.exec(l)![0]));
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    const suffixes = type === 'histogram' ? ['_bucket', '_sum', '_count'] : type === 'summary' ? ['', '_sum', '_count'] : [''];
    for (const suffix of suffixes) exposed.add(`${name!}${suffix}`);
  }
});
afterAll(async () => {
  service.child.kill('SIGKILL');
  await service.exited;
});

async function expressions(): Promise<Array<{ panel: string; expr: string }>> {
  const dashboard = JSON.parse(await readDeployFile('aegir-taskd.grafana.json')) as { panels: Panel[]; templating: { list: Array<{ query?: unknown }> } };
  const flat = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...flat(p.panels ?? [])]);
  return flat(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title ?? p.type, expr: t.expr })));
}

describe('the Grafana dashboard', () => {
  it('reads only metrics the service exposes', async () => {
    const all = await expressions();
    expect(all.length).toBeGreaterThan(15);
    for (const { panel, expr } of all) {
      const names = metricNames(expr);
      expect(names.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(exposed.has(name), `${panel}: ${name} in ${expr}`).toBe(true);
    }
    // The variable that lists instances, too.
    const dashboard = JSON.parse(await readDeployFile('aegir-taskd.grafana.json')) as { templating: { list: Array<{ name: string; definition?: string }> } };
    const instance = dashboard.templating.list.find((v) => v.name === 'instance')!;
    expect(exposed.has(/label_values\((\w+),/.exec(instance.definition!)![1]!)).toBe(true);
  });

  it('finds a name the service does not expose (the check can fail)', () => {
    expect(metricNames('sum by (outcome) (rate(taskd_process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval]))')).toEqual(['taskd_process_cpu_seconds_total']);
    expect(exposed.has('taskd_process_cpu_seconds_total')).toBe(false);
  });

  it.runIf(promtool)('has only expressions promtool parses', async () => {
    const dir = await tempDir();
    const rules = (await expressions()).map(({ expr }, i) => `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*'))}`);
    const file = path.join(dir, 'rules.yml');
    await fs.writeFile(file, `groups:\n  - name: dashboard\n    rules:\n${rules.join('\n')}\n`);
    const result = spawnSync(promtool!, ['check', 'rules', file], { encoding: 'utf8' });
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
  });
});
