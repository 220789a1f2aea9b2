import { randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHUNK_ENTRY_HEADER_BYTES, CHUNKS_HEADER_BYTES, chunkEntryBytes, decodeEnvelope, forEachChunk, TAG_BYTES } from '../../src/protocol/envelope.js';
import { PieceAssembler } from '../../src/files/piece-assembler.js';
import { LARGE_CHUNK_BYTES, PIECE_CHUNK_BYTES } from '../../src/net/fragments.js';
import { FIRST_FLIGHT_BYTES, firstFlightChunks } from '../../src/server/push-session.js';
import { SMALL_CHUNK_BYTES } from '../../src/server/release.js';
import { blockEntries, SEAL_AT_ONCE_BYTES, sealAll, sealHere, sealRelease, SealedReleases, smallAtOnce, type ReleaseShape, type SealedRelease, type Sealer, type SealJob } from '../../src/server/sealed-release.js';
import { NxtError } from '../../src/errors.js';
import { SealedChunkWire } from '../../src/files/sealed-chunk-wire.js';
import { SealThread } from '../../src/server/seal-thread.js';
import { ContentKey } from '../../src/session/content-key.js';
import { PathMtu } from '../../src/transfer/path-mtu.js';
import { hashSteadyFile } from '../../src/util/hash-file.js';
import { tempDir } from '../support/processes.js';

/** The file as a server signs it: its size, sha256 and identity, in chunks of `chunkSize`. */
async function signed(file: string, chunkSize: number): Promise<ReleaseShape> {
  const { sha256, identity } = await hashSteadyFile(file);
  return { size: readFileSync(file).length, sha256, identity, chunkSize };
}

/** Another file in `file`'s place, as a build tool or an editor puts it there (a new inode). */
function replace(file: string, bytes: Buffer): void {
  writeFileSync(`${file}.new`, bytes);
  renameSync(`${file}.new`, file);
}

async function sealed(bytes: Buffer, chunkSize: number): Promise<{ seal: SealedRelease; file: string }> {
  const dir = tempDir('nxt-seal-');
  const file = join(dir, 'm.mjs');
  writeFileSync(file, bytes);
  const seal = await sealRelease(file, await signed(file, chunkSize), join(dir, 'm.chunks'));
  return { seal, file };
}

function whenDone(seal: SealedRelease): Promise<void> {
  return new Promise((resolve) => {
    if (seal.sealedChunks === seal.totalChunks || seal.failure) { resolve(); return; }
    const stop = seal.onProgress(() => { if (seal.sealedChunks === seal.totalChunks || seal.failure) { stop(); resolve(); } });
  });
}

