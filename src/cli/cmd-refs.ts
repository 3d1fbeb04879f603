/**
 * `cairn ref get|set|cas|ls|rm|watch`: refs of the local store, or of the
 * remote directly with `--upstream`.
 *
 * @module
 */
import { NotFoundError } from '../errors.js';
import { parseHash, type Hash } from '../hash.js';
import { assertRefName } from '../ref-name.js';
import type { RefValue, Store } from '../store.js';
import type { Command, Context } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { parseCount, resolveHashOrRef } from './resolve.js';
import { withStores, type Stores } from './stores.js';

const SUBCOMMANDS = ['get', 'set', 'cas', 'ls', 'rm', 'watch'] as const;

function target(ctx: Context, stores: Stores): Store {
  if (ctx.values.upstream !== true) return stores.main;
  if (stores.remote === undefined) throw new UsageError('--upstream needs a remote; run "cairn init --remote URL" or pass --remote');
  return stores.remote;
}

function args(ctx: Context, count: number, usage: string): string[] {
  const rest = ctx.positionals.slice(1);
  if (rest.length !== count) throw new UsageError(`usage: cairn ref ${usage}`);
  return rest;
}

function show(name: string, value: RefValue | undefined): Record<string, unknown> {
  return { name, hash: value?.hash.toString() ?? null, version: value?.version ?? null };
}

function nullableHash(text: string): Hash | null {
  return text === '-' || text === 'none' ? null : parseHash(text);
}

export const ref: Command = {
  name: 'ref',
  summary: 'read and change refs: get, set, cas, ls, rm, watch',
  usage: 'ref <get|set|cas|ls|rm|watch> ...',
  description: [
    'ref get NAME              print the hash NAME holds (exit 3 if it does not exist)',
    'ref set NAME HASH|REF     point NAME at a hash (last writer wins)',
    'ref cas NAME OLD NEW      change NAME only if it still holds OLD ("-" = absent / delete); exit 4 if not',
    'ref ls [PREFIX]           list refs as "hash name"',
    'ref rm NAME               delete NAME',
    'ref watch NAME            print NAME\'s hash on every change until Ctrl-C (or --count changes)',
    '',
    'Refs are local; "cairn push" publishes them. --upstream acts on the remote\'s refs directly.',
  ].join('\n'),
  options: {
    upstream: { type: 'boolean' },
    count: { type: 'string' },
    interval: { type: 'string' },
  },
  optionHelp: {
    upstream: "act on the remote's refs, not the local store's",
    count: 'ref watch: exit after this many changes',
    interval: 'ref watch: poll interval in ms for polling backends (default 1000)',
  },
  examples: ['cairn ref set heads/main sha256:2cf2…', 'cairn ref cas heads/main - sha256:2cf2…   # create only if absent', 'cairn ref ls heads/'],
  async run(ctx) {
    const sub = ctx.positionals[0];
    if (sub === undefined || !(SUBCOMMANDS as readonly string[]).includes(sub)) {
      throw new UsageError(`expected a subcommand: ${SUBCOMMANDS.join(', ')}; see "cairn ref --help"`);
    }
    const writes = sub === 'set' || sub === 'cas' || sub === 'rm';
    // Only a write to the remote's own refs opens it writable.
    return withStores(ctx, { write: writes, remote: writes && ctx.values.upstream === true ? 'write' : 'read' }, async (stores) => {
      const store = target(ctx, stores);
      const signal = ctx.signal;
      switch (sub) {
        case 'get': {
          const [name] = args(ctx, 1, 'get NAME');
          assertRefName(name);
          const value = await store.getRef(name, { signal });
          if (value === undefined) throw new NotFoundError(`no ref named ${JSON.stringify(name)}; list refs with "cairn ref ls"`, { ref: name });
          ctx.out.line(value.hash.toString());
          ctx.out.result(show(name, value));
          return EXIT.ok;
        }
        case 'set': {
          const [name, text] = args(ctx, 2, 'set NAME HASH|REF');
          assertRefName(name);
          const hash = await resolveHashOrRef(store, text!, signal);
          const value = await store.setRef(name, hash, { signal });
          ctx.out.line(value.hash.toString());
          ctx.out.result(show(name, value));
          return EXIT.ok;
        }
        case 'cas': {
          const [name, oldText, newText] = args(ctx, 3, 'cas NAME OLD|- NEW|-');
          assertRefName(name);
          const result = await store.compareAndSwap(name, nullableHash(oldText!), nullableHash(newText!), { signal });
          ctx.out.result({ ok: result.ok, ...show(name, result.current) });
          if (result.ok) {
            ctx.out.line(result.current?.hash.toString() ?? '(deleted)');
            return EXIT.ok;
          }
          ctx.out.line(`conflict: ${name} holds ${result.current?.hash.toString() ?? '(absent)'}`);
          ctx.out.note(`cairn: ref cas: ${name} did not hold ${oldText}; nothing changed (retry with the value above)`);
          return EXIT.conflict;
        }
        case 'ls': {
          const rest = ctx.positionals.slice(1);
          if (rest.length > 1) throw new UsageError('usage: cairn ref ls [PREFIX]');
          const refs: Array<Record<string, unknown>> = [];
          for await (const entry of store.listRefs(rest[0] ?? '', { signal })) {
            ctx.out.line(`${entry.hash.toString()} ${entry.name}`);
            refs.push(show(entry.name, entry));
          }
          ctx.out.result({ refs });
          return EXIT.ok;
        }
        case 'rm': {
          const [name] = args(ctx, 1, 'rm NAME');
          assertRefName(name);
          await store.deleteRef(name, { signal });
          ctx.out.result({ name, deleted: true });
          return EXIT.ok;
        }
        case 'watch': {
          const [name] = args(ctx, 1, 'watch NAME');
          assertRefName(name);
          const limit = parseCount(ctx.values.count as string | undefined, 'count', Number.POSITIVE_INFINITY);
          const intervalMs = parseCount(ctx.values.interval as string | undefined, 'interval', 1000);
          const stop = new AbortController();
          const onAbort = (): void => stop.abort();
          signal.addEventListener('abort', onAbort, { once: true });
          let seen = 0;
          const finished = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
          await store.watchRef(
            name,
            (value) => {
              if (stop.signal.aborted) return;
              ctx.out.line(value?.hash.toString() ?? '(deleted)');
              ctx.out.result(show(name, value));
              if (++seen >= limit) stop.abort();
            },
            { signal: stop.signal, intervalMs },
          );
          ctx.out.note(`watching ${name}; Ctrl-C to stop`);
          await finished;
          signal.removeEventListener('abort', onAbort);
          // Ctrl-C is how a watch normally ends.
          return EXIT.ok;
        }
      }
      return EXIT.usage;
    });
  },
};
