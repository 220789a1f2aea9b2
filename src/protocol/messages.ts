/**
 * The nxt wire format, implemented once. docs/protocol.md describes the same bytes for people.
 *
 * Every datagram starts with a 4-byte header: magic "NX" (0x4e 0x58), protocol version, type.
 * All integers are big-endian. `decode` checks every length before it reads, rejects trailing
 * bytes, and throws only DecodeError.
 */
import { DecodeError } from '../errors.js';
import { peerText } from '../util/peer-text.js';
import type { ReleaseVersion } from './release-version.js';

export const MAGIC_0 = 0x4e; // 'N'
export const MAGIC_1 = 0x58; // 'X'
export const PROTOCOL_VERSION = 1;
/** What this agent takes beyond protocol version 1, as its REGISTER's inventory says
 *  (`features`, space-separated): `pieces`, PIECE frames; `wide`, chunks of WIDE_CHUNK_BYTES
 *  (envelope.ts) in manifests. A server sends such frames and manifests only to a device that
 *  says it takes them, so agents from before them keep working. */
export const AGENT_FEATURES = 'pieces wide';

/** Whether an inventory's `features` include `feature`. */
export function hasFeature(features: string | undefined, feature: string): boolean {
  return features !== undefined && features.split(' ').includes(feature);
}
export const HEADER_BYTES = 4;

/** 1500-byte Ethernet MTU − 40 (IPv6 header, the larger one) − 8 (UDP): never fragment. */
export const MAX_DATAGRAM_BYTES = 1452;
/** A message travels inside a SEALED frame (envelope.ts), which adds 32 bytes of header and tag. */
export const MAX_MESSAGE_BYTES = MAX_DATAGRAM_BYTES - 32;
/** Largest chunk payload of a DATA message (jobs' files, inside a session); DATA adds 12 bytes of
 *  header, so 1412 bytes on the wire. Pushed modules travel as sealed chunks (envelope.ts, CHUNKS). */
export const MAX_CHUNK_BYTES = 1400;
/** A release's content key (ChaCha20-Poly1305) and the id bound into each sealed chunk. */
export const CONTENT_KEY_BYTES = 32;
export const SEAL_ID_BYTES = 16;
export const DATA_HEADER_BYTES = HEADER_BYTES + 8;
export const CLIENT_ID_BYTES = 16;
export const SIGNATURE_BYTES = 64;
/** Room left in an OFFER for the manifest after header, ids, lengths, signature and content key. */
export const MAX_MANIFEST_BYTES = MAX_MESSAGE_BYTES - HEADER_BYTES - 4 - 2 - SIGNATURE_BYTES - CONTENT_KEY_BYTES - SEAL_ID_BYTES;
export const MAX_TEXT_BYTES = 512;
export const MAX_PRODUCT_NAME_BYTES = 64;
export const MAX_ENROLL_TOKEN_BYTES = 64;
/** The device's inventory (hostname, OS, …) as compact JSON. */
export const MAX_INVENTORY_BYTES = 512;
/** A SACK bitmap covers at most this many chunks beyond the cumulative point. */
export const MAX_SACK_BITMAP_BYTES = 1024;

export const MessageType = {
  register: 1,
  registered: 2,
  offer: 3,
  data: 4,
  ack: 5,
  result: 6,
  resultAck: 7,
  abort: 8,
  query: 9,
  jobPoll: 10,
  job: 11,
  jobResult: 12,
  jobAck: 13,
  fileOffer: 14,
  trialOutcome: 15,
  trialAck: 16,
  multicast: 17,
  goodbye: 18,
  multicastLeave: 19,
} as const;

/** Maintenance jobs (JOB's `kind`). */
export const JobKind = {
  logs: 1,
  backup: 2,
  put: 3,
  clean: 4,
  /** A file for the config root: the previous version kept, optionally applied by the plugin. */
  config: 5,
  /** The kept previous version of a config file put back. */
  configRestore: 6,
  /** A file handed to an installer the device's own config names (deb, swu, …). */
  install: 7,
  /** The device's status and error report, uploaded as JSON. */
  report: 8,
} as const;
export type JobKindValue = (typeof JobKind)[keyof typeof JobKind];

