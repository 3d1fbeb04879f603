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
 *   hashing it, then copy it server-side to its object key (`If-None-Match: *`,
 *   so it never overwrites) and remove the temporary key. The server copies
 *   the bytes once more, but the client sends them once and never holds more
 *   than `partSize * queueSize` of them (lib-storage's bound), and needs no
 *   local disk. Spooling to disk to hash first was the alternative: it would
 *   double the client's I/O and need free space the size of the object.
 *
 * Errors are thrown as the SDK raised them; the store maps them.
 *
 * @module
 */
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  AbortMultipartUploadCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { abortError } from '../../abort.js';
import { createHasher, type Hash, type HashAlgorithm } from '../../hash.js';
import { isPreconditionFailed } from './errors.js';

/** What the upload functions need from the store. */
export interface UploadContext {
  readonly client: S3Client;
  readonly bucket: string;
  readonly partSize: number;
  readonly queueSize: number;
  /** HEAD on a key: does it exist? */
  exists(key: string, signal: AbortSignal | undefined): Promise<boolean>;
}

/** CopyObject handles up to 5 GiB; larger objects are copied in parts. */
const MAX_SINGLE_COPY = 5 * 1024 ** 3;
const COPY_PART = 1024 ** 3;

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
 * copied to `keyOf(hash)`. Returns the hash. The temporary key is removed on
 * every path.
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
    // Best effort: a leftover temporary key wastes space but is never read.
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

async function copy(context: UploadContext, from: string, to: string, size: number, signal: AbortSignal | undefined): Promise<void> {
  const { client, bucket } = context;
  const source = copySource(bucket, from);
  try {
    if (size <= MAX_SINGLE_COPY) {
      await client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: source, IfNoneMatch: '*' }), {
        abortSignal: signal,
      });
      return;
    }
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }), { abortSignal: signal });
    try {
      const parts: Array<{ ETag: string | undefined; PartNumber: number }> = [];
      for (let start = 0, part = 1; start < size; start += COPY_PART, part++) {
        const end = Math.min(size, start + COPY_PART) - 1;
        const out = await client.send(
          new UploadPartCopyCommand({
            Bucket: bucket,
            Key: to,
            UploadId,
            PartNumber: part,
            CopySource: source,
            CopySourceRange: `bytes=${start}-${end}`,
          }),
          { abortSignal: signal },
        );
        parts.push({ ETag: out.CopyPartResult?.ETag, PartNumber: part });
      }
      await client.send(
        new CompleteMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId, MultipartUpload: { Parts: parts }, IfNoneMatch: '*' }),
        { abortSignal: signal },
      );
    } catch (error) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: to, UploadId })).catch(() => undefined);
      throw error;
    }
  } catch (error) {
    if (!isPreconditionFailed(error)) throw error;
  }
}
