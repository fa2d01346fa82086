import fs from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { removeAdoptedRunFiles } from '../src/adoption.js';
import { pidFilePath, runFilePath } from '../src/runner.js';
import { tempDir } from './helpers.js';

describe('removeAdoptedRunFiles', () => {
  it("removes an ended adopted child's pid and run files, and never those of a newer attempt", async () => {
    const dir = await tempDir();
    await fs.writeFile(pidFilePath(dir, 5), '4242 123\n');
    await fs.writeFile(runFilePath(dir, 5), '{"nid":5}\n');
    // A newer attempt of the same nid wrote its own pid file: the adopted child's end must leave it.
    expect(await removeAdoptedRunFiles(dir, 5, 4141)).toBe(false);
    expect(await fs.readFile(pidFilePath(dir, 5), 'utf8')).toBe('4242 123\n');
    expect(await removeAdoptedRunFiles(dir, 5, 4242)).toBe(true);
    await expect(fs.access(pidFilePath(dir, 5))).rejects.toThrow();
    await expect(fs.access(runFilePath(dir, 5))).rejects.toThrow();
    expect(await removeAdoptedRunFiles(dir, 5, 4242)).toBe(false);
  });
});