/** How a job ended on the device (JOB_RESULT's `code`). */
export const JobCode = {
  ok: 0,
  invalidJob: 1,
  noSuchFile: 2,
  generationFailed: 3,
  transferFailed: 4,
  /** The active plugin refused a config file (or takes none): the old file is back. */
  notApplied: 5,
  /** The installer ran and failed (its exit code and output tail in the message), or timed out. */
  installFailed: 6,
} as const;
export type JobCodeValue = (typeof JobCode)[keyof typeof JobCode];

/**
 * Where a device's update stands, in the vocabulary of LwM2M's Firmware Update object (OMA
 * object 5): its State resource (0–3) and Update Result resource (0–9, plus nxt's own from 16).
 */
export const UpdateState = {
  idle: 0,
  downloading: 1,
  downloaded: 2,
  updating: 3,
} as const;
export type UpdateStateValue = (typeof UpdateState)[keyof typeof UpdateState];

export const UpdateResult = {
  initial: 0,
  success: 1,
  connectionLost: 4,
  integrityFailure: 5,
  updateFailed: 8,
  /** nxt: verified and kept, waiting for `upgrade` (the device's defer policy). */
  deferred: 16,
  /** nxt: refused before download (signature, rollback, expiry, target, size). */
  refused: 17,
} as const;
export type UpdateResultValue = (typeof UpdateResult)[keyof typeof UpdateResult];

export interface ProductInfo {
  readonly major: number;
  readonly minor: number;
  readonly productName: string;
}

/**
 * Client → server: "I exist, at this address, running this". Sent on start and to renew the lease.
 * `enrollToken` (may be empty) approves a new device automatically; `inventory` is JSON.
 */
export interface RegisterMessage {
  readonly type: 'register';
  readonly clientId: Uint8Array;
  readonly seq: number;
  readonly version: ReleaseVersion;
  readonly product: ProductInfo;
  readonly enrollToken: string;
  readonly inventory: string;
  readonly updateState: UpdateStateValue;
  readonly updateResult: UpdateResultValue;
}

/** Client → server, while the device is in maintenance mode: "any job for me?" */
export interface JobPollMessage {
  readonly type: 'jobPoll';
  readonly seq: number;
}

/** Server → client: the next job (`jobId` 0: none waiting). `params` is JSON. */
export interface JobMessage {
  readonly type: 'job';
  readonly seq: number;
  readonly jobId: number;
  readonly kind: number;
  readonly params: string;
}

/** Client → server: how a job ended; repeated until JOB_ACK. */
export interface JobResultMessage {
  readonly type: 'jobResult';
  readonly jobId: number;
  readonly code: number;
  readonly message: string;
}

export interface JobAckMessage {
  readonly type: 'jobAck';
  readonly jobId: number;
}

/**
 * Either way, for a job: a plain file follows under `transferId` (an upload from the device, or a
 * file put on it), then DATA/ACK/RESULT as for a module. The session authenticates it; the
 * receiver checks size and sha256.
 */
export interface FileOfferMessage {
  readonly type: 'fileOffer';
  readonly transferId: number;
  readonly jobId: number;
  readonly size: number;
  readonly chunkSize: number;
  readonly sha256: Uint8Array;
  readonly name: string;
}

/** Server → client: "register now" (the operator asked every device's version). */
export interface QueryMessage {
  readonly type: 'query';
  readonly seq: number;
}

/** Where a device stands with the operator (REGISTERED's `enrollment`). */
export const Enrollment = {
  approved: 0,
  pending: 1,
  rejected: 2,
} as const;
export type EnrollmentValue = (typeof Enrollment)[keyof typeof Enrollment];

/** Server → client: registration seen; renew within `renewMs`, offline after `leaseMs`. */
export interface RegisteredMessage {
  readonly type: 'registered';
  readonly clientId: Uint8Array;
  readonly seq: number;
  readonly leaseMs: number;
  readonly renewMs: number;
  readonly enrollment: EnrollmentValue;
}

/**
 * Server → client: a signed manifest; the client answers with an ACK (accept) or a RESULT
 * (refuse). The module's chunks then arrive in CHUNKS frames, sealed once for the release under
 * `contentKey` (which only this session carries) with `sealId` bound into each.
 */
