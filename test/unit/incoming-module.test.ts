import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { IncomingTransfer } from '../../src/files/incoming-transfer.js';
import { HashThread, HashThreadGone } from '../../src/files/hash-thread.js';
import { IncomingModule } from '../../src/plugin/incoming-module.js';
import { WIDE_CHUNK_BYTES } from '../../src/protocol/envelope.js';
import { MAX_EARLY_WIDE_BYTES } from '../../src/transfer/receiver.js';
import { ModuleStore } from '../../src/plugin/module-store.js';
import type { Manifest } from '../../src/security/manifest.js';
import { FakeClock } from '../support/fake-network.js';
import { tempDir } from '../support/processes.js';

const CHUNK = 1400;

function fixture(size: number): { bytes: Buffer; manifest: Manifest; dir: string } {
  const bytes = randomBytes(size);
  const manifest: Manifest = {
    name: 'm.mjs', version: { major: 1, minor: 0, patch: 0 }, size, chunkSize: CHUNK, created: 'now', expires: '2999-01-01T00:00:00Z', targets: 'all',
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
  return { bytes, manifest, dir: tempDir('nxt-incoming-') };
}

function chunk(bytes: Buffer, i: number): Buffer {
  return bytes.subarray(i * CHUNK, Math.min(bytes.length, (i + 1) * CHUNK));
}

describe('a module arriving on disk', () => {
  it('lands byte for byte across many queued background writes', async () => {
    const { bytes, manifest, dir } = fixture(3 * 1024 * 1024 + 17); // several 512 KiB batches
    const m = new IncomingModule(manifest, join(dir, 'x.part'));
    for (let i = 0; i < m.totalChunks; i++) m.append(chunk(bytes, i));
    await m.complete(join(dir, 'x.mjs'));
    expect(readFileSync(join(dir, 'x.mjs')).equals(bytes)).toBe(true);
    // Read-only once verified: what import() reads is what was hashed.
    expect(statSync(join(dir, 'x.mjs')).mode & 0o777).toBe(0o400);
  });

  it('lands each file byte for byte while write batches go from one file to the next, one after another and two at once', async () => {
    const land = async (size: number, name: string): Promise<boolean> => {
      const { bytes, manifest, dir } = fixture(size);
      const m = new IncomingModule(manifest, join(dir, `${name}.part`));
      for (let i = 0; i < m.totalChunks; i++) {
        m.append(chunk(bytes, i));
        // Now and then the writes get a turn, and a file beside this one appends meanwhile.
        if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
      }
      await m.complete(join(dir, `${name}.mjs`));
      return readFileSync(join(dir, `${name}.mjs`)).equals(bytes);
    };
    expect(await land(2 * 1024 * 1024 + 3, 'a')).toBe(true); // its batches are kept
    expect(await Promise.all([land(3 * 1024 * 1024 + 17, 'b'), land(1024 * 1024 + 5, 'c')])).toEqual([true, true]);
    expect(await land(10_000, 'd')).toBe(true);
  });

  // Halfway through 2 MiB; and 5000 chunks (7,000,000 bytes) into 9 MiB: thirteen 512 KiB write
  // batches and part of the fourteenth.
  for (const [size, cut] of [[2 * 1024 * 1024, 749], [9 * 1024 * 1024 + 5, 5000]] as const) {
    it(`after a suspend ${cut} chunks into ${size} bytes, resumes from the whole chunks on disk and completes`, async () => {
      const { bytes, manifest, dir } = fixture(size);
      const path = join(dir, 'x.part');
      const first = new IncomingModule(manifest, path);
      for (let i = 0; i < cut; i++) first.append(chunk(bytes, i));
      await first.suspend();
      const second = new IncomingModule(manifest, path);
      expect(second.heldChunks).toBe(cut);
      for (let i = cut; i < second.totalChunks; i++) second.append(chunk(bytes, i));
      await second.complete(join(dir, 'x.mjs'));
      expect(readFileSync(join(dir, 'x.mjs')).equals(bytes)).toBe(true);
    });
  }

  it('drops a torn last chunk left by a crash and fetches it again', async () => {
    const { bytes, manifest, dir } = fixture(10 * CHUNK);
    const path = join(dir, 'x.part');
    writeFileSync(path, bytes.subarray(0, 4 * CHUNK));
    appendFileSync(path, Buffer.from('torn'));
    const m = new IncomingModule(manifest, path);
    expect(m.heldChunks).toBe(4);
    for (let i = 4; i < 10; i++) m.append(chunk(bytes, i));
    await m.complete(join(dir, 'x.mjs'));
    expect(readFileSync(join(dir, 'x.mjs')).equals(bytes)).toBe(true);
  });


  it('refuses bytes that do not match the signed digest', async () => {
    const { bytes, manifest, dir } = fixture(5 * CHUNK);
    const m = new IncomingModule(manifest, join(dir, 'x.part'));
    for (let i = 0; i < 5; i++) m.append(i === 2 ? Buffer.alloc(CHUNK) : chunk(bytes, i));
    const err = await m.complete(join(dir, 'x.mjs')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NxtError);
    expect((err as NxtError).code).toBe('hash-mismatch');
  });
});

describe('a large module hashed by the hashing thread', () => {
  // The thread runs compiled code (npm test builds first): the worker script is dist's.
  const compiled = new URL('../../dist/files/hash-thread-worker.js', import.meta.url);
  const identity = (path: string): string => { const st = statSync(path, { bigint: true }); return `${st.dev}:${st.ino}`; };

  it('lands and verifies byte for byte, resumes from the chunks on disk, and refuses bytes that are not the signed ones', async () => {
    const thread = new HashThread(compiled);
    try {
      const { bytes, manifest, dir } = fixture(6 * 1024 * 1024 + 11);
      const path = join(dir, 'x.part');
      const first = new IncomingModule(manifest, path, { hashThread: thread });
      for (let i = 0; i < 2000; i++) first.append(chunk(bytes, i));
      await first.suspend();
      expect(thread.files).toBe(0); // let go with the suspended file
      const second = new IncomingModule(manifest, path, { hashThread: thread });
      expect(second.heldChunks).toBe(2000);
      for (let i = 2000; i < second.totalChunks; i++) {
        second.append(chunk(bytes, i));
        if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve)); // writes land meanwhile
      }
      await second.complete(join(dir, 'x.mjs'));
      expect(readFileSync(join(dir, 'x.mjs')).equals(bytes)).toBe(true);
      expect(thread.running).toBe(true);

      const bad = new IncomingModule({ ...manifest }, join(dir, 'y.part'), { hashThread: thread });
      for (let i = 0; i < bad.totalChunks; i++) bad.append(i === 3000 ? Buffer.alloc(CHUNK) : chunk(bytes, i));
      await expect(bad.complete(join(dir, 'y.mjs'))).rejects.toMatchObject({ code: 'hash-mismatch' });
    } finally {
      await thread.close();
    }
  });

  it('hashes what is on disk, so a file changed under the writer does not pass', async () => {
    const thread = new HashThread(compiled);
    try {
      const { bytes, dir } = fixture(5 * 1024 * 1024);
      const path = join(dir, 'x.part');
      writeFileSync(path, bytes.subarray(0, 1024 * 1024));
      const followed = thread.follow(path, identity(path));
      followed.written(1024 * 1024);
      const digest = await followed.digest(1024 * 1024);
      expect(digest).toBe(createHash('sha256').update(bytes.subarray(0, 1024 * 1024)).digest('hex'));
      // Another file put in its place before the thread opened it: refused as not the one written.
      const other = join(dir, 'other');
      writeFileSync(other, bytes);
      const swapped = thread.follow(path, identity(other));
      swapped.written(1024);
      await expect(swapped.digest(1024)).rejects.toMatchObject({ code: 'storage', message: expect.stringMatching(/no longer the file being written/) });
      // Said written further than the file goes: the read comes short.
      const short = thread.follow(other, identity(other));
      short.written(bytes.length + 4096);
      await expect(short.digest(bytes.length + 4096)).rejects.toMatchObject({ code: 'storage', message: expect.stringMatching(/short of/) });
    } finally {
      await thread.close();
    }
  });

  it('is hashed here instead when the thread stops before it answers, and the next file starts another', async () => {
    const thread = new HashThread(compiled);
    try {
      const { bytes, manifest, dir } = fixture(5 * 1024 * 1024 + 1);
      const m = new IncomingModule(manifest, join(dir, 'x.part'), { hashThread: thread });
      for (let i = 0; i < m.totalChunks; i++) m.append(chunk(bytes, i));
      await thread.close();
      expect(thread.running).toBe(false);
      await m.complete(join(dir, 'x.mjs'));
      expect(readFileSync(join(dir, 'x.mjs')).equals(bytes)).toBe(true);
      // A digest owed by a thread that stops is refused as such.
      const path = join(dir, 'z');
      writeFileSync(path, bytes);
      const followed = thread.follow(path, identity(path));
      expect(thread.running).toBe(true);
      const owed = followed.digest(bytes.length);
      void thread.close();
      await expect(owed).rejects.toBeInstanceOf(HashThreadGone);
    } finally {
      await thread.close();
    }
  });

  it('ends once it has followed no file for a while', async () => {
    const thread = new HashThread(compiled, 50);
    const { bytes, dir } = fixture(4096);
    const path = join(dir, 'x');
    writeFileSync(path, bytes);
    const followed = thread.follow(path, identity(path));
    followed.written(bytes.length);
    await followed.digest(bytes.length);
    expect(thread.running).toBe(true);
    await expect.poll(() => thread.running, { timeout: 5000, interval: 20 }).toBe(false);
  });
});

