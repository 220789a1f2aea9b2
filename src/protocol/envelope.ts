/**
 * The outer layer of every datagram since the secure session (docs/protocol.md, "Sessions"):
 * a handshake message (INIT, COOKIE, RESPONSE) or a SEALED frame whose ciphertext is one of the
 * messages in messages.ts. Only the framing lives here; the cryptography is in src/session/.
 *
 * Same header as every nxt datagram: "NX", protocol version, type. Integers big-endian.
 */
import { DecodeError } from '../errors.js';
import { HEADER_BYTES, MAGIC_0, MAGIC_1, MAX_DATAGRAM_BYTES, PROTOCOL_VERSION } from './messages.js';

export const EnvelopeType = {
  init: 16,
  cookie: 17,
  response: 18,
  sealed: 19,
  chunks: 20,
  refused: 21,
  piece: 22,
} as const;

/** Why a server refuses a handshake (REFUSED). */
export const RefusedReason = {
  /** The INIT is not encrypted to this server's identity key: the client trusts another server. */
  wrongServerKey: 1,
  /** The client's key is revoked here. */
  revoked: 2,
  /** A SEALED came for a session this server does not have (it restarted, or a balancer sent the
   *  device to another node): shake hands again now. The receiver index is the SEALED's own. */
  unknownSession: 3,
} as const;
export type RefusedReasonValue = (typeof RefusedReason)[keyof typeof RefusedReason];

export const KEY_BYTES = 32;
export const TAG_BYTES = 16;
export const COOKIE_BYTES = 16;
/** A client's static key sealed under the first handshake key. */
export const SEALED_STATIC_BYTES = KEY_BYTES + TAG_BYTES;
/** Timestamp (u64) sealed under the second handshake key. */
export const SEALED_STAMP_BYTES = 8 + TAG_BYTES;
export const INIT_BYTES = HEADER_BYTES + 4 + COOKIE_BYTES + KEY_BYTES + SEALED_STATIC_BYTES + SEALED_STAMP_BYTES;
export const COOKIE_REPLY_BYTES = HEADER_BYTES + 4 + COOKIE_BYTES;
export const RESPONSE_BYTES = HEADER_BYTES + 4 + 4 + KEY_BYTES + TAG_BYTES;
/** Header, receiver index u32, reason u8, the server's identity key: smaller than the INIT it
 *  answers (no amplification). */
export const REFUSED_BYTES = HEADER_BYTES + 4 + 1 + KEY_BYTES;
/** Header, receiver index u32, counter u64: the AEAD's associated data. */
export const SEALED_HEADER_BYTES = HEADER_BYTES + 4 + 8;
export const SEALED_OVERHEAD_BYTES = SEALED_HEADER_BYTES + TAG_BYTES;
/** The largest message that fits in one SEALED datagram. */
export const MAX_INNER_BYTES = MAX_DATAGRAM_BYTES - SEALED_OVERHEAD_BYTES;

/** CHUNKS: header, transfer id u32; then entries. */
export const CHUNKS_HEADER_BYTES = HEADER_BYTES + 4;
/** A CHUNKS entry: chunk index u32, sealed length u16, then the sealed chunk (ciphertext ‖ tag). */
export const CHUNK_ENTRY_HEADER_BYTES = 6;
/** The largest UDP payload over IPv4 (65,535 − 20 − 8): a CHUNKS frame on loopback can be this big. */
export const MAX_UDP_PAYLOAD_BYTES = 65_507;
/** The largest datagram both IPv4 and IPv6 carry whole on the loopback interface (MTU 65,536):
 *  65,536 − 40 (IPv6) − 8 (UDP). */
export const WIDE_DATAGRAM_BYTES = 65_488;
/** A wide chunk: sealed, with its entry and the CHUNKS header, it fills a WIDE_DATAGRAM_BYTES
 *  datagram (65,458 bytes). Where the path carries such datagrams whole, one chunk a datagram
 *  takes both ends 7.6 times fewer cipher set-ups than 8650-byte chunks, and those set-ups
 *  (~7 µs each, whatever the size) were most of sealing's and opening's time on the benchmark VM. */
