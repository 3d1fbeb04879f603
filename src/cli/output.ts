/**
 * What the CLI prints: results on stdout (text, or one JSON document with
 * `--json`), progress bars and errors on stderr. Progress bars are drawn
 * only when stderr is a terminal and neither `--json` nor `--quiet` is set,
 * so scripts and logs never see them.
 *
 * @module
 */
import type { Progress } from '../snapshot/progress.js';

/** Human-readable byte count (binary units). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/**
 * A count with thousands separators (`1,234,567`), as `toLocaleString('en-US')`
 * writes it, without it: the first Intl call loads ICU data, 30-100 ms that
 * every command printing a count (or a help text) would pay.
 */
export function formatCount(n: number): string {
  if (!Number.isSafeInteger(n)) return String(n);
  const digits = String(Math.abs(n));
  const grouped = digits.replace(/\B(?=(\d{3})+$)/g, ',');
  return n < 0 ? `-${grouped}` : grouped;
}

const count = formatCount;

/** Where a command writes. */
export interface OutputOptions {
  json: boolean;
  quiet: boolean;
  /** Draw progress bars (stderr is a TTY and not json/quiet). */
  progress: boolean;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

/** Output channel shared by every command. */
export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly #progress: boolean;
  readonly #stdout: NodeJS.WritableStream;
  readonly #stderr: NodeJS.WritableStream;
  #bar: ProgressBar | undefined;

  constructor(options: OutputOptions) {
    this.json = options.json;
    this.quiet = options.quiet;
    this.#progress = options.progress;
    this.#stdout = options.stdout ?? process.stdout;
    this.#stderr = options.stderr ?? process.stderr;
  }

  /** A result line for people (skipped with --json). */
  line(text: string): void {
    if (this.json) return;
    this.clearBar();
    this.#stdout.write(`${text}\n`);
  }

  /** The command's JSON result (only with --json). */
  result(value: unknown): void {
    if (!this.json) return;
    this.clearBar();
    this.#stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** A note on stderr (skipped with --quiet and --json). */
  note(text: string): void {
    if (this.quiet || this.json) return;
    this.clearBar();
    this.#stderr.write(`${text}\n`);
  }

  /** A warning on stderr (always shown, even with --quiet). */
  warn(text: string): void {
    this.clearBar();
    this.#stderr.write(`cairn: warning: ${text}\n`);
  }

  /**
   * Waits until stdout has room (a slow reader applies backpressure, so a
   * long listing does not pile up in memory) and lets signals in.
   */
  async drained(): Promise<void> {
    const out = this.#stdout as NodeJS.WritableStream & { writableNeedDrain?: boolean };
    if (out.writableNeedDrain === true) await new Promise((resolve) => out.once('drain', resolve));
    else await new Promise((resolve) => setImmediate(resolve));
  }

  /** The raw stdout, for `cat`. */
  get stdout(): NodeJS.WritableStream {
    return this.#stdout;
  }

  /** A progress listener drawing one bar (a no-op when bars are off). */
  progress(label: string, unit = 'files'): (p: Progress) => void {
    if (!this.#progress) return () => undefined;
    this.#bar ??= new ProgressBar(this.#stderr);
    const bar = this.#bar;
    return (p) => bar.update(label, unit, p);
  }

  /** Removes the bar from the terminal (before printing anything else, and at exit). */
  clearBar(): void {
    this.#bar?.clear();
  }

  /** Ends the bar for good. */
  done(): void {
    this.#bar?.clear();
    this.#bar = undefined;
  }
}

/** A one-line progress bar redrawn at most ten times a second. */
class ProgressBar {
  readonly #stream: NodeJS.WritableStream;
  #lastDraw = 0;
  #drawn = false;
  #label = '';
  #startedAt = 0;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
  }

  update(label: string, unit: string, p: Progress): void {
    const now = Date.now();
    if (label !== this.#label) {
      this.#label = label;
      this.#startedAt = now;
      this.#lastDraw = 0;
    }
    const finished = p.total !== undefined && p.done >= p.total;
    if (!finished && now - this.#lastDraw < 100) return;
    this.#lastDraw = now;
    const seconds = Math.max(0.001, (now - this.#startedAt) / 1000);
    const columns = (this.#stream as NodeJS.WriteStream).columns || 80;
    const fraction =
      p.totalBytes !== undefined && p.totalBytes > 0 ? p.bytes / p.totalBytes : p.total !== undefined && p.total > 0 ? p.done / p.total : undefined;
    const counts = p.total !== undefined ? `${count(p.done)}/${count(p.total)} ${unit}` : `${count(p.done)} ${unit}`;
    const bytes = p.bytes > 0 || p.totalBytes !== undefined
      ? `  ${formatBytes(p.bytes)}${p.totalBytes !== undefined ? `/${formatBytes(p.totalBytes)}` : ''}  ${formatBytes(p.bytes / seconds)}/s`
      : `  ${count(Math.round(p.done / seconds))} ${unit}/s`;
    const text = `${label} ${counts}${bytes}`;
    let line = text;
    if (fraction !== undefined) {
      const percent = `${Math.floor(Math.min(1, fraction) * 100)}%`.padStart(4);
      const rest = text.slice(label.length + 1);
      // The bar takes what room is left, between 10 and 30 cells; no room, no bar.
      const room = columns - 1 - (label.length + percent.length + rest.length + 5);
      const width = Math.min(30, room);
      if (width >= 10) {
        const filled = Math.round(Math.min(1, fraction) * width);
        line = `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${percent} ${rest}`;
      } else {
        line = `${label} ${percent} ${rest}`;
      }
    }
    this.#stream.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
    this.#drawn = true;
  }

  clear(): void {
    if (!this.#drawn) return;
    this.#stream.write('\r\x1b[2K');
    this.#drawn = false;
  }
}
