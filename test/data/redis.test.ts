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
