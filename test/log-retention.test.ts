import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pruneOldLogs } from '../src/log-retention.js';
import { tempDir } from './helpers.js';

describe('pruneOldLogs', () => {
  it('removes task logs older than the retention, but never an active task\'s, nor other files', async () => {
    const dir = await tempDir();
    const old = new Date(Date.now() - 40 * 86_400_000);
    for (const name of ['1.log', '2.log', '3.log', 'notes.txt', '4.pid']) {
      await fs.writeFile(path.join(dir, name), 'x');
      if (name !== '3.log') await fs.utimes(path.join(dir, name), old, old);
    }
    const removed = await pruneOldLogs(dir, 30 * 86_400_000, (nid) => nid === 2);
    expect(removed).toEqual([1]);
    expect((await fs.readdir(dir)).sort()).toEqual(['2.log', '3.log', '4.pid', 'notes.txt']);
  });
});
