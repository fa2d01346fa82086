import { PassThrough } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireAdminToken } from '../plugins/auth.js';
import { activitySchema, errorResponses, textResponse } from '../schemas.js';

const security = [{ bearerToken: [] }];
/** A client this far behind is dropped; it reconnects and reads the state afresh. */
const MAX_BACKLOG_BYTES = 1024 * 1024;

const EVENTS_DESCRIPTION = [
  'Server-Sent Events (text/event-stream) of what changes, for a dashboard or any client; the state at connection time is GET /v1/queue and GET /v1/tasks.',
  'event `task`: a task as GET /v1/tasks shows it (Task), each time it is queued, starts, runs, waits again or ends; changes within 50 ms are sent once, as the task is then.',
  'event `queue`: the queue as GET /v1/queue answers it (Queue), after every batch of task changes and on pause and resume.',
  'event `reconcile`: `{"ok":true,"at":…,"error":null,"listed":N}` after each listing read from Aegir, `{"ok":false,"at":…,"error":"…"}` when it failed.',
  'Each event has an `id`; a comment line every 20 s keeps proxies from closing a quiet stream; when the service stops, an event `closing` ends it.',
  'It needs the admin token (bearer, or the dashboard cookie): a stream is a long-lived answer, counted against TASKD_MAX_STREAMS (503 TASKD_ERR_TOO_MANY_STREAMS beyond), so a hosted site on loopback must not be able to hold them all.',
].join('\n\n');

/** GET /v1/events (the live stream) and GET /v1/activity (what the dashboard's charts draw). */
export const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  const { config, events, streams, activity } = app.taskd;
  app.addHook('onRequest', async (request) => requireAdminToken(config, request));

  app.get(
    '/v1/events',
    {
      schema: {
        operationId: 'streamEvents',
        summary: 'Live events: task state changes, queue changes, reconcile results',
        description: EVENTS_DESCRIPTION,
        tags: ['queue'],
        security,
        response: { 200: textResponse('text/event-stream', 'A stream of `task`, `queue` and `reconcile` events.'), ...errorResponses(401, 503) },
      },
    },
    async (request, reply) => {
      const stream = new PassThrough();
      let unsubscribe = () => {};
      streams.open(null, reply.raw, () => {
        unsubscribe();
        stream.end('event: closing\ndata: {"reason":"the service is stopping"}\n\n');
      });
      stream.write('retry: 2000\n: connected\n\n');
      unsubscribe = events.subscribe({
        write: (chunk) => stream.write(chunk) || stream.writableLength < MAX_BACKLOG_BYTES,
        drop: () => stream.destroy(),
      });
      const done = () => unsubscribe();
      stream.once('close', done);
      request.raw.once('close', () => stream.destroy());
      reply
        .type('text/event-stream; charset=utf-8')
        .header('cache-control', 'no-store')
        // nginx buffers a proxied answer unless told not to; an event must reach the page at once.
        .header('x-accel-buffering', 'no');
      return reply.send(stream as unknown as string);
    },
  );

  app.get(
    '/v1/activity',
    {
      schema: {
        operationId: 'getActivity',
        summary: 'The last hour in numbers: queue depth and running per 10 s, wait and run time by task type',
        description: 'Kept in memory from the event stream since the service started (nothing is kept across a restart); what the dashboard draws.',
        tags: ['queue'],
        security,
        response: { 200: activitySchema, ...errorResponses(401) },
      },
    },
    async () => activity.view(Date.now()),
  );
};
