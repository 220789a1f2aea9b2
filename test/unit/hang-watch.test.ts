import { describe, expect, it } from 'vitest';
import { HangWatch, type Hang } from '../../src/plugin/hang-watch.js';

const TICK = 100;
const HANG = 500;

/** Ticks every `TICK` ms from `from` to `to` (inclusive); the first hang seen, with its time. */
function tickUntil(watch: HangWatch, from: number, to: number, waited: (now: number) => number | undefined): { at: number; hang: Hang } | undefined {
  for (let now = from; now <= to; now += TICK) {
    const hang = watch.tick(now, () => waited(now));
    if (hang) return { at: now, hang };
  }
  return undefined;
}

describe('a plugin thread that stops answering', () => {
  it('is hung once silent for longer than the limit, with no CPU wait to forgive', () => {
    const watch = new HangWatch(HANG, TICK, 0, 0);
    expect(tickUntil(watch, 100, 500, () => 0)).toBeUndefined();
    expect(tickUntil(watch, 600, 2_000, () => 0)).toEqual({ at: 600, hang: { silentMs: 600, starvedMs: 0 } });
  });

  it('is not hung while it answers', () => {
    const watch = new HangWatch(HANG, TICK, 0, 0);
    for (let now = 100; now <= 10_000; now += TICK) {
      expect(watch.tick(now, () => 0)).toBeUndefined();
      watch.answered(now + 5, 0);
    }
  });

  it('is forgiven the time it sat runnable waiting for a CPU (schedstat), and found hung once it runs without answering', () => {
    // Silent from 0; until 3 s it waits for a CPU 90% of the time, then it runs (spins) all the time.
    const waited = (now: number): number => 1_000 + (now <= 3_000 ? 0.9 * now : 2_700);
    const watch = new HangWatch(HANG, TICK, 0, waited(0));
    expect(tickUntil(watch, 100, 3_000, waited)).toBeUndefined();
    // 300 ms counted by 3 s; 200 more ms of running makes 500, so the first tick past that says hung.
    const found = tickUntil(watch, 3_100, 10_000, waited);
    expect(found?.at).toBe(3_300);
    expect(found?.hang).toEqual({ silentMs: 3_300, starvedMs: 2_700 });
  });

  it('is forgiven the time the host itself came late to its ticks, where the system does not tell the thread\'s wait', () => {
    const watch = new HangWatch(HANG, TICK, 0, undefined);
    // The host's ticks come 400 ms apart instead of 100 (the whole process starved): 300 late each.
    expect(watch.tick(400, () => undefined)).toBeUndefined();
    expect(watch.tick(800, () => undefined)).toBeUndefined();
    expect(watch.tick(1_200, () => undefined)).toBeUndefined(); // 1200 silent, 900 late: 300 count
    // Back on time: silence counts again from here, and 200 ms more make a hang.
    expect(tickUntil(watch, 1_300, 1_400, () => undefined)).toBeUndefined();
    expect(watch.tick(1_500, () => undefined)).toEqual({ silentMs: 1_500, starvedMs: 900 });
  });

  it('forgives the larger of the two waits, never their sum (a spinning thread on a loaded host is still found)', () => {
    // Host late 300 ms a tick (ticks 400 ms apart) and the thread waiting 300 ms of every 400:
    // the same starvation seen twice. The thread runs 100 ms of each 400 and never answers.
    const waited = (now: number): number => (now / 400) * 300;
    const watch = new HangWatch(HANG, TICK, 0, 0);
    let found: { at: number; hang: Hang } | undefined;
    for (let now = 400; now <= 20_000 && !found; now += 400) {
      const hang = watch.tick(now, () => waited(now));
      if (hang) found = { at: now, hang };
    }
    // 100 ms counted per 400: past 500 at the sixth tick (2,400 ms: 600 counted).
    expect(found).toEqual({ at: 2_400, hang: { silentMs: 2_400, starvedMs: 1_800 } });
  });

  it('starts counting afresh at each answer, host lateness included', () => {
    const watch = new HangWatch(HANG, TICK, 0, undefined);
    expect(watch.tick(1_000, () => undefined)).toBeUndefined(); // 900 late
    watch.answered(1_010, undefined);
    expect(tickUntil(watch, 1_100, 1_500, () => undefined)).toBeUndefined();
    expect(watch.tick(1_600, () => undefined)).toEqual({ silentMs: 590, starvedMs: 0 });
  });

  it('counts a thread blocked for good (no run-queue wait) from the start', () => {
    const watch = new HangWatch(HANG, TICK, 0, 7);
    expect(tickUntil(watch, 100, 5_000, () => 7)?.hang).toEqual({ silentMs: 600, starvedMs: 0 });
  });
});
