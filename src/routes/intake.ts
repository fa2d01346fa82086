import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { TaskdError } from '../errors.js';
import { bearerToken, tokenMatches } from '../plugins/auth.js';
import { refuseWhenQueueFull } from '../queue-limit.js';
import { deleteAnswerSchema, errorResponses, intakeAnswerSchema, nidParamsSchema, stopRequestSchema, taskWebhookSchema, webhookHeadersSchema } from '../schemas.js';
import { verify } from '../signature.js';

/** POST /v1/tasks: the webhook from hosting_taskd, or an operator queuing a task by hand. */
export const intakeRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, scheduler, replay } = app.taskd;
  const keys = config.secrets.map((s) => s.key);

  // A callback hook, not an async one: it runs on every intake request.
  const refuseWhileClosing = (_request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void) => {
    if (app.taskd.lifecycle.closing) done(new TaskdError('SHUTTING_DOWN'));
    else done();
  };

  /** Runs after size and content-type checks (the body parsers) and before the body is parsed or validated. */
  const authenticateIntake = async (request: FastifyRequest, reply: FastifyReply) => {
    const raw = (request.body as Buffer | undefined) ?? Buffer.alloc(0);
    const signature = request.headers['webhook-signature'];
    if (signature !== undefined) {
      if (keys.length === 0) throw new TaskdError('SIGNATURE_DISABLED');
      const header = (name: string) => {
        const value = request.headers[name];
        return typeof value === 'string' ? value : undefined;
      };
      const result = verify(keys, { id: header('webhook-id'), timestamp: header('webhook-timestamp'), signature: header('webhook-signature'), payload: raw });
      if (!result.ok) {
        throw new TaskdError(result.reason === 'missing' ? 'SIGNATURE_MISSING' : result.reason === 'stale' ? 'SIGNATURE_STALE' : 'SIGNATURE_INVALID');
      }
      const replayedNid = replay.get(result.msgId);
      if (replayedNid !== undefined) {
        app.taskd.metrics.duplicates.inc({ reason: 'replay' });
        const state = scheduler.get(replayedNid)?.state ?? 'queued';
        return reply.code(200).send({ nid: replayedNid, state, duplicate: true });
      }
      request.intake = { signed: true, msgId: result.msgId };
    } else {
      // Unsigned intake needs the admin token from loopback too: every hosted site shares loopback.
      const token = bearerToken(request);
      if (token === undefined) throw new TaskdError('SIGNATURE_MISSING');
      if (config.adminToken === undefined || !tokenMatches(config.adminToken.reveal(), token)) throw new TaskdError('UNAUTHORIZED');
      request.intake = { signed: false, msgId: null };
    }
    if (raw.length === 0) throw new TaskdError('INVALID_JSON', 'The request body is empty.');
    try {
      request.body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new TaskdError('INVALID_JSON');
    }
  };

  app.post(
    '/v1/tasks',
    {
      onRequest: config.rateLimit > 0 ? [refuseWhileClosing, app.rateLimit({ max: config.rateLimit, timeWindow: 60_000 })] : [refuseWhileClosing],
      preValidation: authenticateIntake,
      schema: {
        operationId: 'createTask',
        summary: 'Queue a task (webhook from hosting_taskd, or an operator)',
        description:
          'Checks run in this order: size (413), content type (415), signature or token (401), body (400). A replayed webhook-id, or a nid already queued or running, answers 200 with duplicate: true and does nothing. A new task beyond TASKD_MAX_QUEUED queued ones answers 503 TASKD_ERR_QUEUE_FULL.',
        tags: ['intake'],
        security: [{ webhookSignature: [] }, { bearerToken: [] }],
        headers: webhookHeadersSchema,
        body: taskWebhookSchema,
        response: { 202: intakeAnswerSchema, 200: intakeAnswerSchema, ...errorResponses(400, 401, 413, 415, 429, 503) },
      },
      // The hot path: its answers are built here from typed values, so they are stringified without
      // re-validating them on every request (the contract tests check them against the document).
      serializerCompiler: () => (data) => JSON.stringify(data),
    },
    async (request, reply) => {
      const intake = request.intake!;
      const { nid, rid, type, vid, changed, status } = request.body;
      if (status !== undefined && status !== 0) {
        // Cancelled in Aegir (hosting_task_cancel() sets warning in place): drop it here at once.
        const task = scheduler.droppedInAegir(nid, status);
        if (intake.msgId !== null) replay.remember(intake.msgId, nid);
        return reply.code(200).send({ nid, state: task?.state ?? 'cancelled' });
      }
      refuseWhenQueueFull(scheduler, config.maxQueued, nid);
      // Named fields, not a rest and a spread of the body: two fewer object copies a request.
      const { task, duplicate } = scheduler.submit({
        nid,
        rid,
        type,
        vid,
        changed,
        source: intake.signed ? 'webhook' : 'operator',
        confirmedAt: intake.signed ? Date.now() : null,
      });
      // Answered only once its record (or a duplicate's change) is written: JournalWriteError → 503.
      await scheduler.committed(duplicate ? undefined : task);
      if (intake.msgId !== null) replay.remember(intake.msgId, task.nid);
      if (duplicate) return reply.code(200).send({ nid: task.nid, state: task.state, duplicate: true });
      return reply.code(202).send({ nid: task.nid, state: task.state });
    },
  );

  app.post(
    '/v1/tasks/:nid/stop',
    {
      onRequest: config.rateLimit > 0 ? [app.rateLimit({ max: config.rateLimit, timeWindow: 60_000 })] : [],
      preValidation: authenticateIntake,
      schema: {
        operationId: 'stopTask',
        summary: 'Stop a task (the "Stop" action of hosting_taskd, or an operator)',
        description:
          'Signed by hosting_taskd like a webhook, or with the admin token. A queued task is dropped; a starting or running one gets SIGTERM to its process group (SIGKILL after TASKD_KILL_GRACE), ends cancelled, and is finished in Aegir as an error with the reason in its log.',
        tags: ['intake'],
        security: [{ webhookSignature: [] }, { bearerToken: [] }],
        params: nidParamsSchema,
        body: stopRequestSchema,
        response: { 200: deleteAnswerSchema, 202: deleteAnswerSchema, ...errorResponses(400, 401, 403, 404, 413, 415, 429) },
      },
    },
    async (request, reply) => {
      const { nid } = request.params;
      const { task, outcome } = scheduler.cancel(nid, true, request.body.reason);
      if (outcome === 'not_found') throw new TaskdError('TASK_NOT_FOUND');
      if (request.intake!.msgId !== null) replay.remember(request.intake!.msgId, nid);
      if (outcome === 'stopping') return reply.code(202).send({ nid, state: task!.state, stopping: true });
      return reply.code(200).send({ nid, state: task!.state });
    },
  );
};
