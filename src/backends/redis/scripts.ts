/**
 * The Lua scripts behind Redis ref writes. Redis runs a script atomically,
 * so each ref write (check, version bump, value, sorted name index,
 * notification) is one indivisible step: no other client can see or make a
 * change in between, which is what makes compare-and-swap atomic.
 *
 * Ref values are stored as `"<version> <hash text>"` in one Redis hash;
 * names are mirrored in a sorted set (all scores 0) for sorted, paged
 * listing by prefix; every change is published on the ref's channel with
 * the new value (`""` once deleted).
 *
 * KEYS: [1] the values hash, [2] the names sorted set, [3] the version counter.
 *
 * @module
 */
import { createHash } from 'node:crypto';

/** A script and its SHA-1, for EVALSHA with an EVAL fallback. */
export interface LuaScript {
  readonly lua: string;
  readonly sha: string;
}

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** ARGV: name, hash text, channel. Returns the new value. */
export const SET_REF = script(`
local version = redis.call('INCR', KEYS[3])
local value = version .. ' ' .. ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('PUBLISH', ARGV[3], value)
return value
`);

/** ARGV: name, channel. Returns 1 if a ref was deleted. */
export const DELETE_REF = script(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('PUBLISH', ARGV[2], '')
  return 1
end
return 0
`);

/**
 * ARGV: name, expected hash text ("" = must be absent), next hash text
 * ("" = delete), channel. Returns {1, new value or ""} or {0, current value
 * or ""}. The expected value is compared with the stored one inside the
 * script: a swap never ignores it.
 */
export const COMPARE_AND_SWAP = script(`
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if current then return {0, current} end
else
  if not current then return {0, ''} end
  local space = string.find(current, ' ', 1, true)
  if string.sub(current, space + 1) ~= ARGV[2] then return {0, current} end
end
if ARGV[3] == '' then
  if current then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('PUBLISH', ARGV[4], '')
  end
  return {1, ''}
end
local version = redis.call('INCR', KEYS[3])
local value = version .. ' ' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], value)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('PUBLISH', ARGV[4], value)
return {1, value}
`);
