import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fairShares, PROBE_HEADROOM, REBALANCE_MS, SharedRate, type RateSharer } from '../../src/transfer/rate-share.js';
import { makeChunks, simulateTransfers, type LinkProfile } from '../support/simulated-link.js';
import { ResultCode } from '../../src/protocol/result-codes.js';

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

describe('fairShares (max-min fair, the leftover spread)', () => {
  it('gives a transfer that wants less than an even share what it wants, and the rest even shares of what is left', () => {
    expect(fairShares(10, [1, 100, 100])).toEqual([1, 4.5, 4.5]);
    expect(fairShares(12, [100, 2, 3, 100])).toEqual([3.5, 2, 3, 3.5]);
  });

  it('spreads what nobody wants evenly, so that every transfer may probe for more', () => {
    expect(fairShares(10, [1, 3])).toEqual([4, 6]);
    expect(fairShares(10, [0, 0])).toEqual([5, 5]);
  });

  it('has nothing to share among no one', () => {
    expect(fairShares(10, [])).toEqual([]);
  });

  it('always adds up to the total, never gives anyone less than min(want, an even share)', () => {
    fc.assert(fc.property(fc.double({ min: 0.1, max: 1e6, noNaN: true }), fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 50 }), (total, wants) => {
      const caps = fairShares(total, wants);
      expect(sum(caps)).toBeCloseTo(total, 3);
      const even = total / wants.length;
      caps.forEach((c, i) => expect(c).toBeGreaterThanOrEqual(Math.min(wants[i]!, even) * (1 - 1e-9)));
    }));
  });
});

describe('SharedRate', () => {
  /** A fake clock and a timer it fires by hand. */
  function rig(total: number): { shared: SharedRate; clock: { t: number; now(): number }; fire: () => void; armedAt: () => number | undefined; warnings: string[] } {
    const clock = { t: 1000, now() { return this.t; } };
    let armed: number | undefined;
    let fire = (): void => undefined;
    const warnings: string[] = [];
    const shared = new SharedRate(total, clock, (f) => { fire = f; return { arm: (at) => { armed = at; }, clear: () => { armed = undefined; } }; }, (line) => warnings.push(line));
    return { shared, clock, fire: () => { armed = undefined; fire(); }, armedAt: () => armed, warnings };
  }
  const member = (want: number, floor = 0): RateSharer & { caps: number[]; want: number } => {
    const m = { want, caps: [] as number[], floor, wants: () => m.want, cap: (c: number) => { m.caps.push(c); } };
    return m;
  };

  it('gives a transfer that joins an even share at once, and works the caps out soon after', () => {
    const { shared, clock, fire, armedAt } = rig(100);
    const a = member(1000);
    shared.join(a);
    expect(a.caps).toEqual([100]);
    expect(armedAt()).toBe(1000);
    fire();
    expect(a.caps).toEqual([100, 100]);
    // One alone: nothing to balance until another joins.
    expect(armedAt()).toBeUndefined();
    const b = member(1000);
    shared.join(b);
    expect(b.caps).toEqual([50]);
    fire();
    expect(a.caps.at(-1)).toBe(50);
    expect(b.caps.at(-1)).toBe(50);
    expect(armedAt()).toBe(clock.t + REBALANCE_MS);
  });

  it('follows what each wants every REBALANCE_MS: a slow transfer\'s unused share goes to the other', () => {
    const { shared, clock, fire } = rig(100);
    const fast = member(1000);
    const slow = member(1000);
    shared.join(fast);
    shared.join(slow);
    fire();
    slow.want = 8; // its device takes no more
    clock.t += REBALANCE_MS;
    fire();
    expect(slow.caps.at(-1)).toBeCloseTo(8 * PROBE_HEADROOM);
    expect(fast.caps.at(-1)).toBeCloseTo(100 - 8 * PROBE_HEADROOM);
  });

  it('gives a leaver\'s share back soon, and never caps below a transfer\'s floor: it says so, once a minute', () => {
    const { shared, clock, fire, armedAt, warnings } = rig(10);
    const members = Array.from({ length: 20 }, () => member(1000, 2));
    const leaves = members.map((m) => shared.join(m));
    fire();
    for (const m of members) expect(m.caps.at(-1)).toBe(2);
    expect(warnings).toEqual(['max rate 0.08 Mbit/s is shared by 20 transfers sending: each is held to a chunk a second, 0.32 Mbit/s in all '
      + '(slower, their devices would time out). Pushes wait their turn; jobs\' files do not']);
    clock.t += REBALANCE_MS;
    fire();
    expect(warnings).toHaveLength(1);
    for (const leave of leaves.slice(1)) leave();
    fire();
    expect(members[0]!.caps.at(-1)).toBe(10);
    expect(armedAt()).toBeUndefined();
  });

  it('says nothing of floors when those over the total send nothing (held for a multicast group)', () => {
    const { shared, fire, warnings } = rig(10);
    const held = Array.from({ length: 20 }, () => member(0, 2));
    const group = member(1000, 2);
    for (const m of [...held, group]) shared.join(m);
    fire();
    expect(warnings).toEqual([]);
    expect(group.caps.at(-1)).toBe(10);
  });

  it('without a total caps nothing and works nothing out; a total set later caps the transfers under way, and off lifts it', () => {
    const { shared, fire, armedAt } = rig(Number.POSITIVE_INFINITY);
    const a = member(1000);
    const b = member(1000);
    shared.join(a);
    shared.join(b);
    expect(a.caps).toEqual([]);
    expect(armedAt()).toBeUndefined();
    shared.setTotal(40);
    expect(a.caps.at(-1)).toBe(20);
    expect(b.caps.at(-1)).toBe(20);
    expect(armedAt()).toBeDefined();
    shared.setTotal(Number.POSITIVE_INFINITY);
    expect(a.caps.at(-1)).toBe(Number.POSITIVE_INFINITY);
    expect(b.caps.at(-1)).toBe(Number.POSITIVE_INFINITY);
    expect(armedAt()).toBeUndefined();
    fire();
    expect(a.caps).toHaveLength(2);
  });
});

