/** Minor collections at a steady pace (util/garbage.ts). */
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { GarbagePace } from '../../src/util/garbage.js';

describe('GarbagePace', () => {
  it('collects once every so many bytes spent, and leaves gc() to no context made later', () => {
    const pace = new GarbagePace(1000);
    pace.spent(600);
    expect(pace.collections).toBe(0);
    pace.spent(600);
    expect(pace.collections).toBe(1);
    for (let i = 0; i < 10; i++) pace.spent(500);
    expect(pace.collections).toBe(6);
    // The flag that exposes V8's gc() was set only to reach it (a plugin's context must not).
    expect(vm.runInNewContext('typeof gc')).toBe('undefined');
  });
});
