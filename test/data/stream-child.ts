/**
 * A child process for the stream crash test: appends to one stream until
 * killed, printing each acknowledged append as a JSON line; writer 0 also
 * truncates now and then, noting each truncation first in the file named by
 * CAIRN_CRASH_FLOORS (a synchronous append to a file survives the kill; a
 * line on stdout may still be queued behind a full pipe when it lands). With a concurrency above 1, that many appends are
 * in flight at once (so a kill lands in the middle of a group commit).
 * Usage: stream-child.ts <disk|redis> <dir|url> <writer id> <native|refs> [concurrency]
 */
import { appendFileSync } from 'node:fs';
import { openDiskStore } from '../../src/backends/disk.js';
import { openRedisStore } from '../../src/backends/redis.js';
import { eventStreams } from '../../src/data/streams.js';

const [kind, where, id, layout, inFlight] = process.argv.slice(2) as [string, string, string, string, string | undefined];
const store = kind === 'disk' ? await openDiskStore(where) : await openRedisStore({ url: where, keyPrefix: `crash:${layout}:` });
const streams = eventStreams(store, { native: layout !== 'refs' });
const writer = Number(id);
const concurrency = Number(inFlight ?? 1);
let next = 0;
await Promise.all(
  Array.from({ length: concurrency }, async (_, lane) => {
    for (;;) {
      const i = next++;
      const event = { writer, pid: process.pid, i };
      const seq = await streams.append('crash', event);
      process.stdout.write(`${JSON.stringify({ seq, event })}\n`);
      if (writer === 0 && lane === 0 && i % 15 === 14) {
        // Noted first: a truncation cut short by the kill may still have raised the floor.
        appendFileSync(process.env.CAIRN_CRASH_FLOORS!, `${seq - 5}\n`);
        await streams.truncate('crash', seq - 5);
      }
    }
  }),
);
