import { describe, expect, it } from 'vitest';
import { History, summarizeReleases, type HistoryEntry } from '../../src/server/history.js';

const entry = (over: Partial<HistoryEntry>): HistoryEntry => ({
  at: '2026-11-23T10:00:00.000Z', client: 'a'.repeat(32), address: '127.0.0.1:1', module: 'm_2_0.mjs', version: '2.0.0',
  sha256: '1'.repeat(64), result: 'ok', message: '8.6 active', elapsedMs: 10, resent: 0, ...over,
});

describe('the push history', () => {
  it('keeps entries in order and filters by client id prefix and count', async () => {
    const h = new History(undefined);
    await h.append(entry({ client: 'ab'.repeat(16) }));
    await h.append(entry({ client: 'cd'.repeat(16), result: 'rollback' }));
    await h.append(entry({ client: 'ab'.repeat(16), result: 'timeout' }));
    expect((await h.list()).map((e) => e.result)).toEqual(['ok', 'rollback', 'timeout']);
    expect((await h.list('cdcd')).map((e) => e.result)).toEqual(['rollback']);
    expect((await h.list('abab', 1)).map((e) => e.result)).toEqual(['timeout']);
  });
});

describe('release summaries', () => {
  it('count each device once and failures apart', () => {
    const s = summarizeReleases([
      entry({ at: 't1' }), entry({ at: 't2' }), entry({ at: 't3', client: 'b'.repeat(32), result: 'timeout' }),
      entry({ at: 't4', sha256: '2'.repeat(64), version: '3.0.0' }),
    ]);
    expect(s).toEqual([
      expect.objectContaining({ version: '2.0.0', firstPushed: 't1', lastPushed: 't3', installedOn: 1, failures: 1 }),
      expect.objectContaining({ version: '3.0.0', firstPushed: 't4', installedOn: 1, failures: 0 }),
    ]);
  });

  it('count a device that already ran it as installed, a committed trial as neither, a rolled back one as a failure', () => {
    const s = summarizeReleases([
      entry({ at: 't1', result: 'already installed' }), entry({ at: 't2', result: 'committed' }),
      entry({ at: 't3', client: 'b'.repeat(32), result: 'rolled back (selfTest)' }),
    ]);
    expect(s).toEqual([expect.objectContaining({ installedOn: 1, failures: 1, lastPushed: 't3' })]);
  });

  it('forget the entries before a time, oldest first, at most so many, and still count them', async () => {
    const h = new History(undefined);
    for (const [at, client] of [['2026-01-01', 'a'], ['2026-01-02', 'b'], ['2026-01-03', 'c'], ['2026-01-04', 'd']] as const) {
      await h.append(entry({ at, client: client.repeat(32) }));
    }
    expect(await h.forget('2026-01-03', 1)).toBe(1);
    expect(await h.forget('2026-01-03', 10)).toBe(1);
    expect((await h.list()).map((e) => e.at)).toEqual(['2026-01-03', '2026-01-04']);
    expect(await h.releases()).toEqual([expect.objectContaining({ firstPushed: '2026-01-01', lastPushed: '2026-01-04', installedOn: 4, failures: 0 })]);
  });
});
