/** Nearest-rank percentile of an ascending array: the value at or below which p% of samples fall. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

export function ascending(values) {
  return [...values].sort((a, b) => a - b);
}

export function median(values) {
  return percentile(ascending(values), 50);
}

/** Wall-clock nanoseconds as `date +%s%N` prints them; Date.now() has only millisecond resolution. */
export function wallClockNs() {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitUntil(check, { timeoutMs = 30_000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