describe('a sealed release', () => {
  it('opens, entry by entry, to exactly the module, and progresses in whole blocks', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 123);
    const { seal } = await sealed(bytes, 8192);
    const steps: number[] = [];
    seal.onProgress(() => steps.push(seal.sealedChunks));
    await whenDone(seal);
    expect(seal.failure).toBeUndefined();
    const per = blockEntries(seal.entryBytes);
    for (const s of steps.slice(0, -1)) expect(s % per).toBe(0);
    const key = new ContentKey(seal.key, seal.sealId);
    const out: Buffer[] = [];
    forEachChunk(readFileSync(seal.path), (index, sealedChunk) => {
      expect(index).toBe(out.length);
      out.push(key.openChunk(index, sealedChunk)!);
    });
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
  });

  it('is handed out once its sealed file exists, before its first block: devices check the offer while blocks are sealed', async () => {
    const bytes = randomBytes(3 * 1024 * 1024);
    const { seal } = await sealed(bytes, 8192);
    expect(seal.sealedChunks).toBe(0);
    expect(existsSync(seal.path)).toBe(true);
    await whenDone(seal);
    expect(seal.sealedChunks).toBe(seal.totalChunks);
  });

  it('refuses a chunk under another index, or from a release sealed under another key', async () => {
    const bytes = randomBytes(20_000);
    const a = (await sealed(bytes, 1400)).seal;
    const b = (await sealed(bytes, 1400)).seal;
    await Promise.all([whenDone(a), whenDone(b)]);
    const entries: Uint8Array[] = [];
    forEachChunk(readFileSync(a.path), (_i, s) => entries.push(Buffer.from(s)));
    expect(new ContentKey(a.key, a.sealId).openChunk(1, entries[0]!)).toBeUndefined();
    expect(new ContentKey(b.key, b.sealId).openChunk(0, entries[0]!)).toBeUndefined();
    expect(new ContentKey(a.key, a.sealId).openChunk(0, entries[0]!)).toBeDefined();
  });

  it('refuses, and leaves no sealed file, a module that is no longer the file that was signed', async () => {
    const dir = tempDir('nxt-seal-');
    const file = join(dir, 'm.mjs');
    writeFileSync(file, randomBytes(4 * 1024 * 1024));
    const shape = await signed(file, 8192);
    replace(file, randomBytes(4 * 1024 * 1024)); // changed after signing
    await expect(sealRelease(file, shape, join(dir, 'm.chunks'))).rejects.toMatchObject({ code: 'module-changed' });
    expect(existsSync(join(dir, 'm.chunks'))).toBe(false);
  });

  it('fails, and leaves no sealed file, when the module is written to while it is sealed: its last block is never released', async () => {
    const dir = tempDir('nxt-seal-');
    const file = join(dir, 'm.mjs');
    writeFileSync(file, randomBytes(4 * 1024 * 1024));
    // Written an hour ago: a write now moves its times whatever the clock's granularity.
    const past = new Date(Date.now() - 3600_000);
    utimesSync(file, past, past);
    const shape = await signed(file, 8192);
    // In place, the same size, once the sealer has opened it (its first report).
    let written = false;
    const seal = await sealRelease(file, shape, join(dir, 'm.chunks'), undefined, (job, progress) => {
      void sealAll(job, (n, failure, identity) => {
        if (!written) {
          written = true;
          const fd = openSync(file, 'r+');
          writeSync(fd, randomBytes(4096), 0, 4096, 0);
          closeSync(fd);
        }
        progress(n, failure, identity);
      });
    });
    await whenDone(seal);
    expect(seal.failure?.code).toBe('module-changed');
    expect(seal.failure?.message).toMatch(/changed while it was sealed/);
    expect(seal.sealedChunks).toBeLessThan(seal.totalChunks);
    expect(existsSync(seal.path)).toBe(false);
  });

  it('keeps a failing seal\'s file until the failure is heard: a push that opens it meanwhile finds it, one after fails with the reason', async () => {
    const dir = tempDir('nxt-seal-');
    const shape = { size: 4 * 8192, identity: 'any', chunkSize: 8192 };
    // A sealer standing for the sealing thread: its first block is done; its failure (a full
    // disk) is reported when this test says, as a message from the thread would be.
    let report!: (sealed: number, failure?: NxtError) => void;
    const sealer: Sealer = (job, progress) => {
      writeFileSync(job.outPath, Buffer.alloc(chunkEntryBytes(8192)));
      report = progress;
      progress(1);
    };
    const seal = await sealRelease(join(dir, 'm.mjs'), shape, join(dir, 'm.chunks'), undefined, sealer);
    const wire = new SealedChunkWire(seal, { sendv: () => undefined, queued: () => 0 }, new PathMtu({ max: 8952 }));
    report(1, new NxtError('storage', 'cannot seal the module: the disk is full'));
    expect(existsSync(seal.path)).toBe(false);
    wire.close();
    // Made after the failure (the release was handed out before it): no open of a missing file.
    expect(() => new SealedChunkWire(seal, { sendv: () => undefined, queued: () => 0 }, new PathMtu({ max: 8952 })).close()).not.toThrow();
    expect(seal.failure?.message).toMatch(/the disk is full/);
  });
});

