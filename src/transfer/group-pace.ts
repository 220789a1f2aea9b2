/**
 * The decisions of a multicast group's pass (server/group-push.ts), as a pure state machine:
 * at each control step it is told how many chunks each device should have by now and which it
 * acknowledged, and says which devices to hand over to unicast and how fast the group goes on.
 *
 *   - A device that acknowledged none of the first DEAF_AFTER_CHUNKS it should have (neither in
 *     time nor late), DEAF_AFTER_MS after it was first judged, may not hear the group (a router,
 *     a firewall, a device that will not join), or may only be too busy to have said so yet
 *     (one of fifty agents sharing a machine's cores acknowledges seconds late). It is asked
 *     what it holds (the driver sends its OFFER again, which it answers at once): an answer that
 *     still shows nothing from the group means deaf: unicast. No answer means busy: it stays,
 *     until DEAF_GIVE_UP_MS. (Handing a busy device to unicast costs the server a session's
 *     sending and the device the same work; with half a second and no question, 26 to 47 of
 *     fifty devices sharing two cores went to unicast as deaf; counting only acknowledgements
 *     that came within RECHECK_STEPS, 34 to 37 that had acknowledged group chunks, a second
 *     late.) (Chunks alone would not do: at a high pace, a busy device's first acknowledgements
 *     come after dozens of chunks.)
 *   - A device that acknowledged group chunks and then fell silent for SILENT_AFTER_MS: unicast.
 *   - A device the group has passed by more than its receive window, for BLOCKED_AFTER_MS,
 *     cannot take more from the group until its gap is filled: unicast.
 *   - A device that lost more than STRAGGLER_LOSS of what reached it (the chunks it lacks below
 *     the highest it acknowledged) while most devices lose far less is a straggler: unicast, so
 *     that it does not slow the others. (A device that is only late, its queue long, is not.)
 *     When most devices lose that much, the pace is too high for them (or for the machine they
 *     run on), and it drops instead.
 *   - The pace follows the devices' loss beyond what each loses anyway (its standing loss, the
 *     least of its last BASELINE_STEPS intervals: a radio or a bad cable loses at any pace, and
 *     slowing down would not help it). The loss that decides is the device's at PACE_PERCENTILE:
 *     one lossy device is repaired afterwards and must not slow the others; many devices losing
 *     more means the pace is too high for the LAN. Above LOSS_HIGH the pace drops by CUT (at most
 *     once a round trip: an overshoot's losses arrive over one); below LOSS_LOW it rises by GROW.
 */

export const DEAF_AFTER_CHUNKS = 48;
/** A device the group has passed by more than its receive window for this long is handed to
 *  unicast: it drops whatever the group sends beyond its window until its gap is filled, which
 *  the group does only after its pass (with 1,400-byte chunks a window is 2.8 MiB: a device that
 *  lost one chunk early waited out the rest of a long pass and timed out). */
export const BLOCKED_AFTER_MS = 1000;
export const DEAF_AFTER_MS = 500;
/** A device asked what it holds that has not answered this long after it was first judged goes
 *  to unicast anyway (it may be gone: its session then times out as any would). */
export const DEAF_GIVE_UP_MS = 5000;
/** A device that acknowledged group chunks and then nothing at all for this long, while the
 *  group went on, goes to unicast: its uplink failed, or it stopped (its session's own timeouts
 *  then decide). A device merely late, even one of fifty on two cores, says something far sooner. */
export const SILENT_AFTER_MS = 5000;
export const STRAGGLER_LOSS = 0.5;
export const LOSS_HIGH = 0.03;
export const LOSS_LOW = 0.01;
export const PACE_PERCENTILE = 0.8;
export const BASELINE_STEPS = 12;
/** Loss above this is never taken as standing: a device losing more at every pace it has seen
 *  is losing to the pace (its queue overflows from the start), not to its radio. */
export const STANDING_LOSS_MAX = 0.25;
const CUT = 0.7;
const GROW = 1.08;
/** How many steps a chunk counted missing is looked at again (its ACK may be late). */
const RECHECK_STEPS = 8;
/** Chunks a device's interval must span for its loss to count. */
const MIN_SPAN = 8;
/** Chunks below a device's frontier not counted lost yet (they may only be reordered). */
const REORDER_MARGIN = 16;

