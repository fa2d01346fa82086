import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ErrorCode } from './errors.js';
import { frontendErrorKind, type FrontendErrorKind } from './frontend.js';
import { ACTIVE_STATES, TASK_STATES, WRITE_BACK_CAUSES } from './task.js';

export interface SchedulerGauges {
  queued: number;
  running: number;
  lanes: number;
  orphans: number;
  paused: boolean;
}

/** How a dispatch run ended: exit 0, another exit, the timeout, or the command never started. */
export const DISPATCH_RESULTS = ['ok', 'failed', 'timed_out', 'not_started'] as const;
export type DispatchResult = (typeof DISPATCH_RESULTS)[number];

/**
 * prom-client's gauges named like counters: promtool refuses a gauge ending in _total. The same
 * counts stay exported by type, without the suffix (nodejs_active_handles{type=…} and so on).
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

const FRONTEND_ERROR_KINDS = ['unreachable', 'timeout', 'unauthorized', 'http_status', 'bad_response', 'too_large'] as const;
// Fails to compile when a kind is added to FrontendErrorKind and not here.
const everyKindListed: [Exclude<FrontendErrorKind, (typeof FRONTEND_ERROR_KINDS)[number]>] extends [never] ? true : never = true;
void everyKindListed;

/**
 * Every value each labelled counter can take, so each series exists (at 0) from the start: a rate
 * or increase() over a series that appears with its first event misses that event.
 */
export const METRIC_LABELS = {
  source: ['webhook', 'operator', 'reconcile'],
  duplicateReason: ['replay', 'nid_active', 'stuck'],
  outcome: TASK_STATES.filter((s) => !ACTIVE_STATES.includes(s)),
  // What intake can refuse with (the error handler counts the code).
  rejection: [
    'BODY_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'SIGNATURE_MISSING', 'SIGNATURE_INVALID', 'SIGNATURE_STALE', 'SIGNATURE_DISABLED',
    'UNAUTHORIZED', 'INVALID_JSON', 'INVALID_REQUEST', 'RATE_LIMITED', 'SHUTTING_DOWN',
  ].map((name) => `TASKD_ERR_${name}` as ErrorCode),
  reconcileResult: ['ok', 'error'],
  frontendOperation: ['reconcile', 'lane_lookup', 'confirm', 'outcome', 'finish'],
  writeBackCause: WRITE_BACK_CAUSES,
  writeBackResult: ['finished', 'not_processing', 'not_found', 'retry'],
  frontendErrorKind: [...FRONTEND_ERROR_KINDS, 'unexpected'],
} as const;

/** One registry per app, so several apps (tests) never share counters. */
export function createMetrics(readGauges: () => SchedulerGauges, withDefaults = true) {
  const registry = new Registry();
  // Under their standard names (process_*, nodejs_*), so the usual Node.js and process dashboards work.
  // The event-loop lag monitor samples on a timer (every 10 ms by default); twice a second keeps an idle service idle.
  if (withDefaults) {
    collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 500 });
    for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
  }
  const gauge = (name: string, help: string, read: (g: SchedulerGauges) => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read(readGauges())); } });
  gauge('taskd_queue_depth', 'Tasks queued and not yet started.', (g) => g.queued);
  gauge('taskd_running_tasks', 'Tasks running now (including adopted ones).', (g) => g.running);
  gauge('taskd_lanes', 'Lanes (sites, platforms, servers) with queued or running tasks.', (g) => g.lanes);
  gauge('taskd_orphans', 'Tasks Aegir shows processing with no child here.', (g) => g.orphans);
  gauge('taskd_paused', '1 while the queue is paused.', (g) => (g.paused ? 1 : 0));
  const dispatchRuns = new Counter({ name: 'taskd_dispatch_runs_total', help: 'Runs of TASKD_DISPATCH_COMMAND (hosting-dispatch), by result.', labelNames: ['result'] as const, registers: [registry] });
  // Every result is shown from the start, so a rate() or an alert on "timed_out" works before the first one.
  for (const result of DISPATCH_RESULTS) dispatchRuns.inc({ result }, 0);
  const metrics = {
    registry,
    dispatchRuns,
    dispatchDuration: new Histogram({
      name: 'taskd_dispatch_duration_seconds',
      help: 'Run time of TASKD_DISPATCH_COMMAND (hosting-dispatch forks the queues\' runs and returns).',
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800],
      registers: [registry],
    }),
    tasksReceived: new Counter({ name: 'taskd_tasks_received_total', help: 'Tasks newly queued, by source.', labelNames: ['source'] as const, registers: [registry] }),
    duplicates: new Counter({ name: 'taskd_duplicates_total', help: 'Intake requests answered as duplicates, by reason.', labelNames: ['reason'] as const, registers: [registry] }),
    tasksStarted: new Counter({ name: 'taskd_tasks_started_total', help: 'Task attempts started.', registers: [registry] }),
    tasksEnded: new Counter({ name: 'taskd_tasks_ended_total', help: 'Tasks ended, by outcome.', labelNames: ['outcome'] as const, registers: [registry] }),
    webhookRejections: new Counter({ name: 'taskd_webhook_rejections_total', help: 'Intake requests refused, by reason.', labelNames: ['reason'] as const, registers: [registry] }),
    reconcileRuns: new Counter({ name: 'taskd_reconcile_runs_total', help: 'Reconciliations, by result.', labelNames: ['result'] as const, registers: [registry] }),
    frontendErrors: new Counter({ name: 'taskd_frontend_errors_total', help: 'Failed calls to the frontend, by operation and kind.', labelNames: ['operation', 'kind'] as const, registers: [registry] }),
    writeBacks: new Counter({
      name: 'taskd_write_backs_total',
      help: 'Finishes of dead drush runs sent to Aegir, by cause and by what Aegir answered (finished, not_processing, not_found, retry).',
      labelNames: ['cause', 'result'] as const,
      registers: [registry],
    }),
    logFollowers: new Gauge({ name: 'taskd_log_followers', help: 'Clients following a task log right now.', registers: [registry] }),
    queueToStart: new Histogram({
      name: 'taskd_queue_to_start_seconds',
      help: 'From intake to the task process having started.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 60, 300],
      registers: [registry],
    }),
    runDuration: new Histogram({
      name: 'taskd_run_duration_seconds',
      help: 'Run time of task attempts.',
      buckets: [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200],
      registers: [registry],
    }),
  };
  const L = METRIC_LABELS;
  for (const source of L.source) metrics.tasksReceived.inc({ source }, 0);
  for (const reason of L.duplicateReason) metrics.duplicates.inc({ reason }, 0);
  for (const outcome of L.outcome) metrics.tasksEnded.inc({ outcome }, 0);
  for (const reason of L.rejection) metrics.webhookRejections.inc({ reason }, 0);
  for (const result of L.reconcileResult) metrics.reconcileRuns.inc({ result }, 0);
  for (const operation of L.frontendOperation) for (const kind of L.frontendErrorKind) metrics.frontendErrors.inc({ operation, kind }, 0);
  for (const cause of L.writeBackCause) for (const result of L.writeBackResult) metrics.writeBacks.inc({ cause, result }, 0);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;

/** Counts a failed call to the frontend under its operation and the kind of failure. */
export function countFrontendError(metrics: Metrics, operation: string, error: unknown): void {
  metrics.frontendErrors.inc({ operation, kind: frontendErrorKind(error) });
}