describe('a small release, sealed at once', () => {
  it('is the very file the block-by-block seal makes, sealed before the sealer is asked to start, which is never asked', async () => {
    const dir = tempDir('nxt-seal-');
    const file = join(dir, 'm.mjs');
    const bytes = randomBytes(SEAL_AT_ONCE_BYTES - 5);
    writeFileSync(file, bytes);
    const shape = await signed(file, 8192);
    const fixed = (n: number): Uint8Array => new Uint8Array(n).fill(3);
    const threadless: Sealer = () => { throw new Error('a small release went to the sealer'); };
    const atOnce = await sealRelease(file, shape, join(dir, 'once.chunks'), fixed, smallAtOnce(threadless));
    // Whole the moment sealRelease resolves: nothing left for a thread.
    expect(atOnce.sealedChunks).toBe(atOnce.totalChunks);
    const blocks = await sealRelease(file, shape, join(dir, 'blocks.chunks'), fixed, (job, progress) => { void sealAll(job, progress); });
    await whenDone(blocks);
    expect(readFileSync(atOnce.path).equals(readFileSync(blocks.path))).toBe(true);

    replace(file, randomBytes(bytes.length)); // changed after signing
    await expect(sealRelease(file, shape, join(dir, 'changed.chunks'), fixed, smallAtOnce(threadless))).rejects.toMatchObject({ code: 'module-changed' });
    expect(existsSync(join(dir, 'changed.chunks'))).toBe(false);
    await expect(sealRelease(join(dir, 'missing.mjs'), shape, join(dir, 'missing.chunks'), fixed, smallAtOnce(threadless))).rejects.toMatchObject({ code: 'no-such-file' });
  });
});

