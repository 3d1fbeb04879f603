/**
 * A separate process for the lost-answer test: makes COUNT compare-and-swap
 * writes on one ref through a lossy endpoint (CAIRN_S3_ENDPOINT, SDK retries
 * off), and records how each attempt ended. Every value it writes is unique
 * and names the value it replaces ("w<worker> n<write> t<try> prev <hash>"),
 * so the test can rebuild the chain of writes that landed from the final
 * value alone.
 *
 * An attempt that ends in OutcomeUnknownError is settled by retrying: the
 * same compareAndSwap on the same store (odd retries) or
 * store.resolveOutcome(error.attempt) (even retries), until one answers.
 *
 * Prints "ready", waits for a line on stdin, then one JSON line per attempt:
 * { value, outcome: 'ok' | 'conflict' | 'backend-error' | 'unsettled',
 *   unknown: number of OutcomeUnknownErrors before the outcome, via?: 'retry' | 'resolve', message? }
 *
 * Usage: node --import tsx swap-worker.ts <ref> <count> <worker>
 */
import { createInterface } from 'node:readline';
import { BackendError, OutcomeUnknownError, s3Store, type CasResult, type Hash, type RefValue } from '../../../src/index.js';

const [ref = 'chain', countText = '10', worker = '0'] = process.argv.slice(2);
const store = s3Store({
  bucket: process.env.CAIRN_S3_BUCKET!,
  prefix: process.env.CAIRN_S3_PREFIX!,
  endpoint: process.env.CAIRN_S3_ENDPOINT!,
  forcePathStyle: true,
  maxAttempts: 1,
  requestTimeoutMs: 5000,
});
const encoder = new TextEncoder();

process.stdout.write('ready\n');
const lines = createInterface({ input: process.stdin });
await new Promise<void>((resolve) => lines.once('line', () => resolve()));
lines.close();
process.stdin.destroy();

/** Retries a call that only reads or writes content-addressed bytes (safe to repeat) until it answers. */
async function persist<T>(call: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await call();
    } catch (error) {
      // Up to about 30 s: longer than the test's partitions.
      if (!(error instanceof BackendError) || i > 600) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25 + Math.random() * 50));
    }
  }
}

interface Record {
  value: string;
  outcome: 'ok' | 'conflict' | 'backend-error' | 'unsettled';
  unknown: number;
  via?: 'retry' | 'resolve';
  message?: string;
}
const records: Record[] = [];

for (let n = 0; n < Number(countText); n++) {
  for (let t = 0; ; t++) {
    const current: RefValue | undefined = await persist(() => store.getRef(ref));
    const next: Hash = await persist(() => store.put(encoder.encode(`w${worker} n${n} t${t} prev ${current?.hash.toString() ?? 'none'}`)));
    const record: Record = { value: next.toString(), outcome: 'unsettled', unknown: 0 };
    records.push(record);
    let result: CasResult | undefined;
    try {
      result = await store.compareAndSwap(ref, current?.hash ?? null, next);
    } catch (error) {
      if (error instanceof OutcomeUnknownError) {
        let pending: OutcomeUnknownError = error;
        record.unknown++;
        for (let k = 1; result === undefined && k <= 50; k++) {
          record.via = k % 2 === 1 ? 'retry' : 'resolve';
          try {
            result =
              record.via === 'retry'
                ? await store.compareAndSwap(ref, current?.hash ?? null, next)
                : await store.resolveOutcome(pending.attempt);
          } catch (again) {
            if (again instanceof OutcomeUnknownError) {
              pending = again;
              record.unknown++;
            } else if (!(again instanceof BackendError)) throw again;
          }
        }
      } else if (error instanceof BackendError) {
        record.outcome = 'backend-error';
        record.message = error.message.slice(0, 200);
      } else {
        throw error;
      }
    }
    if (result !== undefined) record.outcome = result.ok ? 'ok' : 'conflict';
    if (record.outcome === 'ok') break;
  }
}
await store.close();
for (const record of records) process.stdout.write(`${JSON.stringify(record)}\n`);
process.stdout.write('done\n');