export const WIDE_CHUNK_BYTES = WIDE_DATAGRAM_BYTES - CHUNKS_HEADER_BYTES - CHUNK_ENTRY_HEADER_BYTES - TAG_BYTES;
/** Largest chunk a manifest may name: pushed modules are sealed in 1400-, 8564-, 8650- or
 *  WIDE_CHUNK_BYTES-byte chunks, and any chunk a manifest names must fit one CHUNKS datagram. */
export const MAX_MANIFEST_CHUNK_BYTES = WIDE_CHUNK_BYTES;

/** A PIECE's token: proof, to a receiver, that the piece comes from someone given the release's
 *  content key (session/content-key.ts: pieceToken). */
export const PIECE_TOKEN_BYTES = 8;
/** PIECE: header, transfer id u32, chunk index u32, piece u8, pieces u8, token; then the piece. */
export const PIECE_HEADER_BYTES = HEADER_BYTES + 4 + 4 + 1 + 1 + PIECE_TOKEN_BYTES;
/** A sealed chunk is cut into at most this many pieces (a receiver keeps one bit for each). */
export const MAX_PIECES = 32;

/** A sealed chunk of `sealedLength` bytes cut into `pieces`: equal pieces of this many bytes,
 *  the last one shorter. Piece k starts at k × stride. */
export function pieceStride(sealedLength: number, pieces: number): number {
  return Math.ceil(sealedLength / pieces);
}

/** Bytes one chunk of `length` plaintext bytes takes in a CHUNKS frame (and in a sealed release). */
export function chunkEntryBytes(length: number): number {
  return CHUNK_ENTRY_HEADER_BYTES + length + TAG_BYTES;
}

/** Client → server: start a session. `cookie` is all zeros until the server has sent one. */
export interface InitFrame {
  readonly type: 'init';
  readonly senderIndex: number;
  readonly cookie: Uint8Array;
  readonly ephemeral: Uint8Array;
  readonly sealedStatic: Uint8Array;
  readonly sealedStamp: Uint8Array;
}

/** Server → client: "prove you receive at this address: send INIT again with this cookie". */
export interface CookieFrame {
  readonly type: 'cookie';
  readonly receiverIndex: number;
  readonly cookie: Uint8Array;
}

/** Server → client: the server's ephemeral key and a tag proving it derived the session keys. */
export interface ResponseFrame {
  readonly type: 'response';
  readonly senderIndex: number;
  readonly receiverIndex: number;
  readonly ephemeral: Uint8Array;
  readonly confirm: Uint8Array;
}

/** Either direction: `ciphertext` (which ends with the 16-byte tag) of one inner message. */
export interface SealedFrame {
  readonly type: 'sealed';
  readonly receiverIndex: number;
  readonly counter: number;
  /** The first SEALED_HEADER_BYTES of the datagram: authenticated, not encrypted. */
  readonly header: Uint8Array;
  readonly ciphertext: Uint8Array;
}

/**
 * Server → client: chunks of a pushed module, each sealed once for the whole release under its
 * content key (src/session/content-key.ts). Not inside a session: the chunks are already sealed,
 * and the key reached the device inside its session. `entries` is walked by forEachChunk.
 */
export interface ChunksFrame {
  readonly type: 'chunks';
  readonly transferId: number;
  readonly entries: Uint8Array;
}

/**
 * Server → client, unauthenticated: "I will not take your handshake, and why", with the server's
 * public identity key so the device can say which key it should trust. Only a hint: anyone on
 * the path could forge one, so a client changes nothing on it but what it prints.
 */
export interface RefusedFrame {
  readonly type: 'refused';
  readonly receiverIndex: number;
  readonly reason: number;
  readonly serverKey: Uint8Array;
}

