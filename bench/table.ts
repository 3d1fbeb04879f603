/**
 * Benchmark helpers: timing loops and a fixed-width table printer, so that
 * every section of `npm run bench` reports in one shape.
 */
import { performance } from 'node:perf_hooks';

export interface Row {
  [column: string]: string | number;
}

/** Prints rows as an aligned table under a title. Numbers get thousands separators. */
export function printTable(title: string, rows: readonly Row[]): void {
  if (rows.length === 0) return;
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: string | number | undefined): string =>
    v === undefined ? '' : typeof v === 'number' ? formatNumber(v) : v;
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]): string => `| ${values.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(`\n### ${title}\n`);
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => cell(row[c]))));
}

export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/** Runs `fn` repeatedly for about `ms` milliseconds (after one warm-up call); returns calls per second. */
export async function opsPerSecond(fn: () => unknown, ms = 1000): Promise<number> {
  await fn();
  let count = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < ms) {
    await fn();
    count++;
    elapsed = performance.now() - start;
  }
  return (count * 1000) / elapsed;
}

/** Percentile of a sorted-or-not sample (0..100). */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/** Peak resident set size sampler: call stop() to get the peak in MiB since start. */
export function rssSampler(intervalMs = 20): { stop(): number; baseline: number } {
  const baseline = process.memoryUsage.rss() / 2 ** 20;
  let peak = baseline;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss() / 2 ** 20);
  }, intervalMs);
  return {
    baseline,
    stop(): number {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss() / 2 ** 20);
    },
  };
}