describe('the module store', () => {
  it('refuses a data dir others can write to, or links inside it (modules are imported from it)', () => {
    const dir = tempDir('nxt-store-');
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => new ModuleStore(open)).toThrow(/not be writable by others.*chmod 700/);
    const real = join(dir, 'real');
    mkdirSync(real, { mode: 0o700 });
    mkdirSync(join(real, 'modules'), { mode: 0o700 });
    symlinkSync(open, join(real, 'incoming'));
    expect(() => new ModuleStore(real)).toThrow(/incoming must be a directory, not a link/);
    expect(() => new ModuleStore(join(dir, 'private'))).not.toThrow();
    symlinkSync(join(dir, 'private'), join(dir, 'link'));
    expect(() => new ModuleStore(join(dir, 'link'))).not.toThrow();
  });
});

describe('module files nothing needs any more', () => {
  it('go: all but the running one, its trial\'s way back, the one kept for upgrade, the one being tried, and those in hand', () => {
    const dir = tempDir('nxt-prune-');
    const store = new ModuleStore(join(dir, 'data'));
    const t0 = new Date('2026-12-03T10:00:00Z');
    const module = (n: number): Manifest => {
      const sha256 = createHash('sha256').update(String(n)).digest('hex');
      writeFileSync(store.modulePath(sha256), `export default () => ({ major: 2, minor: ${n} })\n`);
      return { name: `m_2_${n}.mjs`, version: { major: 2, minor: n, patch: 0 }, size: 40, chunkSize: CHUNK, created: 'now', expires: '2999-01-01T00:00:00Z', targets: 'all', sha256 };
    };
    const present = (m: Manifest): boolean => existsSync(store.modulePath(m.sha256));
    const [m1, m2, m3, m4, m5, m6] = [1, 2, 3, 4, 5, 6].map((n) => module(n));
    // m1 committed, then m2 on trial (m1 its way back), m3 kept for upgrade, m4 being tried.
    store.beginTrial(m1!, t0);
    store.commit();
    store.beginTrial(m2!, t0);
    store.setDeferred(m3);
    store.beginTrying(m4!, t0);
    // m6 is in the agent's hand (verified and in place, its trial not yet recorded), m5 in no
    // one's, however new its file; other names in the folder are none of the store's business.
    writeFileSync(join(store.modulesDir, 'notes.txt'), 'kept');
    expect(store.prune([m6!.sha256]).map((p) => p.split('/').pop())).toEqual([`${m5!.sha256}.mjs`]);
    expect([m1, m2, m3, m4, m5, m6].map((m) => present(m!))).toEqual([true, true, true, true, false, true]);
    expect(existsSync(join(store.modulesDir, 'notes.txt'))).toBe(true);
    // The trial commits, nothing waits for upgrade, nothing is being tried, m6 is still in hand
    // (the agent keeps it for upgrade in memory only, its deferred.json not written): m2 and m6 stay.
    store.endTrying();
    store.setDeferred(undefined);
    store.commit();
    store.prune([m6!.sha256]);
    expect([m1, m2, m3, m4, m6].map((m) => present(m!))).toEqual([false, true, false, false, true]);
    // Out of hand, it goes.
    store.prune();
    expect([m2, m6].map((m) => present(m!))).toEqual([true, false]);
    // A record it cannot read: what is needed is not known, and nothing goes.
    const m7 = module(7);
    writeFileSync(join(dir, 'data', 'deferred.json'), '{"cut sh');
    expect(store.prune()).toEqual([]);
    expect(present(m7)).toBe(true);
  });
});

