import { describe, expect, it } from 'vitest';
import { PathMtu } from '../../src/transfer/path-mtu.js';

describe('datagram-size discovery (RFC 8899)', () => {
  it('starts at the base and climbs the ladder as probes are acknowledged', () => {
    const p = new PathMtu({ max: 65_507 });
    expect(p.size).toBe(1452);
    const seen: number[] = [];
    for (let t = 0; ; t++) {
      const next = p.nextProbe(t);
      if (next === undefined) break;
      seen.push(next);
      p.probeSent(next);
      expect(p.nextProbe(t)).toBeUndefined(); // one probe at a time
      p.probeAcked(next, t);
    }
    expect(seen).toEqual([8952, 16384, 32768, 65_507]);
    expect(p.size).toBe(65_507);
    expect(p.searching).toBe(false);
  });

  it('never probes above the interface limit', () => {
    const p = new PathMtu({ max: 9000 - 48 });
    expect(p.nextProbe(0)).toBe(8952);
    p.probeSent(8952);
    p.probeAcked(8952, 0);
    expect(p.nextProbe(1)).toBeUndefined();
    expect(p.size).toBe(8952);
  });

  it('stops at the largest size that gets through when bigger probes are lost MAX_PROBES times', () => {
    const p = new PathMtu({ max: 65_507 });
    p.probeSent(p.nextProbe(0)!);
    p.probeAcked(8952, 0);
    for (let i = 0; i < 3; i++) {
      expect(p.nextProbe(i)).toBe(16384);
      p.probeSent(16384);
      p.probeLost(16384, i);
    }
    expect(p.nextProbe(10)).toBeUndefined();
    expect(p.size).toBe(8952);
  });

  it('a single lost probe (random loss) is tried again', () => {
    const p = new PathMtu({ max: 65_507 });
    p.probeSent(8952);
    p.probeLost(8952, 0);
    expect(p.nextProbe(1)).toBe(8952);
  });

  it('falls back to the base when big datagrams stop arriving, and searches again below the size that failed', () => {
    const p = new PathMtu({ max: 65_507 });
    for (const s of [8952, 16384, 32768]) { p.probeSent(s); p.probeAcked(s, 0); }
    expect(p.size).toBe(32768);
    p.blackHole(5); // the path shrank mid-transfer
    expect(p.size).toBe(1452);
    expect(p.nextProbe(6)).toBe(8952);
    p.probeSent(8952); p.probeAcked(8952, 6);
    expect(p.nextProbe(7)).toBe(16384);
    p.probeSent(16384); p.probeAcked(16384, 7);
    // 32768 failed: not tried again until the raise timer.
    expect(p.nextProbe(8)).toBeUndefined();
    expect(p.nextProbe(8 + 600_000)).toBe(32768);
  });

  it('tries a finished search again after the raise timer (the path may have grown)', () => {
    const p = new PathMtu({ max: 16384, raiseAfterMs: 1000 });
    for (let i = 0; i < 3; i++) { p.probeSent(p.nextProbe(i)!); p.probeLost(8952, i); }
    expect(p.nextProbe(10)).toBeUndefined();
    expect(p.nextProbe(1500)).toBe(8952);
  });
});

describe('a probe whose transfer ended before it was settled', () => {
  it('does not stop the next transfer from searching', () => {
    const p = new PathMtu({ max: 65_507 });
    p.probeSent(p.nextProbe(0)!);
    p.probeAbandoned();
    expect(p.nextProbe(1)).toBe(8952);
  });
});
