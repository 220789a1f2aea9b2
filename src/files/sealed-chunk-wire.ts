/**
 * Sends a release's sealed chunks (server/sealed-release.ts) to one device in CHUNKS frames:
 * as many entries per datagram as the path carries (transfer/path-mtu.ts), each datagram a small
 * header and runs of the sealed file handed to the socket as they are (scatter-gather, no copy,
 * no cryptography). The sealed file is read in blocks of about 1 MiB, a few kept for the
 * retransmissions that follow soon after; nothing is allocated per datagram but the views.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { CHUNKS_HEADER_BYTES, writeChunksHeader } from '../protocol/envelope.js';
import { blockEntries, type SealedRelease } from '../server/sealed-release.js';
import type { PathMtu } from '../transfer/path-mtu.js';
import type { ChunkWire } from './outgoing-file.js';

/** Blocks kept: retransmissions reach back at most a window (≤ 8 MiB of chunks) behind. */
const BLOCKS_KEPT = 8;
/** Datagram headers come from a ring this long: a slot is reused only after this many datagrams,
 *  long after the socket sent it (the driver stops when the socket's send queue grows). */
const HEADER_RING = 4096;

export interface DatagramSink {
  /** Send one datagram made of these parts, in order. */
  sendv(parts: readonly Uint8Array[]): void;
  /** Datagrams the socket has queued but not yet sent. */
  queued(): number;
}

/** Past this many datagrams queued in the socket, the driver waits (pacing's floor: a sender
 *  faster than its socket only fills memory). */
const MAX_QUEUED_DATAGRAMS = 64;

export class SealedChunkWire implements ChunkWire {
  private readonly fd: number;
  private readonly blockEntries: number;
  private readonly blocks = new Map<number, Buffer>();
  private readonly headers = Buffer.alloc(HEADER_RING * CHUNKS_HEADER_BYTES);
  private headerSlot = 0;
  private readonly parts: Uint8Array[] = [];
  /** The probe in flight: its size and the first chunk it carried. */
  private probe: { size: number; index: number } | undefined;
  datagrams = 0;
  bytes = 0;

  constructor(
    private readonly sealed: SealedRelease,
    private readonly sink: DatagramSink,
    readonly path: PathMtu,
  ) {
    this.fd = openSync(sealed.path, 'r');
    // The blocks sealing reports progress in: a block is read only once it is whole.
    this.blockEntries = blockEntries(sealed.entryBytes);
  }

  /** Bytes of entry `index` (the last chunk's is shorter). */
  private entryLength(index: number): number {
    const s = this.sealed;
    return index === s.totalChunks - 1 ? s.entryBytes - s.chunkSize + (s.size - index * s.chunkSize) : s.entryBytes;
  }

  /**
   * Send `indices` (in the sender's order) under `transferId`. A run of consecutive chunks is one
   * slice of the sealed file. When the path search wants a probe and there is data enough to fill
   * it, the first datagram is the probe.
   */
  send(transferId: number, indices: readonly number[], now: number): void {
    if (this.probe && indices.includes(this.probe.index)) {
      // Its data is being sent again: the sender declared it lost.
      this.path.probeLost(this.probe.size, now);
      this.probe = undefined;
    }
    let limit = this.path.size;
    let probing = false;
    for (let probeSize = this.path.nextProbe(now); probeSize !== undefined; probeSize = this.path.nextProbe(now)) {
      // A size that holds no more whole entries than the confirmed one sends the very same
      // datagrams: nothing to test, take it and look at the next.
      if (this.capacity(probeSize) <= this.capacity(limit)) { this.path.probeAcked(probeSize, now); limit = this.path.size; continue; }
      // A probe needs data enough to fill it; otherwise wait for a bigger batch.
      if (this.packed(indices, probeSize) > this.capacity(limit)) { limit = probeSize; probing = true; }
      break;
    }
    let at = 0;
    while (at < indices.length) {
      const first = indices[at]!;
      at = this.datagram(transferId, indices, at, limit);
      if (probing) {
        this.path.probeSent(limit);
        this.probe = { size: limit, index: first };
        probing = false;
        limit = this.path.size;
      }
    }
  }

