/**
 * Limits on how large a snapshot may expand when it is walked by path.
 *
 * Trees are content-addressed, so one small tree can name the same subtree
 * many times: a few kilobytes of trees (a "DAG bomb") can expand to billions
 * of paths. Restore and diff expand by path, so they first measure the
 * snapshot ({@link measureSnapshot}: each distinct tree is read once and its
 * expanded size remembered, so measuring costs no more than the distinct
 * trees) and refuse one larger than the limits, before writing anything.
 * Verify and gc walk distinct objects, so a bomb costs them nothing.
 *
 * @module
 */
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { LimitExceededError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { Store } from '../store.js';
import { decodeTree, type TreeEntry } from './format.js';
import { TreeReadAhead } from './read-ahead.js';

/** How far a snapshot may expand. Raise them for a snapshot known to be honest and large. */
export interface ExpandLimits {
  /**
   * Entries (files, directories and symlinks) in all.
   * @default 10000000
   */
  maxFiles?: number | undefined;
  /**
   * Bytes of file content in all.
   * @default 4398046511104 (4 TiB)
   */
  maxBytes?: number | undefined;
  /**
   * Directory levels below the root.
   * @default 512
   */
  maxDepth?: number | undefined;
}

/** The defaults of {@link ExpandLimits}. */
export const DEFAULT_LIMITS = { maxFiles: 10_000_000, maxBytes: 4 * 2 ** 40, maxDepth: 512 } as const;

/** The longest name most file systems take, in bytes. */
export const NAME_MAX = 255;

/** What a snapshot expands to. */
export interface SnapshotSize {
  /** Entries in all (files, directories, symlinks). */
  readonly entries: number;
  readonly files: number;
  readonly bytes: number;
  /** Deepest directory level below the root. */
  readonly depth: number;
  /** Longest relative path, in bytes. */
  readonly longestPath: number;
}

/** Resolves the limits, filling in defaults. */
export function resolveLimits(limits: ExpandLimits = {}): Required<{ [K in keyof ExpandLimits]: number }> {
  return {
    maxFiles: limits.maxFiles ?? DEFAULT_LIMITS.maxFiles,
    maxBytes: limits.maxBytes ?? DEFAULT_LIMITS.maxBytes,
    maxDepth: limits.maxDepth ?? DEFAULT_LIMITS.maxDepth,
  };
}

/** Cuts a long text for a message, so that a 5 KB name does not fill the screen. */
export function cut(text: string, max = 120): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${Buffer.byteLength(text)} bytes)`;
}

function tooMany(what: string, limit: number, flag: string, option: string): LimitExceededError {
  return new LimitExceededError(
    `the snapshot expands to more than ${limit.toLocaleString('en-US')} ${what}; if it is honest, raise the limit ` +
      `(--${flag} on the command line, ${option} in the API)`,
  );
}

interface Frame {
  readonly hash: Hash;
  readonly entries: TreeEntry[];
  i: number;
  entries_: number;
  files: number;
  bytes: number;
  depth: number;
  longest: number;
  /** The next subtrees, read ahead of the walk. */
  readonly ahead: TreeReadAhead;
}

/**
 * Measures what the tree `rootEntries` expands to, reading each distinct
 * subtree once (iteratively: a 100,000-deep chain cannot overflow the call
 * stack), and throws {@link LimitExceededError} as soon as a limit is
 * passed, or a name is longer than {@link NAME_MAX} bytes. Memory grows with
 * the distinct trees and the depth (bounded by `maxDepth`), never with the
 * expanded size.
 *
 * @example
 * ```ts
 * const size = await measureSnapshot(store, await readRootTree(store, root), { maxFiles: 1e6 });
 * ```
 */
export async function measureSnapshot(
  store: Store,
  rootEntries: TreeEntry[],
  limits: ExpandLimits = {},
  options: AbortOptions = {},
): Promise<SnapshotSize> {
  const { maxFiles, maxBytes, maxDepth } = resolveLimits(limits);
  const signal = options.signal;
  const tooDeep = (): LimitExceededError =>
    new LimitExceededError(
      `the snapshot is more than ${maxDepth} directories deep; if it is honest, raise the limit (--max-depth on the command line, maxDepth in the API)`,
    );
  const memo = new Map<string, SnapshotSize>();
  // Subtrees already measured (a directory that appears twice) are not read again, nor read ahead.
  const frame = (hash: Hash, entries: TreeEntry[]): Frame => ({
    hash,
    entries,
    i: 0,
    entries_: 0,
    files: 0,
    bytes: 0,
    depth: 0,
    longest: 0,
    ahead: new TreeReadAhead(store, entries, signal, (h) => memo.has(h.toString())),
  });
  const stack: Frame[] = [frame(undefined as unknown as Hash, rootEntries)];
  const add = (into: Frame, nameBytes: number, sub: SnapshotSize | undefined, entry: TreeEntry): void => {
    into.entries_ += 1 + (sub?.entries ?? 0);
    if (entry.type === 'file') {
      into.files++;
      into.bytes += entry.size;
    }
    if (sub !== undefined) {
      // `into` is the top of the stack, at level stack.length - 1; its child is one deeper.
      if (stack.length + sub.depth > maxDepth) throw tooDeep();
      into.files += sub.files;
      into.bytes += sub.bytes;
      into.depth = Math.max(into.depth, sub.depth + 1);
    }
    into.longest = Math.max(into.longest, nameBytes + (sub !== undefined && sub.longestPath > 0 ? 1 + sub.longestPath : 0));
    // A subtree over the limit makes the whole snapshot over it: stop at once, however far the rest goes.
    if (into.entries_ > maxFiles) throw tooMany('files and directories', maxFiles, 'max-files', 'maxFiles');
    if (into.bytes > maxBytes) throw tooMany('bytes of file content', maxBytes, 'max-bytes', 'maxBytes');
  };
  for (;;) {
    const top = stack.at(-1)!;
    if (top.i >= top.entries.length) {
      stack.pop();
      const size: SnapshotSize = { entries: top.entries_, files: top.files, bytes: top.bytes, depth: top.depth, longestPath: top.longest };
      const parent = stack.at(-1);
      if (parent === undefined) return size;
      memo.set(top.hash.toString(), size);
      const entry = parent.entries[parent.i++]!;
      add(parent, Buffer.byteLength(entry.name), size, entry);
      continue;
    }
    const entry = top.entries[top.i]!;
    const nameBytes = Buffer.byteLength(entry.name);
    if (nameBytes > NAME_MAX) {
      throw new LimitExceededError(
        `the snapshot holds a name of ${nameBytes} bytes (${JSON.stringify(cut(entry.name, 40))}), longer than the ${NAME_MAX} bytes ` +
          'file systems take; it cannot be restored here',
      );
    }
    if (entry.type !== 'dir') {
      top.i++;
      add(top, nameBytes, undefined, entry);
      continue;
    }
    const known = memo.get(entry.hash.toString());
    if (known !== undefined) {
      top.ahead.skip(top.i);
      top.i++;
      add(top, nameBytes, known, entry);
      continue;
    }
    if (stack.length > maxDepth) throw tooDeep();
    throwIfAborted(signal);
    stack.push(frame(entry.hash, decodeTree(await top.ahead.take(top.i), entry.hash)));
  }
}
