import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { STACK_NAME } from '../lib/app.js';
import { formatTemplate, TEMPLATE_PATH } from '../lib/template-file.js';

const run = promisify(execFile);
const INFRA_DIR = fileURLToPath(new URL('..', import.meta.url));
const CDK_BIN = fileURLToPath(new URL('../../node_modules/aws-cdk/bin/cdk', import.meta.url));

let outdir: string;
beforeAll(async () => {
  outdir = await mkdtemp(join(tmpdir(), 'cairn-cdk-synth-'));
});
afterAll(async () => {
  await rm(outdir, { recursive: true, force: true });
});

// The real `cdk synth`, through the CDK CLI and cdk.json, with no AWS
// credentials and no account or region: what a user runs, and what must
// reproduce the committed template byte for byte.
it('`cdk synth` works without an AWS account and reproduces the committed template', async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' };
  for (const name of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_REGION', 'AWS_DEFAULT_REGION']) {
    delete env[name];
  }
  await run(process.execPath, [CDK_BIN, 'synth', '--quiet', '--no-notices', '--output', outdir], {
    cwd: INFRA_DIR,
    env,
    timeout: 90_000,
  });
  const fresh = JSON.parse(await readFile(join(outdir, `${STACK_NAME}.template.json`), 'utf8')) as unknown;
  const committed = await readFile(TEMPLATE_PATH, 'utf8');
  expect(
    committed,
    'infra/template/cairn-bucket.template.json is out of date: run `npm run template -w @cairn/infra` and commit it',
  ).toBe(formatTemplate(fresh));
}, 90_000);

it('keeps the CDK out of the library: aws-cdk-lib is a dependency of this workspace only', async () => {
  const root = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  const infra = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as Record<string, unknown>;
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies']) {
    const deps = (root[field] ?? {}) as Record<string, string>;
    expect(Object.keys(deps).filter((name) => /^(aws-cdk|aws-cdk-lib|constructs)$/.test(name)), field).toEqual([]);
  }
  expect(root.workspaces).toContain('infra');
  expect(infra.private).toBe(true);
  expect(Object.keys(infra.dependencies as Record<string, string>)).toEqual(['aws-cdk-lib', 'constructs']);
});
