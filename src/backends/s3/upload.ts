/**
 * Large object uploads, in bounded memory.
 *
 * The object key is the content hash, unknown until the last byte is read.
 * Two cases:
 *
 * - **A buffer** (replayable): hash it first (about 1.4 GiB/s), skip the
 *   upload if the object exists, else upload it in parts straight to its key
 *   with `If-None-Match: *` on the completion. Parts are views of the
 *   buffer: no copy, no extra bytes.
 * - **A stream** (read once): upload it in parts to a temporary key while
 *   hashing it, then copy it server-side to its object key and remove the
 *   temporary key. The client sends the bytes once, holds at most
 *   `partSize * (queueSize + 1)` of them (a fixed set of part buffers,
 *   reused, so memory does not wait for the garbage collector), and needs
 *   no local disk. Spooling to disk to hash first was the alternative: it
 *   would double the client's I/O and need free space the size of the
 *   object.
 *
 * The copy is a multipart copy (`UploadPartCopy` in ranges of
 * `COPY_PART_SIZE`, several in flight, completed with `If-None-Match: *`),
 * never `CopyObject`: a bucket that enforces conditional writes by policy,
 * as the stack in `infra/` does for `objects/`, refuses `CopyObject` there
 * (403, or 501 with conditional headers; AWS documents this), while a
 * conditional `CompleteMultipartUpload` is allowed. Measured on MinIO
 * (`bench/s3.ts`), the copy costs the server about 4-4.7 ms of CPU per MiB,
 * about as much as receiving the upload did: it is most of the gap to an
 * upload to a fixed key. Ranges in parallel do not lower that CPU but
 * spread it over the server's cores (1.2-1.5x one part's speed, loaded
 * machine).
 *
 * Errors are thrown in the SDK's shape; the store maps them.
 *
 * @module
 */
import { abortError } from '../../abort.js';
import { createHasher, type Hash, type HashAlgorithm } from '../../hash.js';
import { mapConcurrent } from '../../object-io.js';
import { isConditionalConflict, isPreconditionFailed } from './errors.js';
import type { ByteRange, MultipartApi } from './multipart.js';

/** What the upload functions need from the store. */
export interface UploadContext {
  readonly api: MultipartApi;
  /** Bytes per uploaded part (at least 5 MiB but the last). */
  readonly partSize: number;
  /** Parts of one upload in flight at once. */
  readonly queueSize: number;
  /** Bytes per part of the server-side copy of a stream (at least 5 MiB). @default {@link COPY_PART_SIZE} */
  readonly copyPartSize?: number | undefined;
  /** Copy ranges in flight at once. @default {@link COPY_CONCURRENCY} */
  readonly copyConcurrency?: number | undefined;
  /** HEAD on a key: does it exist? */
  exists(key: string, signal: AbortSignal | undefined): Promise<boolean>;
}

const MiB = 1024 * 1024;
/**
 * Bytes per part of the server-side copy, and parts copied at once: chosen
 * by measurement on MinIO (`bench/s3.ts`, copy sweep). Larger parts mean
 * fewer requests; several in flight let the server use its cores.
 */
export const COPY_PART_SIZE = 64 * MiB;
export const COPY_CONCURRENCY = 4;
/** The smallest copy range worth a request of its own (S3's minimum part is 5 MiB). */
const MIN_COPY_PART = 8 * MiB;
/** S3's limits: 10,000 parts, 5 GiB per part. */
const MAX_PARTS = 10_000;
const MAX_PART_BYTES = 5 * 1024 * MiB;
/** Copies restarted after a 409 ConditionalRequestConflict (a concurrent completion on the same key). */
const MAX_COPY_ATTEMPTS = 4;

/** Uploads a buffer whose object key is known, in parts. "Already exists" is success. */
export async function uploadBuffer(context: UploadContext, key: string, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
  if (await context.exists(key, signal)) return;
  const partSize = Math.max(context.partSize, Math.ceil(bytes.length / MAX_PARTS));
  const parts: Uint8Array[] = [];
  for (let start = 0; start < bytes.length || parts.length === 0; start += partSize) parts.push(bytes.subarray(start, start + partSize));
  const uploadId = await context.api.create(key, signal);
  try {
    const etags = await mapConcurrent(parts, context.queueSize, (part, index) => context.api.uploadPart(key, uploadId, index + 1, part, signal));
    await context.api.complete(key, uploadId, etags, true, signal);
  } catch (error) {
    await context.api.abort(key, uploadId).catch(() => undefined);
    if (signal?.aborted) throw abortError(signal);
    // 412: the object exists, and under a content address that means these very bytes.
    if (!isPreconditionFailed(error)) throw error;
  }
}

