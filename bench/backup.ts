/**
 * The backup job, against the tool users would pick instead: `cairn snapshot
 * + push` of one generated tree to MinIO with packs (the default), packs
 * encrypted (`init --encrypt`) and loose (`CAIRN_PACKS=0`), beside `restic
 * backup` of the same tree to the same MinIO, in the same run; then a
 * restore of it on a fresh local directory (`cairn init` + `cairn restore`,
 * `restic restore`), checked byte for byte. Every request goes through one
 * counting proxy, which also counts the bytes sent.
 *
 * restic is a bench tool only, never a dependency: it is looked up as
 * `$RESTIC_BIN`, then `~/.cache/cairn/restic-bin/restic`, then `restic` on
 * PATH; build it with
 * `GOBIN=~/.cache/cairn/restic-bin go install github.com/restic/restic/cmd/restic@latest`.
 * Without it the restic row says so.
 *
 * Size: CAIRN_BENCH_BACKUP_MIB (default 1024 = 1 GiB). The tree is random
 * bytes (as cli.ts makes it), so compression gains nothing for either tool.
 */
import { spawn } from 'node:child_process';
import { access, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMinio } from '../test/support/servers.js';
import { cairn, countingProxy, generate } from './cli.js';
import { printTable, type Row } from './table.js';

const MiB = 2 ** 20;

