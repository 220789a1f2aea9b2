/** Plugin modules of a chosen size, made at test time (nothing large is committed). */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** A valid plugin of about `bytes` bytes: random base64 in a comment, then the version function. */
export function writeModule(dir: string, name: string, bytes: number, major = 9, minor = 1): string {
  const path = join(dir, name);
  const tail = `*/\nexport default () => ({ major: ${major}, minor: ${minor}, productName: 'bulk' });\n`;
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, '/*');
    // Written in pieces: a single string of a gigabyte is beyond V8's limit.
    for (let left = Math.max(0, bytes - tail.length - 2); left > 0;) {
      const n = Math.min(left, 8 * 1024 * 1024);
      writeSync(fd, randomBytes(Math.ceil((n * 3) / 4)).toString('base64').slice(0, n));
      left -= n;
    }
    writeSync(fd, tail);
  } finally {
    closeSync(fd);
  }
  return path;
}
