/**
 * Object commands: `put`, `cat`, `has`.
 *
 * @module
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidArgumentError, NotFoundError, PermissionError } from '../errors.js';
import { parseHash } from '../hash.js';
import type { Command, Context } from './command.js';
import { EXIT, UsageError } from './exit-codes.js';
import { hashIfShaped, resolveHashOrRef } from './resolve.js';
import { withStores } from './stores.js';

function need(ctx: Context, count: number, what: string): void {
  if (ctx.positionals.length !== count) {
    throw new UsageError(`expected ${what}, got ${ctx.positionals.length === 0 ? 'nothing' : ctx.positionals.map((p) => JSON.stringify(p)).join(' ')}; see --help`);
  }
}

async function fileSource(path: string): Promise<AsyncIterable<Uint8Array>> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new InvalidArgumentError(`cannot put ${JSON.stringify(path)}: it is not a regular file; give a file or "-" for stdin`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`cannot put ${JSON.stringify(path)}: no such file; check the path`, { key: path, cause: error });
    if (code === 'EACCES') throw new PermissionError(`cannot put ${JSON.stringify(path)}: permission denied`, { key: path, cause: error });
    throw error;
  }
  return createReadStream(path, { highWaterMark: 1024 * 1024 });
}

export const put: Command = {
  name: 'put',
  summary: 'store a file (or stdin) as one object and print its hash',
  usage: 'put <file|->',
  description: 'Streams the bytes into the local store (queued for push when a remote is configured) and prints the hash.',
  examples: ['cairn put photo.jpg', 'echo hello | cairn put -'],
  async run(ctx) {
    need(ctx, 1, 'one file path or "-"');
    const path = ctx.positionals[0]!;
    const source = path === '-' ? (process.stdin as AsyncIterable<Uint8Array>) : await fileSource(path);
    return withStores(ctx, { write: true }, async (stores) => {
      const hash = await stores.main.put(source, { signal: ctx.signal });
      ctx.out.line(hash.toString());
      ctx.out.result({ hash: hash.toString(), cid: hash.toCid() });
      return EXIT.ok;
    });
  },
};

export const cat: Command = {
  name: 'cat',
  summary: "write an object's bytes to stdout",
  usage: 'cat <hash|ref>',
  description: 'Streams the object, verified against its hash (read from the remote if it is not local).',
  examples: ['cairn cat sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 > hello.txt'],
  async run(ctx) {
    need(ctx, 1, 'one hash or ref');
    hashIfShaped(ctx.positionals[0]!);
    return withStores(ctx, {}, async (stores) => {
      const hash = await resolveHashOrRef(stores.main, ctx.positionals[0]!, ctx.signal);
      const stream = stores.main.getStream(hash, { signal: ctx.signal });
      try {
        await pipeline(Readable.from(stream), ctx.out.stdout);
      } catch (error) {
        // A closed pipe (`cairn cat x | head`) is the reader's choice, not a failure.
        if ((error as NodeJS.ErrnoException).code === 'EPIPE') return EXIT.ok;
        throw error;
      }
      return EXIT.ok;
    });
  },
};

export const has: Command = {
  name: 'has',
  summary: 'tell whether objects are present (exit 0 if all are, 3 if not)',
  usage: 'has <hash>...',
  examples: ['cairn has sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 && echo present'],
  async run(ctx) {
    if (ctx.positionals.length === 0) throw new UsageError('expected at least one hash; see --help');
    const hashes = ctx.positionals.map((text) => parseHash(text));
    return withStores(ctx, {}, async (stores) => {
      const present = await stores.main.hasMany(hashes, { signal: ctx.signal });
      hashes.forEach((h, i) => ctx.out.line(`${present[i] === true ? 'present' : 'absent '} ${h.toString()}`));
      ctx.out.result({ objects: hashes.map((h, i) => ({ hash: h.toString(), present: present[i] === true })) });
      return present.every(Boolean) ? EXIT.ok : EXIT.notFound;
    });
  },
};
