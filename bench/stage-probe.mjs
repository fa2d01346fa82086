// Loaded into the built service with `node --import` by bench/stages.mjs, never in production: it
// notes the wall clock (ns, as `date +%s%N`) at each stage of a webhook's way to its start and
// appends one line per request to $BENCH_STAGE_FILE, after the answer, off the measured path.
//   request  Node's HTTP parser has the request line and headers (diagnostics channel http.server.request.start)
//   body     fastify has routed it and read the body (the first preValidation hook)
//   checked  signature, JSON and schema checked (the first preHandler hook)
//   take     the runner asks the warm gates for a waiting gate (WarmGates.take)
//   written  the task is written to the gate's pipe (the gate's stdin.end returned)
//   turnEnd  the event loop's turn that wrote it has ended (a setImmediate from the write)
import diagnostics from 'node:diagnostics_channel';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { wallClockNs as now } from './stats.mjs';

const dist = process.env.BENCH_TASKD_DIST ? path.resolve(process.env.BENCH_TASKD_DIST) : path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const { WarmGates } = await import(pathToFileURL(path.join(dist, 'start-gate.js')).href);

const file = process.env.BENCH_STAGE_FILE;
let current = null;

diagnostics.subscribe('http.server.request.start', ({ request }) => {
  current = { request: now() };
  request.benchStages = current;
});

diagnostics.subscribe('fastify.initialization', ({ fastify }) => {
  fastify.addHook('preValidation', (request, _reply, done) => {
    const stages = request.raw.benchStages;
    if (stages) {
      stages.body = now();
      current = stages;
    }
    done();
  });
  fastify.addHook('preHandler', (request, _reply, done) => {
    const stages = request.raw.benchStages;
    if (stages) {
      stages.checked = now();
      stages.nid = request.body?.nid;
      current = stages;
    }
    done();
  });
  fastify.addHook('onResponse', (request, _reply, done) => {
    const s = request.raw.benchStages;
    // A little later: the hand-off may come after the answer.
    if (s && s.nid !== undefined && file) setTimeout(() => fs.appendFileSync(file, `${s.nid} ${s.request} ${s.body} ${s.checked} ${s.take ?? '-'} ${s.written ?? '-'} ${s.turnEnd ?? '-'}\n`), 5);
    done();
  });
});

// The start happens in the turn of the handler, so the request being handled is the one starting.
const take = WarmGates.prototype.take;
WarmGates.prototype.take = function takeTimed() {
  const stages = current;
  if (stages) stages.take = now();
  const gate = take.call(this);
  if (gate && stages) {
    const end = gate.stdin.end.bind(gate.stdin);
    gate.stdin.end = (...args) => {
      const result = end(...args);
      stages.written = now();
      // What the main thread still does in this turn competes with the gate for a core.
      setImmediate(() => (stages.turnEnd = now()));
      return result;
    };
  }
  return gate;
};
