/**
 * Seal each release once: its chunks are encrypted with a fresh content key into a file in the
 * state dir, entries laid out exactly as CHUNKS frames carry them (index, length, ciphertext ‖
 * tag). A push to any number of devices then reads runs of that file straight into datagrams:
 * no per-device or per-datagram cryptography on the server.
 *
 * Sealing streams: it goes a block at a time, and a push may send every chunk of a block once it
 * is sealed, so a device starts receiving while the rest is still being sealed (for a 128 MiB
 * module that is ~0.3 s with 8 KiB chunks, ~1 s with 1.4 KiB ones, off the time to first byte).
 * The server seals in a thread of its own (seal-thread.ts runs sealAll there), beside sending.
 *
 * The key lives only in this process's memory (a restart seals again under a new key) and
 * reaches a device only inside its authenticated session, with the signed OFFER; a device that
 * is pending, rejected or revoked is offered nothing, so it never gets the key.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { describeFsError } from '../util/atomic-file.js';
import { BufferPool } from '../util/buffer-pool.js';
import { fdIdentity, fileIdentity, handleIdentity } from '../util/file-identity.js';
import { chunkEntryBytes, writeChunkEntryHeader, CHUNK_ENTRY_HEADER_BYTES, TAG_BYTES } from '../protocol/envelope.js';
import { CONTENT_KEY_BYTES, SEAL_ID_BYTES } from '../protocol/messages.js';
import { ContentKey } from '../session/content-key.js';
import { MAX_MODULE_BYTES } from '../security/manifest.js';
import { readFullySync } from '../util/read-fully.js';

/** About this many bytes of sealed entries make a block: sealing reports progress, and the
 *  senders read the file, a block at a time (few syscalls; the event loop breathes between). */
const BLOCK_BYTES = 1024 * 1024;

/** Block buffers kept between seals (a seal takes four): four new 1 MiB buffers were 10–20 ms of
 *  every push's sealing on the benchmark VM, before its first datagram. */
const blockPool = new BufferPool(BLOCK_BYTES, 8);

/** Make a thread's first seal as quick as its next ones: its block buffers mapped, the cipher
 *  used once. The sealing thread does it as it starts. */
export function warmSealing(): void {
  const buffers = [blockPool.take(), blockPool.take(), blockPool.take(), blockPool.take()];
  for (const b of buffers) b.fill(0);
  new ContentKey(randomBytes(CONTENT_KEY_BYTES), randomBytes(SEAL_ID_BYTES)).sealChunk(0, buffers[0]!.subarray(0, 1024), buffers[1]!, 0);
  blockPool.give(buffers);
}

/** Whole entries per block for entries of `entryBytes`. */
export function blockEntries(entryBytes: number): number {
  return Math.max(1, Math.floor(BLOCK_BYTES / entryBytes));
}

export interface SealedRelease {
  /** The sealed file: entry i at i × entryBytes. */
  readonly path: string;
  readonly size: number;
  readonly chunkSize: number;
  readonly totalChunks: number;
  /** Bytes of one full entry (the last may be shorter). */
  readonly entryBytes: number;
  readonly key: Uint8Array;
  readonly sealId: Uint8Array;
  /** Chunks sealed so far: always whole blocks, or all of them. */
  readonly sealedChunks: number;
  /** Why sealing stopped short (the file changed after signing, the disk is full), if it did. */
  readonly failure: NxtError | undefined;
  /** Call `listener` as sealing progresses (and once it fails); returns the unsubscribe. */
  onProgress(listener: () => void): () => void;
}

class StreamingSeal implements SealedRelease {
  sealedChunks = 0;
  failure: NxtError | undefined;
  readonly totalChunks: number;
  readonly entryBytes: number;
  private readonly listeners = new Set<() => void>();
  /** Stops the sealer (Sealer's answer), if it gave a way. */
  stopSealer: StopSeal | undefined;
  /** The file an early seal's sealer reported it sealed, with its last block, before the seal
   *  knew which file it must be: that block waits for `expect`. */
  private sealedAs: string | undefined;

