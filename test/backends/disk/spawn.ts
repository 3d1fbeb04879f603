/**
 * Runs test/backends/disk/child.ts in child processes. The script is
 * bundled once with esbuild so that each child starts as plain Node (about
 * 50 ms) rather than through a TypeScript loader (about 400 ms): the crash
 * test starts fifty of them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleScript } from '../../support/bundle.js';

export interface BundledChild {
  /** Starts the child with these arguments; stdout is piped. */
  start(args: readonly string[]): ChildProcess;
  dispose(): Promise<void>;
}

export async function bundleChild(): Promise<BundledChild> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-child-'));
  const outfile = join(dir, 'child.mjs');
  await bundleScript(fileURLToPath(new URL('./child.ts', import.meta.url)), outfile);
  return {
    start: (args) => spawn(process.execPath, [outfile, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Collects a child's stdout lines (complete lines only) and its exit. */
export function watchChild(child: ChildProcess): { lines: string[]; stderr: () => string; exited: Promise<number | null>; onLine(fn: (line: string) => void): void } {
  const lines: string[] = [];
  const listeners: Array<(line: string) => void> = [];
  let partial = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    partial += chunk;
    let newline: number;
    while ((newline = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, newline);
      partial = partial.slice(newline + 1);
      lines.push(line);
      for (const fn of listeners) fn(line);
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => (stderr += chunk));
  // 'close' (not 'exit') so that every byte of stdout has been read.
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { lines, stderr: () => stderr, exited, onLine: (fn) => void listeners.push(fn) };
}
