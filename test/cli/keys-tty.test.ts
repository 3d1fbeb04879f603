/**
 * The password prompt on a real terminal: the built binary runs under
 * `script` (util-linux), which gives it a pseudo-terminal. Each answer is
 * typed only once its prompt is shown, as a person would. The prompt does
 * not echo: the password never appears in what the terminal shows.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { assertBuilt, BIN, cairnOk } from './run-cli.js';

vi.setConfig({ testTimeout: 60_000 });

const HAS_SCRIPT = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
const PASSWORD = 'typed-Secret-on-tty';

let work: string;
beforeAll(async () => {
  assertBuilt();
  work = await mkdtemp(join(tmpdir(), 'cairn-cli-tty-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Runs `cairn args` on a pseudo-terminal, typing each answer after the prompt that matches it. */
function onTerminal(args: readonly string[], env: Record<string, string>, answers: ReadonlyArray<[RegExp, string]>): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { PATH: process.env.PATH, HOME: process.env.HOME, TERM: 'dumb', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  let next = 0;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    screen += chunk;
    while (next < answers.length && answers[next]![0].test(screen)) {
      const [prompt, answer] = answers[next++]!;
      // Forget the prompt just answered, so that the same text asked again is a new prompt.
      screen = screen.replace(prompt, '<answered>');
      child.stdin.write(`${answer}\r`);
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}

describe.skipIf(!HAS_SCRIPT)('the password prompt on a terminal (needs util-linux "script")', () => {
  it('asks without echo; the right password opens, a wrong one exits 9; a new password is asked twice and must match', async () => {
    const env = { CAIRN_DIR: join(work, 'a') };
    const remote = `file://${join(work, 'remote')}`;
    await cairnOk(['init', '--encrypt', '--remote', remote, '--kdf-work', '10'], { env: { ...env, CAIRN_PASSWORD: PASSWORD } });

    const right = await onTerminal(['ref', 'ls'], env, [[/password for remote file:\/\/\S+: /, PASSWORD]]);
    expect(right.code, right.screen).toBe(0);
    expect(right.screen).not.toContain(PASSWORD);

    const wrong = await onTerminal(['ref', 'ls'], env, [[/password for remote /, 'not-the-password']]);
    expect(wrong.code, wrong.screen).toBe(9);
    expect(wrong.screen).not.toContain('not-the-password');

    const differ = await onTerminal(['key', 'add', '--kdf-work', '10'], env, [
      [/password for remote /, PASSWORD],
      [/password for the new key: /, 'new-one-1'],
      [/the same password again: /, 'new-one-2'],
    ]);
    expect(differ.code, differ.screen).toBe(2);
    expect(differ.screen).toMatch(/the two passwords differ; nothing was changed/);

    const added = await onTerminal(['key', 'add', '--kdf-work', '10'], env, [
      [/password for remote /, PASSWORD],
      [/password for the new key: /, 'second-Secret'],
      [/the same password again: /, 'second-Secret'],
    ]);
    expect(added.code, added.screen).toBe(0);
    expect(added.screen).not.toMatch(/Secret/);
    await cairnOk(['ref', 'ls'], { env: { ...env, CAIRN_PASSWORD: 'second-Secret' } });
  });
});
