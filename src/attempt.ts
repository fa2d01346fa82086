import type { Config } from './config.js';
import { AegirStatus, type Frontend } from './frontend.js';
import { countFrontendError, type Metrics } from './metrics.js';
import { startRun, type RunResult, type StartedRun } from './runner.js';
import type { WarmGates } from './start-gate.js';
import { endStateFromAegir, laneKeyFor, type WriteBackCause, type EndState, type Logger, type Orphan, type Task } from './task.js';

export type AttemptConfig = Pick<Config, 'command' | 'logDir' | 'taskTimeoutMs' | 'killGraceMs' | 'confirmMaxAgeMs'>;

export interface AttemptContext {
  config: AttemptConfig;
  env: NodeJS.ProcessEnv;
  warmGates: WarmGates;
  frontend: Frontend | undefined;
  metrics: Metrics;
  log: Logger;
  /** Delays before the 2nd, 3rd… attempt of a task Aegir still shows queued after a run; its length + 1 is the number of attempts. */
  retryDelaysMs: readonly number[];
  /** True once the service is closing: from then on nothing starts. */
  closing(): boolean;
  /** Writes the task's state to the journal; resolves false when it could not (logged there), and the attempt goes on. */
  persist(task: Task): Promise<boolean>;
  /** Tells the event stream of a change the journal does not need (the hand-off to the process). */
  changed(task: Task): void;
}

/**
 * How an attempt ended: the task ends (with an orphan to report when Aegir still shows it
 * processing); runs again later; goes back to its lane unstarted because the service is closing;
 * or moves to the lane of the rid Aegir gave it, unstarted, so two tasks of one site never run at once.
 */
export type AttemptVerdict =
  | { kind: 'end'; state: EndState; endedAt: number; message: string | null; orphan?: Orphan; writeBack?: WriteBackRequest }
  | { kind: 'retry'; delayMs: number }
  | { kind: 'unstarted' }
  | { kind: 'move'; rid: number | null };

export type Outcome = { state: EndState | 'retry' | null; message: string | null; orphan?: Orphan };

/** A drush the service knows is dead, while Aegir still shows its task processing at vid: to be finished there. */
export interface WriteBackRequest {
  vid: number;
  reason: string;
  cause: WriteBackCause;
}

const REFUSAL = /This task is (not queued|already running)/i;

export type EndVerdict = Extract<AttemptVerdict, { kind: 'end' }>;

const end = (state: EndState, endedAt: number, message: string | null): EndVerdict => ({ kind: 'end', state, endedAt, message });


/**
 * One attempt's life: confirm with Aegir that the task is still queued, start it through the
 * runner, wait for it, read its outcome from Aegir and decide what follows. The only place that
 * talks to the runner and to the frontend about one task; the scheduler applies the verdict.
 */
export class Attempt {
  run: StartedRun | null = null;
  cancelRequested = false;
  /** Who or what asked it to stop, in the words Aegir's task log will show. */
  stopReason: string | null = null;

  constructor(
    readonly task: Task,
    private readonly ctx: AttemptContext,
  ) {}

  /** Asks the attempt to end: it does not start, or its process group is stopped. */
  stop(reason: string | null = null): void {
    this.cancelRequested = true;
    this.stopReason ??= reason;
    this.run?.stop();
  }

