/**
 * Runs the built `cairn` binary (`dist/cli/main.js`) as users run it, in a
 * child process with a controlled environment.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = resolve(ROOT, 'dist/cli/main.js');

/** What a run printed and how it exited. */
export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** Added to a minimal environment (no AWS variables leak in from the parent). */
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string | Uint8Array;
  /** Called with the child once it runs (to signal it). */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
  timeoutMs?: number;
}

/** Throws a readable error when the binary was not built. */
export function assertBuilt(): void {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run "npm run build" (npm test builds it first)`);
}

/** Runs `cairn ...args`. */
export function cairn(args: readonly string[], options: CliOptions = {}): Promise<CliRun> {
  const started = performance.now();
  return new Promise((resolveRun, reject) => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TMPDIR: process.env.TMPDIR,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      // Keep the SDK off the parent's shared config and credentials files.
      AWS_CONFIG_FILE: '/nonexistent',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent',
      ...options.env,
    };
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // CAIRN_TEST_TIMINGS=1 prints how long each command took (to profile slow cases).
      if (process.env.CAIRN_TEST_TIMINGS === '1') process.stderr.write(`cairn ${args.join(' ').slice(0, 80)}: ${Math.round(performance.now() - started)} ms\n`);
      resolveRun({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    options.onSpawn?.(child);
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

/** Runs and expects exit 0; returns stdout. */
export async function cairnOk(args: readonly string[], options: CliOptions = {}): Promise<string> {
  const run = await cairn(args, options);
  if (run.code !== 0) {
    throw new Error(`cairn ${args.join(' ')} exited ${run.code ?? run.signal}:\n${run.stderr}${run.stdout}`);
  }
  return run.stdout;
}

/** Runs with --json and expects exit 0; returns the parsed document. */
export async function cairnJson<T = Record<string, unknown>>(args: readonly string[], options: CliOptions = {}): Promise<T> {
  const stdout = await cairnOk([...args, '--json'], options);
  return JSON.parse(stdout) as T;
}