  /** The sender acknowledged more: settle the probe if its data arrived. */
  onAcked(isAcked: (index: number) => boolean, now: number): void {
    if (this.probe && isAcked(this.probe.index)) {
      this.path.probeAcked(this.probe.size, now);
      this.probe = undefined;
    }
  }

  backlogged(): boolean {
    return this.sink.queued() > MAX_QUEUED_DATAGRAMS;
  }

  onBlackHole(now: number): void {
    this.probe = undefined;
    this.path.blackHole(now);
  }

  close(): void {
    closeSync(this.fd);
    this.blocks.clear();
  }

  /** Whole full-size entries a datagram of `limit` bytes holds (at least one is always sent). */
  private capacity(limit: number): number {
    return Math.max(1, Math.floor((limit - CHUNKS_HEADER_BYTES) / this.sealed.entryBytes));
  }

  /** How many of `indices` (from the start) fit one datagram of `limit` bytes. */
  private packed(indices: readonly number[], limit: number): number {
    let bytes = CHUNKS_HEADER_BYTES;
    let n = 0;
    for (const i of indices) {
      bytes += this.entryLength(i);
      if (bytes > limit) break;
      n++;
    }
    return n;
  }

  /** Send one datagram from indices[at…] within `limit` bytes (at least one entry); returns the next position. */
  private datagram(transferId: number, indices: readonly number[], at: number, limit: number): number {
    const header = this.headers.subarray(this.headerSlot * CHUNKS_HEADER_BYTES, (this.headerSlot + 1) * CHUNKS_HEADER_BYTES);
    this.headerSlot = (this.headerSlot + 1) % HEADER_RING;
    writeChunksHeader(header, transferId);
    const parts = this.parts;
    parts.length = 0;
    parts.push(header);
    let bytes = CHUNKS_HEADER_BYTES;
    let runBlock: Buffer | undefined;
    let runStart = 0;
    let runEnd = 0;
    let runNext = -1;
    while (at < indices.length) {
      const i = indices[at]!;
      const length = this.entryLength(i);
      if (bytes + length > limit && parts.length + (runBlock ? 1 : 0) > 1) break;
      const blockNo = Math.floor(i / this.blockEntries);
      const block = this.block(blockNo);
      const offset = (i - blockNo * this.blockEntries) * this.sealed.entryBytes;
      if (runBlock === block && i === runNext) {
        runEnd = offset + length;
      } else {
        if (runBlock) parts.push(runBlock.subarray(runStart, runEnd));
        runBlock = block;
        runStart = offset;
        runEnd = offset + length;
      }
      runNext = i + 1;
      bytes += length;
      at++;
    }
    if (runBlock) parts.push(runBlock.subarray(runStart, runEnd));
    this.sink.sendv(parts);
    this.datagrams++;
    this.bytes += bytes;
    return at;
  }

  private block(blockNo: number): Buffer {
    const cached = this.blocks.get(blockNo);
    if (cached) return cached;
    const first = blockNo * this.blockEntries;
    const start = first * this.sealed.entryBytes;
    const last = Math.min(this.sealed.totalChunks, first + this.blockEntries) - 1;
    const length = last * this.sealed.entryBytes + this.entryLength(last) - start;
    // A fresh buffer per block (a MiB, not a datagram): datagrams still queued in the socket keep
    // views of the old one, so it must not be overwritten.
    const block = Buffer.allocUnsafeSlow(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, block, got, length - got, start + got);
      if (n === 0) throw new Error(`${this.sealed.path} is shorter than its release`);
      got += n;
    }
    this.blocks.set(blockNo, block);
    if (this.blocks.size > BLOCKS_KEPT) this.blocks.delete(this.blocks.keys().next().value!);
    return block;
  }
}