  async settle(): Promise<AttemptVerdict> {
    const { task, ctx } = this;
    // At 0 a confirmation is never fresh, even in the millisecond it arrived: every start asks Aegir first.
    if (ctx.frontend && (task.confirmedAt === null || Date.now() - task.confirmedAt >= ctx.config.confirmMaxAgeMs)) {
      const confirmation = await this.#confirmQueued(ctx.frontend);
      if (confirmation.refusal !== null) return end(this.cancelRequested ? 'cancelled' : 'skipped', Date.now(), confirmation.refusal);
      // With a frontend the lane is Aegir's rid, whatever the intake said.
      if (confirmation.rid !== undefined && laneKeyFor(confirmation.rid, task.nid) !== task.lane && !this.cancelRequested) {
        return { kind: 'move', rid: confirmation.rid };
      }
    }
    if (this.cancelRequested) return end('cancelled', Date.now(), 'removed by an operator before it started');
    if (ctx.closing()) return { kind: 'unstarted' };
    task.attempts += 1;
    task.exitCode = null;
    task.signal = null;
    // Written with this turn's group, which may be after the hand-off: recovery reads a starting or
    // queued task without a pid file as never run, and one with a pid file as started by this journal.
    void ctx.persist(task);
    let run: StartedRun;
    try {
      run = await startRun(
        {
          nid: task.nid,
          argvTemplate: ctx.config.command,
          logDir: ctx.config.logDir,
          timeoutMs: ctx.config.taskTimeoutMs,
          killGraceMs: ctx.config.killGraceMs,
          env: ctx.env,
          meta: { rid: task.rid, lane: task.lane, type: task.type, vid: task.vid, changed: task.changed, receivedAt: task.receivedAt, attempts: task.attempts },
          // Called as the process is handed its task, before startRun resolves: only then is the task running.
          onStarted: (pid, startedAt) => {
            task.state = 'running';
            task.pid = pid;
            task.startedAt = startedAt;
            ctx.changed(task);
          },
          onExit: ({ commandRan, exitCode, signal }) => {
            task.exitCode = exitCode;
            task.signal = signal;
            return commandRan ? ctx.persist(task) : true;
          },
        },
        ctx.warmGates,
      );
    } catch (error) {
      return end('failed', Date.now(), `could not prepare the run: ${(error as Error).message}`);
    }
    this.run = run;
    task.startedAt = run.startedAt;
    // A command that could not start has no process: it ends as failed without counting as a start.
    if (run.pid !== null) {
      ctx.metrics.tasksStarted.inc();
      if (task.attempts === 1) ctx.metrics.queueToStart.observe(Math.max(0, run.startedAt - task.receivedAt) / 1000);
      ctx.log.info({ nid: task.nid, lane: task.lane, pid: run.pid, attempt: task.attempts }, 'task started');
    }
    if (this.cancelRequested) run.stop();
    const result = await run.done;
    task.pid = null;
    task.exitCode = result.exitCode;
    task.signal = result.signal;
    ctx.metrics.runDuration.observe((result.endedAt - result.startedAt) / 1000);
    return this.#judge(result);
  }

