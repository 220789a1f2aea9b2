/**
 * Files the nodes pass each other through the database, named by content (sha256): a release's
 * module, a file a job sends to a device another node holds. Each goes in parts of PART_BYTES, in
 * order, each part its own row, so that
 * - no node holds a whole file in memory to write or read it (a job's file may be large);
 * - the node that fetches a file reads the first parts while the node sharing it still writes the
 *   last ones: a push typed at one node for devices another holds waits for the slower of the
 *   two, not for both one after the other (16 MiB: ~140-240 ms to write, about as long to read);
 * - a share cut short (the node died) is finished by whoever shares the same content next.
 *
 * The bytes are checked where they are used: the fetching side hashes what it read against the
 * name it asked for, and a release must also carry the release key's approval (cluster.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { NxtError } from '../errors.js';
import type { Store } from '../store/store.js';
import { readFullySync } from '../util/read-fully.js';

/** 2 MiB: small enough that the reader starts early, large enough that a part's round trip and
 *  transaction are a small share of its time. */
export const PART_BYTES = 2 * 1024 * 1024;

/** The channel a written part is announced on (a wake-up; the reader reads the table). */
export const PARTS_CHANNEL = 'nxt_parts';

/** How long a reader waits for the next part to appear before giving up on the file. */
export const PART_PATIENCE_MS = 15_000;

export function partsOf(size: number): number {
  return Math.max(1, Math.ceil(size / PART_BYTES));
}

/**
 * Write the file at `path` (`size` bytes, already hashed to `sha256`) into the database, part by
 * part, each announced on PARTS_CHANNEL. Parts already there (an earlier share, cut short or not)
 * are left as they are.
 */
export async function writeParts(store: Store, sha256: string, path: string, size: number): Promise<void> {
  const fd = openSync(path, 'r');
  try {
    // Two parts in flight (each its own buffer and connection): PostgreSQL takes the next while
    // it stores this one.
    const buffers = [0, 1].map(() => Buffer.allocUnsafe(Math.min(size, PART_BYTES)));
    const inFlight: Promise<void>[] = [];
    for (let part = 0; part < partsOf(size); part++) {
      if (inFlight.length === buffers.length) await inFlight.shift();
      const buffer = buffers[part % buffers.length]!;
      const want = Math.min(PART_BYTES, size - part * PART_BYTES);
      if (readFullySync(fd, buffer.subarray(0, want), part * PART_BYTES) < want) {
        throw new NxtError('bad-state', `${path} is shorter than the ${size} bytes it had when it was hashed`);
      }
      const written = store.putFilePart(sha256, part, buffer.subarray(0, want), PARTS_CHANNEL);
      written.catch(() => { /* awaited below */ });
      inFlight.push(written);
    }
    await Promise.all(inFlight);
  } finally {
    closeSync(fd);
  }
}

/**
 * Read a shared file into `dest` (made whole or not at all), waiting for parts not written yet
 * (`nextWakeUp` resolves at a NOTIFY on PARTS_CHANNEL, or after a while anyway) for up to
 * PART_PATIENCE_MS each. Throws if what was read does not have this size and sha256.
 */
export async function readParts(
  store: Store, sha256: string, size: number, dest: string, nextWakeUp: () => Promise<void>, now: () => number = Date.now,
): Promise<void> {
  // Its own name: two pushes of the same release may fetch it at once.
  const tmp = `${dest}.part-${randomBytes(6).toString('hex')}`;
  const fd = openSync(tmp, 'w', 0o600);
  const hash = createHash('sha256');
  const parts = partsOf(size);
  // The next part is asked for while this one is hashed and written (one query ahead).
  let next: Promise<Uint8Array | undefined> | undefined = store.filePart(sha256, 0);
  try {
    let since = now();
    for (let part = 0; part < parts;) {
      const bytes: Uint8Array | undefined = await next;
      next = undefined;
      if (bytes === undefined) {
        if (now() - since > PART_PATIENCE_MS) {
          throw new NxtError('incomplete', `file ${sha256.slice(0, 12)}… is not whole in the database: part ${part + 1} of ${parts} never came (the node sharing it stopped?)`);
        }
        await nextWakeUp();
        next = store.filePart(sha256, part);
        continue;
      }
      if (part + 1 < parts) next = store.filePart(sha256, part + 1);
      const want = Math.min(PART_BYTES, size - part * PART_BYTES);
      if (bytes.length !== want) throw new NxtError('bad-state', `file ${sha256.slice(0, 12)}…: part ${part + 1} has ${bytes.length} bytes, not ${want}`);
      hash.update(bytes);
      for (let at = 0; at < bytes.length;) at += writeSync(fd, bytes, at);
      part++;
      since = now();
    }
    closeSync(fd);
    const actual = hash.digest('hex');
    if (actual !== sha256) throw new NxtError('integrity', `file ${sha256.slice(0, 12)}… read from the database hashes to ${actual.slice(0, 12)}…: refused`);
    renameSync(tmp, dest);
  } catch (err) {
    next?.catch(() => { /* given up on: its answer no longer matters */ });
    try { closeSync(fd); } catch { /* closed already */ }
    rmSync(tmp, { force: true });
    throw err;
  }
}
