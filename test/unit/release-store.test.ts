/** The releases a server keeps for rollouts: copies of the file its push opened, checked against
 *  the signed manifest before they count. */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { prepareRelease } from '../../src/server/release.js';
import { ReleaseStore } from '../../src/server/release-store.js';
import { tempDir } from '../support/processes.js';

const NOW = new Date('2026-12-03T00:00:00Z');

async function released(dir: string, bytes: Buffer): Promise<{ file: string; release: Awaited<ReturnType<typeof prepareRelease>> }> {
  const file = join(dir, 'app_2_1.mjs');
  writeFileSync(file, bytes);
  const keys = nacl.sign.keyPair();
  const signer = { publicKey: keys.publicKey, sign: (b: Uint8Array) => nacl.sign.detached(b, keys.secretKey) };
  return { file, release: await prepareRelease(file, { signer, publicKey: keys.publicKey, now: NOW }) };
}

describe('ReleaseStore.add', () => {
  it('keeps the file its push opened, though its name is gone by the time it is copied', async () => {
    const dir = tempDir('nxt-keep-');
    const bytes = randomBytes(300 * 1024);
    const { file, release } = await released(dir, bytes);
    const opened = await open(file, 'r');
    rmSync(file); // the operator's script deletes it once `push` returns
    const store = new ReleaseStore(join(dir, 'state'));
    try {
      const kept = await store.add(release, NOW, opened);
      expect(readFileSync(kept.file).equals(bytes)).toBe(true);
      expect(store.list()).toEqual([kept]);
    } finally {
      await opened.close();
    }
  });

  it('does not keep a module rewritten after it was signed: the copy would not be the release', async () => {
    const dir = tempDir('nxt-keep-');
    const { file, release } = await released(dir, randomBytes(300 * 1024));
    const opened = await open(file, 'r');
    writeFileSync(file, randomBytes(300 * 1024)); // the same file, rewritten in place
    const store = new ReleaseStore(join(dir, 'state'));
    try {
      await expect(store.add(release, NOW, opened)).rejects.toMatchObject({ code: 'module-changed', message: expect.stringMatching(/app_2_1\.mjs changed after it was signed: not kept for rollouts/) });
      expect(store.list()).toEqual([]);
      // Nothing half-made is left behind.
      expect(readdirSync(join(dir, 'state/releases', release.manifest.sha256))).toEqual([]);
    } finally {
      await opened.close();
    }
  });

  it('copies one release at a time: two pushes of it keep one copy, and settled() waits for both', async () => {
    const dir = tempDir('nxt-keep-');
    const bytes = randomBytes(300 * 1024);
    const { release } = await released(dir, bytes);
    const store = new ReleaseStore(join(dir, 'state'));
    const first = store.add(release, NOW);
    const second = store.add(release, NOW);
    await store.settled();
    expect(store.list()).toHaveLength(1);
    expect(await second).toBe(await first);
    const kept = store.list()[0]!;
    expect(readdirSync(join(dir, 'state/releases', release.manifest.sha256))).toEqual(['app_2_1.mjs']);
    expect(existsSync(kept.file) && readFileSync(kept.file).equals(bytes)).toBe(true);
  });
});
