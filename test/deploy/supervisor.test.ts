import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminTokenFile } from '../../src/admin-token.js';
import { fixture, isProcessAlive, readRecords, waitFor } from '../helpers.js';
import { readDeployFile, tool, withLocalPaths } from './deploy-files.js';
import { createServiceUser, sharedTempDir, type ServiceUser } from './service-user.js';

const supervisord = tool('supervisord', "bash .ci/install-deploy-tools installs Debian's supervisor package");
const supervisorctl = tool('supervisorctl', "bash .ci/install-deploy-tools installs Debian's supervisor package");
// The long tasks last until the test releases them (about 15 s), 60 s at most: long enough to
// outlive a restart and a stop of the service even on a loaded machine.
const LONG_SECONDS = 60;

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

interface Setup {
  user: ServiceUser;
  dir: string;
  logDir: string;
  stateDir: string;
  recordFile: string;
  serviceLog: string;
  url: string;
  daemon: ChildProcess;
  ctl(...args: string[]): { status: number | null; output: string };
  instance: { url: string; stateDir: string; logDir: string };
}

let setup: Setup | null = null;
let createdUser: ServiceUser | null = null;
let daemonOutput = '';

/**
 * A private supervisord (its own socket, pid file and folder) running the shipped program section
 * and the shipped environment file, with only paths (and the port, so tests never collide)
 * substituted, and the repository's fake drush on PATH as Aegir.
 */
