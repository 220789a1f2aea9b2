import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PieceAssembler } from '../../src/files/piece-assembler.js';
import { decodeEnvelope, MAX_PIECES, PIECE_HEADER_BYTES, pieceStride, writePieceHeader } from '../../src/protocol/envelope.js';
import { DecodeError } from '../../src/errors.js';

/** Piece `piece` of a sealed chunk cut into `pieces`: its offset, and its length (0: no such piece). */
function pieceSpan(sealedLength: number, pieces: number, piece: number): { offset: number; length: number } {
  const stride = pieceStride(sealedLength, pieces);
  const offset = piece * stride;
  return { offset, length: Math.max(0, Math.min(stride, sealedLength - offset)) };
}

/** Chunk `sealed` cut into `pieces`, as the server cuts it. */
function cut(sealed: Buffer, pieces: number): Buffer[] {
  return [...Array(pieces).keys()].map((k) => {
    const { offset, length } = pieceSpan(sealed.length, pieces, k);
    return sealed.subarray(offset, offset + length);
  });
}

describe('pieces on the wire', () => {
  it('cut a chunk into equal pieces, the last one shorter, covering it exactly', () => {
    expect(pieceSpan(8580, 6, 0)).toEqual({ offset: 0, length: 1430 });
    expect(pieceSpan(8580, 6, 5)).toEqual({ offset: 7150, length: 1430 });
    expect(pieceSpan(2000, 2, 1)).toEqual({ offset: 1000, length: 1000 });
    expect(pieceSpan(1001, 2, 1)).toEqual({ offset: 501, length: 500 });
    // More pieces than the bytes allow: the last has nothing.
    expect(pieceSpan(10, 6, 5).length).toBe(0);
  });

  it('a PIECE frame decodes to what was written; broken ones are refused', () => {
    const token = randomBytes(8);
    const body = randomBytes(1430);
    const buf = Buffer.alloc(PIECE_HEADER_BYTES + body.length);
    writePieceHeader(buf, 0xdeadbeef, 70_000, 5, 6, token);
    body.copy(buf, PIECE_HEADER_BYTES);
    // Header layout: "NX", version, type 22, transfer id, chunk index, piece, pieces, token.
    expect(buf.subarray(0, 14).toString('hex')).toBe('4e580116' + 'deadbeef' + '00011170' + '05' + '06');
    const frame = decodeEnvelope(buf);
    expect(frame).toMatchObject({ type: 'piece', transferId: 0xdeadbeef, index: 70_000, piece: 5, pieces: 6 });
    if (frame.type !== 'piece') throw new Error('not a piece');
    expect(Buffer.from(frame.token).equals(token)).toBe(true);
    expect(Buffer.from(frame.bytes).equals(body)).toBe(true);
    const broken = (mutate: (b: Buffer) => Buffer): unknown => {
      try { decodeEnvelope(mutate(Buffer.from(buf))); return 'decoded'; } catch (err) { return err instanceof DecodeError ? err.code : err; }
    };
    expect(broken((b) => { b[13] = 0; return b; })).toBe('bad-piece');
    expect(broken((b) => { b[12] = 6; return b; })).toBe('bad-piece');
    expect(broken((b) => { b[13] = MAX_PIECES + 1; return b; })).toBe('bad-piece');
    expect(broken((b) => b.subarray(0, PIECE_HEADER_BYTES))).toBe('truncated');
  });
});

