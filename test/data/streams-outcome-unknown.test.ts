/**
 * The generic stream layout on a store whose ref writes can end in
 * OutcomeUnknownError (S3 when an answer is lost): appends and truncation
 * settle the outcome, so every number is used exactly once and an append
 * whose claim landed unseen keeps that number instead of taking a second.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { eventStreams } from '../../src/data/streams.js';
import {
  ForwardingStore,
  memoryStore,
  OutcomeUnknownError,
  parseHash,
  type AbortOptions,
  type CasResult,
  type HashLike,
  type RefWriteAttempt,
  type Store,
} from '../../src/index.js';

/** `landed`: the write is applied, then its answer lost. `lost`: the request is lost before it lands. */
type Loss = 'landed' | 'lost';
/** How the store settles: `resolve` offers resolveOutcome (like S3Store); `retry` recognises the same call again. */
type Settle = 'resolve' | 'retry';

/** Every `every`-th compareAndSwap loses its answer, in the way `loss` says. */
class LosingAnswers extends ForwardingStore {
  readonly #loss: Loss;
  readonly #every: number;
  #calls = 0;
  unknowns = 0;
  /** Writes that landed with their answer lost, by id. */
  readonly #landed = new Set<string>();
  /** For `retry`: the id of an unclear write by its call, so the same call again is recognised. */
  readonly #pending = new Map<string, string>();

  constructor(inner: Store, loss: Loss, every: number) {
    super(inner, { name: 'losing answers' });
    this.#loss = loss;
    this.#every = every;
  }

  override async compareAndSwap(name: string, expected: HashLike | null, next: HashLike | null, options?: AbortOptions): Promise<CasResult> {
    const call = `${name} ${String(expected)} ${String(next)}`;
    const pendingId = this.#pending.get(call);
    if (pendingId !== undefined) {
      this.#pending.delete(call);
      return this.#settle({ ref: name, writeId: pendingId, next: next === null ? null : String(next), expected: expected === null ? null : String(expected), bases: [] });
    }
    this.#calls++;
    if (this.#calls % this.#every !== 0) return super.compareAndSwap(name, expected, next, options);
    const attempt: RefWriteAttempt = {
      ref: name,
      writeId: randomUUID(),
      next: next === null ? null : String(next),
      expected: expected === null ? null : String(expected),
      bases: [],
    };
    if (this.#loss === 'landed') {
      const result = await super.compareAndSwap(name, expected, next, options);
      // A write that did not land has a definite answer: a conflict is not lost here.
      if (!result.ok) return result;
      this.#landed.add(attempt.writeId);
    }
    this.unknowns++;
    this.#pending.set(call, attempt.writeId);
    throw new OutcomeUnknownError(`compare-and-swap of ${name}: the answer was lost`, attempt);
  }

  /** Lands an unclear write if it has not landed and the ref still holds what it expected; reports it as ours if it landed. */
  async #settle(attempt: RefWriteAttempt): Promise<CasResult> {
    if (this.#landed.has(attempt.writeId)) {
      this.#landed.delete(attempt.writeId);
      return { ok: true, current: await super.getRef(attempt.ref) };
    }
    const expected = attempt.expected == null ? null : parseHash(attempt.expected);
    const next = attempt.next === null ? null : parseHash(attempt.next);
    return super.compareAndSwap(attempt.ref, expected, next);
  }

  resolveOutcomeFor(attempt: RefWriteAttempt): Promise<CasResult> {
    for (const [call, id] of this.#pending) if (id === attempt.writeId) this.#pending.delete(call);
    return this.#settle(attempt);
  }
}

/** The same store with resolveOutcome, as S3Store has it. */
class ResolvingLosingAnswers extends LosingAnswers {
  resolveOutcome(attempt: RefWriteAttempt): Promise<CasResult> {
    return this.resolveOutcomeFor(attempt);
  }
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

const WRITERS = 4;
const PER_WRITER = 15;

describe.each<[Loss, Settle]>([
  ['landed', 'resolve'],
  ['lost', 'resolve'],
  ['landed', 'retry'],
  ['lost', 'retry'],
])('generic streams when ref answers are lost (%s, settled by %s)', (loss, settle) => {
  const open = (every: number): LosingAnswers =>
    settle === 'resolve' ? new ResolvingLosingAnswers(memoryStore(), loss, every) : new LosingAnswers(memoryStore(), loss, every);

  it('appends from several writers number the events 1..N, each exactly once', async () => {
    const store = open(3);
    const writers = Array.from({ length: WRITERS }, () => eventStreams(store, { native: false }));
    const returned = await Promise.all(
      writers.map(async (streams, w) => {
        const seqs: number[] = [];
        for (let i = 0; i < PER_WRITER; i++) seqs.push(await streams.append('orders', { w, i }));
        return seqs;
      }),
    );
    const total = WRITERS * PER_WRITER;
    expect(store.unknowns).toBeGreaterThan(5);
    // Every append returned its own number, and together they are 1..N.
    expect(returned.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    const reader = eventStreams(store, { native: false });
    expect(await reader.lastSeq('orders')).toBe(total);
    const events = await collect(reader.read('orders'));
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // Each event is stored once, under the number its append returned.
    const byEvent = new Map(events.map((e) => [JSON.stringify(e.event), e.seq]));
    expect(byEvent.size).toBe(total);
    returned.forEach((seqs, w) => seqs.forEach((seq, i) => expect(byEvent.get(JSON.stringify({ w, i }))).toBe(seq)));
  });

  it('truncation settles its floor and deletes; later appends go on from N + 1', async () => {
    const store = open(2);
    const streams = eventStreams(store, { native: false });
    for (let i = 1; i <= 12; i++) expect(await streams.append('audit', { i })).toBe(i);
    expect(await streams.truncate('audit', 8)).toBe(8);
    expect(await streams.append('audit', { i: 13 })).toBe(13);
    expect(await streams.append('audit', { i: 14 })).toBe(14);
    expect(store.unknowns).toBeGreaterThan(3);
    const events = await collect(streams.read('audit'));
    expect(events.map((e) => [e.seq, (e.event as { i: number }).i])).toEqual([
      [9, 9],
      [10, 10],
      [11, 11],
      [12, 12],
      [13, 13],
      [14, 14],
    ]);
  });
});
