/** What the agent holds for modules on their way, as a running module's memory watch sees it. */
import { describe, expect, it } from 'vitest';
import { HELD_GRACE_MS, HeldMemory } from '../../src/plugin/held-memory.js';

describe('memory held for modules on their way', () => {
  it('counts a hold until its release and the grace after it, and leaves out the one asked about', () => {
    const held = new HeldMemory();
    const reserve = held.hold(100);
    const trial = held.hold(200);
    expect(held.bytes(0)).toBe(300);
    expect(held.bytes(0, trial)).toBe(100);
    reserve.release(1_000);
    // Released: counted while its garbage may still be in memory, then not.
    expect(held.bytes(1_000 + HELD_GRACE_MS - 1)).toBe(300);
    expect(held.bytes(1_000 + HELD_GRACE_MS)).toBe(200);
    // A second release does not extend the grace.
    trial.release(2_000);
    trial.release(2_000 + HELD_GRACE_MS);
    expect(held.bytes(2_000 + HELD_GRACE_MS - 1, reserve)).toBe(200);
    expect(held.bytes(2_000 + HELD_GRACE_MS)).toBe(0);
    // Let go without grace (another hold counts the same memory from then).
    held.hold(50).release(3_000, 0);
    expect(held.bytes(3_000)).toBe(0);
  });
});
