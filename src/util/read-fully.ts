import { readSync } from 'node:fs';

/** Reads from `fd` at `position` into `buf` until it is full or the file ends (a read may return
 *  fewer bytes than asked): how many bytes it read. */
export function readFullySync(fd: number, buf: Uint8Array, position: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
