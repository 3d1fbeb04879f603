/**
 * Vitest global setup: starts the S3 servers the tests use, once per run,
 * and `provide`s their connection details (read them with the helpers in
 * `s3.ts`). Which servers run, and how to point the tests at an external
 * endpoint, is described at the top of `s3.ts`.
 */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { TestProject } from 'vitest/node';
import { deletePrefixOn, externalEndpoint, wantedServers } from './s3-env.js';
import { startMinio, startMoto, type RunningServer, type S3Endpoint } from './servers.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The S3 servers of this run, primary first. */
    cairnS3: S3Endpoint[];
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const wanted = wantedServers();
  const started: RunningServer[] = [];
  const endpoints: S3Endpoint[] = [];
  const results = await Promise.allSettled(
    wanted.map(async (kind) => {
      if (kind === 'minio') return startMinio();
      if (kind === 'moto') return startMoto();
      return undefined;
    }),
  );
  for (const result of results) if (result.status === 'fulfilled' && result.value) started.push(result.value);
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await Promise.all(started.map((s) => s.stop()));
    throw failure.reason;
  }
  for (const kind of wanted) {
    if (kind === 'external') {
      const base = externalEndpoint(`cairn-test/${new Date().toISOString().slice(0, 10)}-${randomBytes(4).toString('hex')}/`);
      await ensureBucket(base);
      endpoints.push(base);
    } else {
      const server = started.find((s) => s.kind === kind)!;
      const { stop: _stop, pid: _pid, ...plain } = server;
      endpoints.push(plain);
    }
  }
  project.provide('cairnS3', endpoints);
  return async () => {
    for (const endpoint of endpoints) {
      if (endpoint.kind === 'external') await deletePrefixOn(endpoint, endpoint.basePrefix).catch(() => undefined);
    }
    await Promise.all(started.map((s) => s.stop()));
  };
}

async function ensureBucket(endpoint: S3Endpoint): Promise<void> {
  const client = new S3Client({
    endpoint: endpoint.endpoint,
    region: endpoint.region,
    forcePathStyle: endpoint.forcePathStyle,
    credentials: { accessKeyId: endpoint.accessKeyId, secretAccessKey: endpoint.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: endpoint.bucket }));
  } catch (error) {
    const name = (error as { name?: string }).name;
    // A bucket made beforehand (and credentials that may not create one) are fine.
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists' && name !== 'AccessDenied') throw error;
  } finally {
    client.destroy();
  }
}
