/**
 * The Redis store's native streams (layout `redis-stream`): per stream, a
 * Redis hash with the high-water mark and floor (`<keyPrefix>sh:<stream>`)
 * and a Redis stream of the events (`<keyPrefix>sx:<stream>`) whose entry
 * ids are `<number>-0`.
 *
 * An append is one script, so one round trip, which Redis runs atomically:
 * `HINCRBY` of the mark claims the next number and `XADD` stores the event
 * under it. No two appends get one number, whatever the clients, and an
 * append either happened completely or not at all. Numbers are never
 * reused: the mark only goes up, and Redis itself refuses an entry id at or
 * below the stream's last one (so a mark lost behind Cairn's back makes
 * appends fail instead of reusing numbers). Truncation is one script too:
 * it raises the floor and trims the entries below it (`XTRIM MINID`, Redis
 * 6.2 or newer).
 *
 * Streams use a connection of their own, made on first use, without the
 * store connection's auto-pipelining: that batches concurrent calls into
 * one write per tick, which a writer awaiting each append pays for in
 * latency (about 2x per append, measured).
 *
 * @module
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { raceAbort, throwIfAborted, type AbortOptions } from '../../abort.js';
import { CorruptStoreError } from '../../errors.js';
import type { NativeStreamEvent, NativeStreams } from '../../data/streams/native.js';
import { mapRedisError } from './errors.js';
import type { LuaScript } from './scripts.js';

/** The layout name recorded in the marker of each Redis-native stream. */
export const REDIS_STREAM_LAYOUT = 'redis-stream';
/** Entries per XRANGE round trip while reading. */
const READ_PAGE = 256;

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** KEYS: head hash, events stream. ARGV: event bytes. Returns the event's number. */
const APPEND = script(`
local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], string.format('%.0f', n) .. '-0', 'e', ARGV[1])
return n
`);

/** KEYS: head hash, events stream. ARGV: upTo (a whole number, or "inf"). Returns the floor. */
const TRUNCATE = script(`
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

/** What {@link RedisStreams} needs of its store. */
export interface RedisStreamsConfig {
  readonly keyPrefix: string;
  /** `host:port`, for error messages. */
  readonly server: string;
  /** Throws if the store is closed or the signal fired. */
  readonly check: (options: AbortOptions | undefined) => void;
}

/** The native streams of one open {@link RedisStore}. */
export class RedisStreams implements NativeStreams {
  readonly layout = REDIS_STREAM_LAYOUT;
  readonly writable = true;
  readonly #store: Redis;
  readonly #config: RedisStreamsConfig;
  #connection: Redis | undefined;

  /** `client` is the store's connection; streams duplicate it on first use. */
  constructor(client: Redis, config: RedisStreamsConfig) {
    this.#store = client;
    this.#config = config;
  }

  /** Closes the streams' connection, if one was made. */
  async close(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    try {
      await connection.quit();
    } catch {
      connection.disconnect();
    }
  }

  get #client(): Redis {
    if (this.#connection === undefined) {
      this.#connection = this.#store.duplicate({ enableAutoPipelining: false });
      // Failures reach every pending call; without a listener ioredis would log them.
      this.#connection.on('error', () => undefined);
    }
    return this.#connection;
  }

  async append(stream: string, event: Uint8Array, options?: AbortOptions): Promise<number> {
    this.#config.check(options);
    // Not raced against the signal: once sent, the script runs, and its number is the caller's.
    const reply = await this.#run('cannot append to a stream', stream, () =>
      this.#eval(APPEND, stream, [Buffer.from(event.buffer, event.byteOffset, event.length)]),
    );
    return Number(reply);
  }

  async lastSeq(stream: string, options?: AbortOptions): Promise<number> {
    this.#config.check(options);
    const seq = await this.#run('cannot read a stream', stream, () => raceAbort(this.#client.hget(this.#head(stream), 'seq'), options?.signal));
    return parseCount(seq, stream);
  }

  async *read(stream: string, from: number, limit: number, options?: AbortOptions): AsyncIterable<NativeStreamEvent> {
    this.#config.check(options);
    const [seqText, floorText] = await this.#run('cannot read a stream', stream, () =>
      raceAbort(this.#client.hmget(this.#head(stream), 'seq', 'floor'), options?.signal),
    );
    const last = parseCount(seqText ?? null, stream);
    let next = Math.max(from, parseCount(floorText ?? null, stream) + 1);
    let left = limit;
    while (left > 0 && next <= last) {
      throwIfAborted(options?.signal);
      const count = Math.min(READ_PAGE, left);
      const entries = await this.#run('cannot read a stream', stream, () =>
        raceAbort(this.#client.xrangeBuffer(this.#events(stream), `${next}-0`, `${last}-0`, 'COUNT', count), options?.signal),
      );
      if (entries.length === 0) return;
      for (const [id, fields] of entries) {
        const seq = Number(id.toString('latin1').split('-', 1)[0]);
        const bytes = fields[0]?.toString('latin1') === 'e' ? fields[1] : undefined;
        if (!Number.isSafeInteger(seq) || seq < next || bytes === undefined) {
          throw new CorruptStoreError(`stream "${stream}" holds an entry ${id.toString('latin1').slice(0, 40)} that Cairn did not write`, {
            key: stream,
          });
        }
        yield { seq, bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) };
        next = seq + 1;
        left--;
      }
      if (entries.length < count) return;
    }
  }

  async truncate(stream: string, upTo: number, options?: AbortOptions): Promise<number> {
    this.#config.check(options);
    const reply = await this.#run('cannot truncate a stream', stream, () =>
      raceAbort(this.#eval(TRUNCATE, stream, [upTo === Number.POSITIVE_INFINITY ? 'inf' : String(upTo)]), options?.signal),
    );
    return Number(reply);
  }

  #head(stream: string): string {
    return `${this.#config.keyPrefix}sh:${stream}`;
  }

  #events(stream: string): string {
    return `${this.#config.keyPrefix}sx:${stream}`;
  }

  async #run<T>(what: string, stream: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw mapRedisError(cause, what, this.#config.server, stream);
    }
  }

  async #eval(lua: LuaScript, stream: string, args: Array<string | Buffer>): Promise<unknown> {
    const keys = [this.#head(stream), this.#events(stream)];
    try {
      return await this.#client.evalsha(lua.sha, 2, ...keys, ...args);
    } catch (error) {
      // The server's script cache is empty after a restart or SCRIPT FLUSH.
      if (!String((error as Error | undefined)?.message).startsWith('NOSCRIPT')) throw error;
      return this.#client.eval(lua.lua, 2, ...keys, ...args);
    }
  }
}

function parseCount(text: string | null, stream: string): number {
  if (text === null) return 0;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new CorruptStoreError(`the head of stream "${stream}" holds ${JSON.stringify(text.slice(0, 40))}, not a count`, { key: stream });
  }
  return n;
}
