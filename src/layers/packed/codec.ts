/**
 * The blob codec: the one place where a blob's bytes are transformed on the
 * way into a pack and back. It compresses (zstd, per blob, skipped when it
 * does not pay), then, in an encrypted store, seals the result
 * (`sealing.ts`), so that the writer and the reader never look inside
 * stored bytes. Decoding opens the box first: nothing reaches zstd that
 * did not authenticate.
 *
 * zstd comes from `@bokuweb/zstd-wasm` (WebAssembly: the same code on Node 20
 * and 24, no native build, no download at install). Its `decompress`
 * allocates what the frame header declares, so a frame is only decoded after
 * {@link zstdContentSize} has checked that it declares exactly the length
 * the index promised: memory is bounded by the index entry, never by the
 * remote's bytes.
 *
 * @module
 */
import { createRequire } from 'node:module';
import { IntegrityError } from '../../errors.js';
import type { Hash } from '../../hash.js';
import { Compression, type CipherCode, type CompressionCode } from './format.js';
import { plainSealer, type Sealer } from './sealing.js';

interface ZstdWasm {
  init(): Promise<void>;
  compress(bytes: Uint8Array, level?: number): Uint8Array;
  decompress(bytes: Uint8Array): Uint8Array;
}

// Loaded on first use, not at import: importing the library (or starting the CLI) must not pay for the WebAssembly module.
// The package is CommonJS with a WebAssembly file beside it; require keeps its own loader happy.
let zstdModule: ZstdWasm | undefined;
let ready: Promise<void> | undefined;
function zstd(): ZstdWasm {
  return (zstdModule ??= createRequire(import.meta.url)('@bokuweb/zstd-wasm') as ZstdWasm);
}

/** Stored bytes and how they were encoded. */
export interface EncodedBlob {
  readonly bytes: Uint8Array;
  readonly compression: CompressionCode;
  readonly cipher: CipherCode;
}

/** How a blob is stored, as its index entry says. */
export interface StoredForm {
  readonly hash: Hash;
  readonly compression: CompressionCode;
  readonly cipher: CipherCode;
  readonly rawLength: number;
}

/** Transforms blob bytes for storage and back. */
export interface BlobCodec {
  /** Loads what the codec needs (the WebAssembly module); call once before encode/decode. */
  ready(): Promise<void>;
  /** The stored form of a blob whose address is `hash`. May return `raw` itself (the caller copies it if it may change). */
  encode(raw: Uint8Array, hash: Hash): EncodedBlob;
  /** Decodes stored bytes into exactly `form.rawLength` bytes, or throws {@link IntegrityError} naming the blob. */
  decode(stored: Uint8Array, form: StoredForm): Uint8Array;
}

/** Options of {@link blobCodec}. */
export interface CodecOptions {
  /** `'zstd'` or `'none'`. @default 'zstd' */
  compression?: 'zstd' | 'none' | undefined;
  /** zstd level, 1 (fast) to 19. @default 3 */
  level?: number | undefined;
}

/** Blobs shorter than this are stored as they are: a zstd frame header alone would eat the gain. */
const MIN_COMPRESS_BYTES = 64;

/**
 * The declared content size of a single zstd frame, or undefined when the
 * frame has no such field, uses a dictionary, or is not a zstd frame.
 */
export function zstdContentSize(frame: Uint8Array): number | undefined {
  if (frame.length < 6 || frame[0] !== 0x28 || frame[1] !== 0xb5 || frame[2] !== 0x2f || frame[3] !== 0xfd) return undefined;
  const descriptor = frame[4]!;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  if ((descriptor & 0x3) !== 0) return undefined;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsBytes === 0) return undefined;
  const at = 5 + (singleSegment ? 0 : 1);
  if (frame.length < at + fcsBytes) return undefined;
  let value = 0;
  for (let i = fcsBytes - 1; i >= 0; i--) value = value * 256 + frame[at + i]!;
  return fcsBytes === 2 ? value + 256 : value;
}

function damaged(hash: Hash, problem: string, cause?: unknown): IntegrityError {
  return new IntegrityError(`object ${hash.toString()} is corrupt in its pack: ${problem}`, { key: hash.toString(), cause });
}

/** Blobs at least this long are probed with a sample before being compressed whole. */
const SAMPLE_FROM_BYTES = 16 * 1024;
const SAMPLE_BYTES = 4 * 1024;

/**
 * A cheap look before the full compression: 4 KiB from the middle of a large
 * blob. Already-compressed or encrypted bytes (photos, archives, media: much
 * of what a backup holds) do not shrink, and compressing them whole costs
 * about 8 ms per MiB in WebAssembly for nothing; the sample costs 1/16 of
 * that. A blob whose sample does not shrink by 1/16 is stored as it is.
 */
function sampleCompresses(raw: Uint8Array, level: number): boolean {
  if (raw.length < SAMPLE_FROM_BYTES) return true;
  const start = Math.floor((raw.length - SAMPLE_BYTES) / 2);
  const sample = raw.subarray(start, start + SAMPLE_BYTES);
  return zstd().compress(sample, level).length <= SAMPLE_BYTES - SAMPLE_BYTES / 16;
}

/** The codec the packed layer uses; see {@link CodecOptions}. `sealer` encrypts after compressing (none by default). */
export function blobCodec(options: CodecOptions = {}, sealer: Sealer = plainSealer): BlobCodec {
  const useZstd = (options.compression ?? 'zstd') === 'zstd';
  const level = options.level ?? 3;
  const compress = (raw: Uint8Array): { bytes: Uint8Array; compression: CompressionCode } => {
    if (!useZstd || raw.length < MIN_COMPRESS_BYTES) return { bytes: raw, compression: Compression.none };
    if (!sampleCompresses(raw, level)) return { bytes: raw, compression: Compression.none };
    const packed = zstd().compress(raw, level);
    // Keep the compressed form only when it saves at least 1/16 of the bytes: below that, decoding costs more than it saves.
    if (packed.length > raw.length - raw.length / 16) return { bytes: raw, compression: Compression.none };
    return { bytes: packed, compression: Compression.zstd };
  };
  return {
    // Always loaded: a store that writes uncompressed still reads blobs other writers compressed.
    ready: () => (ready ??= zstd().init()),
    encode(raw, hash) {
      const { bytes, compression } = compress(raw);
      return { bytes: sealer.sealBlob(bytes, hash), compression, cipher: sealer.cipher };
    },
    decode(sealed, { compression, cipher, rawLength, hash }) {
      if (cipher !== sealer.cipher) throw damaged(hash, `its index says cipher ${cipher}, this store uses ${sealer.cipher}`);
      const stored = sealer.openBlob(sealed, hash);
      if (compression === Compression.none) {
        if (stored.length !== rawLength) throw damaged(hash, `${stored.length} bytes stored for ${rawLength}`);
        return stored;
      }
      const declared = zstdContentSize(stored);
      if (declared !== rawLength) throw damaged(hash, `its zstd frame declares ${String(declared)} bytes, the index ${rawLength}`);
      let out: Uint8Array;
      try {
        out = zstd().decompress(stored);
      } catch (cause) {
        throw damaged(hash, 'its zstd frame does not decode', cause);
      }
      if (out.length !== rawLength) throw damaged(hash, `it decodes to ${out.length} bytes, not ${rawLength}`);
      return out;
    },
  };
}
