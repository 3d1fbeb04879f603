/**
 * Cairn: a content-addressed object store with atomic refs, on memory, disk
 * or any S3-compatible bucket, with layers for caching and sync.
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
export { s3Store, S3Store, type ForeignEntry, type ForeignListener, type S3StoreOptions } from './backends/s3.js';
export { openRedisStore, RedisStore, type RedisStoreOptions } from './backends/redis.js';
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
