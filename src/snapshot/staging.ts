/**
 * Restore staging directories: `.<name>.cairn-restore-<pid>-<random>`
 * beside the target. The owning process id is in the name, so that a
 * directory left by a restore that was killed (SIGKILL, power loss) can be
 * told from one still being written, and swept by the next restore into the
 * same place or by `cairn gc`. A directory whose process still runs (or
 * whose id was reused by another process) is left alone: sweeping errs
 * toward keeping.
 *
 * @module
 */
import { chmod, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const MARK = '.cairn-restore-';

/** Creates a staging directory for `finalPath` (absolute), owned by this process. */
export function makeStaging(finalPath: string): Promise<string> {
  return mkdtemp(join(dirname(finalPath), `.${basename(finalPath)}${MARK}${process.pid}-`));
}

/** True when a process with this id runs (or may run: a permission error means it exists). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The owning pid of a staging directory name for `base`, or `undefined` if the name is not one. */
export function stagingOwner(name: string, base: string): number | undefined {
  const prefix = `.${base}${MARK}`;
  if (!name.startsWith(prefix)) return undefined;
  const match = /^(\d+)-[^/]+$/.exec(name.slice(prefix.length));
  return match === null ? undefined : Number(match[1]);
}

/**
 * Removes a directory tree that may hold read-only directories (a restore
 * locks them last), making each writable first where `rm` alone fails.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (error) {
    if (!['EACCES', 'EPERM', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  }
  const unlock = async (dir: string): Promise<void> => {
    await chmod(dir, 0o700).catch(() => undefined);
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) await unlock(join(dir, entry.name));
    }
  };
  await unlock(path);
  await rm(path, { recursive: true, force: true });
}

/**
 * Removes staging directories beside `finalPath` (absolute) left by
 * restores whose process is gone; returns the paths removed.
 *
 * @example
 * ```ts
 * const swept = await sweepStaleStaging(resolve('./photos'));
 * ```
 */
export async function sweepStaleStaging(finalPath: string): Promise<string[]> {
  const parent = dirname(finalPath);
  const base = basename(finalPath);
  const names = await readdir(parent).catch(() => [] as string[]);
  const swept: string[] = [];
  for (const name of names) {
    const pid = stagingOwner(name, base);
    if (pid === undefined || pid === process.pid || processAlive(pid)) continue;
    const path = join(parent, name);
    const st = await lstat(path).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) continue;
    await removeTree(path);
    swept.push(path);
  }
  return swept;
}
