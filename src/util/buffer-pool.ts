/**
 * Buffers of one size, kept between uses. Memory a process maps anew costs a page fault per 4 KiB
 * on first touch, 15–19 µs each on the benchmark VM (a PVM guest: docs/benchmarks.md); memory it
 * keeps costs nothing again. Used where each push would otherwise take fresh buffers: sealing a
 * release, hashing a module, writing one that arrives.
 */
export class BufferPool {
  private readonly kept: Buffer[] = [];

  constructor(readonly bytes: number, private readonly max: number) {}

  take(): Buffer {
    return this.kept.pop() ?? Buffer.allocUnsafeSlow(this.bytes);
  }

  /** Buffers no read or write uses any more (after a failure one may: those are not given back).
   *  Beyond `max` kept, the rest are left to the garbage collector. */
  give(buffers: Iterable<Buffer>): void {
    for (const b of buffers) if (this.kept.length < this.max) this.kept.push(b);
  }
}
