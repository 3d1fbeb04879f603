/**
 * Helpers for test files that need a real S3 server. The global setup
 * (`global-setup.ts`, registered in vitest.config.ts) starts MinIO and moto
 * on loopback, or uses an external endpoint: the environment variables that
 * choose are documented at the top of `s3-env.ts` (CAIRN_TEST_S3_ENDPOINT,
 * CAIRN_TEST_S3_BUCKET, CAIRN_TEST_S3_REGION, CAIRN_TEST_S3_FORCE_PATH_STYLE,
 * CAIRN_TEST_S3_SERVERS, with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
 *
 * @example
 * ```ts
 * import { freshMinioStore, minioEnv } from '../support/s3.js';
 * const store = freshMinioStore();               // an S3Store on a unique prefix
 * spawn('node', ['dist/cli/main.js', ...], { env: { ...process.env, ...minioEnv(store.prefix) } });
 * ```
 */
import { randomBytes } from 'node:crypto';
import type { S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { s3Store, type S3Store, type S3StoreOptions } from '../../src/backends/s3.js';
import type { ConformanceTarget } from '../conformance.js';
import { deletePrefixOn, sdkClient } from './s3-env.js';
import type { S3Endpoint } from './servers.js';

export type { S3Endpoint } from './servers.js';

/** Every S3 server of this run, primary first. */
export function s3Servers(): S3Endpoint[] {
  const servers = inject('cairnS3');
  if (!servers || servers.length === 0) {
    throw new Error('no S3 test server: is test/support/global-setup.ts registered as globalSetup in vitest.config.ts?');
  }
  return servers;
}

/** The primary server: MinIO unless CAIRN_TEST_S3_SERVERS / CAIRN_TEST_S3_ENDPOINT say otherwise. */
export function primaryServer(): S3Endpoint {
  return s3Servers()[0]!;
}

/** The server of a kind, if this run has it. */
export function serverOf(kind: 'minio' | 'moto' | 'external'): S3Endpoint | undefined {
  return s3Servers().find((s) => s.kind === kind);
}

let counter = 0;

/** A prefix no other test uses, under the run's base prefix; ends in `/`. */
export function uniquePrefix(server: S3Endpoint = primaryServer(), label = 't'): string {
  return `${server.basePrefix}${label}-${process.pid}-${++counter}-${randomBytes(3).toString('hex')}/`;
}

/** Store options for `server` on `prefix` (a fresh unique prefix by default). */
export function storeOptions(server: S3Endpoint, prefix = uniquePrefix(server), extra: Partial<S3StoreOptions> = {}): S3StoreOptions {
  return {
    bucket: server.bucket,
    prefix,
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: server.forcePathStyle,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    ...extra,
  };
}

/** Store options for the primary server (MinIO by default), on a unique prefix unless one is given. */
export function minioOptions(prefix?: string, extra: Partial<S3StoreOptions> = {}): S3StoreOptions {
  const server = primaryServer();
  return storeOptions(server, prefix ?? uniquePrefix(server), extra);
}

/** A new S3Store on the primary server, on a unique prefix. */
export function freshMinioStore(extra: Partial<S3StoreOptions> = {}): S3Store {
  return s3Store(minioOptions(undefined, extra));
}

/**
 * Environment for a child process (the CLI, a worker) to reach the primary
 * server: the standard AWS variables (the SDK reads AWS_ENDPOINT_URL_S3
 * itself) plus CAIRN_S3_* naming the bucket, prefix and addressing style.
 */
export function minioEnv(prefix?: string, server: S3Endpoint = primaryServer()): Record<string, string> {
  const chosen = prefix ?? uniquePrefix(server);
  return {
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REGION: server.region,
    AWS_ENDPOINT_URL_S3: server.endpoint,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    CAIRN_S3_ENDPOINT: server.endpoint,
    CAIRN_S3_BUCKET: server.bucket,
    CAIRN_S3_PREFIX: chosen,
    CAIRN_S3_REGION: server.region,
    CAIRN_S3_FORCE_PATH_STYLE: String(server.forcePathStyle),
    CAIRN_S3_URL: `s3://${server.bucket}/${chosen}`,
  };
}

/** A plain SDK client on a server, for reaching behind a store (tampering, inspection). */
export function rawClient(server: S3Endpoint = primaryServer()): S3Client {
  return sdkClient(server);
}

/** Deletes every key under `prefix` on `server`. */
export function deletePrefix(server: S3Endpoint, prefix: string): Promise<void> {
  return deletePrefixOn(server, prefix);
}

/** Closes a store and, on an external endpoint (which outlives the run), deletes its prefix. */
export async function disposeStore(server: S3Endpoint, store: S3Store): Promise<void> {
  await store.close();
  if (server.kind === 'external') await deletePrefixOn(server, store.prefix);
}

/** The conformance target for an S3 server: a fresh prefix per case, removed on an external endpoint. */
export function s3ConformanceTarget(server: S3Endpoint, overrides: Partial<ConformanceTarget> = {}): ConformanceTarget {
  return {
    // Small multipart settings, so that the suite's 12 MiB stream goes through the multipart path.
    setup: async () => s3Store(storeOptions(server, undefined, { multipartThreshold: 5 * 1024 * 1024, partSize: 5 * 1024 * 1024 })),
    teardown: (store) => disposeStore(server, store as S3Store),
    timeoutMs: 60_000,
    ...overrides,
  };
}
