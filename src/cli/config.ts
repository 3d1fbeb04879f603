/**
 * CLI configuration: where the local store lives and which remote it syncs
 * with. Each setting is taken from, in order: the command-line flag, the
 * environment, the local directory's `config.json` (written by `cairn init`),
 * then the default.
 *
 * The local directory (`.cairn/` by default) holds:
 * - `config.json`: `{ "version": 1, "remote": { "url", "endpoint"?, "region"?, "pathStyle"?, "packs"?, "encrypt"? } }`
 * - `store/`: the disk store itself;
 * - `gc-state.json`: when `cairn gc` first saw each unreachable object;
 * - `remote-state.json`: which remote holds every local object, and which one the last sync was with (`remote-state.ts`).
 *
 * No credential is ever read from or written to the config: S3 access uses
 * the standard AWS chain (environment, shared config and credentials files,
 * SSO, instance roles).
 *
 * @module
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CorruptStoreError } from '../errors.js';
import { UsageError } from './exit-codes.js';

/** The remote, as the user gave it. */
export interface RemoteConfig {
  /** `file:///abs/path` or `s3://bucket/prefix`. */
  readonly url: string;
  /** S3 endpoint URL for MinIO, LocalStack, Ceph, R2 (AWS when absent). */
  readonly endpoint?: string | undefined;
  readonly region?: string | undefined;
  /** Path-style addressing (MinIO needs it). */
  readonly pathStyle?: boolean | undefined;
  /** Small objects go to the remote in packs (docs/packs.md); `false` writes them loose. Absent means true. */
  readonly packs?: boolean | undefined;
  /**
   * The remote is encrypted (`init --encrypt`): commands unlock it with a
   * password. `false` (or absent, in a saved config): it is plain, and a
   * remote that turns out to hold keys is refused. `undefined` for a remote
   * given by flag or environment that `init` never saved: whether it is
   * encrypted is looked up.
   */
  readonly encrypt?: boolean | undefined;
}

/** A parsed remote URL. */
export type RemoteTarget =
  | { readonly kind: 'file'; readonly path: string; readonly display: string; readonly packs: boolean; readonly encrypt: boolean | undefined }
  | {
      readonly kind: 's3';
      readonly bucket: string;
      readonly prefix: string;
      readonly endpoint?: string | undefined;
      readonly region?: string | undefined;
      readonly pathStyle: boolean;
      readonly display: string;
      readonly packs: boolean;
      readonly encrypt: boolean | undefined;
    };

/** The saved `config.json`. */
export interface SavedConfig {
  readonly version: 1;
  readonly remote?: RemoteConfig | undefined;
}

/** Everything a command needs to open its stores. */
export interface ResolvedConfig {
  /** The local directory (absolute). */
  readonly dir: string;
  /** The disk store inside it. */
  readonly storeDir: string;
  readonly remote: RemoteTarget | undefined;
  /** The saved config, if `init` ran. */
  readonly saved: SavedConfig | undefined;
}

/** Flags that configure stores, common to every command. */
export interface ConfigFlags {
  dir?: string | undefined;
  remote?: string | undefined;
  endpoint?: string | undefined;
  region?: string | undefined;
  'path-style'?: boolean | undefined;
  'no-packs'?: boolean | undefined;
  /** `init --encrypt`. */
  encrypt?: boolean | undefined;
}

export const CONFIG_FILE = 'config.json';
export const STORE_SUBDIR = 'store';

/** Reads `config.json`; `undefined` when the directory was never initialised. */
export async function loadConfig(dir: string): Promise<SavedConfig | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, CONFIG_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const value = JSON.parse(text) as SavedConfig;
    if (value.version !== 1) throw new Error(`unknown version ${String(value.version)}`);
    return value;
  } catch (cause) {
    throw new CorruptStoreError(`${join(dir, CONFIG_FILE)} is not a valid Cairn config; fix it or run "cairn init" again`, { cause });
  }
}

/** Writes `config.json` atomically (temp file, then rename). */
export async function saveConfig(dir: string, config: SavedConfig): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${CONFIG_FILE}.tmp-${process.pid}`);
  await writeFile(tmp, `${JSON.stringify(config, null, 2)}\n`);
  await rename(tmp, join(dir, CONFIG_FILE));
}

function envFlag(value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  return /^(1|true|yes|on)$/i.test(value);
}

/**
 * Refuses a URL with a user name or password in it (`http://KEY:SECRET@host`):
 * it would be saved in config files and shown in messages. The message
 * never repeats what came before the "@".
 */
