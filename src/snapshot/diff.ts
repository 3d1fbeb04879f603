/**
 * Differences between two snapshots. Subtrees with equal hashes are equal
 * by construction and never read, so a diff of two large snapshots that
 * differ in one file reads only the trees on that file's path.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { compareNames, type TreeEntry } from './format.js';
import { readRootTree, readTree } from './restore.js';

/** One difference; `path` is relative, `/`-separated. */
export interface Change {
  /**
   * `added`/`removed`: only in b/a (an entry whose type changed, say file to
   * directory, is removed then added); `modified`: content or link target
   * differs; `mode`: only the permissions differ.
   */
  readonly change: 'added' | 'removed' | 'modified' | 'mode';
  readonly path: string;
  /** The entry's type in the newer snapshot (in `a` for `removed`). */
  readonly kind: TreeEntry['type'];
  /** Size change for files, when both sides are files. */
  readonly sizeBefore?: number | undefined;
  readonly sizeAfter?: number | undefined;
}

function same(a: TreeEntry, b: TreeEntry): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function contentKey(e: TreeEntry): string {
  if (e.type === 'symlink') return `l:${e.target}`;
  if (e.type === 'dir') return `d:${e.hash.toString()}`;
  return `f:${e.size}:${(e.hash ?? e.chunks)!.toString()}`;
}

/**
 * Lists what changed from snapshot `a` to snapshot `b`, sorted by path.
 * Added and removed directories are listed with everything inside them.
 *
 * @example
 * ```ts
 * for (const c of await diffSnapshots(store, before, after)) console.log(c.change, c.path);
 * ```
 */
export async function diffSnapshots(store: Store, a: Hash, b: Hash, options: AbortOptions = {}): Promise<Change[]> {
  const changes: Change[] = [];
  const signal = options.signal;
  const all = async (entries: TreeEntry[], prefix: string, change: 'added' | 'removed'): Promise<void> => {
    for (const e of entries) {
      const path = prefix + e.name;
      changes.push({ change, path, kind: e.type });
      if (e.type === 'dir') await all(await readTree(store, e.hash, { signal }), `${path}/`, change);
    }
  };
  const walk = async (left: TreeEntry[], right: TreeEntry[], prefix: string): Promise<void> => {
    throwIfAborted(signal);
    const byName = new Map(right.map((e) => [e.name, e]));
    const names = [...new Set([...left.map((e) => e.name), ...right.map((e) => e.name)])].sort(compareNames);
    const leftByName = new Map(left.map((e) => [e.name, e]));
    for (const name of names) {
      const l = leftByName.get(name);
      const r = byName.get(name);
      const path = prefix + name;
      if (l === undefined) {
        await all([r!], prefix, 'added');
      } else if (r === undefined) {
        await all([l], prefix, 'removed');
      } else if (same(l, r)) {
        continue;
      } else if (l.type !== r.type) {
        await all([l], prefix, 'removed');
        await all([r], prefix, 'added');
      } else if (l.type === 'dir' && r.type === 'dir') {
        if (l.mode !== r.mode) changes.push({ change: 'mode', path, kind: 'dir' });
        if (!l.hash.equals(r.hash)) {
          await walk(await readTree(store, l.hash, { signal }), await readTree(store, r.hash, { signal }), `${path}/`);
        }
      } else if (contentKey(l) === contentKey(r)) {
        changes.push({ change: 'mode', path, kind: r.type });
      } else {
        changes.push({
          change: 'modified',
          path,
          kind: r.type,
          sizeBefore: l.type === 'file' ? l.size : undefined,
          sizeAfter: r.type === 'file' ? r.size : undefined,
        });
      }
    }
  };
  await walk(await readRootTree(store, a, { signal }), await readRootTree(store, b, { signal }), '');
  return changes;
}
