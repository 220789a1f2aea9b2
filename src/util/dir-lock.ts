/**
 * One process per state directory: two clients sharing a data dir would share an identity, and
 * the server would see one device jumping between two addresses.
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { NxtError } from '../errors.js';

/** Take the lock or throw 'dir-in-use'. A lock left by a process that is gone is taken over. */
export function lockDir(dir: string, what: string): () => void {
  const path = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => { try { unlinkSync(path); } catch { /* already gone */ } };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new NxtError('dir-in-use', `${dir} is in use by another ${what} (pid ${pid}): give each ${what} its own directory`);
      }
      try { unlinkSync(path); } catch { /* raced with another taker */ }
    }
  }
  throw new NxtError('dir-in-use', `cannot lock ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
