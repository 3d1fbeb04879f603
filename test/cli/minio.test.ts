/**
 * The main job through the built binary against a real S3 server (the
 * MinIO the test harness starts): snapshot, push, restore on another
 * machine, verify; corruption behind the store's back; and the S3 failures
 * users meet first (a missing bucket, an unreachable endpoint).
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../support/servers.js';
import { deletePrefix, minioEnv, primaryServer, rawClient, uniquePrefix } from '../support/s3.js';
import { describeTree, makeMixedTree } from '../snapshot/fixtures.js';
import { assertBuilt, cairn, cairnJson, cairnOk } from './run-cli.js';

let work: string;
const prefix = uniquePrefix(primaryServer(), 'cli');
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-s3-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await deletePrefix(primaryServer(), prefix);
});

/** A local store on `name` whose remote is the MinIO prefix; S3 settings come from the environment, as users set them. */
function envFor(name: string): Record<string, string> {
  const s3 = minioEnv(prefix);
  return {
    CAIRN_DIR: join(work, name),
    AWS_ACCESS_KEY_ID: s3.AWS_ACCESS_KEY_ID!,
    AWS_SECRET_ACCESS_KEY: s3.AWS_SECRET_ACCESS_KEY!,
    AWS_REGION: s3.AWS_REGION!,
    CAIRN_REMOTE: s3.CAIRN_S3_URL!,
    CAIRN_S3_ENDPOINT: s3.CAIRN_S3_ENDPOINT!,
    CAIRN_S3_PATH_STYLE: '1',
    // This file tampers with one loose object's key, so its remote stays loose; packed remotes: test/cli/packs.test.ts.
    CAIRN_PACKS: '0',
  };
}

it('snapshot, push to MinIO, restore on another machine: identical; verify finds an object corrupted behind its back', async () => {
  const src = join(work, 'src');
  await mkdir(src);
  await makeMixedTree(src);
  const a = envFor('a');
  await cairnOk(['init'], { env: a });
  const snap = await cairnJson<{ root: string }>(['snapshot', src, '--ref', 'snapshots/s3'], { env: a });
  const pushed = await cairnJson<{ uploaded: number; pushed: unknown[] }>(['push'], { env: a });
  expect(pushed.pushed).toHaveLength(1);

  const b = envFor('b');
  await cairnOk(['init'], { env: b });
  const status = await cairnJson<{ refs: Array<{ ref: string; state: string }> }>(['status'], { env: b });
  expect(status.refs).toEqual([expect.objectContaining({ ref: 'snapshots/s3', state: 'behind' })]);
  await cairnOk(['pull'], { env: b });
  await cairnOk(['restore', 'snapshots/s3', join(work, 'out')], { env: b });
  expect(await describeTree(join(work, 'out'))).toEqual(await describeTree(src));
  const clean = await cairnJson<{ ok: boolean; remote: { checked: number } }>(['verify', '--remote-only'], { env: b });
  expect(clean).toMatchObject({ ok: true, remote: { checked: pushed.uploaded } });

  // Overwrite one object's bytes directly in the bucket.
  const victim = snap.root.slice('sha256:'.length);
  await rawClient().send(
    new PutObjectCommand({
      Bucket: primaryServer().bucket,
      Key: `${prefix}objects/sha256/${victim.slice(0, 2)}/${victim.slice(2)}`,
      Body: 'tampered',
    }),
  );
  const run = await cairn(['verify', '--remote-only'], { env: b });
  expect(run.code).toBe(5);
  expect(run.stdout).toBe(`corrupt remote ${snap.root}\n`);
  expect(run.stderr).toMatch(/1 corrupt/);
  // The local copy is intact.
  expect((await cairnJson<{ ok: boolean }>(['verify', '--local-only'], { env: b })).ok).toBe(true);
}, 120_000);

it('a bucket that does not exist and an unreachable endpoint: one clear line, a non-zero exit, nothing created', async () => {
  const missing: Record<string, string> = { ...envFor('missing'), CAIRN_REMOTE: `s3://cairn-no-such-bucket-${process.pid}/x/` };
  const run = await cairn(['init'], { env: missing });
  expect(run.code).not.toBe(0);
  expect(run.stderr.trim().split('\n')).toHaveLength(1);
  expect(run.stderr).toMatch(/^cairn: init: .*cairn-no-such-bucket/);
  expect(run.stderr).not.toContain(missing.AWS_SECRET_ACCESS_KEY);

  const port = await freePort();
  const down: Record<string, string> = { ...envFor('down'), CAIRN_S3_ENDPOINT: `http://127.0.0.1:${port}` };
  const started = Date.now();
  const unreachable = await cairn(['init'], { env: down });
  expect(Date.now() - started).toBeLessThan(60_000);
  expect(unreachable.code).toBe(6);
  expect(unreachable.stderr.trim().split('\n')).toHaveLength(1);
  expect(unreachable.stderr).toMatch(new RegExp(`^cairn: init: .*127\\.0\\.0\\.1:${port}`));
  expect(unreachable.stderr).not.toContain(down.AWS_SECRET_ACCESS_KEY);

  expect(await readdir(work)).not.toContain('missing');
  expect(await readdir(work)).not.toContain('down');
}, 120_000);
