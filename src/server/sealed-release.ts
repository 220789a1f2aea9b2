/**
 * Seal each release once: its chunks are encrypted with a fresh content key into a file in the
 * state dir, entries laid out exactly as CHUNKS frames carry them (index, length, ciphertext ‖
 * tag). A push to any number of devices then reads runs of that file straight into datagrams:
 * no per-device or per-datagram cryptography on the server.
 *
 * The key lives only in this process's memory (a restart seals again under a new key) and
 * reaches a device only inside its authenticated session, with the signed OFFER; a device that
 * is pending, rejected or revoked is offered nothing, so it never gets the key.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { chunkEntryBytes, writeChunkEntryHeader, CHUNK_ENTRY_HEADER_BYTES } from '../protocol/envelope.js';
import { CONTENT_KEY_BYTES, SEAL_ID_BYTES } from '../protocol/messages.js';
import { ContentKey } from '../session/content-key.js';

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
}

/** Plaintext read (and sealed) per step: big enough for few syscalls, small enough to stay out of
 *  the way of transfers running meanwhile (each step yields to the event loop). */
const SEAL_STEP_BYTES = 1024 * 1024;

/**
 * Seal `modulePath` (whose bytes must hash to `sha256`: the file is re-hashed while it is
 * sealed, so what is sent is exactly what was signed) into `outPath`.
 */
export async function sealRelease(
  modulePath: string,
  shape: { readonly size: number; readonly sha256: string; readonly chunkSize: number },
  outPath: string,
  random: (n: number) => Uint8Array = randomBytes,
): Promise<SealedRelease> {
  const { size, chunkSize } = shape;
  const key = random(CONTENT_KEY_BYTES);
  const sealId = random(SEAL_ID_BYTES);
  const content = new ContentKey(key, sealId);
  const totalChunks = Math.ceil(size / chunkSize);
  const entryBytes = chunkEntryBytes(chunkSize);
  const stepChunks = Math.max(1, Math.floor(SEAL_STEP_BYTES / chunkSize));
  const plain = Buffer.allocUnsafe(stepChunks * chunkSize);
  const sealed = Buffer.allocUnsafe(stepChunks * entryBytes);
  const hash = createHash('sha256');
  const tmp = `${outPath}.tmp-${process.pid}`;
  const input = await open(modulePath, 'r');
  let output;
  try {
    output = await open(tmp, 'w', 0o600);
    for (let first = 0; first < totalChunks; first += stepChunks) {
      const want = Math.min(stepChunks * chunkSize, size - first * chunkSize);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await input.read(plain, got, want - got, first * chunkSize + got);
        if (bytesRead === 0) throw new NxtError('module-changed', `${modulePath} became shorter than its manifest says (${size} bytes) after it was signed`);
        got += bytesRead;
      }
      hash.update(plain.subarray(0, want));
      let at = 0;
      for (let i = first; i < totalChunks && i < first + stepChunks; i++) {
        const off = (i - first) * chunkSize;
        const length = Math.min(chunkSize, size - i * chunkSize);
        writeChunkEntryHeader(sealed, at, i, length + 16);
        at = content.sealChunk(i, plain.subarray(off, off + length), sealed, at + CHUNK_ENTRY_HEADER_BYTES);
      }
      let written = 0;
      while (written < at) written += (await output.write(sealed, written, at - written)).bytesWritten;
    }
    if (hash.digest('hex') !== shape.sha256) {
      throw new NxtError('module-changed', `${modulePath} changed after it was signed (its sha256 no longer matches the manifest): push it again`);
    }
    // No fsync: the file is a cache that dies with its key (this process); a crash loses nothing.
    await output.close();
    output = undefined;
    await rename(tmp, outPath);
  } catch (err) {
    await output?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    if (err instanceof NxtError) throw err;
    throw new NxtError('storage', `cannot seal ${modulePath} into ${outPath}: ${errorMessage(err)}`, { cause: err });
  } finally {
    await input.close();
  }
  return { path: outPath, size, chunkSize, totalChunks, entryBytes, key, sealId };
}

/**
 * The sealed releases of this server process, one per (release, chunk size), made on first use
 * and shared by every push of that release. Sealed files left by an earlier process are useless
 * (their keys died with it) and are removed at start.
 */
export class SealedReleases {
  private readonly sealed = new Map<string, Promise<SealedRelease>>();

  constructor(private readonly dir: string, private readonly random: (n: number) => Uint8Array = randomBytes) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) rmSync(join(dir, name), { force: true, recursive: true });
  }

  get(modulePath: string, shape: { readonly size: number; readonly sha256: string; readonly chunkSize: number }): Promise<SealedRelease> {
    const id = `${shape.sha256}-${shape.chunkSize}`;
    let p = this.sealed.get(id);
    if (!p) {
      p = sealRelease(modulePath, shape, join(this.dir, `${id}.chunks`), this.random);
      this.sealed.set(id, p);
      // A failure (disk full, file changed) is not remembered: the next push tries again.
      p.catch(() => { if (this.sealed.get(id) === p) this.sealed.delete(id); });
    }
    return p;
  }
}
