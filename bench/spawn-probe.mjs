// Loaded into the built service with `node --import` by bench/paced-forks.mjs, never in production:
// it notes the wall clock (ns, as `date +%s%N`) around every child_process.spawn of the service (the
// call holds the event loop for the fork, and until the child has exec'd), and at every take of a
// warm gate: which task it was handed, or that none was waiting. One line per event goes to
// $BENCH_SPAWN_FILE, in batches off the measured path:
//   spawn <called> <returned>
//   take <at> <nid>      (the nid is read from the task the runner then writes to the gate)
//   miss <at>
import childProcess from 'node:child_process';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { wallClockNs as now } from './stats.mjs';

const dist = process.env.BENCH_TASKD_DIST ? path.resolve(process.env.BENCH_TASKD_DIST) : path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const { WarmGates } = await import(pathToFileURL(path.join(dist, 'start-gate.js')).href);

const file = process.env.BENCH_SPAWN_FILE;
const lines = [];
const flush = () => {
  if (lines.length > 0 && file) fs.appendFileSync(file, `${lines.join('\n')}\n`);
  lines.length = 0;
};
setInterval(flush, 500).unref();
process.on('exit', flush);

// execa imports spawn from node:child_process: the builtin's ESM exports follow the patched module once synced.
const spawn = childProcess.spawn;
childProcess.spawn = function timedSpawn(...args) {
  const called = now();
  const child = spawn.apply(this, args);
  lines.push(`spawn ${called} ${now()}`);
  return child;
};
syncBuiltinESMExports();

const take = WarmGates.prototype.take;
WarmGates.prototype.take = function timedTake(...args) {
  const at = now();
  const gate = take.apply(this, args);
  if (!gate) {
    lines.push(`miss ${at}`);
    return gate;
  }
  const end = gate.stdin.end;
  gate.stdin.end = function endNoted(task, ...rest) {
    // The task's first line is the gate's start time, its second the nid (encodeGateTask).
    lines.push(`take ${at} ${String(task).split('\n')[1]}`);
    return end.call(this, task, ...rest);
  };
  return gate;
};
