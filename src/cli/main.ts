#!/usr/bin/env node
/**
 * The `cairn` command: parses the command line, runs one command, prints
 * its result, and exits with a documented code (see `exit-codes.ts` and
 * `docs/cli.md`). Errors are printed as one line that says what failed and
 * what to do; set `CAIRN_DEBUG=1` for the stack.
 *
 * Ctrl-C (or SIGTERM) aborts the running command through its
 * `AbortSignal`: each command stops at a safe point and cleans up (a
 * restore removes its staging directory; a snapshot never moves a ref), and
 * the process exits 130. A second Ctrl-C exits at once.
 *
 * @module
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { InvalidHashError, isCairnError } from '../errors.js';
import { cat, has, put } from './cmd-objects.js';
import { gc, init, verify } from './cmd-maintain.js';
import { ref } from './cmd-refs.js';
import { diff, restore, snapshot } from './cmd-snapshot.js';
import { key } from './cmd-keys.js';
import { pull, push, status, sync } from './cmd-sync.js';
import { GLOBAL_HELP, GLOBAL_OPTIONS, type Command, type OptionSpecs } from './command.js';
import { EXIT, exitCodeOf, oneLine, redactUrls, UsageError } from './exit-codes.js';
import { Output } from './output.js';

/** Every command, in the order `cairn --help` lists them. */
export const COMMANDS: readonly Command[] = [init, snapshot, restore, diff, push, pull, sync, status, put, cat, has, ref, key, verify, gc];

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

function optionLines(options: OptionSpecs, help: Record<string, string>): string[] {
  return Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short !== undefined ? `-${spec.short}, ` : '    '}--${name}${spec.type === 'string' ? ' <value>' : ''}`;
    return `  ${flag.padEnd(28)} ${help[name] ?? ''}`;
  });
}

function commandHelp(command: Command): string {
  return [
    `usage: cairn ${command.usage}`,
    '',
    command.summary,
    ...(command.description !== undefined ? ['', command.description] : []),
    ...(command.options !== undefined ? ['', 'options:', ...optionLines(command.options, command.optionHelp ?? {})] : []),
    '',
    'global options:',
    ...optionLines(GLOBAL_OPTIONS, GLOBAL_HELP),
    '',
    command.examples.length > 1 ? 'examples:' : 'example:',
    ...command.examples.map((e) => `  ${e}`),
    '',
  ].join('\n');
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: cairn <command> [options]',
    '',
    'Cairn: a content-addressed object store. Snapshot directories, push them to a file:// or s3://',
    'remote, restore them anywhere.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'global options:',
    ...optionLines(GLOBAL_OPTIONS, GLOBAL_HELP),
    '',
    'example (a round trip with no server):',
    '  cairn init --remote file:///tmp/cairn-remote',
    '  cairn snapshot ./docs --ref snapshots/docs && cairn push',
    '  cairn restore snapshots/docs /tmp/docs-copy',
    '',
    '"cairn <command> --help" shows each command\'s options and an example.',
    'Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 conflict, 5 corrupt data, 6 remote unreachable or access denied,',
    '7 limit exceeded, 8 remote ref write outcome unknown, 9 wrong password, 130 interrupted.',
    '',
  ].join('\n');
}

/**
 * Runs the CLI with `argv` (without `node` and the script) and resolves to
 * the exit code. Exported for tests; `main.js` run as a program calls it
 * with `process.argv`.
 */
export async function runCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, signal: AbortSignal = new AbortController().signal): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    const topic = first === 'help' ? COMMANDS.find((c) => c.name === argv[1]) : undefined;
    process.stdout.write(topic !== undefined ? commandHelp(topic) : mainHelp());
    return first === undefined ? EXIT.usage : EXIT.ok;
  }
  if (first === '--version' || first === '-V') {
    process.stdout.write(`cairn ${version()}\n`);
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === first);
  const json = argv.includes('--json');
  const fail = (error: unknown, label: string): number => {
    const code = exitCodeOf(error);
    if (error instanceof InvalidHashError && !/expected|a hash is/.test(error.message)) {
      error.message += '; a hash is "sha256:<64 hex digits>" or a CIDv1 such as "bafkrei..."';
    }
    if (json) {
      const errorCode = isCairnError(error) ? error.code : error instanceof UsageError ? error.code : 'ERR_FAILED';
      process.stderr.write(`${JSON.stringify({ error: { code: errorCode, message: oneLine(error), exitCode: code } })}\n`);
    } else {
      process.stderr.write(`cairn: ${label}: ${oneLine(error)}\n`);
    }
    if (env.CAIRN_DEBUG === '1' && error instanceof Error) process.stderr.write(`${redactUrls(error.stack ?? '')}\n`);
    return code;
  };
  if (command === undefined) {
    return fail(new UsageError(`unknown command ${JSON.stringify(first)}; run "cairn --help" for the list`), 'error');
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: argv.slice(1) as string[],
      options: { ...GLOBAL_OPTIONS, ...command.options },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    return fail(new UsageError(`${oneLine(error).replace(/\. To specify a positional.*$/, '')}; see "cairn ${command.name} --help"`), command.name);
  }
  if (parsed.values.help === true) {
    process.stdout.write(commandHelp(command));
    return EXIT.ok;
  }
  const quiet = parsed.values.quiet === true;
  const out = new Output({ json, quiet, progress: !json && !quiet && process.stderr.isTTY === true && env.CI === undefined });
  try {
    return await command.run({ positionals: parsed.positionals, values: parsed.values, out, env, signal });
  } catch (error) {
    out.done();
    if (signal.aborted) {
      if (!json) process.stderr.write(`cairn: ${command.name}: interrupted; nothing was left half-written\n`);
      return EXIT.interrupted;
    }
    return fail(error, command.name);
  } finally {
    out.done();
  }
}

/**
 * The AWS SDK warns on every S3 command when Node is older than it will
 * soon require (`process.emitWarning` with a message that starts
 * "NodeVersionSupportWarning"): eight lines on stderr, even with `-q` and
 * `--json`. The CLI prints only its own words (the README gives the Node
 * advice), so that one warning, and only it, is dropped.
 */
export function filterSdkNodeWarning(): void {
  const original = process.emitWarning.bind(process);
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]): void => {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (text.startsWith('NodeVersionSupportWarning')) return;
    (original as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
  }) as typeof process.emitWarning;
}

async function runAsProgram(): Promise<void> {
  filterSdkNodeWarning();
  const controller = new AbortController();
  // Every concurrent request listens on this one signal; the default cap of 10 would only print warnings.
  setMaxListeners(0, controller.signal);
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(EXIT.interrupted);
    controller.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed stdout (`cairn ref ls | head -1`) is not an error worth a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT.ok);
  });
  const code = await runCli(process.argv.slice(2), process.env, controller.signal);
  if (process.env.CAIRN_DEBUG === '1') {
    process.stderr.write(`cairn: debug: peak RSS ${Math.round(process.resourceUsage().maxRSS / 1024)} MiB\n`);
  }
  process.exitCode = code;
  // Let stdout drain, then leave even if a library left a handle open (an idle keep-alive socket).
  setTimeout(() => process.exit(code), 50).unref();
}

await runAsProgram();
