import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { TaskdError } from '../errors.js';
import { authorizeRead, requireAdminToken } from '../plugins/auth.js';
import { errorSchema, pauseAnswerSchema, queueViewSchema, reconcileAnswerSchema } from '../schemas.js';

const security = [{ bearerToken: [] }];

export const queueRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, scheduler } = app.taskd;
  // Reading the queue is open to loopback; every change needs the token, from loopback too.
  app.addHook('onRequest', async (request) => (request.method === 'GET' ? authorizeRead : requireAdminToken)(config, request));

  app.get(
    '/v1/queue',
    {
      schema: {
        operationId: 'getQueue',
        summary: 'Queue state: paused, depth, running, lanes, limits, orphans, reconciliation',
        tags: ['queue'],
        security,
        response: { 200: queueViewSchema, 401: errorSchema, 403: errorSchema },
      },
    },
    async () => {
      const stats = scheduler.stats();
      const reconciler = app.taskd.reconciler;
      return {
        paused: stats.paused,
        closing: stats.closing,
        depth: stats.queued,
        running: stats.running,
        awaitingLane: stats.awaitingLane,
        deferredBy: stats.deferredBy,
        startsLastMinute: stats.startsLastMinute,
        lanes: scheduler.lanesSnapshot(),
        laneCount: stats.lanes,
        limits: scheduler.limits,
        orphans: scheduler.orphans().map((o) => ({ ...o, since: new Date(o.since).toISOString() })),
        reconcile: {
          enabled: reconciler !== null,
          lastSuccessAt: reconciler?.lastSuccessAt ? new Date(reconciler.lastSuccessAt).toISOString() : null,
          lastError: reconciler?.lastError ?? null,
          consecutiveFailures: reconciler?.consecutiveFailures ?? 0,
        },
      };
    },
  );

  app.post(
    '/v1/queue/pause',
    { schema: { operationId: 'pauseQueue', summary: 'Stop starting tasks (running ones go on)', tags: ['queue'], security, response: { 200: pauseAnswerSchema, 401: errorSchema } } },
    async () => {
      scheduler.pause();
      return { paused: true };
    },
  );

  app.post(
    '/v1/queue/resume',
    { schema: { operationId: 'resumeQueue', summary: 'Start tasks again', tags: ['queue'], security, response: { 200: pauseAnswerSchema, 401: errorSchema } } },
    async () => {
      scheduler.resume();
      return { paused: false };
    },
  );

  app.post(
    '/v1/reconcile',
    {
      schema: {
        operationId: 'reconcile',
        summary: 'Reconcile with Aegir now',
        description: 'Queues what Aegir has queued and the service does not know, drops what Aegir no longer has queued, reports orphans.',
        tags: ['queue'],
        security,
        response: { 200: reconcileAnswerSchema, 401: errorSchema, 409: errorSchema, 502: errorSchema },
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
};
