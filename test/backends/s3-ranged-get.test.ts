/**
 * getStream's range scheduler on its own, against a fake server: every byte
 * once and in order, never more ranges in flight than asked, whatever the
 * number in flight (one included) and however the answers are delayed.
 */
import { describe, expect, it } from 'vitest';
import { rangedChunks, RangeMismatchError, type FetchRange } from '../../src/backends/s3/ranged-get.js';

const object = Uint8Array.from({ length: 95 }, (_, i) => i);

function fakeServer(delays: (start: number) => number): { fetch: FetchRange; peak: () => number } {
  let inFlight = 0;
  let peak = 0;
  const fetch: FetchRange = async (start, end) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((resolve) => setTimeout(resolve, delays(start)));
    inFlight--;
    const last = Math.min(end, object.length - 1);
    return { chunks: [object.slice(start, last + 1)], contentRange: `bytes ${start}-${last}/${object.length}` };
  };
  return { fetch, peak: () => peak };
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<number[]> {
  const out: number[] = [];
  for await (const chunk of chunks) out.push(...chunk);
  return out;
}

describe('ranged getStream scheduling', () => {
  for (const inFlight of [1, 2, 4]) {
    it(`${inFlight} range(s) in flight: all bytes once, in order, never more than ${inFlight} requests at a time`, async () => {
      // Later ranges answer first, so order comes from the scheduler, not from arrival.
      const server = fakeServer((start) => 10 - (start % 40) / 4);
      expect(await collect(rangedChunks(server.fetch, 10, inFlight, undefined))).toEqual([...object]);
      expect(server.peak()).toBeLessThanOrEqual(inFlight);
      if (inFlight > 1) expect(server.peak()).toBe(inFlight);
    });
  }

  it('a range answered with the wrong length fails the read', async () => {
    const fetch: FetchRange = async (start, end) => ({
      chunks: [object.slice(start, start === 0 ? end + 1 : end)],
      contentRange: `bytes ${start}-${start === 0 ? end : end - 1}/${object.length}`,
    });
    await expect(collect(rangedChunks(fetch, 10, 2, undefined))).rejects.toBeInstanceOf(RangeMismatchError);
  });
});
