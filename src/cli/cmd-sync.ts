/**
 * Sync commands: `push`, `pull`, `sync`, `status`.
 *
 * @module
 */
import { ConflictError } from '../errors.js';
import type { Hash } from '../hash.js';
import type { PullResult, PushResult } from '../layers/layered.js';
import { PendingJournal } from '../layers/journal.js';
import { stillNeeded } from '../layers/remote-copy.js';
import { reachableFrom } from '../snapshot/gc.js';
import { forEachLimit } from '../snapshot/progress.js';
import type { Store } from '../store.js';
import type { Command, Context } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { formatBytes, formatCount } from './output.js';
import { adoptRemote, needsFullCheck, remoteKey, updateRemoteState } from './remote-state.js';
import { withStores, type Stores } from './stores.js';

const short = (h: Hash | undefined): string => (h === undefined ? '(none)' : h.toString());

function noArgs(ctx: Context, name: string): void {
  if (ctx.positionals.length > 0) throw new UsageError(`${name} takes no arguments; see "cairn ${name} --help"`);
}

/** Everything reachable from a root, for `pull --objects` (read through the layered store, which copies it down). */
async function* reachableObjects(root: Hash, store: Store): AsyncIterable<string> {
  const { reachable } = await reachableFrom(store, [root]);
  yield* reachable;
}

/**
 * Uploads every local object the remote lacks, for objects no journal names
 * (written before this remote was configured, or pushed to another one; see
 * `remote-state.ts`). Checks `hasMany` in batches; an object the remote
 * already has is not uploaded but read back and hashed (this runs once per
 * remote, or on `--all`), and a damaged copy fails the push with
 * an `IntegrityError` (exit 5) before any ref is published. Lists the local store rather
 * than walking refs: that covers objects a ref may name later too, and
 * needs no tree to be present locally. Returns how many were checked and uploaded.
 */
async function uploadLocalMissing(ctx: Context, stores: Stores): Promise<{ checked: number; uploaded: number; bytes: number }> {
  const remote = stores.remote!;
  // The journal's own list objects live in the local store too; they are bookkeeping, not user data.
  const journalData = await new PendingJournal(stores.local).listObjects({ signal: ctx.signal });
  let uploaded = 0;
  let checked = 0;
  let bytes = 0;
  const progress = ctx.out.progress('push: checking local objects', 'objects');
  const flushBatch = async (batch: Hash[]): Promise<void> => {
    const present = await remote.hasMany(batch, { signal: ctx.signal });
    // What the remote says it has is read back and hashed first: a push must not make a backup depend
    // on bytes nobody checked. A damaged copy stops the push before any ref is published (exit 5).
    const missing = await stillNeeded(remote, batch, present, { signal: ctx.signal });
    await forEachLimit(missing, 8, async (hash) => {
      const bytesOf = async function* (source: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
        for await (const chunk of source) {
          bytes += chunk.byteLength;
          yield chunk;
        }
      };
      await remote.put(bytesOf(stores.local.getStream(hash, { signal: ctx.signal })), { algorithm: hash.algorithm, signal: ctx.signal });
      uploaded++;
    });
    checked += batch.length;
    progress({ phase: 'push: checking local objects', done: checked, bytes });
  };
  let batch: Hash[] = [];
  for await (const hash of stores.local.listObjects({ signal: ctx.signal })) {
    if (journalData.has(hash.toString())) continue;
    batch.push(hash);
    if (batch.length >= 500) {
      await flushBatch(batch);
      batch = [];
    }
  }
  if (batch.length > 0) await flushBatch(batch);
  ctx.out.done();
  return { checked, uploaded, bytes };
}

/** Forgets sync state learnt from another remote (see `remote-state.ts`), and says so. */
async function adopt(ctx: Context, stores: Stores): Promise<void> {
  const target = stores.config.remote!;
  const was = await adoptRemote(stores.config.dir, stores.local, target, { signal: ctx.signal });
  if (was !== undefined) {
    ctx.out.note(
      `the remote changed from ${was} to ${target.display}: refs last synced with the old one are compared afresh, ` +
        'and one that differs on the new remote is reported as a conflict, never overwritten',
    );
  }
}

