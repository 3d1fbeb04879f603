import { Redis } from 'ioredis';
import { startRedis } from './test/support/redis.ts';
const server = await startRedis();
const plain = new Redis(server.url);
const auto = new Redis(server.url, { enableAutoPipelining: true });
const lua = `local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], string.format('%.0f', n) .. '-0', 'e', ARGV[1])
return n`;
const sha = await plain.script('LOAD', lua) as string;
const N = 3000;
const ev = Buffer.from(JSON.stringify({ i: 1, payload: 'x'.repeat(64) }));
for (let r = 0; r < 3; r++) {
  const res: string[] = [];
  for (const [name, fn] of [
    ['xadd plain', (i: number) => plain.xadd('y', '*', 'event', ev)],
    ['xadd auto', (i: number) => auto.xadd('y2', '*', 'event', ev)],
    ['script plain', (i: number) => plain.evalsha(sha, 2, 'h1', 's1', ev)],
    ['script auto', (i: number) => auto.evalsha(sha, 2, 'h2', 's2', ev)],
  ] as const) {
    const t = performance.now();
    for (let i = 0; i < N; i++) await fn(i);
    res.push(`${name} ${(N / ((performance.now() - t) / 1000)).toFixed(0)}`);
  }
  console.log(res.join(', '));
}
await plain.quit(); await auto.quit(); await server.stop();
