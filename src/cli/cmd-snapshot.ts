/**
 * Snapshot commands: `snapshot`, `restore`, `diff`.
 *
 * @module
 */
import { assertRefName } from '../ref-name.js';
import { resolve as resolvePath } from 'node:path';
import { diffStream, type Change } from '../snapshot/diff.js';
import { DEFAULT_LIMITS, type ExpandLimits } from '../snapshot/limits.js';
import { assertRestoreTarget, restore as restoreTree } from '../snapshot/restore.js';
import { snapshot as snapshotTree, statSnapshotDir } from '../snapshot/snapshot.js';
import type { Command } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { formatBytes, formatCount } from './output.js';
import { hashIfShaped, resolveHashOrRef } from './resolve.js';
import { loadFileCache, saveFileCache } from './file-cache.js';
import { withStores } from './stores.js';
import type { Context } from './command.js';
import { recordRestore } from './restore-records.js';
import { parseCount } from './resolve.js';

const LIMIT_HELP: Record<string, string> = {
  'max-files': `refuse a snapshot that expands to more files and directories (default ${formatCount(DEFAULT_LIMITS.maxFiles)})`,
  'max-depth': `refuse a snapshot more directories deep (default ${DEFAULT_LIMITS.maxDepth})`,
};
const LIMIT_OPTIONS_DIFF = { 'max-files': { type: 'string' }, 'max-depth': { type: 'string' } } as const;
const LIMIT_OPTIONS_RESTORE = { ...LIMIT_OPTIONS_DIFF, 'max-bytes': { type: 'string' }, 'exact-modes': { type: 'boolean' } } as const;

/** Parses a byte count: plain bytes, or with a binary unit (K, M, G, T; "KiB" and "KB" alike mean 1024). */
export function parseSize(text: string, option: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (match === null) throw new UsageError(`--${option} ${JSON.stringify(text)} is not a size; use for example 1000000, 500M, 20G or 4T`);
  const unit = 1024 ** ' kmgt'.indexOf((match[2] ?? '').toLowerCase() || ' ');
  return Math.round(Number(match[1]) * unit);
}

/** The --max-* flags of restore and diff. */
function parseLimits(ctx: Context): ExpandLimits {
  const v = ctx.values;
  return {
    maxFiles: parseCount(v['max-files'] as string | undefined, 'max-files', DEFAULT_LIMITS.maxFiles),
    maxDepth: parseCount(v['max-depth'] as string | undefined, 'max-depth', DEFAULT_LIMITS.maxDepth),
    maxBytes: v['max-bytes'] === undefined ? DEFAULT_LIMITS.maxBytes : parseSize(v['max-bytes'] as string, 'max-bytes'),
  };
}

