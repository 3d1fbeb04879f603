/**
 * Which S3 servers a test run uses, read from the environment, and prefix
 * cleanup. Plain Node (no vitest imports) so the global setup, the helpers
 * and the benchmarks share it.
 *
 * Environment variables (all optional):
 *
 * - `CAIRN_TEST_S3_ENDPOINT`: an external S3 endpoint (LocalStack, Ceph, a
 *   real AWS bucket: `https://s3.eu-west-1.amazonaws.com`). When set, the
 *   S3 tests run against it instead of the local servers, under a unique
 *   prefix per run (`cairn-test/<date>-<random>/`) that is deleted at the end.
 * - `CAIRN_TEST_S3_BUCKET`: its bucket (default `cairn-test`; created if
 *   missing and the credentials allow).
 * - `CAIRN_TEST_S3_REGION`: its region (default `AWS_REGION`, else `us-east-1`).
 * - `CAIRN_TEST_S3_FORCE_PATH_STYLE`: `false` for virtual-hosted-style
 *   addressing (default `true`, which LocalStack, MinIO and Ceph want).
 * - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`: its credentials.
 * - `CAIRN_TEST_S3_SERVERS`: a comma list of `minio`, `moto`, `external`
 *   choosing the servers explicitly (default: `external` when the endpoint
 *   is set, else `minio,moto`). The first is the primary server, used by the
 *   tests that need just one S3 server and by other test files' helpers.
 */
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { S3Endpoint } from './servers.js';

export type ServerKind = 'minio' | 'moto' | 'external';

/** The servers this run wants, primary first. */
export function wantedServers(env: NodeJS.ProcessEnv = process.env): ServerKind[] {
  const listed = env.CAIRN_TEST_S3_SERVERS?.trim();
  const kinds = listed
    ? listed.split(',').map((s) => s.trim()).filter(Boolean)
    : env.CAIRN_TEST_S3_ENDPOINT
      ? ['external']
      : ['minio', 'moto'];
  for (const kind of kinds) {
    if (kind !== 'minio' && kind !== 'moto' && kind !== 'external') {
      throw new Error(`CAIRN_TEST_S3_SERVERS: unknown server "${kind}"; use minio, moto or external`);
    }
  }
  if (kinds.includes('external') && !env.CAIRN_TEST_S3_ENDPOINT) {
    throw new Error('CAIRN_TEST_S3_SERVERS names "external" but CAIRN_TEST_S3_ENDPOINT is not set');
  }
  return [...new Set(kinds)] as ServerKind[];
}

/** The external endpoint described by the environment, under `basePrefix`. */
export function externalEndpoint(basePrefix: string, env: NodeJS.ProcessEnv = process.env): S3Endpoint {
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (!env.CAIRN_TEST_S3_ENDPOINT || !accessKeyId || !secretAccessKey) {
    throw new Error('an external S3 endpoint needs CAIRN_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  return {
    kind: 'external',
    endpoint: env.CAIRN_TEST_S3_ENDPOINT,
    region: env.CAIRN_TEST_S3_REGION ?? env.AWS_REGION ?? 'us-east-1',
    bucket: env.CAIRN_TEST_S3_BUCKET ?? 'cairn-test',
    forcePathStyle: env.CAIRN_TEST_S3_FORCE_PATH_STYLE !== 'false',
    accessKeyId,
    secretAccessKey,
    basePrefix,
  };
}

/** A plain SDK client for an endpoint (the default SDK configuration plus WHEN_REQUIRED checksums). */
export function sdkClient(endpoint: S3Endpoint): S3Client {
  return new S3Client({
    endpoint: endpoint.endpoint,
    region: endpoint.region,
    forcePathStyle: endpoint.forcePathStyle,
    credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/** Deletes every key under `prefix` (1,000 per request). */
export async function deletePrefixOn(endpoint: S3Endpoint, prefix: string): Promise<void> {
  if (prefix === '') throw new Error('refusing to delete a whole bucket: give a prefix');
  const client = sdkClient(endpoint);
  try {
    for (;;) {
      const page = await client.send(new ListObjectsV2Command({ Bucket: endpoint.bucket, Prefix: prefix }));
      const keys = (page.Contents ?? []).flatMap((c) => (c.Key ? [{ Key: c.Key }] : []));
      if (keys.length === 0) return;
      await client.send(new DeleteObjectsCommand({ Bucket: endpoint.bucket, Delete: { Objects: keys, Quiet: true } }));
    }
  } finally {
    client.destroy();
  }
}
