/**
 * The decisions of a multicast group's pass (server/group-push.ts), as a pure state machine:
 * at each control step it is told how many chunks each device should have by now and which it
 * acknowledged, and says which devices to hand over to unicast and how fast the group goes on.
 *
 *   - A device that acknowledged none of the first DEAF_AFTER_CHUNKS it should have does not hear
 *     the group (a router, a firewall, a device that will not join): unicast.
 *   - A device missing more than STRAGGLER_LOSS of them is a straggler: unicast, so that it does
 *     not slow the others.
 *   - The pace follows the devices' loss beyond what each loses anyway (its standing loss, the
 *     least of its last BASELINE_STEPS intervals: a radio or a bad cable loses at any pace, and
 *     slowing down would not help it). The loss that decides is the device's at PACE_PERCENTILE:
 *     one lossy device is repaired afterwards and must not slow the others; many devices losing
 *     more means the pace is too high for the LAN. Above LOSS_HIGH the pace drops by CUT (at most
 *     once a round trip: an overshoot's losses arrive over one); below LOSS_LOW it rises by GROW.
 */

export const DEAF_AFTER_CHUNKS = 48;
export const STRAGGLER_LOSS = 0.5;
export const LOSS_HIGH = 0.03;
export const LOSS_LOW = 0.01;
export const PACE_PERCENTILE = 0.8;
export const BASELINE_STEPS = 12;
const CUT = 0.7;
const GROW = 1.08;
/** Chunks a device's interval must span for its loss to count. */
const MIN_SPAN = 8;

/** What the driver knows of one device at a control step. */
export interface MemberView {
  /** It accepted its offer (its first ACK came). */
  readonly accepted: boolean;
  /** Already handed to unicast. */
  readonly released: boolean;
  /** Whether it acknowledged chunk `index`. */
  isAcked(index: number): boolean;
}

interface MemberState {
  /** The chunks the group had sent when it accepted its offer: it is judged on the rest only
   *  (a device that joins mid-pass gets those by unicast). undefined: not accepted yet. */
  start: number | undefined;
  /** Chunks it should have by now, and how many of those it lacks. */
  cursor: number;
  missing: number;
  lastCursor: number;
  lastMissing: number;
  heard: boolean;
  readonly recentLoss: number[];
}

export class GroupPace {
  private readonly members: MemberState[];
  private rateValue: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  private readonly excess: number[] = [];
  private readonly joinedValue: number[] = [];

  /** Rates in any unit (the driver uses bytes per ms). */
  constructor(devices: number, start: number, private readonly min: number, private readonly max: number) {
    this.members = Array.from({ length: devices }, () => ({ start: undefined, cursor: 0, missing: 0, lastCursor: 0, lastMissing: 0, heard: false, recentLoss: [] }));
    this.rateValue = Math.min(max, Math.max(min, start));
  }

  get rate(): number { return this.rateValue; }
  /** Devices seen accepting since the last call (a late one is told the group again). */
  takeJoined(): number[] { return this.joinedValue.splice(0); }
  /** Whether device `i` has acknowledged anything the group sent. */
  heard(i: number): boolean { return this.members[i]!.heard; }

  /**
   * One control step: `expected` chunks (0…expected−1) went to the group long enough ago to be
   * acknowledged; `adjust` false once the pass is over (the pace no longer matters). Returns the
   * devices to hand over to unicast now.
   */
  step(now: number, roundTrip: number, expected: number, views: readonly MemberView[], adjust: boolean): number[] {
    const release: number[] = [];
    const excess = this.excess;
    excess.length = 0;
    views.forEach((v, i) => {
      const m = this.members[i]!;
      if (v.released || !v.accepted) return;
      if (m.start === undefined) {
        m.start = m.cursor = m.lastCursor = expected;
        this.joinedValue.push(i);
      }
      for (; m.cursor < expected; m.cursor++) if (!v.isAcked(m.cursor)) m.missing++;
      const judged = m.cursor - m.start;
      if (!m.heard && judged - m.missing > 0) m.heard = true;
      if (!m.heard && judged >= DEAF_AFTER_CHUNKS) { release.push(i); return; }
      if (m.heard && judged >= DEAF_AFTER_CHUNKS && m.missing / judged > STRAGGLER_LOSS) { release.push(i); return; }
      const span = m.cursor - m.lastCursor;
      if (span < MIN_SPAN) return;
      const loss = (m.missing - m.lastMissing) / span;
      m.recentLoss.push(loss);
      if (m.recentLoss.length > BASELINE_STEPS) m.recentLoss.shift();
      excess.push(loss - Math.min(...m.recentLoss));
      m.lastCursor = m.cursor;
      m.lastMissing = m.missing;
    });
    if (adjust && excess.length > 0) {
      excess.sort((a, b) => a - b);
      const deciding = excess[Math.floor(PACE_PERCENTILE * (excess.length - 1))]!;
      if (deciding > LOSS_HIGH) {
        if (now - this.lastCut > roundTrip) {
          this.rateValue = Math.max(this.min, this.rateValue * CUT);
          this.lastCut = now;
        }
      } else if (deciding < LOSS_LOW) {
        this.rateValue = Math.min(this.max, this.rateValue * GROW);
      }
    }
    return release;
  }
}
