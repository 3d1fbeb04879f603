import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { assertRefName, InvalidRefNameError, isValidRefName } from '../src/index.js';
import { BAD_REF_NAMES } from './conformance.js';

describe('ref names', () => {
  it('accepts ordinary names', () => {
    for (const name of ['main', 'heads/main', 'tags/v1.2.3', 'a-b_c.d/e', 'x'.repeat(1024), '.hidden/x', 'a..b']) {
      expect(isValidRefName(name), name).toBe(true);
    }
  });

  it('rejects every unsafe name with InvalidRefNameError naming the problem', () => {
    for (const name of BAD_REF_NAMES) {
      expect(() => assertRefName(name), JSON.stringify(name)).toThrow(InvalidRefNameError);
    }
    expect(() => assertRefName('../x')).toThrow(/"\.\." segment/);
    expect(() => assertRefName(null)).toThrow(/must be a string/);
  });

  it('an accepted name never resolves outside its root', async () => {
    const path = await import('node:path');
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'ab./-_\\\0\u00e9%'), maxLength: 30 }), (name) => {
        if (!isValidRefName(name)) return;
        const resolved = path.resolve('/root/refs', name);
        expect(resolved.startsWith('/root/refs/')).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});