/**
 * Server → client: one piece of one sealed chunk, for a path whose datagrams cannot carry the
 * chunk whole (docs/protocol.md, "Pieces"). The receiver puts the pieces together and opens the
 * chunk as if it had come whole; the token keeps anyone without the content key from planting a
 * piece.
 */
export interface PieceFrame {
  readonly type: 'piece';
  readonly transferId: number;
  readonly index: number;
  readonly piece: number;
  readonly pieces: number;
  readonly token: Uint8Array;
  readonly bytes: Uint8Array;
}

export type Frame = InitFrame | CookieFrame | ResponseFrame | SealedFrame | ChunksFrame | PieceFrame | RefusedFrame;

export function writeEnvelopeHeader(buf: Uint8Array, type: number): void {
  buf[0] = MAGIC_0;
  buf[1] = MAGIC_1;
  buf[2] = PROTOCOL_VERSION;
  buf[3] = type;
}

export function encodeInit(f: Omit<InitFrame, 'type'>): Buffer {
  const buf = Buffer.allocUnsafe(INIT_BYTES);
  writeEnvelopeHeader(buf, EnvelopeType.init);
  buf.writeUInt32BE(f.senderIndex >>> 0, 4);
  let at = 8;
  for (const [part, len] of [[f.cookie, COOKIE_BYTES], [f.ephemeral, KEY_BYTES], [f.sealedStatic, SEALED_STATIC_BYTES], [f.sealedStamp, SEALED_STAMP_BYTES]] as const) {
    if (part.length !== len) throw new RangeError(`INIT part of ${part.length} bytes, expected ${len}`);
    buf.set(part, at);
    at += len;
  }
  return buf;
}

export function encodeCookie(f: Omit<CookieFrame, 'type'>): Buffer {
  if (f.cookie.length !== COOKIE_BYTES) throw new RangeError('cookie must be 16 bytes');
  const buf = Buffer.allocUnsafe(COOKIE_REPLY_BYTES);
  writeEnvelopeHeader(buf, EnvelopeType.cookie);
  buf.writeUInt32BE(f.receiverIndex >>> 0, 4);
  buf.set(f.cookie, 8);
  return buf;
}

export function encodeRefused(f: Omit<RefusedFrame, 'type'>): Buffer {
  if (f.serverKey.length !== KEY_BYTES) throw new RangeError('a server key has 32 bytes');
  const buf = Buffer.allocUnsafe(REFUSED_BYTES);
  writeEnvelopeHeader(buf, EnvelopeType.refused);
  buf.writeUInt32BE(f.receiverIndex >>> 0, 4);
  buf[8] = f.reason;
  buf.set(f.serverKey, 9);
  return buf;
}

export function encodeResponse(f: Omit<ResponseFrame, 'type'>): Buffer {
  if (f.ephemeral.length !== KEY_BYTES || f.confirm.length !== TAG_BYTES) throw new RangeError('bad RESPONSE parts');
  const buf = Buffer.allocUnsafe(RESPONSE_BYTES);
  writeEnvelopeHeader(buf, EnvelopeType.response);
  buf.writeUInt32BE(f.senderIndex >>> 0, 4);
  buf.writeUInt32BE(f.receiverIndex >>> 0, 8);
  buf.set(f.ephemeral, 12);
  buf.set(f.confirm, 12 + KEY_BYTES);
  return buf;
}

/** Write a SEALED header (the AEAD's associated data) into the first SEALED_HEADER_BYTES of `buf`. */
export function writeSealedHeader(buf: Buffer, receiverIndex: number, counter: number): void {
  writeEnvelopeHeader(buf, EnvelopeType.sealed);
  buf.writeUInt32BE(receiverIndex >>> 0, 4);
  buf.writeUInt32BE(Math.floor(counter / 0x1_0000_0000), 8);
  buf.writeUInt32BE(counter >>> 0, 12);
}

