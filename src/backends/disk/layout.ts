/**
 * The disk store's directory layout: the version file that marks a
 * directory as a Cairn store, the sub-directories, and the checks that keep
 * every file operation inside the root.
 *
 * ```
 * <root>/cairn-store.json   {"format":"cairn-disk-store","version":1}
 * <root>/segments/          <writer>-<seq>.seg: append-only object records
 * <root>/large/             <algorithm>-<hex>: objects above the segment record limit
 * <root>/refs/              log-<generation>: the append-only ref log, and its lock
 * <root>/writers/           <writer>.json: which process owns which segments
 * <root>/locks/             compact.lock
 * <root>/index.ckpt         the index checkpoint
 * ```
 *
 * No file name is ever built from a ref name, and object file names are
 * built only from validated hex digests, so no caller-chosen bytes reach a
 * path. A symlink planted in place of a sub-directory makes open fail; files
 * are opened with O_NOFOLLOW.
 *
 * @module
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CorruptStoreError, NotFoundError } from '../../errors.js';
import { errnoOf, mapFsError } from './fs-errors.js';

/** The file whose presence makes a directory a Cairn disk store. */
export const LAYOUT_FILE = 'cairn-store.json';
const FORMAT = 'cairn-disk-store';
/** The layout this code reads and writes. */
export const LAYOUT_VERSION = 1;

/** Sub-directories, created on open. */
export const SUBDIRS = ['segments', 'large', 'refs', 'writers', 'locks'] as const;

/** Flags for opening an existing file to read without following a planted symlink. */
export const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;

/** fsyncs a directory, so that entries created or removed in it survive power loss. */
export async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Checks, changing nothing, that `root` is a store whose files can be read:
 * the layout file of a known version and every sub-directory.
 */
export async function checkLayout(root: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') {
      throw new NotFoundError(`there is no store at ${root} (the directory does not exist); a read-only open never creates one`, { cause: error });
    }
    throw mapFsError(error, `reading the store directory ${root}`);
  }
  if (!entries.includes(LAYOUT_FILE)) {
    throw new CorruptStoreError(`${root} has no ${LAYOUT_FILE}, so it is not a Cairn disk store; a read-only open never creates one`);
  }
  await checkLayoutFile(root);
  for (const name of SUBDIRS) {
    const path = join(root, name);
    const info = await lstat(path).catch((error: unknown) => {
      throw mapFsError(error, `checking ${path}`);
    });
    if (!info.isDirectory()) {
      throw new CorruptStoreError(`${path} should be a directory of the store but is not; the store refuses to follow it`);
    }
  }
}

/**
 * Makes `root` a store or checks that it is one. A missing or empty
 * directory becomes a store; anything else must carry a layout file of a
 * known version, or this throws {@link CorruptStoreError} having changed
 * nothing.
 */
export async function openLayout(root: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch (error) {
    const code = errnoOf(error);
    if (code === 'ENOTDIR') {
      throw new CorruptStoreError(`${root} is a file, not a directory; pass a missing, empty or existing store directory`, {
        cause: error,
      });
    }
    if (code !== 'ENOENT') throw mapFsError(error, `reading the store directory ${root}`);
    await mkdir(root, { recursive: true }).catch((e: unknown) => {
      throw mapFsError(e, `creating the store directory ${root}`);
    });
    entries = [];
  }

  if (entries.includes(LAYOUT_FILE)) {
    await checkLayoutFile(root);
  } else if (entries.length === 0) {
    await createLayoutFile(root);
  } else {
    throw new CorruptStoreError(
      `${root} is not empty and has no ${LAYOUT_FILE}, so it is not a Cairn disk store; nothing was changed. ` +
        'Pass a missing or empty directory to create a store, or the directory of an existing one',
    );
  }

  for (const name of SUBDIRS) {
    const path = join(root, name);
    try {
      await mkdir(path);
    } catch (error) {
      if (errnoOf(error) !== 'EEXIST') throw mapFsError(error, `creating ${path}`);
    }
    const info = await lstat(path);
    if (!info.isDirectory()) {
      throw new CorruptStoreError(
        `${path} should be a directory of the store but is ${info.isSymbolicLink() ? 'a symlink' : 'a file'}; ` +
          'the store refuses to follow it. Remove it (and check who planted it), then reopen',
      );
    }
  }
  await fsyncDir(root);
}

async function createLayoutFile(root: string): Promise<void> {
  const path = join(root, LAYOUT_FILE);
  try {
    const handle = await open(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW, 0o644);
    try {
      await handle.writeFile(`${JSON.stringify({ format: FORMAT, version: LAYOUT_VERSION })}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsyncDir(root);
  } catch (error) {
    // Another process created the store at the same moment: check what it wrote.
    if (errnoOf(error) === 'EEXIST') return checkLayoutFile(root);
    throw mapFsError(error, `creating ${path}`);
  }
}

async function checkLayoutFile(root: string): Promise<void> {
  const path = join(root, LAYOUT_FILE);
  // A creator racing with us may not have written the content yet: give it a moment.
  for (let attempt = 0; ; attempt++) {
    let text: string;
    try {
      const info = await lstat(path);
      if (!info.isFile()) throw new CorruptStoreError(`${path} is not a regular file; this is not a Cairn disk store`);
      text = await readFile(path, { encoding: 'utf8', flag: READ_FLAGS });
    } catch (error) {
      if (error instanceof CorruptStoreError) throw error;
      throw mapFsError(error, `reading ${path}`);
    }
    if (text.trim() === '' && attempt < 50) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      continue;
    }
    let parsed: { format?: unknown; version?: unknown };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch (cause) {
      throw new CorruptStoreError(`${path} is not valid JSON, so this is not a Cairn disk store (or it is damaged)`, { cause });
    }
    if (parsed === null || typeof parsed !== 'object' || parsed.format !== FORMAT) {
      throw new CorruptStoreError(`${path} does not describe a Cairn disk store (format ${JSON.stringify(parsed?.format)})`);
    }
    if (parsed.version !== LAYOUT_VERSION) {
      throw new CorruptStoreError(
        `${root} uses disk layout version ${JSON.stringify(parsed.version)}, but this Cairn reads only version ${LAYOUT_VERSION}; ` +
          'open it with the Cairn release that wrote it',
      );
    }
    return;
  }
}
