/**
 * Tests what users import: the built package through its own name and
 * `exports` map (dist/, built by `npm test` before vitest runs).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * Imports `specifier` in a fresh node, from the package root (so the
 * package's own name resolves through its `exports`), with a module hook
 * that reports every URL resolved; returns those URLs. The hook runs on
 * Node's loader thread and reports over a MessagePort; a final round trip
 * on the same port makes sure every report has arrived.
 */
async function urlsLoadedBy(specifier: string): Promise<string[]> {
  const hook = [
    'let port;',
    "export async function initialize(data) { port = data.port; port.on('message', () => port.postMessage({ done: true })); }",
    'export async function resolve(specifier, context, next) { const r = await next(specifier, context); port.postMessage({ url: r.url }); return r; }',
  ].join('\n');
  const main = [
    "import { register } from 'node:module';",
    "import { MessageChannel } from 'node:worker_threads';",
    'const { port1, port2 } = new MessageChannel();',
    'const urls = []; let done; const flushed = new Promise((r) => (done = r));',
    "port1.on('message', (m) => (m.done ? done() : urls.push(m.url)));",
    `register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)}, { data: { port: port2 }, transferList: [port2] });`,
    'await import(process.argv[1]);',
    "port1.postMessage('flush'); await flushed; port1.close();",
    'process.stdout.write(JSON.stringify(urls));',
  ].join('\n');
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', main, specifier], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  });
  return JSON.parse(stdout) as string[];
}

const heavy = /\/node_modules\/(@aws-sdk|@smithy|ioredis)\//;

describe('the published package', () => {
  it('declares types first for every export and a bin for the CLI', async () => {
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
      bin: Record<string, string>;
      engines: Record<string, string>;
      type: string;
    };
    expect(pkg.type).toBe('module');
    expect(pkg.bin.cairn).toBe('./dist/cli/main.js');
    expect(pkg.engines.node).toBe('>=20.19');
    for (const [subpath, target] of Object.entries(pkg.exports)) {
      if (typeof target === 'string') continue;
      expect(Object.keys(target)[0], subpath).toBe('types');
      await expect(readFile(new URL(`../${target.types}`, import.meta.url)), subpath).resolves.toBeDefined();
    }
  });

  it('works through the package entry point', async () => {
    const cairn = await import('cairn');
    const store = cairn.memoryStore();
    const hash = await store.put(new TextEncoder().encode('from dist'));
    expect(hash).toBeInstanceOf(cairn.Hash);
    expect(new TextDecoder().decode(await store.get(hash))).toBe('from dist');
    await expect(store.getRef('../x')).rejects.toBeInstanceOf(cairn.InvalidRefNameError);
  });

  it('the root entry point loads neither the AWS SDK nor ioredis; the backend entry points do', async () => {
    const [root, s3, redis] = await Promise.all([urlsLoadedBy('cairn'), urlsLoadedBy('cairn/backends/s3'), urlsLoadedBy('cairn/backends/redis')]);
    // The hook saw the root's own modules: the check below is not vacuous.
    expect(root.some((url) => url.endsWith('/dist/index.js'))).toBe(true);
    expect(root.some((url) => url.includes('/node_modules/lru-cache/'))).toBe(true);
    expect(root.filter((url) => heavy.test(url))).toEqual([]);
    expect(s3.some((url) => url.includes('/node_modules/@aws-sdk/client-s3/'))).toBe(true);
    expect(redis.some((url) => url.includes('/node_modules/ioredis/'))).toBe(true);
  }, 60_000);
});
