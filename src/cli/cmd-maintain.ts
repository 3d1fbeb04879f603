/**
 * Store maintenance: `init`, `verify`, `gc`.
 *
 * @module
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbortOptions } from '../abort.js';
import { DiskStore, type RecoveryReport } from '../backends/disk.js';
import type { Hash } from '../hash.js';
import { PendingJournal, RESERVED_PREFIX } from '../layers/journal.js';
import { PackedStore } from '../layers/packed/packed.js';
import { collectGarbage, type GcState } from '../snapshot/gc.js';
import { verifyStore, type VerifyResult } from '../snapshot/verify.js';
import type { Store } from '../store.js';
import type { Command, Context } from './command.js';
import { remoteFrom, parseRemote, saveConfig, type ResolvedConfig, resolveConfig } from './config.js';
import { EXIT, UsageError } from './exit-codes.js';
import { formatBytes, formatCount } from './output.js';
import { formatDuration, parseDuration } from './resolve.js';
import { loadRemoteState, needsFullCheck, remoteKey, updateRemoteState } from './remote-state.js';
import { configFlags, openLocal, withStores } from './stores.js';
import { kdfOption } from './cmd-keys.js';
import { initRemote } from './init-remote.js';
import { repairObjects } from './repair.js';
import { sweepDeadRestores } from './restore-records.js';

/**
 * Refs users made. The layered store keeps its own records under `.cairn/`
 * (pending uploads, remote-tracking values): they are not roots. Objects
 * still waiting to be pushed are kept as they are (not followed), so that
 * push finds everything it promised to upload; gc after push collects them.
 */
const userRef = (name: string): boolean => !name.startsWith(RESERVED_PREFIX);

export const init: Command = {
  name: 'init',
  summary: 'create the local store, optionally saving a remote',
  usage: 'init [--remote URL] [--encrypt] [--endpoint URL] [--region R] [--path-style]',
  description: [
    'Creates the local store directory (.cairn, or --dir / CAIRN_DIR). With --remote, checks that the',
    'remote can be opened (a file:// remote is created) and saves it, with its S3 options, in the',
    "local store's config.json. Running init again changes the saved remote. Credentials are never saved.",
    'With --encrypt, the remote is encrypted: an empty remote gets a new master key and a first key opened',
    'by the password (--password-file, CAIRN_PASSWORD, or a prompt asked twice); a remote that is already',
    'encrypted is joined (its password is checked). A non-empty plain remote is refused (exit 2).',
  ].join('\n'),
  options: {
    encrypt: { type: 'boolean' },
    'kdf-work': { type: 'string' },
  },
  optionHelp: {
    encrypt: 'make (or join) an encrypted remote; needs packs',
    'kdf-work': 'scrypt cost of the first key as log2(N), 10..22 (default 15, about 150 ms); lower only for tests',
  },
  examples: [
    'cairn init --remote file:///srv/backups/cairn',
    'cairn init --remote s3://my-bucket/cairn/ --endpoint http://127.0.0.1:9000 --path-style',
    'CAIRN_PASSWORD=... cairn init --encrypt --remote s3://my-bucket/private/',
  ],
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError('init takes no arguments; give the remote with --remote URL');
    const flags = { ...configFlags(ctx), encrypt: ctx.values.encrypt === true };
    const config = await resolveConfig(flags, ctx.env);
    let remote = remoteFrom(flags, ctx.env, config.saved);
    if (flags.encrypt && remote === undefined) throw new UsageError('--encrypt needs a remote: give it with --remote URL');
    const kdf = kdfOption(ctx);
    // Check the remote before creating anything: a bad remote leaves the disk untouched.
    if (remote !== undefined) {
      const target = parseRemote(remote);
      if (target.encrypt === true && !target.packs) throw new UsageError('--encrypt needs packs: drop --no-packs (and CAIRN_PACKS=0)');
      const encrypted = await initRemote(ctx, target, kdf);
      remote = { ...remote, encrypt: encrypted || undefined };
    }
    const local = await openLocal(config, { create: true });
    let hasObjects = false;
    try {
      for await (const _ of local.listObjects({ signal: ctx.signal })) {
        hasObjects = true;
        break;
      }
    } finally {
      await local.close();
    }
    const saved = { version: 1 as const, remote: remote ?? config.saved?.remote };
    await saveConfig(config.dir, saved);
    const target = saved.remote === undefined ? undefined : parseRemote(saved.remote);
    // An empty store is trivially complete in any remote: its first push needs no full check.
    if (target !== undefined && !hasObjects) await updateRemoteState(config.dir, { objectsIn: remoteKey(target) });
    // A store older than remote-state.json: its tracking refs describe the remote being replaced, so say so.
    const previous = config.saved?.remote === undefined ? undefined : remoteKey(parseRemote(config.saved.remote));
    if (previous !== undefined && (await loadRemoteState(config.dir)).refsTrackedFor === undefined) {
      await updateRemoteState(config.dir, { refsTrackedFor: previous });
    }
    const fullCheck = target !== undefined && (await needsFullCheck(config.dir, target));
    ctx.out.line(
      `${config.saved === undefined ? 'initialized' : 'updated'} Cairn store in ${config.dir}` +
        (target !== undefined ? ` (remote ${target.display})` : ' (no remote; add one with "cairn init --remote URL")'),
    );
    if (fullCheck) ctx.out.note('this store already has objects: the next "cairn push" checks each against the remote and uploads what it lacks');
    ctx.out.result({ dir: config.dir, remote: saved.remote ?? null, fullCheckOnPush: fullCheck });
    return EXIT.ok;
  },
};

