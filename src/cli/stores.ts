/**
 * Opening the stores a command works on: the local disk store, the remote
 * (a disk store for `file://`, an S3 store for `s3://`), and the local one
 * layered over the remote.
 *
 * The layered store is opened with `uploadOnWrite: false`: `snapshot` and
 * `put` only journal what they write, and `push` uploads it, so work is
 * done offline and published deliberately. Commands end with
 * `close({ upload: false })`, so that closing never uploads pending objects
 * as a side effect of, say, `cairn ref ls`: they stay journaled for `push`.
 *
 * A `file://` remote is opened read-only unless the command writes to it
 * (`push`, `sync`, `ref set --upstream`, `gc --force --remote-store`,
 * `verify --repair`): a read-side command never rewrites a shared remote,
 * not even to drop a damaged tail. Only `verify --repair` opens it with
 * `repair`. A damaged ref log is one warning line on stderr.
 *
 * An encrypted remote (one with keys under `.cairn/keys/`) is unlocked with
 * the password (see `password.ts`) when it is opened, and its packed layer
 * gets the master key. A remote whose saved config and keys disagree
 * (saved encrypted, holds no keys; saved plain, holds keys) is an
 * {@link EncryptionMismatchError}: plain and encrypted data are never mixed.
 *
 * @module
 */
import { access, readdir } from 'node:fs/promises';
import { DiskStore, openDiskStore, type RecoveryReport } from '../backends/disk.js';
import type { ForeignEntry } from '../backends/s3/config.js';
import { cut } from '../snapshot/limits.js';
import { isEncrypted, unlock } from '../crypto/keys.js';
import type { MasterKey } from '../crypto/master-key.js';
import { EncryptionMismatchError, isCairnError, NotFoundError } from '../errors.js';
import { join } from 'node:path';
import { layered, type LayeredStore } from '../layers/layered.js';
import { diskIndexCache } from '../layers/packed/index-cache.js';
import { packed } from '../layers/packed/packed.js';
import type { Store } from '../store.js';
import type { Context } from './command.js';
import { resolveConfig, type ConfigFlags, type RemoteTarget, type ResolvedConfig } from './config.js';
import { UsageError } from './exit-codes.js';
import { currentPassword, type PasswordSource } from './password.js';
import { updateRemoteState } from './remote-state.js';

/** Where, in the local directory, the pack indexes read from the remote are kept. */
export const PACK_INDEX_SUBDIR = 'pack-indexes';

/** The stores of one command. */
export interface Stores {
  readonly config: ResolvedConfig;
  /** The local disk store. */
  readonly local: Store;
  /** The remote store, when one is configured. */
  readonly remote: Store | undefined;
  /** Local layered over remote (reads fall through; writes are journaled for push), or local alone. */
  readonly main: Store;
  readonly layered: LayeredStore | undefined;
  /** What opening a `file://` remote found damaged (undefined for S3 or no remote). */
  readonly remoteRecovery: Readonly<RecoveryReport> | undefined;
}

/** How a command uses the remote: only read it, write to it, or write and repair a damaged ref log. */
export type RemoteAccess = 'read' | 'write' | 'repair';

/** What a command needs. */
export interface StoreNeeds {
  /** The command writes to the local store. */
  write?: boolean;
  /** How the command uses the remote (default `read`: a `file://` remote is opened read-only). */
  remote?: RemoteAccess;
  /** Fail with a usage error when no remote is configured. */
  needRemote?: boolean;
}

/** The store flags of a command's parsed options. */
export function configFlags(ctx: Context): ConfigFlags {
  const v = ctx.values;
  return {
    dir: v.dir as string | undefined,
    remote: v.remote as string | undefined,
    endpoint: v.endpoint as string | undefined,
    region: v.region as string | undefined,
    'path-style': v['path-style'] as boolean | undefined,
    'no-packs': v['no-packs'] as boolean | undefined,
  };
}

/** Opens the local disk store; unless `create`, a directory `init` never made is a {@link NotFoundError}. */
export async function openLocal(config: ResolvedConfig, options: { create?: boolean } = {}): Promise<Store> {
  if (options.create !== true) {
    const exists = await access(config.storeDir).then(
      () => true,
      () => false,
    );
    if (!exists) {
      throw new NotFoundError(`no Cairn store in ${config.dir}; run "cairn init" there, or point --dir / CAIRN_DIR at one`, {
        key: config.dir,
      });
    }
  }
  return openDiskStore(config.storeDir);
}

