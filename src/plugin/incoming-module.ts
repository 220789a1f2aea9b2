/**
 * A file arriving on disk (a module on a device, an upload on the server): chunks are appended in
 * order to a `.part` file and hashed as they come, so neither side holds the file in memory. The
 * partial file survives a restart; offered the same file again, the receiver resumes after the
 * whole chunks it already holds. A large file is hashed by the hashing thread, if the owner has
 * one (files/hash-thread.ts), from what is on disk as each write lands.
 */
import { createHash, type Hash } from 'node:crypto';
import { close, closeSync, constants, fchmodSync, fstatSync, fsync, ftruncateSync, openSync, readSync, rename, renameSync, write, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import { NxtError } from '../errors.js';
import { HashThreadGone, type FollowedFile, type HashThread } from '../files/hash-thread.js';
import { describeFsError } from '../util/atomic-file.js';
import { BufferPool } from '../util/buffer-pool.js';
import { hashFile } from '../util/hash-file.js';
import type { Manifest } from '../security/manifest.js';

/** What a receiver must know of a file: from a signed manifest, or a session-authenticated offer. */
export type FileShape = Pick<Manifest, 'size' | 'sha256' | 'chunkSize'>;

/** Batch appends: a syscall per 1400-byte chunk would cost more than the hashing. */
const WRITE_BATCH_BYTES = 512 * 1024;
/** Writes run on libuv's thread pool, one after another, so the receive loop never waits for the
 *  disk and the file is always a contiguous prefix. Past this many bytes queued a write is made
 *  synchronously, which slows ACKs and so the sender. */
const MAX_WRITE_BYTES_IN_FLIGHT = 8 * 1024 * 1024;

/** Batches kept between files (a closed file's spares go here, the next file takes these after
 *  its own): a new 512 KiB batch was ~2.5 ms before a 10 KiB module's first write on the
 *  benchmark VM. */
const batchPool = new BufferPool(WRITE_BATCH_BYTES, 4);

/** A file up to this size gets its last write and its rename at once (~0.3 ms for both, for 10
 *  KiB on the benchmark VM) rather than through libuv's thread pool: a 10 KiB push's last chunk
 *  to its file in place took 2.1–2.3 ms that way, 0.7–1.3 ms at once (medians of 25 pushes). */
const PLACE_AT_ONCE_BYTES = 64 * 1024;

/** Files from this size on go to the hashing thread, when there is one: below it its messages
 *  (one a write) cost more than they spare, and a small push's last step must stay quick. */
const HASH_THREAD_MIN_BYTES = 4 * 1024 * 1024;

const writeAsync = promisify(write);
const fsyncAsync = promisify(fsync);
const closeAsync = promisify(close);
const renameAsync = promisify(rename);

export class IncomingModule {
  private readonly fd: number;
  /** Hashed here, as chunks are appended; or by the hashing thread (`followed`). */
  private readonly hash: Hash | undefined;
  private readonly followed: FollowedFile | undefined;
  /** For the hashing thread: the file's contiguous prefix that is on disk, and writes landed
   *  beyond it (position → end) while an earlier one was still on its way. */
  private onDisk = 0;
  private readonly landed = new Map<number, number>();
  /** Chunks are copied into a batch (the chunks themselves die young); written batches return
   *  to `spare` for reuse, so a transfer of any size allocates at most the in-flight limit. */
  private batch: Buffer | undefined;
  private pendingBytes = 0;
  private readonly spare: Buffer[] = [];
  private written: number;
  private closed = false;
  /** The queue of writes: each starts when the previous one has finished. */
  private writes: Promise<void> = Promise.resolve();
  private bytesInFlight = 0;
  private writeError: unknown;
  private suspended: Promise<void> | undefined;
  readonly heldChunks: number;
  readonly totalChunks: number;
  /** The file's `device:inode`, while the hashing thread follows it (else undefined). */
  readonly identity: string | undefined;
  /** Told how far the file is whole on disk from its start, as the hashing thread is. */
  private readonly onDiskListener: ((bytes: number) => void) | undefined;

  /** `hashThread`: where a large file is hashed (else here). `onDisk`: for a file the hashing
   *  thread follows, told each time the file's contiguous prefix on disk grows (and at once,
   *  for what a resumed file holds already). */
  constructor(readonly manifest: FileShape, readonly partialPath: string, options: { readonly hashThread?: HashThread; readonly onDisk?: (bytes: number) => void } = {}) {
    this.totalChunks = Math.ceil(manifest.size / manifest.chunkSize);
    // Not 'a' (O_APPEND): on Linux that makes every positioned write append, whatever its position.
    // A link planted at this name must not lead the write elsewhere: O_NOFOLLOW refuses a
    // symbolic link, and a regular file with one name is all a partial file can be (a hard
    // link to a file outside would pass O_NOFOLLOW).
    try {
      this.fd = openSync(partialPath, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new NxtError('unsafe-file', `${partialPath} is a symbolic link: refusing to write through it`, { cause: err });
      throw new NxtError((err as NodeJS.ErrnoException).code ?? 'storage', `cannot open ${partialPath}: ${describeFsError(err)}`, { cause: err });
    }
    const st = fstatSync(this.fd);
    if (!st.isFile() || st.nlink !== 1) {
      closeSync(this.fd);
      throw new NxtError('unsafe-file', `${partialPath} is ${st.isFile() ? 'a file with other names (a hard link)' : 'not a regular file'}: refusing to write to it`);
    }
    try {
      const have = Math.min(fstatSync(this.fd).size, manifest.size);
      // Keep only whole chunks: a torn last write is simply fetched again.
      this.heldChunks = have === manifest.size ? this.totalChunks : Math.floor(have / manifest.chunkSize);
      this.written = Math.min(manifest.size, this.heldChunks * manifest.chunkSize);
      ftruncateSync(this.fd, this.written);
      if (options.hashThread && manifest.size >= HASH_THREAD_MIN_BYTES) {
        const id = fstatSync(this.fd, { bigint: true });
        this.identity = `${id.dev}:${id.ino}`;
        this.followed = options.hashThread.follow(partialPath, this.identity);
        this.onDiskListener = options.onDisk;
        this.landedAt(0, this.written);
      } else {
        this.hash = createHash('sha256');
        this.hashPrefix(this.written);
      }
    } catch (err) {
      closeSync(this.fd);
      throw err;
    }
  }

  /** Expected payload length of chunk `index`: all full but the last. */
  chunkLength(index: number): number {
    return index === this.totalChunks - 1 ? this.manifest.size - index * this.manifest.chunkSize : this.manifest.chunkSize;
  }

  append(payload: Uint8Array): void {
    this.hash?.update(payload);
    // A chunk is at most 64 KiB (the decoders see to it): it always fits an empty batch.
    if (this.pendingBytes + payload.length > WRITE_BATCH_BYTES) this.flush();
    this.batch ??= this.spare.pop() ?? batchPool.take();
    this.batch.set(payload, this.pendingBytes);
    this.pendingBytes += payload.length;
    if (this.pendingBytes === WRITE_BATCH_BYTES) this.flush();
  }

  /** Hand what is pending to the disk, at its position; ordering between writes does not matter.
   *  `now`: write it before returning. */
  flush(now = false): void {
    const batch = this.batch;
    if (this.pendingBytes === 0 || !batch) return;
    const length = this.pendingBytes;
    const position = this.written;
    this.written += length;
    this.batch = undefined;
    this.pendingBytes = 0;
    const done = (): void => { this.spare.push(batch); };
    if (now || this.bytesInFlight + length > MAX_WRITE_BYTES_IN_FLIGHT) {
      // Asked to, or backpressure: wait for the disk here. Queued writes are before this one in the file and
      // land at their own positions, so order on disk does not matter for correctness.
      try {
        let off = 0;
        while (off < length) {
          const n = writeSync(this.fd, batch, off, length - off, position + off);
          if (n === 0) throw Object.assign(new Error('the disk took no more bytes'), { code: 'ENOSPC' });
          off += n;
        }
        this.landedAt(position, position + length);
      } catch (err) {
        this.writeError ??= err;
      }
      done();
      return;
    }
    this.bytesInFlight += length;
    this.writes = this.writes
      .then(async () => {
        await this.writeAll(batch, length, position);
        this.landedAt(position, position + length);
      })
      .catch((err: unknown) => { this.writeError ??= err; })
      .finally(() => { this.bytesInFlight -= length; done(); });
  }

  /** The write of [position, end) landed: the hashing thread may read as far as the file is now
   *  whole from its start. */
  private landedAt(position: number, end: number): void {
    if (!this.followed) return;
    if (position !== this.onDisk) {
      this.landed.set(position, end);
      return;
    }
    this.onDisk = end;
    for (let next = this.landed.get(this.onDisk); next !== undefined; next = this.landed.get(this.onDisk)) {
      this.landed.delete(this.onDisk);
      this.onDisk = next;
    }
    this.followed.written(this.onDisk);
    this.onDiskListener?.(this.onDisk);
  }

  /** How far the file is whole on disk from its start (for a file the hashing thread follows). */
  get bytesOnDisk(): number {
    return this.onDisk;
  }

  /** The digest of what was written: hashed here, or by the hashing thread (read back here if
   *  that thread stopped). */
  private async digest(): Promise<string> {
    if (this.hash) return this.hash.digest('hex');
    try {
      return await this.followed!.digest(this.manifest.size);
    } catch (err) {
      if (!(err instanceof HashThreadGone)) throw err;
      return hashFile(this.partialPath);
    }
  }

  private async writeAll(buf: Buffer, length: number, position: number): Promise<void> {
    let off = 0;
    while (off < length) {
      const n = (await writeAsync(this.fd, buf, off, length - off, position + off)).bytesWritten;
      // A write of nothing would loop forever: the disk is full (the next call says ENOSPC).
      if (n === 0) throw Object.assign(new Error('the disk took no more bytes'), { code: 'ENOSPC' });
      off += n;
    }
  }

  /** A write failed (the disk is full, or failing): what arrives can no longer be kept. */
  get failed(): boolean { return this.writeError !== undefined; }

  private async settle(): Promise<void> {
    await this.writes;
    if (this.writeError !== undefined) throw new NxtError('storage', `cannot write the module: ${describeFsError(this.writeError)}`, { cause: this.writeError });
  }

  /**
   * All chunks are in: check size and digest, then move the file to `finalPath`, durable first
   * (fsync). Throws 'size-mismatch' or 'hash-mismatch' (wrong-software attack) and deletes
   * nothing: the caller decides. The digest is of the bytes we wrote, from the private data dir.
   */
  async complete(finalPath: string): Promise<void> {
    await (await this.place(finalPath, true)).durable;
  }

  /**
   * As complete(), but without waiting for the disk: resolves once the verified file is at
   * `finalPath`; `durable` once it is on disk (fsync, ~70 ms for 128 MiB). For a module, whose
   * file is content-addressed and hashed again whenever a start loads it (ModuleStore.start):
   * loading it may overlap the fsync, and only what records it as installed waits for `durable`.
   * `written`: called once every byte is in the file, before its digest is checked.
   */
  async place(finalPath: string, durableFirst = false, written?: () => void): Promise<{ readonly durable: Promise<void> }> {
    let size: number;
    const atOnce = this.manifest.size <= PLACE_AT_ONCE_BYTES;
    try {
      this.flush(atOnce);
      await this.settle();
      // Every byte is in the file, which nothing writes again: `written` may read it now (a
      // head start for the caller only: its failure is not the file's).
      try { written?.(); } catch { /* its own business */ }
      if (durableFirst) await fsyncAsync(this.fd);
      size = fstatSync(this.fd).size;
      // Read-only from here on: what the plugin thread reads is what was hashed (see ModuleStore).
      fchmodSync(this.fd, 0o400);
    } catch (err) {
      // Closed on every path: a partial file the caller deletes must really free its space.
      await this.closeAsync().catch(() => undefined);
      if (err instanceof NxtError) throw err;
      throw new NxtError('storage', `cannot write the module: ${describeFsError(err)}`, { cause: err });
    }
    const durable = (durableFirst ? Promise.resolve() : fsyncAsync(this.fd))
      .catch((err: unknown) => { throw new NxtError('storage', `cannot write the module: ${describeFsError(err)}`, { cause: err }); })
      .finally(() => this.closeAsync());
    // Its failure is the caller's to hear (it awaits `durable`), never an unhandled rejection.
    durable.catch(() => undefined);
    try {
      if (size !== this.manifest.size) throw new NxtError('size-mismatch', `received ${size} bytes, manifest says ${this.manifest.size}`);
      const digest = await this.digest();
      if (digest !== this.manifest.sha256) throw new NxtError('hash-mismatch', `sha256 of received bytes is ${digest.slice(0, 16)}…, manifest says ${this.manifest.sha256.slice(0, 16)}…`);
      if (atOnce) renameSync(this.partialPath, finalPath);
      else await renameAsync(this.partialPath, finalPath);
    } catch (err) {
      // Closed before the caller deletes the file.
      await durable.catch(() => undefined);
      throw err;
    }
    return { durable };
  }

  /**
   * Stop without completing; what was written stays for a later resume. Resolves once every
   * queued write has landed and the file is closed: only then may it be opened again.
   */
  suspend(): Promise<void> {
    if (this.suspended) return this.suspended;
    if (this.closed) return Promise.resolve();
    this.flush();
    this.suspended = this.settle().catch(() => undefined).finally(() => this.closeAsync().catch(() => undefined));
    return this.suspended;
  }

  /** Only once every write has settled (each path here awaits them first): the spares are idle. */
  private async closeAsync(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Its digest asked for already, or never to be (a no-op then).
    this.followed?.drop();
    batchPool.give(this.spare.splice(0));
    await closeAsync(this.fd);
  }

  private hashPrefix(length: number): void {
    const hash = this.hash!;
    const buf = Buffer.allocUnsafe(1024 * 1024);
    let pos = 0;
    while (pos < length) {
      const n = readSync(this.fd, buf, 0, Math.min(buf.length, length - pos), pos);
      if (n <= 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  }
}