export function writeChunksHeader(buf: Uint8Array, transferId: number): void {
  writeEnvelopeHeader(buf, EnvelopeType.chunks);
  buf[4] = transferId >>> 24;
  buf[5] = (transferId >>> 16) & 0xff;
  buf[6] = (transferId >>> 8) & 0xff;
  buf[7] = transferId & 0xff;
}

/** Write a PIECE's header (PIECE_HEADER_BYTES) into `buf`. */
export function writePieceHeader(buf: Uint8Array, transferId: number, index: number, piece: number, pieces: number, token: Uint8Array): void {
  writeChunksHeader(buf, transferId);
  buf[3] = EnvelopeType.piece;
  buf[8] = index >>> 24;
  buf[9] = (index >>> 16) & 0xff;
  buf[10] = (index >>> 8) & 0xff;
  buf[11] = index & 0xff;
  buf[12] = piece;
  buf[13] = pieces;
  buf.set(token, 14);
}

/** Write one entry's header (index, sealed length) at `at`. */
export function writeChunkEntryHeader(buf: Uint8Array, at: number, index: number, sealedLength: number): void {
  buf[at] = index >>> 24;
  buf[at + 1] = (index >>> 16) & 0xff;
  buf[at + 2] = (index >>> 8) & 0xff;
  buf[at + 3] = index & 0xff;
  buf[at + 4] = sealedLength >>> 8;
  buf[at + 5] = sealedLength & 0xff;
}

/**
 * Call `visit(index, sealed)` for each entry of a CHUNKS frame (`sealed` is a view). Throws
 * DecodeError, before visiting anything, when an entry runs past the end or is too short to hold
 * a tag, so a broken frame is dropped whole.
 */
export function forEachChunk(entries: Uint8Array, visit: (index: number, sealed: Uint8Array) => void): void {
  let at = 0;
  while (at < entries.length) {
    if (entries.length - at < CHUNK_ENTRY_HEADER_BYTES) throw new DecodeError('truncated', 'CHUNKS entry header cut short');
    const length = ((entries[at + 4] ?? 0) << 8) | (entries[at + 5] ?? 0);
    if (length <= TAG_BYTES) throw new DecodeError('bad-length', `sealed chunk of ${length} bytes`);
    at += CHUNK_ENTRY_HEADER_BYTES + length;
    if (at > entries.length) throw new DecodeError('truncated', 'CHUNKS entry runs past the datagram');
  }
  at = 0;
  while (at < entries.length) {
    const index = (((entries[at] ?? 0) << 24) >>> 0) + ((entries[at + 1] ?? 0) << 16) + ((entries[at + 2] ?? 0) << 8) + (entries[at + 3] ?? 0);
    const length = ((entries[at + 4] ?? 0) << 8) | (entries[at + 5] ?? 0);
    at += CHUNK_ENTRY_HEADER_BYTES;
    visit(index, new Uint8Array(entries.buffer, entries.byteOffset + at, length));
    at += length;
  }
}

/**
 * Read the outer frame (views, not copies). Throws DecodeError: code 'unauthenticated' for a bare
 * message (never accepted outside a session), another code for a broken datagram.
 */
