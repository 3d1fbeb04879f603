/**
 * Differences between two snapshots. Subtrees with equal hashes are equal
 * by construction and never read, so a diff of two large snapshots that
 * differ in one file reads only the trees on that file's path.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { LimitExceededError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { compareNames, type TreeEntry } from './format.js';
import { resolveLimits } from './limits.js';
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

/** Options of {@link diffSnapshots} and {@link diffStream}. */
export interface DiffOptions extends AbortOptions {
  /**
   * Changes listed at most (an added or removed directory lists everything inside it).
   * @default 10000000
   */
  maxFiles?: number | undefined;
  /**
   * Directory levels walked at most.
   * @default 512
   */
  maxDepth?: number | undefined;
}

type Frame =
  | { readonly kind: 'compare'; readonly left: TreeEntry[]; readonly right: TreeEntry[]; li: number; ri: number; readonly prefix: string }
  | { readonly kind: 'all'; readonly entries: TreeEntry[]; i: number; readonly prefix: string; readonly change: 'added' | 'removed' };

/**
 * Yields what changed from snapshot `a` to snapshot `b`, in path order,
 * walking both trees iteratively (one frame per level: memory follows the
 * depth, never the size) and stopping with {@link LimitExceededError} past
 * `maxFiles` changes or `maxDepth` levels.
 *
 * @example
 * ```ts
 * for await (const c of diffStream(store, before, after)) console.log(c.change, c.path);
 * ```
 */
export async function* diffStream(store: Store, a: Hash, b: Hash, options: DiffOptions = {}): AsyncGenerator<Change> {
  const signal = options.signal;
  const { maxFiles, maxDepth } = resolveLimits(options);
  let count = 0;
  const emit = (change: Change): Change => {
    if (++count > maxFiles) {
      throw new LimitExceededError(
        `the diff lists more than ${maxFiles.toLocaleString('en-US')} changes; if the snapshots are honest, raise the limit (--max-files on the command line, maxFiles in the API)`,
      );
    }
    return change;
  };
  const stack: Frame[] = [];
  const push = async (frame: (depth: number) => Promise<Frame>): Promise<void> => {
    if (stack.length > maxDepth) {
      throw new LimitExceededError(
        `the snapshots are more than ${maxDepth} directories deep; if they are honest, raise the limit (--max-depth on the command line, maxDepth in the API)`,
      );
    }
    throwIfAborted(signal);
    stack.push(await frame(stack.length));
  };
  const read = (hash: Hash): Promise<TreeEntry[]> => readTree(store, hash, { signal });
  const all = (e: TreeEntry, prefix: string, change: 'added' | 'removed'): Promise<void> =>
    push(async () => ({ kind: 'all', entries: [e], i: 0, prefix, change }));
  const left = await readRootTree(store, a, { signal });
  const right = await readRootTree(store, b, { signal });
  stack.push({ kind: 'compare', left, right, li: 0, ri: 0, prefix: '' });
  while (stack.length > 0) {
    throwIfAborted(signal);
    const top = stack.at(-1)!;
    if (top.kind === 'all') {
      const e = top.entries[top.i++];
      if (e === undefined) {
        stack.pop();
        continue;
      }
      const path = top.prefix + e.name;
      yield emit({ change: top.change, path, kind: e.type });
      if (e.type === 'dir') {
        const entries = await read(e.hash);
        await push(async () => ({ kind: 'all', entries, i: 0, prefix: `${path}/`, change: top.change }));
      }
      continue;
    }
    // Both lists are sorted by name (decodeTree refuses any other order): merge them.
    const l = top.left[top.li];
    const r = top.right[top.ri];
    if (l === undefined && r === undefined) {
      stack.pop();
      continue;
    }
    const order = l === undefined ? 1 : r === undefined ? -1 : compareNames(l.name, r.name);
    if (order < 0) {
      top.li++;
      await all(l!, top.prefix, 'removed');
      continue;
    }
    if (order > 0) {
      top.ri++;
      await all(r!, top.prefix, 'added');
      continue;
    }
    top.li++;
    top.ri++;
    const path = top.prefix + l!.name;
    if (same(l!, r!)) continue;
    if (l!.type !== r!.type) {
      // Pushed in reverse: the removal is listed first.
      await all(r!, top.prefix, 'added');
      await all(l!, top.prefix, 'removed');
    } else if (l!.type === 'dir' && r!.type === 'dir') {
      if (l!.mode !== r!.mode) yield emit({ change: 'mode', path, kind: 'dir' });
      if (!l!.hash.equals(r!.hash)) {
        const [lt, rt] = [await read(l!.hash), await read(r!.hash)];
        await push(async () => ({ kind: 'compare', left: lt, right: rt, li: 0, ri: 0, prefix: `${path}/` }));
      }
    } else if (contentKey(l!) === contentKey(r!)) {
      yield emit({ change: 'mode', path, kind: r!.type });
    } else {
      yield emit({
        change: 'modified',
        path,
        kind: r!.type,
        sizeBefore: l!.type === 'file' ? l!.size : undefined,
        sizeAfter: r!.type === 'file' ? r!.size : undefined,
      });
    }
  }
}

/**
 * Lists what changed from snapshot `a` to snapshot `b`, sorted by path.
 * Added and removed directories are listed with everything inside them.
 * See {@link diffStream} for the limits.
 *
 * @example
 * ```ts
 * for (const c of await diffSnapshots(store, before, after)) console.log(c.change, c.path);
 * ```
 */
export async function diffSnapshots(store: Store, a: Hash, b: Hash, options: DiffOptions = {}): Promise<Change[]> {
  const changes: Change[] = [];
  for await (const change of diffStream(store, a, b, options)) changes.push(change);
  return changes;
}
