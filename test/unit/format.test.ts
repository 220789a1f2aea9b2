/** How sizes, durations, bars and tables read. */
import { describe, expect, it } from 'vitest';
import { bar, clip, duration, size, table, usageWords, wrap } from '../../src/util/format.js';

describe('format', () => {
  it('sizes in the unit that reads best', () => {
    expect([0, 1023, 1536, 16 * 1024 ** 2, 1.5 * 1024 ** 3].map(size)).toEqual(['0 B', '1023 B', '1.5 KiB', '16.0 MiB', '1.50 GiB']);
  });

  it('durations for an ETA', () => {
    expect([400, 45_000, 185_000, 7_440_000, Number.POSITIVE_INFINITY].map(duration)).toEqual(['0s', '45s', '3m05s', '2h04m', '?']);
  });

  it('bars of a fixed width', () => {
    expect(bar(0, 10)).toBe('[----------]');
    expect(bar(0.55, 10)).toBe('[######----]');
    expect(bar(2, 4)).toBe('[####]');
  });

  it('tables: a header, columns aligned, the last column unpadded', () => {
    expect(table(['ID', 'STATE', 'GROUPS'], [['a1', 'online', 'kiosks'], ['b2b2b2', 'offline', '']])).toEqual([
      'ID      STATE    GROUPS',
      'a1      online   kiosks',
      'b2b2b2  offline',
    ]);
  });

  it('wraps text between words, indenting the lines after the first', () => {
    expect(wrap('the quick brown fox jumps over the lazy dog', 16, '  ', '')).toEqual(['the quick brown', '  fox jumps over', '  the lazy dog']);
    expect(wrap('a b', 10, '    ', '  ')).toEqual(['  a b']);
    // A word longer than a line is not cut; nothing is lost, no empty line is made.
    expect(wrap('tiny enormousword x', 8)).toEqual(['tiny', 'enormousword', 'x']);
    expect(wrap('', 8, '  ', '> ')).toEqual(['> ']);
  });

  it('clips a line after a whole word', () => {
    expect(clip('short', 10)).toBe('short');
    expect(clip('the fleet: id, hostname, type', 20)).toBe('the fleet: id…');
    expect(clip('the fleet: id, hostname, type', 20).length).toBeLessThanOrEqual(20);
    expect(clip('unbreakableword', 6)).toBe('unbre…');
  });

  it("keeps a usage's bracketed options whole", () => {
    expect(usageWords('push <file> [--to all|GROUP] [--for type=T …]')).toEqual(['push', '<file>', '[--to all|GROUP]', '[--for type=T …]']);
    expect(usageWords('clients [--where FIELD<VALUE,…] [--json]')).toEqual(['clients', '[--where FIELD<VALUE,…]', '[--json]']);
  });
});