/** Quotes a path for a one-line listing when it holds characters a terminal would mangle. */
export function showPath(path: string): string {
  return /[\s"'\\\x00-\x1f\x7f]/.test(path) ? JSON.stringify(path) : path;
}

export const snapshot: Command = {
  name: 'snapshot',
  summary: 'store a directory tree and print its root hash',
  usage: 'snapshot <dir> [--ref NAME]',
  description: [
    'Stores every file, directory and symlink under <dir> (symlinks as links, never followed).',
    'Files are cut into content-defined chunks, so a later snapshot after a small edit stores',
    'and pushes only the changed chunks. Prints the root hash on stdout.',
  ].join('\n'),
  options: { ref: { type: 'string' } },
  optionHelp: { ref: 'also point this ref at the snapshot (e.g. snapshots/photos)' },
  examples: ['cairn snapshot ./photos --ref snapshots/photos', 'root=$(cairn snapshot -q ./photos)'],
  async run(ctx) {
    if (ctx.positionals.length !== 1) throw new UsageError('expected one directory; usage: cairn snapshot <dir> [--ref NAME]');
    const refName = ctx.values.ref as string | undefined;
    if (refName !== undefined) assertRefName(refName);
    const dir = ctx.positionals[0]!;
    await statSnapshotDir(dir);
    return withStores(ctx, { write: true }, async (stores) => {
      const started = Date.now();
      // Chunks already in the local store are skipped: not rewritten, and not queued for upload again.
      // That is safe only because a remote that may lack them gets a full check on its next push (remote-state.ts).
      const cache = await loadFileCache(stores.config.dir);
      const result = await snapshotTree(stores.main, dir, {
        signal: ctx.signal,
        known: stores.local,
        cache,
        onProgress: ctx.out.progress('snapshot'),
      });
      await saveFileCache(stores.config.dir, cache, dir);
      if (refName !== undefined) await stores.main.setRef(refName, result.root, { signal: ctx.signal });
      ctx.out.done();
      for (const path of result.skipped) ctx.out.warn(`skipped ${showPath(path)}: not a file, directory or symlink`);
      const seconds = (Date.now() - started) / 1000;
      ctx.out.line(result.root.toString());
      ctx.out.note(
        `snapshot of ${dir}: ${formatCount(result.files)} files, ${formatCount(result.dirs)} directories, ` +
          `${result.symlinks} symlinks, ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s` +
          (result.reused > 0 ? ` (${formatCount(result.reused)} unchanged files not read again)` : '') +
          (refName !== undefined ? `; ref ${refName} updated` : '') +
          (stores.remote !== undefined ? '; run "cairn push" to upload' : ''),
      );
      ctx.out.result({ ...result, root: result.root.toString(), ref: refName ?? null, seconds });
      return EXIT.ok;
    });
  },
};

export const restore: Command = {
  name: 'restore',
  summary: 'write a snapshot into a new or empty directory',
  usage: 'restore <hash|ref> <dir> [--max-files N] [--max-bytes SIZE] [--max-depth N] [--exact-modes]',
  description: [
    'Recreates the tree byte for byte with file modes and symlinks. Objects missing locally are',
    'read from the remote. The tree is built beside <dir> and moved into place when complete, so',
    'an error or Ctrl-C leaves nothing half-written; a build left by a killed restore is swept by',
    'the next restore into the same place (and by "cairn gc"). The snapshot is measured first and',
    'refused (exit 7) if it expands past the limits, so a crafted snapshot cannot fill the disk.',
    "Modes get the user's umask, as tar does, unless --exact-modes.",
  ].join('\n'),
  options: LIMIT_OPTIONS_RESTORE,
  optionHelp: {
    ...LIMIT_HELP,
    'max-bytes': `refuse a snapshot of more file content than this: 500G, 4T (default ${formatBytes(DEFAULT_LIMITS.maxBytes)})`,
    'exact-modes': 'apply modes exactly as stored (default: clear the bits the umask clears)',
  },
  examples: ['cairn restore snapshots/photos ./photos-copy', 'cairn restore sha256:9f86d0… /tmp/out --max-files 50000000'],
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('expected a snapshot and a directory; usage: cairn restore <hash|ref> <dir>');
    const [which, dir] = ctx.positionals as [string, string];
    hashIfShaped(which);
    const limits = parseLimits(ctx);
    await assertRestoreTarget(dir);
    return withStores(ctx, {}, async (stores) => {
      const root = await resolveHashOrRef(stores.main, which, ctx.signal);
      const started = Date.now();
      const done = await recordRestore(stores.config.dir, resolvePath(dir));
      let result;
      try {
        result = await restoreTree(stores.main, root, dir, {
          ...limits,
          exactModes: ctx.values['exact-modes'] === true,
          signal: ctx.signal,
          onProgress: ctx.out.progress('restore'),
        });
      } finally {
        await done();
      }
      ctx.out.done();
      const seconds = (Date.now() - started) / 1000;
      ctx.out.note(
        `restored ${root.toString()} into ${dir}: ${formatCount(result.files)} files, ${formatBytes(result.bytes)} in ${seconds.toFixed(1)} s`,
      );
      ctx.out.result({ root: root.toString(), dir, ...result, seconds });
      return EXIT.ok;
    });
  },
};

export const diff: Command = {
  name: 'diff',
  summary: 'list what changed between two snapshots',
  usage: 'diff <a> <b> [--max-files N] [--max-depth N]',
  description: [
    'Prints one line per change: "+ path" added, "- path" removed, "M path" modified, "m path" mode changed.',
    'Lines are printed as they are found. A diff listing more than --max-files changes, or walking deeper',
    'than --max-depth, stops with exit 7.',
  ].join('\n'),
  options: LIMIT_OPTIONS_DIFF,
  optionHelp: { 'max-files': LIMIT_HELP['max-files']!.replace('a snapshot that expands to', 'after listing'), 'max-depth': LIMIT_HELP['max-depth']! },
  examples: ['cairn diff snapshots/monday snapshots/tuesday'],
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('expected two snapshots; usage: cairn diff <a> <b>');
    ctx.positionals.forEach(hashIfShaped);
    parseLimits(ctx);
    return withStores(ctx, {}, async (stores) => {
      const a = await resolveHashOrRef(stores.main, ctx.positionals[0]!, ctx.signal);
      const b = await resolveHashOrRef(stores.main, ctx.positionals[1]!, ctx.signal);
      const mark = { added: '+', removed: '-', modified: 'M', mode: 'm' } as const;
      // Text is printed as found; --json needs the whole list (bounded by --max-files).
      const changes: Change[] = [];
      let listed = 0;
      for await (const c of diffStream(stores.main, a, b, { ...parseLimits(ctx), signal: ctx.signal })) {
        if (ctx.out.json) changes.push(c);
        else ctx.out.line(`${mark[c.change]} ${showPath(c.path)}${c.kind === 'dir' ? '/' : ''}`);
        if (++listed % 256 === 0) await ctx.out.drained();
      }
      ctx.out.result({ a: a.toString(), b: b.toString(), changes });
      return EXIT.ok;
    });
  },
};
