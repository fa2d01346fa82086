import { createReadStream } from 'node:fs';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { TaskdError } from '../errors.js';
import { authorizeRead, requireAdminToken } from '../plugins/auth.js';
import { logFilePath, readTail } from '../runner.js';
import type { WaitingFor } from '../admission.js';
import type { Task } from '../task.js';
import {
  deleteAnswerSchema,
  deleteQuerySchema,
  errorResponses,
  listQuerySchema,
  logQuerySchema,
  nidParamsSchema,
  taskDetailSchema,
  taskListSchema,
  taskQuerySchema,
  textResponse,
} from '../schemas.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function toTaskView(task: Task, waitingFor: WaitingFor | null) {
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
    waitingFor,
  };
}

const operatorSecurity = [{ bearerToken: [] }];

/** The operator's view of tasks: list, one task, its log, and removal. */
export const taskRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, scheduler } = app.taskd;

  const operatorRoutes: FastifyPluginAsyncZod = async (operator) => {
    // The list shows states only; one task carries its output, and a change needs the token anyway.
    operator.addHook('onRequest', async (request) =>
      (request.method === 'GET' && request.routeOptions.url === '/v1/tasks' ? authorizeRead : requireAdminToken)(config, request),
    );

    operator.get(
      '/v1/tasks',
      {
        schema: {
          operationId: 'listTasks',
          summary: 'List tasks: running, then queued, then ended (newest first)',
          tags: ['tasks'],
          security: operatorSecurity,
          querystring: listQuerySchema,
          response: { 200: taskListSchema, ...errorResponses(400, 401, 403) },
        },
      },
      async (request) => ({ tasks: scheduler.list(request.query.state, request.query.limit).map((t) => toTaskView(t, scheduler.waitingFor(t))) }),
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
          response: { 200: taskDetailSchema, ...errorResponses(400, 401, 404) },
        },
      },
      async (request) => {
        const task = scheduler.get(request.params.nid);
        if (!task) throw new TaskdError('TASK_NOT_FOUND');
        const tail = await readTail(logFilePath(config.logDir, task.nid), request.query.tail);
        const count = (type: string) => tail.text.match(new RegExp(`^\\[${type}\\] `, 'gm'))?.length ?? 0;
        return { ...toTaskView(task, scheduler.waitingFor(task)), output: tail.text, outputTruncated: tail.truncated, outputBytes: tail.size, warnings: count('warning'), errors: count('error') };
      },
    );

    operator.get(
      '/v1/tasks/:nid/log',
      {
        schema: {
          operationId: 'getTaskLog',
          summary: "The task's output (stdout and stderr interleaved), as text",
          description:
            'With ?follow=1 the answer streams the output as it is written and ends when the task ends (or when the service stops, after a last line saying so). Follows and reads of a whole log count as long-lived answers: at most TASKD_MAX_STREAMS are open at once (503 TASKD_ERR_TOO_MANY_STREAMS beyond) and TASKD_MAX_STREAMS_PER_TASK for one task (429 TASKD_ERR_TOO_MANY_TASK_STREAMS).',
          tags: ['tasks'],
          security: operatorSecurity,
          params: nidParamsSchema,
          querystring: logQuerySchema,
          response: { 200: textResponse('text/plain', "The task's output as it was written, UTF-8 text."), ...errorResponses(400, 401, 404, 429, 503) },
        },
      },
      async (request, reply) => {
        const { nid } = request.params;
        if (!scheduler.get(nid)) throw new TaskdError('TASK_NOT_FOUND');
        const file = logFilePath(config.logDir, nid);
        reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store');
        if (request.query.follow !== '1' && request.query.follow !== 'true') {
          const { size } = await readTail(file, 0);
          if (size === 0) return reply.send('');
          // A big log read by a slow client stays open as long as a follow: it counts and is cut on close
          // like one (cut, not ended: a body that stops early must not look complete).
          const whole = createReadStream(file);
          try {
            app.taskd.streams.open(`task:${nid}`, reply.raw, () => whole.destroy(new Error('the service is stopping')));
          } catch (error) {
            whole.destroy();
            throw error;
          }
          // Streams are sent as they are (the string schema documents the text); the cast only satisfies the type provider.
          return reply.send(whole as unknown as string);
        }
        const { metrics, streams, logFollowers } = app.taskd;
        const stream = logFollowers.follow(file, { ended: () => !scheduler.isActive(nid) });
        try {
          streams.open(`task:${nid}`, reply.raw, () => stream.finish('--- aegir-taskd: the service is stopping; this follow ends here, the task goes on\n'));
        } catch (error) {
          stream.destroy();
          throw error;
        }
        metrics.logFollowers.inc();
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
          description: 'A queued task is dropped. Aegir still lists it queued, so with a frontend it is held (the reconciler does not queue it again) until Aegir changes it: cancel it in Aegir too. With ?force=1 a running one gets SIGTERM to its process group (SIGKILL after TASKD_KILL_GRACE), ends cancelled, and is finished in Aegir as an error with the reason in its log.',
          tags: ['tasks'],
          security: operatorSecurity,
          params: nidParamsSchema,
          querystring: deleteQuerySchema,
          response: { 200: deleteAnswerSchema, 202: deleteAnswerSchema, ...errorResponses(400, 401, 403, 404, 409) },
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

