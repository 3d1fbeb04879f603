import { describe, expect, it } from 'vitest';
import { derivedStore } from '../../src/data/derived.js';
import { memoryStore, NotFoundError, type RefValue } from '../../src/index.js';
import { conformanceSuite } from '../conformance.js';

conformanceSuite('derived over an empty memory store', {
  setup: async () => derivedStore(memoryStore()),
});

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

describe('derived store', () => {
  it('reads fall through to the parent; writes and deletes stay in the overlay and vanish on close', async () => {
    const parent = memoryStore();
    const [a, b] = await parent.putMany([bytes('parent a'), bytes('parent b')]);
    await parent.setRef('heads/main', a!);
    await parent.setRef('tags/v1', b!);
    const before = { refs: await collect(parent.listRefs()), objects: (await collect(parent.listObjects())).length };

    const derived = derivedStore(parent);
    expect(text(await derived.get(a!))).toBe('parent a');
    expect((await derived.getRef('heads/main'))?.hash.equals(a!)).toBe(true);

    const c = await derived.put(bytes('overlay c'));
    await derived.setRef('heads/main', c);
    await derived.setRef('heads/new', c);
    await derived.deleteRef('tags/v1');
    await derived.delete(b!);
    expect(await derived.has(b!)).toBe(false);
    await expect(derived.get(b!)).rejects.toBeInstanceOf(NotFoundError);
    expect((await derived.getRef('heads/main'))?.hash.equals(c)).toBe(true);
    expect(await derived.getRef('tags/v1')).toBeUndefined();
    expect((await collect(derived.listRefs())).map((r) => r.name)).toEqual(['heads/main', 'heads/new']);
    expect((await collect(derived.listObjects())).map((h) => h.toString()).sort()).toEqual([a!.toString(), c.toString()].sort());
    expect((await derived.getMany([a!, c])).map(text)).toEqual(['parent a', 'overlay c']);
    expect(await derived.hasMany([a!, b!, c])).toEqual([true, false, true]);
    // Swaps compare against what the derived store shows, parent values included.
    expect((await derived.compareAndSwap('heads/main', a!, b!)).ok).toBe(false);
    expect((await derived.compareAndSwap('heads/main', c, a!)).ok).toBe(true);

    // The parent never saw any of it.
    expect(await collect(parent.listRefs())).toEqual(before.refs);
    expect((await collect(parent.listObjects())).length).toBe(before.objects);
    expect(await parent.has(c)).toBe(false);

    await derived.close();
    // Closing the derived store leaves the parent open and unchanged.
    expect(text(await parent.get(b!))).toBe('parent b');
    expect((await parent.getRef('tags/v1'))?.hash.equals(b!)).toBe(true);
    // A new derived store starts from the parent again.
    const again = derivedStore(parent);
    expect((await again.getRef('heads/main'))?.hash.equals(a!)).toBe(true);
    expect(await again.getRef('heads/new')).toBeUndefined();
    await again.close();
  });

  it('a watcher sees parent changes until the ref is shadowed, then only overlay changes', async () => {
    const parent = memoryStore();
    const [a, b, c] = await parent.putMany([bytes('w a'), bytes('w b'), bytes('w c')]);
    const derived = derivedStore(parent);
    const seen: Array<RefValue | undefined> = [];
    const controller = new AbortController();
    await derived.watchRef('heads/w', (v) => seen.push(v), { signal: controller.signal });
    await parent.setRef('heads/w', a!);
    await derived.setRef('heads/w', b!);
    await parent.setRef('heads/w', c!); // hidden: the overlay shadows this ref now
    controller.abort();
    expect(seen.map((v) => v?.hash.toString())).toEqual([a!.toString(), b!.toString()]);
    await derived.close();
  });
});
