/** The two-writer race shared by the layered tests: no lost update, the loser sees the winner's value. */
import { expect } from 'vitest';
import type { LayeredStore } from '../../src/layers/layered.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Each store increments a counter ref `rounds` times by read, put, set,
 * push; on a conflict it checks the conflict carries the winner's value
 * (the remote's, not its own), drops its change, pulls and tries again.
 * Returns the number of conflicts seen.
 */
export async function raceIncrements(stores: readonly LayeredStore[], rounds: number): Promise<number> {
  let conflicts = 0;
  const increment = async (store: LayeredStore, who: number): Promise<void> => {
    for (;;) {
      const current = await store.getRef('counter');
      const value = current === undefined ? 0 : Number(decoder.decode(await store.get(current.hash)).split(' ')[0]);
      // Who wrote it is part of the value: two writers never produce the same object by chance.
      const next = await store.put(encoder.encode(`${value + 1} by ${who}`));
      await store.setRef('counter', next);
      const result = await store.push();
      if (result.conflicts.length === 0) {
        expect(result.pushed).toEqual([{ ref: 'counter', from: current?.hash, to: next }]);
        return;
      }
      conflicts++;
      const [conflict] = result.conflicts;
      expect(conflict!.local?.equals(next)).toBe(true);
      expect(conflict!.remote).toBeDefined();
      expect(conflict!.remote!.equals(next)).toBe(false);
      // The winner's value: written by the other writer.
      expect(decoder.decode(await store.get(conflict!.remote!)).endsWith(` by ${who}`)).toBe(false);
      // Drop the local change (back to the last synced value), take the winner's, try again on top of it.
      if (conflict!.base === undefined) await store.deleteRef('counter');
      else await store.setRef('counter', conflict!.base);
      const pulled = await store.pull();
      expect(pulled.diverged).toEqual([]);
    }
  };
  await Promise.all(
    stores.map(async (store, who) => {
      for (let i = 0; i < rounds; i++) await increment(store, who);
    }),
  );
  return conflicts;
}

/** The counter's value as the lower store holds it. */
export function counterValue(bytes: Uint8Array): number {
  return Number(decoder.decode(bytes).split(' ')[0]);
}
