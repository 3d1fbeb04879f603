import { describe, expect, it } from 'vitest';
import { GroupCommitQueue } from '../../src/internal/group-commit.js';

/** A commit that records its batches and can be held open or made to fail. */
function recorder(fail?: (batch: readonly number[]) => boolean) {
  const batches: number[][] = [];
  let release: () => void = () => {};
  let gate = Promise.resolve();
  return {
    batches,
    hold(): void {
      gate = new Promise<void>((resolve) => (release = resolve));
    },
    release: (): void => release(),
    commit: async (batch: readonly number[]): Promise<string[]> => {
      batches.push([...batch]);
      await gate;
      if (fail?.(batch)) throw new Error(`batch ${batch.join(',')} failed`);
      return batch.map((n) => `ok ${n}`);
    },
  };
}

describe('GroupCommitQueue', () => {
  it('writers arriving while a batch commits share the next batch, and each gets its own result', async () => {
    const r = recorder();
    const queue = new GroupCommitQueue<number, string>({ commit: r.commit });
    r.hold();
    const first = queue.enqueue(1);
    await Promise.resolve();
    const rest = [2, 3, 4, 5].map((n) => queue.enqueue(n));
    expect(queue.pending).toBe(4);
    r.release();
    r.hold();
    await first;
    r.release();
    expect(await Promise.all(rest)).toEqual(['ok 2', 'ok 3', 'ok 4', 'ok 5']);
    expect(r.batches).toEqual([[1], [2, 3, 4, 5]]);
  });

  it('acknowledges in queue order, only after the commit resolved', async () => {
    const r = recorder();
    const queue = new GroupCommitQueue<number, string>({ commit: r.commit });
    r.hold();
    const order: number[] = [];
    const all = [1, 2, 3].map((n) => queue.enqueue(n).then(() => order.push(n)));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(order).toEqual([]);
    r.release();
    await Promise.all(all);
    expect(order).toEqual([1, 2, 3]);
  });

  it('a failed commit rejects every item of its batch with its error; later batches still run', async () => {
    const r = recorder((batch) => batch.includes(2));
    const queue = new GroupCommitQueue<number, string>({ commit: r.commit });
    r.hold();
    const first = queue.enqueue(1);
    await Promise.resolve();
    const doomed = [2, 3].map((n) => queue.enqueue(n));
    r.release();
    await first;
    const settled = await Promise.allSettled(doomed);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(settled.map((s) => (s as PromiseRejectedResult).reason.message)).toEqual(['batch 2,3 failed', 'batch 2,3 failed']);
    expect(await queue.enqueue(4)).toBe('ok 4');
  });

  it('cuts batches at maxBatchBytes (an oversized item goes alone) and flush waits for all of them', async () => {
    const r = recorder();
    const queue = new GroupCommitQueue<number, string>({ commit: r.commit, sizeOf: (n) => n, maxBatchBytes: 10 });
    r.hold();
    const items = [1, 4, 4, 4, 20, 3].map((n) => queue.enqueue(n));
    r.release();
    await queue.flush();
    // The first item starts a batch at once; the rest queue behind it.
    expect(r.batches).toEqual([[1], [4, 4], [4], [20], [3]]);
    expect(await Promise.all(items)).toHaveLength(6);
    expect(queue.pending).toBe(0);
  });
});
