/**
 * `--max-rate`: the most the server sends, all transfers together (a site's uplink, a cellular
 * plan), shared among the transfers under way.
 *
 * Each transfer keeps its own rate model (rate-model.ts) and paces itself; this only caps it.
 * The caps are max-min fair: a transfer that wants less than an even share (a slow device, one
 * waiting for its device's verdict) gets what it wants, with room to probe for more; the others
 * split the rest evenly. What nobody wants goes to everyone evenly, so the caps always add up to
 * the total and a transfer's probe can find out that it could go faster. Caps are worked out
 * again soon after a transfer starts or ends and every REBALANCE_MS while several share. The
 * total may change at any time (the console's `max-rate`); without one, nothing is worked out.
 *
 * A transfer is never capped below `floor` (about a chunk a second): below that its peer's
 * timeouts would end it. So a push does not start more devices' transfers than the total allows
 * at their floors: the rest wait their turn (`admit`), first come first served, and start as
 * transfers end (or the total grows). Transfers that are not pushes (a job's file) take no turn;
 * should those make the floors of what is sending add up to more than the total, the total is
 * that much higher and the operator is told (`warn`, at most once a minute).
 */
import { NxtError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';

/** The lowest total: a few transfers at a chunk a second each. */
export const MIN_RATE_MBIT = 0.1;
export const MAX_RATE_MBIT = 100_000;

/** `--max-rate` and the console's `max-rate`: Mbit/s, a plain decimal number within range. */
export function parseMaxRateMbit(text: string, usage: string): number {
  const mbit = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || mbit < MIN_RATE_MBIT || mbit > MAX_RATE_MBIT) throw new NxtError('usage', usage);
  return mbit;
}

/** How much more than it asks for a transfer may send: a rate model probes at 1.25 × (BBR). */
export const PROBE_HEADROOM = 1.25;
/** How often the caps are worked out again while several transfers share the total. */
export const REBALANCE_MS = 50;
/** The warning that the floors exceed the total comes at most this often. */
export const OVER_WARNING_MS = 60_000;

/**
 * Max-min fair caps of `total` for transfers that want `wants` (same unit; a want is already
 * with its headroom): water-filling, then what is left over spread evenly. Pure.
 */
export function fairShares(total: number, wants: readonly number[]): number[] {
  const n = wants.length;
  const caps = new Array<number>(n).fill(0);
  if (n === 0) return caps;
  // Lowest want first: each either gets what it wants or, once wants pass the even share of
  // what is left, all the rest share it evenly.
  const order = wants.map((_, i) => i).sort((a, b) => (wants[a] ?? 0) - (wants[b] ?? 0));
  let left = total;
  let k = 0;
  for (; k < n; k++) {
    const i = order[k]!;
    const even = left / (n - k);
    const want = Math.max(0, wants[i] ?? 0);
    if (want > even) break;
    caps[i] = want;
    left -= want;
  }
  if (k < n) {
    const even = left / (n - k);
    for (; k < n; k++) caps[order[k]!] = even;
  } else if (left > 0) {
    for (let i = 0; i < n; i++) caps[i]! += left / n;
  }
  return caps;
}

function mbitText(bytesPerMs: number): string {
  return `${Number(((bytesPerMs * 8) / 1000).toPrecision(3))} Mbit/s`;
}

/** A transfer that shares the total. Rates in bytes per ms. */
export interface RateSharer {
  /** What it would send now uncapped (0 while it sends nothing: offering, waiting for a verdict). */
  wants(now: number): number;
  /** The most it may send from now on. */
  cap(bytesPerMs: number, now: number): void;
  /** The least it may be capped to (its peer's timeouts allow no less). */
  readonly floor: number;
}

/** A transfer's place in the queue for a share of the total (SharedRate.admit). */
export interface Turn {
  /** Resolves when it may start. */
  readonly admitted: Promise<void>;
  /** In the queue still. */
  readonly waiting: boolean;
  /** Out of the queue, or (admitted) its floor given back: the next in line may start. Once;
   *  again does nothing. */
  release(): void;
}

/** A timer that calls back once at a time: a WakeTimer, or a simulation's. */
export interface RebalanceTimer {
  arm(at: number): void;
  clear(): void;
}

/** The total and the transfers sharing it. */
export class SharedRate {
  private readonly members = new Set<RateSharer>();
  private readonly timer: RebalanceTimer;
  private total: number;
  private warnedAt = Number.NEGATIVE_INFINITY;
  private queuedWarnedAt = Number.NEGATIVE_INFINITY;
  /** Transfers admitted and not yet released: how many, and their floors added up. */
  private running = 0;
  private runningFloors = 0;
  private readonly queue: { readonly floor: number; readonly start: () => void }[] = [];

