/**
 * The server's Ed25519 release-signing key. The only module (with manifest.ts) that imports
 * tweetnacl. Key files are created atomically with mode 0600; the public key sits beside the
 * secret as `release.pub` (base64, one line) and is the trust anchor clients install.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { NxtError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';

export const SECRET_KEY_FILE = 'release.key';
export const PUBLIC_KEY_FILE = 'release.pub';
const SECRET_PREFIX = 'nxt-ed25519-secret-v1:';

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

/** Load the release key from `dir`, creating it (and the directory) on first use. */
export function loadOrCreateReleaseKey(dir: string, randomBytes: (n: number) => Uint8Array): { signer: Signer; created: boolean } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const secretPath = join(dir, SECRET_KEY_FILE);
  if (existsSync(secretPath)) return { signer: readReleaseKey(secretPath), created: false };
  const pair = nacl.sign.keyPair.fromSeed(randomBytes(nacl.sign.seedLength));
  writeFileAtomic(secretPath, `${SECRET_PREFIX}${Buffer.from(pair.secretKey).toString('base64')}\n`, 0o600);
  writeFileAtomic(join(dir, PUBLIC_KEY_FILE), `${encodePublicKey(pair.publicKey)}\n`, 0o644);
  return { signer: signerFromSecretKey(pair.secretKey), created: true };
}

export function readReleaseKey(path: string): Signer {
  const text = readFileSync(path, 'utf8').trim();
  if (!text.startsWith(SECRET_PREFIX)) {
    throw new NxtError('bad-key', `${path} is not an nxt release key (expected a line starting "${SECRET_PREFIX}")`);
  }
  return signerFromSecretKey(Buffer.from(text.slice(SECRET_PREFIX.length), 'base64'));
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