describe('the sealed-chunk wire', () => {
  it('packs as many whole entries as the path carries, each datagram a well-formed CHUNKS frame', async () => {
    const { seal } = await sealed(randomBytes(200 * 1400), 1400);
    await whenDone(seal);
    const sent: Buffer[] = [];
    const path = new PathMtu({ max: 16_384 });
    const wire = new SealedChunkWire(seal, { sendv: (parts) => sent.push(Buffer.concat(parts)), queued: () => 0 }, path);
    const indices = [...Array(60).keys()];
    wire.send(7, indices, 0);
    const seen: number[] = [];
    for (const d of sent) {
      const frame = decodeEnvelope(d);
      expect(frame.type).toBe('chunks');
      if (frame.type === 'chunks') {
        expect(frame.transferId).toBe(7);
        forEachChunk(frame.entries, (i) => seen.push(i));
      }
      expect(d.length).toBeLessThanOrEqual(8952); // base, or the one probe outstanding
    }
    expect(seen).toEqual(indices);
    // The first datagram probed the next size (8952: six entries); the rest stayed at the base.
    expect(sent[0]!.length).toBeGreaterThan(1452);
    expect(sent.slice(1).every((d) => d.length <= 1452)).toBe(true);
    // Its chunks acknowledged: the path now carries 8952, and datagrams grow.
    wire.onAcked((i) => i < 6, 1);
    expect(path.size).toBe(8952);
    sent.length = 0;
    wire.send(7, [...Array(60).keys()].map((i) => i + 60), 2);
    expect(sent[0]!.length).toBeGreaterThan(8952); // the next probe, 16384
    // Then six entries a datagram (8952 bytes), the last one with what remains.
    expect(sent.slice(1, -1).every((d) => d.length === CHUNKS_HEADER_BYTES + 6 * 1422)).toBe(true);
    wire.close();
  });

  it('cuts chunks that do not fit the path into pieces of datagrams that never fragment, which join and open to the module', async () => {
    const bytes = randomBytes(20 * PIECE_CHUNK_BYTES + 1000);
    const { seal } = await sealed(bytes, PIECE_CHUNK_BYTES);
    await whenDone(seal);
    const sent: Buffer[] = [];
    const path = new PathMtu({ max: 1472 });
    const wire = new SealedChunkWire(seal, { sendv: (parts) => sent.push(Buffer.concat(parts)), queued: () => 0 }, path, true);
    expect(wire.pieced).toBe(true);
    wire.send(9, [...Array(21).keys()], 0);
    // Six pieces a chunk, the short last chunk one; no probe (nothing above 1452).
    expect(sent.length).toBe(20 * 6 + 1);
    expect(sent.every((d) => d.length <= 1452)).toBe(true);
    expect(wire.chunksSent).toBe(21);
    expect(wire.datagrams).toBe(121);
    const key = new ContentKey(seal.key, seal.sealId);
    const assembler = new PieceAssembler(PIECE_CHUNK_BYTES + TAG_BYTES);
    const out: Buffer[] = [];
    // Backwards: pieces of one chunk arrive before those of the next, but the chunks out of order.
    for (const d of sent.reverse()) {
      const f = decodeEnvelope(d);
      if (f.type !== 'piece') throw new Error(`a ${f.type} frame`);
      expect(f.transferId).toBe(9);
      expect(Buffer.from(f.token).equals(key.pieceToken)).toBe(true);
      const length = Math.min(PIECE_CHUNK_BYTES, bytes.length - f.index * PIECE_CHUNK_BYTES) + TAG_BYTES;
      const whole = assembler.add(f.index, f.piece, f.pieces, f.bytes, length);
      expect(whole).not.toBe(false);
      if (whole) out[f.index] = key.openChunk(f.index, whole)!;
    }
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
    // A path that carries a chunk whole, or a device not to be sent pieces: CHUNKS as before.
    for (const [max, pieces] of [[65_507, true], [1472, false]] as const) {
      const other = new SealedChunkWire(seal, { sendv: () => undefined, queued: () => 0 }, new PathMtu({ max }), pieces);
      expect(other.pieced).toBe(false);
      other.close();
    }
    wire.close();
  });

  it('takes a resent probe chunk as the probe lost', async () => {
    const { seal } = await sealed(randomBytes(100 * 1400), 1400);
    await whenDone(seal);
    const path = new PathMtu({ max: 8952 });
    const wire = new SealedChunkWire(seal, { sendv: () => undefined, queued: () => 0 }, path);
    for (let attempt = 0; attempt < 3; attempt++) {
      wire.send(1, [...Array(20).keys()], attempt); // probes 8952 with chunks 0…5
      wire.send(1, [0], attempt + 0.5); // chunk 0 declared lost and resent
    }
    expect(path.size).toBe(1452);
    expect(path.nextProbe(10)).toBeUndefined(); // three losses: the search is over
    wire.close();
  });
});

describe('sealing one release after another, and several at once', () => {
  it('gives each its own bytes while the block buffers go from one seal to the next', async () => {
    const dir = tempDir('nxt-seal-');
    const opens = async (seal: SealedRelease, bytes: Buffer): Promise<boolean> => {
      await whenDone(seal);
      const content = new ContentKey(seal.key, seal.sealId);
      const entries = readFileSync(seal.path);
      const opened = Array.from({ length: seal.totalChunks }, (_, i) =>
        content.openChunk(i, entries.subarray(i * seal.entryBytes + CHUNK_ENTRY_HEADER_BYTES, Math.min(entries.length, (i + 1) * seal.entryBytes))));
      return opened.every((b) => b !== undefined) && Buffer.concat(opened as Buffer[]).equals(bytes);
    };
    const module = async (name: string, size: number): Promise<{ file: string; bytes: Buffer; shape: ReleaseShape }> => {
      const file = join(dir, name);
      const bytes = randomBytes(size);
      writeFileSync(file, bytes);
      return { file, bytes, shape: await signed(file, 8192) };
    };
    const [a, b, c, d] = await Promise.all([module('a', 3 * 1024 * 1024 + 11), module('b', 2 * 1024 * 1024 + 7), module('c', 10_000), module('d', 1024 * 1024)]);
    const sealOne = async (m: typeof a, as: string): Promise<boolean> => opens(await sealRelease(m.file, m.shape, join(dir, `${as}.chunks`)), m.bytes);
    expect(await sealOne(d, 'd')).toBe(true); // its four buffers are kept
    // Three blocks and more each, at once: one takes the kept buffers, the other new ones.
    expect(await Promise.all([sealOne(a, 'a'), sealOne(b, 'b')])).toEqual([true, true]);
    for (const m of [c, d, a]) expect(await sealOne(m, `${m.file.slice(-1)}-again`)).toBe(true);
  });
});

