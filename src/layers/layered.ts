/**
 * Public entry point `cairn/layers/layered`.
 *
 * The layered store: a fast local store (upper) over a shared remote one
 * (lower), with write-back uploads and explicit, conflict-checked ref sync.
 *
 * - **Objects** are written to the upper store and uploaded to the lower
 *   one in the background by a {@link BatchUploader}. Which objects still
 *   need uploading is recorded in the upper store itself (see `journal.ts`)
 *   before a put resolves, so a crash loses nothing: reopening resumes the
 *   uploads. Reads try the upper store, then the lower one, and copy what
 *   they find below into the upper store.
 * - **Refs** are local: reads and writes go to the upper store only. They
 *   reach the lower store through {@link LayeredStore.push}, which first
 *   uploads every pending object, so a remote ref never names an object the
 *   remote lacks, then advances each remote ref by compare-and-swap from the
 *   value last seen there. That value is kept per ref under
 *   `.cairn/remote/<name>` in the upper store, like git's remote-tracking
 *   refs; a remote ref that moved since is reported as a conflict and left
 *   alone. {@link LayeredStore.pull} is the mirror image.
 *
 * Everything the layer keeps for itself lives under the reserved ref prefix
 * `.cairn/`, which the layered store hides from listings and refuses as a
 * ref name. One layered store should own an upper store at a time.
 *
 * Costs: a put is the upper store's put plus one journal ref write
 * (concurrent puts share one; written first, so the object's hash is
 * computed here too), and waits only when the uploader already
 * holds `maxPendingBytes` (backpressure). A put whose signal fires while it
 * waits for room rejects with {@link AbortError}, but its object is already
 * stored and journaled: it will be uploaded by the next flush or push.
 *
 * Damaged remote copies: an upload the lower store would make unnecessary
 * ("present") is not trusted blindly; the copy is read back and hashed
 * (see `remote-copy.ts` and {@link LayeredStore.push}).
 *
 * The implementation lives in `layered/`: `store.ts` (the store),
 * `write-back.ts` (journal and uploader), `ref-sync.ts` (push, pull,
 * status, and the one {@link classifyRef} they share), `read-through.ts`
 * (object reads), `types.ts` (the public types), `names.ts` (reserved refs).
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