describe('downloads other offers superseded', () => {
  it('are dropped to make room for the module offered now, and only they', () => {
    const dir = tempDir('nxt-partials-');
    const store = new ModuleStore(join(dir, 'data'));
    const sha = (n: number): string => createHash('sha256').update(String(n)).digest('hex');
    writeFileSync(store.partialPath(sha(1)), Buffer.alloc(1000));
    writeFileSync(store.partialPath(sha(2)), Buffer.alloc(500));
    writeFileSync(store.partialPath(sha(3)), Buffer.alloc(200)); // the one offered now, resumed
    writeFileSync(join(store.incomingDir, 'notes.txt'), 'kept');
    expect(store.dropOtherPartials(sha(3))).toEqual({ files: 2, bytes: 1500 });
    expect(readdirSync(store.incomingDir).sort()).toEqual([`${sha(3)}.part`, 'notes.txt'].sort());
    expect(store.dropOtherPartials(sha(3))).toEqual({ files: 0, bytes: 0 });
  });
});

describe('a trial the agent did not survive', () => {
  it('is found at the next start and the module remembered as rolled back, once', async () => {
    const { manifest, dir } = fixture(10_000);
    const data = join(dir, 'data');
    const store = new ModuleStore(data);
    store.beginTrying(manifest, new Date());
    // The agent dies here; the next one starts.
    const next = await new ModuleStore(data).loadActive();
    expect(next.interrupted).toEqual([{ ref: { name: 'm.mjs', version: '1.0.0', sha256: manifest.sha256 }, during: 'trial' }]);
    expect(next.warning).toMatch(/m\.mjs 1\.0\.0 was being tried when the agent stopped .*not tried again/);
    expect(next.active.name).toBe('built-in');
    expect(store.wasRolledBack(manifest.sha256)).toBe(true);
    expect(existsSync(join(data, 'trying.json'))).toBe(false);
    expect((await store.loadActive()).interrupted).toEqual([]);
  });

  it('is not counted when the trial ended with the agent alive, nor when its file was cut short', async () => {
    const { manifest, dir } = fixture(10_000);
    const data = join(dir, 'data');
    const store = new ModuleStore(data);
    store.beginTrying(manifest, new Date());
    store.endTrying();
    expect((await store.loadActive()).interrupted).toEqual([]);
    writeFileSync(join(data, 'trying.json'), `{"name":"m.mjs","version":"1.0.0","sha256":"${manifest.sha256.slice(0, 20)}`);
    expect((await store.loadActive()).interrupted).toEqual([]);
    expect(existsSync(join(data, 'trying.json'))).toBe(false);
    expect(store.wasRolledBack(manifest.sha256)).toBe(false);
  });
});

