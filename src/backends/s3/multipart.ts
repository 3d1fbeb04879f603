/**
 * The multipart calls of large uploads, behind one interface with two
 * implementations: the lean signed client of `direct.ts` (the default: the
 * SDK's middleware and its second hashing and CRC pass over every part
 * cost more client CPU than the transfer itself), and the SDK client (when
 * the caller gave its own client, or only the SDK can address the bucket).
 *
 * Failures are thrown in the SDK's shape (`errors.ts` maps both alike),
 * including the errors S3 may send inside a 200 answer to a part copy or
 * a completion.
 *
 * @module
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { declaredLength, readBody, S3ResponseError, type DirectClient, type DirectResponse } from './direct.js';
import { encodeRfc3986 } from './sigv4.js';

/** An inclusive byte range of the copy source. */
export type ByteRange = readonly [start: number, end: number];

/** The requests of a multipart upload. */
export interface MultipartApi {
  /** Starts an upload to `key`; returns its upload id. */
  create(key: string, signal: AbortSignal | undefined): Promise<string>;
  /** Uploads part `part` (from 1); returns its ETag. `body` is not modified nor kept. */
  uploadPart(key: string, uploadId: string, part: number, body: Uint8Array, signal: AbortSignal | undefined): Promise<string>;
  /** Copies `range` of `source` (the whole of it if `undefined`) as part `part`; returns its ETag. */
  copyPart(key: string, uploadId: string, part: number, source: string, range: ByteRange | undefined, signal: AbortSignal | undefined): Promise<string>;
  /** Completes the upload from the parts' ETags in order; `createOnly` sends `If-None-Match: *`. */
  complete(key: string, uploadId: string, etags: readonly string[], createOnly: boolean, signal: AbortSignal | undefined): Promise<void>;
  /** Aborts an upload, releasing its parts. Not under any caller's signal: it cleans up after one. */
  abort(key: string, uploadId: string): Promise<void>;
  /** Deletes a key. */
  remove(key: string): Promise<void>;
}

/** The multipart requests through the SDK client. */
export function sdkMultipart(client: S3Client, bucket: string): MultipartApi {
  return {
    async create(key, signal) {
      const out = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
      return required(out.UploadId, 'UploadId');
    },
    async uploadPart(key, uploadId, part, body, signal) {
      const out = await client.send(
        new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: part, Body: body, ContentLength: body.length }),
        { abortSignal: signal },
      );
      return required(out.ETag, 'ETag');
    },
    async copyPart(key, uploadId, part, source, range, signal) {
      const out = await client.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          PartNumber: part,
          CopySource: `${bucket}/${encodeKey(source)}`,
          ...(range === undefined ? {} : { CopySourceRange: `bytes=${range[0]}-${range[1]}` }),
        }),
        { abortSignal: signal },
      );
      return required(out.CopyPartResult?.ETag, 'ETag');
    },
    async complete(key, uploadId, etags, createOnly, signal) {
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          ...(createOnly ? { IfNoneMatch: '*' } : {}),
        }),
        { abortSignal: signal },
      );
    },
    async abort(key, uploadId) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
  };
}

/** The multipart requests through the direct client. */
export function directMultipart(direct: DirectClient, bucket: string): MultipartApi {
  return {
    async create(key, signal) {
      const response = await direct.send('POST', key, { query: { uploads: '' }, signal });
      return required(xmlField(await okBody(response, signal), 'UploadId'), 'UploadId');
    },
    async uploadPart(key, uploadId, part, body, signal) {
      const response = await direct.send('PUT', key, { query: { partNumber: String(part), uploadId }, body, signal });
      response.body.resume();
      return required(response.headers.etag, 'ETag');
    },
    async copyPart(key, uploadId, part, source, range, signal) {
      const headers: Record<string, string> = { 'x-amz-copy-source': `/${encodeRfc3986(bucket)}/${encodeKey(source)}` };
      if (range !== undefined) headers['x-amz-copy-source-range'] = `bytes=${range[0]}-${range[1]}`;
      const response = await direct.send('PUT', key, { query: { partNumber: String(part), uploadId }, headers, signal });
      return required(xmlField(await okBody(response, signal), 'ETag'), 'ETag');
    },
    async complete(key, uploadId, etags, createOnly, signal) {
      let xml = '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">';
      etags.forEach((etag, i) => (xml += `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`));
      xml += '</CompleteMultipartUpload>';
      const headers: Record<string, string> = { 'content-type': 'application/xml' };
      if (createOnly) headers['if-none-match'] = '*';
      const response = await direct.send('POST', key, { query: { uploadId }, body: Buffer.from(xml, 'utf8'), headers, signal });
      await okBody(response, signal);
    },
    async abort(key, uploadId) {
      (await direct.send('DELETE', key, { query: { uploadId } })).body.resume();
    },
    async remove(key) {
      (await direct.send('DELETE', key, {})).body.resume();
    },
  };
}

function encodeKey(key: string): string {
  return key.split('/').map(encodeRfc3986).join('/');
}

function required(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw Object.assign(new Error(`the S3 answer had no ${what}`), { name: 'InvalidResponse' });
  return value;
}

/** Multipart answers are short XML documents; a longer one is not read. */
const MAX_XML_BODY = 1024 * 1024;

/** The body of a 200 answer as text; an `<Error>` S3 sent inside it is thrown as the error it is. */
async function okBody(response: DirectResponse, signal: AbortSignal | undefined): Promise<string> {
  const text = (await readBody(response.body, declaredLength(response.headers), MAX_XML_BODY, signal)).toString('utf8');
  if (/<Error>/.test(text.slice(0, 512))) {
    const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? 'InternalError';
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? '';
    const status =
      code === 'PreconditionFailed' ? 412 : code === 'ConditionalRequestConflict' ? 409 : /^(InternalError|SlowDown|ServiceUnavailable)$/.test(code) ? 500 : 400;
    throw new S3ResponseError(status, code, message.slice(0, 300), 1);
  }
  return text;
}

function xmlField(text: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(text);
  return match === null ? undefined : unescapeXml(match[1]!);
}

function unescapeXml(text: string): string {
  return text.replace(/&(quot|amp|lt|gt|apos|#34);/g, (_, entity: string) =>
    entity === 'quot' || entity === '#34' ? '"' : entity === 'amp' ? '&' : entity === 'lt' ? '<' : entity === 'gt' ? '>' : "'",
  );
}

function escapeXml(text: string): string {
  return text.replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}
