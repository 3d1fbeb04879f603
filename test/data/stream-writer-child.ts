/**
 * A child process for the cross-process stream test: appends `count`
 * events to the stream `multi` of the disk store in `dir`, 8 at a time,
 * then prints the numbers it got (in the order of its events) as one JSON
 * line and exits. Usage: stream-writer-child.ts <dir> <count> <writer id>
 */
import { openDiskStore } from '../../src/backends/disk.js';
import { eventStreams } from '../../src/data/streams.js';

const [dir, countText, id] = process.argv.slice(2) as [string, string, string];
const store = await openDiskStore(dir);
const streams = eventStreams(store);
const count = Number(countText);
const got: number[] = new Array<number>(count);
let next = 0;
await Promise.all(
  Array.from({ length: 8 }, async () => {
    for (let i = next++; i < count; i = next++) got[i] = await streams.append('multi', { writer: id, i });
  }),
);
await store.close();
process.stdout.write(`${JSON.stringify(got)}\n`);
