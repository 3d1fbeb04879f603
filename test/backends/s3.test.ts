/**
 * The S3 backend on real servers: the conformance suite on every server of
 * the run but moto (MinIO by default, or an external endpoint: see
 * test/support/s3-env.ts; moto is in s3-moto.test.ts), then the cases only
 * S3 has, on the primary server: tampering, large
 * uploads, the capability probe and the errors users must be able to act on.
 * Concurrency and lost-response cases are in s3-concurrency.test.ts.
 */
import { channel } from 'node:diagnostics_channel';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AbortError,
  BackendError,
  hashBytes,
  IntegrityError,
  InvalidArgumentError,
  PermissionError,
  type S3Store,
  type S3StoreOptions,
} from '../../src/index.js';
import { s3Store } from '../../src/backends/s3.js';
import { conformanceSuite } from '../conformance.js';
import { sdkMultipart } from '../../src/backends/s3/multipart.js';
import { uploadStream } from '../../src/backends/s3/upload.js';
import { deletePrefix, disposeStore, rawClient, s3ConformanceTarget, s3Servers, storeOptions, uniquePrefix } from '../support/s3.js';
import { freePort } from '../support/servers.js';

const MiB = 1024 * 1024;

// moto runs in s3-moto.test.ts, so that vitest can run its slow server beside this file.
for (const server of s3Servers().filter((s) => s.kind !== 'moto')) {
  describe(`S3 on ${server.kind}`, () => {
    conformanceSuite(`s3 (${server.kind})`, s3ConformanceTarget(server));
  });
}

