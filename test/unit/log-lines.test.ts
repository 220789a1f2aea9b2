/** A log file's lines, read a piece at a time with a bound on each (real files). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { logLines, MAX_LINE_BYTES } from '../../src/jobs/log-lines.js';
import { tempDir } from '../support/processes.js';

async function linesOf(content: string | Buffer, maxBytes?: number): Promise<{ text: string; cut: boolean }[]> {
  const file = join(tempDir('nxt-lines-'), 'app.log');
  writeFileSync(file, content);
  const got = [];
  for await (const line of logLines(file, maxBytes)) got.push({ ...line });
  return got;
}

/** What the lines should be: split at each \n, a \r before it dropped, each cut at `max` bytes. */
function expected(content: Buffer, max: number): { text: string; cut: boolean }[] {
  const out = [];
  let start = 0;
  while (start < content.length) {
    let end = content.indexOf(0x0a, start);
    if (end < 0) end = content.length;
    let line = content.subarray(start, end);
    const cut = line.length > max;
    if (cut) line = line.subarray(0, max);
    else if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
    out.push({ text: line.toString('utf8'), cut });
    start = end + 1;
  }
  return out;
}

describe('log lines', () => {
  it('splits at \\n and \\r\\n, keeps empty lines and a last line without its end', async () => {
    expect(await linesOf('a\r\n\nb\nlast')).toEqual([{ text: 'a', cut: false }, { text: '', cut: false }, { text: 'b', cut: false }, { text: 'last', cut: false }]);
    expect(await linesOf('')).toEqual([]);
    expect(await linesOf('one\n')).toEqual([{ text: 'one', cut: false }]);
  });

  it('cuts a line longer than the limit there, skips its rest, and goes on with the next', async () => {
    const long = 'x'.repeat(3 * MAX_LINE_BYTES + 5);
    const got = await linesOf(`before\n${long}\nafter`);
    expect(got.map((l) => [l.text.length, l.cut])).toEqual([[6, false], [MAX_LINE_BYTES, true], [5, false]]);
    expect(got[1]!.text).toBe(long.slice(0, MAX_LINE_BYTES));
  });

  it('decodes a character that spans two pieces whole', async () => {
    // The file is read 64 KiB at a time: put a three-byte character across that boundary.
    const line = `${'a'.repeat(64 * 1024 - 1)}€b`;
    expect(await linesOf(`${line}\n`, 128 * 1024)).toEqual([{ text: line, cut: false }]);
  });

  it('gives the lines a plain split gives, for any content and limit', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.constantFrom('a', 'é', '\n', '\r', '\r\n', 'xyz', '🙂'), { maxLength: 60 }), fc.integer({ min: 1, max: 12 }),
      async (parts, max) => {
        const content = Buffer.from(parts.join(''));
        expect(await linesOf(content, max)).toEqual(expected(content, max));
      }), { numRuns: 300 });
  });
});