describe('the sealed releases a server keeps', () => {
  /** A push of it: sealed (or the kept seal), used until sealed whole, let go. */
  async function sealedOnce(releases: SealedReleases, { file, shape }: { file: string; shape: ReleaseShape }): Promise<SealedRelease> {
    const lease = releases.use(file, shape);
    const s = await lease.sealed;
    await whenDone(s);
    lease.release();
    return s;
  }

  async function shapesOf(dir: string, sizes: number[]): Promise<{ file: string; shape: ReleaseShape }[]> {
    const shapes: { file: string; shape: ReleaseShape }[] = [];
    for (const [i, size] of sizes.entries()) {
      const file = join(dir, `m${i}.mjs`);
      writeFileSync(file, randomBytes(size));
      shapes.push({ file, shape: await signed(file, 8192) });
    }
    return shapes;
  }

  it('keeps the four most recently used on disk and removes older ones once no push uses them', async () => {
    const dir = tempDir('nxt-sealed-');
    const releases = new SealedReleases(join(dir, 'sealed'));
    const shapes = await shapesOf(dir, [5000, 5000, 5000, 5000, 5000, 5000]);
    const seal = (i: number): Promise<SealedRelease> => sealedOnce(releases, shapes[i]!);
    const made = [await seal(0), await seal(1), await seal(2), await seal(3)];
    expect(await seal(0)).toBe(made[0]); // used again (the same seal, not sealed anew): now the most recent
    made.push(await seal(4)); // the fifth: m1, the least recently used, goes
    await releases.removed();
    expect(made.map((s) => existsSync(s.path))).toEqual([true, false, true, true, true]);
    // One still in use when it is no longer kept stays until its push lets go of it.
    const inUse = releases.use(shapes[2]!.file, shapes[2]!.shape);
    const third = await inUse.sealed;
    expect(third).toBe(made[2]);
    for (const i of [3, 4, 0, 5]) await seal(i); // m2 is the least recently used again, and goes
    await releases.removed();
    expect(existsSync(third.path)).toBe(true);
    inUse.release();
    inUse.release(); // again: harmless
    await releases.removed();
    expect(existsSync(third.path)).toBe(false);
    expect(readdirSync(join(dir, 'sealed'))).toHaveLength(4);
  });

  it('seals again, for the next push, a release whose seal failed after it started', async () => {
    const dir = tempDir('nxt-sealed-');
    let jobs = 0;
    // The first seal makes its file, then fails (a full disk); the others seal.
    const sealer: Sealer = (job, progress) => {
      if (++jobs > 1) return sealHere(job, progress);
      writeFileSync(job.outPath, '');
      progress(0);
      setImmediate(() => { rmSync(job.outPath, { force: true }); progress(0, new NxtError('storage', 'the disk accepted no more bytes')); });
    };
    const releases = new SealedReleases(join(dir, 'sealed'), undefined, sealer);
    const [m] = await shapesOf(dir, [3 * 1024 * 1024]);
    const first = releases.use(m!.file, m!.shape);
    const failed = await first.sealed;
    await whenDone(failed);
    expect(failed.failure?.code).toBe('storage');
    first.release();
    const again = await sealedOnce(releases, m!);
    expect(again).not.toBe(failed);
    expect(again.failure).toBeUndefined();
    expect(again.sealedChunks).toBe(again.totalChunks);
    expect(jobs).toBe(2);
    // Kept, as any other: the next push takes it as it is.
    expect(await sealedOnce(releases, m!)).toBe(again);
    expect(jobs).toBe(2);
  });

  it('keeps no more bytes of them than its limit (64 MiB by default), but always the latest', async () => {
    const dir = tempDir('nxt-sealed-');
    const MiB = 1024 * 1024;
    const releases = new SealedReleases(join(dir, 'sealed'), undefined, undefined, { count: 4, bytes: 3 * MiB });
    const shapes = await shapesOf(dir, [MiB, MiB, 4 * MiB, 5000]);
    const seal = (i: number): Promise<SealedRelease> => sealedOnce(releases, shapes[i]!);
    const made = [await seal(0), await seal(1)];
    await releases.removed();
    expect(made.map((s) => existsSync(s.path))).toEqual([true, true]);
    made.push(await seal(2)); // more than the limit alone: the only one kept
    await releases.removed();
    expect(made.map((s) => existsSync(s.path))).toEqual([false, false, true]);
    made.push(await seal(3));
    await releases.removed();
    expect(made.map((s) => existsSync(s.path))).toEqual([false, false, false, true]);
  });
});