export function decodeEnvelope(buf: Uint8Array): Frame {
  if (buf.length < HEADER_BYTES) throw new DecodeError('truncated', 'datagram shorter than the header');
  // Only CHUNKS and PIECE frames grow with the path (datagram-size discovery); every other frame is small.
  if (buf.length > (buf[3] === EnvelopeType.chunks || buf[3] === EnvelopeType.piece ? MAX_UDP_PAYLOAD_BYTES : MAX_DATAGRAM_BYTES)) throw new DecodeError('too-long', `datagram of ${buf.length} bytes`);
  if (buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1) throw new DecodeError('bad-magic', 'not an nxt datagram');
  if (buf[2] !== PROTOCOL_VERSION) throw new DecodeError('bad-version', `protocol version ${buf[2]} is not supported`);
  const view = (at: number, n: number): Uint8Array => new Uint8Array(buf.buffer, buf.byteOffset + at, n);
  const u32 = (at: number): number => (((buf[at] ?? 0) << 24) >>> 0) + ((buf[at + 1] ?? 0) << 16) + ((buf[at + 2] ?? 0) << 8) + (buf[at + 3] ?? 0);
  const exactly = (n: number, name: string): void => {
    if (buf.length !== n) throw new DecodeError(buf.length < n ? 'truncated' : 'trailing', `${name} of ${buf.length} bytes, expected ${n}`);
  };
  switch (buf[3]) {
    case EnvelopeType.sealed: {
      if (buf.length < SEALED_OVERHEAD_BYTES + HEADER_BYTES) throw new DecodeError('truncated', 'SEALED too short to hold a message');
      const hi = u32(8);
      // Counters never pass 2^53 (a session rekeys long before), so they stay exact as numbers.
      if (hi >= 0x20_0000) throw new DecodeError('bad-counter', 'SEALED counter beyond 2^53');
      return {
        type: 'sealed', receiverIndex: u32(4), counter: hi * 0x1_0000_0000 + u32(12),
        header: view(0, SEALED_HEADER_BYTES), ciphertext: view(SEALED_HEADER_BYTES, buf.length - SEALED_HEADER_BYTES),
      };
    }
    case EnvelopeType.chunks:
      if (buf.length < CHUNKS_HEADER_BYTES + CHUNK_ENTRY_HEADER_BYTES + TAG_BYTES + 1) throw new DecodeError('truncated', 'CHUNKS without a whole entry');
      return { type: 'chunks', transferId: u32(4), entries: view(CHUNKS_HEADER_BYTES, buf.length - CHUNKS_HEADER_BYTES) };
    case EnvelopeType.piece: {
      if (buf.length <= PIECE_HEADER_BYTES) throw new DecodeError('truncated', 'PIECE without a piece');
      const piece = buf[12]!;
      const pieces = buf[13]!;
      if (pieces === 0 || pieces > MAX_PIECES || piece >= pieces) throw new DecodeError('bad-piece', `piece ${piece} of ${pieces}`);
      return {
        type: 'piece', transferId: u32(4), index: u32(8), piece, pieces,
        token: view(14, PIECE_TOKEN_BYTES), bytes: view(PIECE_HEADER_BYTES, buf.length - PIECE_HEADER_BYTES),
      };
    }
    case EnvelopeType.init: {
      exactly(INIT_BYTES, 'INIT');
      let at = 8;
      const take = (n: number): Uint8Array => { const v = view(at, n); at += n; return v; };
      return {
        type: 'init', senderIndex: u32(4), cookie: take(COOKIE_BYTES), ephemeral: take(KEY_BYTES),
        sealedStatic: take(SEALED_STATIC_BYTES), sealedStamp: take(SEALED_STAMP_BYTES),
      };
    }
    case EnvelopeType.cookie:
      exactly(COOKIE_REPLY_BYTES, 'COOKIE');
      return { type: 'cookie', receiverIndex: u32(4), cookie: view(8, COOKIE_BYTES) };
    case EnvelopeType.response:
      exactly(RESPONSE_BYTES, 'RESPONSE');
      return { type: 'response', senderIndex: u32(4), receiverIndex: u32(8), ephemeral: view(12, KEY_BYTES), confirm: view(12 + KEY_BYTES, TAG_BYTES) };
    case EnvelopeType.refused:
      exactly(REFUSED_BYTES, 'REFUSED');
      return { type: 'refused', receiverIndex: u32(4), reason: buf[8]!, serverKey: view(9, KEY_BYTES) };
    default:
      throw new DecodeError('unauthenticated', `message type ${buf[3]} outside a session`);
  }
}
