/**
 * Starts real S3 servers on loopback for tests and benchmarks: MinIO (built
 * once by `scripts/build-minio.sh` into ~/.cache/cairn) and moto's server.
 * Each gets a free 127.0.0.1 port, a temporary data directory and generated
 * credentials, and is stopped (and its directory removed) by `stop()`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

/** Connection details of an S3 endpoint, plain data so vitest can `provide` it. */
export interface S3Endpoint {
  /** 'minio', 'moto' or 'external'. */
  readonly kind: string;
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  readonly forcePathStyle: boolean;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Every key a test writes starts with this (unique per run on an external endpoint). */
  readonly basePrefix: string;
}

/** A server this process started. */
export interface RunningServer extends S3Endpoint {
  /** The server's process id, for tests that need to signal it. */
  readonly pid: number;
  stop(): Promise<void>;
}

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Builds MinIO if needed (first run only) and returns the binary's path. */
export function minioBinary(): Promise<string> {
  return new Promise((resolveBin, reject) => {
    execFile('bash', [join(ROOT, 'scripts/build-minio.sh')], { maxBuffer: 1 << 20, timeout: 30 * 60_000 }, (error, stdout, stderr) => {
      if (error) {
        reject(
          new Error(
            `could not build MinIO for the S3 tests (scripts/build-minio.sh): ${stderr.trim() || error.message}. ` +
              'The tests need Go 1.24+ on PATH (https://go.dev/dl, or apt-get install golang).',
          ),
        );
        return;
      }
      resolveBin(stdout.trim().split('\n').pop()!);
    });
  });
}

async function waitForHttp(url: string, child: ChildProcess, what: string, log: () => string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${log()}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status < 500) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${what} did not answer on ${url} within ${timeoutMs} ms:\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function stopper(child: ChildProcess, cleanup: () => Promise<void>): () => Promise<void> {
  const onExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', onExit);
  return async () => {
    process.removeListener('exit', onExit);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await cleanup();
  };
}

/** Keeps the last lines a server printed, for its error message, without growing forever. */
function collectOutput(child: ChildProcess, buffer: string[]): void {
  const add = (d: Buffer): void => {
    buffer.push(d.toString());
    if (buffer.length > 200) buffer.splice(0, buffer.length - 100);
  };
  child.stdout!.on('data', add);
  child.stderr!.on('data', add);
}

function tail(buffer: string[]): () => string {
  return () => buffer.join('').split('\n').slice(-30).join('\n');
}

async function createBucket(server: S3Endpoint): Promise<void> {
  const client = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: server.bucket }));
  } finally {
    client.destroy();
  }
}

/** Starts a MinIO server with a fresh data directory, generated credentials and one bucket. */
export async function startMinio(bucket = 'cairn-test'): Promise<RunningServer> {
  const binary = await minioBinary();
  const dir = await mkdtemp(join(tmpdir(), 'cairn-minio-'));
  const [port, consolePort] = [await freePort(), await freePort()];
  const accessKeyId = `cairn${randomBytes(6).toString('hex')}`;
  const secretAccessKey = randomBytes(18).toString('base64url');
  const output: string[] = [];
  const child = spawn(
    binary,
    ['server', join(dir, 'data'), '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`, '--quiet'],
    {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        MINIO_ROOT_USER: accessKeyId,
        MINIO_ROOT_PASSWORD: secretAccessKey,
        MINIO_BROWSER: 'off',
        MINIO_UPDATE: 'off',
        MINIO_CI_CD: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  collectOutput(child, output);
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = stopper(child, () => rm(dir, { recursive: true, force: true }));
  try {
    await waitForHttp(`${endpoint}/minio/health/live`, child, 'MinIO', tail(output));
    const server = { kind: 'minio', endpoint, region: 'us-east-1', bucket, forcePathStyle: true, accessKeyId, secretAccessKey, basePrefix: '' };
    await createBucket(server);
    return { ...server, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * moto's server, with each request handled under one lock. moto checks a
 * conditional PUT and then stores the object without holding a lock, so on
 * its threaded server two racing `If-Match` writers can both win (a lost
 * update that real S3 and MinIO never allow: the 8 x 50 increment case ends
 * at 398). Serialising requests makes moto keep the contract the suite
 * checks, while connections still run on their own threads.
 */
const MOTO_LAUNCHER = `
import sys, threading
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialised(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple(sys.argv[1], int(sys.argv[2]), serialised, threaded=True)
`;

/** Starts moto's S3 server (`pip install 'moto[server]'`) with one bucket. */
export async function startMoto(bucket = 'cairn-test'): Promise<RunningServer> {
  const port = await freePort();
  const output: string[] = [];
  const child = spawn('python3', ['-c', MOTO_LAUNCHER, '127.0.0.1', String(port)], {
    env: { ...process.env, AWS_ACCESS_KEY_ID: 'moto', AWS_SECRET_ACCESS_KEY: 'moto' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const spawnFailed = new Promise<never>((_, reject) =>
    child.once('error', (error) =>
      reject(new Error(`could not start moto_server (${error.message}); install it with: pip install 'moto[server]'`)),
    ),
  );
  collectOutput(child, output);
  const endpoint = `http://127.0.0.1:${port}`;
  const stop = stopper(child, async () => {});
  try {
    await Promise.race([waitForHttp(`${endpoint}/moto-api/`, child, 'moto_server', tail(output)), spawnFailed]);
    const server = {
      kind: 'moto',
      endpoint,
      region: 'us-east-1',
      bucket,
      forcePathStyle: true,
      accessKeyId: 'moto',
      secretAccessKey: 'moto-secret',
      basePrefix: '',
    };
    await createBucket(server);
    return { ...server, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
