import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { cliPath } from '../e2e/service-process.js';
import { tempDir } from '../helpers.js';
import { keysOf, readDeployFile, settingsOf, shippedEnv, tool, withLocalPaths } from './deploy-files.js';

/**
 * Options that make systemd set NoNewPrivileges=yes for a unit with User= (so sudo refuses to run),
 * from the NoNewPrivileges= entry and each option's own entry of systemd.exec(5): the same sixteen in
 * systemd 252 (Debian 12) and 257 (Debian 13).
 */
const IMPLY_NO_NEW_PRIVILEGES = [
  'DynamicUser', 'LockPersonality', 'MemoryDenyWriteExecute', 'PrivateDevices', 'ProtectClock', 'ProtectHostname',
  'ProtectKernelLogs', 'ProtectKernelModules', 'ProtectKernelTunables', 'RestrictAddressFamilies', 'RestrictNamespaces',
  'RestrictRealtime', 'RestrictSUIDSGID', 'SystemCallArchitectures', 'SystemCallFilter', 'SystemCallLog',
];

const UNITS = ['aegir-taskd.service', 'aegir-taskd@.service'];
const systemdAnalyze = tool('systemd-analyze', 'bash .ci/install-deploy-tools installs Debian\'s systemd package');

/** The options the installed systemd.exec(5) says imply NoNewPrivileges, read from the page itself. */
function impliedByInstalledManPage(): string[] | null {
  const page = ['/usr/share/man/man5/systemd.exec.5.gz', '/usr/share/man/man5/systemd.exec.5'].find((p) => existsSync(p));
  if (!page) return null;
  const raw = readFileSync(page);
  const text = (page.endsWith('.gz') ? gunzipSync(raw) : raw).toString();
  const names = new Set<string>();
  for (const entry of text.split(/\n\.PP\n/)) {
    const heading = entry.split('\n')[0]!;
    if (/NoNewPrivileges=yes\\fR\s+is implied/.test(entry)) for (const m of heading.matchAll(/\\fI(\w+)=\\fR/g)) names.add(m[1]!);
  }
  const start = text.indexOf('certain settings override this');
  for (const m of text.slice(start, text.indexOf('are specified', start)).matchAll(/\\fI(\w+)=\\fR/g)) names.add(m[1]!);
  return [...names].sort();
}

