/**
 * Large object uploads, in bounded memory.
 *
 * The object key is the content hash, unknown until the last byte is read.
 * Two cases:
 *
 * - **A buffer** (replayable): hash it first (about 1.4 GiB/s), skip the
 *   upload if the object exists, else upload it in parts straight to its key
 *   with `If-None-Match: *` on the completion. No copy, no extra bytes.
 * - **A stream** (read once): upload it in parts to a temporary key while
 *   hashing it, then copy it server-side to its object key and remove the
 *   temporary key. The server copies the bytes once more, but the client
 *   sends them once and never holds more than `partSize * queueSize` of them
 *   (lib-storage's bound), and needs no local disk. Spooling to disk to hash
 *   first was the alternative: it would double the client's I/O and need free
 *   space the size of the object.
 *
 * The copy is a multipart copy (`UploadPartCopy`, completed with
 * `If-None-Match: *`), never `CopyObject`: a bucket that enforces conditional
 * writes by policy, as the stack in `infra/` does for `objects/`, refuses
 * `CopyObject` there (403, or 501 with conditional headers; AWS documents
 * this), while a conditional `CompleteMultipartUpload` is allowed. It costs
 * two requests more than `CopyObject`, against the tens of requests that
 * uploaded the stream.
 *
 * Errors are thrown as the SDK raised them; the store maps them.
 *
 * @module
 */
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  AbortMultipartUploadCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { abortError } from '../../abort.js';
import { createHasher, type Hash, type HashAlgorithm } from '../../hash.js';
import { mapConcurrent } from '../../object-io.js';
import { isConditionalConflict, isPreconditionFailed } from './errors.js';

/** What the upload functions need from the store. */
export interface UploadContext {
  readonly client: S3Client;
  readonly bucket: string;
  readonly partSize: number;
  readonly queueSize: number;
  /** HEAD on a key: does it exist? */
  exists(key: string, signal: AbortSignal | undefined): Promise<boolean>;
}

/** UploadPartCopy copies up to 5 GiB per part; larger objects are copied in 1 GiB parts (5 TiB is 5,120 parts). */
const MAX_SINGLE_COPY = 5 * 1024 ** 3;
const COPY_PART = 1024 ** 3;
/** Copies restarted after a 409 ConditionalRequestConflict (a concurrent completion on the same key). */
const MAX_COPY_ATTEMPTS = 4;

/** Uploads a buffer whose object key is known, in parts. "Already exists" is success. */
export async function uploadBuffer(context: UploadContext, key: string, bytes: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
  if (await context.exists(key, signal)) return;
  try {
    await runUpload(context, key, bytes, true, signal);
  } catch (error) {
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
  let size = 0;
  async function* hashing(): AsyncIterable<Uint8Array> {
    for await (const chunk of chunks) {
      hasher.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  }
  try {
    await runUpload(context, tmpKey, Readable.from(hashing(), { objectMode: false }), false, signal);
    const hash = hasher.digest();
    const key = keyOf(hash);
    if (!(await context.exists(key, signal))) await copy(context, tmpKey, key, size, signal);
    return hash;
  } finally {
    // Best effort: AccessDenied (a writer without delete) or a failure leaves a key that is never
    // read and that the lifecycle rule on tmp/ expires.
    await context.client.send(new DeleteObjectCommand({ Bucket: context.bucket, Key: tmpKey })).catch(() => undefined);
  }
}

async function runUpload(
  context: UploadContext,
  key: string,
  body: Uint8Array | Readable,
  createOnly: boolean,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (signal?.aborted) throw abortError(signal);
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  const upload = new Upload({
    client: context.client,
    params: { Bucket: context.bucket, Key: key, Body: body, ...(createOnly ? { IfNoneMatch: '*' } : {}) },
    partSize: context.partSize,
    queueSize: context.queueSize,
    leavePartsOnError: false,
    abortController: controller,
  });
  try {
    await upload.done();
  } catch (error) {
    if (signal?.aborted) throw abortError(signal);
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (body instanceof Readable) body.destroy();
  }
}

function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

/** Copies `from` (of `size` bytes) to `to` unless `to` exists; never overwrites. */
async function copy(context: UploadContext, from: string, to: string, size: number, signal: AbortSignal | undefined): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await multipartCopy(context, from, to, size, signal);
      return;
    } catch (error) {
      // 412: the object exists, and under a content address that means these very bytes.
      if (isPreconditionFailed(error)) return;
      // 409: another completion on this key was in flight; the next attempt sees its outcome.
      if (!isConditionalConflict(error) || attempt >= MAX_COPY_ATTEMPTS || signal?.aborted) throw error;
    }
  }
}

/** One multipart copy, completed with `If-None-Match: *`; aborted on any failure (a 412 included). */
async function multipartCopy(context: UploadContext, from: string, to: string, size: number, signal: AbortSignal | undefined): Promise<void> {
  const { client, bucket } = context;
  const source = copySource(bucket, from);
  // One part without a range covers any size up to 5 GiB, 0 bytes included (a range cannot express "empty").
  const ranges: Array<string | undefined> = [];
  if (size <= MAX_SINGLE_COPY) ranges.push(undefined);
  else for (let start = 0; start < size; start += COPY_PART) ranges.push(`bytes=${start}-${Math.min(size, start + COPY_PART) - 1}`);
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }), { abortSignal: signal });
  try {
    const parts = await mapConcurrent(ranges, context.queueSize, async (range, index) => {
      const out = await client.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key: to,
          UploadId,
          PartNumber: index + 1,
          CopySource: source,
          ...(range === undefined ? {} : { CopySourceRange: range }),
        }),
        { abortSignal: signal },
      );
      return { ETag: out.CopyPartResult?.ETag, PartNumber: index + 1 };
    });
    await client.send(
      new CompleteMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: '*' }),
      { abortSignal: signal },
    );
  } catch (error) {
    // Not under the caller's signal: an aborted put must still release its parts (AbortMultipartUpload is in the writer policy).
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId })).catch(() => undefined);
    throw error;
  }
}