export interface OfferMessage {
  readonly type: 'offer';
  readonly transferId: number;
  readonly manifest: Uint8Array;
  readonly signature: Uint8Array;
  readonly contentKey: Uint8Array;
  readonly sealId: Uint8Array;
}

export interface DataMessage {
  readonly type: 'data';
  readonly transferId: number;
  readonly index: number;
  readonly payload: Uint8Array;
}

/**
 * Receiver → sender: chunks [0, cumulative) are held; bit i of `sack` (MSB first) says chunk
 * cumulative + 1 + i is held too. `window` is how many chunks past `cumulative` it will buffer.
 * `echo` is the chunk whose arrival caused this ACK (RTT sampling), or NO_ECHO.
 */
export interface AckMessage {
  readonly type: 'ack';
  readonly transferId: number;
  readonly cumulative: number;
  readonly window: number;
  readonly echo: number;
  readonly sack: Uint8Array;
}

export const NO_ECHO = 0xffff_ffff;

/** Client → server: how a transfer ended, with the version now active. Repeated until RESULT_ACK. */
export interface ResultMessage {
  readonly type: 'result';
  readonly transferId: number;
  readonly code: number;
  readonly active: ReleaseVersion;
  readonly message: string;
}

export interface ResultAckMessage {
  readonly type: 'resultAck';
  readonly transferId: number;
}

/** Either side: stop this transfer (e.g. the client does not know it: it restarted). */
export interface AbortMessage {
  readonly type: 'abort';
  readonly transferId: number;
  readonly code: number;
  readonly message: string;
}

export type Message =
  | RegisterMessage
  | RegisteredMessage
  | OfferMessage
  | DataMessage
  | AckMessage
  | ResultMessage
  | ResultAckMessage
  | AbortMessage
  | QueryMessage
  | JobPollMessage
  | JobMessage
  | JobResultMessage
  | JobAckMessage
  | FileOfferMessage
  | TrialOutcomeMessage
  | TrialAckMessage
  | MulticastMessage
  | MulticastLeaveMessage
  | GoodbyeMessage;

/** Client → server: "I am stopping" (a device shut down or its agent stopped): offline at once,
 *  not when its lease lapses. Authenticated like everything in the session. */
export interface GoodbyeMessage {
  readonly type: 'goodbye';
  readonly clientId: Uint8Array;
}

/**
 * Server → client, after an OFFER: the release's sealed chunks for `transferId` are also sent to
 * the multicast group `address` (an IP literal) on `port`, in CHUNKS frames whose transfer id is
 * `groupTransferId`. The client may join the group to receive them; it acknowledges as usual.
 */
export interface MulticastMessage {
  readonly type: 'multicast';
  readonly transferId: number;
  readonly groupTransferId: number;
  readonly port: number;
  readonly address: string;
}

/**
 * Server → client, during a group's pass: this device is served by unicast from now on (it does
 * not hear the group, fell behind it, or is a straggler); it leaves the group rather than go on
 * receiving, and dropping, every datagram of the rest of the pass. It joins again when a later
 * MULTICAST names the group. Client → server, answering a MULTICAST: this device is not in the
 * group (it refuses groups, or could not join); its session sends it everything at once.
 */
export interface MulticastLeaveMessage {
  readonly type: 'multicastLeave';
  readonly transferId: number;
  readonly groupTransferId: number;
}

/**
 * Client → server: how the probation of an activated module ended: committed, or rolled back
 * (`code` says why, a ResultCode) with `active` the version running again. Repeated until
 * TRIAL_ACK with the same seq.
 */
export interface TrialOutcomeMessage {
  readonly type: 'trialOutcome';
  readonly seq: number;
  readonly committed: boolean;
  readonly code: number;
  readonly version: ReleaseVersion;
  readonly sha256: Uint8Array;
  readonly active: ReleaseVersion;
  readonly message: string;
}

export interface TrialAckMessage {
  readonly type: 'trialAck';
  readonly seq: number;
}

// ---------------------------------------------------------------------------------------------
// Encoding

class Writer {
  private readonly buf: Buffer;
  private pos = HEADER_BYTES;

  constructor(type: number, capacity: number) {
    this.buf = Buffer.allocUnsafe(HEADER_BYTES + capacity);
    writeHeader(this.buf, type);
  }