/** Options of {@link openRemote}. */
export interface OpenRemoteOptions {
  /** Create a `file://` remote that does not exist yet (`init`). */
  create?: boolean;
  signal?: AbortSignal;
  /** Where the pack indexes read once are kept. */
  packIndexDir?: string;
  /** How the command uses the remote (default `read`). */
  access?: RemoteAccess;
  /** Where warnings about the remote go (a damaged ref log, foreign S3 keys), one line each. */
  warn?: (line: string) => void;
  /** Asked for the password when the remote is encrypted; without it, an encrypted remote is a usage error. */
  password?: PasswordSource;
}

/** An opened remote, with what opening a `file://` one found damaged. */
export interface OpenedRemote {
  readonly store: Store;
  readonly recovery: Readonly<RecoveryReport> | undefined;
}

/**
 * Opens the remote a target names, in packs unless the target says not.
 * A `file://` remote is created only with `create`, and opened read-only
 * unless `access` says the command writes to it.
 */
export async function openRemote(target: RemoteTarget, options: OpenRemoteOptions = {}): Promise<OpenedRemote> {
  const store = await openRawRemote(target, options);
  const recovery = store instanceof DiskStore ? store.recovery : undefined;
  let encryption: MasterKey | undefined;
  try {
    encryption = await remoteEncryption(store, target, options);
  } catch (error) {
    await store.close();
    throw error;
  }
  if (!target.packs) return { store, recovery };
  // Created on first use only: a command that fails on bad input leaves the local directory as it was.
  const indexCache = options.packIndexDir === undefined ? undefined : diskIndexCache(options.packIndexDir);
  return { store: packed(store, { indexCache, encryption }), recovery };
}

/**
 * Whether the remote has keys. A damaged ref log (already warned about)
 * hides which refs exist: a remote not saved as encrypted is then taken as
 * plain, so that commands that never read the damaged refs still work (and
 * `verify` can report the damage); one saved as encrypted needs its keys,
 * and the error stands.
 */
export async function remoteHasKeys(raw: Store, target: RemoteTarget, signal: AbortSignal | undefined): Promise<boolean> {
  try {
    return await isEncrypted(raw, { signal });
  } catch (error) {
    if (target.encrypt === true || !isCairnError(error, 'ERR_CORRUPT_STORE')) throw error;
    return false;
  }
}

/**
 * The master key of an encrypted remote, unlocked with the password, or
 * undefined for a plain one. Whether the remote is encrypted is what it
 * holds (keys under `.cairn/keys/`); a saved config that says otherwise is
 * an {@link EncryptionMismatchError}.
 */
export async function remoteEncryption(raw: Store, target: RemoteTarget, options: OpenRemoteOptions): Promise<MasterKey | undefined> {
  const keyed = await remoteHasKeys(raw, target, options.signal);
  if (!keyed) {
    if (target.encrypt === true) {
      throw new EncryptionMismatchError(
        `remote ${target.display} was saved as encrypted, but it holds no keys: it is not an encrypted remote (or its keys were deleted); ` +
          'nothing was read or written. Check the remote URL; to use it as a plain remote, run "cairn init" with that URL and without --encrypt',
      );
    }
    return undefined;
  }
  if (target.encrypt === false) {
    throw new EncryptionMismatchError(
      `remote ${target.display} is encrypted, but this store saved it as plain; nothing was read or written. ` +
        `To use it, run "cairn init --encrypt --remote ${target.display.split(' ')[0]}" and give its password`,
    );
  }
  if (!target.packs) {
    throw new EncryptionMismatchError(`remote ${target.display} is encrypted, and encryption needs packs: drop --no-packs (and CAIRN_PACKS=0)`);
  }
  if (options.password === undefined) throw new UsageError(`remote ${target.display} is encrypted: this command cannot unlock it`);
  return unlock(raw, await options.password(`remote ${target.display}`), { signal: options.signal });
}

/** A foreign S3 entry as one line: the key escaped (no control characters reach the terminal) and cut. */
export function foreignLine(entry: ForeignEntry): string {
  return `skipped ${entry.kind === 'ref' ? 'a ref' : 'an object key'} another tool wrote: ${cut(JSON.stringify(entry.key))} (${entry.reason})`;
}

