// (run on its own) How much a fork of a large process stalls its event loop when the fork is made on
// that loop, against on a worker thread (a gate spawner that was tried): 150 spawns of /bin/true, one
// every 10 ms (a replacement gate per webhook at 100/s), while the loop allocates as a service does.
//   node bench/fork-stall.mjs main     node bench/fork-stall.mjs worker     (interleave a few of each)
import { spawn } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';

const SPAWNS = 150;

if (isMainThread) {
  const mode = process.argv[2];
  if (mode !== 'main' && mode !== 'worker') throw new Error('usage: node bench/fork-stall.mjs main|worker');
  // About the service's size under load: the fork copies the page tables of all of it.
  const ballast = Array.from({ length: 60 }, () => Buffer.alloc(1 << 20, 1));
  const worker = mode === 'worker' ? new Worker(new URL(import.meta.url)) : null;
  if (worker) await new Promise((resolve) => worker.once('online', resolve));
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const garbage = [];
  const churn = setInterval(() => {
    for (let i = 0; i < 200; i += 1) garbage.push({ i, s: `x${i}` });
    if (garbage.length > 100_000) garbage.length = 0;
  }, 1);
  await new Promise((resolve) => {
    let sent = 0;
    let exited = 0;
    const onExit = () => {
      exited += 1;
      if (exited === SPAWNS) resolve();
    };
    worker?.on('message', onExit);
    const timer = setInterval(() => {
      sent += 1;
      if (sent >= SPAWNS) clearInterval(timer);
      if (worker) worker.postMessage('spawn');
      else spawn('/bin/true', [], { stdio: 'ignore', detached: true }).once('exit', onExit);
    }, 10);
  });
  delay.disable();
  clearInterval(churn);
  const ms = (ns) => (ns / 1e6).toFixed(2);
  console.log(`fork on ${mode.padEnd(6)} RSS ${Math.round(process.memoryUsage().rss / 1e6)} MB (${ballast.length} MB ballast): event-loop delay p50 ${ms(delay.percentile(50))} ms, p99 ${ms(delay.percentile(99))} ms, max ${ms(delay.max)} ms, mean ${ms(delay.mean)} ms`);
  process.exit(0);
} else {
  parentPort.on('message', () => spawn('/bin/true', [], { stdio: 'ignore', detached: true }).once('exit', () => parentPort.postMessage('exited')));
}
