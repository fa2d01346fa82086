import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Writable } from 'node:stream';
import { buildApp, type AppOptions } from '../src/app.js';
import { loadConfig, type Config } from '../src/config.js';
import { sign } from '../src/signature.js';
import { checkResponsesAgainstDocument } from './contract.js';

export const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

export const TEST_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
export const TEST_KEY = Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64');
export const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';
/** The header every change and every read of task output needs, from loopback too. */
export const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` } as const;

export async function tempDir(prefix = 'taskd-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** A configuration as the service would build it from the environment, with a fresh log dir and the test admin token ('' for none). */
export async function testConfig(env: Record<string, string> = {}): Promise<Config> {
  return loadConfig({ TASKD_LOG_DIR: await tempDir('taskd-logs-'), TASKD_STATE_DIR: await tempDir('taskd-state-'), TASKD_LOG_LEVEL: 'silent', TASKD_ADMIN_TOKEN: ADMIN_TOKEN, ...env });
}

/** Collects every log line the app writes, so tests can look for secrets in them. */
export function captureLogs() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      callback();
    },
  });
  return { lines, logger: pino({ level: 'trace' }, stream) };
}

export async function testApp(env: Record<string, string> = {}, options: Partial<Omit<AppOptions, 'config'>> = {}) {
  const config = await testConfig(env);
  await fs.mkdir(config.logDir, { recursive: true });
  const app = await buildApp({ config, env: process.env, defaultMetrics: false, ...options });
  checkResponsesAgainstDocument(app);
  return { app, config };
}

let counter = 0;
export function signedHeaders(body: string, options: { key?: Buffer; timestamp?: number; id?: string } = {}) {
  const id = options.id ?? `msg_test_${process.pid}_${++counter}`;
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign(options.key ?? TEST_KEY, id, timestamp, body),
  };
}

export async function waitFor<T>(check: () => T | Promise<T>, { timeoutMs = 5000, intervalMs = 10, what = 'condition' } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface RunRecord {
  event: 'start' | 'end';
  nid: number;
  pid: number;
  at: bigint;
}

export async function readRecords(file: string): Promise<RunRecord[]> {
  let text = '';
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [event, nid, pid, at] = line.split(' ');
      return { event: event as 'start' | 'end', nid: Number(nid), pid: Number(pid), at: BigInt(at!) };
    });
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const silentLog = { info() {}, warn() {}, error() {}, debug() {} };
