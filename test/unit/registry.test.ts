import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RegistrySaver } from '../../src/server/registry-saver.js';
import { openSqlite } from '../../src/store/sqlite.js';
import { Store } from '../../src/store/store.js';
import { Registry } from '../../src/server/registry.js';
import { tempDir } from '../support/processes.js';

const v = { major: 1, minor: 0, patch: 0 };
const p = { major: 5, minor: 6, productName: 'nxtgen' };
const at = (port: number): { address: string; port: number } => ({ address: '127.0.0.1', port });

describe('the client registry', () => {
  it('keys clients by id: a client that moves keeps its record', () => {
    const r = new Registry(1000);
    expect(r.register('a', at(1), v, p, 0)?.isNew).toBe(true);
    expect(r.register('a', at(2), v, p, 10)?.isNew).toBe(false);
    expect(r.get('a')?.peer.port).toBe(2);
    expect(r.size).toBe(1);
  });

  it('counts a client offline once its lease lapses, online again when it renews', () => {
    const r = new Registry(1000);
    r.register('a', at(1), v, p, 0);
    expect(r.online(999).map((c) => c.id)).toEqual(['a']);
    expect(r.online(1000)).toEqual([]);
    r.register('a', at(1), v, p, 1500);
    expect(r.online(1600).map((c) => c.id)).toEqual(['a']);
  });

  describe('when full', () => {
    it('makes room by forgetting the longest-offline client', () => {
      const r = new Registry(1000, 2);
      r.register('old', at(1), v, p, 0);
      r.register('older-but-renewed', at(2), v, p, 0);
      r.register('older-but-renewed', at(2), v, p, 1500);
      expect(r.register('new', at(3), v, p, 2000)?.isNew).toBe(true);
      expect(r.get('old')).toBeUndefined();
      expect(r.size).toBe(2);
    });

    it('refuses newcomers while every known client is online', () => {
      const r = new Registry(1000, 2);
      r.register('a', at(1), v, p, 0);
      r.register('b', at(2), v, p, 0);
      expect(r.register('c', at(3), v, p, 10)).toBeUndefined();
      expect(r.register('a', at(1), v, p, 20)?.isNew).toBe(false); // known clients still renew
    });
  });
});

describe('the saved fleet', () => {
  it('restores clients as offline, with their groups, until they renew', async () => {
    const r = new Registry(1000);
    r.register('a', at(1), v, p, 0, new Date('2026-11-23T10:00:00Z'));
    r.register('b', at(2), v, p, 0);
    expect(r.tag('a', 'kiosks')).toBe(true);
    expect(r.tag('a', 'kiosks')).toBe(false);
    const store = await Store.open(await openSqlite(join(tempDir('nxt-fleet-'), 'nxt.db')));
    const saver = new RegistrySaver(store, []);
    saver.touch('a');
    saver.touch('b');
    await saver.save((id) => r.savedOne(id));

    const after = new Registry(1000);
    after.restore(await store.registrations());
    await store.close();
    expect(after.all().map((c) => c.id)).toEqual(['a', 'b']);
    expect(after.online(5)).toEqual([]);
    expect(after.get('a')?.tags).toEqual(['kiosks']);
    expect(after.get('a')?.lastSeenAt).toBe('2026-11-23T10:00:00.000Z');
    const back = after.register('a', at(3), v, p, 10);
    expect(back).toMatchObject({ isNew: false, cameBack: true, changed: true });
    expect(after.online(11).map((c) => c.id)).toEqual(['a']);
    expect(after.untag('a', 'kiosks')).toBe(true);
    expect(after.get('a')?.tags).toEqual([]);
  });
});
