import { z } from 'zod';
import { errorCodes } from './errors.js';
import { TASK_STATES } from './task.js';

const id32 = z.number().int().positive().max(4_294_967_295);

/** What the hosting_taskd module (or an operator) posts when a task is queued. */
export const taskWebhookSchema = z
  .object({
    nid: id32.describe('Node id of the Aegir task.'),
    rid: id32.optional().describe('Node id of the site, platform or server the task acts on; its lane.'),
    type: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a task type such as verify or login-reset')
      .optional()
      .describe('Aegir task type, e.g. verify, install, backup.'),
    vid: id32.optional().describe('Revision id of the task node when it was queued.'),
    changed: z.number().int().nonnegative().max(253_402_300_799).optional().describe('Unix time the task node last changed; orders tasks.'),
    status: z
      .number()
      .int()
      .min(-1)
      .max(3)
      .optional()
      .describe("Aegir's task_status when it is not 0 (queued): the task was cancelled or ended in Aegir, so a task queued here is dropped and nothing is queued."),
  })
  .meta({ id: 'TaskWebhook' });

export const stopRequestSchema = z
  .object({ reason: z.string().min(1).max(200).describe('Who stopped it, as Aegir\'s task log and the task show it, e.g. "stopped by admin".') })
  .meta({ id: 'StopRequest' });
export type TaskWebhook = z.output<typeof taskWebhookSchema>;

export const taskStateSchema = z.enum(TASK_STATES).meta({ id: 'TaskState' });

export const intakeAnswerSchema = z
  .object({
    nid: z.number().int(),
    state: taskStateSchema,
    duplicate: z.boolean().optional(),
  })
  .meta({ id: 'IntakeAnswer' });

const isoTime = z.string().nullable();

/** What names a task in Aegir, shared by every view of one. */
const taskIdentity = {
  nid: z.number().int(),
  rid: z.number().int().nullable(),
  type: z.string().nullable(),
  vid: z.number().int().nullable(),
};

export const waitingForSchema = z
  .object({
    reason: z
      .enum(['next', 'lane_unknown', 'lane_busy', 'retry', 'paused', 'closing', 'concurrency', 'rate', 'load', 'disk', 'pause_file'])
      .describe(
        'lane_busy: another task of its lane runs or waits before it (nid); concurrency: TASKD_CONCURRENCY tasks run; rate: the starts-per-minute limit (until); load: the load gate (load, limit); disk: too little free space (path, freeMb, limit); pause_file: the pause file exists (path); lane_unknown: waiting for the frontend to tell its rid; retry: runs again at until; next: starts once older lane heads have.',
      ),
    message: z.string(),
    nid: z.number().int().optional(),
    until: z.string().optional(),
    load: z.number().optional(),
    limit: z.number().optional(),
    path: z.string().optional(),
    freeMb: z.number().int().nullable().optional(),
  })
  .meta({ id: 'WaitingFor' });

export const taskViewSchema = z
  .object({
    ...taskIdentity,
    changed: z.number().int().nullable(),
    lane: z.string().nullable().describe('rid:<rid>, or nid:<nid> for a task with a lane of its own; null while its rid is being looked up.'),
    state: taskStateSchema,
    source: z.enum(['webhook', 'operator', 'reconcile', 'adopted']),
    receivedAt: isoTime,
    startedAt: isoTime,
    endedAt: isoTime,
    attempts: z.number().int(),
    pid: z.number().int().nullable(),
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    aegirStatus: z.number().int().nullable().describe('hosting_task.task_status after the run: 1 success, 2 error, 3 warning.'),
    outcomeConfirmed: z.boolean().nullable().describe('false while the outcome is taken from the exit code because Aegir could not be asked.'),
    message: z.string().nullable(),
    waitingFor: waitingForSchema.nullable().describe('Why a queued task has not started; null once it is starting, running or ended.'),
  })
  .meta({ id: 'Task' });

export const taskDetailSchema = taskViewSchema
  .extend({
    output: z.string().describe('The end of the task output (stdout and stderr interleaved).'),
    outputTruncated: z.boolean(),
    outputBytes: z.number().int(),
    warnings: z.number().int().describe("Aegir's warning entries seen in the output so far (hosting_taskd tees them as [warning] lines)."),
    errors: z.number().int().describe("Aegir's error entries seen in the output so far ([error] lines)."),
  })
  .meta({ id: 'TaskDetail' });

