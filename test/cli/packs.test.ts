/**
 * The main job through the built binary against MinIO with a packed remote
 * (the default for remotes): snapshot, push, restore on another machine; the
 * bucket holds packs, not one key per object; a flipped byte in a pack is
 * reported by verify as a corrupt object, never restored as other bytes.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deletePrefix, minioEnv, primaryServer, rawClient, uniquePrefix } from '../support/s3.js';
import { describeTree, makeMixedTree } from '../snapshot/fixtures.js';
import { parseRemote, resolveConfig, saveConfig } from '../../src/cli/config.js';
import { openRemote } from '../../src/cli/stores.js';
import { PackedStore } from '../../src/layers/packed/packed.js';
import { assertBuilt, cairn, cairnJson, cairnOk } from './run-cli.js';

let work: string;
const prefix = uniquePrefix(primaryServer(), 'cli-packs');
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-packs-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await deletePrefix(primaryServer(), prefix);
});

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
  };
}

async function objectKeys(): Promise<string[]> {
  const client = rawClient();
  try {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await client.send(new ListObjectsV2Command({ Bucket: primaryServer().bucket, Prefix: `${prefix}objects/`, ContinuationToken: token }));
      keys.push(...(out.Contents ?? []).map((c) => c.Key!));
      token = out.NextContinuationToken;
    } while (token !== undefined);
    return keys;
  } finally {
    client.destroy();
  }
}

it('snapshot and push go to MinIO in packs; another machine restores identically; a flipped byte in a pack is reported, not restored', async () => {
  const src = join(work, 'src');
  await mkdir(src);
  await makeMixedTree(src);
  const a = envFor('a');
  await cairnOk(['init'], { env: a });
  await cairnJson(['snapshot', src, '--ref', 'snapshots/packed'], { env: a });
  const pushed = await cairnJson<{ uploaded: number }>(['push'], { env: a });
  const keys = await objectKeys();
  // Far fewer keys than objects: small objects went into packs.
  expect(pushed.uploaded).toBeGreaterThan(20);
  expect(keys.length).toBeLessThan(pushed.uploaded / 4);

  const b = envFor('b');
  await cairnOk(['init'], { env: b });
  await cairnOk(['pull'], { env: b });
  await cairnOk(['restore', 'snapshots/packed', join(work, 'out')], { env: b });
  expect(await describeTree(join(work, 'out'))).toEqual(await describeTree(src));
  const clean = await cairnJson<{ ok: boolean; remote: { checked: number } }>(['verify', '--remote-only'], { env: b });
  expect(clean).toMatchObject({ ok: true, remote: { checked: pushed.uploaded } });

  // Flip one byte in the middle of every pack, behind the store's back.
  const client = rawClient();
  try {
    for (const key of keys) {
      const out = await client.send(new GetObjectCommand({ Bucket: primaryServer().bucket, Key: key }));
      const bytes = Buffer.from(await out.Body!.transformToByteArray());
      if (bytes.subarray(0, 8).toString() !== 'CAIRNPK1') continue;
      bytes[Math.floor(bytes.length / 2)]! ^= 0x20;
      await client.send(new PutObjectCommand({ Bucket: primaryServer().bucket, Key: key, Body: bytes }));
    }
  } finally {
    client.destroy();
  }
  const c = envFor('c');
  await cairnOk(['init'], { env: c });
  const run = await cairn(['verify', '--remote-only'], { env: c });
  expect(run.code).toBe(5);
  expect(run.stdout).toMatch(/^corrupt remote sha256:[0-9a-f]{64}$/m);
  // A fresh machine restoring from the damaged remote fails with an error; it never writes other bytes.
  await cairnOk(['pull'], { env: c });
  const restore = await cairn(['restore', 'snapshots/packed', join(work, 'out-c')], { env: c });
  if (restore.code === 0) expect(await describeTree(join(work, 'out-c'))).toEqual(await describeTree(src));
  else expect(restore.stderr).toMatch(/corrupt|integrity/i);
}, 180_000);

it('remotes pack by default; --no-packs, CAIRN_PACKS=0 and a saved choice turn it off', async () => {
  const dir = join(work, 'config-only');
  const url = 's3://bucket-x/p/';
  expect((await resolveConfig({ dir, remote: url }, {})).remote?.packs).toBe(true);
  expect((await resolveConfig({ dir, remote: url, 'no-packs': true }, {})).remote?.packs).toBe(false);
  expect((await resolveConfig({ dir, remote: url }, { CAIRN_PACKS: '0' })).remote?.packs).toBe(false);
  await saveConfig(dir, { version: 1, remote: { url, packs: false } });
  expect((await resolveConfig({ dir }, {})).remote?.packs).toBe(false);
  const target = (packs: boolean) => parseRemote({ url: `file://${join(work, 'file-remote')}`, packs });
  const { store: withPacks } = await openRemote(target(true), { create: true });
  const { store: without } = await openRemote(target(false), { create: true });
  expect(withPacks).toBeInstanceOf(PackedStore);
  expect(without).not.toBeInstanceOf(PackedStore);
  await Promise.all([withPacks.close(), without.close()]);
});
