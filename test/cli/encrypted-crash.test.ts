/**
 * An encrypted push killed with SIGKILL at random moments, six times, then
 * run to the end: after every kill the remote verifies (nothing published
 * names missing or partial bytes, nothing undecryptable), and at the end a
 * second machine restores the snapshot byte for byte. No password reaches
 * any output.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeTree } from '../snapshot/fixtures.js';
import { assertBuilt, cairn, cairnOk, type CliRun } from './run-cli.js';

const PASSWORD = 'crash-test password 7f3a';
let work: string;
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-enc-crash-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

it('6 SIGKILLs of an encrypted push: the remote verifies after each, and the finished push restores byte for byte', async () => {
  const remote = `file://${join(work, 'remote')}`;
  const a = { CAIRN_DIR: join(work, 'a'), CAIRN_PASSWORD: PASSWORD };
  const outputs: CliRun[] = [];
  const run = async (args: string[], env: Record<string, string>): Promise<string> => {
    const result = await cairn(args, { env });
    outputs.push(result);
    expect(result.code, `cairn ${args.join(' ')}: ${result.stderr}`).toBe(0);
    return result.stdout;
  };
  await run(['init', '--remote', remote, '--encrypt', '--kdf-work', '10'], a);
  const src = join(work, 'src');
  for (let d = 0; d < 20; d++) {
    await mkdir(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) await writeFile(join(src, `d${d}`, `f${f}`), randomBytes(500 + ((d * 100 + f) % 7) * 1000));
  }
  await writeFile(join(src, 'large.bin'), randomBytes(6 * 2 ** 20));
  await run(['snapshot', src, '--ref', 'snapshots/crash'], a);

  let killed = 0;
  for (let round = 0; round < 6; round++) {
    const delay = 150 + round * 120;
    const push = await cairn(['push'], {
      env: a,
      onSpawn: (child) => {
        const timer = setTimeout(() => child.kill('SIGKILL'), delay);
        child.on('exit', () => clearTimeout(timer));
      },
    });
    outputs.push(push);
    if (push.signal === 'SIGKILL') killed++;
    else expect(push.code, push.stderr).toBe(0);
    // What a killed push left is either published whole or not at all: the remote verifies.
    await run(['verify', '--remote-only'], a);
  }
  expect(killed, 'no push was killed mid-way; the test proves nothing').toBeGreaterThan(0);
  await run(['push'], a);
  await run(['verify', '--remote-only'], a);

  const b = { CAIRN_DIR: join(work, 'b'), CAIRN_PASSWORD: PASSWORD };
  await run(['init', '--remote', remote, '--encrypt'], b);
  await run(['pull'], b);
  const out = join(work, 'restored');
  await run(['restore', 'snapshots/crash', out], b);
  expect(await describeTree(out)).toEqual(await describeTree(src));
  for (const output of outputs) expect(output.stdout + output.stderr).not.toContain(PASSWORD);
}, 240_000);
