import { describe, expect, it } from 'vitest';
import { Registry } from '../../src/server/registry.js';

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