  u8(v: number): this { this.buf.writeUInt8(v, this.pos); this.pos += 1; return this; }
  u16(v: number): this { this.buf.writeUInt16BE(v, this.pos); this.pos += 2; return this; }
  u32(v: number): this { this.buf.writeUInt32BE(v, this.pos); this.pos += 4; return this; }
  bytes(b: Uint8Array): this { this.buf.set(b, this.pos); this.pos += b.length; return this; }
  version(v: ReleaseVersion): this { return this.u32(v.major).u32(v.minor).u32(v.patch); }
  /** A string with a u16 length prefix, cut to `max` bytes on a character boundary. */
  text16(s: string, max = MAX_TEXT_BYTES): this {
    const b = utf8Prefix(s, max);
    return this.u16(b.length).bytes(b);
  }
  text8(s: string, max: number): this {
    const b = utf8Prefix(s, max);
    return this.u8(b.length).bytes(b);
  }
  done(): Buffer { return this.buf.subarray(0, this.pos); }
}

function writeHeader(buf: Uint8Array, type: number): void {
  buf[0] = MAGIC_0;
  buf[1] = MAGIC_1;
  buf[2] = PROTOCOL_VERSION;
  buf[3] = type;
}

function utf8Prefix(s: string, max: number): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= max) return b;
  // Step back over continuation bytes so we never cut a character in half.
  let end = max;
  while (end > 0 && ((b[end] ?? 0) & 0xc0) === 0x80) end--;
  return b.subarray(0, end);
}

/**
 * Write the 12-byte DATA header into `buf`; the payload goes at DATA_HEADER_BYTES. The sender
 * reads file chunks straight into such a buffer, so the hot path copies each byte once.
 */
export function writeDataHeader(buf: Buffer, transferId: number, index: number): void {
  writeHeader(buf, MessageType.data);
  buf.writeUInt32BE(transferId, 4);
  buf.writeUInt32BE(index, 8);
}

