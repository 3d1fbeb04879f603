/**
 * Records of restores in progress, kept in the local directory
 * (`restoring/<pid>-<random>.json`, each `{ "pid", "target" }`), so that
 * `cairn gc` can sweep the staging directories of a restore that was killed
 * (SIGKILL, power loss) wherever its target was. A restore removes its
 * record when it ends; a record whose process is gone is stale.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive, sweepStaleStaging } from '../snapshot/staging.js';

const RECORDS = 'restoring';

/** Records a restore into `target` (absolute) by this process; returns a function that removes the record. */
export async function recordRestore(dir: string, target: string): Promise<() => Promise<void>> {
  await mkdir(join(dir, RECORDS), { recursive: true });
  const path = join(dir, RECORDS, `${process.pid}-${randomBytes(4).toString('hex')}.json`);
  await writeFile(path, JSON.stringify({ pid: process.pid, target }));
  return () => rm(path, { force: true });
}

/** Sweeps the staging directories of recorded restores whose process is gone; returns the paths removed. */
export async function sweepDeadRestores(dir: string): Promise<string[]> {
  const names = await readdir(join(dir, RECORDS)).catch(() => [] as string[]);
  const swept: string[] = [];
  for (const name of names) {
    const path = join(dir, RECORDS, name);
    let record: { pid?: unknown; target?: unknown };
    try {
      record = JSON.parse(await readFile(path, 'utf8')) as typeof record;
    } catch {
      continue; // being written, or not ours: left alone
    }
    if (typeof record.pid !== 'number' || typeof record.target !== 'string') continue;
    if (record.pid === process.pid || processAlive(record.pid)) continue;
    swept.push(...(await sweepStaleStaging(record.target)));
    await rm(path, { force: true });
  }
  return swept;
}
