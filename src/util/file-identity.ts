/**
 * A file as it is now: which file it is (device, inode) and its state (size, modification and
 * change times, to the nanosecond). A file rewritten, even in place and to the same size, is
 * another: its change time moves (Linux 6.13 and later keep it fine-grained for a file whose times
 * were just looked at; older kernels move it a clock tick at a time, so a rewrite within the same
 * few milliseconds as the last one may go unseen there).
 */
import type { BigIntStats } from 'node:fs';
import { fstatSync, statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

export function identityOf(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** The identity of the file at `path`, or undefined if there is no regular file there. */
export function fileIdentity(path: string): { readonly id: string; readonly size: number } | undefined {
  try {
    const st = statSync(path, { bigint: true });
    return st.isFile() ? { id: identityOf(st), size: Number(st.size) } : undefined;
  } catch {
    return undefined;
  }
}

/** The identity of an open file (which stays the file it was opened as, whatever its path). */
export function fdIdentity(fd: number): string {
  return identityOf(fstatSync(fd, { bigint: true }));
}

export async function handleIdentity(file: FileHandle): Promise<string> {
  return identityOf(await file.stat({ bigint: true }));
}
