import { statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { isExpired, isTargeted, parseManifest, signManifest, verifyManifest, type Manifest } from '../../src/security/manifest.js';
import { readFileSync } from 'node:fs';
import { isReleaseKeySealed, loadOrCreateReleaseKey, readPublicKey, readReleaseKey, sealReleaseKey, verifySignature, warmUpSigner, warmUpVerifier } from '../../src/security/release-key.js';
import { compareReleaseVersions, parseReleaseVersion, releaseVersionFromFileName } from '../../src/protocol/release-version.js';
import { WIDE_CHUNK_BYTES } from '../../src/protocol/envelope.js';
import { tempDir } from '../support/processes.js';

const manifest: Manifest = {
  name: 'libfunctional_2_0.mjs', version: { major: 2, minor: 0, patch: 0 }, size: 192,
  sha256: 'a'.repeat(64), chunkSize: 1400, created: '2026-11-23T00:00:00.000Z', expires: '2026-11-30T00:00:00.000Z',
  targets: ['0123456789abcdef0123456789abcdef'],
};

function codeOf(fn: () => unknown): string | undefined {
  try { fn(); } catch (err) { return err instanceof NxtError ? err.code : 'not-nxt-error'; }
  return undefined;
}

describe('release keys', () => {
  it('are created once, 0600, with the public key beside them', () => {
    const dir = tempDir('nxt-key-');
    const first = loadOrCreateReleaseKey(dir, (n) => randomBytes(n));
    const second = loadOrCreateReleaseKey(dir, (n) => randomBytes(n));
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(Buffer.from(second.signer.publicKey)).toEqual(Buffer.from(first.signer.publicKey));
    expect(statSync(join(dir, 'release.key')).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readPublicKey(join(dir, 'release.pub')))).toEqual(Buffer.from(first.signer.publicKey));
  });
});

describe('a release key encrypted at rest', () => {
  const random = (n: number): Uint8Array => randomBytes(n);

  it('opens with its passphrase, signs as the same key, and keeps no plaintext on disk', () => {
    const dir = tempDir('nxt-key-');
    const plain = loadOrCreateReleaseKey(dir, random).signer;
    const secretB64 = readFileSync(join(dir, 'release.key'), 'utf8').trim().split(':')[1]!;
    sealReleaseKey(dir, random, 'correct horse');
    expect(isReleaseKeySealed(dir)).toBe(true);
    expect(readFileSync(join(dir, 'release.key'), 'utf8')).not.toContain(secretB64);
    expect(statSync(join(dir, 'release.key')).mode & 0o777).toBe(0o600);
    const opened = readReleaseKey(join(dir, 'release.key'), () => 'correct horse');
    expect(Buffer.from(opened.publicKey)).toEqual(Buffer.from(plain.publicKey));
  });

  it('refuses a wrong passphrase, or none, with a code saying which', () => {
    const dir = tempDir('nxt-key-');
    loadOrCreateReleaseKey(dir, random, { sealNew: 'right' });
    expect(codeOf(() => readReleaseKey(join(dir, 'release.key'), () => 'wrong'))).toBe('bad-passphrase');
    expect(codeOf(() => readReleaseKey(join(dir, 'release.key')))).toBe('needs-passphrase');
    expect(codeOf(() => loadOrCreateReleaseKey(tempDir('nxt-key-'), random, { sealNew: '' }))).toBe('bad-passphrase');
  });
});

