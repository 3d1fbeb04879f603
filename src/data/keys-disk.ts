/**
 * The disk {@link KeyStore}: one file per key in a directory only its owner
 * can enter (mode 0700), each file readable by its owner only (mode 0600).
 *
 * Files are written to a temp file created with mode 0600 (exclusive
 * create, so no other process can have it open), synced, renamed over the
 * key and the directory synced: a key is durable when `set` resolves, and a
 * crash leaves the old key or the new one, never a torn file. The directory
 * is kept apart from any store directory: it is never synced anywhere.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { throwIfAborted, type AbortOptions } from '../abort.js';
import { BackendError, ClosedError, InvalidArgumentError, NotFoundError, PermissionError } from '../errors.js';
import { assertSecret, type KeyStore } from './keys.js';
import { assertSegmentName } from './names.js';

/** Options of {@link openDiskKeyStore}. Reserved for future use. */
export type DiskKeyStoreOptions = Record<string, never>;

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const TEMP_PREFIX = '.tmp-';

/**
 * Opens (creating if needed, mode 0700) a key directory. An existing
 * directory that group or others can access, or that another user owns, is
 * refused with {@link PermissionError}: keys would not be private there.
 *
 * @example
 * ```ts
 * const keys = await openDiskKeyStore(path.join(os.homedir(), '.cairn', 'keys'));
 * await keys.set('signing', secret); // file mode 0600
 * ```
 */
export async function openDiskKeyStore(dir: string, _options: DiskKeyStoreOptions = {}): Promise<KeyStore> {
  try {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (cause) {
    // Something that is not a directory is in the way: the checks below say what.
    const code = (cause as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST' && code !== 'ENOTDIR') throw mapFsError(cause, `cannot create the key directory ${dir}`);
  }
  let stats;
  try {
    stats = await lstat(dir);
  } catch (cause) {
    throw mapFsError(cause, `cannot read the key directory ${dir}`);
  }
  if (stats.isSymbolicLink()) {
    throw new PermissionError(`the key directory ${dir} is a symlink; give openDiskKeyStore the real directory, so that nobody can redirect it`);
  }
  if (!stats.isDirectory()) throw new InvalidArgumentError(`${dir} is not a directory; give openDiskKeyStore a directory path`);
  if (process.getuid !== undefined && stats.uid !== process.getuid()) {
    throw new PermissionError(`the key directory ${dir} belongs to another user (uid ${stats.uid}); keys must live in a directory you own`);
  }
  if ((stats.mode & 0o077) !== 0) {
    throw new PermissionError(
      `the key directory ${dir} is accessible by group or others (mode ${(stats.mode & 0o777).toString(8)}); run "chmod 700 ${dir}"`,
    );
  }
  return new DiskKeyStore(dir);
}

class DiskKeyStore implements KeyStore {
  readonly #dir: string;
  #closed = false;

  constructor(dir: string) {
    this.#dir = dir;
  }

  #path(name: unknown, options: AbortOptions | undefined): string {
    if (this.#closed) throw new ClosedError('the key store is closed');
    throwIfAborted(options?.signal);
    assertSegmentName(name, 'key name');
    return join(this.#dir, name);
  }

  async set(name: string, secret: Uint8Array, options?: AbortOptions): Promise<void> {
    const path = this.#path(name, options);
    assertSecret(secret);
    const temp = join(this.#dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
      try {
        // The umask can only clear bits, but a chmod makes the mode exact whatever the umask.
        await handle.chmod(FILE_MODE);
        await handle.writeFile(secret);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
      await this.#syncDir();
    } catch (cause) {
      await unlink(temp).catch(() => undefined);
      throw mapFsError(cause, `cannot write key "${name}"`, name);
    }
  }

  async get(name: string, options?: AbortOptions): Promise<Uint8Array> {
    const path = this.#path(name, options);
    try {
      return new Uint8Array(await readFile(path));
    } catch (cause) {
      throw mapFsError(cause, `cannot read key "${name}"`, name);
    }
  }

  async has(name: string, options?: AbortOptions): Promise<boolean> {
    const path = this.#path(name, options);
    try {
      return (await lstat(path)).isFile();
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw mapFsError(cause, `cannot check key "${name}"`, name);
    }
  }

  async list(options?: AbortOptions): Promise<string[]> {
    if (this.#closed) throw new ClosedError('the key store is closed');
    throwIfAborted(options?.signal);
    try {
      const entries = await readdir(this.#dir, { withFileTypes: true });
      return entries
        .filter((e) => e.isFile() && !e.name.startsWith('.'))
        .map((e) => e.name)
        .sort();
    } catch (cause) {
      throw mapFsError(cause, `cannot list the key directory ${this.#dir}`);
    }
  }

  async delete(name: string, options?: AbortOptions): Promise<void> {
    const path = this.#path(name, options);
    try {
      await unlink(path);
      await this.#syncDir();
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw mapFsError(cause, `cannot delete key "${name}"`, name);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  async #syncDir(): Promise<void> {
    const handle = await open(this.#dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/** Maps an fs error to the Cairn error set, keeping it as `cause`. */
function mapFsError(cause: unknown, what: string, key?: string): Error {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new NotFoundError(`${what}: it does not exist`, { key, cause });
  if (code === 'EACCES' || code === 'EPERM') return new PermissionError(`${what}: permission denied`, { key, cause });
  return new BackendError(`${what}: ${code ?? String(cause)}`, { key, cause, retryable: code === 'EAGAIN' || code === 'EBUSY' });
}

