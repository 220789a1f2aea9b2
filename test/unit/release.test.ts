/** A module file made into a release: checked at once, signed per device only. */
import { createHash, randomBytes } from 'node:crypto';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { encodeManifest, verifyManifest } from '../../src/security/manifest.js';
import { chunkSizeFor, prepareRelease, SMALL_CHUNK_BYTES, type Release } from '../../src/server/release.js';
import { CHUNKS_HEADER_BYTES, chunkEntryBytes, MAX_UDP_PAYLOAD_BYTES, WIDE_CHUNK_BYTES, WIDE_DATAGRAM_BYTES } from '../../src/protocol/envelope.js';
import { LARGE_CHUNK_BYTES, PIECE_CHUNK_BYTES } from '../../src/net/fragments.js';
import { HashThread } from '../../src/files/hash-thread.js';
import { fileIdentity } from '../../src/util/file-identity.js';
import { tempDir } from '../support/processes.js';

const DEVICE = '0123456789abcdef0123456789abcdef';

function countingSigner(): { publicKey: Uint8Array; sign: (b: Uint8Array) => Uint8Array; signed: number } {
  const keys = nacl.sign.keyPair();
  const s = { publicKey: keys.publicKey, signed: 0, sign: (b: Uint8Array) => { s.signed++; return nacl.sign.detached(b, keys.secretKey); } };
  return s;
}

describe('prepareRelease', () => {
  it('signs nothing until a device is offered the release, then one manifest for it', async () => {
    const dir = tempDir('nxt-release-');
    const file = join(dir, 'app_2_1.mjs');
    writeFileSync(file, 'export default () => ({ major: 2, minor: 1, productName: "x" });\n');
    const signer = countingSigner();
    const release = await prepareRelease(file, { signer, publicKey: signer.publicKey, now: new Date('2026-12-01T00:00:00Z') });
    expect(signer.signed).toBe(0);
    const signed = release.signedFor(DEVICE, 1400);
    expect(signer.signed).toBe(1);
    const m = verifyManifest(signed.bytes, signed.signature, signer.publicKey);
    expect(m.targets).toEqual([DEVICE]);
    expect(m.chunkSize).toBe(1400);
    expect(m.version).toEqual({ major: 2, minor: 1, patch: 0 });
  });

  it('refuses at once a manifest that fits one datagram only without a device id in it', async () => {
    const dir = tempDir('nxt-release-');
    const file = join(dir, 'app_2_1.mjs');
    writeFileSync(file, 'export default () => ({ major: 2, minor: 1, productName: "x" });\n');
    const now = new Date('2026-12-01T00:00:00Z');
    // Grow a compatibility list until the manifest fits as "for all" but not for one device.
    const base = (await prepareRelease(file, { signer: countingSigner(), publicKey: new Uint8Array(32), now })).manifest;
    const types = ['t'];
    const fits = (targets: 'all' | string[]): boolean => {
      try { encodeManifest({ ...base, for: { type: types }, targets }); return true; } catch { return false; }
    };
    for (let i = 0; fits([DEVICE]); i++) types.push(`t${i}`);
    expect(fits('all')).toBe(true);
    const signer = countingSigner();
    const err = await prepareRelease(file, { signer, publicKey: signer.publicKey, now, for: { type: types } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NxtError);
    expect((err as NxtError).code).toBe('manifest-too-large');
    expect((err as NxtError).message).toMatch(/does not fit one datagram \(\d+\): shorten the module name or its --for lists/);
    expect(signer.signed).toBe(0);
  });
});

describe('chunkSizeFor', () => {
  const shape = (presigned: boolean, chunkSize = 1400): Release => ({ path: 'x', presigned, identity: 'x', manifest: { chunkSize } as Release['manifest'], signedFor: () => { throw new Error('unused'); } });

  it('takes wide chunks only where the path carries a datagram of one whole and the device takes them', () => {
    const r = shape(false);
    expect(chunkSizeFor(r, MAX_UDP_PAYLOAD_BYTES, false, true)).toBe(WIDE_CHUNK_BYTES);
    expect(chunkSizeFor(r, WIDE_DATAGRAM_BYTES, false, true)).toBe(WIDE_CHUNK_BYTES);
    // A sealed wide chunk with its headers is exactly that datagram.
    expect(CHUNKS_HEADER_BYTES + chunkEntryBytes(WIDE_CHUNK_BYTES)).toBe(WIDE_DATAGRAM_BYTES);
    // An agent from before them (its inventory does not say `wide`), or --max-datagram below it.
    expect(chunkSizeFor(r, MAX_UDP_PAYLOAD_BYTES, false, false)).toBe(LARGE_CHUNK_BYTES);
    expect(chunkSizeFor(r, WIDE_DATAGRAM_BYTES - 1, false, true)).toBe(LARGE_CHUNK_BYTES);
    expect(chunkSizeFor(r, 1452, true, true)).toBe(PIECE_CHUNK_BYTES);
    expect(chunkSizeFor(r, 1452, false, true)).toBe(SMALL_CHUNK_BYTES);
    // Signed offline: the size it was signed with.
    expect(chunkSizeFor(shape(true, 4096), MAX_UDP_PAYLOAD_BYTES, false, true)).toBe(4096);
  });
});

describe('prepareRelease of a large module', () => {
  // The thread runs compiled code (npm test builds first): the worker script is dist's.
  const compiled = new URL('../../dist/files/hash-thread-worker.js', import.meta.url);
  const now = new Date('2026-12-01T00:00:00Z');
  const bigModule = (): { dir: string; bytes: Buffer; file: string } => {
    const dir = tempDir('nxt-release-');
    const bytes = randomBytes(5 * 1024 * 1024);
    const file = join(dir, 'big_3_0.mjs');
    writeFileSync(file, bytes);
    return { dir, bytes, file };
  };

  it('hashes it in the hashing thread, through a link to it too', async () => {
    const { dir, bytes, file } = bigModule();
    symlinkSync(file, join(dir, 'linked_3_0.mjs'));
    const thread = new HashThread(compiled);
    try {
      const signer = countingSigner();
      const release = await prepareRelease(join(dir, 'linked_3_0.mjs'), { signer, publicKey: signer.publicKey, now, hashThread: thread });
      expect(thread.running).toBe(true);
      expect(release.manifest.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
      expect(release.manifest.size).toBe(bytes.length);
      // What sealing checks: the very file hashed, unchanged.
      expect(release.identity).toBe(fileIdentity(file)!.id);
    } finally {
      await thread.close();
    }
  });

  it('hashes it itself when the thread cannot run', async () => {
    const { bytes, file } = bigModule();
    const thread = new HashThread(new URL('./no-such-worker.js', compiled));
    try {
      const signer = countingSigner();
      const release = await prepareRelease(file, { signer, publicKey: signer.publicKey, now, hashThread: thread });
      expect(thread.running).toBe(false);
      expect(release.manifest.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    } finally {
      await thread.close();
    }
  });
});
