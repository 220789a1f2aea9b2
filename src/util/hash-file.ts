import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { NxtError } from '../errors.js';
import { BufferPool } from './buffer-pool.js';
import { fdIdentity, handleIdentity, identityOf } from './file-identity.js';
import { readFullySync } from './read-fully.js';

/** Read this much at a time, into one of two buffers: the next read runs on libuv's thread while
 *  this one hashes the last (with 4 MiB reads, 128 MiB took ~75 ms, the hash's own cost, against
 *  ~92 ms one after the other), and it is on the way to a push's first offer. */
const READ_BYTES = 2 * 1024 * 1024;

/** Read buffers kept between hashes (a hash takes two; one running beside it takes fresh ones):
 *  with two new 4 MiB buffers a 16 MiB module took 55–68 ms to hash on the benchmark VM, with
 *  kept ones 14–18 ms. */
const readPool = new BufferPool(READ_BYTES, 2);

/** Regular files up to this size are read and hashed at once, holding the thread 0.1 ms for 10
 *  KiB and 0.3 ms for 64 KiB on the benchmark VM (at 256 KiB, 1.7 ms: a fresh buffer's pages):
 *  streamed, a 10 KiB module took four trips through libuv's thread pool, 1.5–5 ms, on the way
 *  to its push's first offer. */
const AT_ONCE_BYTES = 64 * 1024;

/** Map the read buffers now (a server starting): the first push's hash then reads into memory
 *  it has, as every later one does. */
export function warmHashBuffers(): void {
  const bufs = [readPool.take(), readPool.take()];
  for (const b of bufs) b.fill(0);
  readPool.give(bufs);
}

/** SHA-256 of a file, streamed (a small one read at once): a module may be hundreds of
 *  megabytes. Rejects with the I/O error. */
export async function hashFile(path: string): Promise<string> {
  return (await hashWithIdentities(path)).sha256;
}

/**
 * SHA-256 of a file, and the file's identity (util/file-identity.ts) as it was hashed: the same
 * before the first byte was read and after the last, or this rejects with `module-changed` (the
 * hash would be of a file being written). What a server signs: its sealing then checks that it
 * seals that very file (sealed-release.ts) rather than hashing it a second time.
 */
export async function hashSteadyFile(path: string): Promise<{ sha256: string; size: number; identity: string }> {
  const { sha256, size, before, after } = await hashWithIdentities(path);
  if (before !== after) throw changedWhileHashed(path);
  return { sha256, size, identity: before };
}

/** The error for a file whose identity moved while it was hashed. */
export function changedWhileHashed(path: string): NxtError {
  return new NxtError('module-changed', `${path} changed while it was hashed (is it still being written?): try again once it is whole`);
}

/** The file's SHA-256 and size (the bytes hashed), and its identity before the first read and
 *  after the last. */
async function hashWithIdentities(path: string): Promise<{ sha256: string; size: number; before: string; after: string }> {
  const st = statSync(path);
  if (st.isFile() && st.size <= AT_ONCE_BYTES) {
    const fd = openSync(path, 'r');
    try {
      const before = fstatSync(fd, { bigint: true });
      const bytes = Buffer.allocUnsafe(Number(before.size));
      const size = readFullySync(fd, bytes, 0);
      const sha256 = createHash('sha256').update(bytes.subarray(0, size)).digest('hex');
      return { sha256, size, before: identityOf(before), after: fdIdentity(fd) };
    } finally {
      closeSync(fd);
    }
  }
  const hash = createHash('sha256');
  const file = await open(path, 'r');
  try {
    const before = await handleIdentity(file);
    const bufs = [readPool.take(), readPool.take()] as const;
    let position = 0;
    let reading = file.read(bufs[0], 0, READ_BYTES, position);
    for (let k = 1; ; k++) {
      const { bytesRead, buffer } = await reading;
      if (bytesRead === 0) break;
      position += bytesRead;
      reading = file.read(bufs[k % 2]!, 0, READ_BYTES, position);
      // Awaited in the next round; a failure meanwhile must not count as unhandled.
      reading.catch(() => undefined);
      hash.update(buffer.subarray(0, bytesRead));
    }
    // Every read is over (after a failure one may not be: those buffers are dropped).
    readPool.give(bufs);
    return { sha256: hash.digest('hex'), size: position, before, after: await handleIdentity(file) };
  } finally {
    await file.close();
  }
}