/** Why a device went to unicast: it never acknowledged a group chunk (deaf), it did and then
 *  fell silent (silent), the group passed its receive window (behind), or it lost far more than
 *  the others (lossy). */
export type HandOver = 'deaf' | 'silent' | 'behind' | 'lossy';

/** What the driver knows of one device at a control step. */
export interface MemberView {
  /** It accepted its offer (its first ACK came). */
  readonly accepted: boolean;
  /** Already handed to unicast. */
  readonly released: boolean;
  /** Whether it acknowledged chunk `index`. */
  isAcked(index: number): boolean;
  /** How many chunks it has acknowledged in all (while the group sends, its session sends it
   *  none: any growth came from the group, however late it was acknowledged). */
  readonly acked: number;
  /** One past the highest chunk it has acknowledged (0: none): what it lacks below this it lost;
   *  what it lacks above may only be waiting in its queue. */
  readonly frontier: number;
  /** The first chunk it cannot hold yet: its in-order point plus its receive window, as its
   *  last ACK said (undefined: not known). */
  readonly receiveEdge?: number;
  /** When it last said anything about this transfer (undefined: not known). */
  readonly heardAt?: number;
}

interface MemberState {
  /** The chunks the group had sent when it accepted its offer: it is judged on the rest only
   *  (a device that joins mid-pass gets those by unicast). undefined: not accepted yet. */
  start: number | undefined;
  startedAt: number;
  /** What it had acknowledged when it was first judged (a resumed transfer's prefix). */
  ackedAtStart: number;
  /** Chunks it should have by now, and how many of those it lacks. */
  cursor: number;
  missing: number;
  lastCursor: number;
  lastMissing: number;
  /** Chunks it lacks below its frontier (less REORDER_MARGIN): lost, not late; counted up to
   *  lostCursor. What decides a straggler. */
  lostCursor: number;
  lost: number;
  heard: boolean;
  readonly recentLoss: number[];
  /** Chunks counted missing in the last RECHECK_STEPS steps, with the step that counted them:
   *  an acknowledgement that comes late (a busy device) still counts. */
  readonly lately: number[];
  readonly latelyStep: number[];
  /** Since when the group is beyond its receive window (undefined: it is not). */
  blockedSince: number | undefined;
  /** Why it was handed to unicast, once it was. */
  handedOver: HandOver | undefined;
  /** When it was asked what it holds (it seemed deaf). */
  askedAt: number | undefined;
}

export class GroupPace {
  private readonly members: MemberState[];
  private rateValue: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  private readonly excess: number[] = [];
  private readonly joinedValue: number[] = [];
  private readonly askValue: number[] = [];
  private steps = 0;

  /** Rates in any unit (the driver uses bytes per ms). */
  constructor(devices: number, start: number, private readonly min: number, private readonly max: number) {
    this.members = Array.from({ length: devices }, () => ({ start: undefined, startedAt: 0, ackedAtStart: 0, cursor: 0, missing: 0, lastCursor: 0, lastMissing: 0, lostCursor: 0, lost: 0, heard: false, recentLoss: [], lately: [], latelyStep: [], blockedSince: undefined, handedOver: undefined, askedAt: undefined }));
    this.rateValue = Math.min(max, Math.max(min, start));
  }

  get rate(): number { return this.rateValue; }
  /** Devices seen accepting since the last call (a late one is told the group again). */
  takeJoined(): number[] { return this.joinedValue.splice(0); }
  /** Devices to ask what they hold, since the last call (they seem deaf: see the top). */
  takeQuestions(): number[] { return this.askValue.splice(0); }
  /** Whether device `i` has acknowledged anything the group sent. */
  heard(i: number): boolean { return this.members[i]!.heard; }
  /** Why device `i` was handed to unicast (undefined: it was not, by this pace). */
  handedOver(i: number): HandOver | undefined { return this.members[i]!.handedOver; }