export function encode(msg: Message): Buffer {
  switch (msg.type) {
    case 'register':
      checkId(msg.clientId);
      return new Writer(MessageType.register, 16 + 4 + 12 + 8 + 1 + MAX_PRODUCT_NAME_BYTES + 1 + MAX_ENROLL_TOKEN_BYTES + 2 + MAX_INVENTORY_BYTES)
        .bytes(msg.clientId).u32(msg.seq).version(msg.version)
        .u32(msg.product.major).u32(msg.product.minor).text8(msg.product.productName, MAX_PRODUCT_NAME_BYTES)
        .text8(msg.enrollToken, MAX_ENROLL_TOKEN_BYTES).text16(msg.inventory, MAX_INVENTORY_BYTES)
        .u8(msg.updateState).u8(msg.updateResult)
        .done();
    case 'registered':
      checkId(msg.clientId);
      return new Writer(MessageType.registered, 16 + 12 + 1)
        .bytes(msg.clientId).u32(msg.seq).u32(msg.leaseMs).u32(msg.renewMs).u8(msg.enrollment).done();
    case 'offer':
      if (msg.manifest.length > MAX_MANIFEST_BYTES) throw new RangeError('manifest too large for one datagram');
      if (msg.signature.length !== SIGNATURE_BYTES) throw new RangeError('signature must be 64 bytes');
      if (msg.contentKey.length !== CONTENT_KEY_BYTES || msg.sealId.length !== SEAL_ID_BYTES) throw new RangeError('bad content key or seal id');
      return new Writer(MessageType.offer, 4 + 2 + msg.manifest.length + SIGNATURE_BYTES + CONTENT_KEY_BYTES + SEAL_ID_BYTES)
        .u32(msg.transferId).u16(msg.manifest.length).bytes(msg.manifest).bytes(msg.signature)
        .bytes(msg.contentKey).bytes(msg.sealId).done();
    case 'data': {
      if (msg.payload.length === 0 || msg.payload.length > MAX_CHUNK_BYTES) throw new RangeError('bad chunk size');
      const buf = Buffer.allocUnsafe(DATA_HEADER_BYTES + msg.payload.length);
      writeDataHeader(buf, msg.transferId, msg.index);
      buf.set(msg.payload, DATA_HEADER_BYTES);
      return buf;
    }
    case 'ack':
      if (msg.sack.length > MAX_SACK_BITMAP_BYTES) throw new RangeError('SACK bitmap too large');
      return new Writer(MessageType.ack, 4 + 4 + 2 + 4 + 2 + msg.sack.length)
        .u32(msg.transferId).u32(msg.cumulative).u16(msg.window).u32(msg.echo).u16(msg.sack.length).bytes(msg.sack)
        .done();
    case 'result':
      return new Writer(MessageType.result, 4 + 1 + 12 + 2 + MAX_TEXT_BYTES)
        .u32(msg.transferId).u8(msg.code).version(msg.active).text16(msg.message).done();
    case 'resultAck':
      return new Writer(MessageType.resultAck, 4).u32(msg.transferId).done();
    case 'abort':
      return new Writer(MessageType.abort, 4 + 1 + 2 + MAX_TEXT_BYTES)
        .u32(msg.transferId).u8(msg.code).text16(msg.message).done();
    case 'query':
      return new Writer(MessageType.query, 4).u32(msg.seq).done();
    case 'jobPoll':
      return new Writer(MessageType.jobPoll, 4).u32(msg.seq).done();
    case 'job':
      return new Writer(MessageType.job, 4 + 4 + 1 + 2 + MAX_TEXT_BYTES).u32(msg.seq).u32(msg.jobId).u8(msg.kind).text16(msg.params).done();
    case 'jobResult':
      return new Writer(MessageType.jobResult, 4 + 1 + 2 + MAX_TEXT_BYTES).u32(msg.jobId).u8(msg.code).text16(msg.message).done();
    case 'jobAck':
      return new Writer(MessageType.jobAck, 4).u32(msg.jobId).done();
    case 'trialOutcome':
      if (msg.sha256.length !== 32) throw new RangeError('sha256 must be 32 bytes');
      return new Writer(MessageType.trialOutcome, 4 + 1 + 1 + 12 + 32 + 12 + 2 + MAX_TEXT_BYTES)
        .u32(msg.seq).u8(msg.committed ? 1 : 0).u8(msg.code).version(msg.version).bytes(msg.sha256).version(msg.active).text16(msg.message).done();
    case 'trialAck':
      return new Writer(MessageType.trialAck, 4).u32(msg.seq).done();
    case 'goodbye':
      checkId(msg.clientId);
      return new Writer(MessageType.goodbye, CLIENT_ID_BYTES).bytes(msg.clientId).done();
    case 'multicastLeave':
      return new Writer(MessageType.multicastLeave, 8).u32(msg.transferId).u32(msg.groupTransferId).done();
    case 'multicast':
      return new Writer(MessageType.multicast, 4 + 4 + 2 + 1 + MAX_PRODUCT_NAME_BYTES)
        .u32(msg.transferId).u32(msg.groupTransferId).u16(msg.port).text8(msg.address, MAX_PRODUCT_NAME_BYTES).done();
    case 'fileOffer':
      if (msg.sha256.length !== 32) throw new RangeError('sha256 must be 32 bytes');
      if (!Number.isSafeInteger(msg.size) || msg.size < 0) throw new RangeError('bad file size');
      return new Writer(MessageType.fileOffer, 4 + 4 + 8 + 2 + 32 + 1 + MAX_PRODUCT_NAME_BYTES)
        .u32(msg.transferId).u32(msg.jobId).u32(Math.floor(msg.size / 0x1_0000_0000)).u32(msg.size >>> 0).u16(msg.chunkSize)
        .bytes(msg.sha256).text8(msg.name, MAX_PRODUCT_NAME_BYTES).done();
  }
}

function checkId(id: Uint8Array): void {
  if (id.length !== CLIENT_ID_BYTES) throw new RangeError('client id must be 16 bytes');
}