  constructor(
    readonly path: string, readonly size: number, readonly chunkSize: number,
    readonly key: Uint8Array, readonly sealId: Uint8Array,
    /** The file it must be made of: the identity of the file the release's signer hashed
     *  (undefined: an early seal, until `expect`). */
    private expected: string | undefined,
  ) {
    this.totalChunks = Math.ceil(size / chunkSize);
    this.entryBytes = chunkEntryBytes(chunkSize);
  }

  onProgress(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The sealer's report: chunks sealed so far, a failure, or (with the last block) the identity
   *  of the file it sealed. The last block counts only once that is known to be the signed file. */
  advance(sealed: number, failure?: NxtError, identity?: string): void {
    const last = !failure && sealed === this.totalChunks && this.sealedChunks < sealed;
    if (last && this.expected === undefined) this.sealedAs = identity; // counted by expect()
    else if (last && identity !== undefined && identity !== this.expected) this.fail(changedAfterSigning());
    else if (failure) this.fail(failure);
    else this.sealedChunks = sealed;
    for (const l of [...this.listeners]) l();
  }

  private fail(failure: NxtError): void {
    // A failed seal's half-written file goes now, in the same turn as the failure is known: a
    // push that saw no failure yet has it open (sending what was sealed until the failure
    // reaches it), and a retry, which may seal the same path, starts only after this.
    rmSync(this.path, { force: true });
    this.failure ??= failure;
  }

  /** An early seal's release is signed: the identity of the file its signer hashed. If the
   *  sealer has finished already, its last block counts now, or the seal fails as a module
   *  changed after signing. */
  expect(identity: string): void {
    if (this.expected !== undefined) return;
    this.expected = identity;
    if (this.sealedAs !== undefined) this.advance(this.totalChunks, undefined, this.sealedAs);
  }

  /** Resolves once the sealer is done with it (the last block or a failure). */
  finished(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): boolean => this.failure !== undefined || this.sealedChunks === this.totalChunks || this.sealedAs !== undefined;
      if (done()) { resolve(); return; }
      const stop = this.onProgress(() => { if (done()) { stop(); resolve(); } });
    });
  }
}

/** What to seal: the module, its signed shape, where the sealed file goes, under which key. */
export interface SealJob {
  readonly modulePath: string;
  readonly size: number;
  /** The file it must be (util/file-identity.ts: the one the release's signer hashed); undefined
   *  for an early seal (SealedReleases.sealEarly), whose last report says which file it sealed,
   *  to be checked once the release is signed. */
  readonly identity: string | undefined;
  readonly chunkSize: number;
  readonly outPath: string;
  readonly key: Uint8Array;
  readonly sealId: Uint8Array;
}

/** Where sealing runs: this thread, or a sealing thread (seal-thread.ts). It calls `progress`
 *  once the sealed file exists (with 0, or with all for a release sealed at once), then with the
 *  chunks sealed so far (whole blocks, then all, with the identity of the file it sealed), and at
 *  most once with the failure. It may return how to stop the job: the seal then fails as
 *  stopped (sealStopped) at its next block, if it has not ended by then. */
export type Sealer = (job: SealJob, progress: SealProgress) => StopSeal | void;
export type SealProgress = (sealed: number, failure?: NxtError, identity?: string) => void;
export type StopSeal = () => void;

/** Releases up to this size are sealed at once, where they are asked for, with synchronous I/O
 *  (holding the thread 0.5 ms for 10 KiB, 0.8–1.5 ms for 64 KiB on the benchmark VM): through the
 *  sealing thread a 10 KiB release took 2–14 ms (a message each way and five trips through
 *  libuv's thread pool), at times longer than the push's signature, which it runs beside. */