describe('a seal started before its release is signed (sealEarly)', () => {
  /** sealAll, counting the seals it is asked for and telling when each has sealed its last block. */
  function countingSealer(): { sealer: Sealer; jobs: SealJob[]; sealed: () => Promise<void> } {
    const jobs: SealJob[] = [];
    let ended: (() => void) | undefined;
    let ending = new Promise<void>((resolve) => { ended = resolve; });
    const sealer: Sealer = (job, progress) => {
      jobs.push(job);
      void sealAll(job, (n, failure, identity) => {
        progress(n, failure, identity);
        if (failure || n === Math.ceil(job.size / job.chunkSize)) { ended?.(); ending = new Promise<void>((resolve) => { ended = resolve; }); }
      });
    };
    return { sealer, jobs, sealed: () => ending };
  }
  const early = (dir: string): string[] => readdirSync(join(dir, 'sealed')).filter((n) => n.startsWith('early-'));

  it('is what the push takes: sealed once, before the file is signed, its last block counted only once the signed file is known to be the sealed one', async () => {
    const dir = tempDir('nxt-sealed-');
    const { sealer, jobs, sealed: sealerDone } = countingSealer();
    const releases = new SealedReleases(join(dir, 'sealed'), undefined, sealer);
    const file = join(dir, 'm.mjs');
    const bytes = randomBytes(3 * 1024 * 1024 + 7);
    writeFileSync(file, bytes);
    const done = sealerDone();
    releases.sealEarly(file, 8192);
    expect(jobs.map((j) => j.identity)).toEqual([undefined]);
    // The module is hashed and signed meanwhile; the sealer finished before the push asks.
    const shape = await signed(file, 8192);
    await done;
    const seal = await releases.use(file, shape).sealed;
    expect(jobs).toHaveLength(1);
    expect(seal.failure).toBeUndefined();
    expect(seal.sealedChunks).toBe(seal.totalChunks);
    const key = new ContentKey(seal.key, seal.sealId);
    const out: Buffer[] = [];
    forEachChunk(readFileSync(seal.path), (index, entry) => out.push(key.openChunk(index, entry)!));
    expect(Buffer.concat(out).equals(bytes)).toBe(true);
    // Pushed again, the same file in the same shape is not sealed again, early or not.
    releases.sealEarly(file, 8192);
    expect(await releases.use(file, shape).sealed).toBe(seal);
    expect(jobs).toHaveLength(1);
  });

  it('fails as a module changed after signing when the file it sealed is not the one that was signed, and leaves no file', async () => {
    const dir = tempDir('nxt-sealed-');
    // The sealer opens the file only when the test says: it has been replaced by then.
    let open!: () => void;
    const opened = new Promise<void>((resolve) => { open = resolve; });
    const jobs: SealJob[] = [];
    const releases = new SealedReleases(join(dir, 'sealed'), undefined, (job, progress) => { jobs.push(job); void opened.then(() => sealAll(job, progress)); });
    const file = join(dir, 'm.mjs');
    writeFileSync(file, randomBytes(2 * 1024 * 1024));
    const shape = await signed(file, 8192); // what the push signs: the file as the seal started
    releases.sealEarly(file, 8192);
    replace(file, randomBytes(2 * 1024 * 1024));
    open();
    const seal = await releases.use(file, shape).sealed;
    await whenDone(seal);
    expect(jobs).toHaveLength(1); // the early seal was taken
    expect(seal.failure?.code).toBe('module-changed');
    expect(seal.sealedChunks).toBeLessThan(seal.totalChunks);
    expect(existsSync(seal.path)).toBe(false);
  });

  it('is not taken for a file rewritten since it started, nor in another chunk size; what no push took is removed', async () => {
    const dir = tempDir('nxt-sealed-');
    const { sealer, jobs } = countingSealer();
    const releases = new SealedReleases(join(dir, 'sealed'), undefined, sealer);
    const file = join(dir, 'm.mjs');
    writeFileSync(file, randomBytes(2 * 1024 * 1024));
    releases.sealEarly(file, 8192);
    releases.sealEarly(file, 1400);
    replace(file, randomBytes(2 * 1024 * 1024));
    const seal = await releases.use(file, await signed(file, 8192)).sealed;
    await whenDone(seal);
    expect(seal.failure).toBeUndefined();
    expect(jobs.map((j) => [j.chunkSize, j.identity === undefined])).toEqual([[8192, true], [1400, true], [8192, false]]);
    releases.dropEarly(file);
    await releases.removed();
    expect(early(dir)).toEqual([]);
    expect(existsSync(seal.path)).toBe(true);
  });

  /** `sealer`, its reports kept: how far each job got, and why it ended. */
  function watched(sealer: Sealer): { sealer: Sealer; reports: { sealed: number; total: number; failure?: string }[] } {
    const reports: { sealed: number; total: number; failure?: string }[] = [];
    return {
      reports,
      sealer: (job, progress) => sealer(job, (n, failure, identity) => {
        reports.push({ sealed: n, total: Math.ceil(job.size / job.chunkSize), ...(failure ? { failure: failure.code } : {}) });
        progress(n, failure, identity);
      }),
    };
  }

  it('that no push takes is stopped before its next block, here or in the sealing thread, and its file removed', async () => {
    const thread = new SealThread(new URL('../../dist/server/seal-thread-worker.js', import.meta.url));
    try {
      for (const [where, sealer] of [['here', sealHere], ['in the thread', thread.seal]] as const) {
        const dir = tempDir('nxt-sealed-');
        const { sealer: watching, reports } = watched(sealer);
        const releases = new SealedReleases(join(dir, 'sealed'), undefined, watching);
        // 256 MiB (sparse: read back as zeros, no disk): ~0.5 s of sealing, were it not stopped.
        const file = join(dir, 'm.mjs');
        writeFileSync(file, '');
        truncateSync(file, 256 * 1024 * 1024);
        releases.sealEarly(file, 65536);
        releases.dropEarly(file); // its push failed before signing (a bad --version, say)
        await releases.removed();
        expect(early(dir), where).toEqual([]);
        const last = reports.at(-1)!;
        expect(last.failure, where).toBe('seal-stopped');
        expect(last.sealed, where).toBeLessThan(last.total / 4);
      }
    } finally {
      await thread.close();
    }
  });

  it('passes back from the sealing thread which file it sealed', async () => {
    const thread = new SealThread(new URL('../../dist/server/seal-thread-worker.js', import.meta.url));
    try {
      const dir = tempDir('nxt-sealed-');
      const releases = new SealedReleases(join(dir, 'sealed'), undefined, thread.seal);
      const file = join(dir, 'm.mjs');
      writeFileSync(file, randomBytes(3 * 1024 * 1024));
      releases.sealEarly(file, 8192);
      const seal = await releases.use(file, await signed(file, 8192)).sealed;
      await whenDone(seal);
      expect(seal.failure).toBeUndefined();
      expect(seal.sealedChunks).toBe(seal.totalChunks);
      expect(early(dir)).toHaveLength(1); // taken, not copied
    } finally {
      await thread.close();
    }
  });
});

