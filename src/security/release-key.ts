/**
 * The server's Ed25519 release-signing key. The only module (with manifest.ts) that imports
 * tweetnacl. Key files are created atomically with mode 0600; the public key sits beside the
 * secret as `release.pub` (base64, one line) and is the trust anchor clients install.
 */
import { createCipheriv, createDecipheriv, scryptSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { NxtError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';

export const SECRET_KEY_FILE = 'release.key';
export const PUBLIC_KEY_FILE = 'release.pub';
const SECRET_PREFIX = 'nxt-ed25519-secret-v1:';
const SEALED_PREFIX = 'nxt-ed25519-secret-scrypt-aes256gcm-v1:';
/** scrypt cost: N = 2^15 (32 MiB, ~0.1 s here) makes each passphrase guess expensive while
 *  opening the key at start stays quick (RFC 7914 §2 recommends N ≥ 2^14 for interactive use). */
const SCRYPT = { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

/** Where a passphrase comes from when a key needs one: asked once, only if needed. */
export type PassphraseSource = () => string;

export interface Signer {
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Uint8Array;
}

export function signerFromSecretKey(secretKey: Uint8Array): Signer {
  if (secretKey.length !== nacl.sign.secretKeyLength) throw new NxtError('bad-key', 'an Ed25519 secret key has 64 bytes');
  const pair = nacl.sign.keyPair.fromSecretKey(secretKey);
  return {
    publicKey: pair.publicKey,
    sign: (message) => nacl.sign.detached(message, pair.secretKey),
  };
}

/**
 * Load the release key from `dir`, creating it (and the directory) on first use. An encrypted key
 * asks `passphrase` for its passphrase; a new key is encrypted when `sealNew` gives one.
 */
export function loadOrCreateReleaseKey(
  dir: string,
  randomBytes: (n: number) => Uint8Array,
  options: { passphrase?: PassphraseSource; sealNew?: string } = {},
): { signer: Signer; created: boolean } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const secretPath = join(dir, SECRET_KEY_FILE);
  if (existsSync(secretPath)) return { signer: readReleaseKey(secretPath, options.passphrase), created: false };
  const pair = nacl.sign.keyPair.fromSeed(randomBytes(nacl.sign.seedLength));
  writeSecret(secretPath, pair.secretKey, randomBytes, options.sealNew);
  writeFileAtomic(join(dir, PUBLIC_KEY_FILE), `${encodePublicKey(pair.publicKey)}\n`, 0o644);
  return { signer: signerFromSecretKey(pair.secretKey), created: true };
}

/**
 * The release key of a server that may keep its secret half elsewhere: with only `release.pub` in
 * `dir` (the key lives offline) there is no signer, and pushes must be pre-signed.
 */
export function loadReleaseKeyOrPublic(
  dir: string,
  randomBytes: (n: number) => Uint8Array,
  options: { passphrase?: PassphraseSource } = {},
): { signer?: Signer; publicKey: Uint8Array; created: boolean } {
  if (!existsSync(join(dir, SECRET_KEY_FILE)) && existsSync(join(dir, PUBLIC_KEY_FILE))) {
    return { publicKey: readPublicKey(join(dir, PUBLIC_KEY_FILE)), created: false };
  }
  const { signer, created } = loadOrCreateReleaseKey(dir, randomBytes, options);
  return { signer, publicKey: signer.publicKey, created };
}

/** Encrypt an existing key file with a passphrase (or re-encrypt it with a new one). */
export function sealReleaseKey(dir: string, randomBytes: (n: number) => Uint8Array, newPassphrase: string, current?: PassphraseSource): void {
  const secretPath = join(dir, SECRET_KEY_FILE);
  writeSecret(secretPath, readSecretKey(secretPath, current), randomBytes, newPassphrase);
}

export function isReleaseKeySealed(dir: string): boolean {
  const path = join(dir, SECRET_KEY_FILE);
  return existsSync(path) && readFileSync(path, 'utf8').startsWith(SEALED_PREFIX);
}

function writeSecret(path: string, secretKey: Uint8Array, randomBytes: (n: number) => Uint8Array, passphrase: string | undefined): void {
  if (passphrase === undefined) {
    writeFileAtomic(path, `${SECRET_PREFIX}${Buffer.from(secretKey).toString('base64')}\n`, 0o600);
    return;
  }
  if (passphrase.length === 0) throw new NxtError('bad-passphrase', 'an empty passphrase protects nothing');
  const salt = Buffer.from(randomBytes(16));
  const nonce = Buffer.from(randomBytes(12));
  const cipher = createCipheriv('aes-256-gcm', scryptSync(passphrase, salt, 32, SCRYPT), nonce);
  const sealed = Buffer.concat([cipher.update(secretKey), cipher.final(), cipher.getAuthTag()]);
  const fields = [salt, nonce, sealed].map((b) => b.toString('base64')).join(':');
  writeFileAtomic(path, `${SEALED_PREFIX}${fields}\n`, 0o600);
}

export function readReleaseKey(path: string, passphrase?: PassphraseSource): Signer {
  return signerFromSecretKey(readSecretKey(path, passphrase));
}

function readSecretKey(path: string, passphrase?: PassphraseSource): Uint8Array {
  const text = readFileSync(path, 'utf8').trim();
  if (text.startsWith(SEALED_PREFIX)) {
    if (!passphrase) throw new NxtError('needs-passphrase', `${path} is encrypted: give its passphrase (NXT_KEY_PASSPHRASE, or start the server in a terminal)`);
    const [salt, nonce, sealed] = text.slice(SEALED_PREFIX.length).split(':').map((f) => Buffer.from(f, 'base64'));
    if (!salt || !nonce || !sealed || sealed.length !== 64 + 16) throw new NxtError('bad-key', `${path} is damaged`);
    const decipher = createDecipheriv('aes-256-gcm', scryptSync(passphrase(), salt, 32, SCRYPT), nonce);
    decipher.setAuthTag(sealed.subarray(64));
    try {
      return Buffer.concat([decipher.update(sealed.subarray(0, 64)), decipher.final()]);
    } catch {
      throw new NxtError('bad-passphrase', `wrong passphrase for ${path}`);
    }
  }
  if (!text.startsWith(SECRET_PREFIX)) {
    throw new NxtError('bad-key', `${path} is not an nxt release key (expected a line starting "${SECRET_PREFIX}")`);
  }
  return Buffer.from(text.slice(SECRET_PREFIX.length), 'base64');
}

export function encodePublicKey(key: Uint8Array): string {
  return `nxt-ed25519-public-v1:${Buffer.from(key).toString('base64')}`;
}

export function readPublicKey(path: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new NxtError('no-trust', `cannot read the server's public key at ${path}: copy release.pub from the server's state dir, or pass --trust FILE`, { cause: err });
  }
  const m = /^nxt-ed25519-public-v1:([A-Za-z0-9+/=]+)$/.exec(text);
  const key = m?.[1] ? Buffer.from(m[1], 'base64') : undefined;
  if (!key || key.length !== nacl.sign.publicKeyLength) {
    throw new NxtError('bad-key', `${path} is not an nxt public key (one line "nxt-ed25519-public-v1:<base64>")`);
  }
  return new Uint8Array(key);
}

export function verifySignature(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== nacl.sign.signatureLength || publicKey.length !== nacl.sign.publicKeyLength) return false;
  return nacl.sign.detached.verify(message, signature, publicKey);
}

