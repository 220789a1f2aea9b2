import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/** Read this much at a time, into one buffer: a third faster than a read stream's fresh 1 MiB
 *  buffers (128 MiB: ~100 ms against ~140 ms here), and it is on the way to a push's first offer. */
const READ_BYTES = 4 * 1024 * 1024;

/** SHA-256 of a file, streamed: a module may be hundreds of megabytes. Rejects with the I/O error. */
export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  const file = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafeSlow(READ_BYTES);
    for (;;) {
      const { bytesRead } = await file.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}
