/**
 * Promise forms of the fd-level fs calls the disk logs use. The logs work on
 * raw file descriptors rather than `FileHandle`s because their hot read path
 * is synchronous (`readSync` from the page cache is about 10x cheaper than an
 * async read of a 4 KiB record) and both paths must share one descriptor.
 *
 * @module
 */
import { close, fdatasync, fstat, ftruncate, open, read, write } from 'node:fs';
import { promisify } from 'node:util';

export const openAsync = promisify(open);
export const closeAsync = promisify(close);
export const readAsync = promisify(read);
export const writeAsync = promisify(write);
export const fdatasyncAsync = promisify(fdatasync);
export const fstatAsync = promisify(fstat);
export const ftruncateAsync = promisify(ftruncate);

/**
 * Reads `length` bytes at `position` into a new buffer, with as many reads as
 * it takes; fewer only where the file ends. Returns the bytes read.
 */
export async function readAt(fd: number, position: number, length: number): Promise<Buffer<ArrayBuffer>> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await readAsync(fd, buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return buffer.subarray(0, filled);
}
