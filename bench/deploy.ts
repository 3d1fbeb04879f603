/**
 * What the deployed bucket policy costs the S3 backend's streamed uploads.
 *
 * A stream of unknown hash is staged under `tmp/` and then copied server-side
 * to its `objects/` key. AWS refuses `CopyObject` into a prefix whose bucket
 * policy enforces conditional writes (403, or 501 with the headers), which
 * `infra/` does for `objects/`; the copy the policy allows is a one-part
 * multipart copy (CreateMultipartUpload, UploadPartCopy, conditional
 * CompleteMultipartUpload). This measures both on MinIO in the same run:
 * latency per copy and S3 requests per copy (each is billed as a PUT-class
 * request, about $5 per million on S3 Standard).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { sdkClient } from '../test/support/s3-env.js';
import { startMinio } from '../test/support/servers.js';
import { printTable, type Row } from './table.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const PUT_CLASS_USD_PER_MILLION = 5;

async function copyObject(client: S3Client, bucket: string, from: string, to: string): Promise<number> {
  await client.send(new CopyObjectCommand({ Bucket: bucket, Key: to, CopySource: `${bucket}/${from}`, IfNoneMatch: '*' }));
  return 1;
}

async function multipartCopy(client: S3Client, bucket: string, from: string, to: string): Promise<number> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: to }));
  const part = await client.send(
    new UploadPartCopyCommand({ Bucket: bucket, Key: to, UploadId, PartNumber: 1, CopySource: `${bucket}/${from}` }),
  );
  await client.send(
    new CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: to,
      UploadId,
      IfNoneMatch: '*',
      MultipartUpload: { Parts: [{ ETag: part.CopyPartResult?.ETag, PartNumber: 1 }] },
    }),
  );
  return 3;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export async function run(): Promise<void> {
  const server = await startMinio('cairn-bench-deploy');
  const client = sdkClient(server);
  try {
    const rows: Row[] = [];
    for (const [label, size, rounds] of [
      ['64 KiB', 64 * KiB, 40],
      ['1 MiB', MiB, 30],
      ['16 MiB', 16 * MiB, 10],
    ] as const) {
      const from = `bench/tmp/${label.replace(' ', '')}`;
      await client.send(new PutObjectCommand({ Bucket: server.bucket, Key: from, Body: randomBytes(size) }));
      for (const [how, copy] of [
        ['CopyObject (baseline; refused under the policy)', copyObject],
        ['multipart copy (allowed by the policy)', multipartCopy],
      ] as const) {
        const times: number[] = [];
        let requests = 0;
        for (let i = 0; i < rounds + 2; i++) {
          const to = `bench/objects/${label.replace(' ', '')}/${randomBytes(8).toString('hex')}`;
          const start = performance.now();
          requests = await copy(client, server.bucket, from, to);
          if (i >= 2) times.push(performance.now() - start); // two warm-up copies
        }
        rows.push({
          size: label,
          copy: how,
          'median ms': median(times),
          requests: String(requests),
          'USD per million copies': `$${requests * PUT_CLASS_USD_PER_MILLION}`,
        });
      }
    }
    printTable('Server-side copy of a staged stream into objects/ (MinIO, loopback)', rows);
  } finally {
    client.destroy();
    await server.stop();
  }
}