  /**
   * One control step: `expected` chunks (0…expected−1) went to the group long enough ago to be
   * acknowledged; `adjust` false once the pass is over (the pace no longer matters). Returns the
   * devices to hand over to unicast now.
   */
  step(now: number, roundTrip: number, expected: number, views: readonly MemberView[], adjust: boolean): number[] {
    const release: number[] = [];
    const excess = this.excess;
    excess.length = 0;
    let judgedCount = 0;
    let lossyCount = 0;
    const step = ++this.steps;
    views.forEach((v, i) => {
      const m = this.members[i]!;
      if (v.released || !v.accepted) return;
      if (m.start === undefined) {
        m.start = m.cursor = m.lastCursor = m.lostCursor = expected;
        m.startedAt = now;
        m.ackedAtStart = v.acked;
        this.joinedValue.push(i);
      }
      // Late acknowledgements first: a chunk acknowledged since it was counted is not missing.
      let kept = 0;
      for (let k = 0; k < m.lately.length; k++) {
        const index = m.lately[k]!;
        if (v.isAcked(index)) { m.missing--; m.heard = true; continue; }
        if (step - m.latelyStep[k]! >= RECHECK_STEPS) continue;
        m.lately[kept] = index;
        m.latelyStep[kept++] = m.latelyStep[k]!;
      }
      m.lately.length = m.latelyStep.length = kept;
      for (; m.cursor < expected; m.cursor++) {
        if (v.isAcked(m.cursor)) continue;
        m.missing++;
        m.lately.push(m.cursor);
        m.latelyStep.push(step);
      }
      const lostUpTo = Math.min(m.cursor, v.frontier - REORDER_MARGIN);
      for (; m.lostCursor < lostUpTo; m.lostCursor++) if (!v.isAcked(m.lostCursor)) m.lost++;
      const judged = m.cursor - m.start;
      // Heard: a chunk from the group was acknowledged, in time to count above or later than
      // that (a device one of fifty on two cores acknowledged the group's chunks a second or
      // more after they went out, beyond RECHECK_STEPS, and was handed to unicast as deaf).
      if (!m.heard && (judged - m.missing > 0 || v.acked > m.ackedAtStart)) m.heard = true;
      const straggler = isStraggler(m);
      if (straggler !== undefined) {
        judgedCount++;
        if (straggler) lossyCount++;
      }
    });
    // Stragglers are the exception; when they are the rule, the pace is at fault.
    const stragglersAreFew = lossyCount * 2 < judgedCount;
    views.forEach((v, i) => {
      const m = this.members[i]!;
      if (v.released || !v.accepted || m.start === undefined) return;
      const judged = m.cursor - m.start;
      if (!m.heard && judged >= DEAF_AFTER_CHUNKS && now - m.startedAt >= DEAF_AFTER_MS) {
        if (m.askedAt === undefined) {
          m.askedAt = now;
          this.askValue.push(i);
        } else if ((v.heardAt !== undefined && v.heardAt > m.askedAt) || now - m.startedAt >= DEAF_GIVE_UP_MS) {
          // It answered (the late acknowledgements above found nothing from the group), or it
          // did not answer for seconds.
          m.handedOver = 'deaf';
          release.push(i);
          return;
        }
      }
      const silent = m.heard && v.heardAt !== undefined && now - v.heardAt >= SILENT_AFTER_MS && v.acked < expected;
      if (silent) { m.handedOver = 'silent'; release.push(i); return; }
      const blocked = v.receiveEdge !== undefined && expected > v.receiveEdge;
      if (!blocked) m.blockedSince = undefined;
      else if (m.blockedSince === undefined) m.blockedSince = now;
      else if (now - m.blockedSince >= BLOCKED_AFTER_MS) { m.handedOver = 'behind'; release.push(i); return; }
      if (m.heard && isStraggler(m) === true && stragglersAreFew) { m.handedOver = 'lossy'; release.push(i); return; }
      const span = m.cursor - m.lastCursor;
      if (span < MIN_SPAN) return;
      const loss = Math.max(0, m.missing - m.lastMissing) / span;
      m.recentLoss.push(loss);
      if (m.recentLoss.length > BASELINE_STEPS) m.recentLoss.shift();
      excess.push(loss - Math.min(STANDING_LOSS_MAX, ...m.recentLoss));
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

/** Whether a device loses more than STRAGGLER_LOSS of what reached its frontier (undefined: too
 *  little of it yet to say). Chunks it lacks beyond its frontier do not count: a device one of
 *  fifty on two cores acknowledges seconds late, and a late device is no straggler: unicast
 *  would cost it the same work and its server a session more. */
function isStraggler(m: MemberState): boolean | undefined {
  const judged = m.lostCursor - (m.start ?? 0);
  return judged >= DEAF_AFTER_CHUNKS ? m.lost / judged > STRAGGLER_LOSS : undefined;
}