describe('the systemd units', () => {
  it.each(UNITS)('%s sets nothing that implies NoNewPrivileges, so sudo keeps working for drush', async (name) => {
    const keys = keysOf(await readDeployFile(name));
    expect(keys.filter((k) => IMPLY_NO_NEW_PRIVILEGES.includes(k) || k === 'NoNewPrivileges')).toEqual([]);
    // Nor anything that takes away what drush shares with the web server and the mysql client.
    for (const key of ['PrivateTmp', 'ProtectHome', 'CapabilityBoundingSet', 'RemoveIPC', 'PrivateUsers', 'PrivateNetwork', 'ReadOnlyPaths', 'InaccessiblePaths']) {
      expect(keys, key).not.toContain(key);
    }
    // The unit's own comment names every option it left out for this reason.
    const text = await readDeployFile(name.replace('@', ''));
    for (const option of IMPLY_NO_NEW_PRIVILEGES) expect(text, option).toMatch(new RegExp(`^#.*\\b${option}\\b`, 'm'));
  });

  it('holds the list against the systemd.exec(5) page of the installed systemd', () => {
    const fromPage = impliedByInstalledManPage();
    if (!fromPage) {
      process.stdout.write('skipped: no systemd.exec(5) page installed to read the list from\n');
      return;
    }
    expect(fromPage.length).toBeGreaterThan(10);
    expect(IMPLY_NO_NEW_PRIVILEGES.filter((o) => !fromPage.includes(o))).toEqual([]);
    expect(fromPage.filter((o) => !IMPLY_NO_NEW_PRIVILEGES.includes(o))).toEqual([]);
  });

  it.each(UNITS)('%s keeps drush\'s files readable, never kills a running drush, and does not restart a configuration error', async (name) => {
    const unit = settingsOf(await readDeployFile(name));
    const grace = loadConfig(shippedEnv()).shutdownGraceMs / 1000;
    expect(unit.get('UMask')).toBe('0022');
    expect(unit.get('KillMode')).toBe('process');
    expect(Number(unit.get('TimeoutStopSec'))).toBeGreaterThan(grace);
    expect(unit.get('Restart')).toBe('on-failure');
    expect(unit.get('RestartPreventExitStatus')).toBe('2');
    expect(unit.get('LogsDirectory')).toMatch(/^aegir-taskd/);
    expect(unit.get('StateDirectory')).toMatch(/^aegir-taskd/);
    expect(unit.get('StateDirectoryMode')).toBe('0700');
  });

  it('has a service that exits 2, which RestartPreventExitStatus=2 keeps from restarting, for a folder it cannot use', async () => {
    const dir = await tempDir();
    const notAFolder = path.join(dir, 'file');
    await fs.writeFile(notAFolder, '');
    for (const env of [{ TASKD_LOG_DIR: notAFolder }, { TASKD_STATE_DIR: notAFolder, TASKD_LOG_DIR: path.join(dir, 'log') }, { TASKD_PORT: 'eighty' }]) {
      const result = spawnSync(process.execPath, [cliPath], { encoding: 'utf8', env: { PATH: process.env.PATH, TASKD_ADMIN_TOKEN: '', ...env } });
      expect({ env, status: result.status }).toEqual({ env, status: 2 });
      expect(result.stderr).toMatch(/^aegir-taskd: TASKD_(LOG_DIR|STATE_DIR|PORT): /m);
    }
  });

  it('gives each instance of the template its own user, environment file, folders and so admin token', async () => {
    const unit = settingsOf(await readDeployFile('aegir-taskd@.service'));
    expect(unit.get('User')).toBe('%i');
    expect(unit.get('EnvironmentFile')).toBe('/etc/aegir-taskd/%i.env');
    expect(unit.get('LogsDirectory')).toBe('aegir-taskd/%i');
    expect(unit.get('StateDirectory')).toBe('aegir-taskd/%i');
    expect(unit.get('ExecStart')).toContain('--log-dir %L/aegir-taskd/%i --state-dir %S/aegir-taskd/%i');
    const single = settingsOf(await readDeployFile('aegir-taskd.service'));
    const env = shippedEnv();
    // The single unit's folders are the ones its environment file names.
    expect(env.TASKD_LOG_DIR).toBe(`/var/log/${single.get('LogsDirectory')}`);
    expect(env.TASKD_STATE_DIR).toBe(`/var/lib/${single.get('StateDirectory')}`);
  });

  it.runIf(systemdAnalyze)('passes systemd-analyze verify, the template as an instance, with only paths substituted', async () => {
    const dir = await tempDir('taskd-units-');
    const verify = (file: string) => spawnSync(systemdAnalyze!, ['verify', '--man=no', file], { encoding: 'utf8' });
    for (const [name, as] of [['aegir-taskd.service', 'aegir-taskd.service'], ['aegir-taskd@.service', 'aegir-taskd@o1.service']] as const) {
      await fs.writeFile(path.join(dir, name), withLocalPaths(await readDeployFile(name)));
      const result = verify(path.join(dir, as));
      // Warnings (an unknown key, a bad value) go to stderr with exit 0: any output is a failure.
      expect({ name, status: result.status, output: `${result.stdout}${result.stderr}`.trim() }).toEqual({ name, status: 0, output: '' });
    }
    // The check can fail: the same unit with a typo and a missing binary does.
    await fs.writeFile(path.join(dir, 'broken.service'), withLocalPaths(await readDeployFile('aegir-taskd.service')).replace('UMask=', 'UMsak=').replace(process.execPath, '/nonexistent/node'));
    const broken = verify(path.join(dir, 'broken.service'));
    expect(broken.stderr).toMatch(/Unknown key 'UMsak'/);
    expect(broken.status).not.toBe(0);
  });
});
