/**
 * `localstack/run-suite.sh` is how users run the S3 conformance suite against
 * LocalStack. Docker is not available here, so the same script is pointed at
 * the MinIO this test run already has (started by the global setup): that
 * tests everything on our side of the endpoint (the variables, the external
 * endpoint path of the harness, the exit status) in every CI run. It runs the
 * quick subset (CAIRN_SUITE_QUICK=1); the full suite already runs on MinIO in
 * test/backends/s3.test.ts.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DeleteBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/servers.js';
import { primaryServer, rawClient, serverOf, type S3Endpoint } from '../support/s3.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SCRIPT = 'localstack/run-suite.sh';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the script with the environment of a user who set only what it documents. */
function runSuite(env: Record<string, string>, timeoutMs: number): Promise<Run> {
  // Drop this test run's own settings so the child decides from `env` alone.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !name.startsWith('VITEST') && !name.startsWith('CAIRN_') && !name.startsWith('AWS_') && name !== 'NODE_ENV',
    ),
  );
  return new Promise((resolve, reject) => {
    // The verbose reporter names every case, so the output shows which suite ran;
    // the summary reporter prints the counts line checked below.
    const reporters = ['--reporter=verbose', '--reporter=./test/summary-reporter.ts'];
    const child = spawn('bash', [SCRIPT, ...reporters], { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const server: S3Endpoint = serverOf('minio') ?? primaryServer();
// A bucket of its own, which only the child's harness creates: its existence afterwards
// proves the suite ran against this server and not one the child started itself.
const bucket = `cairn-run-suite-${randomBytes(4).toString('hex')}`;

afterAll(async () => {
  const client = rawClient(server);
  try {
    await client.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => undefined);
  } finally {
    client.destroy();
  }
});

describe('localstack/run-suite.sh', () => {
  it(`passes the quick S3 conformance subset against the harness's ${server.kind}`, async () => {
    const run = await runSuite(
      {
        CAIRN_TEST_S3_ENDPOINT: server.endpoint,
        CAIRN_TEST_S3_BUCKET: bucket,
        CAIRN_TEST_S3_REGION: server.region,
        CAIRN_TEST_S3_FORCE_PATH_STYLE: String(server.forcePathStyle),
        AWS_ACCESS_KEY_ID: server.accessKeyId,
        AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
        CAIRN_SUITE_QUICK: '1',
      },
      110_000,
    );
    const output = `${run.stdout}\n${run.stderr}`;
    expect(run.code, output).toBe(0);
    expect(run.stdout).toContain(`against ${server.endpoint} (bucket ${bucket}`);
    // The external-endpoint suite, not a local server's.
    expect(run.stdout).toContain('S3 on external');
    const summary = /vitest: (\d+) passed, (\d+) failed/.exec(run.stdout);
    expect(summary, output).not.toBeNull();
    expect(Number(summary![1])).toBeGreaterThanOrEqual(3);
    expect(Number(summary![2])).toBe(0);
    // Credentials never reach the output.
    expect(output).not.toContain(server.secretAccessKey);

    const client = rawClient(server);
    try {
      await expect(client.send(new HeadBucketCommand({ Bucket: bucket }))).resolves.toBeDefined();
    } finally {
      client.destroy();
    }
  }, 120_000);

  it('stops with a message saying what to start when no endpoint answers', async () => {
    const port = await freePort();
    const run = await runSuite({ CAIRN_TEST_S3_ENDPOINT: `http://127.0.0.1:${port}` }, 30_000);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`no S3 endpoint answers at http://127.0.0.1:${port}`);
    expect(run.stderr).toContain('docker compose -f localstack/docker-compose.yml up -d --wait');
    expect(run.stdout).not.toContain('vitest');
  });
});

describe('localstack/docker-compose.yml', () => {
  it('pins a LocalStack release with conditional writes that starts without an account', async () => {
    const compose = await readFile(`${ROOT}localstack/docker-compose.yml`, 'utf8');
    const image = /^\s*image:\s*localstack\/localstack:(\S+)\s*$/m.exec(compose)?.[1];
    // 4.14.0: If-None-Match (3.7), If-Match (4.0.3), atomic concurrent If-Match, conditional copy.
    // 2026.x (CalVer) images need LOCALSTACK_AUTH_TOKEN, and "latest" is one of them.
    expect(image).toMatch(/^4\.(1[4-9]|[2-9]\d)\.\d+$/);
    expect(compose).toMatch(/"127\.0\.0\.1:4566:4566"/);
    expect(compose).toContain('./init/ready.d:/etc/localstack/init/ready.d');
  });

  it('mounts an executable init hook that creates the bucket', async () => {
    const hook = `${ROOT}localstack/init/ready.d/10-create-bucket.sh`;
    await access(hook, constants.X_OK);
    const text = await readFile(hook, 'utf8');
    expect(text).toMatch(/awslocal s3api create-bucket --bucket "\$bucket"/);
    const syntax = await new Promise<number | null>((resolve) =>
      spawn('bash', ['-n', hook], { stdio: 'ignore' }).on('close', resolve),
    );
    expect(syntax).toBe(0);
  });
});
