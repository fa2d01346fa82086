// Reads a .cpuprofile (node --cpu-prof; BENCH_CPU_PROF=<dir> npm run bench writes one per service)
// and prints where the time went: by package or file, by function (self), and by function (inclusive).
//   node bench/profile-summary.mjs <file.cpuprofile> [rows]
import fs from 'node:fs';

const [file, rowsArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node bench/profile-summary.mjs <file.cpuprofile> [rows]\n');
  process.exit(2);
}
const rows = Number(rowsArg) || 25;
// Piped into head, the reader may go away early; that is not an error worth a stack trace.
process.stdout.on('error', () => process.exit(0));
const profile = JSON.parse(fs.readFileSync(file, 'utf8'));

/** node_modules/<package>, a file of the service's own dist/, node's internals, or what V8 names the frame. */
function ownerOf(url) {
  if (!url) return '(native or V8)';
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (packageMatch) return packageMatch[1];
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const distMatch = /\/dist\/(.+)$/.exec(url);
  return distMatch ? `dist/${distMatch[1]}` : url;
}

function frameKey(node) {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url ? `${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'} ${where}`.trim();
}

function selfTimes() {
  const byNode = new Map();
  for (let i = 0; i < profile.samples.length; i += 1) {
    const id = profile.samples[i];
    byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  return byNode;
}

function parentsOf(nodes) {
  const parent = new Map();
  for (const node of nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  return parent;
}

function addTo(map, key, micros) {
  map.set(key, (map.get(key) ?? 0) + micros);
}

function summarize() {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = parentsOf(profile.nodes);
  const self = selfTimes();
  const byOwner = new Map();
  const bySelf = new Map();
  const byInclusive = new Map();
  let total = 0;
  for (const [id, micros] of self) {
    const node = nodes.get(id);
    total += micros;
    addTo(byOwner, ownerOf(node.callFrame.url), micros);
    addTo(bySelf, frameKey(node), micros);
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const key = frameKey(nodes.get(at));
      if (!seen.has(key)) addTo(byInclusive, key, micros);
      seen.add(key);
    }
  }
  return { total, byOwner, bySelf, byInclusive };
}

function print(title, map, total) {
  process.stdout.write(`\n${title}\n`);
  const sorted = [...map.entries()].sort((a, b) => b[1] - a[1]).slice(0, rows);
  for (const [key, micros] of sorted) {
    process.stdout.write(`${(micros / 1000).toFixed(1).padStart(10)} ms ${((100 * micros) / total).toFixed(1).padStart(5)}%  ${key}\n`);
  }
}

const { total, byOwner, bySelf, byInclusive } = summarize();
const idle = [...bySelf.entries()].filter(([k]) => k.startsWith('(idle)')).reduce((s, [, v]) => s + v, 0);
process.stdout.write(`profile: ${(total / 1000).toFixed(0)} ms sampled, ${((total - idle) / 1000).toFixed(0)} ms busy\n`);
print('Self time by package or file', byOwner, total);
print('Self time by function', bySelf, total);
print('Inclusive time by function', byInclusive, total);