export const taskListSchema = z.object({ tasks: z.array(taskViewSchema) }).meta({ id: 'TaskList' });

export const listQuerySchema = z.object({
  state: taskStateSchema.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
});

export const nidParamsSchema = z.object({ nid: z.coerce.number().int().positive().max(4_294_967_295) });

export const taskQuerySchema = z.object({
  tail: z.coerce.number().int().min(0).max(1_048_576).default(262_144).describe('Bytes of output to return from the end of the log.'),
});

export const logQuerySchema = z.object({
  follow: z.enum(['0', '1', 'true', 'false']).optional().describe('1 streams the output as it is written, until the task ends.'),
});

export const deleteQuerySchema = z.object({
  force: z.enum(['0', '1', 'true', 'false']).optional().describe('1 stops a running task (SIGTERM to its process group, SIGKILL after the grace period).'),
});

export const orphanSchema = z
  .object({
    ...taskIdentity,
    since: z.string(),
    reason: z.string(),
  })
  .meta({ id: 'Orphan' });

const hostingQueueViewSchema = z.object({
  name: z.string(),
  enabled: z.boolean(),
  last: isoTime.describe('When the queue last ran (hosting_queue_<name>_last_run); null when never.'),
  frequency: z.number().int().describe("Seconds between runs: hosting's calc_frequency."),
  next: z.string().describe('last + frequency: from then on hosting-dispatch runs it.'),
});

export const dispatchViewSchema = z
  .object({
    enabled: z.boolean().describe('Whether the service runs TASKD_DISPATCH_COMMAND when a queue is due (it needs a frontend).'),
    command: z.array(z.string()).nullable(),
    state: z
      .enum(['off', 'waiting_for_frontend', 'frontend_down', 'not_reported', 'disabled_in_aegir', 'no_queue_enabled', 'scheduled', 'confirming', 'starting', 'running', 'closed'])
      .describe(
        'off: not configured; frontend_down: no dispatch until the frontend answers; not_reported: the queue listing has no due times; disabled_in_aegir: hosting_dispatch_enabled is off; scheduled: waits for nextStartAt; confirming: reading the listing again just before a start; starting: handing the command to its process; running: the command runs.',
      ),
    message: z.string(),
    aegirEnabled: z.boolean().nullable().describe('hosting_dispatch_enabled as last listed.'),
    listedAt: isoTime.describe('When the listing the due times come from was requested.'),
    nextQueue: hostingQueueViewSchema.omit({ enabled: true }).nullable().describe('The enabled queue that comes due first.'),
    nextStartAt: isoTime.describe('When the command starts next: the earliest due time, at least TASKD_DISPATCH_MIN_INTERVAL after the last start.'),
    running: z.object({ pid: z.number().int().nullable(), startedAt: isoTime, due: z.array(z.string()) }).nullable(),
    lastRun: z
      .object({
        startedAt: z.string(),
        endedAt: z.string(),
        result: z.enum(['ok', 'failed', 'timed_out', 'not_started']),
        exitCode: z.number().int().nullable(),
        signal: z.string().nullable(),
        durationSeconds: z.number(),
        due: z.array(z.string()).describe('The queues that were due when it started.'),
        message: z.string().nullable(),
      })
      .nullable(),
    runs: z.number().int().describe('Runs started since the service started.'),
    queues: z.array(hostingQueueViewSchema).describe("Hosting's queues but tasks, as last listed."),
    minIntervalSeconds: z.number().nullable(),
    timeoutSeconds: z.number().nullable(),
  })
  .meta({ id: 'Dispatch' });

