/**
 * Large objects on the S3 backend (primary server, MinIO by default): the
 * streamed put's part buffers and its parallel ranged server-side copy,
 * what an aborted or failing stream leaves behind (nothing visible, no
 * upload, no temporary key), and getStream's parallel ranged GETs (in order,
 * verified, one request for a small object).
 */
import { channel } from 'node:diagnostics_channel';
import { ListMultipartUploadsCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { AbortError, hashBytes, IntegrityError, type S3Store, type S3StoreOptions } from '../../src/index.js';
import { s3Store } from '../../src/backends/s3.js';
import { sdkMultipart } from '../../src/backends/s3/multipart.js';
import { copyRanges, COPY_PART_SIZE, uploadStream } from '../../src/backends/s3/upload.js';
import { disposeStore, primaryServer, rawClient, storeOptions, uniquePrefix } from '../support/s3.js';

const MiB = 1024 * 1024;
const primary = primaryServer();

/** Deterministic bytes that differ at every MiB, so a misordered range changes the hash. */
function pattern(size: number, seed = 1): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 4096) bytes.fill((i / 4096 + seed) & 0xff, i, Math.min(size, i + 4096));
  return bytes;
}

async function* inChunks(bytes: Uint8Array, chunk = 3 * MiB + 17): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < bytes.length; offset += chunk) yield bytes.slice(offset, offset + chunk);
}

async function collect(iterable: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of iterable) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function keysUnder(prefix: string): Promise<string[]> {
  const client = rawClient(primary);
  try {
    const out = await client.send(new ListObjectsV2Command({ Bucket: primary.bucket, Prefix: prefix }));
    return (out.Contents ?? []).map((c) => c.Key!.slice(prefix.length)).sort();
  } finally {
    client.destroy();
  }
}

async function uploadsUnder(prefix: string): Promise<number> {
  const client = rawClient(primary);
  try {
    const out = await client.send(new ListMultipartUploadsCommand({ Bucket: primary.bucket, Prefix: prefix }));
    return (out.Uploads ?? []).length;
  } finally {
    client.destroy();
  }
}

/** Counts HTTP requests while `fn` runs. */
async function counted<T>(fn: () => Promise<T>): Promise<{ value: T; requests: number }> {
  let requests = 0;
  const count = (): void => void requests++;
  const start = channel('http.client.request.start');
  start.subscribe(count);
  try {
    const value = await fn();
    return { value, requests };
  } finally {
    start.unsubscribe(count);
  }
}

