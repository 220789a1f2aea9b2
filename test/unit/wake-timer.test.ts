import { afterEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/util/clock.js';
import { WakeTimer } from '../../src/util/wake-timer.js';

afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * Arms a timer `cycles` times, each for a moment 2–5 ms ahead, and, as a state machine does
 * (ChunkReceiver.onTimer with an ACK's due time), arms it again for the same moment whenever it
 * woke before the clock reached it. Real timers and the real clock: Node's timers count whole
 * milliseconds, so about half of these wake early.
 */
async function cycles(coarse: boolean, cycles: number): Promise<{ wakes: number; immediates: number; early: number }> {
  const immediates = vi.spyOn(globalThis, 'setImmediate');
  let wakes = 0;
  let early = 0;
  for (let i = 0; i < cycles; i++) {
    const at = systemClock.now() + 2 + 3 * Math.random();
    await new Promise<void>((done) => {
      const timer: WakeTimer = new WakeTimer(systemClock, () => {
        wakes++;
        if (systemClock.now() >= at) { done(); return; }
        early++;
        timer.arm(at);
      }, coarse);
      timer.arm(at);
    });
  }
  const counted = immediates.mock.calls.length;
  immediates.mockRestore();
  return { wakes, immediates: counted, early };
}

describe('a timer woken by Node before its time', () => {
  it('coarse: sleeps another millisecond rather than spinning on immediates', async () => {
    const fine = await cycles(false, 20);
    // The case is real here: Node woke the timers early, and a fine timer spun on immediates.
    expect(fine.early).toBeGreaterThan(0);
    expect(fine.immediates).toBeGreaterThan(0);
    const coarse = await cycles(true, 20);
    expect(coarse.immediates).toBe(0);
    // At most a wake-up or two more a cycle, however early Node woke it.
    expect(coarse.wakes).toBeLessThanOrEqual(3 * 20);
  });
});
