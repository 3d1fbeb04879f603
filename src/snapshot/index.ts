/**
 * Snapshots: directory trees as content-addressed objects (format in
 * `format.ts`), with restore, diff, reachability, garbage collection and
 * verification, all built on the {@link Store} contract alone.
 *
 * @module
 */
export { chunkBytes, chunkStream, DEFAULT_CHUNKING, type ChunkerOptions } from './chunker.js';
export {
  CHUNKS_TAG,
  decodeChunkList,
  decodeTree,
  encodeChunkList,
  encodeTree,
  TREE_TAG,
  type ChunkList,
  type DirEntry,
  type FileEntry,
  type SymlinkEntry,
  type TreeEntry,
} from './format.js';
export type { Progress, ProgressListener } from './progress.js';
export { snapshot, type CachedFile, type FileCache, type SnapshotOptions, type SnapshotResult } from './snapshot.js';
export { readRootTree, readTree, restore, type RestoreOptions, type RestoreResult } from './restore.js';
export { diffSnapshots, type Change } from './diff.js';
export { collectGarbage, reachableFrom, type GcOptions, type GcResult, type GcState, type Reachability, type ReachOptions } from './gc.js';
export { verifyStore, type VerifyOptions, type VerifyResult } from './verify.js';
