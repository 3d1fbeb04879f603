/**
 * Hashing throughput: node:crypto SHA-256 (what Cairn uses) against
 * @noble/hashes SHA-256 (the baseline it was chosen over) and BLAKE3.
 */
import { createHash } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { blake3 } from '@noble/hashes/blake3.js';
import { hashBytes } from '../src/index.js';
import { opsPerSecond, printTable, type Row } from './table.js';

export async function run(): Promise<void> {
  const rows: Row[] = [];
  for (const size of [4 * 1024, 16 * 1024 * 1024]) {
    const data = new Uint8Array(size).map((_, i) => (i * 31) & 0xff);
    const label = size === 4096 ? '4 KiB' : '16 MiB';
    const ms = size === 4096 ? 700 : 2500;
    const mibps = (ops: number): number => (ops * size) / 2 ** 20;
    const candidates: Array<[string, () => unknown]> = [
      ['sha256 node:crypto (raw)', () => createHash('sha256').update(data).digest()],
      ['sha256 cairn hashBytes', () => hashBytes(data, 'sha256')],
      ['sha256 @noble/hashes', () => sha256(data)],
      ['blake3 @noble/hashes (cairn)', () => blake3(data)],
    ];
    for (const [name, fn] of candidates) {
      rows.push({ hash: name, size: label, 'MiB/s': mibps(await opsPerSecond(fn, ms)) });
    }
  }
  printTable('Hashing throughput', rows);
}
