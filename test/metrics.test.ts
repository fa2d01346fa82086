import { spawnSync } from 'node:child_process';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRIC_LABELS } from '../src/metrics.js';
import { tool } from './deploy/deploy-files.js';
import { startService, type ServiceProcess } from './e2e/service-process.js';
import { tempDir } from './helpers.js';

const promtool = tool('promtool', "bash .ci/install-deploy-tools installs Debian's prometheus package");

let service: ServiceProcess;
let exposition: string;
beforeAll(async () => {
  service = await startService({ TASKD_LOG_DIR: await tempDir(), TASKD_COMMAND: JSON.stringify(['true', '{nid}']) });
  // Before any task, webhook or reconcile: every labelled series must already be there.
  const response = await request(`${service.url}/metrics`);
  exposition = await response.body.text();
});
afterAll(async () => {
  service.child.kill('SIGKILL');
  await service.exited;
});

/** name{labels} value lines, without comments. */
const samples = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

describe('/metrics of the running service', () => {
  it.runIf(promtool)('passes promtool check metrics', () => {
    const result = spawnSync(promtool!, ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
    expect({ status: result.status, output: `${result.stdout}${result.stderr}`.trim() }).toEqual({ status: 0, output: '' });
  });

  it.runIf(promtool)('would be refused by promtool with a gauge named _total (the check can fail)', () => {
    const bad = `${exposition}# HELP nodejs_active_handles_total x\n# TYPE nodejs_active_handles_total gauge\nnodejs_active_handles_total 1\n`;
    expect(spawnSync(promtool!, ['check', 'metrics'], { input: bad, encoding: 'utf8' }).status).not.toBe(0);
  });

  it('exports the process and Node.js metrics under their standard names, and no gauge named _total', () => {
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_version_info', 'nodejs_active_handles']) {
      expect(exposition).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    expect(exposition).not.toMatch(/^# TYPE taskd_(process|nodejs)_/m);
    expect(exposition.match(/^# TYPE \S+_total gauge$/gm)).toBeNull();
  });

  it('has every labelled counter at 0 for each of its known labels before the first event', () => {
    const lines = samples(exposition);
    const has = (series: string) => expect(lines, series).toContain(`${series} 0`);
    for (const source of METRIC_LABELS.source) has(`taskd_tasks_received_total{source="${source}"}`);
    for (const reason of METRIC_LABELS.duplicateReason) has(`taskd_duplicates_total{reason="${reason}"}`);
    for (const outcome of METRIC_LABELS.outcome) has(`taskd_tasks_ended_total{outcome="${outcome}"}`);
    for (const reason of METRIC_LABELS.rejection) has(`taskd_webhook_rejections_total{reason="${reason}"}`);
    for (const result of METRIC_LABELS.reconcileResult) has(`taskd_reconcile_runs_total{result="${result}"}`);
    for (const operation of METRIC_LABELS.frontendOperation) for (const kind of METRIC_LABELS.frontendErrorKind) has(`taskd_frontend_errors_total{operation="${operation}",kind="${kind}"}`);
    expect(METRIC_LABELS.outcome).toEqual(['succeeded', 'warning', 'failed', 'timed_out', 'skipped', 'cancelled', 'stuck']);
  });
});

