import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, repoRoot, tempDir } from '../helpers.js';
import { cliPath } from '../e2e/service-process.js';
import { deployFile, readDeployFile, readEnvWithSh, readEnvWithSystemd, systemdEnvParser } from './deploy-files.js';
import { createServiceUser, sharedTempDir, type ServiceUser } from './service-user.js';

const generator = systemdEnvParser();
const fakeDrushPath = `${path.dirname(fixture('fake-drush/drush'))}:${path.dirname(process.execPath)}:/usr/bin:/bin`;

/** The shipped file with its folders moved into a scratch folder (the only change), written there. */
async function localEnvFile(dir: string): Promise<string> {
  const file = path.join(dir, 'aegir-taskd.env');
  const text = (await readDeployFile('aegir-taskd.env')).replaceAll('/var/log/aegir-taskd', path.join(dir, 'log')).replaceAll('/var/lib/aegir-taskd', path.join(dir, 'state'));
  await fs.writeFile(file, text);
  return file;
}

function checkConfig(env: Record<string, string>) {
  return spawnSync(process.execPath, [cliPath, 'check-config'], { encoding: 'utf8', env: { PATH: fakeDrushPath, HOME: process.env.HOME, ...env } });
}

describe('the shipped environment file', () => {
  it('holds only lines that sh and systemd read the same way', async () => {
    const text = await readDeployFile('aegir-taskd.env');
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      // NAME=value, the value bare or in single quotes, and no $ (environment.d would expand it).
      expect(line).toMatch(/^TASKD_[A-Z_]+=([^\s"'$\\]*|'[^'$]*')$/);
    }
  });

  it.runIf(generator)('is read identically by POSIX sh (set -a; .) and by systemd\'s EnvironmentFile= parser', async () => {
    const fromSh = readEnvWithSh(deployFile('aegir-taskd.env'));
    const fromSystemd = await readEnvWithSystemd(generator!, deployFile('aegir-taskd.env'));
    expect(fromSh.TASKD_COMMAND).toBe('["drush","@hostmaster","hosting-task","{nid}","--strict=0"]');
    expect(Object.keys(fromSh).length).toBeGreaterThan(8);
    expect(fromSystemd).toEqual(fromSh);
  });

  it.runIf(generator)('tells the two apart where they differ (the check can fail)', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'old.env');
    await fs.writeFile(file, 'TASKD_COMMAND=["drush","@hostmaster","hosting-task","{nid}"]\nTASKD_SECRET="a b" # rotation\n');
    const fromSh = readEnvWithSh(file);
    const fromSystemd = await readEnvWithSystemd(generator!, file);
    expect(fromSh.TASKD_COMMAND).toBe('[drush,@hostmaster,hosting-task,{nid}]');
    expect(fromSystemd.TASKD_COMMAND).toBe('["drush","@hostmaster","hosting-task","{nid}"]');
    expect(fromSystemd).not.toEqual(fromSh);
  });

  it.runIf(generator)('is accepted by check-config read either way', async () => {
    const dir = await tempDir();
    const file = await localEnvFile(dir);
    for (const env of [readEnvWithSh(file), await readEnvWithSystemd(generator!, file)]) {
      const result = checkConfig(env);
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
      expect(result.stdout).toContain('configuration OK');
      expect(result.stdout).toContain(`log dir ${path.join(dir, 'log')}, state dir ${path.join(dir, 'state')}`);
    }
    // And a configuration it cannot use is exit 2, which the units do not restart.
    const broken = checkConfig({ ...readEnvWithSh(file), TASKD_COMMAND: '["no-such-drush","{nid}"]' });
    expect(broken.status).toBe(2);
    expect(broken.stderr).toMatch(/TASKD_COMMAND: no-such-drush is not an executable file on PATH/);
  });
});

describe("the README's check command", () => {
  let user: ServiceUser | null = null;
  beforeAll(async () => {
    user = await createServiceUser('taskd-ck-');
  });
  afterAll(async () => {
    await user?.remove();
  });

  it('works as written, as the service user, with only paths and the user substituted', async () => {
    const readme = await fs.readFile(path.join(repoRoot, 'README.md'), 'utf8');
    const line = /^ *(.+?) +# checks the configuration as the service user$/m.exec(readme)?.[1];
    expect(line).toMatch(/^runuser -u aegir -- sh -c 'set -a; \. \/etc\/aegir-taskd\/aegir-taskd\.env; exec node \/opt\/aegir-taskd\/dist\/cli\.js check-config'$/);
    const dir = await sharedTempDir('taskd-check-');
    const env = await localEnvFile(dir);
    await fs.chmod(env, 0o644);
    let command = line!.replace('/etc/aegir-taskd/aegir-taskd.env', env).replace('/opt/aegir-taskd', repoRoot.replace(/\/$/, ''));
    if (user) {
      command = command.replace('runuser -u aegir --', `runuser -u ${user.name} --`);
      for (const folder of ['log', 'state']) spawnSync('install', ['-d', '-m', '0700', '-o', user.name, path.join(dir, folder)]);
    } else {
      process.stdout.write('skipped: runuser (no service user here); the rest of the line runs as this user\n');
      command = command.replace('runuser -u aegir -- ', '');
    }
    const result = spawnSync('/bin/sh', ['-c', command], { encoding: 'utf8', env: { PATH: `${fakeDrushPath}:/usr/sbin:/sbin`, HOME: process.env.HOME } });
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
    expect(result.stdout).toMatch(/^configuration OK\n/);
    await fs.rm(dir, { recursive: true, force: true });
  });
});