describe('SharedRate.admit: no more transfers at once than the total carries at their floors', () => {
  function rig(total: number): { shared: SharedRate; warnings: string[] } {
    const clock = { t: 1000, now() { return this.t; } };
    const warnings: string[] = [];
    return { shared: new SharedRate(total, clock, () => ({ arm: () => undefined, clear: () => undefined }), (line) => warnings.push(line)), warnings };
  }
  /** Which of `turns` have been admitted, after the microtasks that tell them ran. */
  async function admitted(turns: { admitted: Promise<void> }[]): Promise<boolean[]> {
    const seen = turns.map(() => false);
    turns.forEach((t, i) => void t.admitted.then(() => { seen[i] = true; }));
    await new Promise((res) => setImmediate(res));
    return seen;
  }

  it('starts those that fit at once, the rest in their order as turns are given back', async () => {
    const { shared, warnings } = rig(10);
    const turns = Array.from({ length: 7 }, () => shared.admit(3));
    expect(await admitted(turns)).toEqual([true, true, true, false, false, false, false]);
    expect(shared.waiting).toBe(4);
    expect(turns.map((t) => t.waiting)).toEqual([false, false, false, true, true, true, true]);
    expect(warnings).toEqual(['max rate 0.08 Mbit/s carries 3 transfers at a chunk a second each: the others wait their turn and start as those end (max-rate shows how many wait)']);
    turns[1]!.release();
    expect(await admitted(turns)).toEqual([true, true, true, true, false, false, false]);
    expect(turns[3]!.waiting).toBe(false);
    turns[1]!.release(); // again: nothing
    expect(await admitted(turns)).toEqual([true, true, true, true, false, false, false]);
    turns[5]!.release(); // left the queue before its turn
    expect(shared.waiting).toBe(2);
    turns[0]!.release();
    turns[2]!.release();
    expect(await admitted(turns)).toEqual([true, true, true, true, true, false, true]);
    expect(shared.waiting).toBe(0);
    expect(warnings).toHaveLength(1); // once a minute at most
  });

  it('starts one alone whatever its floor, and none before one that waits longer', async () => {
    const { shared } = rig(10);
    const big = shared.admit(50);
    const next = shared.admit(6);
    expect(await admitted([big, next])).toEqual([true, false]);
    big.release();
    // 6 and 3 would fit together, but 3 came after another 6 that waits.
    const after = shared.admit(6);
    const small = shared.admit(3);
    expect(await admitted([big, next, after, small])).toEqual([true, true, false, false]);
    next.release();
    expect(await admitted([big, next, after, small])).toEqual([true, true, true, true]);
  });

  it('starts those waiting when the total grows, and all of them when it is lifted; without one, all at once', async () => {
    const { shared } = rig(6);
    const turns = Array.from({ length: 6 }, () => shared.admit(3));
    expect(await admitted(turns)).toEqual([true, true, false, false, false, false]);
    shared.setTotal(12);
    expect(await admitted(turns)).toEqual([true, true, true, true, false, false]);
    shared.setTotal(Number.POSITIVE_INFINITY);
    expect(await admitted(turns)).toEqual([true, true, true, true, true, true]);
    const none = rig(Number.POSITIVE_INFINITY);
    expect(await admitted(Array.from({ length: 100 }, () => none.shared.admit(3)))).toEqual(new Array(100).fill(true));
    expect(none.warnings).toEqual([]);
  });

  it('keeps to the total whatever the order of arrivals and releases (fast-check)', async () => {
    await fc.assert(fc.asyncProperty(fc.double({ min: 1, max: 100, noNaN: true }), fc.array(fc.tuple(fc.boolean(), fc.double({ min: 0.5, max: 30, noNaN: true }), fc.nat()), { maxLength: 60 }), async (total, steps) => {
      const { shared } = rig(total);
      const live: { turn: ReturnType<SharedRate['admit']>; floor: number; in: boolean }[] = [];
      for (const [arrive, floor, pick] of steps) {
        if (arrive || live.length === 0) {
          const entry = { turn: shared.admit(floor), floor, in: false };
          void entry.turn.admitted.then(() => { entry.in = true; });
          live.push(entry);
        } else {
          live.splice(pick % live.length, 1)[0]!.turn.release();
        }
        await Promise.resolve();
        await Promise.resolve();
        const running = live.filter((e) => e.in);
        // Within the total, or one alone.
        expect(running.length <= 1 || running.reduce((a, e) => a + e.floor, 0) <= total + 1e-9).toBe(true);
        // Nobody waits while nothing runs.
        if (live.length > 0) expect(running.length).toBeGreaterThan(0);
      }
    }), { numRuns: 200 });
  });
});