/** One store's verify report, after the CLI's own checks. */
interface VerifyReport extends VerifyResult {
  /** Damaged stretches of the store's files (disk stores): records that may have held acknowledged data. */
  readonly damaged: readonly DamagedStretch[];
  /** Missing here but present in the other store: fetched on demand, not damage. */
  readonly notFetched: readonly string[];
  readonly repaired: readonly string[];
  readonly unrepaired: ReadonlyArray<{ readonly hash: string; readonly reason: string }>;
}

function verifyLines(ctx: Context, where: string, r: VerifyReport): void {
  const repaired = new Set(r.repaired);
  for (const h of r.corrupt) ctx.out.line(`${repaired.has(h) ? 'repaired' : 'corrupt'} ${where} ${h}`);
  for (const { hash, reason } of r.unrepaired) ctx.out.warn(`could not repair ${where} ${hash}: ${reason}`);
  for (const h of r.missing) ctx.out.line(`missing ${where} ${h}`);
  for (const { hash, problem } of r.invalid) ctx.out.line(`invalid ${where} ${hash}: ${problem}`);
  ctx.out.note(
    `${where}: ${formatCount(r.checked)} objects (${formatBytes(r.bytes)}) re-hashed; ` +
      `${r.corrupt.length} corrupt${r.repaired.length > 0 ? ` (${r.repaired.length} repaired)` : ''}, ${r.missing.length} missing, ${r.invalid.length} invalid` +
      (r.notFetched.length > 0
        ? `; ${formatCount(r.notFetched.length)} not fetched yet (the remote holds them; they are read on demand: not damage)`
        : ''),
  );
}

/** One `corrupt` stretch a disk store's recovery dropped, and whether `--repair` dropped it for good. */
interface DamagedStretch {
  readonly file: string;
  readonly offset: number;
  readonly bytes: number;
  readonly repaired: boolean;
}

/** The `corrupt` stretches a disk store's recovery report lists (torn tails were never acknowledged: not damage). */
function damagedStretches(recovery: Readonly<RecoveryReport> | undefined): DamagedStretch[] {
  if (recovery === undefined) return [];
  return recovery.dropped
    .filter((d) => d.reason === 'corrupt')
    .map((d) => ({ file: d.file, offset: d.offset, bytes: d.bytes, repaired: recovery.refLogRepaired && d.file === 'refs/log' }));
}

/** Lists damaged stretches, before the walk: a damaged ref log can stop the walk itself (exit 5 either way). */
function damageLines(ctx: Context, where: string, damaged: readonly DamagedStretch[]): void {
  for (const d of damaged) {
    const what = d.file === 'refs/log' ? (d.repaired ? 'dropped for good; refs it held went back to their last intact value' : 'refs it held cannot be read') : 'its records are not used';
    ctx.out.line(`${d.repaired ? 'repaired' : 'damaged'} ${where} ${d.file} at offset ${d.offset} (${d.bytes} bytes): ${what}`);
  }
}

/** Whether a report leaves anything wrong. */
const stillWrong = (r: VerifyReport): boolean =>
  r.corrupt.length > r.repaired.length || r.missing.length > 0 || r.invalid.length > 0 || r.damaged.some((d) => !d.repaired);

