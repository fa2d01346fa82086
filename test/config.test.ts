import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_COMMAND, describeDisabledFeatures, dispatchStatus, loadConfig, parseCommandLine, settings } from '../src/config.js';
import { generateSecret } from '../src/signature.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8765,
      secrets: [],
      adminToken: undefined,
      command: DEFAULT_COMMAND,
      concurrency: 1,
      warmStarts: 2,
      taskTimeoutMs: 7_200_000,
      frontendUrl: undefined,
      reconcileIntervalMs: 60_000,
      maxStartsPerMinute: undefined,
      maxLoad: undefined,
      shutdownGraceMs: 30_000,
      logRetentionMs: 30 * 86_400_000,
      rateLimit: 6000,
      maxQueued: 100_000,
      confirmMaxAgeMs: 5000,
      historySize: 1000,
    });
    expect(path.dirname(config.logDir)).toBe(os.tmpdir());
  });

  it('keeps its state in the user\'s state folder by default, never in the shared temp dir', () => {
    expect(loadConfig({ HOME: '/var/aegir' }).stateDir).toBe('/var/aegir/.local/state/aegir-taskd');
    expect(loadConfig({ HOME: '/var/aegir', XDG_STATE_HOME: '/srv/state' }).stateDir).toBe('/srv/state/aegir-taskd');
    expect(loadConfig({ HOME: '/var/aegir', TASKD_STATE_DIR: 'relative/state' }, {}).stateDir).toBe(path.resolve('relative/state'));
    expect(loadConfig({ TASKD_STATE_DIR: '/a' }, { stateDir: '/b' }).stateDir).toBe('/b');
  });

  it('reads every setting from its environment variable, and a flag wins over it', () => {
    const config = loadConfig({ TASKD_PORT: '9000', TASKD_CONCURRENCY: '4', TASKD_MAX_LOAD: '2.5' }, { port: '9001' });
    expect(config.port).toBe(9001);
    expect(config.concurrency).toBe(4);
    expect(config.maxLoad).toBe(2.5);
  });

  it('takes several secrets for rotation', () => {
    const a = generateSecret();
    const b = generateSecret();
    expect(loadConfig({ TASKD_SECRET: `${a} ${b}` }).secrets.map((s) => s.reveal())).toEqual([a, b]);
  });

  it.each([
    ['TASKD_PORT', 'abc', /^TASKD_PORT: expected an integer from 0 to 65535 \(got "abc"\)$/],
    ['TASKD_CONCURRENCY', '0', /^TASKD_CONCURRENCY: expected an integer from 1 to 1000/],
    ['TASKD_TASK_TIMEOUT', 'soon', /^TASKD_TASK_TIMEOUT: expected a number of seconds/],
    ['TASKD_COMMAND', 'drush hosting-task', /^TASKD_COMMAND: expected a JSON array/],
    ['TASKD_COMMAND', '["drush","{rid}"]', /^TASKD_COMMAND: only the placeholder \{nid\} is allowed, found \{rid\}/],
    ['TASKD_COMMAND', '["drush","hosting-task"]', /^TASKD_COMMAND: the command must contain \{nid\}/],
    ['TASKD_COMMAND', '["drush","{nid}","--note=a\\nb"]', /^TASKD_COMMAND: arguments must not contain line breaks or NUL characters/],
    ['TASKD_COMMAND', '["drush","{nid}","a\\u0000b"]', /^TASKD_COMMAND: arguments must not contain line breaks or NUL characters/],
    ['TASKD_WARM_STARTS', '-1', /^TASKD_WARM_STARTS: expected an integer from 0 to 64/],
    ['TASKD_FRONTEND_URL', 'ftp://x', /^TASKD_FRONTEND_URL: expected an http/],
    ['TASKD_MAX_STARTS_PER_MINUTE', '0', /^TASKD_MAX_STARTS_PER_MINUTE: expected at least 1/],
    ['TASKD_LOG_LEVEL', 'loud', /^TASKD_LOG_LEVEL: /],
  ])('stops on a bad %s with one line naming it', (name, value, message) => {
    let error: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  });

  it('never echoes a malformed secret or token', () => {
    expect(() => loadConfig({ TASKD_SECRET: 'whsec_tooShortButSecret' })).toThrow(/^TASKD_SECRET: /);
    try {
      loadConfig({ TASKD_SECRET: 'whsec_tooShortButSecret' });
    } catch (error) {
      expect((error as Error).message).not.toContain('tooShortButSecret');
    }
    try {
      loadConfig({ TASKD_ADMIN_TOKEN: 'short-secret' });
    } catch (error) {
      expect((error as Error).message).toMatch(/^TASKD_ADMIN_TOKEN: expected at least 16 characters$/);
    }
  });

  it('redacts secrets wherever the configuration is printed', () => {
    const secret = generateSecret();
    const config = loadConfig({ TASKD_SECRET: secret, TASKD_ADMIN_TOKEN: 'a-very-secret-admin-token' });
    for (const text of [JSON.stringify(config), inspect(config, { depth: 5 }), String(config.adminToken)]) {
      expect(text).not.toContain(secret.slice(6));
      expect(text).not.toContain('a-very-secret-admin-token');
    }
    expect(config.adminToken?.reveal()).toBe('a-very-secret-admin-token');
  });

  it('names the flag when the bad value came from a flag', () => {
    expect(() => loadConfig({}, { port: '-1' })).toThrow(/^--port: /);
  });

  it('reads the server limits, and refuses a header timeout over the request timeout or more streams than connections', () => {
    expect(loadConfig({})).toMatchObject({ requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, keepAliveTimeoutMs: 5000, maxConnections: 1024, maxStreams: 256, maxStreamsPerTask: 16, maxQueued: 100_000 });
    expect(() => loadConfig({ TASKD_REQUEST_TIMEOUT: '5', TASKD_HEADERS_TIMEOUT: '6' })).toThrow(/^TASKD_HEADERS_TIMEOUT: expected at most TASKD_REQUEST_TIMEOUT \(got "6"\)$/);
    expect(() => loadConfig({}, { maxStreams: '2000' })).toThrow(/^--max-streams: expected at most TASKD_MAX_CONNECTIONS/);
    expect(() => loadConfig({ TASKD_MAX_QUEUED: '0' })).toThrow(/^TASKD_MAX_QUEUED: /);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ TASKD_PORT: '', TASKD_CONCURRENCY: '' })).toMatchObject({ port: 8765, concurrency: 1 });
  });

  it('runs hosting-dispatch by default, and takes an empty value or [] as off rather than as unset', () => {
    expect(loadConfig({}).dispatchCommand).toEqual(['drush', '@hostmaster', 'hosting-dispatch']);
    expect(loadConfig({ TASKD_DISPATCH_COMMAND: '' }).dispatchCommand).toBeNull();
    expect(loadConfig({ TASKD_DISPATCH_COMMAND: ' [ ] ' }).dispatchCommand).toBeNull();
    expect(loadConfig({}, { dispatchCommand: '' }).dispatchCommand).toBeNull();
    expect(loadConfig({ TASKD_DISPATCH_COMMAND: '["/usr/bin/drush","@hm","hosting-dispatch"]' }).dispatchCommand).toEqual(['/usr/bin/drush', '@hm', 'hosting-dispatch']);
    expect(loadConfig({})).toMatchObject({ dispatchTimeoutMs: 600_000, dispatchMinIntervalMs: 60_000 });
  });

  it.each([
    ['drush @hostmaster hosting-dispatch', /TASKD_DISPATCH_COMMAND: expected a JSON array of strings/],
    ['["drush",""]', /TASKD_DISPATCH_COMMAND: expected a non-empty JSON array of non-empty strings/],
    ['["drush","{nid}"]', /TASKD_DISPATCH_COMMAND: no placeholder is allowed here, found \{nid\}/],
    ['["drush","a\\nb"]', /TASKD_DISPATCH_COMMAND: arguments must not contain line breaks/],
  ])('refuses TASKD_DISPATCH_COMMAND=%s', (value, message) => {
    expect(() => loadConfig({ TASKD_DISPATCH_COMMAND: value })).toThrow(message);
  });

  it('says whether dispatching is on', () => {
    const frontend = { TASKD_SECRET: generateSecret(), TASKD_FRONTEND_URL: 'http://127.0.0.1:1/x' };
    expect(dispatchStatus(loadConfig(frontend))).toEqual({ on: true, argv: ['drush', '@hostmaster', 'hosting-dispatch'] });
    expect(dispatchStatus(loadConfig({ ...frontend, TASKD_DISPATCH_COMMAND: '' }))).toEqual({ on: false, why: 'TASKD_DISPATCH_COMMAND is empty' });
    expect(describeDisabledFeatures(loadConfig({}))).toContain("dispatching Aegir's other queues (it needs TASKD_FRONTEND_URL and TASKD_SECRET)");
  });

  it('says what is switched off', () => {
    expect(describeDisabledFeatures(loadConfig({})).join('\n')).toMatch(/signed webhook intake \(TASKD_SECRET is not set\)/);
    expect(describeDisabledFeatures(loadConfig({ TASKD_SECRET: generateSecret(), TASKD_ADMIN_TOKEN: 'x'.repeat(20), TASKD_FRONTEND_URL: 'http://127.0.0.1:1/x' }))).toEqual([]);
  });
});

describe('parseCommandLine', () => {
  it('has a flag for every setting', () => {
    const argv = settings.flatMap((s) => [`--${s.flag}`, 'v']);
    expect(Object.keys(parseCommandLine(argv).flags).sort()).toEqual(settings.map((s) => s.key).sort());
  });

  it('refuses an unknown flag', () => {
    expect(() => parseCommandLine(['--prot', '1'])).toThrow(ConfigError);
  });
});
