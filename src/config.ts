import os from 'node:os';
import path from 'node:path';
import { inspect, parseArgs } from 'node:util';
import { z } from 'zod';
import { parseSecret } from './signature.js';

/**
 * A secret that cannot leak by accident: logging, JSON and util.inspect all see "[redacted]".
 * Only reveal() gives the value, so every use of it is deliberate and easy to find.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return '[redacted]';
  }

  toString(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return '[redacted]';
  }
}

/** A webhook secret and its HMAC key; redacted like Secret. */
export class WebhookSecret extends Secret {
  readonly #key: Buffer;

  constructor(value: string) {
    super(value);
    this.#key = parseSecret(value);
  }

  get key(): Buffer {
    return this.#key;
  }
}

export const DEFAULT_COMMAND = ['drush', '@hostmaster', 'hosting-task', '{nid}', '--strict=0'];

/** What Aegir's cron line runs every minute (hosting_queues_cron_cmd(), hosting.queues.inc); the service runs it only when a queue is due. */
export const DEFAULT_DISPATCH_COMMAND = ['drush', '@hostmaster', 'hosting-dispatch'];

/** Every setting, its environment variable, CLI flag, default and meaning: the one list used by parsing, --help and the README. */
export const settings = [
  { key: 'host', env: 'TASKD_HOST', flag: 'host', default: '127.0.0.1', help: 'Address to listen on.' },
  { key: 'port', env: 'TASKD_PORT', flag: 'port', default: '8765', help: 'Port to listen on (0 picks a free one).' },
  { key: 'secrets', env: 'TASKD_SECRET', flag: 'secret', default: '', help: 'Webhook secret(s), whsec_…; several separated by spaces while rotating. Signed intake is off until set.' },
  { key: 'adminToken', env: 'TASKD_ADMIN_TOKEN', flag: 'admin-token', default: '', help: 'Bearer token for every change (unsigned intake, cancel, pause, resume, reconcile) and for task output, from loopback too. Without it the service makes one in TASKD_STATE_DIR/admin-token.' },
  { key: 'command', env: 'TASKD_COMMAND', flag: 'command', default: JSON.stringify(DEFAULT_COMMAND), help: 'JSON argv run for each task; {nid} is replaced by the task nid. No shell is involved.' },
  {
    key: 'dispatchCommand',
    env: 'TASKD_DISPATCH_COMMAND',
    flag: 'dispatch-command',
    default: JSON.stringify(DEFAULT_DISPATCH_COMMAND),
    help: 'JSON argv run when one of Aegir\'s other queues (cron, backups…) is due, with a frontend configured; an empty value or [] switches it off.',
    // Unlike every other setting, an empty value is a choice here: it switches dispatching off.
    emptyIsValue: true,
  },
  { key: 'dispatchTimeoutMs', env: 'TASKD_DISPATCH_TIMEOUT', flag: 'dispatch-timeout', default: '600', help: 'Seconds a dispatch run may take before its process group gets SIGTERM (SIGKILL after TASKD_KILL_GRACE).' },
  { key: 'dispatchMinIntervalMs', env: 'TASKD_DISPATCH_MIN_INTERVAL', flag: 'dispatch-min-interval', default: '60', help: 'Least seconds from one dispatch start to the next, as the cron line\'s once a minute.' },
  { key: 'concurrency', env: 'TASKD_CONCURRENCY', flag: 'concurrency', default: '1', help: 'Tasks running at once in all (one per site or server at most).' },
  { key: 'warmStarts', env: 'TASKD_WARM_STARTS', flag: 'warm-starts', default: '2', help: 'Start processes kept waiting for the next task, so a task starts without a fork of the service (at most TASKD_CONCURRENCY; 0: off). After a burst that found none waiting, up to TASKD_CONCURRENCY are kept until a minute passes without a start.' },
  { key: 'taskTimeoutMs', env: 'TASKD_TASK_TIMEOUT', flag: 'task-timeout', default: '7200', help: 'Seconds a task may run before its process group gets SIGTERM.' },
  { key: 'killGraceMs', env: 'TASKD_KILL_GRACE', flag: 'kill-grace', default: '10', help: 'Seconds between SIGTERM and SIGKILL on timeout.' },
  { key: 'frontendUrl', env: 'TASKD_FRONTEND_URL', flag: 'frontend-url', default: '', help: 'Base URL of the hosting_taskd endpoints, e.g. https://aegir.example.com/hosting/taskd.' },
  { key: 'reconcileIntervalMs', env: 'TASKD_RECONCILE_INTERVAL', flag: 'reconcile-interval', default: '60', help: 'Seconds between reconciliations with the frontend.' },
  { key: 'maxStartsPerMinute', env: 'TASKD_MAX_STARTS_PER_MINUTE', flag: 'max-starts-per-minute', default: '', help: 'At most this many task starts a minute (empty: no limit).' },
  { key: 'maxLoad', env: 'TASKD_MAX_LOAD', flag: 'max-load', default: '', help: 'Defer starts while the 1-minute load average is above this (empty: no limit).' },
  { key: 'maxLoadPerCpu', env: 'TASKD_MAX_LOAD_PER_CPU', flag: 'max-load-per-cpu', default: '', help: 'Defer starts while the 1-minute load average per CPU is above this, e.g. 3.1 as BOA\'s _CPU_TASK_RATIO (empty: no limit).' },
  { key: 'minFreeDiskMb', env: 'TASKD_MIN_FREE_DISK', flag: 'min-free-disk', default: '', help: 'Defer starts while TASKD_DISK_PATH has fewer free megabytes than this (empty: no limit).' },
  { key: 'diskPath', env: 'TASKD_DISK_PATH', flag: 'disk-path', default: '/var/aegir', help: 'The folder whose filesystem TASKD_MIN_FREE_DISK watches (where backups and platforms are written).' },
  { key: 'pauseFile', env: 'TASKD_PAUSE_FILE', flag: 'pause-file', default: '', help: 'While this file exists no task starts (a maintenance window a script can open and close; empty: off).' },
  { key: 'logDir', env: 'TASKD_LOG_DIR', flag: 'log-dir', default: '', help: 'Folder for per-task output (<nid>.log) and pid files (<nid>.pid). Default: aegir-taskd-<uid> in the temp dir.' },
  { key: 'stateDir', env: 'TASKD_STATE_DIR', flag: 'state-dir', default: '', help: 'Folder for what the service keeps between runs: the journal (journal.jsonl), the outbox of write-backs to Aegir (outbox.json) and the admin token it made when none is configured. Default: aegir-taskd in $XDG_STATE_HOME or ~/.local/state.' },
  { key: 'journal', env: 'TASKD_JOURNAL', flag: 'journal', default: 'write', help: 'write: every accepted task is in the kernel before it is answered (survives a crash of the service); fsync: on the disk (survives a power loss, costs a flush per change); off: nothing survives a restart.' },
  { key: 'journalCompactBytes', env: 'TASKD_JOURNAL_COMPACT', flag: 'journal-compact', default: '4194304', help: 'Bytes the journal may grow to (and to twice its last compacted size) before it is rewritten from the live state.' },
  { key: 'orphanGraceMs', env: 'TASKD_ORPHAN_GRACE', flag: 'orphan-grace', default: '600', help: 'Seconds a task may stay processing in Aegir with no process on this host running it before the service finishes it there as an error (0: never by itself; POST /v1/orphans/{nid}/resolve does it at once).' },
  { key: 'logRetentionMs', env: 'TASKD_LOG_RETENTION', flag: 'log-retention', default: '30', help: 'Days to keep the output of ended tasks in TASKD_LOG_DIR (0: keep forever).' },
  { key: 'shutdownGraceMs', env: 'TASKD_SHUTDOWN_GRACE', flag: 'shutdown-grace', default: '30', help: 'Seconds to let running tasks finish on SIGTERM before exiting (they keep running).' },
  { key: 'requestTimeoutMs', env: 'TASKD_REQUEST_TIMEOUT', flag: 'request-timeout', default: '30', help: 'Seconds a client has to send a whole request, headers and body; a slower one gets 408 and is disconnected.' },
  { key: 'headersTimeoutMs', env: 'TASKD_HEADERS_TIMEOUT', flag: 'headers-timeout', default: '10', help: 'Seconds a client has to send the headers of a request (at most TASKD_REQUEST_TIMEOUT).' },
  { key: 'keepAliveTimeoutMs', env: 'TASKD_KEEP_ALIVE_TIMEOUT', flag: 'keep-alive-timeout', default: '5', help: 'Seconds an idle keep-alive connection stays open.' },
  { key: 'maxConnections', env: 'TASKD_MAX_CONNECTIONS', flag: 'max-connections', default: '1024', help: 'Connections open at once; more are closed as they arrive.' },
  { key: 'maxStreams', env: 'TASKD_MAX_STREAMS', flag: 'max-streams', default: '256', help: 'Long-lived answers (log follows, reads of a whole log) open at once; more get 503 (at most TASKD_MAX_CONNECTIONS).' },
  { key: 'maxStreamsPerTask', env: 'TASKD_MAX_STREAMS_PER_TASK', flag: 'max-streams-per-task', default: '16', help: 'Long-lived answers open at once for one task; more get 429.' },
  { key: 'rateLimit', env: 'TASKD_RATE_LIMIT', flag: 'rate-limit', default: '6000', help: 'Intake requests per client per minute (0: off).' },
  { key: 'maxQueued', env: 'TASKD_MAX_QUEUED', flag: 'max-queued', default: '100000', help: 'At most this many tasks queued at once; intake answers 503 beyond it (the reconciler picks the task up once there is room).' },
  { key: 'confirmMaxAgeMs', env: 'TASKD_CONFIRM_MAX_AGE', flag: 'confirm-max-age', default: '5', help: 'Seconds a queued confirmation from Aegir stays fresh; older ones are re-checked before a start.' },
  { key: 'historySize', env: 'TASKD_HISTORY_SIZE', flag: 'history-size', default: '1000', help: 'Ended tasks kept for the API.' },
  { key: 'logLevel', env: 'TASKD_LOG_LEVEL', flag: 'log-level', default: 'info', help: 'fatal, error, warn, info, debug or trace.' },
] as const;

