import { Redis } from 'ioredis';
import { openRedisStore } from './src/backends/redis.ts';
import { eventStreams } from './src/data/streams.ts';
import { startRedis } from './test/support/redis.ts';
const server = await startRedis();
const store = await openRedisStore({ url: server.url, keyPrefix: 'b:' });
const raw = new Redis(server.url);
const s = eventStreams(store);
await s.append('x', 1);
const N = 2000;
for (let r = 0; r < 3; r++) {
  let t = performance.now();
  for (let i = 0; i < N; i++) await s.append('x', { i, payload: 'x'.repeat(64) });
  const a = N / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < N; i++) await raw.xadd('y', '*', 'event', JSON.stringify({ i, payload: 'x'.repeat(64) }));
  const b = N / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < N; i++) await store[Symbol.for('cairn.nativeStreams')].append('streams/x', new TextEncoder().encode(JSON.stringify({ i })));
  const c = N / ((performance.now() - t) / 1000);
  console.log(`native ${a.toFixed(0)}/s, xadd ${b.toFixed(0)}/s, backend-only ${c.toFixed(0)}/s`);
}
await raw.quit(); await store.close(); await server.stop();
