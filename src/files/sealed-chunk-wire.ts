/**
 * Sends a release's sealed chunks (server/sealed-release.ts) to one device in CHUNKS frames:
 * as many entries per datagram as the path carries (transfer/path-mtu.ts), each datagram a small
 * header and runs of the sealed file handed to the socket as they are (scatter-gather, no copy,
 * no cryptography). The sealed file is read in windows of 64 KiB into a small set of buffers, a
 * few kept for the retransmissions that follow soon after, reused once the socket holds no
 * datagram that points into them; nothing is allocated per datagram but the views: a 1 GiB push
 * used to allocate a fresh MiB per MiB sent, which the garbage collector let pile up to 60 MB
 * before it looked. A push to many devices keeps about half a MiB of these per device.
 *
 * Where the path's datagrams cannot carry a chunk whole and the device may take pieces, each
 * chunk goes in PIECE frames instead (docs/protocol.md, "Pieces"): cut into as few equal pieces
 * as the path's datagram holds, each a header and a slice of the same sealed entry. No probes
 * then: the path's size only sets how many pieces.
 */
import { closeSync, openSync } from 'node:fs';
import { CHUNK_ENTRY_HEADER_BYTES, CHUNKS_HEADER_BYTES, MAX_PIECES, PIECE_HEADER_BYTES, pieceStride, writeChunksHeader, writePieceHeader } from '../protocol/envelope.js';
import type { SealedRelease } from '../server/sealed-release.js';
import { pieceToken } from '../session/content-key.js';
import type { PathMtu } from '../transfer/path-mtu.js';
import type { ChunkWire } from './outgoing-file.js';
import { readFullySync } from '../util/read-fully.js';

/** Bytes read at a time from the sealed file: small, since every device of a push has its own
 *  (each read is a page-cache copy of ~10 µs). */
const WINDOW_BYTES = 64 * 1024;
/** Windows kept for retransmissions (older ones are read again: from the page cache, cheaply). */
const WINDOWS_KEPT = 4;
/** Windows that left the cache while the socket still had datagrams queued (which may point into
 *  them) wait here; past this many, the oldest is reused anyway (a queue that never drains). */
const MAX_COOLING = 64;
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
 *  faster than its socket only fills memory). Most sends complete at once (uv_udp_try_send). */
const MAX_QUEUED_DATAGRAMS = 16;

export class SealedChunkWire implements ChunkWire {
  private readonly fd: number;
  private readonly windowEntries: number;

  /** Cached windows, oldest first: [first index, entries, buffer]. */
  private readonly windows: { first: number; count: number; buf: Buffer }[] = [];
  private readonly cooling: Buffer[] = [];
  private readonly spare: Buffer[] = [];
  private readonly headerBytes: number;
  private readonly headers: Buffer;
  /** Chunks go in pieces on this path; their token (from the release's key). */
  readonly pieced: boolean;
  private readonly token: Buffer | undefined;
  private headerSlot = 0;
  private readonly parts: Uint8Array[] = [];
  /** The probe in flight: its size and the first chunk it carried. */
  private probe: { size: number; index: number } | undefined;
  datagrams = 0;
  /** Chunks sent, each time it was sent (a chunk in pieces is one). */
  chunksSent = 0;
  readonly chunkBytes: number;

