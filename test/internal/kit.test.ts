import { describe, expect, it } from 'vitest';
import { BackendError, hashBytes, InvalidArgumentError, memoryStore, NotFoundError } from '../../src/index.js';
import { casAccepts } from '../../src/internal/cas.js';
import { ListenerSet } from '../../src/internal/listeners.js';
import { isNetworkError, networkErrorCode } from '../../src/internal/network-errors.js';
import { integerOption, invalidOption, numberOption, stringOption, storeOption } from '../../src/internal/options.js';
import { SingleFlight } from '../../src/internal/single-flight.js';
import { isTransient } from '../../src/layers/transient.js';
import { exitCodeOf, EXIT } from '../../src/cli/exit-codes.js';
import { mapRedisError } from '../../src/backends/redis/errors.js';

describe('ListenerSet', () => {
  it('calls a function added twice twice, and each unsubscribe removes one registration once', () => {
    const set = new ListenerSet<number>();
    const seen: number[] = [];
    const listener = (v: number): void => void seen.push(v);
    const first = set.add(listener);
    set.add(listener);
    set.emit(1);
    first();
    first();
    set.emit(2);
    expect(seen).toEqual([1, 1, 2]);
    expect(set.size).toBe(1);
    set.clear();
    set.emit(3);
    expect(seen).toEqual([1, 1, 2]);
  });

  it('a throwing listener is reported and does not stop the others; changes during emit apply from the next one', () => {
    const errors: unknown[] = [];
    const set = new ListenerSet<string>((e) => errors.push(e));
    const seen: string[] = [];
    let late: (() => void) | undefined;
    set.add(() => {
      throw new Error('boom');
    });
    set.add((v) => {
      seen.push(`a:${v}`);
      late ??= set.add((w) => seen.push(`late:${w}`));
    });
    set.emit('x');
    set.emit('y');
    expect(seen).toEqual(['a:x', 'a:y', 'late:y']);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom', 'boom']);
  });
});

describe('casAccepts', () => {
  const a = hashBytes(new Uint8Array([1]));
  const b = hashBytes(new Uint8Array([2]));
  it.each([
    ['absent, expecting absent', undefined, null, true],
    ['absent, expecting a hash', undefined, a, false],
    ['present, expecting absent', { hash: a, version: '1' }, null, false],
    ['present, expecting its hash', { hash: a, version: '1' }, a, true],
    ['present, expecting another hash', { hash: a, version: '1' }, b, false],
  ] as const)('%s -> %s', (_title, current, expected, accepted) => {
    expect(casAccepts(current, expected)).toBe(accepted);
  });
});

describe('SingleFlight', () => {
  it('shares one call per key, counts joiners, and forgets the key before any caller resumes', async () => {
    const flights = new SingleFlight<string, number>();
    let calls = 0;
    let release!: (v: number) => void;
    const run = (): Promise<number> => (calls++, new Promise<number>((r) => (release = r)));
    const first = flights.run('k', run);
    const second = flights.run('k', run);
    expect([first.joined, second.joined, calls, second.flight.joiners]).toEqual([false, true, 1, 1]);
    const resumed = first.flight.promise.then((v) => ({ v, inFlight: flights.size }));
    release(7);
    expect(await resumed).toEqual({ v: 7, inFlight: 0 });
    expect(flights.run('k', run).joined).toBe(false);
    expect(calls).toBe(2);
  });

  it('a failed call that nobody awaits is not an unhandled rejection; a sync throw becomes a rejection', async () => {
    const flights = new SingleFlight<string, number>();
    flights.start('a', () => Promise.reject(new Error('nobody listens')));
    const thrown = flights.start('b', () => {
      throw new Error('sync');
    });
    await expect(thrown.promise).rejects.toThrow('sync');
    await new Promise((r) => setTimeout(r, 10));
    expect(flights.size).toBe(0);
  });

  it('forget makes the next caller start anew while the old call still settles for its callers', async () => {
    const flights = new SingleFlight<string, string>();
    const old = flights.start('k', async () => 'old');
    flights.forget('k');
    const fresh = flights.run('k', async () => 'new');
    expect(fresh.joined).toBe(false);
    expect([await old.promise, await fresh.flight.promise]).toEqual(['old', 'new']);
  });
});

describe('the network-error classifier', () => {
  const withCode = (code: string): Error => Object.assign(new Error(`connect ${code}`), { code });
  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE'])(
    '%s is a network error everywhere: retried, exit code 6, a retryable Redis BackendError',
    (code) => {
      const raw = withCode(code);
      expect(networkErrorCode(raw)).toBe(code);
      expect(isTransient(raw)).toBe(true);
      const mapped = mapRedisError(raw, 'cannot read', '127.0.0.1:6379');
      expect(mapped).toBeInstanceOf(BackendError);
      expect((mapped as BackendError).retryable).toBe(true);
      expect(exitCodeOf(new BackendError('cannot reach the remote', { cause: raw }))).toBe(EXIT.remote);
    },
  );

  it('follows the cause chain, knows timeouts and closed connections by name or message, and nothing else', () => {
    expect(isNetworkError(new BackendError('wrapped', { cause: new Error('outer', { cause: withCode('EPIPE') }) }))).toBe(true);
    expect(networkErrorCode(Object.assign(new Error('t'), { name: 'TimeoutError' }))).toBe('TimeoutError');
    expect(networkErrorCode(new Error('Connection is closed.'))).toBe('Connection is closed');
    expect(isNetworkError(Object.assign(new Error('no space'), { code: 'ENOSPC' }))).toBe(false);
    expect(isNetworkError(new Error('the operation was aborted'))).toBe(false);
    expect(isNetworkError(undefined)).toBe(false);
    expect(exitCodeOf(new BackendError('HTTP 500'))).toBe(EXIT.failed);
    expect(exitCodeOf(new NotFoundError('gone'))).toBe(EXIT.notFound);
  });
});

describe('option checks', () => {
  it('say "<owner> option "<name>" must be <requirement>, got <value>" as an InvalidArgumentError', () => {
    const cases: Array<[() => unknown, string]> = [
      [() => integerOption('cached', 'maxBytes', 0, 1, 1), 'cached option "maxBytes" must be an integer >= 1, got 0'],
      [() => integerOption('x', 'n', 2.5, 1, 1, 10), 'x option "n" must be an integer from 1 to 10, got 2.5'],
      [() => numberOption('x', 'ms', 0, 1, 0, true), 'x option "ms" must be a finite number > 0, got 0'],
      [() => stringOption('openRedisStore', 'keyPrefix', 42, 'c:'), 'openRedisStore option "keyPrefix" must be a string, got 42'],
      [() => storeOption('layered', 'lower', {}), 'layered option "lower" must be a Store (such as memoryStore()), got object'],
    ];
    for (const [check, message] of cases) {
      expect(check).toThrow(InvalidArgumentError);
      expect(check).toThrow(message);
    }
    expect(integerOption('x', 'n', undefined, 5, 1)).toBe(5);
    expect(() => storeOption('x', 'store', memoryStore())).not.toThrow();
    const hidden = invalidOption('openRedisStore', 'url', 'a redis:// URL', 'redis://:secret@host', { hideValue: true });
    expect(hidden.message).toBe('openRedisStore option "url" must be a redis:// URL');
  });
});