describe('a link planted where a partial file goes (a put into the drop-box, an upload)', () => {
  for (const [kind, plant] of [
    ['a symbolic link', (target: string, at: string) => symlinkSync(target, at)],
    ['a hard link', (target: string, at: string) => linkSync(target, at)],
  ] as const) {
    it(`is refused when it is ${kind}, and the file it names is untouched`, () => {
      const { manifest, dir } = fixture(10_000);
      const outside = join(dir, 'outside.txt');
      writeFileSync(outside, 'precious\n');
      chmodSync(outside, 0o644);
      const partial = join(dir, 'drop', 'x.nxt-part');
      mkdirSync(join(dir, 'drop'));
      plant(outside, partial);
      let err: unknown;
      try { new IncomingModule(manifest, partial); } catch (e) { err = e; }
      expect((err as NxtError).code).toBe('unsafe-file');
      expect(readFileSync(outside, 'utf8')).toBe('precious\n');
      expect(statSync(outside).mode & 0o777).toBe(0o644);
    });
  }
});

describe('a transfer\'s progress', () => {
  it('counts the chunks held beyond a gap (a device that missed the first chunks of a group\'s pass holds the rest)', async () => {
    const { bytes, manifest, dir } = fixture(20 * CHUNK);
    const clock = new FakeClock();
    const t = new IncomingTransfer(1, new IncomingModule(manifest, join(dir, 'x.part')), { send: () => undefined, complete: () => undefined, idle: () => undefined }, clock);
    for (let i = 5; i < 20; i++) t.onChunk(i, chunk(bytes, i), true);
    expect(t.receiver.inOrder).toBe(0);
    expect(t.bytesReceived).toBe(15 * CHUNK);
    for (let i = 0; i < 5; i++) t.onChunk(i, chunk(bytes, i), true);
    expect(t.bytesReceived).toBe(20 * CHUNK);
    await t.suspend();
  });
});

