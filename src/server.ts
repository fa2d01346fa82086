import type { FastifyInstance } from 'fastify';
import path from 'node:path';
import { ensureAdminToken } from './admin-token.js';
import { buildApp, type AppOptions } from './app.js';
import { describeDisabledFeatures, type Config } from './config.js';
import { JOURNAL_FILE, readJournal } from './journal.js';
import { recover } from './recovery.js';
import { lockStateDir } from './state-lock.js';
import { scheduleLogPruning } from './log-retention.js';
import { prepareLogDir } from './runner.js';

export interface RunningServer {
  app: FastifyInstance;
  address: string;
  shutdown(): Promise<void>;
}

/** Builds the app, brings back what the journal and the surviving children hold, listens, starts reconciling. */
export async function startServer(configured: Config, options: Omit<AppOptions, 'config'>): Promise<RunningServer> {
  await prepareLogDir(configured.logDir);
  const unlock = await lockStateDir(configured.stateDir);
  // Read before anything is appended; an unreadable journal stops start-up here with one line (JournalError).
  const journalContents = configured.journal === 'off' ? null : readJournal(path.join(configured.stateDir, JOURNAL_FILE));
  const adminToken = await ensureAdminToken(configured);
  const config: Config = { ...configured, adminToken: adminToken.token };
  const app = await buildApp({ journal: true, ...options, config });
  for (const off of describeDisabledFeatures(config)) app.log.warn(`switched off: ${off}`);
  // Where the token is, never what it is.
  if (adminToken.file) app.log.warn({ file: adminToken.file, created: adminToken.created }, 'TASKD_ADMIN_TOKEN is not set: operator requests take the token in this file');
  if (journalContents?.tornTail) app.log.warn({ file: app.taskd.journal?.file }, 'ignored the last journal record: a crash cut it short before it was answered for');
  // Before any intake: an adopted child must hold its lane before anything else in that lane can start.
  const recovered = await recover({ journal: journalContents, logDir: config.logDir, scheduler: app.taskd.scheduler, log: app.log, frontendConfigured: app.taskd.frontend !== null });
  app.taskd.journal?.startCompacting();
  app.taskd.scheduler.recovered();
  const adopted = recovered.adopted;
  if (recovered.queued.length + recovered.ended.length + recovered.leftAlone.length > 0) {
    app.log.info({ queued: recovered.queued, ended: recovered.ended, leftAlone: recovered.leftAlone }, 'brought back what the journal held');
  }
  const stopPruning = scheduleLogPruning(config.logDir, config.logRetentionMs, (nid) => app.taskd.scheduler.isActive(nid), app.log);
  app.addHook('onClose', async () => {
    stopPruning();
    unlock();
  });
  const address = await app.listen({ host: config.host, port: config.port });
  app.log.info(
    { address, concurrency: config.concurrency, command: config.command, logDir: config.logDir, frontend: config.frontendUrl ?? null, adopted },
    'aegir-taskd ready',
  );

  let shuttingDown: Promise<void> | null = null;
  const shutdown = () => {
    shuttingDown ??= (async () => {
      app.taskd.lifecycle.closing = true;
      app.taskd.reconciler?.stop();
      // A dispatch under way goes on, like a running task; no new one starts.
      app.taskd.dispatcher?.close();
      app.log.info({ graceSeconds: config.shutdownGraceMs / 1000 }, 'shutting down: intake closed, waiting for running tasks');
      const { stillRunning } = await app.taskd.scheduler.drain(config.shutdownGraceMs);
      if (stillRunning.length > 0) {
        app.log.warn({ stillRunning }, 'leaving running tasks alive; the next start re-adopts them');
      }
      await app.close();
    })();
    return shuttingDown;
  };
  return { app, address, shutdown };
}

/** SIGTERM or SIGINT: graceful stop, exit 0. A second signal exits at once; children live on either way. */
export function handleSignals(server: RunningServer, exit: (code: number) => void = (code) => process.exit(code)): void {
  let received = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (received) {
      server.app.log.warn({ signal }, 'second signal: exiting now');
      exit(signal === 'SIGINT' ? 130 : 143);
      return;
    }
    received = true;
    server.app.log.info({ signal }, 'signal received');
    server.shutdown().then(
      () => exit(0),
      (error: unknown) => {
        server.app.log.error({ err: error }, 'error while shutting down');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