export const SEAL_AT_ONCE_BYTES = 64 * 1024;

/** `sealer` for releases above SEAL_AT_ONCE_BYTES; smaller ones are sealed at once, here. */
export function smallAtOnce(sealer: Sealer): Sealer {
  return (job, progress) => {
    if (job.size > SEAL_AT_ONCE_BYTES) return sealer(job, progress);
    sealAtOnce(job, progress);
  };
}

/** Seal in this thread (block by block, the event loop breathing between blocks; a small release
 *  at once). */
export const sealHere: Sealer = smallAtOnce((job, progress) => {
  const stop = new AbortController();
  void sealAll(job, progress, stop.signal);
  return () => stop.abort();
});

/** Why a seal stops, in the same words whether it seals at once or block by block. */
const cannotRead = (path: string, err: unknown): NxtError => new NxtError('no-such-file', `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
const becameShorter = (size: number): NxtError => new NxtError('module-changed', `the module became shorter than its manifest says (${size} bytes) after it was signed: push it again`);
const changedAfterSigning = (): NxtError => new NxtError('module-changed', 'the module changed after it was signed (it is no longer the file that was hashed): push it again');
const changedWhileSealed = (): NxtError => new NxtError('module-changed', 'the module changed while it was sealed: push it again');
/** An early seal no push took, stopped (SealedReleases.dropEarly): never a push's failure. */
export const sealStopped = (): NxtError => new NxtError('seal-stopped', 'sealing stopped: no push wants this seal');
/** The file opened to be sealed is the one that was signed (or, for an early seal, any). */
function checkSigned(job: SealJob, identity: string): void {
  if (job.identity !== undefined && identity !== job.identity) throw changedAfterSigning();
}
const sealFailure = (outPath: string, err: unknown): NxtError => (err instanceof NxtError ? err
  : new NxtError('storage', `cannot seal the module into ${outPath}: ${describeFsError(err)}`, { cause: err }));

/** A small release in one go: read (the very file that was signed), seal, write, report. */
function sealAtOnce(job: SealJob, progress: SealProgress): void {
  const { size, chunkSize } = job;
  const totalChunks = Math.ceil(size / chunkSize);
  let identity: string;
  try {
    let input: number;
    try {
      input = openSync(job.modulePath, 'r');
    } catch (err) {
      throw cannotRead(job.modulePath, err);
    }
    const plain = Buffer.allocUnsafe(size);
    try {
      identity = fdIdentity(input);
      checkSigned(job, identity);
      if (readFullySync(input, plain, 0) < size) throw becameShorter(size);
      if (fdIdentity(input) !== identity) throw changedWhileSealed();
    } finally {
      closeSync(input);
    }
    const content = new ContentKey(job.key, job.sealId);
    const out = Buffer.allocUnsafe(size + totalChunks * (chunkEntryBytes(chunkSize) - chunkSize));
    let at = 0;
    for (let i = 0; i < totalChunks; i++) {
      const length = Math.min(chunkSize, size - i * chunkSize);
      writeChunkEntryHeader(out, at, i, length + TAG_BYTES);
      at = content.sealChunk(i, plain.subarray(i * chunkSize, i * chunkSize + length), out, at + CHUNK_ENTRY_HEADER_BYTES);
    }
    writeFileSync(job.outPath, out.subarray(0, at), { mode: 0o600 });
  } catch (err) {
    progress(0, sealFailure(job.outPath, err));
    return;
  }
  progress(totalChunks, undefined, identity);
}

/**
 * Seal `modulePath` (which must still be the file `identity` says, the one whose hash was signed:
 * checked as it is opened and again after its last byte is read, so what is sent is what was
 * signed without hashing it twice) into `outPath`.
 * Resolves once the sealed file exists (a small release: once it is whole), or rejects when it
 * cannot be made (the module cannot be read, the state dir takes no file); the blocks follow,
 * reported through onProgress, and so does a later failure (a full disk, the module changed).
 */
export function sealRelease(
  modulePath: string,
  shape: { readonly size: number; readonly identity: string; readonly chunkSize: number },
  outPath: string,
  random: (n: number) => Uint8Array = randomBytes,
  sealer: Sealer = sealHere,
): Promise<SealedRelease> {
  return startSeal(modulePath, shape, outPath, random, sealer);
}

/** sealRelease, for a file not yet signed (an early seal: StreamingSeal.expect). */
async function startSeal(
  modulePath: string,
  shape: { readonly size: number; readonly identity: string | undefined; readonly chunkSize: number },
  outPath: string,
  random: (n: number) => Uint8Array,
  sealer: Sealer,
): Promise<StreamingSeal> {
  const seal = new StreamingSeal(outPath, shape.size, shape.chunkSize, random(CONTENT_KEY_BYTES), random(SEAL_ID_BYTES), shape.identity);
  // The first report (the file made, or the failure before it) decides what the caller gets.
  await new Promise<void>((resolve) => {
    seal.stopSealer = sealer({ modulePath, size: shape.size, identity: shape.identity, chunkSize: shape.chunkSize, outPath, key: seal.key, sealId: seal.sealId }, (sealed, failure, identity) => {
      seal.advance(sealed, failure, identity);
      resolve();
    }) ?? undefined;
  });
  if (seal.sealedChunks === 0 && seal.failure) throw seal.failure;
  return seal;
}

/** Seal block after block; never rejects: it closes both files and reports each block sealed
 *  (the last only once the file is known to have stayed what it was when opened) or the failure.
 *  Once `stop` is aborted it fails as stopped (sealStopped) before its next block. */
export async function sealAll(job: SealJob, progress: SealProgress, stop?: AbortSignal): Promise<void> {
  const { size, chunkSize } = job;
  const totalChunks = Math.ceil(size / chunkSize);
  const entryBytes = chunkEntryBytes(chunkSize);
  let sealedChunks = 0;
  let input: FileHandle | undefined;
  let output: FileHandle | undefined;
  let buffers: Buffer[] = [];
  try {
    input = await open(job.modulePath, 'r').catch((err: unknown) => { throw cannotRead(job.modulePath, err); });
    const identity = await handleIdentity(input);
    checkSigned(job, identity);
    output = await open(job.outPath, 'w', 0o600).catch((err: unknown) => {
      throw new NxtError('storage', `cannot create ${job.outPath}: ${describeFsError(err)}`, { cause: err });
    });
    // The sealed file exists: a push may open it and offer the release now, while its first
    // blocks are sealed (the device checks the offer's signature meanwhile).
    progress(0);
    const content = new ContentKey(job.key, job.sealId);
    const stepChunks = blockEntries(entryBytes);
    const blocks = Math.ceil(totalChunks / stepChunks);
    // Two of each buffer: block k+1 is read, and block k-1 written, while block k is encrypted
    // (reads and writes run on libuv's threads; this thread only computes). A block's entries,
    // and so its chunks, fit BLOCK_BYTES (blockEntries).
    buffers = [blockPool.take(), blockPool.take(), blockPool.take(), blockPool.take()];
    const plain = [buffers[0]!, buffers[1]!] as const;
    const sealed = [buffers[2]!, buffers[3]!] as const;
    const read = async (block: number): Promise<Buffer> => {
      const into = plain[block % 2]!;
      const first = block * stepChunks;
      const want = Math.min(stepChunks * chunkSize, size - first * chunkSize);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await input!.read(into, got, want - got, first * chunkSize + got);
        if (bytesRead === 0) throw becameShorter(size);
        got += bytesRead;
      }
      return into.subarray(0, want);
    };
    const write = async (block: number, bytes: number): Promise<void> => {
      const from = sealed[block % 2]!;
      let written = 0;
      while (written < bytes) {
        const n = (await output!.write(from, written, bytes - written, block * stepChunks * entryBytes + written)).bytesWritten;
        if (n === 0) throw new NxtError('storage', 'the disk accepted no more bytes');
        written += n;
      }
    };
    let reading = read(0);
    let writing: Promise<void> | undefined;
    for (let block = 0; block < blocks; block++) {
      const data = await reading;
      if (stop?.aborted) throw sealStopped();
      // Handled when awaited, in the next round; a failure meanwhile is not unhandled.
      if (block + 1 < blocks) { reading = read(block + 1); reading.catch(() => undefined); }
      const first = block * stepChunks;
      const last = Math.min(totalChunks, first + stepChunks);
      const out = sealed[block % 2]!;
      let at = 0;
      for (let i = first; i < last; i++) {
        const off = (i - first) * chunkSize;
        const length = Math.min(chunkSize, size - i * chunkSize);
        writeChunkEntryHeader(out, at, i, length + TAG_BYTES);
        at = content.sealChunk(i, data.subarray(off, off + length), out, at + CHUNK_ENTRY_HEADER_BYTES);
      }
      if (writing) {
        await writing;
        sealedChunks = first;
        progress(sealedChunks);
      }
      writing = write(block, at);
      writing.catch(() => undefined);
    }
    // The last block is held back until the file is known to have stayed the one opened (an
    // early seal's, until its release is signed: StreamingSeal.expect). Every read is over.
    await writing;
    if (await handleIdentity(input) !== identity) throw changedWhileSealed();
    // No fsync: the file is a cache that dies with its key (this process); a crash loses nothing.
    await output.close().catch(() => undefined);
    output = undefined;
    // Every read and write is over (after a failure one may not be: those buffers are dropped).
    blockPool.give(buffers);
    progress(totalChunks, undefined, identity);
  } catch (err) {
    const failure = sealFailure(job.outPath, err);
    await output?.close().catch(() => undefined);
    output = undefined;
    // The file is deleted by whoever hears of the failure (sealRelease), not here: in the
    // sealing thread it would vanish under a push about to open it.
    progress(sealedChunks, failure);
  } finally {
    await input?.close().catch(() => undefined);
    await output?.close().catch(() => undefined);
  }
}

/**
 * The sealed releases of this server process, one per (release, chunk size), made on first use
 * and shared by every push of that release. Sealed files left by an earlier process are useless
 * (their keys died with it) and are removed at start.
 */
/** Sealed releases kept on disk: the latest few are what catch-up and re-pushes want. Each
 *  costs a module's size in the state dir, so big ones are not kept beside others: beyond
 *  MAX_KEPT_BYTES in all, only the latest stays. Sealing again is cheap (~1.3 ms of the sealing
 *  thread a MiB here, and a push sends each block as it is sealed); a sealed file kept for
 *  nothing is not: besides the disk, its pages stay in the page cache, and the next release's
 *  file must be written into memory taken afresh. On the benchmark's VMs, memory never touched
 *  before cost ~10 times as much to write into (docs/benchmarks.md, eighteenth session). */
const MAX_KEPT = 4;
const MAX_KEPT_BYTES = 64 * 1024 * 1024;
/** Files remembered as sealed already (sealEarly skips them): a few more than are kept. */
const MAX_MADE_OF = 16;

/** A signed release as sealing needs it: its size and sha256 (naming its sealed file), its chunk
 *  size, and the identity of the file its signer hashed. */
export interface ReleaseShape {
  readonly size: number;
  readonly sha256: string;
  readonly chunkSize: number;
  readonly identity: string;
}

/** An early seal: started before its release was signed, for the file as it was then. */
interface EarlySeal {
  readonly identity: string;
  readonly size: number;
  readonly seal: Promise<StreamingSeal>;
}

/** A sealed release in use by a push: its file stays on disk until the push lets go of it,
 *  however many releases are sealed meanwhile. */
export interface SealedLease {
  readonly sealed: Promise<SealedRelease>;
  /** The push is over (or gave up): once no push uses the file and it is not among those kept,
   *  it goes. Again is harmless. */
  release(): void;
}

/** A sealed release on disk, and the pushes using it. */
interface Kept {
  readonly seal: Promise<SealedRelease>;
  readonly bytes: number;
  users: number;
  /** No longer among those kept: removed once no push uses it. */
  evicted: boolean;
}

export class SealedReleases {
  /** Most recently used last. */
  private readonly kept = new Map<string, Kept>();
  private readonly removals = new Set<Promise<void>>();
  /** Early seals not yet taken by a push, by module path and chunk size. */
  private readonly early = new Map<string, EarlySeal>();
  /** The sealed release (its id in `kept`) made of a file as it was (identity and chunk size):
   *  an early seal of a file pushed before in the same shape is not needed. */
  private readonly madeOf = new Map<string, string>();
  private earlyCount = 0;

  constructor(
    private readonly dir: string,
    private readonly random: (n: number) => Uint8Array = randomBytes,
    /** Where sealing runs (seal-thread.ts for a thread of its own). */
    private readonly sealer: Sealer = sealHere,
    /** How many sealed releases are kept at most, and how many bytes of them. */
    private readonly limits = { count: MAX_KEPT, bytes: MAX_KEPT_BYTES },
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) rmSync(join(dir, name), { force: true, recursive: true });
  }

  /**
   * Start sealing `modulePath` in chunks of `chunkSize` now, before its release is signed: the
   * server hashes the module to sign it (~0.1 s for 128 MiB on the benchmark VM) while the sealing
   * thread seals it, and the push that follows (`get` with the same path and chunk size, the file
   * unchanged) takes this seal, whose last block counts once the file it sealed is known to be the
   * one that was hashed and signed. Small modules are sealed at once when they are asked for (no need); a file
   * sealed in this shape already is not sealed again.
   */
  sealEarly(modulePath: string, chunkSize: number): void {
    const file = fileIdentity(modulePath);
    if (file === undefined || file.size <= SEAL_AT_ONCE_BYTES || file.size > MAX_MODULE_BYTES) return;
    const made = this.madeOf.get(`${file.id}|${chunkSize}`);
    if (made !== undefined && this.kept.has(made)) return;
    const key = `${modulePath}|${chunkSize}`;
    if (this.early.get(key)?.identity === file.id) return;
    this.discardEarly(key);
    const outPath = join(this.dir, `early-${++this.earlyCount}-${chunkSize}.chunks`);
    const seal = startSeal(modulePath, { size: file.size, identity: undefined, chunkSize }, outPath, this.random, this.sealer);
    seal.catch(() => undefined);
    this.early.set(key, { identity: file.id, size: file.size, seal });
  }

  /** Early seals of `modulePath` that no push took (its push failed before it got there, or went
   *  in other chunk sizes): removed once their sealer is done with them. */
  dropEarly(modulePath: string): void {
    for (const key of [...this.early.keys()]) if (key.startsWith(`${modulePath}|`)) this.discardEarly(key);
  }

  /** The release of this shape sealed (made now, taken from an early seal, or the one made
   *  before), for a push: `identity` is the file as its signer hashed it (Release.identity). The
   *  push lets go of it when it is over. */
  use(modulePath: string, shape: ReleaseShape): SealedLease {
    const id = `${shape.sha256}-${shape.chunkSize}`;
    this.madeOf.set(`${shape.identity}|${shape.chunkSize}`, id);
    if (this.madeOf.size > MAX_MADE_OF) this.madeOf.delete(this.madeOf.keys().next().value!);
    const known = this.kept.get(id);
    let entry = known ?? this.make(id, modulePath, shape);
    if (known) {
      this.kept.delete(id);
      this.kept.set(id, known);
    }
    entry.users++;
    this.evict();
    let released = false;
    const sealed = known === undefined ? entry.seal : known.seal.then((s) => {
      if (!s.failure || released) return s;
      // It failed (disk full, file changed) after it started: this push seals it again (or
      // takes the seal another push made again meanwhile); the failed seal left no file.
      if (this.kept.get(id) === known) this.kept.delete(id);
      const again = this.kept.get(id) ?? this.make(id, modulePath, shape);
      again.users++;
      this.letGo(known);
      entry = again;
      this.evict();
      return again.seal;
    });
    return {
      sealed,
      release: () => {
        if (released) return;
        released = true;
        this.letGo(entry);
      },
    };
  }

  private make(id: string, modulePath: string, shape: ReleaseShape): Kept {
    const entry: Kept = { seal: this.takeEarly(modulePath, shape) ?? this.sealAnew(modulePath, shape), bytes: shape.size, users: 0, evicted: false };
    this.kept.set(id, entry);
    entry.seal.catch(() => { if (this.kept.get(id) === entry) this.kept.delete(id); });
    return entry;
  }

  private letGo(entry: Kept): void {
    entry.users--;
    if (entry.evicted && entry.users === 0) this.remove(entry);
  }

  /** The early seal of this file in this chunk size, now expecting the signed file, if there is
   *  one started from that file; else undefined (and a stale one is dropped). One that failed is
   *  replaced by a fresh seal. */
  private takeEarly(modulePath: string, shape: ReleaseShape): Promise<SealedRelease> | undefined {
    const key = `${modulePath}|${shape.chunkSize}`;
    const early = this.early.get(key);
    if (early === undefined) return undefined;
    if (early.identity !== shape.identity || early.size !== shape.size) {
      this.discardEarly(key);
      return undefined;
    }
    this.early.delete(key);
    const fresh = (): Promise<SealedRelease> => this.sealAnew(modulePath, shape);
    return early.seal.then((seal) => {
      if (seal.failure) return fresh();
      seal.expect(shape.identity);
      return seal;
    }, fresh);
  }

  /** A seal of its own for this release and chunk size, in the file named after both. */
  private sealAnew(modulePath: string, shape: ReleaseShape): Promise<SealedRelease> {
    return sealRelease(modulePath, shape, join(this.dir, `${shape.sha256}-${shape.chunkSize}.chunks`), this.random, this.sealer);
  }

  private discardEarly(key: string): void {
    const early = this.early.get(key);
    if (early === undefined) return;
    this.early.delete(key);
    // Stopped at its next block (0.2-0.3 s of the sealing thread for 128 MiB otherwise), and its
    // file removed once its sealer is done with it.
    const removal = early.seal
      .then(async (seal) => { seal.stopSealer?.(); await seal.finished(); await unlink(seal.path); })
      .catch(() => undefined);
    this.removals.add(removal);
    void removal.finally(() => this.removals.delete(removal));
  }

  /** Resolves once every sealed file evicted so far is gone from the disk. */
  async removed(): Promise<void> {
    await Promise.all([...this.removals]);
  }

  /** Beyond the limits (MAX_KEPT, MAX_KEPT_BYTES), the least recently used go (the latest one
   *  stays, whatever its size): at once, or when the last push using one lets go of it. */
  private evict(): void {
    let bytes = 0;
    for (const k of this.kept.values()) bytes += k.bytes;
    for (const [id, oldest] of this.kept) {
      if (this.kept.size <= 1 || (this.kept.size <= this.limits.count && bytes <= this.limits.bytes)) break;
      this.kept.delete(id);
      bytes -= oldest.bytes;
      oldest.evicted = true;
      if (oldest.users === 0) this.remove(oldest);
    }
  }

  private remove(entry: Kept): void {
    const removal = entry.seal.then((s) => unlink(s.path)).catch(() => undefined);
    this.removals.add(removal);
    void removal.finally(() => this.removals.delete(removal));
  }
}