/**
 * Opens the backend store a target names, with no packed layer: a disk
 * store for `file://` (created only with `create`; read-only unless
 * `access` says the command writes), an S3 store for `s3://`. A damaged
 * ref log is one warning.
 */
export async function openRawRemote(target: RemoteTarget, options: OpenRemoteOptions = {}): Promise<Store> {
  const store = await openBackend(target, options);
  if (store instanceof DiskStore && store.recovery.refLogDamaged) {
    options.warn?.(
      `the ref log of remote ${target.display} is damaged: refs it may hide cannot be read; ` +
        'run "cairn verify" to see where, and "cairn verify --repair" (with write access) to drop the damaged records',
    );
  }
  return store;
}

async function openBackend(target: RemoteTarget, options: OpenRemoteOptions): Promise<Store> {
  if (target.kind === 'file') {
    const entries = await readdir(target.path).catch(() => undefined);
    if (entries === undefined && options.create !== true) {
      throw new NotFoundError(
        `remote ${target.display} does not exist; create it with "cairn init --remote ${target.display}" or check the path`,
        { key: target.display },
      );
    }
    const access = options.access ?? 'read';
    // Only a remote that is not there yet (or an empty directory) is created; one that exists is only read.
    if (access === 'read' && entries !== undefined && entries.length > 0) return openDiskStore(target.path, { readOnly: true });
    return openDiskStore(target.path, { repair: access === 'repair' });
  }
  // Loaded only for an S3 remote: the SDK takes most of a second to load, which every command would pay.
  const { s3Store } = await import('../backends/s3.js');
  return s3Store({
    bucket: target.bucket,
    prefix: target.prefix,
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: target.pathStyle || undefined,
    onForeign: options.warn === undefined ? undefined : (entry) => options.warn!(foreignLine(entry)),
  });
}

/**
 * Opens the stores a command needs, runs `fn`, and closes them whatever
 * happens (closing the underlying stores, never uploading on the way out).
 *
 * @example
 * ```ts
 * return withStores(ctx, { write: true }, async ({ main }) => { await main.put(bytes); return EXIT.ok; });
 * ```
 */
export async function withStores<T>(ctx: Context, needs: StoreNeeds, fn: (stores: Stores) => Promise<T>): Promise<T> {
  const config = await resolveConfig(configFlags(ctx), ctx.env);
  if (needs.needRemote === true && config.remote === undefined) {
    throw new UsageError('no remote configured; run "cairn init --remote URL" or pass --remote (or set CAIRN_REMOTE)');
  }
  const local = await openLocal(config);
  let remote: Store | undefined;
  let remoteRecovery: Readonly<RecoveryReport> | undefined;
  try {
    // Objects written with no remote are journaled nowhere: no remote can be assumed to hold them all any more.
    if (needs.write === true && config.remote === undefined) await updateRemoteState(config.dir, { objectsIn: undefined });
    if (config.remote !== undefined) {
      const opened = await openRemote(config.remote, {
        signal: ctx.signal,
        packIndexDir: join(config.dir, PACK_INDEX_SUBDIR),
        access: needs.remote ?? 'read',
        warn: (line) => ctx.out.warn(line),
        password: currentPassword(ctx),
      });
      remote = opened.store;
      remoteRecovery = opened.recovery;
    }
  } catch (error) {
    await local.close();
    throw error;
  }
  // A packed remote turns each upload batch into part of a pack: batches of up to 4 MiB (not the
  // default 32 objects) let 8 of them fill a 16 MiB pack, so a push costs about 3 PUTs per pack.
  // Its `has` is free for indexed objects but a HEAD on the bucket for every miss (a loose object
  // may predate packs), so only objects too large for a pack are looked for before upload.
  const uploads = config.remote?.packs === true ? { batchSize: 4096, maxBatchBytes: 4 * 2 ** 20, checkRemoteMinBytes: 2 ** 20 + 1 } : {};
  const stack = remote === undefined ? undefined : layered({ upper: local, lower: remote, uploadOnWrite: false, ...uploads });
  try {
    return await fn({ config, local, remote, main: stack ?? local, layered: stack, remoteRecovery });
  } finally {
    // Closing the layered store closes both stores, after its journal removals have finished.
    await Promise.allSettled(stack === undefined ? [local.close()] : [stack.close({ upload: false })]);
  }
}
