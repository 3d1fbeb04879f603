/**
 * Cairn: a content-addressed object store with atomic refs, on memory, disk
 * or any S3-compatible bucket, with layers for caching and sync.
 *
 * The root entry point loads no network client: the S3 and Redis backends
 * come from their own entry points, `cairn/backends/s3` and
 * `cairn/backends/redis` (their types are re-exported here).
 *
 * @example
 * ```ts
 * import { memoryStore } from 'cairn';
 * const store = memoryStore();
 * const hash = await store.put(new TextEncoder().encode('hello'));
 * console.log(hash.toString(), hash.toCid());
 * ```
 *
 * @module
 */
export * from './errors.js';
export * from './hash.js';
export * from './store.js';
export { assertRefName, isValidRefName, MAX_REF_NAME_BYTES } from './ref-name.js';
export { memoryStore, MemoryStore, type MemoryStoreOptions } from './backends/memory.js';
export {
  openDiskStore,
  DiskStore,
  type DiskStoreOptions,
  type CompactionResult,
  type DroppedStretch,
  type RecoveryReport,
} from './backends/disk.js';
// Types only: the S3 and Redis backends load the AWS SDK and ioredis, which a
// user of the memory or disk store should not pay for. Import them from
// 'cairn/backends/s3' and 'cairn/backends/redis'.
export type { S3Store, S3StoreOptions, ForeignEntry, ForeignListener } from './backends/s3.js';
export type { RedisStore, RedisStoreOptions } from './backends/redis.js';
export { eventStreams, EventStreams, type EventStreamsOptions, type StreamEvent, type StreamReadOptions } from './data/streams.js';
export { keyValue, KeyValue, type KeyValueEncoding, type KeyValueOptions, type KeyValueSwap } from './data/kv.js';
export { blobStore, BlobStore, cidToHash, type BlobStoreOptions } from './data/blobs.js';
export {
  memoryKeyStore,
  moveKeys,
  storeKeyStore,
  type KeyStore,
  type MoveKeysOptions,
  type StoreKeyStoreOptions,
} from './data/keys.js';
export { openDiskKeyStore, type DiskKeyStoreOptions } from './data/keys-disk.js';
export { derivedStore } from './data/derived.js';
export { assertJsonValue, type JsonValue } from './data/json.js';
export { cached, CachedStore, type CachedOptions, type CacheStats } from './layers/cached.js';
export { readOnly, ReadOnlyStore } from './layers/read-only.js';
export { ForwardingStore, type ForwardingOptions } from './layers/forwarding.js';
export { packed, PackedStore, type PackedOptions } from './layers/packed/packed.js';
export { MasterKey } from './crypto/master-key.js';
export {
  addKey,
  changePassword,
  initEncryption,
  isEncrypted,
  listKeys,
  removeKey,
  unlock,
  type KeyInfo,
  type NewKeyOptions,
  type Password,
  type ScryptParams,
  type UnlockOptions,
} from './crypto/keys.js';
export { diskIndexCache, type IndexCache } from './layers/packed/index-cache.js';
export type { RepackOptions, RepackReport } from './layers/packed/repack.js';
export {
  BatchUploader,
  type BatchUploaderOptions,
  type UploadFailure,
  type UploadItem,
  type UploadProgress,
  type UploaderEvents,
} from './layers/uploader.js';
export {
  layered,
  LayeredStore,
  type LayeredEvents,
  type LayeredOptions,
  type LayeredStatus,
  type PullOptions,
  type PullResult,
  type PushOptions,
  type PushResult,
  type ReachableObjects,
  type RefChange,
  type RefConflict,
  type RefStatus,
  type SyncResult,
} from './layers/layered.js';
export * from './snapshot/index.js';
