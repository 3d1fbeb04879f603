/** The CLI's thousands separators match `toLocaleString('en-US')` without loading Intl. */
import { describe, expect, it } from 'vitest';
import { formatCount } from '../../src/cli/output.js';

describe('formatCount', () => {
  it.each([0, 7, 999, 1000, 12_345, 999_999, 1_000_000, 123_456_789, -1234, Number.MAX_SAFE_INTEGER])('%d as en-US writes it', (n) => {
    expect(formatCount(n)).toBe(n.toLocaleString('en-US'));
  });
});