type SettingKey = (typeof settings)[number]['key'];

const integer = (min: number, max: number) =>
  z.coerce.number({ error: `expected an integer from ${min} to ${max}` }).int(`expected an integer from ${min} to ${max}`).min(min, `expected an integer from ${min} to ${max}`).max(max, `expected an integer from ${min} to ${max}`);

const seconds = (min: number) =>
  z.coerce.number({ error: 'expected a number of seconds' }).min(min, `expected at least ${min} seconds`).transform((s) => Math.round(s * 1000));

const optionalNumber = (schema: z.ZodNumber) =>
  z.string().transform((value, ctx) => {
    if (value.trim() === '') return undefined;
    const parsed = schema.safeParse(Number(value));
    if (!parsed.success) {
      ctx.addIssue({ code: 'custom', message: parsed.error.issues[0]?.message ?? 'invalid' });
      return z.NEVER;
    }
    return parsed.data;
  });

/** A JSON argv as TASKD_COMMAND and TASKD_DISPATCH_COMMAND take it; `placeholders` are the only {…} allowed. */
function parseArgv(value: string, ctx: z.RefinementCtx, placeholders: readonly string[]): string[] | typeof z.NEVER {
  let argv: unknown;
  try {
    argv = JSON.parse(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected a JSON array of strings, e.g. ["drush","@hostmaster","hosting-task","{nid}"]' });
    return z.NEVER;
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string' && a.length > 0)) {
    ctx.addIssue({ code: 'custom', message: 'expected a non-empty JSON array of non-empty strings' });
    return z.NEVER;
  }
  // Each argument reaches the start process as one line of its stdin, and the shell drops NUL bytes.
  if (argv.some((a: string) => /[\r\n\0]/.test(a))) {
    ctx.addIssue({ code: 'custom', message: 'arguments must not contain line breaks or NUL characters' });
    return z.NEVER;
  }
  // A typo such as {rid} would otherwise reach drush as a literal argument.
  const unknown = argv.flatMap((a: string) => a.match(/\{[^}]*\}/g) ?? []).filter((p) => !placeholders.includes(p));
  if (unknown.length > 0) {
    ctx.addIssue({
      code: 'custom',
      message: placeholders.length > 0 ? `only the placeholder ${placeholders.join(', ')} is allowed, found ${unknown.join(', ')}` : `no placeholder is allowed here, found ${unknown.join(', ')}`,
    });
    return z.NEVER;
  }
  return argv as string[];
}

