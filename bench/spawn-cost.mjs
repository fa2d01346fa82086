// How long one spawn blocks the event loop, against the size of the process that spawns:
// node's child_process (libuv) forks, and a fork copies the page tables of the whole process.
//   node bench/spawn-cost.mjs          (after npm run build)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { execa } from 'execa';

const log = fs.openSync(path.join(os.tmpdir(), `aegir-taskd-spawn-cost-${process.pid}.log`), 'a');
const ballast = [];

async function measure(label, start) {
  const blocked = [];
  for (let i = 0; i < 100; i += 1) {
    const t0 = performance.now();
    const child = start();
    blocked.push(performance.now() - t0);
    await new Promise((resolve) => child.on('exit', resolve));
  }
  blocked.sort((a, b) => a - b);
  return `${label} p50 ${blocked[50].toFixed(2)} ms, p99 ${blocked[98].toFixed(2)} ms`;
}

for (const extraMB of [0, 100, 200]) {
  while (ballast.length < extraMB) ballast.push(Buffer.alloc(1 << 20, 1));
  const rss = Math.round(process.memoryUsage().rss / 1e6);
  const plain = await measure('child_process.spawn', () => spawn('/bin/true', [], { stdio: ['ignore', log, log], detached: true }));
  const viaExeca = await measure('execa', () => execa('/bin/true', [], { stdin: 'ignore', stdout: log, stderr: log, detached: true, reject: false, buffer: false }));
  console.log(`RSS ${rss} MB: ${plain}; ${viaExeca}`);
}