// ---------------------------------------------------------------------------------------------
// Decoding

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  private pos = HEADER_BYTES;

  constructor(private readonly buf: Uint8Array, private readonly view: DataView) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new DecodeError('truncated', `message ends early (needs ${n} more bytes)`);
  }
  u8(): number { this.need(1); return this.view.getUint8(this.pos++); }
  u16(): number { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32(): number { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  /** A view, not a copy; always a plain Uint8Array whatever the input was (a Buffer, usually). */
  bytes(n: number): Uint8Array { this.need(n); const b = this.view_(this.pos, n); this.pos += n; return b; }
  version(): ReleaseVersion { return { major: this.u32(), minor: this.u32(), patch: this.u32() }; }
  text(len: number, max: number): string {
    if (len > max) throw new DecodeError('too-long', `text of ${len} bytes exceeds ${max}`);
    try {
      // Every text on the wire is shown somewhere (the console, logs, alerts): no controls.
      return peerText(utf8.decode(this.bytes(len)));
    } catch (err) {
      if (err instanceof DecodeError) throw err;
      throw new DecodeError('bad-utf8', 'text is not valid UTF-8');
    }
  }
  rest(): Uint8Array { const b = this.view_(this.pos, this.buf.length - this.pos); this.pos = this.buf.length; return b; }
  private view_(at: number, n: number): Uint8Array { return new Uint8Array(this.buf.buffer, this.buf.byteOffset + at, n); }
  end(): void {
    if (this.pos !== this.buf.length) throw new DecodeError('trailing', `${this.buf.length - this.pos} trailing bytes`);
  }
}

/** decode(), but a malformed datagram yields undefined (the caller counts it) instead of throwing. */
export function decodeOrUndefined(buf: Uint8Array): Message | undefined {
  try {
    return decode(buf);
  } catch (err) {
    if (err instanceof DecodeError) return undefined;
    throw err;
  }
}

export function decode(buf: Uint8Array): Message {
  if (buf.length < HEADER_BYTES) throw new DecodeError('truncated', 'datagram shorter than the header');
  if (buf.length > MAX_MESSAGE_BYTES) throw new DecodeError('too-long', `message of ${buf.length} bytes`);
  if (buf[0] !== MAGIC_0 || buf[1] !== MAGIC_1) throw new DecodeError('bad-magic', 'not an nxt datagram');
  if (buf[2] !== PROTOCOL_VERSION) throw new DecodeError('bad-version', `protocol version ${buf[2]} is not supported`);
  if (buf[3] === MessageType.data) return decodeData(buf);
  const r = new Reader(buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength));
  const msg = decodeBody(buf[3] ?? 0, r);
  r.end();
  return msg;
}

/** DATA is most of the traffic: read its fixed header directly, without a Reader. */
function decodeData(buf: Uint8Array): DataMessage {
  if (buf.length < DATA_HEADER_BYTES + 1) {
    throw new DecodeError(buf.length < DATA_HEADER_BYTES ? 'truncated' : 'empty-chunk', 'DATA without a full header and payload');
  }
  if (buf.length > DATA_HEADER_BYTES + MAX_CHUNK_BYTES) throw new DecodeError('too-long', `chunk of ${buf.length - DATA_HEADER_BYTES} bytes`);
  const u32 = (at: number): number => (((buf[at] ?? 0) << 24) >>> 0) + ((buf[at + 1] ?? 0) << 16) + ((buf[at + 2] ?? 0) << 8) + (buf[at + 3] ?? 0);
  return {
    type: 'data',
    transferId: u32(4),
    index: u32(8),
    payload: new Uint8Array(buf.buffer, buf.byteOffset + DATA_HEADER_BYTES, buf.length - DATA_HEADER_BYTES),
  };
}

function oneOf<T extends Record<string, number>>(v: number, values: T, what: string): T[keyof T] {
  if (!Object.values(values).includes(v)) throw new DecodeError('bad-value', `unknown ${what} ${v}`);
  return v as T[keyof T];
}

