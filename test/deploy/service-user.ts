import { spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface ServiceUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  remove(): Promise<void>;
}

/**
 * A system user to run the service as, the way `aegir` runs it on a hostmaster: made only in CI
 * running as root (a throwaway machine), and removed afterwards. Elsewhere null, with the reason
 * printed, and the tests that need one are skipped.
 */
export async function createServiceUser(prefix: string): Promise<ServiceUser | null> {
  if (!process.env.CI || process.getuid?.() !== 0) {
    process.stdout.write('skipped: a test user to run the service as is created only in CI running as root (CI=true)\n');
    return null;
  }
  const name = `${prefix}${process.pid}`.slice(0, 31);
  // Outside the temp dir, whose mkdtemp folders are 0700 root: the user's home must be its own.
  const home = path.join('/var/tmp', `${name}-home`);
  const made = spawnSync('useradd', ['--home-dir', home, '--create-home', '--shell', '/bin/sh', '--user-group', '--comment', 'aegir-taskd test user', name], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`useradd ${name} failed: ${made.stderr}`);
  // The service runs on the Node.js running the tests: that user must be able to run it.
  if (spawnSync('runuser', ['-u', name, '--', process.execPath, '--version']).status !== 0) {
    spawnSync('userdel', [name]);
    await fs.rm(home, { recursive: true, force: true });
    throw new Error(`the test user cannot run ${process.execPath}: install Node.js where every user can (see .ci/install-node-lines)`);
  }
  const id = (flag: string) => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
  return {
    name,
    uid: id('-u'),
    gid: id('-g'),
    home,
    async remove() {
      spawnSync('userdel', [name]);
      await fs.rm(home, { recursive: true, force: true });
    },
  };
}

/** A folder every user may enter, for files the service user must read (mkdtemp folders are 0700). */
export async function sharedTempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  await fs.chmod(dir, 0o755);
  return dir;
}