  /**
   * Why the task must not start (refusal), or null with Aegir's rid for it (undefined when Aegir could
   * not be asked). An unreachable frontend lets it start: hosting-task refuses a task that is not queued.
   */
  /**
   * A run the service ended itself (stopped, timed out): its state says what happened, and when
   * Aegir still shows it processing, Aegir is told too, since no shutdown function ran.
   */
  async #killed(state: EndState, endedAt: number, message: string, writeBack: Omit<WriteBackRequest, 'vid'>): Promise<AttemptVerdict> {
    const { task, ctx } = this;
    if (!ctx.frontend) return end(state, endedAt, message);
    const outcome = await readOutcome(task, ctx.frontend, ctx.metrics);
    if (outcome.orphan && outcome.orphan.vid !== null) return { ...end(state, endedAt, `${message}; finishing it in Aegir`), writeBack: { ...writeBack, vid: outcome.orphan.vid } };
    if (outcome.state === null) task.outcomeConfirmed = false;
    return end(state, endedAt, message);
  }

  async #confirmQueued(frontend: Frontend): Promise<{ refusal: string | null; rid?: number | null }> {
    const { task, ctx } = this;
    try {
      const aegir = await frontend.getTask(task.nid);
      if (aegir === null) return { refusal: 'Aegir has no such task' };
      if (aegir.status !== AegirStatus.queued) return { refusal: `Aegir no longer has it queued (status ${aegir.status})` };
      task.confirmedAt = Date.now();
      task.vid = aegir.vid ?? task.vid;
      return { refusal: null, rid: aegir.rid || null };
    } catch (error) {
      countFrontendError(ctx.metrics, 'confirm', error);
      ctx.log.warn({ nid: task.nid, err: (error as Error).message }, 'could not confirm the task is queued; starting it anyway');
      return { refusal: null };
    }
  }

  async #judge(result: RunResult): Promise<AttemptVerdict> {
    const { task, ctx } = this;
    const endedAt = result.endedAt;
    if (result.spawnError) return end(this.cancelRequested ? 'cancelled' : 'failed', endedAt, result.spawnError);
    const signal = result.signal ?? 'SIGTERM';
    if (this.cancelRequested) {
      const who = this.stopReason ?? 'stopped by an operator';
      return this.#killed('cancelled', endedAt, `${who} while running`, { reason: `aegir-taskd: drush was ${who} (${signal} to its process group)`, cause: 'stopped' });
    }
    if (result.timedOut) {
      const seconds = ctx.config.taskTimeoutMs / 1000;
      return this.#killed('timed_out', endedAt, `killed after ${seconds}s (TASKD_TASK_TIMEOUT)`, {
        reason: `aegir-taskd: drush was killed by ${signal} after ${seconds} s (TASKD_TASK_TIMEOUT)`,
        cause: 'timeout',
      });
    }
    if (result.exitCode === 1 && REFUSAL.test(result.output)) {
      return end('skipped', endedAt, `hosting-task refused it: ${result.output.match(REFUSAL)![0]}`);
    }
    const byExitCode: EndState = result.exitCode === 0 ? 'succeeded' : 'failed';
    const exitMessage = result.exitCode === 0 ? null : result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
    if (!ctx.frontend) return end(byExitCode, endedAt, exitMessage);
    const outcome = await readOutcome(task, ctx.frontend, ctx.metrics);
    if (outcome.state === null) {
      task.outcomeConfirmed = false;
      return end(byExitCode, endedAt, `outcome not confirmed by Aegir (${outcome.message}); a later reconcile corrects it`);
    }
    task.outcomeConfirmed = true;
    if (outcome.orphan && outcome.orphan.vid !== null) {
      // The command ended and Aegir was never told: no shutdown function ran (a signal), or it failed before it could.
      const how = result.signal ? `was killed by ${result.signal}` : `exited with code ${result.exitCode}`;
      return {
        ...end('failed', endedAt, `${outcome.message}; finishing it in Aegir`),
        writeBack: { vid: outcome.orphan.vid, reason: `aegir-taskd: drush ${how} without finishing the task`, cause: result.signal ? 'killed' : 'exited_processing' },
      };
    }
    if (outcome.state !== 'retry') return { ...end(outcome.state, endedAt, outcome.message ?? exitMessage), ...(outcome.orphan && { orphan: outcome.orphan }) };
    const delayMs = ctx.retryDelaysMs[task.attempts - 1];
    if (delayMs === undefined) {
      return end('stuck', endedAt, `still queued in Aegir after ${task.attempts} runs; it runs again once Aegir shows a new revision`);
    }
    return { kind: 'retry', delayMs };
  }
}

/** Reads what Aegir made of a run: its final status, still queued (run it again), or still processing (an orphan). */
export async function readOutcome(task: Task, frontend: Frontend, metrics: Metrics): Promise<Outcome> {
  try {
    const aegir = await frontend.getTask(task.nid);
    if (aegir === null) return { state: 'failed', message: 'Aegir no longer has this task' };
    task.aegirStatus = aegir.status;
    if (aegir.status === AegirStatus.queued) {
      task.vid = aegir.vid ?? task.vid;
      task.changed = aegir.changed ?? task.changed;
      task.confirmedAt = Date.now();
      return { state: 'retry', message: null };
    }
    if (aegir.status === AegirStatus.processing) {
      const orphan: Orphan = {
        nid: task.nid,
        rid: task.rid,
        type: task.type,
        vid: aegir.vid ?? task.vid,
        since: Date.now(),
        reason: 'the child exited but Aegir still shows it processing',
      };
      return { state: 'failed', message: 'the child exited but Aegir still shows it processing (orphan)', orphan };
    }
    return { state: endStateFromAegir(aegir.status), message: null };
  } catch (error) {
    countFrontendError(metrics, 'outcome', error);
    return { state: null, message: (error as Error).message };
  }
}
