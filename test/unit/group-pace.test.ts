/** The multicast group's decisions (who goes to unicast, how fast the group goes), with made-up
 *  acknowledgements and a fixed clock. */
import { describe, expect, it } from 'vitest';
import { BLOCKED_AFTER_MS, DEAF_AFTER_CHUNKS, DEAF_AFTER_MS, DEAF_GIVE_UP_MS, GroupPace, SILENT_AFTER_MS, type MemberView } from '../../src/transfer/group-pace.js';
import { seededRandom } from '../support/random.js';

type Device = MemberView & { accepted: boolean; released: boolean; heardAt?: number };

/** More chunks than any test sends: the helpers count acknowledgements below it. */
const HORIZON = 8192;

/** A device that acknowledges what `hears(index)` says, once it accepted. */
function device(hears: (index: number) => boolean): Device {
  return {
    accepted: true, released: false, isAcked: hears,
    get acked() { let n = 0; for (let i = 0; i < HORIZON; i++) if (hears(i)) n++; return n; },
    get frontier() { for (let i = HORIZON - 1; i >= 0; i--) if (hears(i)) return i + 1; return 0; },
  };
}

/** Run control steps as a pass of `total` chunks goes out, `perStep` chunks a step; returns the
 *  pace after each step, who was released when, and who was asked what it holds when. Asked,
 *  a device answers before the next step. */
function run(pace: GroupPace, views: Device[], total: number, perStep: number): { rates: number[]; released: Map<number, number>; releasedAt: Map<number, number>; askedAt: Map<number, number> } {
  const rates: number[] = [];
  const released = new Map<number, number>();
  const releasedAt = new Map<number, number>();
  const askedAt = new Map<number, number>();
  pace.step(0, 10, 0, views, false); // the group starts: those that accepted are judged from chunk 0
  for (let expected = perStep, t = 25; expected <= total; expected += perStep, t += 25) {
    for (const i of pace.step(t, 10, expected, views, true)) {
      views[i]!.released = true;
      released.set(i, expected);
      releasedAt.set(i, t);
    }
    for (const i of pace.takeQuestions()) {
      askedAt.set(i, t);
      views[i]!.heardAt = t + 5;
    }
    rates.push(pace.rate);
  }
  return { rates, released, releasedAt, askedAt };
}

