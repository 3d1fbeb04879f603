/** Memory backend: put/get operations per second, beside a plain Map as the floor. */
import { memoryStore } from '../src/index.js';
import { opsPerSecond, printTable } from './table.js';

export async function run(): Promise<void> {
  const store = memoryStore();
  const payloads = Array.from({ length: 10_000 }, (_, i) => new TextEncoder().encode(`object number ${i} `.repeat(8)));
  let i = 0;
  const putOps = await opsPerSecond(() => store.put(payloads[i++ % payloads.length]!));
  const hashes = await store.putMany(payloads);
  let j = 0;
  const getOps = await opsPerSecond(() => store.get(hashes[j++ % hashes.length]!));
  const map = new Map(hashes.map((h, k) => [h.toString(), payloads[k]!]));
  let k = 0;
  const mapOps = await opsPerSecond(() => map.get(hashes[k++ % hashes.length]!.toString()));
  await store.close();
  printTable('Memory backend (about 150-byte objects)', [
    { operation: 'put', 'ops/s': putOps },
    { operation: 'get', 'ops/s': getOps },
    { operation: 'baseline: Map.get by hash text', 'ops/s': mapOps },
  ]);
}
