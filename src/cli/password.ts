/**
 * Where the CLI gets passwords of encrypted remotes: a file
 * (`--password-file`, its first line), the environment (`CAIRN_PASSWORD`),
 * or a prompt on the terminal that does not echo. New passwords (`key add`,
 * `key passwd`) come from `--new-password-file`, `CAIRN_NEW_PASSWORD`, or a
 * prompt asked twice. With no source and no terminal, a usage error says
 * how to give one. A password is never printed, logged or put in an error.
 *
 * @module
 */
import { readFile } from 'node:fs/promises';
import { AbortError } from '../errors.js';
import type { Context } from './command.js';
import { UsageError } from './exit-codes.js';

/** How a command asks for a password, once it knows it needs one. */
export type PasswordSource = (what: string) => Promise<string>;

/** The first line of a password file (trailing newline, and a CR before it, stripped). */
async function fromFile(path: string, option: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read the ${option} ${JSON.stringify(path)}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const line = text.split('\n', 1)[0]!.replace(/\r$/, '');
  if (line === '') throw new UsageError(`the ${option} ${JSON.stringify(path)} is empty: its first line is the password`);
  return line;
}

/**
 * The password of an encrypted remote: `--password-file`, else
 * `CAIRN_PASSWORD`, else a prompt on the terminal.
 *
 * @example
 * ```ts
 * const password = await currentPassword(ctx)('remote s3://b/p/');
 * ```
 */
export function currentPassword(ctx: Context): PasswordSource {
  return async (what) => {
    const file = ctx.values['password-file'];
    if (typeof file === 'string') return fromFile(file, '--password-file');
    const env = ctx.env.CAIRN_PASSWORD;
    if (env !== undefined && env !== '') return env;
    requireTerminal(`${what} is encrypted: give its password with CAIRN_PASSWORD=... or --password-file FILE (or run on a terminal to be asked)`);
    return promptHidden(`password for ${what}: `, ctx.signal);
  };
}

/**
 * A new password: from `fileOption` / `envName` when given, else asked
 * twice on the terminal (the two must match).
 *
 * @example
 * ```ts
 * const next = await newPassword(ctx, 'new-password-file', 'CAIRN_NEW_PASSWORD')('the new key');
 * ```
 */
export function newPassword(ctx: Context, fileOption: string, envName: string): PasswordSource {
  return async (what) => {
    const file = ctx.values[fileOption];
    if (typeof file === 'string') return fromFile(file, `--${fileOption}`);
    const env = ctx.env[envName];
    if (env !== undefined && env !== '') return env;
    requireTerminal(`${what} needs a password: give it with ${envName}=... or --${fileOption} FILE (or run on a terminal to be asked)`);
    const first = await promptHidden(`password for ${what}: `, ctx.signal);
    if (first === '') throw new UsageError('the password is empty; choose a non-empty password');
    const again = await promptHidden('the same password again: ', ctx.signal);
    if (again !== first) throw new UsageError('the two passwords differ; nothing was changed, run the command again');
    return first;
  };
}

function requireTerminal(message: string): void {
  if (process.stdin.isTTY !== true || process.stderr.isTTY !== true) throw new UsageError(message);
}

/** Reads one line from the terminal in raw mode, echoing nothing. Ctrl-C interrupts (exit 130). */
function promptHidden(question: string, signal: AbortSignal): Promise<string> {
  const stdin = process.stdin;
  // Echo off before the prompt shows: an answer typed the moment it appears is never echoed.
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  process.stderr.write(question);
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (error?: Error): void => {
      stdin.off('data', onData);
      signal.removeEventListener('abort', onAbort);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (error === undefined) resolve(value);
      else reject(error);
    };
    const onAbort = (): void => finish(new AbortError('interrupted at the password prompt'));
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish();
        // Raw mode turns Ctrl-C and Ctrl-D into characters.
        if (ch === '\u0003') return finish(new AbortError('interrupted at the password prompt'));
        if (ch === '\u0004') return value === '' ? finish(new UsageError('no password given')) : finish();
        if (ch === '\u007f' || ch === '\b') value = Array.from(value).slice(0, -1).join('');
        else if (ch >= ' ') value += ch;
      }
    };
    signal.addEventListener('abort', onAbort, { once: true });
    stdin.on('data', onData);
  });
}