beforeAll(async () => {
  if (!supervisord || !supervisorctl) return;
  const user = await createServiceUser('taskd-sv-');
  if (!user) return;
  createdUser = user;
  const dir = await sharedTempDir('taskd-supervisor-');
  const logDir = path.join(dir, 'log', 'aegir-taskd');
  const stateDir = path.join(dir, 'lib', 'aegir-taskd');
  const recordFile = path.join(dir, 'records');
  const serviceLog = path.join(dir, 'supervisor', 'aegir-taskd.log');
  await fs.mkdir(path.dirname(serviceLog), { recursive: true });
  await fs.mkdir(path.join(dir, 'etc'));
  await fs.writeFile(recordFile, '');
  await fs.chown(recordFile, user.uid, user.gid);
  // The folders, made as the README says: owned by the service user, which refuses any other.
  for (const [mode, folder] of [['0750', logDir], ['0700', stateDir]] as const) {
    await fs.mkdir(path.dirname(folder), { recursive: true, mode: 0o755 });
    const made = spawnSync('install', ['-d', '-m', mode, '-o', user.name, '-g', user.name, folder], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
  }
  const port = await freePort();
  const envFile = path.join(dir, 'etc', 'aegir-taskd.env');
  const env = (await readDeployFile('aegir-taskd.env'))
    .replaceAll('/var/log/aegir-taskd', logDir)
    .replaceAll('/var/lib/aegir-taskd', stateDir)
    .replace(/^TASKD_PORT=8765$/m, `TASKD_PORT=${port}`);
  await fs.writeFile(envFile, env, { mode: 0o640 });
  // Mode 0640, owner root, group of the service user, as the README installs it.
  await fs.chown(envFile, 0, user.gid);
  const program = withLocalPaths(await readDeployFile('aegir-taskd.supervisor.conf'))
    .replaceAll('/etc/aegir-taskd/aegir-taskd.env', envFile)
    .replaceAll('/var/log/supervisor', path.dirname(serviceLog))
    .replaceAll('/var/aegir', user.home)
    .replace(/^user=aegir$/m, `user=${user.name}`)
    .replace('USER="aegir",LOGNAME="aegir"', `USER="${user.name}",LOGNAME="${user.name}"`);
  expect(program.replace(/^;.*$/gm, '')).not.toMatch(/\baegir\b(?!-taskd)/);

  // A second hostmaster on the same server: the instance program, filled in as its header says, with
  // an environment file made as the README makes one (only the port changed: its folders are flags).
  const instancePort = await freePort();
  const instanceEnv = path.join(dir, 'etc', `${user.name}.env`);
  await fs.writeFile(instanceEnv, (await readDeployFile('aegir-taskd.env')).replace(/^TASKD_PORT=.*$/m, `TASKD_PORT=${instancePort}`), { mode: 0o640 });
  await fs.chown(instanceEnv, 0, user.gid);
  const instanceLog = path.join(dir, 'instances', 'log', user.name);
  const instanceState = path.join(dir, 'instances', 'lib', user.name);
  for (const [mode, folder] of [['0750', instanceLog], ['0700', instanceState]] as const) {
    await fs.mkdir(path.dirname(folder), { recursive: true, mode: 0o755 });
    expect(spawnSync('install', ['-d', '-m', mode, '-o', user.name, folder]).status).toBe(0);
  }
  const instanceProgram = withLocalPaths(await readDeployFile('aegir-taskd-instance.supervisor.conf'))
    .replaceAll('/etc/aegir-taskd/', `${path.join(dir, 'etc')}/`)
    .replaceAll('/var/log/aegir-taskd/', `${path.dirname(instanceLog)}/`)
    .replaceAll('/var/lib/aegir-taskd/', `${path.dirname(instanceState)}/`)
    .replaceAll('/var/log/supervisor', path.dirname(serviceLog))
    .replaceAll('@INSTANCE@', user.name)
    .replaceAll('@HOME@', user.home);
  const socket = path.join(dir, 'supervisor.sock');
  const conf = path.join(dir, 'supervisord.conf');
  await fs.writeFile(
    conf,
    [
      '[unix_http_server]',
      `file=${socket}`,
      'chmod=0700',
      '[supervisord]',
      'nodaemon=true',
      `pidfile=${path.join(dir, 'supervisord.pid')}`,
      `logfile=${path.join(dir, 'supervisord.log')}`,
      `childlogdir=${dir}`,
      '[rpcinterface:supervisor]',
      'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface',
      '[supervisorctl]',
      `serverurl=unix://${socket}`,
      '',
      program,
      '',
      instanceProgram,
    ].join('\n'),
  );
  const daemon = spawn(supervisord, ['-c', conf], {
    env: {
      PATH: `${path.dirname(fixture('fake-drush/drush'))}:${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
      // Root's own, as supervisord started from an init script has them: the program must replace them.
      HOME: '/root',
      USER: 'root',
      RECORD_FILE: recordFile,
      LONG_NIDS: '101 103',
      RELEASE_DIR: dir,
      LONG_SECONDS: String(LONG_SECONDS),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  daemon.stdout!.on('data', (c: Buffer) => (daemonOutput += c.toString()));
  daemon.stderr!.on('data', (c: Buffer) => (daemonOutput += c.toString()));
  const ctl = (...args: string[]) => {
    const result = spawnSync(supervisorctl!, ['-c', conf, ...args], { encoding: 'utf8' });
    return { status: result.status, output: `${result.stdout}${result.stderr}` };
  };
  setup = { user, dir, logDir, stateDir, recordFile, serviceLog, url: `http://127.0.0.1:${port}`, daemon, ctl, instance: { url: `http://127.0.0.1:${instancePort}`, stateDir: instanceState, logDir: instanceLog } };
}, 60_000);

afterAll(async () => {
  if (!setup) {
    await createdUser?.remove();
    return;
  }
  setup.daemon.kill('SIGTERM');
  await once(setup.daemon, 'exit');
  // Whatever task the service left running, by the pid it recorded.
  for (const record of await readRecords(setup.recordFile)) if (isProcessAlive(record.pid)) process.kill(record.pid, 'SIGKILL');
  await setup.user.remove();
  await fs.rm(setup.dir, { recursive: true, force: true });
}, 60_000);

async function api(method: 'GET' | 'POST', route: string, token: string, body?: unknown) {
  const response = await request(`${setup!.url}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.body.text();
  return { status: response.statusCode, text, json: () => JSON.parse(text) as Record<string, unknown> };
}

const isReady = async () => {
  try {
    return (await request(`${setup!.url}/readyz`)).statusCode === 200;
  } catch {
    return false;
  }
};

describe('the supervisor program, under a real supervisord', () => {
  it.runIf(supervisord && supervisorctl && process.env.CI && process.getuid?.() === 0)(
    'starts the service as the service user, and a stop or restart during a long task leaves it running, re-adopted, its site waiting',
    async () => {
      const s = setup!;
      await waitFor(() => s.ctl('status', 'aegir-taskd').output.includes('RUNNING'), { timeoutMs: 20_000, what: `supervisord to run the program: ${s.ctl('status').output} ${daemonOutput} (exit ${s.daemon.exitCode}) ${readFileSync(path.join(s.dir, 'supervisord.log'), { encoding: 'utf8', flag: 'a+' })}` });
      await waitFor(isReady, { timeoutMs: 20_000, what: 'the service to listen' });
      // No token configured in the shipped file: the service made one in its state folder.
      const token = (await fs.readFile(adminTokenFile(s.stateDir), 'utf8')).trim();
      expect((await fs.stat(adminTokenFile(s.stateDir))).uid).toBe(s.user.uid);

      for (const [nid, rid] of [[101, 1], [103, 2]]) expect((await api('POST', '/v1/tasks', token, { nid, rid })).status).toBe(202);
      await waitFor(async () => (await readRecords(s.recordFile)).filter((r) => r.event === 'start').length === 2, { what: 'both long tasks to start' });
      const long = await readRecords(s.recordFile);
      const log = await api('GET', '/v1/tasks/101/log', token);
      expect(log.text).toContain(`HOME=${s.user.home} USER=${s.user.name} umask=0022`);

      // Restart: the service goes, the tasks stay, the new service adopts them and holds their lanes.
      const restarted = s.ctl('restart', 'aegir-taskd');
      expect(restarted.output).toMatch(/aegir-taskd: stopped[\s\S]*aegir-taskd: started/);
      for (const r of long) expect(isProcessAlive(r.pid), `task ${r.nid} after the restart`).toBe(true);
      await waitFor(isReady, { timeoutMs: 20_000, what: 'the restarted service' });
      expect((await api('GET', '/v1/tasks/101', token)).json()).toMatchObject({ state: 'running', source: 'adopted', lane: 'rid:1' });
      expect((await api('POST', '/v1/tasks', token, { nid: 102, rid: 1 })).json()).toMatchObject({ state: 'queued' });

      // Stop, then start: the same.
      expect(s.ctl('stop', 'aegir-taskd').output).toMatch(/aegir-taskd: stopped/);
      expect(await isReady()).toBe(false);
      for (const r of long) expect(isProcessAlive(r.pid), `task ${r.nid} after the stop`).toBe(true);
      expect(s.ctl('start', 'aegir-taskd').output).toMatch(/aegir-taskd: started/);
      await waitFor(isReady, { timeoutMs: 20_000, what: 'the service started again' });
      expect((await api('GET', '/v1/tasks/103', token)).json()).toMatchObject({ state: 'running', source: 'adopted', lane: 'rid:2' });
      // 102 was queued while no frontend could list it again: the journal brought it back through the
      // stop, still waiting for its site; sent again it is a duplicate.
      expect((await api('GET', '/v1/tasks/102', token)).json()).toMatchObject({ state: 'queued', lane: 'rid:1', waitingFor: { reason: 'lane_busy', nid: 101 } });
      expect((await api('POST', '/v1/tasks', token, { nid: 102, rid: 1 })).json()).toMatchObject({ duplicate: true, state: 'queued' });
      expect((await api('POST', '/v1/tasks', token, { nid: 104, rid: 2 })).status).toBe(202);

      // Both long tasks were alive through all of it; let them end now.
      for (const r of long) expect(isProcessAlive(r.pid), `task ${r.nid} at the end`).toBe(true);
      for (const r of long) await fs.writeFile(path.join(s.dir, String(r.nid)), '');
      await waitFor(async () => (await readRecords(s.recordFile)).filter((r) => r.event === 'end').length === 4, { timeoutMs: 20_000, what: 'all four tasks to end' });
      const records = await readRecords(s.recordFile);
      const at = (event: 'start' | 'end', nid: number) => records.find((r) => r.event === event && r.nid === nid)!.at;
      // Each long task ran once, and the next task of its site started only after it ended.
      expect(records.filter((r) => r.event === 'start').map((r) => r.nid).sort()).toEqual([101, 102, 103, 104]);
      expect(at('start', 102)).toBeGreaterThanOrEqual(at('end', 101));
      expect(at('start', 104)).toBeGreaterThanOrEqual(at('end', 103));
      // The service's own log went where the program section sends it.
      expect(await fs.readFile(s.serviceLog, 'utf8')).toMatch(/"msg":"aegir-taskd ready"/);
    },
    (LONG_SECONDS + 60) * 1000,
  );

  it.runIf(supervisord && supervisorctl && process.env.CI && process.getuid?.() === 0)(
    'runs a program per hostmaster instance, with its own port, folders and admin token',
    async () => {
      const s = setup!;
      const program = `aegir-taskd-${s.user.name}`;
      await waitFor(() => s.ctl('status', program).output.includes('RUNNING'), { timeoutMs: 20_000, what: `${program} to run: ${s.ctl('status').output}` });
      await waitFor(async () => (await request(`${s.instance.url}/readyz`).catch(() => null))?.statusCode === 200, { timeoutMs: 20_000, what: 'the instance to listen' });
      const own = (await fs.readFile(adminTokenFile(s.instance.stateDir), 'utf8')).trim();
      const other = (await fs.readFile(adminTokenFile(s.stateDir), 'utf8')).trim();
      expect(own).not.toBe(other);
      const post = (token: string) => request(`${s.instance.url}/v1/tasks`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ nid: 301, rid: 9 }) });
      const refused = await post(other);
      expect(refused.statusCode).toBe(401);
      await refused.body.dump();
      const accepted = await post(own);
      expect(accepted.statusCode).toBe(202);
      await accepted.body.dump();
      // Its task output went to its own folder (the flag), not to the environment file's.
      await waitFor(async () => (await fs.readFile(path.join(s.instance.logDir, '301.log'), 'utf8').catch(() => '')).includes(`USER=${s.user.name}`), { what: "the instance's task log" });
    },
    60_000,
  );
});
