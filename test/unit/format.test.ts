/** How sizes, durations, bars and tables read. */
import { describe, expect, it } from 'vitest';
import { bar, duration, size, table } from '../../src/util/format.js';

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
});