const commandSchema = z.string().transform((value, ctx) => {
  const argv = parseArgv(value, ctx, ['{nid}']);
  if (argv === z.NEVER) return z.NEVER;
  if (!argv.some((a: string) => a.includes('{nid}'))) {
    ctx.addIssue({ code: 'custom', message: 'the command must contain {nid}' });
    return z.NEVER;
  }
  return argv;
});

/** Empty or [] switches dispatching off (null); anything else is an argv like TASKD_COMMAND's, without placeholders. */
const dispatchCommandSchema = z.string().transform((value, ctx): string[] | null => {
  if (value.trim() === '' || /^\[\s*\]$/.test(value.trim())) return null;
  const argv = parseArgv(value, ctx, []);
  return argv === z.NEVER ? z.NEVER : argv;
});

const secretsSchema = z.string().transform((value, ctx) => {
  const list = value.split(/\s+/).filter(Boolean);
  try {
    return list.map((s) => new WebhookSecret(s));
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

const urlSchema = z.string().transform((value, ctx) => {
  if (value.trim() === '') return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected an http:// or https:// URL' });
    return z.NEVER;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: 'expected an http:// or https:// URL' });
    return z.NEVER;
  }
  return url.href.replace(/\/+$/, '');
});

const configSchema = z.object({
  host: z.string().min(1, 'expected an address'),
  port: integer(0, 65535),
  secrets: secretsSchema,
  adminToken: z
    .string()
    .refine((t) => t === '' || t.length >= 16, 'expected at least 16 characters')
    .transform((t) => (t === '' ? undefined : new Secret(t))),
  command: commandSchema,
  dispatchCommand: dispatchCommandSchema,
  dispatchTimeoutMs: seconds(0.01),
  dispatchMinIntervalMs: seconds(0.05),
  concurrency: integer(1, 1000),
  warmStarts: integer(0, 64),
  taskTimeoutMs: seconds(0.01),
  killGraceMs: seconds(0),
  frontendUrl: urlSchema,
  reconcileIntervalMs: seconds(0.05),
  maxStartsPerMinute: optionalNumber(z.number().int('expected an integer').min(1, 'expected at least 1')),
  maxLoad: optionalNumber(z.number().positive('expected a positive number')),
  maxLoadPerCpu: optionalNumber(z.number().positive('expected a positive number')),
  minFreeDiskMb: optionalNumber(z.number().int('expected a whole number of megabytes').min(1, 'expected at least 1 megabyte')),
  diskPath: z.string().min(1, 'expected a folder').transform((d) => path.resolve(d)),
  pauseFile: z.string().transform((f) => (f.trim() === '' ? undefined : path.resolve(f))),
  logDir: z.string().transform((d) => path.resolve(d === '' ? path.join(os.tmpdir(), `aegir-taskd-${process.getuid?.() ?? 'user'}`) : d)),
  stateDir: z.string().transform((d) => path.resolve(d)),
  journal: z.enum(['write', 'fsync', 'off'], { error: 'expected write, fsync or off' }),
  journalCompactBytes: integer(1024, 1024 * 1024 * 1024),
  orphanGraceMs: seconds(0),
  logRetentionMs: z.coerce.number({ error: 'expected a number of days' }).min(0, 'expected 0 (keep forever) or more days').transform((d) => Math.round(d * 86_400_000)),
  shutdownGraceMs: seconds(0),
  requestTimeoutMs: seconds(0.05),
  headersTimeoutMs: seconds(0.05),
  keepAliveTimeoutMs: seconds(0.05),
  maxConnections: integer(1, 1_000_000),
  maxStreams: integer(1, 1_000_000),
  maxStreamsPerTask: integer(1, 1_000_000),
  rateLimit: integer(0, 1_000_000_000),
  maxQueued: integer(1, 10_000_000),
  confirmMaxAgeMs: seconds(0),
  historySize: integer(1, 1_000_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
} satisfies Record<SettingKey, z.ZodType>).superRefine((config, ctx) => {
  // Node refuses a header timeout longer than the request timeout, and a stream needs a connection.
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    ctx.addIssue({ code: 'custom', path: ['headersTimeoutMs'], message: 'expected at most TASKD_REQUEST_TIMEOUT' });
  }
  if (config.maxStreams > config.maxConnections) {
    ctx.addIssue({ code: 'custom', path: ['maxStreams'], message: 'expected at most TASKD_MAX_CONNECTIONS' });
  }
});