/** RFC 8032 §7.1, TEST 2: a key pair, a one-byte message (0x72) and its signature. */
const RFC8032_TEST_2 = {
  secretKey: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
  publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
  message: '72',
  signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
};

/**
 * Verify a known signature once, so that the first release a device checks does not pay for
 * tweetnacl running cold: its first verification takes 21-23 ms here, the next ones 6-10 ms (the
 * JIT has compiled its field arithmetic by then); in a profile of one device's first push it was
 * ~60 ms of the push's CPU. A device does this while idle, after it registered. Returns the
 * verdict (true: tweetnacl works as RFC 8032 says).
 */
export function warmUpVerifier(): boolean {
  const v = RFC8032_TEST_2;
  return verifySignature(Buffer.from(v.message, 'hex'), Buffer.from(v.signature, 'hex'), Buffer.from(v.publicKey, 'hex'));
}

/**
 * The same for signing, on a server: sign RFC 8032's test message with its test key, so that the
 * first push after a start does not sign with tweetnacl cold. Returns the verdict (true: the
 * signature is RFC 8032's).
 */
export function warmUpSigner(): boolean {
  const v = RFC8032_TEST_2;
  const signer = signerFromSecretKey(nacl.sign.keyPair.fromSeed(Buffer.from(v.secretKey, 'hex')).secretKey);
  return Buffer.from(signer.sign(Buffer.from(v.message, 'hex'))).toString('hex') === v.signature;
}