/**
 * Uploads a stream of unknown hash: to a temporary key while hashing, then
 * copied to `keyOf(hash)` unless that exists. Returns the hash. "Already
 * exists" (a concurrent writer of the same bytes) is success.
 *
 * The temporary key is deleted on every path, best effort: a writer allowed
 * no `s3:DeleteObject` (the writer policy of `infra/`) gets AccessDenied,
 * which is ignored, and the bucket's lifecycle rule on `<prefix>tmp/`
 * expires the leftover after a day, as it does the key of a crashed writer.
 * A failed or aborted upload is aborted, so its parts are released and
 * nothing becomes visible.
 */
export async function uploadStream(
  context: UploadContext,
  chunks: AsyncIterable<Uint8Array>,
  algorithm: HashAlgorithm,
  tmpKey: string,
  keyOf: (hash: Hash) => string,
  signal: AbortSignal | undefined,
): Promise<Hash> {
  const hasher = createHasher(algorithm);
  const parts = new PartQueue(context, tmpKey, signal);
  let size = 0;
  let completed = false;
  try {
    for await (const chunk of chunks) {
      if (signal?.aborted) throw abortError(signal);
      hasher.update(chunk);
      size += chunk.length;
      await parts.write(chunk);
    }
    await parts.finish();
    completed = true;
    const hash = hasher.digest();
    const key = keyOf(hash);
    if (!(await context.exists(key, signal))) await copy(context, tmpKey, key, size, signal);
    return hash;
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw error;
  } finally {
    await parts.release(completed);
    // Best effort: AccessDenied (a writer without delete) or a failure leaves a key that is never
    // read and that the lifecycle rule on tmp/ expires.
    if (completed) await context.api.remove(tmpKey).catch(() => undefined);
  }
}

/**
 * The parts of one streamed upload: bytes are copied into a fixed set of
 * `queueSize + 1` part buffers, each sent when full while the next fills,
 * and reused once its part is acknowledged. The multipart upload is created
 * with the first part.
 */
class PartQueue {
  readonly #context: UploadContext;
  readonly #key: string;
  /** Aborts the parts in flight when one fails or the caller aborts. */
  readonly #controller = new AbortController();
  readonly #free: Buffer[] = [];
  readonly #inFlight = new Set<Promise<void>>();
  readonly #etags: string[] = [];
  #buffers = 0;
  #current: Buffer | undefined;
  #filled = 0;
  #uploadId: Promise<string> | undefined;
  #failure: { error: unknown } | undefined;