export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ParsedCommandLine {
  command: string | undefined;
  positionals: string[];
  help: boolean;
  version: boolean;
  flags: Partial<Record<SettingKey, string>>;
  extra: Record<string, string | boolean | undefined>;
}

/** Reads argv (without node and the script). Unknown flags are errors so that a typo never goes unnoticed. */
export function parseCommandLine(argv: string[], extraFlags: Record<string, { type: 'string' | 'boolean' }> = {}): ParsedCommandLine {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
    ...extraFlags,
  };
  for (const s of settings) options[s.flag] = { type: 'string' };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const flags: Partial<Record<SettingKey, string>> = {};
  for (const s of settings) {
    const value = parsed.values[s.flag];
    if (typeof value === 'string') flags[s.key] = value;
  }
  const extra: Record<string, string | boolean | undefined> = {};
  for (const name of Object.keys(extraFlags)) extra[name] = parsed.values[name] as string | boolean | undefined;
  const [command, ...positionals] = parsed.positionals;
  return { command, positionals, help: parsed.values.help === true, version: parsed.values.version === true, flags, extra };
}

/** Builds the configuration from flags over environment over defaults; the first bad value throws a one-line ConfigError naming it. */
export function loadConfig(env: NodeJS.ProcessEnv, flags: Partial<Record<SettingKey, string>> = {}): Config {
  const raw: Record<string, string> = {};
  // An empty variable counts as unset, as shells and unit files often leave one defined but blank.
  for (const s of settings) {
    const fromEnv = 'emptyIsValue' in s && s.emptyIsValue ? env[s.env] : env[s.env] || undefined;
    raw[s.key] = flags[s.key] ?? fromEnv ?? s.default;
  }
  // Persistent and per user (so each hostmaster instance has its own), never the shared temp dir.
  if (raw.stateDir === '') raw.stateDir = path.join(env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local', 'state'), 'aegir-taskd');
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const setting = settings.find((s) => s.key === issue.path[0])!;
    const source = flags[setting.key] !== undefined ? `--${setting.flag}` : setting.env;
    // Secrets are never echoed back, not even when malformed.
    const shown = setting.key === 'secrets' || setting.key === 'adminToken' ? '' : ` (got ${JSON.stringify(raw[setting.key])})`;
    throw new ConfigError(`${source}: ${issue.message}${shown}`);
  }
  return result.data;
}

