/**
 * Reads a file's chunks from disk for one transfer. It reads ahead a block at a time (one syscall
 * per 64 chunks instead of one per chunk) and never holds more than that block in memory.
 */
import { closeSync, openSync, readSync } from 'node:fs';

const BLOCK_CHUNKS = 64;

export class ModuleSource {
  private readonly fd: number;
  private readonly block: Buffer;
  private blockStart = -1;
  private blockLength = 0;

  constructor(path: string, readonly size: number, readonly chunkSize: number) {
    this.fd = openSync(path, 'r');
    this.block = Buffer.allocUnsafe(BLOCK_CHUNKS * chunkSize);
  }

  /** Copy chunk `index` into `into` at `offset`; returns its length. */
  readChunk(index: number, into: Buffer, offset: number): number {
    const start = index * this.chunkSize;
    const length = Math.min(this.chunkSize, this.size - start);
    if (start < this.blockStart || start + length > this.blockStart + this.blockLength) {
      this.blockStart = start;
      this.blockLength = readSync(this.fd, this.block, 0, Math.min(this.block.length, this.size - start), start);
      if (this.blockLength < length) {
        // The file shrank after it was signed: send what is there; the client's hash check fails.
        this.blockLength = Math.max(0, this.blockLength);
        into.fill(0, offset, offset + length);
        this.block.copy(into, offset, 0, this.blockLength);
        return length;
      }
    }
    this.block.copy(into, offset, start - this.blockStart, start - this.blockStart + length);
    return length;
  }

  close(): void {
    closeSync(this.fd);
  }
}
