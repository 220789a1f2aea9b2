/**
 * Puts sealed chunks back together from their pieces (PIECE frames, docs/protocol.md "Pieces"):
 * a path whose datagrams cannot carry a large chunk whole gets it cut into a few, and the device
 * still opens, writes, hashes and acknowledges once per chunk, not once per datagram.
 *
 * A few chunks are assembled at a time (pieces of neighbours interleave when the path reorders,
 * and a chunk that lost a piece waits for its resend). Past that many, the chunk touched longest
 * ago is dropped: only time is lost, since the sender resends a chunk whole. The first copy of a
 * piece is kept, later ones are ignored; pieces cut another way (the path's size changed between
 * a send and a resend) start the chunk over. Whether the whole opens is the caller's question:
 * nothing here trusts the bytes.
 */
import { MAX_PIECES, pieceStride } from '../protocol/envelope.js';

/** Chunks assembled at a time: a window's worth of interleaving on a reordering path. */
export const ASSEMBLING_CHUNKS = 32;

interface Slot {
  index: number;
  pieces: number;
  /** Bit k: piece k is here. */
  mask: number;
  buf: Buffer;
  touched: number;
}

export class PieceAssembler {
  private readonly slots: Slot[] = [];
  private clock = 0;
  /** Chunks dropped unfinished to make room for others. */
  evicted = 0;

  constructor(
    /** The largest sealed chunk a piece may belong to (a buffer this size per chunk assembled). */
    private readonly maxSealedBytes: number,
    private readonly maxChunks = ASSEMBLING_CHUNKS,
  ) {}

  /**
   * Piece `piece` of `pieces` of chunk `index`, whose sealed length is `sealedLength`. Returns the
   * sealed chunk when this piece completes it (a view, valid until the next call), `undefined`
   * while pieces are missing, or `false` for a piece that does not fit its chunk (a wrong length,
   * more pieces than bytes): dropped.
   */
  add(index: number, piece: number, pieces: number, bytes: Uint8Array, sealedLength: number): Uint8Array | undefined | false {
    if (sealedLength > this.maxSealedBytes || pieces > MAX_PIECES || piece >= pieces) return false;
    const stride = pieceStride(sealedLength, pieces);
    const offset = piece * stride;
    // Every piece, the last included, must hold bytes; this one exactly its share.
    if ((pieces - 1) * stride >= sealedLength || bytes.length !== Math.min(stride, sealedLength - offset)) return false;
    let slot = this.find(index);
    if (slot && slot.pieces !== pieces) {
      slot.pieces = pieces;
      slot.mask = 0;
    }
    slot ??= this.take(index, pieces);
    slot.touched = ++this.clock;
    const bit = 2 ** piece;
    if (Math.floor(slot.mask / bit) % 2 === 1) return undefined;
    slot.buf.set(bytes, offset);
    slot.mask += bit;
    if (slot.mask !== 2 ** pieces - 1) return undefined;
    slot.index = -1;
    return slot.buf.subarray(0, sealedLength);
  }

  /** Drop every chunk under way (the release's key changed: its pieces are of no use). */
  clear(): void {
    for (const s of this.slots) s.index = -1;
  }

  private find(index: number): Slot | undefined {
    for (const s of this.slots) if (s.index === index) return s;
    return undefined;
  }

  /** A free slot for chunk `index`, or the one touched longest ago. */
  private take(index: number, pieces: number): Slot {
    let slot = this.slots.find((s) => s.index === -1);
    if (!slot && this.slots.length < this.maxChunks) {
      slot = { index: -1, pieces, mask: 0, buf: Buffer.allocUnsafeSlow(this.maxSealedBytes), touched: 0 };
      this.slots.push(slot);
    }
    if (!slot) {
      slot = this.slots.reduce((a, b) => (b.touched < a.touched ? b : a));
      this.evicted++;
    }
    slot.index = index;
    slot.pieces = pieces;
    slot.mask = 0;
    return slot;
  }
}
