/** How many idle plugin threads a device keeps, on a fake clock. */
import { describe, expect, it } from 'vitest';
import { HOLD_MS, QUICK_SUCCESSION_MS, SparePolicy } from '../../src/plugin/spare-policy.js';

describe('SparePolicy', () => {
  it('keeps one spare while each trial finds its thread started', () => {
    const p = new SparePolicy();
    for (let t = 0; t < 5_000; t += 100) p.trial(t, false);
    expect(p.count(5_000)).toBe(1);
    expect(p.relaxAt(5_000)).toBeUndefined();
  });

  it('a first trial, or one long after the last, that waits for its thread changes nothing', () => {
    const p = new SparePolicy();
    p.trial(0, true); // the agent had just started
    expect(p.count(0)).toBe(1);
    p.trial(QUICK_SUCCESSION_MS + 1, true);
    expect(p.count(QUICK_SUCCESSION_MS + 1)).toBe(1);
  });

  it('keeps two after a trial in quick succession waited, for HOLD_MS after the last such wait', () => {
    const p = new SparePolicy();
    p.trial(1_000, false);
    p.trial(1_080, true);
    expect(p.count(1_080)).toBe(2);
    expect(p.relaxAt(1_080)).toBe(1_080 + HOLD_MS);
    // Another wait in quick succession holds the two longer.
    p.trial(30_000, false);
    p.trial(30_100, true);
    expect(p.relaxAt(30_100)).toBe(30_100 + HOLD_MS);
    expect(p.count(30_100 + HOLD_MS - 1)).toBe(2);
    expect(p.count(30_100 + HOLD_MS)).toBe(1);
    expect(p.relaxAt(30_100 + HOLD_MS)).toBeUndefined();
  });
});
