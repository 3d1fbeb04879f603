/**
 * The library examples run and print what they promise: docs that run.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function runExample(name: string): string {
  const result = spawnSync(process.execPath, ['--import', 'tsx', `examples/${name}`], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(result.status, `${name} failed: ${result.stderr}`).toBe(0);
  return result.stdout;
}

it('examples/encrypted-remote.ts: nothing readable in the remote, the password reopens it, a wrong one is refused', () => {
  const out = runExample('encrypted-remote.ts');
  expect(out).toContain("plaintext or addresses in the remote's files: none");
  expect(out).toContain('a wrong password: WrongPasswordError');
  expect(out).toContain('notes/latest -> PLAINTEXT-NOTE: meet at noon');
  expect(out.match(/^key [0-9a-f]{16} /gm)).toHaveLength(2);
}, 60_000);

it('examples/snapshot-library.ts: snapshots, diff, restore, gc and verify', () => {
  const out = runExample('snapshot-library.ts');
  expect(out).toMatch(/first snapshot sha256:[0-9a-f]{64}: 2 files/);
  expect(out).toMatch(/verify: \d+ objects, ok = true/);
}, 60_000);
