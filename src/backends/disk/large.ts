/**
 * Large objects: one file each, `large/<algorithm>-<hex>`, written as a
 * temp file, fsynced, renamed into place, and the directory fsynced (the
 * cacache pattern). Objects above the segment record limit, and streams
 * that outgrow it, land here so that neither put nor get ever holds one
 * whole in memory, and deleting one frees its space at once.
 *
 * Names come only from validated hex digests. Files are opened with
 * O_NOFOLLOW, and rename replaces a symlink planted at the final name
 * rather than writing through it.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { IntegrityError, NotFoundError } from '../../errors.js';
import { Hash } from '../../hash.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { fsyncDir, READ_FLAGS } from './layout.js';

const LARGE_NAME = /^(sha256|blake3)-([0-9a-f]{64})$/;
/** Chunk size of streamed reads. */
export const READ_CHUNK = 1024 * 1024;

/** A temp file being filled by a streaming put. */
export class LargeTemp {
  readonly #handle: FileHandle;
  readonly path: string;
  #position = 0;

  constructor(handle: FileHandle, path: string) {
    this.#handle = handle;
    this.path = path;
  }

  /** Appends a chunk. */
  async write(chunk: Uint8Array): Promise<void> {
    let done = 0;
    try {
      while (done < chunk.length) {
        const { bytesWritten } = await this.#handle.write(chunk, done, chunk.length - done, this.#position);
        done += bytesWritten;
        this.#position += bytesWritten;
      }
    } catch (error) {
      throw mapFsError(error, 'writing a large object');
    }
  }

  /** fsyncs and closes the file. */
  async finish(): Promise<void> {
    try {
      await this.#handle.sync();
    } finally {
      await this.#handle.close();
    }
  }

  /** Closes and removes the file (on abort or error). */
  async discard(): Promise<void> {
    await this.#handle.close().catch(() => {});
    await unlink(this.path).catch(() => {});
  }
}

/** The `large/` directory of a store. */
export class LargeFiles {
  readonly #dir: string;

  constructor(root: string) {
    this.#dir = join(root, 'large');
  }

  #path(hash: Hash): string {
    return join(this.#dir, `${hash.algorithm}-${hash.hex}`);
  }

  /** True when a regular file holds the object (a planted symlink does not count). */
  async has(hash: Hash): Promise<boolean> {
    try {
      return (await lstat(this.#path(hash))).isFile();
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return false;
      throw mapFsError(error, `checking large object ${hash.toString()}`, { key: hash.toString() });
    }
  }

  /** Creates a temp file in `large/` for a streaming put. */
  async createTemp(): Promise<LargeTemp> {
    const path = join(this.#dir, `.tmp-${randomBytes(8).toString('hex')}`);
    try {
      const handle = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o644);
      return new LargeTemp(handle, path);
    } catch (error) {
      throw mapFsError(error, 'creating a temp file for a large object');
    }
  }

  /**
   * Moves a finished temp file to the object's name. Renaming over an
   * existing copy is harmless (same bytes) and repairs a damaged one.
   */
  async commit(temp: LargeTemp, hash: Hash): Promise<void> {
    try {
      await temp.finish();
      await rename(temp.path, this.#path(hash));
      await fsyncDir(this.#dir);
    } catch (error) {
      await unlink(temp.path).catch(() => {});
      throw mapFsError(error, `storing large object ${hash.toString()}`, { key: hash.toString() });
    }
  }

  /** Opens the object for reading; NotFoundError if absent. */
  async openRead(hash: Hash): Promise<{ handle: FileHandle; size: number }> {
    const key = hash.toString();
    let handle: FileHandle;
    try {
      handle = await open(this.#path(hash), READ_FLAGS);
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') throw new NotFoundError(`object ${key} not found`, { key, cause: error });
      if (errnoOf(error) === 'ELOOP') {
        throw new IntegrityError(`object ${key} is a symlink in the store, which is never followed; delete the object and put it again`, {
          key,
          cause: error,
        });
      }
      throw mapFsError(error, `opening large object ${key}`, { key });
    }
    const info = await handle.stat();
    if (!info.isFile()) {
      await handle.close();
      throw new IntegrityError(`object ${key} is not a regular file in the store; delete it and put it again`, { key });
    }
    return { handle, size: info.size };
  }

  /** The object's whole (unverified) bytes; NotFoundError if it has no file. */
  async read(hash: Hash): Promise<Uint8Array> {
    const { handle, size } = await this.openRead(hash);
    try {
      return await readAt(handle, 0, size);
    } catch (error) {
      throw mapFsError(error, `reading large object ${hash.toString()}`, { key: hash.toString() });
    } finally {
      await handle.close().catch(() => {});
    }
  }

  /** Up to `length` (unverified) bytes from `offset`, clipped at the end; NotFoundError if it has no file. */
  async readRange(hash: Hash, offset: number, length: number): Promise<Uint8Array> {
    const { handle, size } = await this.openRead(hash);
    try {
      return await readAt(handle, offset, Math.max(0, Math.min(length, size - offset)));
    } catch (error) {
      throw mapFsError(error, `reading a range of large object ${hash.toString()}`, { key: hash.toString() });
    } finally {
      await handle.close().catch(() => {});
    }
  }

  /** Removes the object's file, if any, durably. */
  async remove(hash: Hash): Promise<boolean> {
    try {
      await unlink(this.#path(hash));
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return false;
      throw mapFsError(error, `deleting large object ${hash.toString()}`, { key: hash.toString() });
    }
    await fsyncDir(this.#dir);
    return true;
  }

  /** Hashes of every large object (regular files with a valid name only). */
  async list(): Promise<Hash[]> {
    let dirents;
    try {
      dirents = await readdir(this.#dir, { withFileTypes: true });
    } catch (error) {
      throw mapFsError(error, 'listing large objects');
    }
    const out: Hash[] = [];
    for (const dirent of dirents) {
      const match = LARGE_NAME.exec(dirent.name);
      if (match !== null && dirent.isFile()) out.push(Hash.fromHex(match[1]!, match[2]!));
    }
    return out;
  }

  /** Removes temp files left by puts that died, if older than `ageMs`. */
  async sweepTemps(ageMs: number): Promise<void> {
    const names = await readdir(this.#dir).catch(() => [] as string[]);
    for (const name of names) {
      if (!name.startsWith('.tmp-')) continue;
      const path = join(this.#dir, name);
      const info = await lstat(path).catch(() => undefined);
      if (info !== undefined && Date.now() - info.mtimeMs > ageMs) await unlink(path).catch(() => {});
    }
  }
}

/** Reads `want` bytes at `offset` (fewer if the file is shorter). */
async function readAt(handle: FileHandle, offset: number, want: number): Promise<Uint8Array> {
  const buf = Buffer.allocUnsafe(want);
  let done = 0;
  while (done < want) {
    const { bytesRead } = await handle.read(buf, done, want - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, done);
}
