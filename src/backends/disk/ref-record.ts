/**
 * The ref log's record format.
 *
 * Record: a CRC frame (see `frame.ts`) whose body is
 * `kind u8 | algorithm u8 | name length u16 | seq f64 | digest[32] | name`.
 * A base record (kind 3) starts a rewritten log and carries the sequence only.
 *
 * @module
 */
import { Hash, type HashAlgorithm } from '../../hash.js';
import { isValidRefName, MAX_REF_NAME_BYTES } from '../../ref-name.js';
import { FRAME_HEADER, isTornPrefix, sealFrame } from './frame.js';

/** 'CREF' little endian. */
export const REF_MAGIC = 0x46455243;
export const KIND_SET = 1;
export const KIND_DELETE = 2;
export const KIND_BASE = 3;
export const BODY_FIXED = 44;
export const MAX_BODY = BODY_FIXED + MAX_REF_NAME_BYTES;
/** The smallest record: every record holds at least one sequence number, so a damaged stretch hides at most `bytes / MIN_RECORD` of them. */
export const MIN_RECORD = FRAME_HEADER + BODY_FIXED;
const ALGO_CODE: Record<HashAlgorithm, number> = { sha256: 1, blake3: 2 };
const ALGO_NAME: readonly (HashAlgorithm | undefined)[] = [undefined, 'sha256', 'blake3'];

/** A decoded record: a base (sequence only), a set, or a delete. */
export type RefRecord =
  | { readonly kind: typeof KIND_BASE; readonly seq: number }
  | { readonly kind: typeof KIND_SET; readonly seq: number; readonly name: string; readonly hash: Hash }
  | { readonly kind: typeof KIND_DELETE; readonly seq: number; readonly name: string };

/** One framed record. */
export function encodeRecord(kind: number, name: string, seq: number, hash: Hash | null): Buffer {
  const nameBytes = Buffer.from(name, 'latin1');
  const frame = Buffer.alloc(FRAME_HEADER + BODY_FIXED + nameBytes.length);
  const p = FRAME_HEADER;
  frame[p] = kind;
  frame[p + 1] = hash === null ? 0 : ALGO_CODE[hash.algorithm];
  frame.writeUInt16LE(nameBytes.length, p + 2);
  frame.writeDoubleLE(seq, p + 4);
  if (hash !== null) frame.write(hash.hex, p + 12, 32, 'hex');
  nameBytes.copy(frame, p + BODY_FIXED);
  sealFrame(frame, 0, REF_MAGIC, BODY_FIXED + nameBytes.length);
  return frame;
}

/**
 * Decodes a body that passed its CRC. Undefined for a body this code does
 * not understand (an unknown kind or algorithm, an invalid name): such a
 * record is skipped, as a newer format's would be, but its sequence still
 * counts (`seqOf`).
 */
export function decodeRecord(body: Buffer): RefRecord | undefined {
  if (body.length < BODY_FIXED || body.length !== BODY_FIXED + body.readUInt16LE(2)) return undefined;
  const kind = body[0]!;
  const seq = body.readDoubleLE(4);
  if (kind === KIND_BASE) return { kind, seq };
  const name = body.toString('latin1', BODY_FIXED);
  if (!isValidRefName(name)) return undefined;
  if (kind === KIND_DELETE) return { kind, seq, name };
  const algorithm = ALGO_NAME[body[1]!];
  if (kind !== KIND_SET || algorithm === undefined) return undefined;
  return { kind, seq, name, hash: Hash.fromDigest(algorithm, body.subarray(12, 44)) };
}

/** The sequence number of a well-formed body, if it has one. */
export function seqOf(body: Buffer): number | undefined {
  return body.length >= BODY_FIXED && body.length === BODY_FIXED + body.readUInt16LE(2) ? body.readDoubleLE(4) : undefined;
}

/**
 * True if `tail` is what a writer that died mid-append could have left: a
 * proper prefix of one record (see {@link isTornPrefix}) whose name-length
 * field, once present, agrees with its frame length. Anything else after
 * the last good record is damage.
 */
export function isTornRecord(tail: Buffer): boolean {
  if (!isTornPrefix(tail, tail.length, REF_MAGIC, BODY_FIXED, MAX_BODY)) return false;
  if (tail.length < FRAME_HEADER + 4) return true;
  return BODY_FIXED + tail.readUInt16LE(FRAME_HEADER + 2) === tail.readUInt32LE(8);
}
