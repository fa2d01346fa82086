import rateLimit from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { readFileSync } from 'node:fs';
import type { Config } from './config.js';
import { Dispatcher } from './dispatcher.js';
import { TaskdError } from './errors.js';
import { HttpFrontend, type Frontend } from './frontend.js';
import { Journal } from './journal.js';
import { survivorAlive } from './adoption.js';
import { findLocalRun, OrphanResolver } from './orphans.js';
import { buildArgv, pidFilePath, readPidFile } from './runner.js';
import { WriteBackOutbox } from './outbox.js';
import { rateLimitClient } from './client-key.js';
import { BatchedLogDestination } from './log-destination.js';
import { LogFollowers } from './log-stream.js';
import { LongLivedResponses } from './long-lived-responses.js';
import { createMetrics, type Metrics } from './metrics.js';
import { errorHandlerPlugin } from './plugins/error-handler.js';
import { securityHeadersPlugin } from './plugins/security-headers.js';
import { Reconciler } from './reconciler.js';
import { ReplayCache } from './replay-cache.js';
import { requestIdFor } from './request-id.js';
import { openApiPlugin } from './plugins/openapi.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes } from './routes/health.js';
import { intakeRoutes } from './routes/intake.js';
import { queueRoutes } from './routes/queue.js';
import { taskRoutes } from './routes/tasks.js';
import { Scheduler } from './scheduler.js';
import { capConnections, serverTimeouts } from './server-limits.js';
import { EventRing } from './event-ring.js';
import { TaskEvents } from './task-events.js';
import { eventRoutes } from './routes/events.js';
import { queueView } from './routes/queue.js';
import { toTaskView } from './routes/tasks.js';
import { uiRoutes } from './routes/ui.js';

export const BODY_LIMIT = 64 * 1024;
export const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface TaskdContext {
  config: Config;
  scheduler: Scheduler;
  reconciler: Reconciler | null;
  /** Runs hosting-dispatch when a queue is due; null without a frontend or with TASKD_DISPATCH_COMMAND empty. */
  dispatcher: Dispatcher | null;
  frontend: Frontend | null;
  metrics: Metrics;
  replay: ReplayCache<number>;
  lifecycle: { closing: boolean };
  journal: Journal | null;
  outbox: WriteBackOutbox | null;
  orphans: OrphanResolver | null;
  /** Every answer that stays open (log follows), capped, and ended when the app closes. */
  streams: LongLivedResponses;
  /** One poller per followed log file, shared by its followers. */
  logFollowers: LogFollowers;
  /** The event stream's hub (GET /v1/events) and the activity it keeps for the dashboard's charts. */
  events: TaskEvents;
  activity: EventRing;
}

declare module 'fastify' {
  interface FastifyInstance {
    taskd: TaskdContext;
  }
  interface FastifyRequest {
    intake: { signed: boolean; msgId: string | null } | null;
  }
}

export interface AppOptions {
  config: Config;
  /** The environment children inherit (minus secrets); the entry point passes its own. */
  env: NodeJS.ProcessEnv;
  loggerInstance?: FastifyBaseLogger;
  /** Replaces the HTTP client built from TASKD_FRONTEND_URL. */
  frontend?: Frontend;
  retryDelaysMs?: number[];
  loadAverage?: () => number;
  defaultMetrics?: boolean;
  /** Journal every accepted task in TASKD_STATE_DIR (the entry point does, with TASKD_JOURNAL); tests that build an app leave it off. */
  journal?: boolean;
}

/** Redaction for every log line: no header that can carry a credential is ever written. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["webhook-signature"]',
  'headers.authorization',
  'headers["webhook-signature"]',
];

/** Refusals that a client can repeat at no cost (scanners, floods past the rate limit): debug, like successes. */
const CHEAP_REFUSALS = new Set([404, 405, 429]);

/**
 * A log an operator can leave on at info: a line per successful request would be hundreds of MB
 * an hour under load, so successes go to debug, and info keeps the task lifecycle (scheduler,
 * reconciler), refusals worth a look (a bad signature or token, a bad body) and errors.
 */
class AccessLog extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    request.log.debug({ req: request }, 'incoming request');
  }

  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const status = reply.statusCode;
    const line = { method: request.method, url: request.url, statusCode: status, remoteAddress: request.ip, responseTime: reply.elapsedTime };
    if (error) reply.log.error({ ...line, err: error }, 'request errored');
    else if (status >= 500) reply.log[status === 503 ? 'warn' : 'error'](line, 'request failed');
    else if (status >= 400 && !CHEAP_REFUSALS.has(status)) reply.log.info(line, 'request refused');
    else reply.log.debug(line, 'request completed');
  }
}

