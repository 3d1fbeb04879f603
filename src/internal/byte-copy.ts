/**
 * Fast copies of small byte arrays, for read paths that must hand each
 * caller bytes of its own (the cache layer's hits).
 *
 * @module
 */

/** Objects up to this size are copied into shared slabs rather than each into its own new ArrayBuffer. */
const SLAB_OBJECT_MAX = 8 * 1024;
const SLAB_BYTES = 64 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabOffset = 0;

/**
 * A real copy (`Buffer#slice`, which inner stores may hand us, makes a view).
 * Small objects are copied into a shared 64 KiB slab, as Node's Buffer pool
 * does: allocating one ArrayBuffer per hit cost more than the rest of the
 * hit path together (measured 2-4x slower copies). A caller that keeps a
 * copy pins at most one slab; like any pooled Buffer, the copy may have a
 * non-zero `byteOffset` into a larger `buffer`.
 */
export function copyOf(bytes: Uint8Array): Uint8Array {
  const length = bytes.length;
  if (length === 0 || length > SLAB_OBJECT_MAX) return Uint8Array.prototype.slice.call(bytes);
  if (slabOffset + length > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabOffset = 0;
  }
  // set-then-subarray measured about 1.7x faster than constructing a view and setting it.
  slab.set(bytes, slabOffset);
  const copy = slab.subarray(slabOffset, slabOffset + length);
  // 8-byte aligned, so callers may view the copy with wider typed arrays.
  slabOffset += (length + 7) & ~7;
  return copy;
}
