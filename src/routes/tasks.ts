import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TaskdError } from '../errors.js';
import { authorizeOperator, bearerToken, isLoopback, tokenMatches } from '../plugins/auth.js';
import { createReadStream } from 'node:fs';
import { followLog } from '../log-stream.js';
import { logFilePath, readTail } from '../runner.js';
import type { Task } from '../scheduler.js';
import {
  deleteAnswerSchema,
  deleteQuerySchema,
  errorSchema,
  intakeAnswerSchema,
  listQuerySchema,
  nidParamsSchema,
  taskDetailSchema,
  taskListSchema,
  logQuerySchema,
  taskQuerySchema,
  taskWebhookSchema,
} from '../schemas.js';
import { verify } from '../signature.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function toTaskView(task: Task) {
  return {
    nid: task.nid,
    rid: task.rid,
    type: task.type,
    vid: task.vid,
    changed: task.changed,
    lane: task.lane,
    state: task.state,
    source: task.source,
    receivedAt: iso(task.receivedAt),
    startedAt: iso(task.startedAt),
    endedAt: iso(task.endedAt),
    attempts: task.attempts,
    pid: task.pid,
    exitCode: task.exitCode,
    signal: task.signal,
    aegirStatus: task.aegirStatus,
    outcomeConfirmed: task.outcomeConfirmed,
    message: task.message,
  };
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, errorSchema]));
const operatorSecurity = [{ bearerToken: [] }];

export const taskRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, scheduler, replay } = app.taskd;
  const keys = config.secrets.map((s) => s.key);

  const refuseWhileClosing = async () => {
    if (app.taskd.lifecycle.closing) throw new TaskdError('SHUTTING_DOWN');
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
      const token = bearerToken(request);
      if (config.adminToken !== undefined) {
        if (token === undefined) throw new TaskdError('SIGNATURE_MISSING');
        if (!tokenMatches(config.adminToken.reveal(), token)) throw new TaskdError('UNAUTHORIZED');
      } else if (!isLoopback(request.socket.remoteAddress)) {
        throw new TaskdError('FORBIDDEN', 'Unsigned intake needs TASKD_ADMIN_TOKEN, or a loopback client.');
      }
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
          'Checks run in this order: size (413), content type (415), signature or token (401/403), body (400). A replayed webhook-id, or a nid already queued or running, answers 200 with duplicate: true and does nothing.',
        tags: ['intake'],
        security: [{ webhookSignature: [] }, { bearerToken: [] }],
        body: taskWebhookSchema,
        response: { 202: intakeAnswerSchema, 200: intakeAnswerSchema, ...errors(400, 401, 403, 413, 415, 429, 503) },
      },
      // The hot path: its answers are built here from typed values, so they are stringified without
      // re-validating them on every request (the contract tests check them against the document).
      serializerCompiler: () => (data) => JSON.stringify(data),
    },
    async (request, reply) => {
      const intake = request.intake!;
      const { task, duplicate } = scheduler.submit({
        ...request.body,
        source: intake.signed ? 'webhook' : 'operator',
        confirmedAt: intake.signed ? Date.now() : null,
      });
      if (intake.msgId !== null) replay.remember(intake.msgId, task.nid);
      if (duplicate) return reply.code(200).send({ nid: task.nid, state: task.state, duplicate: true });
      return reply.code(202).send({ nid: task.nid, state: task.state });
    },
  );

  const operatorRoutes: FastifyPluginAsyncZod = async (operator) => {
    operator.addHook('onRequest', async (request) => authorizeOperator(config, request));

    operator.get(
      '/v1/tasks',
      {
        schema: {
          operationId: 'listTasks',
          summary: 'List tasks: running, then queued, then ended (newest first)',
          tags: ['tasks'],
          security: operatorSecurity,
          querystring: listQuerySchema,
          response: { 200: taskListSchema, ...errors(400, 401, 403) },
        },
      },
      async (request) => ({ tasks: scheduler.list(request.query.state, request.query.limit).map(toTaskView) }),
    );

    operator.get(
      '/v1/tasks/:nid',
      {
        schema: {
          operationId: 'getTask',
          summary: 'One task, with the end of its output',
          tags: ['tasks'],
          security: operatorSecurity,
          params: nidParamsSchema,
          querystring: taskQuerySchema,
          response: { 200: taskDetailSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const task = scheduler.get(request.params.nid);
        if (!task) throw new TaskdError('TASK_NOT_FOUND');
        const tail = await readTail(logFilePath(config.logDir, task.nid), request.query.tail);
        return { ...toTaskView(task), output: tail.text, outputTruncated: tail.truncated, outputBytes: tail.size };
      },
    );

    operator.get(
      '/v1/tasks/:nid/log',
      {
        schema: {
          operationId: 'getTaskLog',
          summary: "The task's output (stdout and stderr interleaved), as text",
          description: 'With ?follow=1 the answer streams the output as it is written and ends when the task ends.',
          tags: ['tasks'],
          security: operatorSecurity,
          params: nidParamsSchema,
          querystring: logQuerySchema,
          response: { 200: z.string().describe('text/plain'), ...errors(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        const { nid } = request.params;
        if (!scheduler.get(nid)) throw new TaskdError('TASK_NOT_FOUND');
        const file = logFilePath(config.logDir, nid);
        reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store');
        if (request.query.follow !== '1' && request.query.follow !== 'true') {
          const { size } = await readTail(file, 0);
          // Streams are sent as they are (the string schema documents the text); the cast only satisfies the type provider.
          return reply.send(size === 0 ? '' : (createReadStream(file) as unknown as string));
        }
        const { metrics } = app.taskd;
        metrics.logFollowers.inc();
        const stream = followLog(file, {
          ended: () => {
            const state = scheduler.get(nid)?.state;
            return state !== 'running' && state !== 'queued';
          },
        });
        stream.once('close', () => metrics.logFollowers.dec());
        // A client that disconnects ends the follow at once.
        request.raw.once('close', () => stream.destroy());
        return reply.send(stream as unknown as string);
      },
    );

    operator.delete(
      '/v1/tasks/:nid',
      {
        schema: {
          operationId: 'deleteTask',
          summary: 'Drop a queued task; stop a running one with ?force=1',
          description: 'A stopped drush leaves its task "processing" in Aegir: it will be reported as an orphan.',
          tags: ['tasks'],
          security: operatorSecurity,
          params: nidParamsSchema,
          querystring: deleteQuerySchema,
          response: { 200: deleteAnswerSchema, 202: deleteAnswerSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        const force = request.query.force === '1' || request.query.force === 'true';
        const { task, outcome } = scheduler.cancel(request.params.nid, force);
        if (outcome === 'not_found') throw new TaskdError('TASK_NOT_FOUND');
        if (outcome === 'running') throw new TaskdError('TASK_RUNNING');
        if (outcome === 'stopping') return reply.code(202).send({ nid: task!.nid, state: task!.state, stopping: true });
        return reply.code(200).send({ nid: task!.nid, state: task!.state });
      },
    );
  };
  await app.register(operatorRoutes);
};

