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
 * @module
 */
import { access, readdir } from 'node:fs/promises';
import { openDiskStore } from '../backends/disk.js';
import { NotFoundError } from '../errors.js';
import { join } from 'node:path';
import { layered, type LayeredStore } from '../layers/layered.js';
import { diskIndexCache } from '../layers/packed/index-cache.js';
import { packed } from '../layers/packed/packed.js';
import type { Store } from '../store.js';
import type { Context } from './command.js';
import { resolveConfig, type ConfigFlags, type RemoteTarget, type ResolvedConfig } from './config.js';
import { UsageError } from './exit-codes.js';
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
}

/** What a command needs. */
export interface StoreNeeds {
  /** The command writes (reserved for read-only opening). */
  write?: boolean;
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

/**
 * Opens the remote a target names, in packs unless the target says not
 * (`packIndexDir` keeps the pack indexes read once). A `file://` remote is
 * created only with `create`.
 */
export async function openRemote(target: RemoteTarget, options: { create?: boolean; signal?: AbortSignal; packIndexDir?: string } = {}): Promise<Store> {
  const store = await openRemoteStore(target, options);
  if (!target.packs) return store;
  // Created on first use only: a command that fails on bad input leaves the local directory as it was.
  const indexCache = options.packIndexDir === undefined ? undefined : diskIndexCache(options.packIndexDir);
  return packed(store, { indexCache });
}

async function openRemoteStore(target: RemoteTarget, options: { create?: boolean }): Promise<Store> {
  if (target.kind === 'file') {
    if (options.create !== true) {
      const entries = await readdir(target.path).catch(() => undefined);
      if (entries === undefined) {
        throw new NotFoundError(
          `remote ${target.display} does not exist; create it with "cairn init --remote ${target.display}" or check the path`,
          { key: target.display },
        );
      }
    }
    return openDiskStore(target.path);
  }
  // Loaded only for an S3 remote: the SDK takes most of a second to load, which every command would pay.
  const { s3Store } = await import('../backends/s3.js');
  return s3Store({
    bucket: target.bucket,
    prefix: target.prefix,
    endpoint: target.endpoint,
    region: target.region,
    forcePathStyle: target.pathStyle || undefined,
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
  try {
    // Objects written with no remote are journaled nowhere: no remote can be assumed to hold them all any more.
    if (needs.write === true && config.remote === undefined) await updateRemoteState(config.dir, { objectsIn: undefined });
    remote = config.remote === undefined ? undefined : await openRemote(config.remote, { signal: ctx.signal, packIndexDir: join(config.dir, PACK_INDEX_SUBDIR) });
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
    return await fn({ config, local, remote, main: stack ?? local, layered: stack });
  } finally {
    // Closing the layered store closes both stores, after its journal removals have finished.
    await Promise.allSettled(stack === undefined ? [local.close()] : [stack.close({ upload: false })]);
  }
}