describe('sealing in a thread of its own', () => {
  // The thread runs compiled code (npm test builds first): the worker script is dist's.
  const compiled = new URL('../../dist/server/seal-thread-worker.js', import.meta.url);

  it('seals the very entries this thread would, and reports a changed module from there', async () => {
    const thread = new SealThread(compiled);
    // Started as a server starts it: readied by a message of its own before the first seal.
    thread.start();
    try {
      const dir = tempDir('nxt-seal-');
      const file = join(dir, 'm.mjs');
      const bytes = randomBytes(3 * 1024 * 1024 + 5);
      writeFileSync(file, bytes);
      const shape = await signed(file, 8192);
      const fixed = (n: number): Uint8Array => new Uint8Array(n).fill(7);
      const there = await sealRelease(file, shape, join(dir, 'there.chunks'), fixed, thread.seal);
      const here = await sealRelease(file, shape, join(dir, 'here.chunks'), fixed);
      await Promise.all([whenDone(there), whenDone(here)]);
      expect(there.failure).toBeUndefined();
      expect(there.sealedChunks).toBe(there.totalChunks);
      expect(readFileSync(there.path).equals(readFileSync(here.path))).toBe(true);

      replace(file, randomBytes(bytes.length)); // changed after signing
      await expect(sealRelease(file, shape, join(dir, 'changed.chunks'), fixed, thread.seal)).rejects.toMatchObject({ code: 'module-changed' });
      expect(existsSync(join(dir, 'changed.chunks'))).toBe(false);
    } finally {
      await thread.close();
    }
  });

  it('fails the seals it held when the thread stops, and starts another for the next', async () => {
    const thread = new SealThread(compiled);
    const dir = tempDir('nxt-seal-');
    const file = join(dir, 'm.mjs');
    writeFileSync(file, randomBytes(64 * 1024 * 1024));
    const shape = await signed(file, 8192);
    const sealing = sealRelease(file, shape, join(dir, 'a.chunks'), undefined, thread.seal);
    const stopping = thread.close();
    await expect(sealing).rejects.toMatchObject({ code: 'seal-failed', message: expect.stringMatching(/sealing thread stopped/) });
    await stopping;
    expect(existsSync(join(dir, 'a.chunks'))).toBe(false);
    try {
      const again = await sealRelease(file, shape, join(dir, 'b.chunks'), undefined, thread.seal);
      await whenDone(again);
      expect(again.failure).toBeUndefined();
      expect(again.sealedChunks).toBe(again.totalChunks);
    } finally {
      await thread.close();
    }
  });
});

describe('the first flight of a push (chunks sent with its OFFER)', () => {
  const shape = (size: number, chunkSize: number) => ({ size, chunkSize, totalChunks: Math.ceil(size / chunkSize), entryBytes: chunkEntryBytes(chunkSize) });

  it('is the whole of a module that fits QUIC\'s initial window, and whole chunks of a larger one', () => {
    // A 10 KiB module in large chunks: two entries, 10,240 bytes and their tags and headers.
    expect(firstFlightChunks(shape(10 * 1024, LARGE_CHUNK_BYTES))).toBe(2);
    expect(firstFlightChunks(shape(1024 * 1024, LARGE_CHUNK_BYTES))).toBe(Math.floor(FIRST_FLIGHT_BYTES / chunkEntryBytes(LARGE_CHUNK_BYTES)));
    expect(firstFlightChunks(shape(1024 * 1024, SMALL_CHUNK_BYTES))).toBe(Math.floor(FIRST_FLIGHT_BYTES / chunkEntryBytes(SMALL_CHUNK_BYTES)));
    // Never more than the window, whatever the module: a chunk larger than it goes after the offer.
    expect(firstFlightChunks(shape(64 * 1024, 16 * 1024))).toBe(0);
  });
});
