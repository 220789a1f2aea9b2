/**
 * The session handshake: one round trip that authenticates both ends by their long-term X25519
 * keys and derives fresh per-direction keys (the pattern of Noise IK, as in WireGuard).
 *
 *   client (static c, ephemeral e)                 server (static S, ephemeral f)
 *   INIT: e, seal(k1, c.pub), seal(k2, stamp)  ──▶  k1 = KDF(es); k2 = KDF(es, ss)
 *                                             ◀──   RESPONSE: f, seal(k3, "")   k3 = KDF(es, ss, ee, se)
 *
 * es = DH(e, S) and ss = DH(c, S) prove to the server that the client holds c; ee and se give
 * forward secrecy and prove the server holds S (only it can derive k3). Every step hashes the
 * transcript so far into the next key. `stamp` strictly increases per client key: the server
 * refuses a stamp not above the last one it accepted, so a captured INIT replayed later is dropped.
 *
 * Pure: randomness (ephemeral keys) comes in as arguments. Key exchange is X25519 (node:crypto).
 */
import { createHash, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { NxtError } from '../errors.js';
import { encodeInit, encodeResponse, KEY_BYTES, type InitFrame, type ResponseFrame } from '../protocol/envelope.js';
import { AeadKey } from './aead.js';

export interface KeyPair {
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
}

export interface SessionKeys {
  readonly send: AeadKey;
  readonly receive: AeadKey;
}

export class HandshakeError extends NxtError {}

const PROTOCOL_NAME = 'nxt handshake v1: X25519, ChaCha20-Poly1305, SHA-256';

// X25519 by node:crypto (OpenSSL): ~15 times faster than tweetnacl's, which capped handshakes
// per second. What costs is making key objects, not the X25519 itself (measured here: 80 µs a
// DH; importing a raw key as DER 124 µs for a public one, 630 µs for a private one; as JWK 13
// and 60 µs): public keys come in as JWK, fresh key pairs are generated as key objects (83 µs),
// and each key object is made once per key. A handshake's server side went from 1.2 ms to ~0.4.
// Raw 32-byte private keys from disk are wrapped in the fixed DER prefix of RFC 8410 (once).
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
/** Key objects by the raw key they were made from (the identity key's is made once for all). */
const privateKeys = new WeakMap<Uint8Array, KeyObject>();
const publicKeys = new WeakMap<Uint8Array, KeyObject>();

function publicKeyOf(publicKey: Uint8Array): KeyObject {
  let key = publicKeys.get(publicKey);
  if (!key) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' });
    publicKeys.set(publicKey, key);
  }
  return key;
}

/**
 * Node 20 deadlocks in generateKeyPairSync's key objects: exporting one locks its key, and a
 * garbage collection during the export can run the finished key-generation job's destructor,
 * which waits for the same lock — the thread hangs for good (gdb: ~KeyGenJob under ExportJWK;
 * a loop of generate + export hangs within a few thousand keys). The fleet simulation hung so
 * within seconds of 10,000 handshakes, and a server makes a key pair for every handshake. Node 22
 * and 24 do not; there, generating is the cheap way (36 µs).
 */
const KEY_GENERATION_DEADLOCKS = Number(process.versions.node.split('.')[0]) < 22;

/** A fresh key pair (ephemeral keys), its key object kept for its DH. */
export function newKeyPair(): KeyPair {
  let privateKey: KeyObject;
  if (KEY_GENERATION_DEADLOCKS) {
    // 32 random bytes imported as a JWK private key (Node 20 takes it without "x"; 44 µs in
    // all): no key-generation job, so nothing to deadlock on.
    privateKey = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: randomBytes(32).toString('base64url'), x: '' }, format: 'jwk' });
  } else {
    privateKey = generateKeyPairSync('x25519').privateKey;
  }
  const jwk = privateKey.export({ format: 'jwk' });
  const pair = { publicKey: new Uint8Array(Buffer.from(jwk.x!, 'base64url')), secretKey: new Uint8Array(Buffer.from(jwk.d!, 'base64url')) };
  privateKeys.set(pair.secretKey, privateKey);
  return pair;
}

