import { z } from 'zod';
import { errorCodes } from './errors.js';
import { TASK_STATES } from './scheduler.js';

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
  })
  .meta({ id: 'TaskWebhook' });
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

export const taskViewSchema = z
  .object({
    nid: z.number().int(),
    rid: z.number().int().nullable(),
    type: z.string().nullable(),
    vid: z.number().int().nullable(),
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
  })
  .meta({ id: 'Task' });

export const taskDetailSchema = taskViewSchema
  .extend({
    output: z.string().describe('The end of the task output (stdout and stderr interleaved).'),
    outputTruncated: z.boolean(),
    outputBytes: z.number().int(),
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
    nid: z.number().int(),
    rid: z.number().int().nullable(),
    type: z.string().nullable(),
    vid: z.number().int().nullable(),
    since: z.string(),
    reason: z.string(),
  })
  .meta({ id: 'Orphan' });

export const queueViewSchema = z
  .object({
    paused: z.boolean(),
    closing: z.boolean(),
    depth: z.number().int().describe('Tasks queued and not yet started.'),
    running: z.number().int(),
    awaitingLane: z.number().int(),
    deferredBy: z.enum(['rate', 'load']).nullable().describe('Which start gate is holding tasks back, if any.'),
    startsLastMinute: z.number().int(),
    lanes: z.array(z.object({ lane: z.string(), queued: z.number().int(), running: z.number().int().nullable() })).describe('At most 100 lanes.'),
    laneCount: z.number().int(),
    limits: z.object({
      concurrency: z.number().int(),
      maxStartsPerMinute: z.number().int().nullable(),
      maxLoad: z.number().nullable(),
      taskTimeoutSeconds: z.number(),
    }),
    orphans: z.array(orphanSchema),
    reconcile: z.object({
      enabled: z.boolean(),
      lastSuccessAt: isoTime,
      lastError: z.string().nullable(),
      consecutiveFailures: z.number().int(),
    }),
  })
  .meta({ id: 'Queue' });

export const pauseAnswerSchema = z.object({ paused: z.boolean() }).meta({ id: 'PauseState' });

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
