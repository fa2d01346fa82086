import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

// ---- numbers -------------------------------------------------------------------

/** Three significant figures, thousands separated: enough to compare, not so many that noise looks like signal. */
export function formatNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '—';
  if (!Number.isFinite(value)) return '∞';
  const abs = Math.abs(value);
  if (abs > 0 && abs < 1) return value.toLocaleString('en-US', { maximumSignificantDigits: 2 });
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: 0, maximumFractionDigits: digits });
}

export const withUnit = (value, unit) => (value === null || value === undefined || Number.isNaN(value) ? '—' : `${formatNumber(value)} ${unit}`);
export const megabytes = (bytes) => bytes / 1024 / 1024;
export const ratio = (ours, theirs) => (ours === null || theirs === null || theirs === undefined || ours === undefined || theirs === 0 ? null : ours / theirs);
export const formatRatio = (value) => (value === null || Number.isNaN(value) ? '—' : `${formatNumber(value)}×`);

/** "a / b / c" for percentile triples. */
export const triple = (values, unit) => (values.some((v) => v === null || v === undefined || Number.isNaN(v)) ? '—' : `${values.map(formatNumber).join(' / ')} ${unit}`);

// ---- the machine -------------------------------------------------------------------

function osName() {
  try {
    const release = fs.readFileSync('/etc/os-release', 'utf8');
    const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(release);
    if (pretty) return `${pretty[1]}, ${os.type()} ${os.release()} ${os.arch()}`;
  } catch {
    /* not Linux, or no os-release */
  }
  return `${os.type()} ${os.release()} ${os.arch()}`;
}

function cpuTimes() {
  const [, ...fields] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const numbers = fields.map(Number);
  const idle = numbers[3] + (numbers[4] ?? 0);
  return { idle, total: numbers.reduce((sum, n) => sum + n, 0) };
}

/** Share of all cores busy over the next `ms`, before the bench adds anything: another job running makes every figure noisy. */
export async function machineBusyPercent(ms = 2000) {
  try {
    const before = cpuTimes();
    await new Promise((resolve) => setTimeout(resolve, ms));
    const after = cpuTimes();
    const total = after.total - before.total;
    return total > 0 ? (100 * (total - (after.idle - before.idle))) / total : null;
  } catch {
    return null;
  }
}

export function describeMachine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() || 'unknown CPU',
    cores: cpus.length,
    memoryGiB: os.totalmem() / 1024 ** 3,
    node: process.version,
    os: osName(),
    loadAverage: os.loadavg()[0],
  };
}

/** The commit the figures belong to, and whether the tree had changes on top of it; null outside a git checkout. */
export function describeCommit(repoRoot) {
  try {
    const run = (...args) => execFileSync('git', ['-C', repoRoot, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = run('rev-parse', '--short', 'HEAD');
    const dirty = run('status', '--porcelain', '--untracked-files=no') !== '';
    return dirty ? `${commit} with uncommitted changes` : commit;
  } catch {
    return null;
  }
}

// ---- the table -----------------------------------------------------------------------

const HEADER = ['Measure', 'aegir-taskd', 'Baseline', 'Baseline value', 'aegir-taskd ÷ baseline', 'Target', 'Met'];

function metCell(met) {
  if (met === true) return 'met';
  if (met === false) return '**missed**';
  return '—';
}

export function renderTable(rows) {
  const lines = [`| ${HEADER.join(' | ')} |`, `| ${HEADER.map(() => '---').join(' | ')} |`];
  for (const row of rows) {
    const cells = [row.measure, row.ours, row.baseline ?? '—', row.theirs ?? '—', row.ratio ?? '—', row.target ?? '—', metCell(row.met)];
    lines.push(`| ${cells.map((c) => String(c).replaceAll('|', '\\|')).join(' | ')} |`);
  }
  return lines.join('\n');
}

// ---- results.md ------------------------------------------------------------------------

const HISTORY_HEADING = '## History';
const HISTORY_INTRO =
  'Before/after figures: every full run adds a line here, newest last, and keeps the ones before it. ' +
  'When a change is meant to move a figure, say which change beside its line.';

/** The History section of an earlier results.md, so rewriting the table never loses it. */
export function readHistory(file) {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const at = text.indexOf(`\n${HISTORY_HEADING}\n`);
  if (at < 0) return [];
  return text
    .slice(at + HISTORY_HEADING.length + 2)
    .split('\n')
    .filter((line) => line.startsWith('- '));
}

export function renderResults({ title, machineLine, runLine, table, notes, history }) {
  return [
    `# ${title}`,
    '',
    runLine,
    '',
    machineLine,
    '',
    table,
    '',
    '## How each figure is made',
    '',
    ...notes.map((note) => `- ${note}`),
    '',
    HISTORY_HEADING,
    '',
    HISTORY_INTRO,
    '',
    ...history,
    '',
  ].join('\n');
}