/** What is switched off, for the start-up log, so an operator sees at once why e.g. webhooks get 401. */
export function describeDisabledFeatures(config: Config): string[] {
  const off: string[] = [];
  if (config.secrets.length === 0) off.push('signed webhook intake (TASKD_SECRET is not set)');
  if (config.frontendUrl === undefined) off.push('reconciliation and Aegir outcomes (TASKD_FRONTEND_URL is not set)');
  const dispatch = dispatchStatus(config);
  if (!dispatch.on) off.push(`dispatching Aegir's other queues (${dispatch.why})`);
  return off;
}

/**
 * Whether the service runs TASKD_DISPATCH_COMMAND when a queue is due: only with a frontend (its
 * queue listing gives the due times; app.ts builds the client from the URL and the first secret).
 */
export function dispatchStatus(config: Config): { on: true; argv: string[] } | { on: false; why: string } {
  if (config.dispatchCommand === null) return { on: false, why: 'TASKD_DISPATCH_COMMAND is empty' };
  if (config.frontendUrl === undefined || config.secrets.length === 0) return { on: false, why: 'it needs TASKD_FRONTEND_URL and TASKD_SECRET' };
  return { on: true, argv: config.dispatchCommand };
}

/** Names of environment variables whose values must never reach a child or a log line. */
export const SECRET_ENV_NAMES = ['TASKD_SECRET', 'TASKD_ADMIN_TOKEN'] as const;