  /** `bytesPerMs`: the total (1 Mbit/s is 125 bytes per ms; Infinity: none, until setTotal).
   *  `warn`: told when the transfers' floors add up to more than the total. */
  constructor(
    bytesPerMs: number,
    private readonly clock: Clock,
    makeTimer: (fire: () => void) => RebalanceTimer = (fire) => new WakeTimer(clock, fire, true),
    private readonly warn: (line: string) => void = () => undefined,
  ) {
    this.total = bytesPerMs;
    this.timer = makeTimer(() => this.rebalance());
  }

  /** The total, bytes per ms (Infinity: no cap). */
  get bytesPerMs(): number { return this.total; }
  get limited(): boolean { return Number.isFinite(this.total); }
  /** How many transfers share it now. */
  get sharing(): number { return this.members.size; }
  /** How many wait their turn to start (admit). */
  get waiting(): number { return this.queue.length; }

  /**
   * A push's transfer to one device, with a `floor` (bytes per ms), asks to start: at once when
   * none is admitted or their floors and its own fit the total (and none waits before it);
   * otherwise when enough of those admitted are released (or the total grows). Without a total,
   * at once. The caller releases the turn when the transfer ends, or leaves the queue with it.
   */
  admit(floor: number): Turn {
    let resolve!: () => void;
    const admitted = new Promise<void>((res) => { resolve = res; });
    let state: 'waiting' | 'admitted' | 'released' = 'waiting';
    const entry = { floor, start: (): void => { state = 'admitted'; this.running++; this.runningFloors += floor; resolve(); } };
    if (this.queue.length === 0 && this.fits(floor)) entry.start();
    else {
      this.queue.push(entry);
      const now = this.clock.now();
      // Said when the first waits, not how many will: a push to many devices asks for their
      // turns one by one.
      if (now - this.queuedWarnedAt >= OVER_WARNING_MS) {
        this.queuedWarnedAt = now;
        this.warn(`max rate ${mbitText(this.total)} carries ${this.running} transfer${this.running === 1 ? '' : 's'} at a chunk a second each: `
          + 'the others wait their turn and start as those end (max-rate shows how many wait)');
      }
    }
    return {
      admitted,
      get waiting() { return state === 'waiting'; },
      release: () => {
        if (state === 'released') return;
        if (state === 'admitted') {
          this.running--;
          this.runningFloors -= floor;
          if (this.running === 0) this.runningFloors = 0; // no drift from adding and taking away
        } else {
          this.queue.splice(this.queue.indexOf(entry), 1);
        }
        state = 'released';
        this.startWaiting();
      },
    };
  }

  private fits(floor: number): boolean {
    return !this.limited || this.running === 0 || this.runningFloors + floor <= this.total;
  }

  /** As many of those waiting as now fit, in their order. */
  private startWaiting(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.floor)) this.queue.shift()!.start();
  }

  /** A new total (Infinity: none), for the transfers under way too. */
  setTotal(bytesPerMs: number): void {
    this.total = bytesPerMs;
    this.startWaiting();
    if (this.limited) return this.rebalance();
    this.timer.clear();
    const now = this.clock.now();
    for (const m of this.members) m.cap(Number.POSITIVE_INFINITY, now);
  }

  /**
   * `member` shares the total from now until the returned function is called. Until the caps
   * are worked out again (soon: a push to a thousand devices starts a thousand transfers at
   * once, and working them out at each would cost a million steps), it gets an even share.
   */
  join(member: RateSharer): () => void {
    this.members.add(member);
    if (this.limited) {
      member.cap(Math.max(this.total / this.members.size, member.floor), this.clock.now());
      this.timer.arm(this.clock.now());
    }
    return () => {
      if (this.members.delete(member) && this.limited) this.timer.arm(this.clock.now());
    };
  }

  /** Work the caps out again: soon after a join or a leave, then every REBALANCE_MS while
   *  several share. */
  rebalance(): void {
    this.timer.clear();
    if (!this.limited || this.members.size === 0) return;
    const now = this.clock.now();
    const members = [...this.members];
    const wants = members.map((m) => m.wants(now) * PROBE_HEADROOM);
    const caps = fairShares(this.total, wants);
    members.forEach((m, i) => m.cap(Math.max(caps[i]!, m.floor), now));
    // Only those sending can send more than their share: one that wants nothing (held for a
    // multicast group, waiting for its verdict) sends nothing at its floor either.
    let floors = 0;
    let sending = 0;
    members.forEach((m, i) => { if (wants[i]! > 0) { floors += m.floor; sending++; } });
    if (floors > this.total && now - this.warnedAt >= OVER_WARNING_MS) {
      this.warnedAt = now;
      this.warn(`max rate ${mbitText(this.total)} is shared by ${sending} transfers sending: each is held to a chunk a second, ${mbitText(floors)} in all `
        + '(slower, their devices would time out). Pushes wait their turn; jobs\' files do not');
    }
    // One alone has the whole total: nothing to balance until another joins.
    if (members.length > 1) this.timer.arm(now + REBALANCE_MS);
  }
}