async function runPush(ctx: Context, stores: Stores): Promise<{ result: PushResult; uploaded: number; bytes: number; skipped: number; checkedLocal: number }> {
  const stack = stores.layered!;
  const progress = ctx.out.progress('push', 'objects');
  const before = stack.progress();
  const onProgress = (p: { objectsDone: number; objectsTotal: number; bytesDone: number; bytesTotal: number }): void =>
    progress({
      phase: 'push',
      done: p.objectsDone - before.objectsDone,
      total: p.objectsTotal - before.objectsTotal,
      bytes: p.bytesDone - before.bytesDone,
      totalBytes: p.bytesTotal - before.bytesTotal,
    });
  stack.on('progress', onProgress);
  try {
    const target = stores.config.remote!;
    const full = ctx.values.all === true || (await needsFullCheck(stores.config.dir, target));
    let extra = { checked: 0, uploaded: 0, bytes: 0 };
    if (full) {
      // Journaled objects first, so that the check below finds them present instead of uploading them twice.
      await stack.flush({ signal: ctx.signal });
      extra = await uploadLocalMissing(ctx, stores);
    }
    const result = await stack.push({ signal: ctx.signal, prefix: ctx.values.prefix as string | undefined });
    // Every local object was in the remote or journaled, and push uploaded the journal: the remote now holds them all.
    if (full) await updateRemoteState(stores.config.dir, { objectsIn: remoteKey(target) });
    const after = stack.progress();
    const skipped = after.objectsSkipped - before.objectsSkipped;
    return {
      result,
      uploaded: after.objectsDone - before.objectsDone - skipped + extra.uploaded,
      bytes: after.bytesDone - before.bytesDone + extra.bytes,
      skipped,
      checkedLocal: extra.checked,
    };
  } finally {
    stack.off('progress', onProgress);
    ctx.out.done();
  }
}

function reportPush(ctx: Context, push: Awaited<ReturnType<typeof runPush>>): void {
  for (const c of push.result.pushed) ctx.out.line(`pushed ${c.ref} ${short(c.from)} -> ${short(c.to)}`);
  for (const c of push.result.conflicts) ctx.out.line(`conflict ${c.ref} local ${short(c.local)} remote ${short(c.remote)}`);
  ctx.out.note(
    `push: uploaded ${formatCount(push.uploaded)} objects (${formatBytes(push.bytes)})` +
      (push.skipped > 0 ? `, ${formatCount(push.skipped)} already in the remote` : '') +
      (push.checkedLocal > 0 ? `, after checking all ${formatCount(push.checkedLocal)} local objects against this remote` : '') +
      `; ${push.result.pushed.length} refs pushed, ${push.result.upToDate.length} up to date, ${push.result.conflicts.length} conflicts`,
  );
}

function reportPull(ctx: Context, pull: PullResult): void {
  for (const c of pull.updated) ctx.out.line(`updated ${c.ref} ${short(c.from)} -> ${short(c.to)}`);
  for (const c of pull.diverged) ctx.out.line(`diverged ${c.ref} local ${short(c.local)} remote ${short(c.remote)}`);
  ctx.out.note(
    `pull: ${pull.updated.length} refs updated, ${pull.upToDate.length} up to date, ${pull.diverged.length} diverged` +
      (pull.objects > 0 ? `; ${formatCount(pull.objects)} objects copied` : ''),
  );
}

const conflictLine = (what: string, n: number): ConflictError =>
  new ConflictError(
    `${n} ref(s) ${what}; nothing was overwritten. Run "cairn status" to see both values, then "cairn ref set" the one to keep and sync again`,
  );

const prefixOption = { prefix: { type: 'string' } } as const;
const prefixHelp = { prefix: 'only refs whose name starts with this (e.g. snapshots/)' };

export const push: Command = {
  name: 'push',
  summary: 'upload pending objects, then publish local refs to the remote',
  usage: 'push [--prefix P] [--all]',
  description: [
    'Uploads every object written since the last push (snapshots, puts), then advances each remote',
    'ref by compare-and-swap. A remote ref that moved since your last sync is a conflict: it is not',
    'overwritten, and push exits 4. A published ref never names an object the remote lacks: the first',
    'push to a remote other than the one last pushed to (or after objects were written with no remote)',
    'checks every local object against it and uploads what it lacks. An object the remote says it already',
    'has is read back and hashed before push relies on it (large objects and every ref target; on a full',
    'check, every one): if the remote holds damaged bytes, push exits 5 and publishes no ref. A put cannot',
    'replace them; run "cairn verify --repair" with delete rights, then push again.',
  ].join('\n'),
  options: { ...prefixOption, all: { type: 'boolean' } },
  optionHelp: { ...prefixHelp, all: 'check every local object against the remote, as the first push to a new remote does' },
  examples: ['cairn push', 'cairn push --prefix snapshots/ --json'],
  async run(ctx) {
    noArgs(ctx, 'push');
    return withStores(ctx, { write: true, needRemote: true, remote: 'write' }, async (stores) => {
      await adopt(ctx, stores);
      const pushed = await runPush(ctx, stores);
      reportPush(ctx, pushed);
      ctx.out.result({
        ...pushed.result,
        uploaded: pushed.uploaded,
        uploadedBytes: pushed.bytes,
        alreadyRemote: pushed.skipped,
        checkedLocal: pushed.checkedLocal,
      });
      if (pushed.result.conflicts.length > 0) throw conflictLine('changed on the remote since your last sync', pushed.result.conflicts.length);
      return EXIT.ok;
    });
  },
};

