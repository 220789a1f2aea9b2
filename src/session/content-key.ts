/**
 * A release's content key: each chunk of a pushed module is sealed once with it, for every
 * device (docs/protocol.md, "Sealed releases"). ChaCha20-Poly1305, as the sessions use.
 *
 * Nonce: 4 zero bytes ‖ the chunk index (u64); each key seals one release at one chunk size, so
 * a (key, nonce) pair is never used twice. Associated data: the seal id ‖ the index, so a chunk
 * cannot be passed off as another chunk, or as a chunk of another release (replay across
 * releases), even if an attacker found two releases under one key.
 */
import { createHmac } from 'node:crypto';
import { PIECE_TOKEN_BYTES } from '../protocol/envelope.js';
import { SEAL_ID_BYTES } from '../protocol/messages.js';
import { AeadKey } from './aead.js';

/**
 * The token every PIECE of a release carries (docs/protocol.md, "Pieces"): HMAC-SHA-256 under the
 * content key of a label and the seal id, cut to 8 bytes. Only who holds the key knows it, so an
 * attacker off the path cannot plant a piece (one guess in 2^64 a datagram); it is no secret from
 * one who sees the traffic, who could also drop it.
 */
export function pieceToken(key: Uint8Array, sealId: Uint8Array): Buffer {
  return createHmac('sha256', key).update('nxt piece token').update(sealId).digest().subarray(0, PIECE_TOKEN_BYTES);
}

export class ContentKey {
  private readonly aead: AeadKey;
  /** seal id ‖ index: rewritten per chunk (createCipheriv reads it before returning). */
  private readonly aad = Buffer.alloc(SEAL_ID_BYTES + 4);
  readonly pieceToken: Buffer;

  constructor(readonly key: Uint8Array, readonly sealId: Uint8Array) {
    if (sealId.length !== SEAL_ID_BYTES) throw new RangeError('a seal id has 16 bytes');
    this.aead = new AeadKey(key);
    this.aad.set(sealId, 0);
    this.pieceToken = pieceToken(key, sealId);
  }

  /** Seal chunk `index` into `out` at `at` (ciphertext ‖ tag); returns the end offset. */
  sealChunk(index: number, plaintext: Uint8Array, out: Buffer, at: number): number {
    return this.aead.sealInto(index, this.aadFor(index), plaintext, out, at);
  }

  /** The chunk's bytes, or undefined when the tag fails (forged, corrupted, another release). */
  openChunk(index: number, sealed: Uint8Array): Buffer | undefined {
    return this.aead.open(index, this.aadFor(index), sealed);
  }

  private aadFor(index: number): Buffer {
    this.aad.writeUInt32BE(index >>> 0, SEAL_ID_BYTES);
    return this.aad;
  }
}
