/**
 * The Redis store's native streams (layout `redis-xadd`): per stream, a
 * Redis stream of the events (`<keyPrefix>sx:<stream>`) whose entry ids are
 * `0-<number>`, and a Redis hash (`<keyPrefix>sh:<stream>`) with the floor
 * and a `born` flag.
 *
 * An append is one plain command, so one round trip and no script:
 * `XADD <key> NOMKSTREAM 0-* ...`. Redis gives the entry the id after the
 * stream's last generated one, atomically, so no two appends get one
 * number, whatever the clients. Numbers are never reused: a stream's last
 * generated id survives trimming and deletion of entries, and only goes
 * up. `NOMKSTREAM` makes the command fail rather than create the stream;
 * then a script does the first append, which records `born`, so a stream
 * whose events were deleted behind Cairn's back (the only way its numbering
 * could restart) makes appends fail instead of reusing numbers. The script
 * also serves servers older than 7.0 (which lack `0-*`), finding the next
 * number itself. Truncation is one script: it raises the floor and trims
 * the entries below it (`XTRIM MINID`, Redis 6.2 or newer).
 *
 * Streams made in the older `redis-stream` layout (a script per append)
 * keep it: see `streams-script.ts`, offered as an older layout.
 *
 * @module
 */
import type { Redis } from 'ioredis';
import { raceAbort, type AbortOptions } from '../../abort.js';
import { CorruptStoreError } from '../../errors.js';
import type { NativeStreamEvent, NativeStreams } from '../../data/streams/native.js';
import { mapRedisError } from './errors.js';
import { ScriptRedisStreams } from './streams-script.js';
import { StreamClient, parseCount, streamScript, type RedisStreamsConfig } from './stream-client.js';

export type { RedisStreamsConfig } from './stream-client.js';

/** The layout name recorded in the marker of each Redis-native stream. */
export const REDIS_STREAM_LAYOUT = 'redis-xadd';

/** The reply word of a script that found a stream's events gone. */
const LOST = 'CAIRN_LOST';

/**
 * Lua: `last(key)` is the number of the stream's last generated entry, 0
 * for a stream never made; raises for a stream that was made (KEYS[1] says
 * `born`) but is gone, or holds ids Cairn did not write.
 */
const LAST = `
local function last(key)
  if redis.call('EXISTS', key) == 0 then
    if redis.call('HEXISTS', KEYS[1], 'born') == 1 then error({err = '${LOST}'}) end
    return 0
  end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local n = string.match(info[i + 1], '^0%-(%d+)$')
      if n == nil then error({err = 'CAIRN_FOREIGN ' .. info[i + 1]}) end
      return tonumber(n)
    end
  end
  error({err = 'CAIRN_FOREIGN no last-generated-id'})
end
`;

/** KEYS: head hash, events stream. ARGV: event bytes. The first append (and every one before Redis 7.0). Returns the number. */
const APPEND = streamScript(`${LAST}
local n = last(KEYS[2]) + 1
redis.call('HSET', KEYS[1], 'born', '1')
redis.call('XADD', KEYS[2], '0-' .. string.format('%.0f', n), 'e', ARGV[1])
return n
`);

/** KEYS: head hash, events stream. Returns {last number, floor}. */
const STATE = streamScript(`${LAST}
return {last(KEYS[2]), tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')}
`);

/** KEYS: head hash, events stream. ARGV: upTo (a whole number, or "inf"). Returns the floor. */
const TRUNCATE = streamScript(`${LAST}
local seq = last(KEYS[2])
local floor = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
local target = seq
if ARGV[1] ~= 'inf' then target = math.min(tonumber(ARGV[1]), seq) end
if target > floor then
  floor = target
  redis.call('HSET', KEYS[1], 'floor', string.format('%.0f', floor))
end
if floor > 0 then redis.call('XTRIM', KEYS[2], 'MINID', '0-' .. string.format('%.0f', floor + 1)) end
return floor
`);

const idOf = (seq: number): string => `0-${seq}`;

function seqOf(id: string): number | undefined {
  return id.startsWith('0-') && id.length > 2 ? Number(id.slice(2)) : undefined;
}

