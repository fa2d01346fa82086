import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { dispatchStatus, type Config } from '../config.js';
import { offDispatchView, type Dispatcher } from '../dispatcher.js';
import { TaskdError } from '../errors.js';
import type { Reconciler } from '../reconciler.js';
import type { Scheduler } from '../scheduler.js';
import { authorizeRead, requireAdminToken } from '../plugins/auth.js';
import { errorResponses, errorSchema, nidParamsSchema, pauseAnswerSchema, queueViewSchema, reconcileAnswerSchema, resolveAnswerSchema } from '../schemas.js';

const security = [{ bearerToken: [] }];

/** The queue as GET /v1/queue answers it and the event stream's queue event carries it. */
export function queueView(taskd: { config: Config; scheduler: Scheduler; reconciler: Reconciler | null; dispatcher: Dispatcher | null }) {
  const { config, scheduler, reconciler } = taskd;
  const stats = scheduler.stats();
  const status = dispatchStatus(config);
  return {
    paused: stats.paused,
    closing: stats.closing,
    depth: stats.queued,
    starting: stats.starting,
    running: stats.running,
    awaitingLane: stats.awaitingLane,
    deferredBy: stats.deferredBy,
    startsLastMinute: stats.startsLastMinute,
    lanes: scheduler.lanesSnapshot(),
    laneCount: stats.lanes,
    waiting: scheduler.list('queued', 100).flatMap((t) => {
      const waitingFor = scheduler.waitingFor(t);
      return waitingFor ? [{ nid: t.nid, lane: t.lane, waitingFor }] : [];
    }),
    limits: scheduler.limits,
    orphans: scheduler.orphans().map((o) => ({ ...o, since: new Date(o.since).toISOString() })),
    reconcile: {
      enabled: reconciler !== null,
      lastSuccessAt: reconciler?.lastSuccessAt ? new Date(reconciler.lastSuccessAt).toISOString() : null,
      lastError: reconciler?.lastError ?? null,
      consecutiveFailures: reconciler?.consecutiveFailures ?? 0,
    },
    dispatch: taskd.dispatcher?.view() ?? offDispatchView(config.dispatchCommand, status.on ? 'no frontend client' : status.why),
  };
}

export const queueRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, scheduler } = app.taskd;
  // Reading the queue is open to loopback; every change needs the token, from loopback too.
  app.addHook('onRequest', async (request) => (request.method === 'GET' ? authorizeRead : requireAdminToken)(config, request));

  app.get(
    '/v1/queue',
    {
      schema: {
        operationId: 'getQueue',
        summary: 'Queue state: paused, depth, running, lanes, limits, orphans, reconciliation, dispatch',
        tags: ['queue'],
        security,
        response: { 200: queueViewSchema, 401: errorSchema, 403: errorSchema },
      },
    },
    async () => queueView(app.taskd),
  );

  for (const { verb, operationId, summary, paused } of [
    { verb: 'pause', operationId: 'pauseQueue', summary: 'Stop starting tasks (running ones go on)', paused: true },
    { verb: 'resume', operationId: 'resumeQueue', summary: 'Start tasks again', paused: false },
  ]) {
    app.post(
      `/v1/queue/${verb}`,
      { schema: { operationId, summary, tags: ['queue'], security, response: { 200: pauseAnswerSchema, 401: errorSchema, 403: errorSchema } } },
      async () => {
        if (paused) scheduler.pause();
        else scheduler.resume();
        app.taskd.events.queueChanged();
        return { paused };
      },
    );
  }

  app.post(
    '/v1/reconcile',
    {
      schema: {
        operationId: 'reconcile',
        summary: 'Reconcile with Aegir now',
        description: 'Queues what Aegir has queued and the service does not know, drops what Aegir no longer has queued, reports orphans.',
        tags: ['queue'],
        security,
        response: { 200: reconcileAnswerSchema, 401: errorSchema, 403: errorSchema, 409: errorSchema, 502: errorSchema },
      },
    },
    async () => {
      const reconciler = app.taskd.reconciler;
      if (!reconciler) throw new TaskdError('FRONTEND_NOT_CONFIGURED');
      try {
        return await reconciler.runOnce();
      } catch (error) {
        throw new TaskdError('FRONTEND_FAILED', `The frontend did not answer as expected: ${(error as Error).message}`);
      }
    },
  );

  app.post(
    '/v1/orphans/:nid/resolve',
    {
      schema: {
        operationId: 'resolveOrphan',
        summary: 'Finish an orphan in Aegir now',
        description:
          'An orphan is a task Aegir shows processing that no process on this host runs. This finishes it in Aegir through hosting_taskd (an error entry with the reason in its log, then Aegir derives the status), without waiting for TASKD_ORPHAN_GRACE. Refused while a hosting-task of that nid runs on this host.',
        tags: ['queue'],
        security,
        params: nidParamsSchema,
        response: { 202: resolveAnswerSchema, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { orphans } = app.taskd;
      if (!orphans) throw new TaskdError('FRONTEND_NOT_CONFIGURED');
      const answer = await orphans.resolve(request.params.nid);
      if (answer.result === 'not_orphan') throw new TaskdError('ORPHAN_NOT_FOUND');
      if (answer.result === 'no_revision') throw new TaskdError('ORPHAN_NOT_FOUND', 'Aegir gave no revision for this orphan; reconcile first.');
      if (answer.result === 'running_here') throw new TaskdError('ORPHAN_RUNNING', `A hosting-task of this nid runs on this host (pid ${answer.pid}); it is not an orphan.`);
      return reply.code(202).send({ nid: request.params.nid, vid: answer.vid, queued: true });
    },
  );
};
