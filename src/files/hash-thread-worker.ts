/**
 * The hashing thread (hash-thread.ts): follows files as they are written, reading back from disk
 * each prefix it is told is written and hashing it, and answers with the digest once asked.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import type { HashReply, HashRequest } from './hash-thread.js';

const port = parentPort!;
/** Read back this much at a time (into one buffer for every file: one file is read at a time). */
const READ_BYTES = 1024 * 1024;
const buf = Buffer.allocUnsafe(READ_BYTES);

interface Followed {
  readonly fd: number;
  readonly hash: Hash;
  /** Bytes hashed so far. */
  at: number;
  error?: string;
}

const files = new Map<number, Followed>();

/** The file at `path`, if it is the very one the writer has open (`identity`: device:inode). */
function open(path: string, identity: string): Followed | { error: string } {
  let fd: number;
  try {
    // Not through a link planted at its name: the same refusal as the writer's open.
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    return { error: `cannot read ${path} back to hash it: ${errorMessage(err)}` };
  }
  const st = fstatSync(fd, { bigint: true });
  if (`${st.dev}:${st.ino}` !== identity) {
    closeSync(fd);
    return { error: `${path} is no longer the file being written` };
  }
  return { fd, hash: createHash('sha256'), at: 0 };
}

function hashUpTo(f: Followed, upTo: number): void {
  try {
    while (f.at < upTo) {
      const n = readSync(f.fd, buf, 0, Math.min(READ_BYTES, upTo - f.at), f.at);
      if (n === 0) throw new Error(`it ends at ${f.at} bytes, short of the ${upTo} written`);
      f.hash.update(buf.subarray(0, n));
      f.at += n;
    }
  } catch (err) {
    f.error = `cannot read the file back to hash it: ${errorMessage(err)}`;
  }
}

function close(id: number): void {
  const f = files.get(id);
  files.delete(id);
  if (f) closeSync(f.fd);
}

function reply(message: HashReply): void {
  port.postMessage(message);
}

port.on('message', (m: HashRequest) => {
  switch (m.type) {
    case 'open': {
      const f = open(m.path, m.identity);
      if ('fd' in f) files.set(m.id, f);
      else files.set(m.id, { fd: -1, hash: createHash('sha256'), at: 0, error: f.error });
      break;
    }
    case 'written': {
      const f = files.get(m.id);
      if (f && f.error === undefined) hashUpTo(f, m.upTo);
      break;
    }
    case 'digest': {
      const f = files.get(m.id);
      if (!f) { reply({ id: m.id, error: 'not a file this thread follows' }); break; }
      if (f.error === undefined && f.at !== m.size) f.error = `${f.at} bytes hashed of ${m.size}`;
      reply(f.error === undefined ? { id: m.id, digest: f.hash.digest('hex') } : { id: m.id, error: f.error });
      if (f.fd >= 0) close(m.id);
      else files.delete(m.id);
      break;
    }
    case 'drop': {
      const f = files.get(m.id);
      if (f && f.fd >= 0) close(m.id);
      else files.delete(m.id);
      break;
    }
  }
});