export const queueViewSchema = z
  .object({
    paused: z.boolean(),
    closing: z.boolean(),
    depth: z.number().int().describe('Tasks queued and not yet started.'),
    starting: z.number().int().describe('Tasks confirmed with Aegir and being handed to their process.'),
    running: z.number().int().describe('Tasks whose process has its task.'),
    awaitingLane: z.number().int(),
    deferredBy: z.enum(['rate', 'load', 'disk', 'pause_file']).nullable().describe('Which start gate is holding tasks back, if any.'),
    startsLastMinute: z.number().int(),
    lanes: z.array(z.object({ lane: z.string(), queued: z.number().int(), running: z.number().int().nullable().describe('The nid that holds the lane, starting or running.') })).describe('At most 100 lanes.'),
    laneCount: z.number().int(),
    waiting: z.array(z.object({ nid: z.number().int(), lane: z.string().nullable(), waitingFor: waitingForSchema })).describe('The oldest queued tasks (at most 100) and why each has not started.'),
    limits: z.object({
      concurrency: z.number().int(),
      maxStartsPerMinute: z.number().int().nullable(),
      maxLoad: z.number().nullable(),
      maxLoadPerCpu: z.number().nullable(),
      minFreeDiskMb: z.number().int().nullable(),
      diskPath: z.string().nullable(),
      pauseFile: z.string().nullable(),
      taskTimeoutSeconds: z.number(),
    }),
    orphans: z.array(orphanSchema),
    reconcile: z.object({
      enabled: z.boolean(),
      lastSuccessAt: isoTime,
      lastError: z.string().nullable(),
      consecutiveFailures: z.number().int(),
    }),
    dispatch: dispatchViewSchema.describe("Aegir's other queues (cron, backups…): the next due queue and the last run of hosting-dispatch."),
  })
  .meta({ id: 'Queue' });

export const pauseAnswerSchema = z.object({ paused: z.boolean() }).meta({ id: 'PauseState' });

export const resolveAnswerSchema = z
  .object({ nid: z.number().int(), vid: z.number().int(), queued: z.literal(true).describe('The finish is in the outbox; Aegir shows the task as error once it is delivered.') })
  .meta({ id: 'ResolveAnswer' });

export const deleteAnswerSchema = z
  .object({ nid: z.number().int(), state: taskStateSchema, stopping: z.boolean().optional() })
  .meta({ id: 'DeleteAnswer' });

export const errorSchema = z
  .object({
    error: z.enum(errorCodes as [string, ...string[]]),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: 'Error' });

/** The same error body for each of these statuses, for a route's response schemas. */
export const errorResponses = (...statuses: number[]) => Object.fromEntries(statuses.map((status) => [status, errorSchema]));

/** A response that is not JSON, declared with the media type it is served with (generated clients parse by it). */
export const textResponse = (mediaType: string, description: string) => ({ description, content: { [mediaType]: { schema: z.string() } } });

/** What a signed webhook carries (Standard Webhooks v1), so a generated client can send one; an operator sends none of them. */
export const webhookHeadersSchema = z.looseObject({
  'webhook-id': z.string().optional().describe('Unique message id; a repeat within 10 minutes is answered as a duplicate.'),
  'webhook-timestamp': z.string().optional().describe('Unix seconds when the webhook was signed; refused more than 300 seconds from now.'),
  'webhook-signature': z.string().optional().describe('Space-separated `v1,<base64 HMAC-SHA256>` over `<webhook-id>.<webhook-timestamp>.<raw body>`.'),
});

export const healthSchema = z.object({ status: z.literal('ok') });
export const readySchema = z.object({ ready: z.boolean(), reason: z.string().optional() }).meta({ id: 'Readiness' });

export const reconcileAnswerSchema = z
  .object({
    listed: z.number().int(),
    queued: z.array(z.number().int()),
    cancelled: z.array(z.number().int()),
    orphans: z.array(z.number().int()),
    lanesLearned: z.array(z.number().int()),
    corrected: z.array(z.number().int()),
  })
  .meta({ id: 'ReconcileReport' });

const msOrNull = z.number().int().nullable();
export const activitySchema = z
  .object({
    slotMs: z.number().int().describe('Width of one slot.'),
    from: z.number().int().describe('Start of the first slot, ms since the epoch.'),
    to: z.number().int().describe('Start of the last slot (the current one).'),
    slots: z
      .array(z.object({ at: z.number().int(), queuedMax: z.number().int(), runningMax: z.number().int(), queued: z.number().int(), running: z.number().int() }))
      .describe('Queued and running (starting included) per slot of the last hour: the highest seen in the slot and the last.'),
    byType: z
      .array(z.object({ type: z.string(), count: z.number().int(), waitMedianMs: msOrNull, waitMaxMs: msOrNull, runMedianMs: msOrNull, runMaxMs: msOrNull }))
      .describe('Tasks ended in the last hour (at most the last 500) by task type: queue-to-start and run time.'),
  })
  .meta({ id: 'Activity' });
