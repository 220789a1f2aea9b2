/** The console's input bound and the log records a headless program writes. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { boundedLines, TOO_LONG_MARK } from '../../src/util/repl.js';
import { textSink } from '../../src/util/log.js';

async function through(chunks: string[], max: number): Promise<string> {
  const t = boundedLines(max);
  let out = '';
  t.on('data', (d: Buffer) => { out += d.toString(); });
  for (const c of chunks) t.write(c);
  t.end();
  await new Promise((res) => t.on('end', res));
  return out;
}

describe('console input', () => {
  it('passes lines up to the bound as they are, across chunk boundaries', async () => {
    expect(await through(['push a', '.mjs\nclients\n'], 10)).toBe('push a.mjs\nclients\n');
  });

  it('cuts a longer line, marks it, and goes on with the next', async () => {
    const out = await through(['x'.repeat(7), 'y'.repeat(7), '\nok\n'], 10);
    expect(out).toBe(`${'x'.repeat(7)}yyy${TOO_LONG_MARK}\nok\n`);
  });

  it('an endless line costs at most the bound', async () => {
    const out = await through(Array.from({ length: 100 }, () => 'z'.repeat(1000)), 64);
    expect(out.length).toBe(64 + TOO_LONG_MARK.length);
  });
});

describe('text log records', () => {
  it('carry a time stamp and a level; warnings and errors go to the error stream', () => {
    const out = new PassThrough();
    const err = new PassThrough();
    const sink = textSink(out, err, () => new Date('2026-11-30T10:00:00.000Z'));
    sink.write('info', 'listening');
    sink.write('warn', 'disk nearly full');
    sink.write('error', 'cannot save');
    expect(String(out.read())).toBe('2026-11-30T10:00:00.000Z INFO  listening\n');
    expect(String(err.read())).toBe('2026-11-30T10:00:00.000Z WARN  disk nearly full\n2026-11-30T10:00:00.000Z ERROR cannot save\n');
  });
});