  constructor(
    private readonly sealed: SealedRelease,
    private readonly sink: DatagramSink,
    readonly path: PathMtu,
    /** The device may be sent pieces: chunks that do not fit the path's datagrams go so. */
    pieces = false,
  ) {
    this.pieced = pieces && CHUNKS_HEADER_BYTES + sealed.entryBytes > path.options.max;
    this.token = this.pieced ? pieceToken(sealed.key, sealed.sealId) : undefined;
    this.headerBytes = this.pieced ? PIECE_HEADER_BYTES : CHUNKS_HEADER_BYTES;
    this.chunkBytes = sealed.entryBytes + this.headerBytes;
    this.headers = Buffer.alloc(HEADER_RING * this.headerBytes);
    // A seal that failed already has no file (sealRelease deleted it): nothing is read, and the
    // session fails with the seal's reason as it starts (PushSession.start).
    this.fd = sealed.failure ? -1 : openSync(sealed.path, 'r');
    this.windowEntries = Math.max(1, Math.floor(WINDOW_BYTES / sealed.entryBytes));

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
    // No file (the seal had failed when this wire was made): nothing to send, and everyone
    // sending through it is being failed with the seal's reason.
    if (this.fd < 0) return;
    this.chunksSent += indices.length;
    if (this.pieced) {
      for (const i of indices) this.sendPieces(transferId, i);
      return;
    }
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
    // The path outlives this transfer: a probe it never settled must not block later searches.
    if (this.probe) this.path.probeAbandoned();
    this.probe = undefined;
    if (this.fd >= 0) closeSync(this.fd);
    this.windows.length = 0;
    this.cooling.length = 0;
    this.spare.length = 0;
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

  /** A header from the ring (see HEADER_RING). */
  private nextHeader(): Buffer {
    const header = this.headers.subarray(this.headerSlot * this.headerBytes, (this.headerSlot + 1) * this.headerBytes);
    this.headerSlot = (this.headerSlot + 1) % HEADER_RING;
    return header;
  }

  /** Chunk `i` in as few equal pieces as a datagram of the path's size holds, one datagram each. */
  private sendPieces(transferId: number, i: number): void {
    const window = this.window(i);
    const start = (i - window.first) * this.sealed.entryBytes + CHUNK_ENTRY_HEADER_BYTES;
    const sealedLength = this.entryLength(i) - CHUNK_ENTRY_HEADER_BYTES;
    // Never more than a receiver keeps bits for (only a path far below any Ethernet MTU would ask).
    const pieces = Math.min(MAX_PIECES, Math.ceil(sealedLength / (this.path.size - PIECE_HEADER_BYTES)));
    const stride = pieceStride(sealedLength, pieces);
    const parts = this.parts;
    for (let k = 0; k < pieces; k++) {
      const header = this.nextHeader();
      writePieceHeader(header, transferId, i, k, pieces, this.token!);
      const offset = k * stride;
      parts.length = 0;
      parts.push(header, window.buf.subarray(start + offset, start + Math.min(sealedLength, offset + stride)));
      this.sink.sendv(parts);
      this.datagrams++;
    }
  }

  /** Send one datagram from indices[at…] within `limit` bytes (at least one entry); returns the next position. */
  private datagram(transferId: number, indices: readonly number[], at: number, limit: number): number {
    const header = this.nextHeader();
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
      const window = this.window(i);
      const block = window.buf;
      const offset = (i - window.first) * this.sealed.entryBytes;
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
    return at;
  }

  /** The cached window holding entry `i`, read if need be (never past what is sealed). */
  private window(i: number): { first: number; count: number; buf: Buffer } {
    for (let k = this.windows.length - 1; k >= 0; k--) {
      const w = this.windows[k]!;
      if (i >= w.first && i < w.first + w.count) return w;
    }
    const s = this.sealed;
    const first = i - (i % this.windowEntries);
    // A window reaches at most to what is sealed so far: the sender asks only for sealed chunks.
    const count = Math.min(this.windowEntries, Math.max(s.sealedChunks, i + 1) - first, s.totalChunks - first);
    const start = first * s.entryBytes;
    const length = (count - 1) * s.entryBytes + this.entryLength(first + count - 1);
    // A buffer that left the cache may still be pointed into by a datagram queued in the socket:
    // it is reused only once the queue is empty (a datagram the kernel took is its own copy).
    if (this.spare.length === 0 && this.cooling.length > 0 && (this.sink.queued() === 0 || this.cooling.length > MAX_COOLING)) {
      if (this.sink.queued() === 0) this.spare.push(...this.cooling.splice(0));
      else this.spare.push(this.cooling.shift()!);
    }
    const buf = this.spare.pop() ?? Buffer.allocUnsafeSlow(this.windowEntries * s.entryBytes);
    if (readFullySync(this.fd, buf.subarray(0, length), start) < length) throw new Error(`${s.path} is shorter than its release`);
    const w = { first, count, buf };
    this.windows.push(w);
    if (this.windows.length > WINDOWS_KEPT) this.cooling.push(this.windows.shift()!.buf);
    return w;
  }
}
