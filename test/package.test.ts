/**
 * Tests what users import: the built package through its own name and
 * `exports` map (dist/, built by `npm test` before vitest runs).
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';

describe('the published package', () => {
  it('declares types first for every export and a bin for the CLI', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
      bin: Record<string, string>;
      engines: Record<string, string>;
      type: string;
    };
    expect(pkg.type).toBe('module');
    expect(pkg.bin.cairn).toBe('./dist/cli/main.js');
    expect(pkg.engines.node).toBe('>=20.19');
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target === 'string') continue;
      expect(Object.keys(target)[0], subpath).toBe('types');
      await expect(readFile(new URL(`../${target.types}`, import.meta.url)), subpath).resolves.toBeDefined();
    }
  });

  it('works through the package entry point', async () => {
    const cairn = await import('cairn');
    const store = cairn.memoryStore();
    const hash = await store.put(new TextEncoder().encode('from dist'));
    expect(hash).toBeInstanceOf(cairn.Hash);
    expect(new TextDecoder().decode(await store.get(hash))).toBe('from dist');
    await expect(store.getRef('../x')).rejects.toBeInstanceOf(cairn.InvalidRefNameError);
  });
});
