import { accessSync, closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';

/**
 * Write a file so that a crash or a full disk at any moment leaves either the old content or the
 * new, never a torn mix: write the whole of a temporary file beside it (a write may take fewer
 * bytes than asked without an error: a nearly full disk does that), fsync it, rename it over,
 * fsync the directory. On any failure the temporary file is removed, the old file is untouched,
 * and the error (an NxtError whose code is the system's, e.g. ENOSPC) says what happened.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w', mode);
    for (let at = 0; at < bytes.length;) {
      const n = writeSync(fd, bytes, at, bytes.length - at);
      if (n <= 0) throw Object.assign(new Error('the disk took no more bytes'), { code: 'ENOSPC' });
      at += n;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* already failing */ }
    try { unlinkSync(tmp); } catch { /* never created, or gone */ }
    const code = (err as NodeJS.ErrnoException).code ?? 'storage';
    throw new NxtError(code, `cannot save ${path}: ${describeFsError(err)}`, { cause: err });
  }
  fsyncDir(dirname(path));
}

/** The cause a person should read: "the disk is full", not ENOENT from a later step. */
export function describeFsError(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOSPC': return 'the disk is full';
    case 'EDQUOT': return 'the disk quota is used up';
    case 'EROFS': return 'the filesystem is read-only';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EIO': return 'an I/O error (the disk may be failing)';
    default: return errorMessage(err);
  }
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Create a directory (and its parents), naming the real cause when that fails: on a read-only
 * filesystem, a recursive mkdir reports ENOENT for the first missing directory, which sends
 * people looking for a missing path. Asking the nearest existing parent whether it is writable
 * gives EROFS or EACCES instead.
 */
export function ensureDir(dir: string, mode = 0o700): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
  } catch (err) {
    let cause: unknown = err;
    let parent = dir;
    while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent);
    try { accessSync(parent, constants.W_OK); } catch (why) { cause = why; }
    const code = (cause as NodeJS.ErrnoException).code ?? 'storage';
    throw new NxtError(code, `cannot create ${dir}: ${describeFsError(cause)}${parent !== dir ? ` (at ${parent})` : ''}`, { cause: err });
  }
}
