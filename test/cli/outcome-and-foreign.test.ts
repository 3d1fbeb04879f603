/**
 * The CLI's words for an unclear remote ref write and for a foreign S3
 * entry (issue 16): a documented exit code and what to do; one escaped,
 * cut line per foreign key.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { EXIT, exitCodeOf, oneLine } from '../../src/cli/exit-codes.js';
import { foreignLine } from '../../src/cli/stores.js';
import { OutcomeUnknownError } from '../../src/errors.js';
import { ROOT } from './run-cli.js';

const attempt = { ref: 'heads/main', writeId: 'w1', next: `sha256:${'a'.repeat(64)}`, expected: null, bases: [] };

describe('ERR_OUTCOME_UNKNOWN', () => {
  it('exits with its own documented code and says what to do', async () => {
    const error = new OutcomeUnknownError('swap of heads/main on s3://b/p may or may not have landed', attempt);
    expect(exitCodeOf(error)).toBe(EXIT.outcomeUnknown);
    expect(EXIT.outcomeUnknown).toBe(8);
    const line = oneLine(error);
    expect(line).toMatch(/^swap of heads\/main/);
    expect(line).toMatch(/run the same command again/);
    expect(line).not.toContain('\n');
    const docs = await readFile(`${ROOT}/docs/cli.md`, 'utf8');
    expect(docs).toMatch(/\| 8 \| .*may or may not/);
  });
});

describe('foreign S3 entries', () => {
  it('one line each, the key escaped (no control characters) and cut', () => {
    const key = `p/refs/heads/\u001b[31mred\n${'x'.repeat(500)}`;
    const line = foreignLine({ kind: 'ref', key, reason: 'its body is not a Cairn ref' });
    expect(line).not.toMatch(/[\u0000-\u001f]/);
    expect(line).toContain('\\u001b[31mred\\n');
    expect(line.length).toBeLessThan(260);
    expect(line).toMatch(/another tool wrote: .*\(its body is not a Cairn ref\)$/);
  });
});