  constructor(context: UploadContext, key: string, signal: AbortSignal | undefined) {
    this.#context = context;
    this.#key = key;
    if (signal !== undefined) {
      if (signal.aborted) this.#controller.abort(signal.reason);
      else signal.addEventListener('abort', () => this.#controller.abort(signal.reason), { once: true, signal: this.#controller.signal });
    }
  }

  /** Copies `chunk` into part buffers, sending each that fills; waits while every buffer is in flight. */
  async write(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      this.#current ??= await this.#buffer();
      const take = Math.min(chunk.length - offset, this.#current.length - this.#filled);
      this.#current.set(take === chunk.length ? chunk : chunk.subarray(offset, offset + take), this.#filled);
      this.#filled += take;
      offset += take;
      if (this.#filled === this.#current.length) this.#send();
    }
  }

  /** Sends the last part, waits for every part and completes the upload. */
  async finish(): Promise<void> {
    if (this.#current !== undefined || this.#etags.length === 0) {
      this.#current ??= Buffer.alloc(0);
      this.#send();
    }
    while (this.#inFlight.size > 0) await Promise.race(this.#inFlight);
    this.#throwIfFailed();
    await this.#context.api.complete(this.#key, await this.#uploadId!, this.#etags, false, this.#controller.signal);
  }

  /**
   * Drops the listener on the caller's signal; unless the upload completed,
   * stops the parts in flight and aborts the upload, so that nothing
   * becomes visible.
   */
  async release(completed: boolean): Promise<void> {
    this.#controller.abort();
    if (completed) return;
    await Promise.allSettled(this.#inFlight);
    const uploadId = await this.#uploadId?.catch(() => undefined);
    if (uploadId !== undefined) await this.#context.api.abort(this.#key, uploadId).catch(() => undefined);
  }

  async #buffer(): Promise<Buffer> {
    for (;;) {
      this.#throwIfFailed();
      const free = this.#free.pop();
      if (free !== undefined) return free;
      if (this.#buffers <= this.#context.queueSize) {
        this.#buffers++;
        // Outside Node's shared pool: these are long-lived and reused.
        return Buffer.allocUnsafeSlow(this.#context.partSize);
      }
      await Promise.race(this.#inFlight);
    }
  }

  #send(): void {
    const buffer = this.#current!;
    const body = buffer.subarray(0, this.#filled);
    this.#current = undefined;
    this.#filled = 0;
    const part = this.#etags.length + 1;
    this.#etags.push('');
    const signal = this.#controller.signal;
    this.#uploadId ??= this.#context.api.create(this.#key, signal);
    const sent = this.#uploadId
      .then((uploadId) => this.#context.api.uploadPart(this.#key, uploadId, part, body, signal))
      .then(
        (etag) => {
          this.#etags[part - 1] = etag;
          this.#free.push(buffer);
        },
        (error: unknown) => {
          this.#failure ??= { error };
          this.#controller.abort();
        },
      )
      .finally(() => this.#inFlight.delete(sent));
    this.#inFlight.add(sent);
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure.error;
    if (this.#controller.signal.aborted) throw abortError(this.#controller.signal);
  }
}

/**
 * Copies `from` (of `size` bytes) to `to` unless `to` exists; never
 * overwrites. Exported for `bench/s3.ts`, which measures this step alone.
 */
export async function copy(context: UploadContext, from: string, to: string, size: number, signal: AbortSignal | undefined): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const concurrency = context.copyConcurrency ?? COPY_CONCURRENCY;
      await multipartCopy(context.api, from, to, copyRanges(size, context.copyPartSize, concurrency), concurrency, signal);
      return;
    } catch (error) {
      // 412: the object exists, and under a content address that means these very bytes.
      if (isPreconditionFailed(error)) return;
      // 409: another completion on this key was in flight; the next attempt sees its outcome.
      if (!isConditionalConflict(error) || attempt >= MAX_COPY_ATTEMPTS || signal?.aborted) throw error;
    }
  }
}

/**
 * The source ranges of a copy: `concurrency` ranges or more, of at
 * most `copyPartSize` and at least 8 MiB (larger if 10,000 of them would
 * not cover `size`); one part without a range when that is all (0 bytes
 * included: a range cannot express "empty").
 */
export function copyRanges(size: number, copyPartSize = COPY_PART_SIZE, concurrency = COPY_CONCURRENCY): Array<ByteRange | undefined> {
  // Smaller objects still get `concurrency` ranges, down to MIN_COPY_PART.
  const wanted = Math.min(copyPartSize, Math.max(MIN_COPY_PART, Math.ceil(size / concurrency)));
  if (size <= wanted) return [undefined];
  const partSize = Math.min(MAX_PART_BYTES, Math.max(wanted, Math.ceil(size / MAX_PARTS)));
  const ranges: ByteRange[] = [];
  for (let start = 0; start < size; start += partSize) ranges.push([start, Math.min(size, start + partSize) - 1]);
  return ranges;
}

/** One multipart copy, completed with `If-None-Match: *`; aborted on any failure (a 412 included). */
async function multipartCopy(
  api: MultipartApi,
  from: string,
  to: string,
  ranges: ReadonlyArray<ByteRange | undefined>,
  concurrency: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const uploadId = await api.create(to, signal);
  try {
    const etags = await mapConcurrent(ranges, concurrency, (range, index) => api.copyPart(to, uploadId, index + 1, from, range, signal));
    await api.complete(to, uploadId, etags, true, signal);
  } catch (error) {
    // Not under the caller's signal: an aborted put must still release its parts (AbortMultipartUpload is in the writer policy).
    await api.abort(to, uploadId).catch(() => undefined);
    throw error;
  }
}