describe('transfers under --max-rate (the simulated link)', () => {
  // A fast link (1000 chunks/ms at the bottleneck), 2 ms each way: only the cap limits.
  const fast: LinkProfile = { loss: 0, duplicate: 0, jitterMs: 0, delayMs: 2, capacity: { chunksPerMs: 1000, buffer: 4000 } };
  /** The most chunks sent, all flows together, in any window of `ms`. */
  const peak = (sentAt: number[], ms: number): number => {
    const t = [...sentAt].sort((a, b) => a - b);
    let most = 0;
    for (let i = 0, j = 0; i < t.length; i++) {
      while (t[i]! - t[j]! >= ms) j++;
      most = Math.max(most, i - j + 1);
    }
    return most;
  };

  it('one transfer goes at the cap, not the link\'s rate', () => {
    const [r] = simulateTransfers([{ chunks: makeChunks(3000) }], fast, 21, { maxRate: 2 });
    expect(r!.outcome?.code).toBe(ResultCode.ok);
    // 3,000 chunks at 2 a millisecond: 1.5 s (uncapped, this link takes ~10 ms).
    expect(r!.endedAt).toBeGreaterThan(1500 * 0.95);
    expect(r!.endedAt).toBeLessThan(1500 * 1.1);
    // Paced, not in bursts: no 100 ms holds more than a cap's worth and 2 ms of it.
    expect(peak(r!.sentAt, 100)).toBeLessThanOrEqual(200 + 4);
  });

  it('after waiting for its file, goes on at the cap, not in a burst of the idle time\'s credit', () => {
    // 100 chunks, then nothing until 500 ms (a release still being sealed), then the rest.
    const [r] = simulateTransfers([{ chunks: makeChunks(1000), prepared: [[0, 100], [500, 1000]] }], fast, 25, { maxRate: 2 });
    expect(r!.outcome?.code).toBe(ResultCode.ok);
    // 10 ms at the cap is 20 chunks; a burst of 2 ms of it at most (uncapped pacing allows 32).
    expect(peak(r!.sentAt, 10)).toBeLessThanOrEqual(20 + 4 + 1);
  });

  it('two share it evenly, and the one left gets it all back within a few round trips', () => {
    const [a, b] = simulateTransfers([{ chunks: makeChunks(4000) }, { chunks: makeChunks(1000), startAt: 100 }], fast, 22, { maxRate: 2 });
    for (const r of [a!, b!]) expect(r.outcome?.code).toBe(ResultCode.ok);
    // Together 5,000 chunks at 2 a millisecond: 2.5 s, however they share it.
    expect(a!.endedAt).toBeGreaterThan(2500 * 0.95);
    expect(a!.endedAt).toBeLessThan(2500 * 1.1);
    // b, alone, would take 500 ms at the cap; sharing evenly, about 1 s.
    expect(b!.endedAt - 100).toBeGreaterThan(900);
    expect(b!.endedAt - 100).toBeLessThan(1250);
    expect(peak([...a!.sentAt, ...b!.sentAt], 100)).toBeLessThanOrEqual(200 + 8);
  });

  it('the last of ten gets the whole cap back at once, not by slowly probing up from a tenth of it', () => {
    // Capped, its samples measure the cap, not the path (app-limited): its estimate does not
    // settle at its share, and it goes at the whole cap soon after the nine are done.
    const flows = [{ chunks: makeChunks(10_000) }, ...Array.from({ length: 9 }, () => ({ chunks: makeChunks(200) }))];
    const [long, ...short] = simulateTransfers(flows, fast, 24, { maxRate: 10 });
    for (const r of [long!, ...short]) expect(r.outcome?.code).toBe(ResultCode.ok);
    // 11,800 chunks at 10 a millisecond: 1.18 s.
    expect(long!.endedAt).toBeGreaterThan(1180 * 0.95);
    expect(long!.endedAt).toBeLessThan(1180 * 1.08);
  });

  it('a cap above what the path carries takes nothing from the path\'s rate', () => {
    // The cap (10 chunks/ms) is far above what the link carries (2 chunks/ms).
    const slow: LinkProfile = { ...fast, capacity: { chunksPerMs: 2, buffer: 200 } };
    const [r] = simulateTransfers([{ chunks: makeChunks(2000) }], slow, 23, { maxRate: 10 });
    expect(r!.outcome?.code).toBe(ResultCode.ok);
    expect(r!.endedAt).toBeLessThan(1000 * 1.25);
  });
});