export const verify: Command = {
  name: 'verify',
  summary: 're-hash every object, local and remote; list corrupt ones (exit 5 if any)',
  usage: 'verify [--local-only | --remote-only] [--repair]',
  description: [
    'Reads every object back and checks it against its hash, decodes every tree and chunk list a',
    'ref reaches with the rules restore uses, and checks that everything a ref reaches is present.',
    'Prints "corrupt <where> <hash>", "missing <where> <hash>" and "invalid <where> <hash>: why"',
    'lines and exits 5 if anything is wrong. An object missing locally that the remote holds is',
    'not damage (objects are fetched on demand after a pull): it is counted as "not fetched yet".',
    'It also lists the damaged records a disk store found in its files ("damaged <where> <file> at',
    'offset N"): a damaged ref-log record may hide the newest value of a ref, which is never read as',
    'an older one. --repair replaces each corrupt object with the verified copy from the other store',
    '(delete, then put again: the remote must allow deletes), rewrites a damaged file:// remote ref',
    'log from its intact records (the refs it hid go back to their last intact value), and exits 5',
    'only for what it could not repair.',
  ].join('\n'),
  options: { 'local-only': { type: 'boolean' }, 'remote-only': { type: 'boolean' }, repair: { type: 'boolean' } },
  optionHelp: {
    'local-only': 'check only the local store',
    'remote-only': 'check only the remote',
    repair: 'replace corrupt objects by the verified copy from the other store (needs delete rights)',
  },
  examples: ['cairn verify', 'cairn verify --remote-only --json', 'cairn verify --repair'],
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError('verify takes no arguments');
    const localOnly = ctx.values['local-only'] === true;
    const remoteOnly = ctx.values['remote-only'] === true;
    const repair = ctx.values.repair === true;
    if (localOnly && remoteOnly) throw new UsageError('give at most one of --local-only and --remote-only');
    return withStores(ctx, { needRemote: remoteOnly || repair, write: repair, remote: repair ? 'repair' : 'read' }, async (stores) => {
      const targets: Array<readonly [string, Store, Store | undefined]> = [];
      if (!remoteOnly) targets.push(['local', stores.local, stores.remote]);
      if (!localOnly && stores.remote !== undefined) targets.push(['remote', stores.remote, stores.local]);
      const report: Record<string, VerifyReport> = {};
      for (const [where, store, other] of targets) {
        const damaged = damagedStretches(where === 'remote' ? stores.remoteRecovery : store instanceof DiskStore ? store.recovery : undefined);
        damageLines(ctx, where, damaged);
        const result = await verifyStore(store, { signal: ctx.signal, refFilter: userRef, onProgress: ctx.out.progress(`verify ${where}`, 'objects') });
        ctx.out.done();
        let missing = [...result.missing];
        let notFetched: string[] = [];
        if (where === 'local' && other !== undefined && missing.length > 0) {
          const present = await other.hasMany(missing, { signal: ctx.signal });
          notFetched = missing.filter((_, i) => present[i] === true);
          missing = missing.filter((_, i) => present[i] !== true);
        }
        const fixed = repair && other !== undefined ? await repairObjects(store, other, result.corrupt, { signal: ctx.signal }) : { repaired: [], failed: [] };
        const r: VerifyReport = { ...result, damaged, missing, notFetched, repaired: fixed.repaired, unrepaired: fixed.failed };
        verifyLines(ctx, where, r);
        report[where] = { ...r, ok: !stillWrong(r) };
      }
      const ok = Object.values(report).every((r) => r.ok);
      ctx.out.result({ ok, ...report });
      if (!ok && !repair && Object.values(report).some((r) => r.corrupt.length > 0)) {
        ctx.out.note('run "cairn verify --repair" to replace corrupt objects from the other store');
      }
      return ok ? EXIT.ok : EXIT.corrupt;
    });
  },
};

async function loadGcState(path: string): Promise<GcState> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as GcState;
  } catch {
    return {}; // no state yet (or unreadable): every unreachable object starts its grace period now
  }
}

async function saveGcState(path: string, state: GcState): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(state));
  await rename(tmp, path);
}

function gcStatePath(config: ResolvedConfig, remote: boolean): string {
  return join(config.dir, remote ? 'gc-state-remote.json' : 'gc-state.json');
}

