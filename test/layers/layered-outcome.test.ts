/**
 * Layered push when the remote cannot say whether a ref write landed
 * (issue 16 item 1): the lower store throws OutcomeUnknownError, push
 * settles it (resolveOutcome when the store, possibly wrapped, has it;
 * otherwise the same swap again) and ends correct: its own landed write is
 * "pushed", never a conflict; a write that did not land is made; a ref
 * another writer took is a conflict; the `.cairn/pushing/` note is gone
 * after success and kept while the outcome stays unknown.
 */
import { describe, expect, it } from 'vitest';
import type { AbortOptions } from '../../src/abort.js';
import { OutcomeUnknownError, type RefWriteAttempt } from '../../src/errors.js';
import { hashBytes, memoryStore, type Hash, type Store } from '../../src/index.js';
import { ForwardingStore } from '../../src/layers/forwarding.js';
import { layered } from '../../src/layers/layered.js';
import { PUSHING_PREFIX, TRACKING_PREFIX } from '../../src/layers/layered/names.js';
import type { CasResult, HashLike } from '../../src/store.js';

type Mode = 'lands' | 'lost' | 'taken';

/** A lower store whose next `failures` swaps end in OutcomeUnknownError: after landing the write, or not, or after another writer took the ref. */
class UnclearSwaps extends ForwardingStore {
  swaps = 0;
  constructor(
    readonly base: Store,
    readonly mode: Mode,
    public failures = 1,
    readonly other?: Hash,
  ) {
    super(base);
  }

  override async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    this.swaps += 1;
    if (name.startsWith('.cairn/') || this.failures === 0) return this.base.compareAndSwap(name, expected, next, options);
    this.failures -= 1;
    if (this.mode === 'lands') await this.base.compareAndSwap(name, expected, next, options);
    if (this.mode === 'taken') await this.base.setRef(name, this.other!, options);
    throw new OutcomeUnknownError(`swap of ${name}: the answer was lost`, attemptOf(name, expected, next));
  }
}

/** The same, plus the resolveOutcome an S3 store offers: it records each call. */
class ResolvingSwaps extends UnclearSwaps {
  resolved: RefWriteAttempt[] = [];
  async resolveOutcome(attempt: RefWriteAttempt, options?: AbortOptions): Promise<CasResult> {
    this.resolved.push(attempt);
    const current = await this.base.getRef(attempt.ref, options);
    if (current?.hash.toString() === attempt.next) return { ok: true, current };
    if ((current?.hash.toString() ?? null) === attempt.expected) return this.base.compareAndSwap(attempt.ref, attempt.expected ?? null, attempt.next, options);
    return { ok: false, current };
  }
}

function attemptOf(ref: string, expected: HashLike | null, next: HashLike | null): RefWriteAttempt {
  return { ref, writeId: `w-${ref}`, next: next === null ? null : next.toString(), expected: expected === null ? null : expected.toString(), bases: [] };
}

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

async function setup(wrap: (lower: Store) => Store) {
  const upper = memoryStore();
  const remote = memoryStore();
  const lower = wrap(remote);
  const store = layered({ upper, lower, uploadOnWrite: false });
  const mine = await store.put(bytes('mine'));
  await store.setRef('heads/main', mine);
  return { upper, remote, lower, store, mine };
}

async function expectPublished(upper: Store, remote: Store, mine: Hash): Promise<void> {
  expect((await remote.getRef('heads/main'))?.hash.equals(mine)).toBe(true);
  expect((await upper.getRef(TRACKING_PREFIX + 'heads/main'))?.hash.equals(mine)).toBe(true);
  expect(await upper.getRef(PUSHING_PREFIX + 'heads/main')).toBeUndefined();
}

describe('layered push: a ref write whose outcome is unknown', () => {
  it('landed, lower without resolveOutcome: the same swap again reads it as this push\'s write, pushed, not a conflict', async () => {
    let unclear!: UnclearSwaps;
    const { upper, remote, store, mine } = await setup((r) => (unclear = new UnclearSwaps(r, 'lands')));
    const result = await store.push();
    expect(result.conflicts).toEqual([]);
    expect(result.pushed.map((p) => p.ref)).toEqual(['heads/main']);
    expect(unclear.swaps).toBeGreaterThanOrEqual(2);
    await expectPublished(upper, remote, mine);
    await store.close();
  });

  it('landed, resolveOutcome found under a wrapper: push settles through it and reports pushed', async () => {
    let resolving!: ResolvingSwaps;
    const { upper, remote, store, mine } = await setup((r) => new ForwardingStore((resolving = new ResolvingSwaps(r, 'lands'))));
    const result = await store.push();
    expect(result.conflicts).toEqual([]);
    expect(result.pushed.map((p) => p.ref)).toEqual(['heads/main']);
    expect(resolving.resolved.map((a) => a.next)).toEqual([mine.toString()]);
    await expectPublished(upper, remote, mine);
    await store.close();
  });

  it.each([['without resolveOutcome', UnclearSwaps] as const, ['with resolveOutcome', ResolvingSwaps] as const])(
    'did not land (%s): push makes the write and reports it pushed',
    async (_, Wrapper) => {
      const { upper, remote, store, mine } = await setup((r) => new Wrapper(r, 'lost'));
      const result = await store.push();
      expect(result.conflicts).toEqual([]);
      expect(result.pushed.map((p) => p.ref)).toEqual(['heads/main']);
      await expectPublished(upper, remote, mine);
      await store.close();
    },
  );

  it.each([['without resolveOutcome', UnclearSwaps] as const, ['with resolveOutcome', ResolvingSwaps] as const])(
    'another writer took the ref (%s): a conflict naming its value; the remote keeps it',
    async (_, Wrapper) => {
      const other = hashBytes(bytes('theirs'));
      const { upper, remote, store } = await setup((r) => new Wrapper(r, 'taken', 1, other));
      const result = await store.push();
      expect(result.pushed).toEqual([]);
      expect(result.conflicts.map((c) => [c.ref, c.remote?.toString()])).toEqual([['heads/main', other.toString()]]);
      expect((await remote.getRef('heads/main'))?.hash.equals(other)).toBe(true);
      expect(await upper.getRef(TRACKING_PREFIX + 'heads/main')).toBeUndefined();
      await store.close();
    },
  );

  it('still unknown after every settling attempt: push throws OutcomeUnknownError, keeps the note, and the next push records the landed write', async () => {
    let unclear!: UnclearSwaps;
    const { upper, remote, store, mine } = await setup((r) => (unclear = new UnclearSwaps(r, 'lands', 100)));
    await expect(store.push()).rejects.toBeInstanceOf(OutcomeUnknownError);
    expect((await upper.getRef(PUSHING_PREFIX + 'heads/main'))?.hash.equals(mine)).toBe(true);
    expect((await remote.getRef('heads/main'))?.hash.equals(mine)).toBe(true);
    unclear.failures = 0;
    const again = await store.push();
    expect(again.conflicts).toEqual([]);
    await expectPublished(upper, remote, mine);
    await store.close();
  }, 30_000);
});