function privateKeyOf(secretKey: Uint8Array): KeyObject {
  let key = privateKeys.get(secretKey);
  if (!key) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secretKey]), format: 'der', type: 'pkcs8' });
    privateKeys.set(secretKey, key);
  }
  return key;
}

export function keyPairFromSecret(secretKey: Uint8Array): KeyPair {
  if (secretKey.length !== KEY_BYTES) throw new RangeError('an X25519 secret key has 32 bytes');
  const spki = createPublicKey(privateKeyOf(secretKey)).export({ format: 'der', type: 'spki' });
  return { publicKey: new Uint8Array(spki.subarray(SPKI_X25519.length)), secretKey };
}

/** X25519, refusing the all-zero result a low-order public key would produce. */
export function dh(secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== KEY_BYTES) throw new HandshakeError('bad-key', 'an X25519 public key has 32 bytes');
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey: privateKeyOf(secretKey), publicKey: publicKeyOf(publicKey) });
  } catch {
    // OpenSSL refuses the all-zero result itself.
    throw new HandshakeError('bad-key', 'low-order public key');
  }
  if (shared.every((b) => b === 0)) throw new HandshakeError('bad-key', 'low-order public key');
  return new Uint8Array(shared);
}

function hash(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

function kdf(salt: Uint8Array, info: string, ...secrets: Uint8Array[]): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', Buffer.concat(secrets), salt, info, 32));
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeUInt32BE(Math.floor(n / 0x1_0000_0000));
  b.writeUInt32BE(n >>> 0, 4);
  return b;
}

/** h1: the transcript up to the client's ephemeral key and its index. */
function initialHash(serverPublic: Uint8Array, senderIndex: number, ephemeral: Uint8Array): Buffer {
  return hash(hash(Buffer.from(PROTOCOL_NAME), serverPublic), u32(senderIndex), ephemeral);
}

/** What the client keeps between INIT and RESPONSE. */
export interface Initiation {
  readonly senderIndex: number;
  readonly ephemeral: KeyPair;
  readonly transcript: Buffer;
  readonly es: Uint8Array;
  readonly ss: Uint8Array;
}

export function createInit(args: {
  clientStatic: KeyPair; serverPublic: Uint8Array; senderIndex: number; cookie: Uint8Array; stamp: number; ephemeral: KeyPair;
}): { bytes: Buffer; initiation: Initiation } {
  const { clientStatic, serverPublic, ephemeral } = args;
  const h1 = initialHash(serverPublic, args.senderIndex, ephemeral.publicKey);
  const es = dh(ephemeral.secretKey, serverPublic);
  const sealedStatic = new AeadKey(kdf(h1, 'k1', es)).seal(0, h1, clientStatic.publicKey);
  const h2 = hash(h1, sealedStatic);
  const ss = dh(clientStatic.secretKey, serverPublic);
  const sealedStamp = new AeadKey(kdf(h2, 'k2', es, ss)).seal(0, h2, u64(args.stamp));
  const bytes = encodeInit({ senderIndex: args.senderIndex, cookie: args.cookie, ephemeral: ephemeral.publicKey, sealedStatic, sealedStamp });
  return { bytes, initiation: { senderIndex: args.senderIndex, ephemeral, transcript: hash(h2, sealedStamp), es, ss } };
}

/** What the server learns from a valid INIT, and keeps to answer it. */
export interface AcceptedInit {
  readonly clientPublic: Uint8Array;
  readonly clientIndex: number;
  readonly stamp: number;
  readonly clientEphemeral: Uint8Array;
  readonly transcript: Buffer;
  readonly es: Uint8Array;
  readonly ss: Uint8Array;
}