async function findRestic(): Promise<string | undefined> {
  const candidates = [process.env.RESTIC_BIN, join(homedir(), '.cache/cairn/restic-bin/restic')];
  for (const path of candidates) {
    if (path === undefined || path === '') continue;
    try {
      await access(path);
      return path;
    } catch {
      // try the next
    }
  }
  const onPath = await new Promise<boolean>((resolve) => {
    const child = spawn('restic', ['version'], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
  return onPath ? 'restic' : undefined;
}

function runTool(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${bin} ${args[0]} exited ${code}: ${Buffer.concat(err).toString().slice(-2000)}`))));
  });
}

export async function run(): Promise<void> {
  const totalMiB = Number(process.env.CAIRN_BENCH_BACKUP_MIB ?? 1024);
  const server = await startMinio('cairn-bench-backup');
  const proxy = await countingProxy(new URL(server.endpoint));
  const work = await mkdtemp(join(tmpdir(), 'cairn-bench-backup-'));
  const restic = await findRestic();
  try {
    const src = join(work, 'src');
    const files = (await generate(src, totalMiB)).flat();
    let bytes = 0;
    for (const f of files) bytes += (await stat(f)).size;
    const mib = bytes / MiB;
    const puts = (): number => (proxy.counts.get('PUT') ?? 0) + (proxy.counts.get('POST') ?? 0);
    const requests = (): number => [...proxy.counts.values()].reduce((a, b) => a + b, 0);
    const measure = async (fn: () => Promise<void>): Promise<{ seconds: number; puts: number; requests: number; sentMiB: number }> => {
      const [p0, r0, b0] = [puts(), requests(), proxy.sent.bytes];
      const start = performance.now();
      await fn();
      return { seconds: (performance.now() - start) / 1000, puts: puts() - p0, requests: requests() - r0, sentMiB: (proxy.sent.bytes - b0) / MiB };
    };
    const credentials = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_REGION: server.region,
    };
    type Mode = 'packs' | 'encrypted' | 'loose';
    const cairnEnv = (name: string, mode: Mode, local: string): NodeJS.ProcessEnv => ({
      ...credentials,
      CAIRN_DIR: join(work, local),
      CAIRN_REMOTE: `s3://${server.bucket}/${name}/`,
      CAIRN_S3_ENDPOINT: proxy.url,
      CAIRN_PACKS: mode === 'loose' ? '0' : '1',
      ...(mode === 'encrypted' ? { CAIRN_PASSWORD: 'bench-only' } : {}),
    });
    const initArgs = (mode: Mode): string[] => (mode === 'encrypted' ? ['init', '--encrypt'] : ['init']);
    const cairnJob = (name: string, mode: Mode) => async (): Promise<void> => {
      const env = cairnEnv(name, mode, `local-${name}`);
      await cairn(initArgs(mode), env);
      await cairn(['snapshot', src, '--ref', 'snapshots/bench', '--json'], env);
      await cairn(['push', '--json'], env);
    };
    // A restore on a machine that has only the remote: a fresh local directory joins it and restores the snapshot.
    const cairnRestore = (name: string, mode: Mode) => async (): Promise<void> => {
      const env = cairnEnv(name, mode, `restore-${name}`);
      await cairn(initArgs(mode), env);
      await cairn(['pull', '--json'], env);
      await cairn(['restore', 'snapshots/bench', join(work, `restored-${name}`)], env);
    };
    const sameTree = async (dir: string): Promise<boolean> => {
      for (const file of files) {
        const copy = join(dir, file.slice(src.length));
        if (!(await readFile(file)).equals(await readFile(copy))) return false;
      }
      return true;
    };
    const cleanUp = async (...names: string[]): Promise<void> => {
      for (const name of names) await rm(join(work, name), { recursive: true, force: true });
    };
    const rows: Row[] = [];
    const row = (run: string, m: { seconds: number; puts: number; requests: number; sentMiB: number }): Row => ({
      run,
      seconds: m.seconds,
      'MiB/s': mib / m.seconds,
      'PUTs (incl. POST)': m.puts,
      'PUTs/MiB': m.puts / mib,
      'requests, all kinds': m.requests,
      'MiB sent': m.sentMiB,
    });
    const byMethod = (): string => [...proxy.counts].map(([method, n]) => `${method} ${n}`).join(', ');
    const restoreRows: Row[] = [];
    const restoreRow = (run: string, m: { seconds: number; requests: number }, intact: boolean): Row => ({
      run,
      seconds: m.seconds,
      'MiB/s': mib / m.seconds,
      'requests, all kinds': m.requests,
      'byte-identical': intact ? 'yes' : 'NO',
    });
    const packed = await measure(cairnJob('cairn-packed', 'packs'));
    console.log(`(requests by method after the packed backup: ${byMethod()})`);
    rows.push(row('cairn snapshot + push, packs (default)', packed));
    await cleanUp('local-cairn-packed');
    const packedRestore = await measure(cairnRestore('cairn-packed', 'packs'));
    restoreRows.push(restoreRow('cairn init + pull + restore, packs', packedRestore, await sameTree(join(work, 'restored-cairn-packed'))));
    await cleanUp('restore-cairn-packed', 'restored-cairn-packed');
    const encrypted = await measure(cairnJob('cairn-encrypted', 'encrypted'));
    rows.push(row('cairn snapshot + push, packs encrypted (init --encrypt)', encrypted));
    await cleanUp('local-cairn-encrypted');
    const encryptedRestore = await measure(cairnRestore('cairn-encrypted', 'encrypted'));
    restoreRows.push(restoreRow('cairn init + pull + restore, encrypted', encryptedRestore, await sameTree(join(work, 'restored-cairn-encrypted'))));
    await cleanUp('restore-cairn-encrypted', 'restored-cairn-encrypted');
    const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`;
    console.log(
      `(encrypted vs plain packs, speed: push ${ratio(packed.seconds, encrypted.seconds)}, restore ${ratio(packedRestore.seconds, encryptedRestore.seconds)}; PUTs ${ratio(encrypted.puts, packed.puts)})`,
    );
    const loose = await measure(cairnJob('cairn-loose', 'loose'));
    rows.push(row('cairn snapshot + push, loose (CAIRN_PACKS=0)', loose));
    await cleanUp('local-cairn-loose');
    if (restic === undefined) {
      rows.push({ run: 'restic backup: not found (see bench/backup.ts for how to build it)' });
    } else {
      const env: NodeJS.ProcessEnv = {
        ...credentials,
        RESTIC_REPOSITORY: `s3:${proxy.url}/${server.bucket}/restic`,
        RESTIC_PASSWORD: 'bench-only',
        RESTIC_CACHE_DIR: join(work, 'restic-cache'),
      };
      // `init` writes the repository's keys and config: part of a first backup's cost, as cairn's `init` is.
      const m = await measure(async () => {
        await runTool(restic, ['init'], env);
        await runTool(restic, ['backup', '--quiet', src], env);
      });
      rows.push(row('restic init + backup (always encrypted)', m));
      const target = join(work, 'restored-restic');
      const r = await measure(() => runTool(restic, ['restore', 'latest', '--quiet', '--target', target], { ...env, RESTIC_CACHE_DIR: join(work, 'restic-cache-restore') }));
      // restic restores the absolute source path under the target.
      restoreRows.push(restoreRow('restic restore latest (always encrypted)', r, await sameTree(join(target, src))));
      console.log(
        `(vs restic, time: packed ${ratio(packed.seconds, m.seconds)}, encrypted ${ratio(encrypted.seconds, m.seconds)}; restore: encrypted ${ratio(encryptedRestore.seconds, r.seconds)}; PUTs: encrypted ${ratio(encrypted.puts, m.puts)}; packed vs loose: time ${ratio(packed.seconds, loose.seconds)}, PUTs ${ratio(packed.puts, loose.puts)})`,
      );
    }
    printTable(`Backup job: ${Math.round(mib)} MiB, ${files.length.toLocaleString('en-US')} files, first backup to MinIO on loopback`, rows);
    printTable(`Restore of the same snapshot on a fresh local directory (only the remote)`, restoreRows);
  } finally {
    await proxy.close();
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
