import { describe, expect, it } from 'vitest';
import { renewalDelay } from '../../src/client/agent.js';

describe('when a device renews', () => {
  it('somewhat before the server\'s interval, at random', () => {
    expect(renewalDelay(10_000, 0)).toBe(10_000);
    expect(renewalDelay(10_000, 1)).toBe(7_500);
  });

  it('within 0.1 s and a day, whatever the server says', () => {
    // 2^32 − 1 ms as a timer's delay would fire after 1 ms: a registration every millisecond.
    expect(renewalDelay(0xffff_ffff, 0)).toBe(86_400_000);
    expect(renewalDelay(0, 0.5)).toBe(100);
  });
});
