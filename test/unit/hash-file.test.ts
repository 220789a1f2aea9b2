import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashFile } from '../../src/util/hash-file.js';
import { tempDir } from '../support/processes.js';

describe('hashing a file', () => {
  it('gives each file its own digest, one after another and several at once, while the read buffers go from one hash to the next', async () => {
    const dir = tempDir('nxt-hash-');
    const MiB = 1024 * 1024;
    // Empty, a byte, exactly one read, reads and a tail.
    const files = [0, 1, 2 * MiB, 5 * MiB + 3, 9 * MiB + 1].map((size, i) => {
      const bytes = randomBytes(size);
      const path = join(dir, `f${i}`);
      writeFileSync(path, bytes);
      return { path, sha256: createHash('sha256').update(bytes).digest('hex') };
    });
    for (const f of files) expect(await hashFile(f.path)).toBe(f.sha256);
    expect(await Promise.all(files.map((f) => hashFile(f.path)))).toEqual(files.map((f) => f.sha256));
    for (const f of [...files].reverse()) expect(await hashFile(f.path)).toBe(f.sha256);
    await expect(hashFile(join(dir, 'missing'))).rejects.toThrow(/ENOENT/);
  });
});
