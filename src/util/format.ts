/** Sizes, rates, durations and tables as an operator reads them (pure). */

/** Mebibytes with one decimal: rates and progress ("12.3 MiB"). */
export function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** The unit that reads best: "512 B", "12.3 KiB", "4.0 MiB", "1.21 GiB". */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/** "45s", "3m05s", "2h04m"; "?" when not finite (no rate yet). */
export function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** "[#########-----------]" of `width` cells for a fraction 0…1. */
export function bar(fraction: number, width = 20): string {
  const full = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}]`;
}

/**
 * Rows under a header, columns padded to their widest cell (the last one not padded), two
 * spaces apart: plain text that lines up, greps and cuts like `ps` output.
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)];
}

/**
 * `text` in lines of at most `width` characters, broken between words (or given as its words,
 * each kept whole), each line after the first starting with `indent` (the first with
 * `firstIndent`). A word longer than a line keeps a line of its own rather than being cut.
 */
export function wrap(text: string | readonly string[], width: number, indent = '', firstIndent = indent): string[] {
  const words = typeof text === 'string' ? text.split(/\s+/).filter((w) => w !== '') : text;
  const lines: string[] = [];
  let line = firstIndent;
  let empty = true;
  for (const word of words) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent;
      empty = true;
    }
    line += empty ? word : ` ${word}`;
    empty = false;
  }
  if (!empty || lines.length === 0) lines.push(line);
  return lines;
}

/** `text` on one line of at most `width` characters: cut after a whole word, with "…", if longer. */
export function clip(text: string, width: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat.length <= width) return flat;
  const room = flat.slice(0, Math.max(0, width - 1));
  const cut = room.lastIndexOf(' ');
  return `${(cut > 0 ? room.slice(0, cut) : room).replace(/[\s,;:(]+$/, '')}…`;
}

/** A command's usage in the pieces a line may break between: words, but an option in brackets
 *  ("[--to all|GROUP]") kept whole. */
export function usageWords(usage: string): string[] {
  const words: string[] = [];
  let depth = 0;
  let word = '';
  for (const ch of usage) {
    if (ch === ' ' && depth === 0) {
      if (word !== '') words.push(word);
      word = '';
      continue;
    }
    if (ch === '[') depth++;
    else if (ch === ']' && depth > 0) depth--;
    word += ch;
  }
  if (word !== '') words.push(word);
  return words;
}