/** Builds the service; it never listens (that is the entry point's job). */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config } = options;
  const logDestination = options.loggerInstance ? null : new BatchedLogDestination();
  const app = Fastify({
    ...(logDestination
      ? { logger: { level: config.logLevel, redact: LOG_REDACT, stream: logDestination } }
      : { loggerInstance: options.loggerInstance! }),
    bodyLimit: BODY_LIMIT,
    ...serverTimeouts(config),
    // genReqId reads x-request-id itself, and keeps it only when it is a plain token.
    requestIdHeader: false,
    logController: new AccessLog(),
    genReqId: requestIdFor,
    forceCloseConnections: 'idle',
  }).withTypeProvider<ZodTypeProvider>();

  capConnections(app.server, config);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const frontend =
    options.frontend ??
    (config.frontendUrl !== undefined && config.secrets[0] ? new HttpFrontend({ baseUrl: config.frontendUrl, key: config.secrets[0].key }) : null);
  let scheduler!: Scheduler;
  let taskd!: TaskdContext;
  const activity = new EventRing();
  const events = new TaskEvents({
    ring: activity,
    view: (task) => toTaskView(task, scheduler.waitingFor(task)),
    queue: () => queueView(taskd),
    counts: () => {
      const stats = scheduler.stats();
      return { queued: stats.queued, running: stats.starting + stats.running };
    },
  });
  const metrics = createMetrics(() => scheduler.stats(), options.defaultMetrics ?? true);
  const journal =
    options.journal && config.journal !== 'off'
      ? new Journal({ dir: config.stateDir, mode: config.journal, log: app.log, snapshot: () => scheduler.journalEntries(), compactAtBytes: config.journalCompactBytes })
      : null;
  // Write-backs to Aegir: kept in the state folder with the journal, in memory where the journal is off.
  const outbox = frontend
    ? new WriteBackOutbox({
        frontend,
        stateDir: journal ? config.stateDir : null,
        metrics,
        log: app.log,
        onDone: (writeBack, answer) => scheduler.writeBackDone(writeBack.nid, answer),
      })
    : null;
  scheduler = new Scheduler({
    journal: journal ?? undefined,
    outbox: outbox ?? undefined,
    config,
    env: options.env,
    metrics,
    log: app.log,
    frontend: frontend ?? undefined,
    onChange: (task) => events.changed(task),
    ...(options.retryDelaysMs ? { retryDelaysMs: options.retryDelaysMs } : {}),
    ...(options.loadAverage ? { loadAverage: options.loadAverage } : {}),
  });
  const orphans = outbox
    ? new OrphanResolver({
        graceMs: config.orphanGraceMs,
        orphans: () => scheduler.orphans(),
        outbox,
        log: app.log,
        isActive: (nid) => scheduler.isActive(nid),
        pidFileAlive: async (nid) => {
          const running = await readPidFile(pidFilePath(config.logDir, nid));
          return running !== null && (await survivorAlive(running.pid, running.processStart));
        },
        findLocalRun: (nid) => findLocalRun(nid, '/proc', buildArgv(config.command, nid).slice(1)),
      })
    : null;
  let reconciler: Reconciler | null = null;
  const dispatcher =
    frontend && config.dispatchCommand
      ? new Dispatcher({
          argv: config.dispatchCommand,
          logDir: config.logDir,
          timeoutMs: config.dispatchTimeoutMs,
          killGraceMs: config.killGraceMs,
          minIntervalMs: config.dispatchMinIntervalMs,
          confirmMaxAgeMs: config.confirmMaxAgeMs,
          env: options.env,
          metrics,
          log: app.log,
          // A reconcile reads the listing and tells the dispatcher before it resolves.
          refresh: async () => {
            await reconciler?.runOnce();
          },
        })
      : null;
  reconciler = frontend
    ? new Reconciler({
        frontend,
        scheduler,
        metrics,
        log: app.log,
        intervalMs: config.reconcileIntervalMs,
        observers: [
          ...(dispatcher ? [dispatcher] : []),
          {
            listed: (listing) => events.reconciled({ ok: true, at: new Date().toISOString(), error: null, listed: listing.tasks.length }),
            unavailable: (message) => events.reconciled({ ok: false, at: new Date().toISOString(), error: message }),
          },
        ],
        ...(orphans && { afterApply: () => orphans.sweep() }),
      })
    : null;

  const streams = new LongLivedResponses({ maxTotal: config.maxStreams, maxPerKey: config.maxStreamsPerTask });
  const logFollowers = new LogFollowers();
  taskd = {
    config,
    scheduler,
    reconciler,
    dispatcher,
    frontend,
    metrics,
    replay: new ReplayCache<number>(),
    lifecycle: { closing: false },
    journal,
    outbox,
    orphans,
    streams,
    logFollowers,
    events,
    activity,
  };
  app.decorate('taskd', taskd);
  app.decorateRequest('intake', null);

  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  // Reconciling starts with listening, so a service that is not serving never runs tasks on its own.
  app.addHook('onListen', async () => {
    scheduler.prepareStarts();
    reconciler?.start();
  });
  // Before the server stops taking connections and waits for the open ones: an open follow never ends by itself.
  app.addHook('preClose', async () => {
    await streams.closeAll();
    logFollowers.close();
  });
  app.addHook('onClose', async () => {
    events.close();
    reconciler?.stop();
    dispatcher?.close();
    scheduler.close();
    outbox?.close();
    await frontend?.close();
    journal?.close();
    logDestination?.close();
  });

  errorHandlerPlugin(app);
  securityHeadersPlugin(app);

  // Fastify's own JSON and text parsers would parse before the signature is checked, and accept text/plain.
  app.removeAllContentTypeParsers();
  // The intake needs the raw bytes: the signature is checked over them before anything parses them.
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_request, body, done) => done(null, body));
  // Any other type is read first (so an oversized body is a 413, as the edge rules order it), then refused.
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: BODY_LIMIT }, (_request, _body, done) => done(new TaskdError('UNSUPPORTED_MEDIA_TYPE')));

  await app.register(rateLimit, {
    global: false,
    keyGenerator: (request) => rateLimitClient(request.ip),
    errorResponseBuilder: (_request, context) => new TaskdError('RATE_LIMITED', `Rate limit of ${context.max} requests a minute exceeded; retry after ${context.after}.`),
  });

  await openApiPlugin(app, VERSION);
  await app.register(healthRoutes);
  await app.register(docsRoutes);
  await app.register(intakeRoutes);
  await app.register(taskRoutes);
  await app.register(queueRoutes);
  await app.register(eventRoutes);
  await app.register(uiRoutes);
  return app;
}