const primary = s3Servers()[0]!;
const checksAuth = primary.kind === 'moto' ? ' (skipped: moto accepts any credentials, by design)' : '';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function listKeys(prefix: string): Promise<string[]> {
  const client = rawClient(primary);
  try {
    const out = await client.send(new ListObjectsV2Command({ Bucket: primary.bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((c) => c.Key!.slice(prefix.length));
  } finally {
    client.destroy();
  }
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** Rejects with what `promise` rejects with, and how long that took. */
async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const start = Date.now();
  const error = await promise.then(
    () => new Error('expected a rejection'),
    (e: unknown) => e,
  );
  return { error, ms: Date.now() - start };
}

describe(`S3 specifics (${primary.kind})`, () => {
  const stores: S3Store[] = [];
  const open = (extra: Partial<S3StoreOptions> = {}, prefix?: string): S3Store => {
    const store = s3Store(storeOptions(primary, prefix, extra));
    stores.push(store);
    return store;
  };
  afterAll(async () => {
    await Promise.all(stores.map((s) => disposeStore(primary, s)));
  });

  it('lays out keys as <prefix>objects/<alg>/<2 hex>/<rest> and <prefix>refs/<name>', async () => {
    const store = open();
    const hash = await store.put(encoder.encode('layout'));
    await store.setRef('heads/main', hash);
    expect((await listKeys(store.prefix)).sort()).toEqual(
      ['.cairn/probe', `objects/sha256/${hash.hex.slice(0, 2)}/${hash.hex.slice(2)}`, 'refs/heads/main'].sort(),
    );
  });

  it('detects bytes changed behind the store on get, getStream and getMany', async () => {
    const store = open();
    const hash = await store.put(encoder.encode('original bytes'));
    const client = rawClient(primary);
    try {
      const key = `${store.prefix}objects/sha256/${hash.hex.slice(0, 2)}/${hash.hex.slice(2)}`;
      await client.send(new PutObjectCommand({ Bucket: primary.bucket, Key: key, Body: encoder.encode('tampered bytes') }));
    } finally {
      client.destroy();
    }
    const error = await store.get(hash).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as IntegrityError).key).toBe(hash.toString());
    await expect(collect(store.getStream(hash))).rejects.toBeInstanceOf(IntegrityError);
    await expect(store.getMany([hash])).rejects.toBeInstanceOf(IntegrityError);
    expect(await store.has(hash)).toBe(true);
  });

  it('uploads a large buffer in parts straight to its key, and a large stream via a temporary key it removes', async () => {
    const store = open({ multipartThreshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = new Uint8Array(11 * MiB).map((_, i) => (i * 7919) & 0xff);
    const fromBuffer = await store.put(bytes);
    expect(fromBuffer.equals(hashBytes(bytes))).toBe(true);
    expect(await store.put(bytes)).toEqual(fromBuffer);
    const stream = async function* (): AsyncIterable<Uint8Array> {
      for (let offset = 0; offset < bytes.length; offset += MiB) yield bytes.subarray(offset, offset + MiB);
      yield encoder.encode('tail');
    };
    const fromStream = await store.put(stream());
    const streamed = Buffer.concat([bytes, encoder.encode('tail')]);
    expect(fromStream.equals(hashBytes(streamed))).toBe(true);
    expect(Buffer.from(await store.get(fromStream)).equals(streamed)).toBe(true);
    expect((await listKeys(store.prefix)).filter((k) => !k.startsWith('objects/'))).toEqual([]);
  });

  it('a second streamed put of the same bytes succeeds, stores one object and leaves no temporary key', async () => {
    const store = open({ multipartThreshold: 5 * MiB, partSize: 5 * MiB });
    const bytes = new Uint8Array(6 * MiB).map((_, i) => (i * 31) & 0xff);
    const stream = async function* (): AsyncIterable<Uint8Array> {
      for (let offset = 0; offset < bytes.length; offset += MiB) yield bytes.subarray(offset, offset + MiB);
    };
    const first = await store.put(stream());
    const second = await store.put(stream());
    expect(second).toEqual(first);
    expect(first.equals(hashBytes(bytes))).toBe(true);
    expect(await listKeys(store.prefix)).toEqual([`objects/sha256/${first.hex.slice(0, 2)}/${first.hex.slice(2)}`]);
    expect(Buffer.from(await store.get(first)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('a streamed put whose copy target appeared after the existence check takes the 412 as success, keeping the stored bytes', async () => {
    // The race (another writer completes between our HEAD and our completion) is made deterministic
    // by an existence check that always says "absent": the conditional completion must then answer 412.
    const prefix = uniquePrefix(primary);
    const client = rawClient(primary);
    try {
      const bytes = encoder.encode('x'.repeat(1000));
      const hash = hashBytes(bytes);
      const key = `${prefix}objects/sha256/${hash.hex.slice(0, 2)}/${hash.hex.slice(2)}`;
      await client.send(new PutObjectCommand({ Bucket: primary.bucket, Key: key, Body: bytes }));
      const before = await client.send(new HeadObjectCommand({ Bucket: primary.bucket, Key: key }));
      const context = { api: sdkMultipart(client, primary.bucket), partSize: 5 * MiB, queueSize: 2, exists: async () => false };
      const chunks = async function* (): AsyncIterable<Uint8Array> {
        yield bytes;
      };
      const got = await uploadStream(context, chunks(), 'sha256', `${prefix}tmp/race`, () => key, undefined);
      expect(got.equals(hash)).toBe(true);
      expect(await listKeys(prefix)).toEqual([key.slice(prefix.length)]);
      const after = await client.send(new HeadObjectCommand({ Bucket: primary.bucket, Key: key }));
      expect(after.ETag).toBe(before.ETag);
      const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: primary.bucket, Prefix: prefix }));
      expect(uploads.Uploads ?? []).toEqual([]);
    } finally {
      client.destroy();
      if (primary.kind === 'external') await deletePrefix(primary, prefix);
    }
  });

  it('rejects bad options with InvalidArgumentError naming the option', () => {
    expect(() => s3Store({ bucket: '' })).toThrow(InvalidArgumentError);
    expect(() => s3Store({ bucket: '' })).toThrow('s3Store option "bucket" must be a non-empty string, got ""');
    expect(() => s3Store({ bucket: 'b', partSize: 1024 })).toThrow(`s3Store option "partSize" must be at least 5 MiB (S3's minimum part size), got 1024`);
    expect(() => s3Store({ bucket: 'b', concurrency: 0 })).toThrow('s3Store option "concurrency" must be an integer >= 1, got 0');
  });

  it('a missing bucket is a BackendError naming the bucket and endpoint, on every kind of call', async () => {
    const missing = s3Store({ ...storeOptions(primary, 'p/'), bucket: 'cairn-no-such-bucket' });
    for (const call of [
      () => missing.put(encoder.encode('x')),
      () => missing.get(hashBytes(encoder.encode('x'))),
      () => missing.has(hashBytes(encoder.encode('x'))),
      () => missing.getRef('heads/main'),
      () => collect(missing.listRefs()),
    ]) {
      const { error } = await failure(call());
      expect(error).toBeInstanceOf(BackendError);
      expect((error as Error).message).toContain('"cairn-no-such-bucket" does not exist');
      expect((error as Error).message).toContain(primary.endpoint);
    }
    await missing.close();
  });

  it.runIf(primary.kind !== 'moto')(`wrong credentials are a PermissionError that names the endpoint and never the secret${checksAuth}`, async () => {
    const secret = 'not-the-right-secret-4f2a9c';
    const store = open({ credentials: { accessKeyId: primary.accessKeyId, secretAccessKey: secret } });
    for (const call of [() => store.put(encoder.encode('x')), () => store.has(hashBytes(encoder.encode('x'))), () => store.getRef('a')]) {
      const { error } = await failure(call());
      expect(error).toBeInstanceOf(PermissionError);
      const text = `${(error as Error).message} ${JSON.stringify(error)}`;
      expect(text).toContain(primary.endpoint);
      expect(text).not.toContain(secret);
    }
    const { error } = await failure(store.put(encoder.encode('x')));
    expect((error as Error).message).toMatch(/rejected the credentials.*AWS_ACCESS_KEY_ID/);
  });

  it.runIf(primary.kind !== 'moto')(`access denied (an unsigned request) is a PermissionError${checksAuth}`, async () => {
    const client = new S3Client({
      endpoint: primary.endpoint,
      region: primary.region,
      forcePathStyle: true,
      credentials: { accessKeyId: 'anonymous', secretAccessKey: 'anonymous' },
      // An anonymous caller: the request goes out unsigned.
      signer: { sign: async (request: unknown) => request } as never,
    });
    const store = open({ client, endpoint: primary.endpoint });
    try {
      const { error } = await failure(store.getRef('heads/main'));
      expect(error).toBeInstanceOf(PermissionError);
      expect((error as Error).message).toContain('access denied');
    } finally {
      client.destroy();
    }
  });

  it('an unreachable endpoint fails fast with a retryable BackendError naming it', async () => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const store = open({ endpoint, maxAttempts: 2 });
    const { error, ms } = await failure(store.put(encoder.encode('x')));
    expect(error).toBeInstanceOf(BackendError);
    expect((error as BackendError).retryable).toBe(true);
    expect((error as Error).message).toContain(`cannot reach ${endpoint}`);
    expect(ms).toBeLessThan(10_000);
  });

  it('a server that accepts connections but never answers times out instead of hanging', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket.on('error', () => undefined)));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const store = open({ endpoint, requestTimeoutMs: 300, maxAttempts: 2 });
      const { error, ms } = await failure(store.getRef('heads/main'));
      expect(error).toBeInstanceOf(BackendError);
      expect((error as BackendError).retryable).toBe(true);
      expect((error as Error).message).toContain(`timed out talking to ${endpoint}`);
      expect(ms).toBeLessThan(10_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  });

  it('concurrent gets and puts of one object share one request; each caller gets its own bytes; an abort fails only its caller', async () => {
    const store = open();
    const bytes = encoder.encode('shared in flight');
    let requests = 0;
    const count = (): void => void requests++;
    const requestStart = channel('http.client.request.start');
    requestStart.subscribe(count);
    try {
      const hashes = await Promise.all(Array.from({ length: 16 }, () => store.put(bytes)));
      expect(requests).toBe(1);
      expect(hashes.every((h) => h.equals(hashes[0]!))).toBe(true);
      requests = 0;
      const aborted = new AbortController();
      const quitter = store.get(hashes[0]!, { signal: aborted.signal });
      const reads = Promise.all(Array.from({ length: 15 }, () => store.get(hashes[0]!)));
      aborted.abort();
      await expect(quitter).rejects.toBeInstanceOf(AbortError);
      const copies = await reads;
      expect(requests).toBe(1);
      copies[0]![0] = 0x58;
      expect(copies.slice(1).every((c) => decoder.decode(c) === 'shared in flight')).toBe(true);
    } finally {
      requestStart.unsubscribe(count);
    }
  });

  it('a swap by another store instance is seen: cached ref states never cause a false result', async () => {
    const a = open();
    const b = open({}, a.prefix);
    const [x, y, z] = await a.putMany([encoder.encode('x'), encoder.encode('y'), encoder.encode('z')]);
    expect((await a.compareAndSwap('heads/c', null, x!)).ok).toBe(true);
    expect((await b.compareAndSwap('heads/c', x!, y!)).ok).toBe(true);
    // a's cache still says x: its swap from x must fail and report y.
    const stale = await a.compareAndSwap('heads/c', x!, z!);
    expect(stale.ok).toBe(false);
    expect(stale.current?.hash.equals(y!)).toBe(true);
    // a deletes, b (whose cache says y) sees the ref as gone.
    expect((await a.compareAndSwap('heads/c', y!, null)).ok).toBe(true);
    expect(await b.compareAndSwap('heads/c', y!, z!)).toEqual({ ok: false, current: undefined });
    expect((await b.compareAndSwap('heads/c', null, z!)).ok).toBe(true);
    expect(decoder.decode(await a.get((await a.getRef('heads/c'))!.hash))).toBe('z');
  });
});
