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
