/**
 * What the local store knows about the remote it syncs with, kept in
 * `remote-state.json` in the local directory, so that changing the remote
 * (`init --remote`, `--remote`, `CAIRN_REMOTE`) can never publish a ref the
 * new remote cannot serve, nor trust sync state learnt from another remote.
 *
 * - `objectsIn`: the remote that holds every local object not still in the
 *   upload journal. `push` uploads what the journal names, and an object is
 *   journaled only when written through a remote-backed store; an object
 *   written while no remote was configured, or already pushed to another
 *   remote, is named by no journal. So `push` to any remote other than
 *   `objectsIn` first checks every local object against it (`hasMany` in
 *   batches, uploading only what it lacks), then records it. Re-journaling
 *   every object when `init` changes the remote would miss remotes given by
 *   flag or environment, where no `init` runs; this check cannot.
 * - `refsTrackedFor`: the remote the layered store's tracking refs (each
 *   ref's remote value at the last sync, the base of push's compare-and-swap)
 *   describe. On a different remote they are wrong: push would think a ref
 *   already published, and pull could overwrite a local ref. So they are
 *   forgotten when the remote changes; a ref then differing on the two sides
 *   is reported as a conflict rather than overwritten.
 *
 * Both err toward extra work: an absent `objectsIn` means "check
 * everything" (stores made before this file existed get one check), it is
 * cleared whenever a command writes with no remote at all, and remotes are
 * compared by their display form (two spellings of one remote cost a check,
 * never a missed upload).
 *
 * @module
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbortOptions } from '../abort.js';
import { TRACKING_PREFIX } from '../layers/layered.js';
import type { Store } from '../store.js';
import type { RemoteTarget } from './config.js';

/** File in the local directory holding the {@link RemoteState}. */
export const REMOTE_STATE_FILE = 'remote-state.json';

/** What `remote-state.json` holds: remotes by {@link remoteKey}. */
export interface RemoteState {
  /** The remote known to hold every local object not in the upload journal. */
  readonly objectsIn?: string | undefined;
  /** The remote the tracking refs were learnt from. */
  readonly refsTrackedFor?: string | undefined;
}

/** The identity of a remote: what `status` shows (URL, and endpoint for S3). */
export const remoteKey = (target: RemoteTarget): string => target.display;

/** Reads the state; missing or unreadable is the empty state (the safe answer: nothing known). */
export async function loadRemoteState(dir: string): Promise<RemoteState> {
  try {
    const value = JSON.parse(await readFile(join(dir, REMOTE_STATE_FILE), 'utf8')) as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    return { objectsIn: str(value.objectsIn), refsTrackedFor: str(value.refsTrackedFor) };
  } catch {
    return {};
  }
}

/** Merges `change` into the state and writes it atomically (temp file, then rename). */
export async function updateRemoteState(dir: string, change: Partial<RemoteState>): Promise<void> {
  const next = { ...(await loadRemoteState(dir)), ...change };
  const tmp = join(dir, `${REMOTE_STATE_FILE}.tmp-${process.pid}`);
  await writeFile(tmp, `${JSON.stringify(next)}\n`);
  await rename(tmp, join(dir, REMOTE_STATE_FILE));
}

/** Whether the next push to `target` must check every local object. */
export async function needsFullCheck(dir: string, target: RemoteTarget): Promise<boolean> {
  return (await loadRemoteState(dir)).objectsIn !== remoteKey(target);
}

/**
 * Before push, pull, sync or status against `target`: forgets the tracking
 * refs if they were learnt from another remote. Returns the remote they
 * described when it did, else `undefined`. With no record (a store older
 * than this file), the tracking refs are taken to describe `target`.
 */
export async function adoptRemote(dir: string, local: Store, target: RemoteTarget, options: AbortOptions = {}): Promise<string | undefined> {
  const key = remoteKey(target);
  const { refsTrackedFor } = await loadRemoteState(dir);
  if (refsTrackedFor === key) return undefined;
  if (refsTrackedFor !== undefined) {
    // Deleted before the record changes: a crash in between only repeats the deletion next time.
    const names: string[] = [];
    for await (const ref of local.listRefs(TRACKING_PREFIX, options)) names.push(ref.name);
    for (const name of names) await local.deleteRef(name, options);
  }
  await updateRemoteState(dir, { refsTrackedFor: key });
  return refsTrackedFor;
}
