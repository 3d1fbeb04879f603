/**
 * Test helpers for snapshots: build a directory with every kind of entry,
 * and compare two directories exactly (types, modes, bytes, link targets).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Names that break naive tools. */
export const ODD_NAMES = ['with space', 'tab\there', 'new\nline', 'café', '日本語', 'emoji 😀', '-dash', '#hash', "quote'\"", 'back\\slash'];

/** A small tree with every entry kind; returns nothing, writes into `dir`. */
export async function makeMixedTree(dir: string, options: { largeBytes?: number } = {}): Promise<void> {
  await mkdir(join(dir, 'sub/deeper/deepest'), { recursive: true });
  await mkdir(join(dir, 'empty-dir'));
  await writeFile(join(dir, 'hello.txt'), 'hello\n');
  await writeFile(join(dir, 'empty'), '');
  await writeFile(join(dir, 'sub/deeper/deepest/leaf'), 'leaf');
  await writeFile(join(dir, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(dir, 'script.sh'), 0o755);
  await writeFile(join(dir, 'secret'), 'k');
  await chmod(join(dir, 'secret'), 0o600);
  await writeFile(join(dir, 'readonly'), 'r');
  await chmod(join(dir, 'readonly'), 0o444);
  for (const name of ODD_NAMES) await writeFile(join(dir, 'sub', name), `content of ${name}`);
  await writeFile(join(dir, 'large.bin'), randomBytes(options.largeBytes ?? 1_500_000));
  await symlink('hello.txt', join(dir, 'link-rel'));
  await symlink('/etc/passwd', join(dir, 'link-abs'));
  await symlink('../../outside', join(dir, 'sub/link-up'));
  await symlink('does-not-exist', join(dir, 'link-dangling'));
  await symlink('sub', join(dir, 'link-dir'));
  await mkdir(join(dir, 'locked'));
  await writeFile(join(dir, 'locked/inside'), 'x');
  await chmod(join(dir, 'locked'), 0o555);
}

async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer);
  return hash.digest('hex');
}

/** Every entry under `dir` as "path type mode detail" lines, sorted: equal lists mean equal trees. */
export async function describeTree(dir: string): Promise<string[]> {
  const lines: string[] = [];
  const walk = async (path: string, rel: string): Promise<void> => {
    for (const name of (await readdir(path)).sort()) {
      const full = join(path, name);
      const relName = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(full);
      const mode = (st.mode & 0o777).toString(8);
      if (st.isSymbolicLink()) lines.push(`${JSON.stringify(relName)} link ${JSON.stringify(await readlink(full))}`);
      else if (st.isDirectory()) {
        lines.push(`${JSON.stringify(relName)} dir ${mode}`);
        await walk(full, relName);
      } else lines.push(`${JSON.stringify(relName)} file ${mode} ${st.size} ${await fileDigest(full)}`);
    }
  };
  await walk(dir, '');
  return lines;
}
