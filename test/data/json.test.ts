import { describe, expect, it } from 'vitest';
import { assertJsonValue, encodeJson, MAX_JSON_DEPTH } from '../../src/data/json.js';
import { InvalidArgumentError } from '../../src/index.js';

describe('JSON values', () => {
  it('accepts values that read back unchanged', () => {
    const values: unknown[] = [null, true, 0, -1.5, 1e300, '', 'caf\u00e9 \ud83d\ude00', [], {}, [1, [2, [3]]], { a: { b: [null, 'x'] } }];
    for (const value of values) {
      const bytes = encodeJson(value, 'value');
      expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual(value);
    }
    const nullProto = Object.assign(Object.create(null) as object, { a: 1 });
    expect(() => assertJsonValue(nullProto, 'value')).not.toThrow();
  });

  it('names the path of the first part that would not round-trip', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ a: [1, { b: undefined }] }, /value\.a\[1\]\.b is undefined/],
      [{ 'odd key': Number.NaN }, /value\["odd key"\] is NaN/],
      [{ when: new Date(0) }, /value\.when is a Date/],
      [[new Uint8Array(1)], /value\[0\] is a Uint8Array/],
      [{ big: 1n }, /BigInt/],
      [Object.defineProperty({}, 'g', { get: () => 1, enumerable: true }), /value\.g is a getter/],
      [Object.defineProperty({}, 'h', { value: 1, enumerable: false }), /value\.h is not enumerable/],
      [{ [Symbol('s')]: 1 }, /symbol keys/],
      [Object.assign([1, 2], { extra: 3 }), /non-index properties/],
    ];
    for (const [value, message] of cases) {
      expect(() => assertJsonValue(value, 'value')).toThrow(InvalidArgumentError);
      expect(() => assertJsonValue(value, 'value')).toThrow(message);
    }
  });

  it('refuses cycles and very deep nesting, but not a shared (non-cyclic) object', () => {
    const shared = { x: 1 };
    expect(() => assertJsonValue({ a: shared, b: shared }, 'value')).not.toThrow();
    const cycle: unknown[] = [];
    cycle.push({ back: cycle });
    expect(() => assertJsonValue(cycle, 'value')).toThrow(/cycle/);
    let deep: unknown = 1;
    for (let i = 0; i < MAX_JSON_DEPTH + 1; i++) deep = [deep];
    expect(() => assertJsonValue(deep, 'value')).toThrow(/nested more than/);
  });
});
