import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { History, summarizeReleases, type HistoryEntry } from '../../src/server/history.js';
import { tempDir } from '../support/processes.js';

const entry = (over: Partial<HistoryEntry>): HistoryEntry => ({
  at: '2026-11-23T10:00:00.000Z', client: 'a'.repeat(32), address: '127.0.0.1:1', module: 'm_2_0.mjs', version: '2.0.0',
  sha256: '1'.repeat(64), result: 'ok', message: '8.6 active', elapsedMs: 10, resent: 0, ...over,
});

describe('the push history', () => {
  it('keeps entries in order across instances and filters by client id prefix', () => {
    const dir = tempDir('nxt-history-');
    new History(dir).append(entry({ client: 'ab'.repeat(16) }));
    new History(dir).append(entry({ client: 'cd'.repeat(16), result: 'rollback' }));
    const h = new History(dir);
    expect(h.list().map((e) => e.result)).toEqual(['ok', 'rollback']);
    expect(h.list('cdcd').map((e) => e.result)).toEqual(['rollback']);
  });

  it('skips a line torn by a crash', () => {
    const dir = tempDir('nxt-history-');
    const h = new History(dir);
    h.append(entry({}));
    appendFileSync(join(dir, 'history.jsonl'), '{"at":"2026-11-23T1');
    expect(h.list()).toHaveLength(1);
    h.append(entry({ result: 'timeout' }));
    expect(h.list().map((e) => e.result)).toEqual(['ok', 'timeout']);
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
});
