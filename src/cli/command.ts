/**
 * The shape of a CLI command and its context, and the options every
 * command accepts.
 *
 * @module
 */
import type { ParseArgsConfig } from 'node:util';
import type { Output } from './output.js';

/** Options as `util.parseArgs` declares them. */
export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

/** Parsed option values. */
export type Values = Record<string, string | boolean | Array<string | boolean> | undefined>;

/** What a command runs with. */
export interface Context {
  readonly positionals: readonly string[];
  readonly values: Values;
  readonly out: Output;
  readonly env: NodeJS.ProcessEnv;
  /** Fires on Ctrl-C / SIGTERM: commands stop and clean up. */
  readonly signal: AbortSignal;
}

/** A `cairn` command. */
export interface Command {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Usage line after `cairn `. */
  readonly usage: string;
  /** Longer description for `--help`. */
  readonly description?: string;
  readonly options?: OptionSpecs;
  /** Help text for each option, by name. */
  readonly optionHelp?: Record<string, string>;
  /** At least one example, shown by `--help`. */
  readonly examples: readonly string[];
  /** Runs the command; resolves to its exit code. */
  run(ctx: Context): Promise<number>;
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS: OptionSpecs = {
  dir: { type: 'string' },
  remote: { type: 'string' },
  endpoint: { type: 'string' },
  region: { type: 'string' },
  'path-style': { type: 'boolean' },
  'no-packs': { type: 'boolean' },
  'password-file': { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
};

export const GLOBAL_HELP: Record<string, string> = {
  dir: 'local store directory (env CAIRN_DIR; default .cairn)',
  remote: 'remote URL: file:///path or s3://bucket/prefix (env CAIRN_REMOTE; default: saved by init)',
  endpoint: 'S3 endpoint URL for MinIO, LocalStack, Ceph (env CAIRN_S3_ENDPOINT)',
  region: 'S3 region (env CAIRN_S3_REGION or AWS_REGION)',
  'path-style': 'S3 path-style addressing, needed by MinIO (env CAIRN_S3_PATH_STYLE=1)',
  'no-packs': 'write small objects to the remote one by one, not in packs (env CAIRN_PACKS=0; init saves it)',
  'password-file': "an encrypted remote's password: the file's first line (else env CAIRN_PASSWORD, else a prompt)",
  json: 'print the result as JSON on stdout',
  quiet: 'no notes or progress on stderr',
  help: 'show this help',
};
