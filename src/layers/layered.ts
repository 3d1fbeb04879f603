/**
 * The layered store (public entry point `cairn/layers/layered`): a fast
 * local store over a shared remote one, with write-back uploads and
 * conflict-checked ref sync. The implementation lives in `layered/`:
 * `store.ts` (the store), `write-back.ts` (journal and uploader),
 * `ref-sync.ts` (push, pull, status), `read-through.ts` (object reads),
 * `types.ts` (the public types).
 *
 * @module
 */
export { layered, LayeredStore } from './layered/store.js';
export { classifyRef, type RefRelation } from './layered/ref-sync.js';
export { TRACKING_PREFIX } from './layered/names.js';
export type {
  LayeredCloseOptions,
  LayeredEvents,
  LayeredOptions,
  LayeredStatus,
  PullOptions,
  PullResult,
  PushOptions,
  PushResult,
  ReachableObjects,
  RefChange,
  RefConflict,
  RefStatus,
  SyncResult,
} from './layered/types.js';