/**
 * Open an INIT. `check(clientPublic)` may refuse a key (revoked) by throwing, before the second
 * key exchange is spent on it.
 */
export function readInit(serverStatic: KeyPair, frame: InitFrame, check: (clientPublic: Uint8Array) => void): AcceptedInit {
  const h1 = initialHash(serverStatic.publicKey, frame.senderIndex, frame.ephemeral);
  const es = dh(serverStatic.secretKey, frame.ephemeral);
  const clientPublic = new AeadKey(kdf(h1, 'k1', es)).open(0, h1, frame.sealedStatic);
  if (!clientPublic) throw new HandshakeError('wrong-server-key', 'INIT does not decrypt under the server key');
  check(clientPublic);
  const h2 = hash(h1, frame.sealedStatic);
  const ss = dh(serverStatic.secretKey, clientPublic);
  const stamp = new AeadKey(kdf(h2, 'k2', es, ss)).open(0, h2, frame.sealedStamp);
  if (!stamp) throw new HandshakeError('bad-handshake', 'INIT is not authenticated by the client key it names');
  return {
    clientPublic: new Uint8Array(clientPublic), clientIndex: frame.senderIndex,
    stamp: stamp.readUInt32BE(0) * 0x1_0000_0000 + stamp.readUInt32BE(4),
    clientEphemeral: new Uint8Array(frame.ephemeral), transcript: hash(h2, frame.sealedStamp), es, ss,
  };
}

function finalKeys(transcript: Buffer, secrets: Uint8Array[]): { confirm: AeadKey; c2s: AeadKey; s2c: AeadKey } {
  return {
    confirm: new AeadKey(kdf(transcript, 'k3', ...secrets)),
    c2s: new AeadKey(kdf(transcript, 'client to server', ...secrets)),
    s2c: new AeadKey(kdf(transcript, 'server to client', ...secrets)),
  };
}

function responseTranscript(h: Buffer, senderIndex: number, receiverIndex: number, ephemeral: Uint8Array): Buffer {
  return hash(h, u32(senderIndex), u32(receiverIndex), ephemeral);
}

export function createResponse(accepted: AcceptedInit, serverIndex: number, ephemeral: KeyPair): { bytes: Buffer; keys: SessionKeys } {
  const ee = dh(ephemeral.secretKey, accepted.clientEphemeral);
  const se = dh(ephemeral.secretKey, accepted.clientPublic);
  const h4 = responseTranscript(accepted.transcript, serverIndex, accepted.clientIndex, ephemeral.publicKey);
  const k = finalKeys(h4, [accepted.es, accepted.ss, ee, se]);
  const confirm = k.confirm.seal(0, h4, new Uint8Array(0));
  const bytes = encodeResponse({ senderIndex: serverIndex, receiverIndex: accepted.clientIndex, ephemeral: ephemeral.publicKey, confirm });
  return { bytes, keys: { send: k.s2c, receive: k.c2s } };
}

export function readResponse(initiation: Initiation, clientStatic: KeyPair, frame: ResponseFrame): SessionKeys {
  const ee = dh(initiation.ephemeral.secretKey, frame.ephemeral);
  const se = dh(clientStatic.secretKey, frame.ephemeral);
  const h4 = responseTranscript(initiation.transcript, frame.senderIndex, frame.receiverIndex, frame.ephemeral);
  const k = finalKeys(h4, [initiation.es, initiation.ss, ee, se]);
  if (!k.confirm.open(0, h4, frame.confirm)) throw new HandshakeError('bad-handshake', 'RESPONSE is not from the server key this client trusts');
  return { send: k.c2s, receive: k.s2c };
}

/** A client's id: the first 16 bytes of SHA-256 of its public key, so the id cannot be claimed
 *  without the key. */
export function clientIdOf(clientPublic: Uint8Array): Uint8Array {
  return new Uint8Array(hash(clientPublic).subarray(0, 16));
}
