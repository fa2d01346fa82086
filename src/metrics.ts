import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

/** One registry per app, so several apps (tests) never share counters. */
export function createMetrics(readGauges: () => SchedulerGauges, withDefaults = true) {
  const registry = new Registry();
  // The event-loop lag monitor samples on a timer (every 10 ms by default); twice a second keeps an idle service idle.
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'taskd_', eventLoopMonitoringPrecision: 500 });
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
  return {
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
}

export type Metrics = ReturnType<typeof createMetrics>;