export const pull: Command = {
  name: 'pull',
  summary: "bring the remote's refs (and with --objects, their objects) into the local store",
  usage: 'pull [--prefix P] [--objects]',
  description: [
    'Takes each remote ref that the local store has not changed since the last sync. A ref changed on',
    'both sides is reported as diverged, keeps its local value, and pull exits 4. Objects are fetched',
    'lazily on first read, or all at once with --objects (for offline use).',
  ].join('\n'),
  options: { ...prefixOption, objects: { type: 'boolean' } },
  optionHelp: { ...prefixHelp, objects: 'copy every object the pulled refs reach into the local store now' },
  examples: ['cairn pull && cairn restore snapshots/photos ./photos', 'cairn pull --objects'],
  async run(ctx) {
    noArgs(ctx, 'pull');
    return withStores(ctx, { write: true, needRemote: true }, async (stores) => {
      await adopt(ctx, stores);
      const result = await stores.layered!.pull({
        signal: ctx.signal,
        prefix: ctx.values.prefix as string | undefined,
        objects: ctx.values.objects === true ? reachableObjects : false,
      });
      reportPull(ctx, result);
      ctx.out.result(result);
      if (result.diverged.length > 0) throw conflictLine('changed both locally and on the remote', result.diverged.length);
      return EXIT.ok;
    });
  },
};

export const sync: Command = {
  name: 'sync',
  summary: 'push, then pull',
  usage: 'sync [--prefix P] [--objects]',
  description: 'Publishes local work (or reports its conflicts), then takes what others published. Exits 4 on any conflict.',
  options: { ...prefixOption, objects: { type: 'boolean' } },
  optionHelp: { ...prefixHelp, objects: 'copy every object the pulled refs reach into the local store now' },
  examples: ['cairn sync'],
  async run(ctx) {
    noArgs(ctx, 'sync');
    return withStores(ctx, { write: true, needRemote: true, remote: 'write' }, async (stores) => {
      await adopt(ctx, stores);
      const pushed = await runPush(ctx, stores);
      reportPush(ctx, pushed);
      const pulled = await stores.layered!.pull({
        signal: ctx.signal,
        prefix: ctx.values.prefix as string | undefined,
        objects: ctx.values.objects === true ? reachableObjects : false,
      });
      reportPull(ctx, pulled);
      ctx.out.result({ push: { ...pushed.result, uploaded: pushed.uploaded }, pull: pulled });
      const conflicts = pushed.result.conflicts.length + pulled.diverged.length;
      if (conflicts > 0) throw conflictLine('conflict between local and remote', conflicts);
      return EXIT.ok;
    });
  },
};

export const status: Command = {
  name: 'status',
  summary: 'show pending uploads and refs ahead of or behind the remote',
  usage: 'status [--prefix P]',
  options: prefixOption,
  optionHelp: prefixHelp,
  examples: ['cairn status', 'cairn status --json'],
  async run(ctx) {
    noArgs(ctx, 'status');
    return withStores(ctx, { needRemote: true }, async (stores) => {
      await adopt(ctx, stores);
      const s = await stores.layered!.status({ signal: ctx.signal, prefix: ctx.values.prefix as string | undefined });
      ctx.out.line(`remote: ${stores.config.remote!.display}`);
      ctx.out.line(`pending: ${formatCount(s.pendingObjects)} objects (${formatBytes(s.pendingBytes)}) to upload`);
      const fullCheck = await needsFullCheck(stores.config.dir, stores.config.remote!);
      if (fullCheck) {
        ctx.out.line(
          'unchecked: local objects written before this remote was configured, or pushed to another remote, may be missing from it; ' +
            'the next push checks every local object and uploads what it lacks',
        );
      }
      for (const f of s.failures) ctx.out.line(`failed: ${f.hash.toString()}: ${f.error.message}`);
      for (const r of s.refs) {
        ctx.out.line(`${r.state.padEnd(10)} ${r.ref}  local ${short(r.local)}  remote ${short(r.remote)}`);
      }
      ctx.out.result({
        remote: stores.config.remote!.display,
        pendingObjects: s.pendingObjects,
        pendingBytes: s.pendingBytes,
        fullCheckOnPush: fullCheck,
        failures: s.failures.map((f) => ({ hash: f.hash.toString(), error: f.error.message })),
        refs: s.refs,
      });
      return EXIT.ok;
    });
  },
};