export const gc: Command = {
  name: 'gc',
  summary: 'delete objects no ref reaches (dry run unless --force)',
  usage: 'gc [--force] [--grace 1h] [--remote-store] [--allow-missing]',
  description: [
    'Lists every object that no ref reaches (a dry run: nothing is deleted). With --force (or --yes),',
    'deletes those that have been unreachable for at least the grace period, measured from the first',
    'gc run that saw them unreachable (state kept in the local directory). The grace period protects',
    'a snapshot being written by another process, whose objects exist before its ref does.',
    '--remote-store collects the remote instead, keeping what local or remote refs reach.',
    'gc stops (exit 3) when an object a ref reaches is missing, since the parts of that snapshot that',
    'survive would look like garbage (locally, objects the remote holds are fine: they are fetched on',
    'demand); --allow-missing collects anyway. It stops (exit 5) on a corrupt or invalid tree.',
    'gc also removes staging directories left by restores that were killed.',
  ].join('\n'),
  options: {
    force: { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
    'dry-run': { type: 'boolean', short: 'n' },
    grace: { type: 'string' },
    'remote-store': { type: 'boolean' },
    'allow-missing': { type: 'boolean' },
  },
  optionHelp: {
    force: 'delete (default: dry run)',
    yes: 'same as --force',
    'dry-run': 'list only (the default)',
    grace: 'only delete objects unreachable for at least this long: 0, 30s, 10m, 1h, 7d (default 1h)',
    'remote-store': 'collect the remote store instead of the local one',
    'allow-missing': 'collect even when an object a ref reaches is missing',
  },
  examples: ['cairn gc                      # list what would go', 'cairn gc --force --grace 0     # delete every unreachable object now'],
  async run(ctx) {
    if (ctx.positionals.length > 0) throw new UsageError('gc takes no arguments');
    const force = ctx.values.force === true || ctx.values.yes === true;
    if (force && ctx.values['dry-run'] === true) throw new UsageError('give either --force or --dry-run, not both');
    const graceMs = ctx.values.grace === undefined ? 3_600_000 : parseDuration(ctx.values.grace as string, 'grace');
    const onRemote = ctx.values['remote-store'] === true;
    return withStores(ctx, { write: force, needRemote: onRemote, remote: force && onRemote ? 'write' : 'read' }, async (stores) => {
      const store = onRemote ? stores.remote! : stores.local;
      const extraRoots: Hash[] = [];
      if (onRemote) {
        for await (const r of stores.local.listRefs('', { signal: ctx.signal })) if (userRef(r.name)) extraRoots.push(r.hash);
      }
      // Objects waiting to be pushed, and the layered store's records of them, stay until pushed.
      const keep: Hash[] = [];
      if (!onRemote) {
        const journal = new PendingJournal(stores.local);
        for await (const record of journal.records({ signal: ctx.signal })) {
          keep.push(record.hash);
          for (const pending of (await journal.read(record, { signal: ctx.signal })) ?? []) keep.push(pending.hash);
        }
      }
      const statePath = gcStatePath(stores.config, onRemote);
      if (force) for (const path of await sweepDeadRestores(stores.config.dir)) ctx.out.note(`removed ${path}, left by a restore that was killed`);
      // Locally, an object the remote holds is not lost: it is fetched on demand.
      const remote = stores.remote;
      const allowMissing =
        ctx.values['allow-missing'] === true ? true : !onRemote && remote !== undefined ? (hs: readonly Hash[], o: AbortOptions) => remote.hasMany(hs, o) : false;
      const result = await collectGarbage(store, {
        allowMissing,
        signal: ctx.signal,
        graceMs,
        state: await loadGcState(statePath),
        dryRun: !force,
        extraRoots,
        keep,
        refFilter: userRef,
        onProgress: ctx.out.progress('gc', 'objects'),
      });
      ctx.out.done();
      // A packed remote keeps deleted objects' bytes in their packs until a repack rewrites the sparse ones.
      // Small loose objects (pushed before packs) move into packs on the way. An encrypted remote's packed layer
      // lists only its catalog, so its key records and ref bodies are never candidates, and it never repacks loose objects.
      const repacked = force && store instanceof PackedStore ? await store.repack({ graceMs, loose: true, signal: ctx.signal }) : undefined;
      await mkdir(stores.config.dir, { recursive: true });
      await saveGcState(statePath, result.state);
      const where = onRemote ? 'remote' : 'local';
      if (force) {
        for (const h of result.deleted) ctx.out.line(h);
        const waiting = result.unreachable.length - result.deleted.length;
        ctx.out.note(
          `${where}: deleted ${result.deleted.length} of ${result.unreachable.length} unreachable objects` +
            (waiting > 0 ? `; ${waiting} are younger than the ${formatDuration(graceMs)} grace period and were kept` : ''),
        );
      } else {
        for (const h of result.unreachable) ctx.out.line(h);
        ctx.out.note(
          `${where}: ${result.unreachable.length} of ${result.total} objects are unreachable; ` +
            `${result.eligible.length} past the ${formatDuration(graceMs)} grace period would be deleted by "cairn gc --force" (dry run: nothing deleted)`,
        );
      }
      ctx.out.result({
        store: where,
        dryRun: !force,
        graceMs,
        total: result.total,
        reachable: result.reachable,
        unreachable: result.unreachable,
        eligible: result.eligible,
        deleted: result.deleted,
        ...(repacked === undefined ? {} : { repack: repacked }),
      });
      return EXIT.ok;
    });
  },
};