/** The native streams of one open {@link RedisStore}. */
export class RedisStreams implements NativeStreams {
  readonly layout = REDIS_STREAM_LAYOUT;
  readonly writable = true;
  /** Streams made in the first Redis layout keep it. */
  readonly older: readonly NativeStreams[];
  readonly #client: StreamClient;
  /** False once the server refused `0-*` (before 7.0): every append runs the script. */
  #autoIds = true;

  /** `client` is the store's connection; streams duplicate it on first use. */
  constructor(client: Redis, config: RedisStreamsConfig) {
    this.#client = new StreamClient(client, config);
    this.older = [new ScriptRedisStreams(this.#client)];
  }

  /** Closes the streams' connection, if one was made. */
  close(): Promise<void> {
    return this.#client.close();
  }

  async append(stream: string, event: Uint8Array, options?: AbortOptions): Promise<number> {
    this.#client.config.check(options);
    const bytes = Buffer.from(event.buffer, event.byteOffset, event.length);
    // Not raced against the signal: once sent, the command runs, and its number is the caller's.
    if (this.#autoIds) {
      const id = await this.#add(stream, bytes);
      if (id !== null) {
        const seq = seqOf(id);
        if (seq === undefined || !Number.isSafeInteger(seq)) throw foreign(stream, id);
        return seq;
      }
    }
    const reply = await this.#client.run('cannot append to a stream', stream, () => this.#script(APPEND, stream, [bytes]));
    return Number(reply);
  }

  async lastSeq(stream: string, options?: AbortOptions): Promise<number> {
    this.#client.config.check(options);
    return (await this.#state(stream, options)).last;
  }

  async *read(stream: string, from: number, limit: number, options?: AbortOptions): AsyncIterable<NativeStreamEvent> {
    this.#client.config.check(options);
    const { last, floor } = await this.#state(stream, options);
    yield* this.#client.entries(stream, { next: Math.max(from, floor + 1), last, limit }, idOf, seqOf, options);
  }

  async truncate(stream: string, upTo: number, options?: AbortOptions): Promise<number> {
    this.#client.config.check(options);
    const reply = await this.#client.run('cannot truncate a stream', stream, () =>
      raceAbort(this.#script(TRUNCATE, stream, [upTo === Number.POSITIVE_INFINITY ? 'inf' : String(upTo)]), options?.signal),
    );
    return Number(reply);
  }

  /** The fast append: `XADD NOMKSTREAM 0-*`; null when the stream does not exist yet (or `0-*` is not understood). */
  async #add(stream: string, bytes: Buffer): Promise<string | null> {
    try {
      return await this.#client.redis.xadd(this.#client.events(stream), 'NOMKSTREAM', '0-*', 'e', bytes);
    } catch (error) {
      // Redis before 7.0 refuses the id; nothing was written, and the script does the same job.
      if (!/invalid stream id/i.test(String((error as Error | undefined)?.message))) {
        throw mapRedisError(error, 'cannot append to a stream', this.#client.config.server, stream);
      }
      this.#autoIds = false;
      return null;
    }
  }

  async #state(stream: string, options: AbortOptions | undefined): Promise<{ last: number; floor: number }> {
    const reply = await this.#client.run('cannot read a stream', stream, () => raceAbort(this.#script(STATE, stream, []), options?.signal));
    const [last, floor] = Array.isArray(reply) ? (reply as unknown[]) : [];
    return { last: parseCount(last as number | undefined, stream), floor: parseCount(floor as number | undefined, stream) };
  }

  /** Runs a script, turning its own failures into {@link CorruptStoreError}s. */
  async #script(lua: Parameters<StreamClient['eval']>[0], stream: string, args: Array<string | Buffer>): Promise<unknown> {
    try {
      return await this.#client.eval(lua, stream, args);
    } catch (error) {
      const message = String((error as Error | undefined)?.message);
      if (message.startsWith(LOST)) {
        throw new CorruptStoreError(
          `the events of stream "${stream}" are gone from Redis though it had appends (deleted behind Cairn's back?); ` +
            'refusing to number it from 1 again: restore the Redis data, or use a new stream name',
          { key: stream },
        );
      }
      if (message.startsWith('CAIRN_FOREIGN')) throw foreign(stream, message.slice('CAIRN_FOREIGN '.length));
      throw error;
    }
  }
}

function foreign(stream: string, id: string): CorruptStoreError {
  return new CorruptStoreError(`stream "${stream}" holds an entry ${id.slice(0, 40)} that Cairn did not write`, { key: stream });
}
