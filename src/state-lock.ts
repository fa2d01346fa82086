import fs from 'node:fs';
import path from 'node:path';
import { survivorAlive } from './adoption.js';
import { readProcessStartTime } from './runner.js';

export const LOCK_FILE = 'service.lock';

/**
 * One service per state folder: two would restore the same journal, start the same queued tasks
 * and write over each other's records. The lock file holds "<pid> <kernel start time>"; one whose
 * process is gone (a crash, a reboot) is taken over. Answers the function that releases it.
 */
export async function lockStateDir(stateDir: string): Promise<() => void> {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, LOCK_FILE);
  const mine = `${process.pid} ${(await readProcessStartTime(process.pid)) ?? ''}\n`;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      fs.writeFileSync(file, mine, { flag: 'wx', mode: 0o600 });
      return () => {
        if (fs.readFileSync(file, 'utf8') === mine) fs.rmSync(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const [pid, start] = fs.readFileSync(file, 'utf8').trim().split(' ');
    const holder = Number(pid);
    if (Number.isSafeInteger(holder) && holder > 0 && holder !== process.pid && (await survivorAlive(holder, start || null))) {
      throw new Error(`another aegir-taskd (pid ${holder}) uses the state folder ${stateDir}; give each instance its own TASKD_STATE_DIR`);
    }
    fs.rmSync(file, { force: true });
  }
  throw new Error(`could not take the lock ${file}`);
}
