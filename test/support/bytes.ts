/** Test bytes. */

/** `size` pseudo-random bytes from `seed` (xorshift): incompressible, and the same on every run. */
export function noise(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761 + 7;
  for (let j = 0; j < size; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[j] = x & 0xff;
  }
  return out;
}
