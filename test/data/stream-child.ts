/**
 * A child process for the stream crash test: appends to one stream until
 * killed, printing each acknowledged append as a JSON line; writer 0 also
 * truncates now and then. Usage: stream-child.ts <disk|redis> <dir|url> <writer id>
 */
import { openDiskStore } from '../../src/backends/disk.js';
import { openRedisStore } from '../../src/backends/redis.js';
import { eventStreams } from '../../src/data/streams.js';

const [kind, where, id] = process.argv.slice(2) as [string, string, string];
const store = kind === 'disk' ? await openDiskStore(where) : await openRedisStore({ url: where, keyPrefix: 'crash:' });
const streams = eventStreams(store);
const writer = Number(id);
for (let i = 0; ; i++) {
  const event = { writer, pid: process.pid, i };
  const seq = await streams.append('crash', event);
  process.stdout.write(`${JSON.stringify({ seq, event })}\n`);
  if (writer === 0 && i % 15 === 14) {
    // Announced first: a truncation cut short by the kill may still have raised the floor.
    process.stdout.write(`${JSON.stringify({ floor: seq - 5 })}\n`);
    await streams.truncate('crash', seq - 5);
  }
}