describe('the multicast group pace', () => {
  it('asks a device that hears nothing what it holds once it should have had the first chunks and some time passed, and hands it to unicast when its answer shows nothing from the group', () => {
    const pace = new GroupPace(3, 100, 10, 1000);
    const views = [device(() => true), device(() => false), device(() => true)];
    const { released, releasedAt, askedAt } = run(pace, views, 800, 16);
    expect([...askedAt.keys()]).toEqual([1]);
    // The first step at or after DEAF_AFTER_MS (steps every 25 ms): not a step sooner.
    expect(askedAt.get(1)).toBe(Math.ceil(DEAF_AFTER_MS / 25) * 25);
    expect([...released.keys()]).toEqual([1]);
    expect(released.get(1)).toBeGreaterThanOrEqual(DEAF_AFTER_CHUNKS);
    // Its answer came before the next step.
    expect(releasedAt.get(1)).toBe(askedAt.get(1)! + 25);
    expect(pace.handedOver(1)).toBe('deaf');
    expect(pace.handedOver(0)).toBeUndefined();
    expect(pace.heard(1)).toBe(false);
  });

  it('keeps a device that does not answer the question (too busy to) on the group until DEAF_GIVE_UP_MS; one whose late answer shows group chunks is not deaf', () => {
    // Device 1 says nothing at all for 2 s, then acknowledges everything sent so far; device 2
    // never says anything.
    const pace = new GroupPace(3, 100, 10, 1000);
    let now = 0;
    const views = [device(() => true), device(() => now >= 2_000), device(() => false)];
    const released = new Map<number, number>();
    const asked: number[] = [];
    pace.step(0, 10, 0, views, false);
    for (let expected = 16; expected <= 16 * 400; expected += 16) {
      now += 25;
      if (now === 2_000) views[1]!.heardAt = now;
      for (const i of pace.step(now, 10, expected, views, true)) { views[i]!.released = true; released.set(i, now); }
      asked.push(...pace.takeQuestions());
    }
    expect(asked).toEqual([1, 2]);
    expect([...released]).toEqual([[2, Math.ceil(DEAF_GIVE_UP_MS / 25) * 25]]);
    expect(pace.handedOver(2)).toBe('deaf');
    expect(pace.heard(1)).toBe(true);
  });

  it('counts acknowledgements that come late (a busy device): not deaf, not a straggler', () => {
    // Device 1 acknowledges each chunk only 100 ms (4 steps of 16 chunks) after the driver
    // expected it; device 2 hears nothing.
    const pace = new GroupPace(3, 100, 10, 1000);
    let now = 0;
    const lateAcks = (i: number): boolean => i < ((now - 100) / 25) * 16;
    const views: Device[] = [device(() => true), device(lateAcks), device(() => false)];
    const released = new Map<number, number>();
    pace.step(0, 10, 0, views, false);
    for (let expected = 16; expected <= 800; expected += 16) {
      now += 25;
      for (const i of pace.step(now, 10, expected, views, true)) { views[i]!.released = true; released.set(i, now); }
      for (const i of pace.takeQuestions()) views[i]!.heardAt = now + 5;
    }
    expect([...released.keys()]).toEqual([2]);
    expect(pace.heard(1)).toBe(true);
  });

  it('a device that acknowledges the group\'s chunks only after they were counted missing (one of fifty on two cores) is neither deaf nor a straggler', () => {
    // Device 1 acknowledges each chunk 300 ms after the driver expected it: later than a count
    // is looked at again. Device 4 hears nothing.
    const pace = new GroupPace(5, 100, 10, 1000);
    let now = 0;
    const late = (i: number): boolean => i < ((now - 300) / 25) * 16;
    const views = [device(() => true), device(late), device(() => true), device(() => true), device(() => false)];
    const released = new Map<number, number>();
    const asked: number[] = [];
    pace.step(0, 10, 0, views, false);
    for (let expected = 16; expected <= 1600; expected += 16) {
      now += 25;
      for (const i of pace.step(now, 10, expected, views, true)) { views[i]!.released = true; released.set(i, now); }
      for (const i of pace.takeQuestions()) { asked.push(i); views[i]!.heardAt = now + 5; }
    }
    expect(asked).toEqual([4]);
    expect([...released.keys()]).toEqual([4]);
    expect(pace.handedOver(4)).toBe('deaf');
    expect(pace.heard(1)).toBe(true);
    expect(pace.handedOver(1)).toBeUndefined();
  });

  it('a device that acknowledged group chunks and then fell silent goes to unicast SILENT_AFTER_MS after its last word', () => {
    // Device 1 acknowledges the first 200 chunks in time, then nothing (its uplink failed).
    const pace = new GroupPace(3, 100, 10, 1000);
    let now = 0;
    const views = [device(() => true), device((i) => i < 200), device(() => true)];
    const released = new Map<number, number>();
    pace.step(0, 10, 0, views, false);
    for (let expected = 16; expected <= 16 * 300; expected += 16) {
      now += 25;
      views[0]!.heardAt = views[2]!.heardAt = now;
      if (expected <= 200) views[1]!.heardAt = now;
      for (const i of pace.step(now, 10, expected, views, true)) { views[i]!.released = true; released.set(i, now); }
    }
    expect([...released.keys()]).toEqual([1]);
    expect(pace.handedOver(1)).toBe('silent');
    // Its last word came with the step at chunk 192 (steps every 25 ms, 16 chunks each).
    expect(released.get(1)).toBe(Math.floor(200 / 16) * 25 + SILENT_AFTER_MS);
  });

  it('a device as late that also loses most of what reaches it is a straggler', () => {
    const random = seededRandom(6);
    const losses = Array.from({ length: 1600 }, () => random());
    const pace = new GroupPace(4, 100, 10, 1000);
    let now = 0;
    const lateAndLossy = (i: number): boolean => i < ((now - 300) / 25) * 16 && losses[i]! > 0.7;
    const views = [device(() => true), device(lateAndLossy), device(() => true), device(() => true)];
    pace.step(0, 10, 0, views, false);
    const released: number[] = [];
    for (let expected = 16; expected <= 1600; expected += 16) {
      now += 25;
      for (const i of pace.step(now, 10, expected, views, true)) { views[i]!.released = true; released.push(i); }
      for (const i of pace.takeQuestions()) views[i]!.heardAt = now + 5;
    }
    expect(released).toEqual([1]);
    expect(pace.handedOver(1)).toBe('lossy');
  });

  it('hands a straggler (missing most chunks) to unicast, and keeps the rest on the group', () => {
    const random = seededRandom(3);
    const losses = Array.from({ length: 400 }, () => random());
    const pace = new GroupPace(3, 100, 10, 1000);
    const views = [device(() => true), device((i) => losses[i]! > 0.7), device(() => true)];
    const { released } = run(pace, views, 400, 16);
    expect([...released.keys()]).toEqual([1]);
    expect(pace.handedOver(1)).toBe('lossy');
  });

  it('when most devices miss most chunks, none is a straggler: the pace drops instead', () => {
    const random = seededRandom(4);
    const losses = Array.from({ length: 3 }, () => Array.from({ length: 800 }, () => random()));
    const pace = new GroupPace(3, 1000, 10, 1000);
    const views = [device((i) => losses[0]![i]! > 0.7), device((i) => losses[1]![i]! > 0.7), device(() => true)];
    const { released, rates } = run(pace, views, 800, 16);
    expect([...released.keys()]).toEqual([]);
    expect(rates.at(-1)).toBe(10);
  });

  it('one device with standing loss among ten does not slow the group: it speeds up to the ceiling', () => {
    const random = seededRandom(5);
    const lossy = Array.from({ length: 4000 }, () => random() < 0.05);
    const pace = new GroupPace(10, 100, 10, 1000);
    const views = Array.from({ length: 10 }, (_, d) => device((i) => d !== 0 || !lossy[i]));
    const { rates } = run(pace, views, 4000, 32);
    expect(rates.at(-1)).toBe(1000);
  });

  it('when most devices lose more as the pace rises, it drops, never below its floor', () => {
    // Devices lose 20% of what is sent above a pace of 300 (a LAN that takes 300).
    let pace = new GroupPace(10, 1000, 50, 2000);
    const sentAtRate: number[] = [];
    const views = Array.from({ length: 10 }, (_, d) => device((i) => !(sentAtRate[i]! > 300 && (i * 7 + d * 13) % 5 === 0)));
    const rates: number[] = [];
    for (let expected = 32, t = 0; expected <= 6400; expected += 32, t += 25) {
      for (let i = expected - 32; i < expected; i++) sentAtRate[i] = pace.rate;
      pace.step(t, 10, expected, views, true);
      rates.push(pace.rate);
    }
    expect(Math.min(...rates)).toBeGreaterThanOrEqual(50);
    // It settles around what the LAN takes, not at the ceiling, not at the floor.
    const late = rates.slice(-50);
    expect(Math.max(...late)).toBeLessThan(700);
    expect(Math.min(...late)).toBeGreaterThan(100);
    // A floor that holds: with every device losing at any pace, the pace stops at 50.
    pace = new GroupPace(4, 1000, 50, 2000);
    const always = Array.from({ length: 4 }, () => device((i) => i % 3 !== 0));
    for (let expected = 32, t = 0; expected <= 3200; expected += 32, t += 25) pace.step(t, 10, expected, always, true);
    expect(pace.rate).toBeGreaterThanOrEqual(50);
  });

  it('judges a device that accepts mid-pass from there on, and says it joined', () => {
    const pace = new GroupPace(2, 100, 10, 1000);
    const late = device((i) => i >= 200 && i < 400);
    late.accepted = false;
    const views = [device(() => true), late];
    pace.step(0, 10, 0, views, false);
    expect(pace.takeJoined()).toEqual([0]);
    for (let expected = 16, t = 25; expected <= 192; expected += 16, t += 25) expect(pace.step(t, 10, expected, views, true)).toEqual([]);
    late.accepted = true;
    expect(pace.step(1000, 10, 200, views, true)).toEqual([]);
    expect(pace.takeJoined()).toEqual([1]);
    // It hears the group from chunk 200 on: not deaf, though it has none of 0…199.
    for (let expected = 216, t = 1025; expected <= 400; expected += 16, t += 25) expect(pace.step(t, 10, expected, views, true)).toEqual([]);
    expect(pace.heard(1)).toBe(true);
  });

  it('leaves the pace alone once the pass is over', () => {
    const pace = new GroupPace(2, 100, 10, 1000);
    const views = [device(() => true), device(() => true)];
    for (let expected = 32, t = 0; expected <= 640; expected += 32, t += 25) pace.step(t, 10, expected, views, false);
    expect(pace.rate).toBe(100);
  });
});

describe('a device the group has passed by more than its receive window', () => {
  it('goes to unicast once that has lasted BLOCKED_AFTER_MS, before it misses enough to be a straggler; one whose window keeps up stays', () => {
    const pace = new GroupPace(3, 100, 10, 1000);
    // Device 1 lost chunk 1000 and holds at most 256 chunks beyond its in-order point: from
    // chunk 1256 on it drops whatever the group sends, until a repair it would get only after
    // the pass. Device 2 lost chunk 1000 too, but its window (4096) holds the whole pass.
    const gap = (window: number): MemberView & { released: boolean } => ({ ...device((i) => i !== 1000 && i < 1000 + window), receiveEdge: 1000 + window });
    const views = [device(() => true), gap(256), gap(4096)];
    const { released, releasedAt } = run(pace, views, 3000, 16);
    expect([...released.keys()]).toEqual([1]);
    // Blocked from the first step whose expected chunk passed its edge; released
    // BLOCKED_AFTER_MS later (steps every 25 ms, 16 chunks each), not sooner.
    const blockedAt = Math.ceil(1257 / 16) * 25;
    expect(releasedAt.get(1)).toBe(blockedAt + BLOCKED_AFTER_MS);
    expect(pace.handedOver(1)).toBe('behind');
  });
});