describe('signed manifests', () => {
  const dir = tempDir('nxt-key-');
  const { signer } = loadOrCreateReleaseKey(dir, (n) => randomBytes(n));
  const other = loadOrCreateReleaseKey(tempDir('nxt-key-'), (n) => randomBytes(n)).signer;

  it('verify against the signing key and parse back to the same manifest', () => {
    const s = signManifest(manifest, signer);
    expect(verifyManifest(s.bytes, s.signature, signer.publicKey)).toEqual(manifest);
  });

  it('name any chunk size up to a wide chunk', () => {
    for (const chunkSize of [1400, 8650, WIDE_CHUNK_BYTES]) {
      const s = signManifest({ ...manifest, chunkSize }, signer);
      expect(verifyManifest(s.bytes, s.signature, signer.publicKey).chunkSize).toBe(chunkSize);
    }
  });

  it('fail with bad-signature for another key, a flipped byte, or a flipped signature bit', () => {
    const s = signManifest(manifest, signer);
    expect(codeOf(() => verifyManifest(s.bytes, s.signature, other.publicKey))).toBe('bad-signature');
    const bytes = Uint8Array.from(s.bytes);
    bytes[10] = (bytes[10] ?? 0) ^ 1;
    expect(codeOf(() => verifyManifest(bytes, s.signature, signer.publicKey))).toBe('bad-signature');
    const sig = Uint8Array.from(s.signature);
    sig[0] = (sig[0] ?? 0) ^ 1;
    expect(codeOf(() => verifyManifest(s.bytes, sig, signer.publicKey))).toBe('bad-signature');
  });

  const hostile: [string, unknown][] = [
    ['not JSON', '{'],
    ['another type', { type: 'x' }],
    ['a negative size', { ...wire(), size: -1 }],
    ['a size beyond the cap', { ...wire(), size: 2 ** 40 }],
    ['an upper-case digest', { ...wire(), sha256: 'A'.repeat(64) }],
    ['a path as digest', { ...wire(), sha256: '../../etc/passwd' }],
    ['a chunk size over a wide chunk (one CHUNKS datagram of 65,488 bytes)', { ...wire(), chunkSize: WIDE_CHUNK_BYTES + 1 }],
    ['a chunk size of 0', { ...wire(), chunkSize: 0 }],
    ['a bad version', { ...wire(), version: '1.x' }],
    ['an empty name', { ...wire(), name: '' }],
    ['no expiry', { ...wire(), expires: undefined }],
    ['an expiry that is not a date', { ...wire(), expires: 'soon' }],
    ['no targets', { ...wire(), targets: undefined }],
    ['an empty target list', { ...wire(), targets: [] }],
    ['a target that is not a client id', { ...wire(), targets: ['../x'] }],
  ];
  for (const [what, value] of hostile) {
    it(`refuses a manifest with ${what}`, () => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      expect(codeOf(() => parseManifest(Buffer.from(text)))).toBe('bad-manifest');
    });
  }
});

function wire(): Record<string, unknown> {
  return { type: 'nxt-manifest/1', name: 'a.mjs', version: '1.0.0', size: 1, sha256: 'b'.repeat(64), chunkSize: 1400, created: 'x', expires: '2026-11-30T00:00:00Z', targets: 'all' };
}

describe('manifest targets (mix-and-match attack)', () => {
  it('name the devices a manifest is for', () => {
    expect(isTargeted(manifest, '0123456789abcdef0123456789abcdef')).toBe(true);
    expect(isTargeted(manifest, 'ffffffffffffffffffffffffffffffff')).toBe(false);
    expect(isTargeted({ targets: 'all' }, 'ffffffffffffffffffffffffffffffff')).toBe(true);
  });
});

describe('manifest expiry (freeze attack)', () => {
  it('is expired from its expiry instant on, and not before', () => {
    expect(isExpired(manifest, new Date('2026-11-29T23:59:59.999Z'))).toBe(false);
    expect(isExpired(manifest, new Date('2026-11-30T00:00:00.000Z'))).toBe(true);
  });
});

describe('release versions', () => {
  it('come from the file name when it carries one', () => {
    expect(releaseVersionFromFileName('libfunctional_2_0.mjs')).toEqual({ major: 2, minor: 0, patch: 0 });
    expect(releaseVersionFromFileName('lib_10_2_7.mjs')).toEqual({ major: 10, minor: 2, patch: 7 });
    expect(releaseVersionFromFileName('plugin.mjs')).toBeUndefined();
  });

  it('order numerically, not as text', () => {
    expect(compareReleaseVersions(parseReleaseVersion('1.10'), parseReleaseVersion('1.9'))).toBeGreaterThan(0);
    expect(compareReleaseVersions(parseReleaseVersion('2.0.0'), parseReleaseVersion('2.0'))).toBe(0);
  });

  it('reject text that is not a version', () => {
    for (const bad of ['', '1', 'v1.0', '1.0.0.0', '1.-1', '99999999999.0']) expect(codeOf(() => parseReleaseVersion(bad))).toBe('bad-version');
  });
});

describe('the verifier\'s warm-up', () => {
  it('checks RFC 8032 TEST 2, and the same signature over another message fails', () => {
    expect(warmUpVerifier()).toBe(true);
    const publicKey = Buffer.from('3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c', 'hex');
    const signature = Buffer.from('92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00', 'hex');
    expect(verifySignature(Buffer.from([0x72]), signature, publicKey)).toBe(true);
    expect(verifySignature(Buffer.from([0x73]), signature, publicKey)).toBe(false);
  });

  it('and the signer\'s: RFC 8032 TEST 2\'s signature from its key', () => {
    expect(warmUpSigner()).toBe(true);
  });
});
