/**
 * The ref body and the lost-response verdict, without a server: how a writer
 * whose response was lost decides whether its write landed.
 */
import { describe, expect, it } from 'vitest';
import { CorruptStoreError, hashBytes } from '../../src/index.js';
import {
  ABSENT,
  ABSENT_STATE,
  decodeRefBody,
  encodeRefBody,
  HISTORY_LENGTH,
  judgeWrite,
  nextRefBody,
  type RefState,
} from '../../src/backends/s3/ref-body.js';

const hash = hashBytes(new TextEncoder().encode('ref body'));

/** Applies writes with the given ids in order, starting from an absent key. */
function history(...ids: string[]): RefState {
  let state: RefState = ABSENT_STATE;
  for (const id of ids) state = { etag: `"${id}"`, body: nextRefBody(id, hash, state) };
  return state;
}

describe('S3 ref body', () => {
  it('round-trips values and tombstones', () => {
    const live = nextRefBody('w1', hash, ABSENT_STATE);
    expect(decodeRefBody(encodeRefBody(live), 'k')).toEqual({ id: 'w1', hash, history: [ABSENT] });
    const tomb = nextRefBody('w2', undefined, { etag: '"1"', body: live });
    expect(decodeRefBody(encodeRefBody(tomb), 'k')).toEqual({ id: 'w2', hash: undefined, history: ['w1', ABSENT] });
  });

  it('keeps a bounded history', () => {
    const ids = Array.from({ length: HISTORY_LENGTH + 10 }, (_, i) => `w${i}`);
    const state = history(...ids);
    expect(state.body!.history).toHaveLength(HISTORY_LENGTH);
    expect(state.body!.history[0]).toBe(ids.at(-2));
  });

  it('rejects bodies that are not Cairn refs with CorruptStoreError', () => {
    for (const text of ['not json', '{}', '{"v":1,"id":"x","h":[],"hash":"nope"}', '{"v":2,"id":"x","h":[]}']) {
      expect(() => decodeRefBody(text, 'refs/x')).toThrow(CorruptStoreError);
    }
  });

  it('judges a write applied when its id is current or in the history', () => {
    expect(judgeWrite(history('a', 'mine'), 'mine', new Set(['a']))).toBe('applied');
    expect(judgeWrite(history('a', 'mine', 'b', 'c'), 'mine', new Set(['a']))).toBe('applied');
  });

  it('judges a write not applied when its basis is current or followed by another write', () => {
    expect(judgeWrite(history('a'), 'mine', new Set(['a']))).toBe('not-applied');
    expect(judgeWrite(history('a', 'b'), 'mine', new Set(['a']))).toBe('not-applied');
    expect(judgeWrite(ABSENT_STATE, 'mine', new Set([ABSENT]))).toBe('not-applied');
    expect(judgeWrite(history('b'), 'mine', new Set([ABSENT]))).toBe('not-applied');
  });

  it('judges the outcome unknown when the basis fell off the history', () => {
    const ids = Array.from({ length: HISTORY_LENGTH + 2 }, (_, i) => `w${i}`);
    expect(judgeWrite(history(...ids), 'mine', new Set(['w0']))).toBe('unknown');
  });
});
