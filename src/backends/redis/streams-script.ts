/**
 * The first Redis stream layout (`redis-stream`), kept for the streams
 * created in it; new streams take `redis-xadd` (`streams.ts`), whose append
 * is one plain XADD instead of a script (about half the time per append).
 *
 * Per stream: a Redis hash with the high-water mark and floor
 * (`<keyPrefix>sh:<stream>`) and a Redis stream of the events
 * (`<keyPrefix>sx:<stream>`) whose entry ids are `<number>-0`. An append is
 * one script, which Redis runs atomically: `HINCRBY` of the mark claims the
 * next number and `XADD` stores the event under it. Numbers are never
 * reused: the mark only goes up, and Redis refuses an entry id at or below
 * the stream's last one (so a mark lost behind Cairn's back makes appends
 * fail instead of reusing numbers). Truncation raises the floor and trims
 * the entries below it (`XTRIM MINID`, Redis 6.2 or newer).
 *
 * @module
 */
import { raceAbort, type AbortOptions } from '../../abort.js';
import type { NativeStreamEvent, NativeStreams } from '../../data/streams/native.js';
import { parseCount, streamScript, type StreamClient } from './stream-client.js';

/** The layout name recorded in the marker of each stream of this layout. */
export const REDIS_SCRIPT_STREAM_LAYOUT = 'redis-stream';

/** KEYS: head hash, events stream. ARGV: event bytes. Returns the event's number. */
const APPEND = streamScript(`
local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], string.format('%.0f', n) .. '-0', 'e', ARGV[1])
return n
`);

/** KEYS: head hash, events stream. ARGV: upTo (a whole number, or "inf"). Returns the floor. */
const TRUNCATE = streamScript(`
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local floor = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
local target = seq
if ARGV[1] ~= 'inf' then target = math.min(tonumber(ARGV[1]), seq) end
if target > floor then
  floor = target
  redis.call('HSET', KEYS[1], 'floor', string.format('%.0f', floor))
end
if floor > 0 then redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', floor + 1) .. '-0') end
return floor
`);

const idOf = (seq: number): string => `${seq}-0`;

function seqOf(id: string): number | undefined {
  const match = /^(\d+)-0$/.exec(id);
  return match === null ? undefined : Number(match[1]);
}

/** The `redis-stream` streams of one open store. */
export class ScriptRedisStreams implements NativeStreams {
  readonly layout = REDIS_SCRIPT_STREAM_LAYOUT;
  readonly writable = true;
  readonly #client: StreamClient;

  constructor(client: StreamClient) {
    this.#client = client;
  }

  async append(stream: string, event: Uint8Array, options?: AbortOptions): Promise<number> {
    this.#client.config.check(options);
    // Not raced against the signal: once sent, the script runs, and its number is the caller's.
    const reply = await this.#client.run('cannot append to a stream', stream, () =>
      this.#client.eval(APPEND, stream, [Buffer.from(event.buffer, event.byteOffset, event.length)]),
    );
    return Number(reply);
  }

  async lastSeq(stream: string, options?: AbortOptions): Promise<number> {
    this.#client.config.check(options);
    const seq = await this.#client.run('cannot read a stream', stream, () =>
      raceAbort(this.#client.redis.hget(this.#client.head(stream), 'seq'), options?.signal),
    );
    return parseCount(seq, stream);
  }

  async *read(stream: string, from: number, limit: number, options?: AbortOptions): AsyncIterable<NativeStreamEvent> {
    this.#client.config.check(options);
    const [seqText, floorText] = await this.#client.run('cannot read a stream', stream, () =>
      raceAbort(this.#client.redis.hmget(this.#client.head(stream), 'seq', 'floor'), options?.signal),
    );
    const last = parseCount(seqText, stream);
    const next = Math.max(from, parseCount(floorText, stream) + 1);
    yield* this.#client.entries(stream, { next, last, limit }, idOf, seqOf, options);
  }

  async truncate(stream: string, upTo: number, options?: AbortOptions): Promise<number> {
    this.#client.config.check(options);
    const reply = await this.#client.run('cannot truncate a stream', stream, () =>
      raceAbort(this.#client.eval(TRUNCATE, stream, [upTo === Number.POSITIVE_INFINITY ? 'inf' : String(upTo)]), options?.signal),
    );
    return Number(reply);
  }
}
