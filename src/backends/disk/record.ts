/**
 * The object log's record format and the in-memory shapes built from it.
 *
 * Record: a CRC frame (see `frame.ts`) whose body is
 * `kind u8 | algorithm u8 | generation u16 | time f64 | digest[32] | payload`.
 * A compaction copies a record with its time and generation + 1, so that
 * while both copies exist the copy wins whatever order they are read in,
 * and dropping the original's segment never drops the object.
 *
 * Segment files are named `<writer>-<seq>.seg`, or `<writer>-<seq>c.seg`
 * for a compaction's output.
 *
 * @module
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import type { Hash, HashAlgorithm } from '../../hash.js';
import { errnoOf, mapFsError } from './fs-errors.js';
import { READ_FLAGS } from './layout.js';
import { FRAME_HEADER } from './frame.js';

/** 'CSEG' little endian. */
export const SEGMENT_MAGIC = 0x47455343;
export const KIND_PUT = 1;
export const KIND_TOMBSTONE = 2;
/** Body bytes before the payload: kind, algorithm, copy generation, time, digest. */
export const BODY_FIXED = 44;
/** Frame header plus fixed body: where the payload starts within a record. */
export const RECORD_HEADER = FRAME_HEADER + BODY_FIXED;
/**
 * Largest payload a segment record may have. Fixed rather than taken from
 * the options, so that a store reopened with a smaller small-object limit
 * still reads the records written under a larger one.
 */
export const RECORD_PAYLOAD_LIMIT = 64 * 1024 * 1024;
/** Largest body a segment frame may declare. */
export const MAX_RECORD_BODY = BODY_FIXED + RECORD_PAYLOAD_LIMIT;
export const ALGO_CODE: Record<HashAlgorithm, number> = { sha256: 1, blake3: 2 };
export const ALGO_NAME: readonly (HashAlgorithm | undefined)[] = [undefined, 'sha256', 'blake3'];
/** `<writer>-<seq>.seg`, or `<writer>-<seq>c.seg` for a compaction's output. */
export const SEGMENT_NAME = /^([0-9a-f]{16})-([0-9]{8})(c?)\.seg$/;

/** The file name of a writer's segment. */
export function segmentName(writer: string, seq: number, compacted: boolean): string {
  return `${writer}-${String(seq).padStart(8, '0')}${compacted ? 'c' : ''}.seg`;
}

/** One segment file, ours or another writer's. */
export class Segment {
  fd: number | undefined;
  /** Bytes whose records are in the index (for our own segments: bytes written and synced). */
  scannedTo = 0;
  /** Bytes known to be on stable storage. */
  syncedTo = 0;
  /** Sealed and fully read: never scanned again. */
  complete = false;
  /** Async reads in flight, so that a compacted segment's fd is closed only after them. */
  readers = 0;
  removed = false;

  constructor(
    readonly name: string,
    readonly writer: string,
    readonly seq: number,
    /** A compaction's output: complete once it has its name, never appended to. */
    readonly compacted: boolean,
  ) {}

  /** The read fd, opened on first use from `dir`; undefined if the file is gone. */
  readFd(dir: string): number | undefined {
    if (this.fd !== undefined) return this.fd;
    if (this.removed) return undefined;
    try {
      this.fd = openSync(join(dir, this.name), READ_FLAGS);
      return this.fd;
    } catch (error) {
      // Gone (compacted elsewhere), or a symlink planted under a segment's name: never followed.
      if (errnoOf(error) === 'ENOENT' || errnoOf(error) === 'ELOOP') return undefined;
      throw mapFsError(error, `opening segments/${this.name}`);
    }
  }

  /** Closes the fd of a removed segment once no async read uses it. */
  closeIfRetired(): void {
    if (this.readers > 0 || this.fd === undefined || !this.removed) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // Closing a read-only fd cannot lose data; nothing to do.
    }
  }

  /** The segment a file name denotes, or undefined if the name is not a segment's. */
  static fromName(name: string): Segment | undefined {
    const match = SEGMENT_NAME.exec(name);
    return match === null ? undefined : new Segment(name, match[1]!, Number(match[2]), match[3] === 'c');
  }
}

/** The index's value for a hash: the latest record, a put or a tombstone. */
export interface Entry {
  readonly kind: number;
  readonly seg: Segment;
  /** Offset of the record's frame in the segment. */
  readonly offset: number;
  /** Payload length. */
  readonly length: number;
  readonly time: number;
  /** How many compactions copied this record (ties on time go to the later copy). */
  readonly gen: number;
}

/** Writes a record's fixed body fields into `frame` (an original, generation 0). */
export function writeBodyHeader(frame: Buffer, kind: number, hash: Hash, time: number): void {
  const p = FRAME_HEADER;
  frame[p] = kind;
  frame[p + 1] = ALGO_CODE[hash.algorithm];
  frame.writeUInt16LE(0, p + 2);
  frame.writeDoubleLE(time, p + 4);
  frame.write(hash.hex, p + 12, 32, 'hex');
}

/** A record body's fixed fields, or undefined if they name no known kind or algorithm. */
export function decodeBodyHeader(body: Buffer): { kind: number; key: string; time: number; gen: number; length: number } | undefined {
  if (body.length < BODY_FIXED) return undefined;
  const kind = body[0]!;
  const algorithm = ALGO_NAME[body[1]!];
  if ((kind !== KIND_PUT && kind !== KIND_TOMBSTONE) || algorithm === undefined) return undefined;
  return {
    kind,
    key: `${algorithm}:${body.toString('hex', 12, 44)}`,
    time: body.readDoubleLE(4),
    gen: body.readUInt16LE(2),
    length: body.length - BODY_FIXED,
  };
}

/** The generation of a compaction's copy of a record of generation `gen`. */
export function nextGen(gen: number): number {
  return Math.min(gen + 1, 0xffff);
}
