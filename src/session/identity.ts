/**
 * Long-term X25519 identity keys: the server's (clients install its public half, like an SSH host
 * key) and each client's own (created on first start; its hash is the client's id). Files are
 * written atomically, the secret with mode 0600, as one line "<prefix><base64>".
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NxtError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { keyPairFromSecret, type KeyPair } from './handshake.js';

export const IDENTITY_SECRET_FILE = 'identity.key';
export const IDENTITY_PUBLIC_FILE = 'identity.pub';
const SECRET_PREFIX = 'nxt-x25519-secret-v1:';
const PUBLIC_PREFIX = 'nxt-x25519-public-v1:';

export function loadOrCreateIdentity(dir: string, randomBytes: (n: number) => Uint8Array): { keys: KeyPair; created: boolean } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const secretPath = join(dir, IDENTITY_SECRET_FILE);
  if (existsSync(secretPath)) {
    const text = readFileSync(secretPath, 'utf8').trim();
    const key = text.startsWith(SECRET_PREFIX) ? Buffer.from(text.slice(SECRET_PREFIX.length), 'base64') : undefined;
    if (!key || key.length !== 32) throw new NxtError('bad-key', `${secretPath} is not an nxt identity key: restore it from a backup, or delete it to make a new identity (the server will see a new device)`);
    return { keys: keyPairFromSecret(new Uint8Array(key)), created: false };
  }
  const keys = keyPairFromSecret(randomBytes(32));
  writeFileAtomic(secretPath, `${SECRET_PREFIX}${Buffer.from(keys.secretKey).toString('base64')}\n`, 0o600);
  writeFileAtomic(join(dir, IDENTITY_PUBLIC_FILE), `${encodeIdentityPublic(keys.publicKey)}\n`, 0o644);
  return { keys, created: true };
}

export function encodeIdentityPublic(key: Uint8Array): string {
  return `${PUBLIC_PREFIX}${Buffer.from(key).toString('base64')}`;
}

export function readIdentityPublic(path: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new NxtError('no-trust', `cannot read the server's identity key at ${path}: copy identity.pub from the server's state dir, or pass --server-key FILE`, { cause: err });
  }
  const key = text.startsWith(PUBLIC_PREFIX) ? Buffer.from(text.slice(PUBLIC_PREFIX.length), 'base64') : undefined;
  if (!key || key.length !== 32) throw new NxtError('bad-key', `${path} is not an nxt identity key (one line "${PUBLIC_PREFIX}<base64>")`);
  return new Uint8Array(key);
}

/** How a key is shown to people: "SHA256:" and the base64 of its hash, as OpenSSH prints keys. */
export function fingerprint(publicKey: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(publicKey).digest('base64').replace(/=+$/, '')}`;
}