describe('the piece assembler', () => {
  it('gives back every chunk exactly once, whole, whatever the order, duplicates and interleaving', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ length: fc.integer({ min: 17, max: 8580 }), pieces: fc.integer({ min: 1, max: 7 }) }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 40 }),
      fc.integer(),
      (chunks, dupes, seed) => {
        const sealed = chunks.map((c) => randomBytes(c.length));
        const pieces = chunks.map((c, i) => {
          const n = Math.min(c.pieces, c.length);
          const valid = pieceSpan(c.length, n, n - 1).length > 0 ? n : 1;
          return cut(sealed[i]!, valid).map((bytes, k) => ({ index: i, piece: k, pieces: valid, bytes }));
        }).flat();
        for (const d of dupes) pieces.push(pieces[d % pieces.length]!);
        // A seeded shuffle: the order pieces arrive in.
        let s = seed >>> 0;
        for (let i = pieces.length - 1; i > 0; i--) {
          s = (Math.imul(s, 1_103_515_245) + 12_345) >>> 0;
          const j = s % (i + 1);
          [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
        }
        const assembler = new PieceAssembler(8580, 64); // room for all: nothing evicted
        const got = new Map<number, Buffer[]>();
        for (const p of pieces) {
          const whole = assembler.add(p.index, p.piece, p.pieces, p.bytes, sealed[p.index]!.length);
          expect(whole).not.toBe(false);
          if (whole) got.set(p.index, [...(got.get(p.index) ?? []), Buffer.from(whole)]);
        }
        for (let i = 0; i < sealed.length; i++) {
          // Once; a duplicate piece after completion starts the chunk again, never completes it alone.
          const copies = got.get(i) ?? [];
          expect(copies.length).toBeGreaterThanOrEqual(1);
          for (const c of copies) expect(c.equals(sealed[i]!)).toBe(true);
        }
      },
    ), { numRuns: 200 });
  });

  it('refuses a piece whose length or place does not fit the chunk', () => {
    const a = new PieceAssembler(8580);
    expect(a.add(0, 0, 6, Buffer.alloc(1429), 8580)).toBe(false); // one byte short
    expect(a.add(0, 0, 6, Buffer.alloc(1430), 9000)).toBe(false); // bigger than any chunk
    expect(a.add(0, 6, 6, Buffer.alloc(1430), 8580)).toBe(false); // no piece 6 of 6
    expect(a.add(0, 0, 6, Buffer.alloc(2), 10)).toBe(false); // six pieces of a 10-byte chunk: the last is empty
    expect(a.add(0, 0, 6, Buffer.alloc(1430), 8580)).toBeUndefined();
  });

  it('keeps the first copy of a piece, so a second one cannot change the chunk', () => {
    const sealed = randomBytes(3000);
    const [p0, p1] = cut(sealed, 2);
    const a = new PieceAssembler(3000);
    expect(a.add(4, 0, 2, p0!, 3000)).toBeUndefined();
    expect(a.add(4, 0, 2, randomBytes(1500), 3000)).toBeUndefined();
    expect(Buffer.from(a.add(4, 1, 2, p1!, 3000) as Uint8Array).equals(sealed)).toBe(true);
  });

  it('starts a chunk over when its pieces come cut another way (the path changed)', () => {
    const sealed = randomBytes(8580);
    const six = cut(sealed, 6);
    const seven = cut(sealed, 7);
    const a = new PieceAssembler(8580);
    for (const k of [0, 1, 2, 3, 4]) expect(a.add(1, k, 6, six[k]!, 8580)).toBeUndefined();
    // Resent in seven pieces: the five of six already here do not count.
    for (const k of [0, 1, 2, 3, 4, 5]) expect(a.add(1, k, 7, seven[k]!, 8580)).toBeUndefined();
    expect(Buffer.from(a.add(1, 6, 7, seven[6]!, 8580) as Uint8Array).equals(sealed)).toBe(true);
  });

  it('drops the chunk touched longest ago when too many are under way; a resend completes it', () => {
    const chunks = [...Array(5).keys()].map(() => randomBytes(2000));
    const pieces = chunks.map((c) => cut(c, 2));
    const a = new PieceAssembler(2000, 4);
    for (let i = 0; i < 5; i++) expect(a.add(i, 0, 2, pieces[i]![0]!, 2000)).toBeUndefined();
    expect(a.evicted).toBe(1);
    // Chunk 0 was dropped: its second piece alone does not complete it.
    expect(a.add(0, 1, 2, pieces[0]![1]!, 2000)).toBeUndefined();
    expect(a.evicted).toBe(2);
    // Chunk 4 is still there.
    expect(Buffer.from(a.add(4, 1, 2, pieces[4]![1]!, 2000) as Uint8Array).equals(chunks[4]!)).toBe(true);
    // Chunk 0 resent whole: complete.
    expect(Buffer.from(a.add(0, 0, 2, pieces[0]![0]!, 2000) as Uint8Array).equals(chunks[0]!)).toBe(true);
  });
});
