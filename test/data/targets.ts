/**
 * The backends the data-API tests run on. Each target opens a fresh, empty
 * namespace and can hand out more clients of it (separate connections for
 * S3 and Redis, as separate machines would have) and reopen it after a
 * close, to check that a restart keeps everything.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDiskStore } from '../../src/backends/disk.js';
import { openRedisStore } from '../../src/backends/redis.js';
import { s3Store } from '../../src/backends/s3.js';
import type { EventStreamsOptions } from '../../src/data/streams.js';
import { memoryStore, type Store } from '../../src/index.js';
import { minioOptions, uniquePrefix, primaryServer, deletePrefix } from '../support/s3.js';
import type { RedisServer } from '../support/redis.js';

export interface Namespace {
  /** A client of the namespace; `client()` may return a new connection or the same store. */
  client(): Promise<Store>;
  /** Whether data survives closing every client and opening a new one. */
  readonly durable: boolean;
  /** Closes every client made and removes what the namespace left behind. */
  dispose(): Promise<void>;
}

export interface Target {
  readonly name: string;
  /** Options every EventStreams of the data suite gets (the generic layout on a native backend). */
  readonly streams?: EventStreamsOptions;
  /** The layout new streams take on this target. */
  readonly streamLayout: 'native' | 'refs';
  /** Whether data survives closing every client and opening a new one. */
  readonly durable: boolean;
  open(): Promise<Namespace>;
}

/** Tracks clients so dispose() can close them (closing twice is allowed by the contract). */
function tracked(make: () => Promise<Store>, durable: boolean, cleanup: () => Promise<void>): Namespace {
  const clients: Store[] = [];
  return {
    durable,
    async client() {
      const store = await make();
      clients.push(store);
      return store;
    },
    async dispose() {
      await Promise.all(clients.map((c) => c.close()));
      await cleanup();
    },
  };
}

export const memoryTarget: Target = {
  name: 'memory',
  streamLayout: 'refs',
  durable: false,
  async open() {
    // One process, one store: every "client" is the same store.
    const store = memoryStore();
    return tracked(async () => store, false, async () => undefined);
  },
};

export function s3Target(): Target {
  return {
    name: 's3 (MinIO)',
    streamLayout: 'refs',
    durable: true,
    async open() {
      const server = primaryServer();
      const prefix = uniquePrefix(server, 'data');
      return tracked(async () => s3Store(minioOptions(prefix)), true, () => deletePrefix(server, prefix));
    },
  };
}

let redisCounter = 0;

/** Redis; with `layout: 'refs'`, streams are created in the generic layout. */
export function redisTarget(server: () => RedisServer, layout: 'native' | 'refs' = 'native'): Target {
  return {
    name: layout === 'native' ? 'redis' : 'redis (generic stream layout)',
    streamLayout: layout,
    streams: { native: layout === 'native' },
    durable: true,
    async open() {
      const keyPrefix = `data${++redisCounter}-${process.pid}:`;
      return tracked(() => openRedisStore({ url: server().url, keyPrefix }), true, async () => undefined);
    },
  };
}

/** Disk; with `layout: 'refs'`, streams are created in the generic layout. */
export function diskTarget(layout: 'native' | 'refs' = 'native'): Target {
  return {
    name: layout === 'native' ? 'disk' : 'disk (generic stream layout)',
    streamLayout: layout,
    streams: { native: layout === 'native' },
    durable: true,
    async open() {
      const dir = await mkdtemp(join(tmpdir(), 'cairn-data-'));
      // Several stores may open one directory at once, like separate processes would.
      return tracked(() => openDiskStore(dir), true, () => rm(dir, { recursive: true, force: true }));
    },
  };
}