describe(`S3 large objects (${primary.kind})`, () => {
  const stores: S3Store[] = [];
  const open = (extra: Partial<S3StoreOptions> = {}): S3Store => {
    const store = s3Store(storeOptions(primary, uniquePrefix(primary), { multipartThreshold: 5 * MiB, partSize: 5 * MiB, queueSize: 2, ...extra }));
    stores.push(store);
    return store;
  };
  afterAll(async () => {
    await Promise.all(stores.map((s) => disposeStore(primary, s)));
  });

  it('splits a copy into ranges of the copy part size, within S3 limits', () => {
    expect(copyRanges(0)).toEqual([undefined]);
    expect(copyRanges(8 * MiB)).toEqual([undefined]);
    // Four ranges in parallel down to 8 MiB each.
    expect(copyRanges(8 * MiB + 1)).toEqual([
      [0, 8 * MiB - 1],
      [8 * MiB, 8 * MiB],
    ]);
    expect(copyRanges(64 * MiB).length).toBe(4);
    expect(copyRanges(4 * COPY_PART_SIZE + 1)).toEqual([
      [0, COPY_PART_SIZE - 1],
      [COPY_PART_SIZE, 2 * COPY_PART_SIZE - 1],
      [2 * COPY_PART_SIZE, 3 * COPY_PART_SIZE - 1],
      [3 * COPY_PART_SIZE, 4 * COPY_PART_SIZE - 1],
      [4 * COPY_PART_SIZE, 4 * COPY_PART_SIZE],
    ]);
    const huge = 4 * 1024 ** 4;
    const ranges = copyRanges(huge);
    expect(ranges.length).toBeLessThanOrEqual(10_000);
    expect(ranges.at(-1)![1]).toBe(huge - 1);
    expect(ranges.every((r, i) => i === 0 || r![0] === ranges[i - 1]![1] + 1)).toBe(true);
  });

  it('a streamed put of many parts (buffers reused) copied in parallel ranges stores the exact bytes and leaves no temporary key or upload', async () => {
    const prefix = uniquePrefix(primary);
    const client = rawClient(primary);
    try {
      const bytes = pattern(23 * MiB + 5);
      const hash = hashBytes(bytes);
      const key = `${prefix}objects/sha256/${hash.hex.slice(0, 2)}/${hash.hex.slice(2)}`;
      const context = { api: sdkMultipart(client, primary.bucket), partSize: 5 * MiB, queueSize: 2, copyPartSize: 5 * MiB, exists: async () => false };
      const got = await uploadStream(context, inChunks(bytes), 'sha256', `${prefix}tmp/t1`, () => key, undefined);
      expect(got.equals(hash)).toBe(true);
      expect(await keysUnder(prefix)).toEqual([key.slice(prefix.length)]);
      expect(await uploadsUnder(prefix)).toBe(0);
      const reader = s3Store(storeOptions(primary, prefix));
      stores.push(reader);
      expect(Buffer.from(await reader.get(hash)).equals(Buffer.from(bytes))).toBe(true);
    } finally {
      client.destroy();
    }
  });

  it('the store streams a large put on its direct client and gets it back whole and by stream', async () => {
    const store = open();
    const bytes = pattern(17 * MiB + 3, 7);
    const hash = await store.put(inChunks(bytes));
    expect(hash.equals(hashBytes(bytes))).toBe(true);
    expect((await keysUnder(store.prefix)).filter((k) => !k.startsWith('objects/'))).toEqual([]);
    expect(await uploadsUnder(store.prefix)).toBe(0);
    expect((await collect(store.getStream(hash))).equals(Buffer.from(bytes))).toBe(true);
  });

  it('an aborted streamed put rejects with AbortError and leaves no object, no temporary key and no upload', async () => {
    const store = open();
    const controller = new AbortController();
    const bytes = pattern(30 * MiB, 3);
    async function* slow(): AsyncIterable<Uint8Array> {
      let sent = 0;
      for await (const chunk of inChunks(bytes, MiB)) {
        yield chunk;
        sent += chunk.length;
        // Abort once several parts are in flight or done.
        if (sent === 12 * MiB) controller.abort();
      }
    }
    await expect(store.put(slow(), { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    expect(await keysUnder(store.prefix)).toEqual([]);
    expect(await uploadsUnder(store.prefix)).toBe(0);
    expect(await store.has(hashBytes(bytes))).toBe(false);
  });

  it('a stream that fails midway fails the put with its error and leaves nothing behind', async () => {
    const store = open();
    const bytes = pattern(16 * MiB, 4);
    async function* failing(): AsyncIterable<Uint8Array> {
      let sent = 0;
      for await (const chunk of inChunks(bytes, MiB)) {
        if (sent === 11 * MiB) throw new Error('the source broke');
        yield chunk;
        sent += chunk.length;
      }
    }
    await expect(store.put(failing())).rejects.toThrow(/the source broke/);
    expect(await keysUnder(store.prefix)).toEqual([]);
    expect(await uploadsUnder(store.prefix)).toBe(0);
  });

  it('getStream of a large object fetches its ranges in parallel and yields them in order', async () => {
    const store = open({ multipartThreshold: 64 * MiB });
    const bytes = pattern(20 * MiB + 11, 9);
    const hash = await store.put(bytes);
    const { value, requests } = await counted(() => collect(store.getStream(hash)));
    expect(value.equals(Buffer.from(bytes))).toBe(true);
    // 8 MiB ranges: 3 GETs.
    expect(requests).toBe(3);
  });

  it('getStream of a small object costs one request, an empty object included', async () => {
    const store = open();
    const small = new TextEncoder().encode('small object');
    const hash = await store.put(small);
    const { value, requests } = await counted(() => collect(store.getStream(hash)));
    expect(value.toString()).toBe('small object');
    expect(requests).toBe(1);
    const empty = await store.put(new Uint8Array(0));
    expect((await collect(store.getStream(empty))).length).toBe(0);
  });

  it('parallel ranged getStream detects bytes changed behind the store, same length or not', async () => {
    const store = open({ multipartThreshold: 64 * MiB });
    const bytes = pattern(18 * MiB, 5);
    const hash = await store.put(bytes);
    const key = `${store.prefix}objects/sha256/${hash.hex.slice(0, 2)}/${hash.hex.slice(2)}`;
    const client = rawClient(primary);
    try {
      const tampered = Buffer.from(bytes);
      tampered.writeUInt8(tampered.readUInt8(17 * MiB) ^ 1, 17 * MiB);
      await client.send(new PutObjectCommand({ Bucket: primary.bucket, Key: key, Body: tampered }));
      await expect(collect(store.getStream(hash))).rejects.toBeInstanceOf(IntegrityError);
      await client.send(new PutObjectCommand({ Bucket: primary.bucket, Key: key, Body: tampered.subarray(0, 9 * MiB) }));
      await expect(collect(store.getStream(hash))).rejects.toBeInstanceOf(IntegrityError);
    } finally {
      client.destroy();
    }
  });

  it('a consumer that stops a ranged getStream early releases it (the store keeps working)', async () => {
    const store = open({ multipartThreshold: 64 * MiB });
    const bytes = pattern(25 * MiB, 6);
    const hash = await store.put(bytes);
    for (let i = 0; i < 3; i++) {
      for await (const chunk of store.getStream(hash)) {
        expect(chunk.length).toBeGreaterThan(0);
        break;
      }
    }
    expect((await collect(store.getStream(hash))).equals(Buffer.from(bytes))).toBe(true);
  });
});
