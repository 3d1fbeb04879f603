import { afterAll, beforeAll } from 'vitest';
import { startRedis, type RedisServer } from '../support/redis.js';
import { dataSuite } from './suite.js';
import { redisTarget } from './targets.js';

let server: RedisServer;
beforeAll(async () => {
  server = await startRedis();
});
afterAll(async () => {
  await server?.stop();
});

dataSuite(redisTarget(() => server));
// Streams created in the generic layout (as before native streams, or with native: false) keep working on Redis.
dataSuite(redisTarget(() => server, 'refs'), { streamsOnly: true });
