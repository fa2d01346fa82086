import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { healthSchema, readySchema, textResponse } from '../schemas.js';

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get('/healthz', { schema: { operationId: 'getHealth', summary: 'Liveness', tags: ['health'], security: [], response: { 200: healthSchema } } }, async () => ({ status: 'ok' as const }));

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness',
        security: [],
        description: 'Without a frontend: ready once listening. With one: 503 until the first reconcile has succeeded, and whenever the last good one is older than three intervals.',
        tags: ['health'],
        response: { 200: readySchema, 503: readySchema },
      },
    },
    async (_request, reply) => {
      const { lifecycle, reconciler } = app.taskd;
      if (lifecycle.closing) return reply.code(503).send({ ready: false, reason: 'shutting down' });
      if (!app.server.listening) return reply.code(503).send({ ready: false, reason: 'not listening yet' });
      if (reconciler && !reconciler.isFresh()) {
        const reason = reconciler.lastSuccessAt === null ? 'no successful reconcile yet' : 'the last successful reconcile is older than three intervals';
        // Anyone may ask; what the frontend answered (addresses, messages) is for operators, in GET /v1/queue.
        return reply.code(503).send({ ready: false, reason: reconciler.lastError ? `${reason}; the frontend's error is in GET /v1/queue (reconcile.lastError)` : reason });
      }
      return { ready: true };
    },
  );

  app.get(
    '/metrics',
    { schema: { operationId: 'getMetrics', summary: 'Prometheus metrics (text exposition format)', tags: ['health'], security: [], response: { 200: textResponse('text/plain', 'Prometheus text exposition format 0.0.4.') } } },
    async (_request, reply) => {
      const { registry } = app.taskd.metrics;
      reply.type(registry.contentType);
      return registry.metrics();
    },
  );
};