describe('a transfer\'s window', () => {
  it('holds 2048 chunks of 1400 or 8650 bytes beyond a gap, 96 wide ones (6 MiB)', async () => {
    const dir = tempDir('nxt-incoming-');
    const io = { send: () => undefined, complete: () => undefined, idle: () => undefined };
    for (const [chunkSize, window] of [[1400, 2048], [8650, 2048], [WIDE_CHUNK_BYTES, 96]] as const) {
      const size = 4000 * chunkSize;
      const manifest: Manifest = { name: 'm.mjs', version: { major: 1, minor: 0, patch: 0 }, size, chunkSize, created: 'now', expires: '2999-01-01T00:00:00Z', targets: 'all', sha256: '0'.repeat(64) };
      const t = new IncomingTransfer(1, new IncomingModule(manifest, join(dir, `${chunkSize}.part`)), io, new FakeClock());
      expect(t.receiver.ack(1).window).toBe(window);
      // Chunk 0 missing: the last one the window holds is taken, the next is not.
      const payload = Buffer.alloc(chunkSize);
      expect(t.wants(window - 1)).toBe(true);
      expect(t.wants(window)).toBe(false);
      t.onChunk(window - 1, payload);
      t.onChunk(window, payload);
      expect(t.bytesReceived).toBe(chunkSize);
      await t.suspend();
    }
    expect(MAX_EARLY_WIDE_BYTES).toBe(6 * 1024 * 1024);
  });
});

