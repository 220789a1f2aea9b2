import {
  accessSync, closeSync, constants, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';

/** Beside every state file, its content before the last save (see writeFileAtomic). */
export const LAST_GOOD_SUFFIX = '.last-good';

const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Write a file so that a crash or a full disk at any moment leaves either the old content or the
 * new, never a torn mix: write the whole of a temporary file beside it (a write may take fewer
 * bytes than asked without an error: a nearly full disk does that), fsync it, rename it over,
 * fsync the directory. On any failure the temporary file is removed, the old file is untouched,
 * and the error (an NxtError whose code is the system's, e.g. ENOSPC) says what happened.
 *
 * The content the save replaces stays beside it as `<path>.last-good`: a hard link to the old
 * file, which costs no space and no copy because a file here is never written in place. Should
 * the file be found unreadable at start (damaged at rest, or by a filesystem that lied about
 * fsync), readStateFile falls back to it.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    // A leftover of a crashed process with the same pid goes; a link planted there is not followed.
    try { unlinkSync(tmp); } catch { /* none */ }
    fd = openSync(tmp, CREATE_NEW, mode);
    for (let at = 0; at < bytes.length;) {
      const n = writeSync(fd, bytes, at, bytes.length - at);
      if (n <= 0) throw Object.assign(new Error('the disk took no more bytes'), { code: 'ENOSPC' });
      at += n;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    keepLastGood(path);
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* already failing */ }
    try { unlinkSync(tmp); } catch { /* never created, or gone */ }
    const code = (err as NodeJS.ErrnoException).code ?? 'storage';
    throw new NxtError(code, `cannot save ${path}: ${describeFsError(err)}`, { cause: err });
  }
  fsyncDir(dirname(path));
}

function keepLastGood(path: string): void {
  const lastGood = `${path}${LAST_GOOD_SUFFIX}`;
  const linking = `${lastGood}.tmp-${process.pid}`;
  try {
    try { unlinkSync(linking); } catch { /* none */ }
    linkSync(path, linking); // ENOENT on the first save: nothing to keep
    renameSync(linking, lastGood);
    // rename(2) between two links to one file does nothing, and succeeds; the spare link goes.
    unlinkSync(linking);
  } catch {
    // Not worth failing the save for: the copy is a spare, at worst one save older.
  }
}

/**
 * Read a state file written by writeFileAtomic. `parse` throws on content it cannot use. A file
 * that is unreadable is reported by name; when its last good copy parses, that is used (the
 * damaged file is kept as `<path>.unreadable` for a person to look at, the copy put back in its
 * place) and `warn` says so; when neither does, the error names both. undefined: no such file.
 */
export function readStateFile<T>(path: string, parse: (text: string) => T, warn: (message: string) => void = defaultWarn): T | undefined {
  const lastGood = `${path}${LAST_GOOD_SUFFIX}`;
  let failure: unknown;
  try {
    return parse(readFileSync(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(lastGood)) return undefined;
    failure = err;
  }
  let value: T;
  try {
    value = parse(readFileSync(lastGood, 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'there is no last good copy' : `its last good copy is unreadable too (${describeFsError(err)})`;
    throw new NxtError('bad-state', `${path} is unreadable (${describeFsError(failure)}) and ${why}: restore it from a backup`, { cause: failure });
  }
  if (existsSync(path)) {
    try { renameSync(path, `${path}.unreadable`); } catch { /* keep going on the copy */ }
  }
  try {
    linkSync(lastGood, path);
  } catch { /* the next save writes it */ }
  warn(`${path} was unreadable (${describeFsError(failure)}); using its last good copy, from before its last save`
    + (existsSync(`${path}.unreadable`) ? ` (the damaged file is kept as ${path}.unreadable)` : ''));
  return value;
}

function defaultWarn(message: string): void {
  process.stderr.write(`warning: ${message}
`);
}

/** An error from the disk (full, read-only, failing, forbidden) rather than from the content. */
export function isStorageError(err: unknown): boolean {
  return ['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO', 'storage'].includes((err as NodeJS.ErrnoException).code ?? '');
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

/** fsync the file at `path` on libuv's pool, the calling thread free meanwhile: a server's main
 *  thread stuck in a flush of a large file is one that reads no ACKs. */
export async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncDir on libuv's pool. */
export async function syncDir(dir: string): Promise<void> {
  try {
    await syncFile(dir);
  } catch {
    // As fsyncDir: some filesystems refuse fsync on a directory; the rename is still atomic there.
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
