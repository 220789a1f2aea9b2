/**
 * The lines of a log file, read a piece at a time, each at most MAX_LINE_BYTES long. readline
 * keeps a line whole however long it is: a file in the logs root with no line ends (a binary
 * file, a core dump, a log gone wrong) became one string as large as the file, and past V8's
 * longest string (~512 MiB) readline threw from inside its stream, which ended the agent. Here a
 * longer line is cut at the limit and the rest of it skipped, so memory stays within two pieces.
 */
import { open } from 'node:fs/promises';

/** What a log line may hold: far beyond any real log line, far below a device's memory. */
export const MAX_LINE_BYTES = 64 * 1024;
const PIECE_BYTES = 64 * 1024;
const LF = 0x0a;
const CR = 0x0d;

export interface LogLine {
  /** The line without its end (`\n` or `\r\n`), decoded as UTF-8 (a cut character as U+FFFD). */
  readonly text: string;
  /** It was longer than the limit: `text` is its start. */
  readonly cut: boolean;
}

export async function* logLines(path: string, maxBytes = MAX_LINE_BYTES): AsyncGenerator<LogLine> {
  const file = await open(path, 'r');
  try {
    const piece = Buffer.allocUnsafe(PIECE_BYTES);
    // The line so far, when it runs across pieces (at most maxBytes of it).
    const line = Buffer.allocUnsafe(maxBytes);
    let held = 0;
    let cut = false;
    const take = (from: Buffer, start: number, end: number): void => {
      const room = maxBytes - held;
      if (end - start > room) { cut = true; end = start + room; }
      from.copy(line, held, start, end);
      held += end - start;
    };
    const finish = (): LogLine => {
      const length = !cut && held > 0 && line[held - 1] === CR ? held - 1 : held;
      const done = { text: line.toString('utf8', 0, length), cut };
      held = 0;
      cut = false;
      return done;
    };
    for (;;) {
      const { bytesRead } = await file.read(piece, 0, PIECE_BYTES, null);
      if (bytesRead === 0) break;
      const got = piece.subarray(0, bytesRead);
      let at = 0;
      while (at < got.length) {
        const end = got.indexOf(LF, at);
        if (end < 0) {
          take(got, at, got.length);
          break;
        }
        take(got, at, end);
        at = end + 1;
        yield finish();
      }
    }
    // A last line without its end.
    if (held > 0 || cut) yield finish();
  } finally {
    await file.close();
  }
}