function refuseCredentials(url: string, what: string): void {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(url)) return;
  throw new UsageError(
    `the ${what} holds a user name or password (before "@"); remove it: Cairn never takes credentials in URLs, ` +
      'since they would be saved and printed. Give S3 credentials through the AWS environment variables ' +
      '(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a profile (AWS_PROFILE)',
  );
}

/** Parses a remote URL (with options) into a target; a bad URL is a {@link UsageError} that shows the accepted forms. */
export function parseRemote(remote: RemoteConfig): RemoteTarget {
  refuseCredentials(remote.url, 'remote URL');
  if (remote.endpoint !== undefined) refuseCredentials(remote.endpoint, 'S3 endpoint URL');
  const url = remote.url;
  const forms = 'use file:///absolute/path or s3://bucket/prefix';
  if (url.startsWith('file:')) {
    let path: string;
    try {
      path = fileURLToPath(url);
    } catch {
      throw new UsageError(`bad remote URL ${JSON.stringify(url)}: ${forms}`);
    }
    return { kind: 'file', path, display: url, packs: remote.packs ?? true, encrypt: remote.encrypt };
  }
  if (url.startsWith('s3://')) {
    const rest = url.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    let prefix = slash < 0 ? '' : rest.slice(slash + 1);
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new UsageError(`bad remote URL ${JSON.stringify(url)}: ${JSON.stringify(bucket)} is not a valid bucket name; ${forms}`);
    }
    if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
    if (remote.endpoint !== undefined) {
      try {
        new URL(remote.endpoint);
      } catch {
        throw new UsageError(`bad S3 endpoint ${JSON.stringify(remote.endpoint)}: give a URL such as http://127.0.0.1:9000`);
      }
    }
    return {
      kind: 's3',
      bucket,
      prefix,
      endpoint: remote.endpoint,
      region: remote.region,
      pathStyle: remote.pathStyle ?? false,
      display: `s3://${bucket}/${prefix}${remote.endpoint !== undefined ? ` at ${remote.endpoint}` : ''}`,
      packs: remote.packs ?? true,
      encrypt: remote.encrypt,
    };
  }
  if (isAbsolute(url)) return parseRemote({ ...remote, url: `file://${url}` });
  throw new UsageError(`bad remote URL ${JSON.stringify(url)}: ${forms}`);
}

/**
 * Resolves the configuration from flags, environment and the saved config.
 *
 * @example
 * ```ts
 * const config = await resolveConfig({ dir: '.cairn' }, process.env);
 * ```
 */
export async function resolveConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv): Promise<ResolvedConfig> {
  const dir = resolve(flags.dir ?? (env.CAIRN_DIR || undefined) ?? '.cairn');
  const saved = await loadConfig(dir);
  const remote = remoteFrom(flags, env, saved);
  return { dir, storeDir: join(dir, STORE_SUBDIR), remote: remote === undefined ? undefined : parseRemote(remote), saved };
}

/** The remote settings from flags, then environment, then the saved config. */
export function remoteFrom(flags: ConfigFlags, env: NodeJS.ProcessEnv, saved: SavedConfig | undefined): RemoteConfig | undefined {
  const url = flags.remote ?? (env.CAIRN_REMOTE || undefined) ?? saved?.remote?.url;
  if (url === undefined) return undefined;
  // Saved S3 options apply only to the saved remote, not to a different URL given by flag.
  const base = url === saved?.remote?.url ? saved.remote : undefined;
  return {
    url,
    endpoint: flags.endpoint ?? (env.CAIRN_S3_ENDPOINT || undefined) ?? base?.endpoint,
    region: flags.region ?? (env.CAIRN_S3_REGION || undefined) ?? base?.region ?? (env.AWS_REGION || undefined),
    pathStyle: flags['path-style'] ?? envFlag(env.CAIRN_S3_PATH_STYLE || env.CAIRN_S3_FORCE_PATH_STYLE) ?? base?.pathStyle,
    packs: (flags['no-packs'] === true ? false : undefined) ?? envFlag(env.CAIRN_PACKS) ?? base?.packs,
    // A saved remote is plain unless init saved it encrypted; another one is looked at when opened.
    encrypt: flags.encrypt === true ? true : base !== undefined ? (base.encrypt ?? false) : undefined,
  };
}
