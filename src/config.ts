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

/** Every setting, its environment variable, CLI flag, default and meaning: the one list used by parsing, --help and the README. */
export const settings = [
  { key: 'host', env: 'TASKD_HOST', flag: 'host', default: '127.0.0.1', help: 'Address to listen on.' },
  { key: 'port', env: 'TASKD_PORT', flag: 'port', default: '8765', help: 'Port to listen on (0 picks a free one).' },
  { key: 'secrets', env: 'TASKD_SECRET', flag: 'secret', default: '', help: 'Webhook secret(s), whsec_…; several separated by spaces while rotating. Signed intake is off until set.' },
  { key: 'adminToken', env: 'TASKD_ADMIN_TOKEN', flag: 'admin-token', default: '', help: 'Bearer token for every change (unsigned intake, cancel, pause, resume, reconcile) and for task output, from loopback too. Without it the service makes one in TASKD_STATE_DIR/admin-token.' },
  { key: 'command', env: 'TASKD_COMMAND', flag: 'command', default: JSON.stringify(DEFAULT_COMMAND), help: 'JSON argv run for each task; {nid} is replaced by the task nid. No shell is involved.' },
  { key: 'concurrency', env: 'TASKD_CONCURRENCY', flag: 'concurrency', default: '1', help: 'Tasks running at once in all (one per site or server at most).' },
  { key: 'warmStarts', env: 'TASKD_WARM_STARTS', flag: 'warm-starts', default: '2', help: 'Start processes kept waiting for the next task, so a task starts without a fork of the service (at most TASKD_CONCURRENCY; 0: off).' },
  { key: 'taskTimeoutMs', env: 'TASKD_TASK_TIMEOUT', flag: 'task-timeout', default: '7200', help: 'Seconds a task may run before its process group gets SIGTERM.' },
  { key: 'killGraceMs', env: 'TASKD_KILL_GRACE', flag: 'kill-grace', default: '10', help: 'Seconds between SIGTERM and SIGKILL on timeout.' },
  { key: 'frontendUrl', env: 'TASKD_FRONTEND_URL', flag: 'frontend-url', default: '', help: 'Base URL of the hosting_taskd endpoints, e.g. https://aegir.example.com/hosting/taskd.' },
  { key: 'reconcileIntervalMs', env: 'TASKD_RECONCILE_INTERVAL', flag: 'reconcile-interval', default: '60', help: 'Seconds between reconciliations with the frontend.' },
  { key: 'maxStartsPerMinute', env: 'TASKD_MAX_STARTS_PER_MINUTE', flag: 'max-starts-per-minute', default: '', help: 'At most this many task starts a minute (empty: no limit).' },
  { key: 'maxLoad', env: 'TASKD_MAX_LOAD', flag: 'max-load', default: '', help: 'Defer starts while the 1-minute load average is above this (empty: no limit).' },
  { key: 'logDir', env: 'TASKD_LOG_DIR', flag: 'log-dir', default: '', help: 'Folder for per-task output (<nid>.log) and pid files (<nid>.pid). Default: aegir-taskd-<uid> in the temp dir.' },
  { key: 'stateDir', env: 'TASKD_STATE_DIR', flag: 'state-dir', default: '', help: 'Folder for what the service keeps between runs (the admin token it made, when none is configured). Default: aegir-taskd in $XDG_STATE_HOME or ~/.local/state.' },
  { key: 'logRetentionMs', env: 'TASKD_LOG_RETENTION', flag: 'log-retention', default: '30', help: 'Days to keep the output of ended tasks in TASKD_LOG_DIR (0: keep forever).' },
  { key: 'shutdownGraceMs', env: 'TASKD_SHUTDOWN_GRACE', flag: 'shutdown-grace', default: '30', help: 'Seconds to let running tasks finish on SIGTERM before exiting (they keep running).' },
  { key: 'rateLimit', env: 'TASKD_RATE_LIMIT', flag: 'rate-limit', default: '6000', help: 'Intake requests per client per minute (0: off).' },
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

const commandSchema = z.string().transform((value, ctx) => {
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
  const unknown = argv.flatMap((a: string) => a.match(/\{[^}]*\}/g) ?? []).filter((p) => p !== '{nid}');
  if (unknown.length > 0) {
    ctx.addIssue({ code: 'custom', message: `only the placeholder {nid} is allowed, found ${unknown.join(', ')}` });
    return z.NEVER;
  }
  if (!argv.some((a: string) => a.includes('{nid}'))) {
    ctx.addIssue({ code: 'custom', message: 'the command must contain {nid}' });
    return z.NEVER;
  }
  return argv as string[];
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
  concurrency: integer(1, 1000),
  warmStarts: integer(0, 64),
  taskTimeoutMs: seconds(0.01),
  killGraceMs: seconds(0),
  frontendUrl: urlSchema,
  reconcileIntervalMs: seconds(0.05),
  maxStartsPerMinute: optionalNumber(z.number().int('expected an integer').min(1, 'expected at least 1')),
  maxLoad: optionalNumber(z.number().positive('expected a positive number')),
  logDir: z.string().transform((d) => path.resolve(d === '' ? path.join(os.tmpdir(), `aegir-taskd-${process.getuid?.() ?? 'user'}`) : d)),
  stateDir: z.string(),
  logRetentionMs: z.coerce.number({ error: 'expected a number of days' }).min(0, 'expected 0 (keep forever) or more days').transform((d) => Math.round(d * 86_400_000)),
  shutdownGraceMs: seconds(0),
  rateLimit: integer(0, 1_000_000_000),
  confirmMaxAgeMs: seconds(0),
  historySize: integer(1, 1_000_000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
} satisfies Record<SettingKey, z.ZodType>);

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
  for (const s of settings) raw[s.key] = flags[s.key] ?? (env[s.env] || s.default);
  // Persistent, per user (so each hostmaster instance has its own), and never the shared temp dir.
  if (raw.stateDir === '') raw.stateDir = path.join(env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local', 'state'), 'aegir-taskd');
  raw.stateDir = path.resolve(raw.stateDir!);
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
  return off;
}

/** Names of environment variables whose values must never reach a child or a log line. */
export const SECRET_ENV_NAMES = ['TASKD_SECRET', 'TASKD_ADMIN_TOKEN'] as const;