function decodeBody(type: number, r: Reader): Message {
  switch (type) {
    case MessageType.register:
      return {
        type: 'register', clientId: r.bytes(CLIENT_ID_BYTES), seq: r.u32(), version: r.version(),
        product: { major: r.u32(), minor: r.u32(), productName: r.text(r.u8(), MAX_PRODUCT_NAME_BYTES) },
        enrollToken: r.text(r.u8(), MAX_ENROLL_TOKEN_BYTES), inventory: r.text(r.u16(), MAX_INVENTORY_BYTES),
        updateState: oneOf(r.u8(), UpdateState, 'update state'), updateResult: oneOf(r.u8(), UpdateResult, 'update result'),
      };
    case MessageType.registered: {
      const head = { type: 'registered', clientId: r.bytes(CLIENT_ID_BYTES), seq: r.u32(), leaseMs: r.u32(), renewMs: r.u32() } as const;
      const enrollment = r.u8();
      if (enrollment > Enrollment.rejected) throw new DecodeError('bad-enrollment', `unknown enrollment state ${enrollment}`);
      return { ...head, enrollment: enrollment as EnrollmentValue };
    }
    case MessageType.offer: {
      const transferId = r.u32();
      const len = r.u16();
      if (len > MAX_MANIFEST_BYTES) throw new DecodeError('too-long', `manifest of ${len} bytes`);
      return {
        type: 'offer', transferId, manifest: r.bytes(len), signature: r.bytes(SIGNATURE_BYTES),
        contentKey: r.bytes(CONTENT_KEY_BYTES), sealId: r.bytes(SEAL_ID_BYTES),
      };
    }
    case MessageType.ack: {
      const transferId = r.u32();
      const cumulative = r.u32();
      const window = r.u16();
      const echo = r.u32();
      const len = r.u16();
      if (len > MAX_SACK_BITMAP_BYTES) throw new DecodeError('too-long', `SACK bitmap of ${len} bytes`);
      return { type: 'ack', transferId, cumulative, window, echo, sack: r.bytes(len) };
    }
    case MessageType.result:
      return { type: 'result', transferId: r.u32(), code: r.u8(), active: r.version(), message: r.text(r.u16(), MAX_TEXT_BYTES) };
    case MessageType.resultAck:
      return { type: 'resultAck', transferId: r.u32() };
    case MessageType.abort:
      return { type: 'abort', transferId: r.u32(), code: r.u8(), message: r.text(r.u16(), MAX_TEXT_BYTES) };
    case MessageType.query:
      return { type: 'query', seq: r.u32() };
    case MessageType.jobPoll:
      return { type: 'jobPoll', seq: r.u32() };
    case MessageType.job:
      return { type: 'job', seq: r.u32(), jobId: r.u32(), kind: r.u8(), params: r.text(r.u16(), MAX_TEXT_BYTES) };
    case MessageType.jobResult:
      return { type: 'jobResult', jobId: r.u32(), code: r.u8(), message: r.text(r.u16(), MAX_TEXT_BYTES) };
    case MessageType.jobAck:
      return { type: 'jobAck', jobId: r.u32() };
    case MessageType.trialOutcome: {
      const seq = r.u32();
      const committed = r.u8();
      if (committed > 1) throw new DecodeError('bad-field', 'committed must be 0 or 1');
      return {
        type: 'trialOutcome', seq, committed: committed === 1, code: r.u8(), version: r.version(), sha256: r.bytes(32), active: r.version(),
        message: r.text(r.u16(), MAX_TEXT_BYTES),
      };
    }
    case MessageType.trialAck:
      return { type: 'trialAck', seq: r.u32() };
    case MessageType.goodbye:
      return { type: 'goodbye', clientId: r.bytes(CLIENT_ID_BYTES) };
    case MessageType.multicastLeave:
      return { type: 'multicastLeave', transferId: r.u32(), groupTransferId: r.u32() };
    case MessageType.multicast:
      return { type: 'multicast', transferId: r.u32(), groupTransferId: r.u32(), port: r.u16(), address: r.text(r.u8(), MAX_PRODUCT_NAME_BYTES) };
    case MessageType.fileOffer: {
      const transferId = r.u32();
      const jobId = r.u32();
      const hi = r.u32();
      if (hi >= 0x20_0000) throw new DecodeError('too-long', 'file size beyond 2^53');
      const size = hi * 0x1_0000_0000 + r.u32();
      const chunkSize = r.u16();
      if (chunkSize < 1 || chunkSize > MAX_CHUNK_BYTES) throw new DecodeError('bad-value', `chunk size ${chunkSize}`);
      return { type: 'fileOffer', transferId, jobId, size, chunkSize, sha256: r.bytes(32), name: r.text(r.u8(), MAX_PRODUCT_NAME_BYTES) };
    }
    default:
      throw new DecodeError('bad-type', `unknown message type ${type}`);
  }
}
