/**
 * What the Redis stream layouts share: their own connection, key names,
 * error mapping, scripts with an EVAL fallback, and paged reading of a
 * Redis stream's entries.
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
import type { NativeStreamEvent } from '../../data/streams/native.js';
import { mapRedisError } from './errors.js';
import type { LuaScript } from './scripts.js';

/** Entries per XRANGE round trip while reading. */
const READ_PAGE = 256;

/** A script and its SHA-1, for EVALSHA with an EVAL fallback. */
export function streamScript(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** What the stream layouts need of their store. */
export interface RedisStreamsConfig {
  readonly keyPrefix: string;
  /** `host:port`, for error messages. */
  readonly server: string;
  /** Throws if the store is closed or the signal fired. */
  readonly check: (options: AbortOptions | undefined) => void;
}

/** One store's connection for streams, shared by its layouts. */
export class StreamClient {
  readonly config: RedisStreamsConfig;
  readonly #store: Redis;
  #connection: Redis | undefined;

  /** `client` is the store's connection; it is duplicated on first use. */
  constructor(client: Redis, config: RedisStreamsConfig) {
    this.#store = client;
    this.config = config;
  }

  get redis(): Redis {
    if (this.#connection === undefined) {
      this.#connection = this.#store.duplicate({ enableAutoPipelining: false });
      // Failures reach every pending call; without a listener ioredis would log them.
      this.#connection.on('error', () => undefined);
    }
    return this.#connection;
  }

  /** Closes the connection, if one was made. */
  async close(): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    try {
      await connection.quit();
    } catch {
      connection.disconnect();
    }
  }

  /** The key of a stream's head hash (its mark, floor or birth). */
  head(stream: string): string {
    return `${this.config.keyPrefix}sh:${stream}`;
  }

  /** The key of a stream's Redis stream of events. */
  events(stream: string): string {
    return `${this.config.keyPrefix}sx:${stream}`;
  }

  /** Runs one call, mapping its failure onto the Cairn errors. */
  async run<T>(what: string, stream: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (cause) {
      throw mapRedisError(cause, what, this.config.server, stream);
    }
  }

  /** Runs `lua` with KEYS head hash, events stream. */
  async eval(lua: LuaScript, stream: string, args: Array<string | Buffer>): Promise<unknown> {
    const keys = [this.head(stream), this.events(stream)];
    try {
      return await this.redis.evalsha(lua.sha, 2, ...keys, ...args);
    } catch (error) {
      // The server's script cache is empty after a restart or SCRIPT FLUSH.
      if (!String((error as Error | undefined)?.message).startsWith('NOSCRIPT')) throw error;
      return this.redis.eval(lua.lua, 2, ...keys, ...args);
    }
  }

  /**
   * The entries numbered `next`..`last`, at most `limit`: `id` writes a
   * number as an entry id, `seqOf` reads one back (undefined: not Cairn's).
   */
  async *entries(
    stream: string,
    range: { next: number; last: number; limit: number },
    id: (seq: number) => string,
    seqOf: (id: string) => number | undefined,
    options: AbortOptions | undefined,
  ): AsyncIterable<NativeStreamEvent> {
    let { next, limit: left } = range;
    while (left > 0 && next <= range.last) {
      throwIfAborted(options?.signal);
      const count = Math.min(READ_PAGE, left);
      const entries = await this.run('cannot read a stream', stream, () =>
        raceAbort(this.redis.xrangeBuffer(this.events(stream), id(next), id(range.last), 'COUNT', count), options?.signal),
      );
      if (entries.length === 0) return;
      for (const [entryId, fields] of entries) {
        const seq = seqOf(entryId.toString('latin1'));
        const bytes = fields[0]?.toString('latin1') === 'e' ? fields[1] : undefined;
        if (seq === undefined || !Number.isSafeInteger(seq) || seq < next || bytes === undefined) {
          throw new CorruptStoreError(`stream "${stream}" holds an entry ${entryId.toString('latin1').slice(0, 40)} that Cairn did not write`, {
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
}

/** A count Redis returned (a mark or floor): a whole number >= 0, absent = 0. */
export function parseCount(text: string | number | null | undefined, stream: string): number {
  if (text === null || text === undefined) return 0;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new CorruptStoreError(`the head of stream "${stream}" holds ${JSON.stringify(String(text).slice(0, 40))}, not a count`, { key: stream });
  }
  return n;
}
