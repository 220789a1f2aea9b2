/**
 * A push to several devices on one LAN through a multicast group: the release's sealed chunks go
 * once to the group, paced at the rate the slowest healthy device keeps up with, while each
 * device's own session (a PushSession held back by holdForGroup) receives its ACKs. Then:
 *
 *   - chunks that many devices missed go to the group once more;
 *   - every session's gate opens, and each sends its device only what that device still lacks
 *     (unicast repair, with the session's own loss recovery and pacing);
 *   - a device that hears nothing from the group (a router or firewall in the way, a device that
 *     will not join) has its gate opened within a few hundred milliseconds and gets everything
 *     by unicast; so does a straggler that misses most of what the group sends, so that it does
 *     not slow the others down.
 *
 * Nothing about verification changes: the chunks are the ones every session would send, sealed
 * under the release's content key, which each device got in its session.
 */
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';
import { SealedChunkWire } from '../files/sealed-chunk-wire.js';
import type { MulticastSender } from '../net/multicast.js';
import { PathMtu } from '../transfer/path-mtu.js';
import type { PushSession } from './push-session.js';
import type { SealedRelease } from './sealed-release.js';

export interface GroupPushOptions {
  /** The group's pace starts here and never exceeds the ceiling (Mbit/s of sealed data). */
  readonly startMbit: number;
  readonly maxMbit: number;
}

export const DEFAULT_GROUP_OPTIONS: GroupPushOptions = { startMbit: 200, maxMbit: 2000 };

/** How long devices have to accept the offer before the group starts without the rest. */
const ACCEPT_WAIT_MS = 300;
/** How often losses are counted and the pace adjusted. */
const CONTROL_MS = 25;
/** Chunks a device is expected to have, with none acknowledged, before it counts as not hearing
 *  the group. */
const DEAF_AFTER_CHUNKS = 48;
/** A device missing more than this share of what the group sent is a straggler: unicast. */
const STRAGGLER_LOSS = 0.5;
/**
 * The pace follows the devices' loss beyond what each loses anyway (its standing loss, the
 * minimum of its recent intervals: a radio or a bad cable loses at any pace, and slowing down
 * would not help it). The loss that decides is not the very worst device's but the one at
 * PACE_PERCENTILE of them: one lossy device is repaired afterwards by unicast and must not slow
 * the others; many devices losing more means the pace is too high for the LAN. Above LOSS_HIGH
 * the pace drops; below LOSS_LOW it rises.
 */
const LOSS_HIGH = 0.03;
const LOSS_LOW = 0.01;
const PACE_PERCENTILE = 0.8;
/** Control steps a device's standing loss is the minimum of. */
const BASELINE_STEPS = 12;
/** The pace never drops below this (Mbit/s): standing loss is repaired, not waited out. */
const MIN_MBIT = 20;
/** Chunks one wake may send at most (bursts overflow switch and socket queues). */
const MAX_BURST = 16;
/** A chunk missed by at least this share of the listening devices (and two) goes to the group again. */
const REPAIR_SHARE = 0.25;

interface Member {
  readonly session: PushSession;
  /** Chunks it should have by now (sent long enough ago), and how many of those it lacks. */
  cursor: number;
  missing: number;
  /** At the previous control step, for the interval's loss. */
  lastCursor: number;
  lastMissing: number;
  heard: boolean;
  /** Its loss in recent control steps (a ring), for its standing loss. */
  readonly recentLoss: number[];
}

export type Phase = 'waiting' | 'sending' | 'settling' | 'repairing' | 'done';

export class GroupPush {
  private readonly wire: SealedChunkWire;
  private readonly members: Member[];
  private readonly timer: WakeTimer;
  private phase: Phase = 'waiting';
  private readonly startedAt: number;
  /** When each chunk first went to the group (NaN: not yet). */
  private readonly sentAt: Float64Array;
  private next = 0;
  private repairQueue: number[] = [];
  private repairAt = 0;
  /** Sealed bytes per ms. */
  private rate: number;
  private readonly maxRate: number;
  private nextSendAt = 0;
  private nextControlAt = 0;
  private settleUntil = 0;
  private lastRateCut = 0;
  private readonly minRate: number;
  private readonly excess: number[] = [];
  private readonly batch: number[] = [];
  repaired = 0;
  /** How long the first pass took, from the group's start (ms), once it is over. */
  passMs: number | undefined;
  private passStartedAt = 0;

  constructor(
    readonly groupTransferId: number,
    private readonly sealed: SealedRelease,
    private readonly sender: MulticastSender,
    sessions: readonly PushSession[],
    private readonly clock: Clock,
    options: Partial<GroupPushOptions> = {},
  ) {
    const o = { ...DEFAULT_GROUP_OPTIONS, ...options };
    this.rate = (o.startMbit * 1e6) / 8 / 1000;
    this.maxRate = (o.maxMbit * 1e6) / 8 / 1000;
    this.minRate = (Math.min(MIN_MBIT, o.maxMbit) * 1e6) / 8 / 1000;
    // The group's datagram size is the interface's: no discovery, every member gets the same.
    this.wire = new SealedChunkWire(sealed, sender, new PathMtu({ base: sender.maxDatagram, max: sender.maxDatagram }));
    this.members = sessions.map((session) => ({ session, cursor: 0, missing: 0, lastCursor: 0, lastMissing: 0, heard: false, recentLoss: [] }));
    this.sentAt = new Float64Array(sealed.totalChunks).fill(Number.NaN);
    this.timer = new WakeTimer(clock, () => this.onTimer());
    this.startedAt = clock.now();
  }

  /** Group datagrams sent so far. */
  get datagrams(): number { return this.wire.datagrams; }
  get sending(): boolean { return this.phase !== 'done'; }
  /** Devices that never heard the group, or fell behind it, and went to unicast early. */
  get unicast(): number { return this.members.filter((m) => m.session.gateOpen && !m.heard).length; }

  /** Where the group pass stands, for the console's progress lines. */
  status(): { phase: Phase; sent: number; total: number; mbit: number; unicastIds: string[] } {
    return {
      phase: this.phase, sent: this.next, total: this.sealed.totalChunks, mbit: (this.rate * 8 * 1000) / 1e6,
      unicastIds: this.members.filter((m) => m.session.gateOpen && this.phase !== 'done').map((m) => m.session.client.id),
    };
  }

  /** Sessions are started (and held); tell each device the group, then wait for them to accept. */
  start(): void {
    for (const m of this.members) this.announce(m);
    this.timer.arm(this.clock.now());
  }

  /** Everything is over (every session finished): let go of the file. */
  close(): void {
    this.timer.clear();
    if (this.phase !== 'done') this.finish();
    this.wire.close();
  }

  private announce(m: Member): void {
    const g = this.sender.group;
    m.session.say({ type: 'multicast', transferId: m.session.transferId, groupTransferId: this.groupTransferId, address: g.address, port: g.port });
  }

  private onTimer(): void {
    const now = this.clock.now();
    if (this.phase === 'waiting') {
      const accepted = this.members.filter((m) => m.session.progress.phase !== 'offering').length;
      if (accepted < this.members.length && now - this.startedAt < ACCEPT_WAIT_MS) { this.timer.arm(now + 5); return; }
      this.phase = 'sending';
      this.passStartedAt = now;
      this.nextSendAt = now;
      this.nextControlAt = now + CONTROL_MS;
      // Late ones may still join: tell them again (the first message may have crossed their OFFER).
      for (const m of this.members) if (m.session.progress.phase === 'offering') this.announce(m);
    }
    if (now >= this.nextControlAt && (this.phase === 'sending' || this.phase === 'settling')) {
      this.control(now);
      this.nextControlAt = now + CONTROL_MS;
    }
    if (this.phase === 'sending') this.sendSome(now, this.nextIndices(now));
    if (this.phase === 'settling' && now >= this.settleUntil) this.planRepair();
    if (this.phase === 'repairing') {
      this.sendSome(now, this.repairIndices());
      if (this.repairAt >= this.repairQueue.length) this.finish();
    }
    if (this.phase === 'done') return;
    if (this.wire.backlogged()) { this.timer.arm(now + 1); return; }
    // Ahead of the sealing: look again shortly rather than spin.
    if (this.phase === 'sending' && this.next >= this.sealed.sealedChunks) { this.timer.arm(Math.min(now + 2, this.nextControlAt)); return; }
    this.timer.arm(this.phase === 'settling' ? Math.min(this.settleUntil, this.nextControlAt) : Math.min(this.nextSendAt, this.nextControlAt));
  }

  private nextIndices(now: number): number[] {
    const batch = this.batch;
    batch.length = 0;
    const available = this.sealed.sealedChunks;
    while (batch.length < MAX_BURST && this.next < available && this.nextSendAt <= now) {
      batch.push(this.next);
      this.sentAt[this.next] = now;
      this.next++;
      this.nextSendAt += this.sealed.entryBytes / this.rate;
    }
    // Idle (waiting for sealing) earns no credit for a burst later.
    if (this.nextSendAt < now - MAX_BURST * (this.sealed.entryBytes / this.rate)) this.nextSendAt = now;
    if (this.next === this.sealed.totalChunks) {
      this.passMs = now - this.passStartedAt;
      this.phase = 'settling';
      this.settleUntil = now + this.lag();
    }
    return batch;
  }

  private repairIndices(): number[] {
    const batch = this.batch;
    batch.length = 0;
    const now = this.clock.now();
    while (batch.length < MAX_BURST && this.repairAt < this.repairQueue.length && this.nextSendAt <= now) {
      batch.push(this.repairQueue[this.repairAt++]!);
      this.nextSendAt += this.sealed.entryBytes / this.rate;
    }
    this.repaired += batch.length;
    return batch;
  }

  private sendSome(now: number, indices: readonly number[]): void {
    if (indices.length > 0) this.wire.send(this.groupTransferId, indices, now);
  }

  /** How long after a chunk went out its acknowledgement can be expected: two round trips and
   *  the receivers' ACK delay, from the median device's measured RTT. */
  private lag(): number {
    const rtts = this.members.map((m) => m.session.srtt).filter((r): r is number => r !== undefined).sort((a, b) => a - b);
    const median = rtts.length > 0 ? rtts[Math.floor(rtts.length / 2)]! : 5;
    return Math.max(15, 2 * median + 10);
  }

  /** Count what each listening device lacks of what it should have; send the deaf and the
   *  stragglers to unicast; pace the group for the worst of the rest. */
  private control(now: number): void {
    const due = now - this.lag();
    let expected = this.next;
    while (expected > 0 && !(this.sentAt[expected - 1]! <= due)) expected--;
    const excess = this.excess;
    excess.length = 0;
    for (const m of this.members) {
      if (m.session.gateOpen) continue;
      for (; m.cursor < expected; m.cursor++) if (!m.session.isAcked(m.cursor)) m.missing++;
      if (!m.heard && m.cursor - m.missing > 0) m.heard = true;
      if (m.session.progress.phase === 'offering') continue;
      if (!m.heard && expected >= DEAF_AFTER_CHUNKS) { m.session.openGate(); continue; }
      if (m.heard && m.cursor >= DEAF_AFTER_CHUNKS && m.missing / m.cursor > STRAGGLER_LOSS) { m.session.openGate(); continue; }
      const span = m.cursor - m.lastCursor;
      if (span >= 8) {
        const loss = (m.missing - m.lastMissing) / span;
        m.recentLoss.push(loss);
        if (m.recentLoss.length > BASELINE_STEPS) m.recentLoss.shift();
        excess.push(loss - Math.min(...m.recentLoss));
        m.lastCursor = m.cursor;
        m.lastMissing = m.missing;
      }
    }
    if (excess.length === 0 || this.phase !== 'sending') return;
    excess.sort((a, b) => a - b);
    const deciding = excess[Math.floor(PACE_PERCENTILE * (excess.length - 1))]!;
    if (deciding > LOSS_HIGH) {
      // At most one cut per lag: the losses of one overshoot arrive over a round trip.
      if (now - this.lastRateCut > this.lag()) {
        this.rate = Math.max(this.minRate, this.rate * 0.7);
        this.lastRateCut = now;
      }
    } else if (deciding < LOSS_LOW) {
      this.rate = Math.min(this.maxRate, this.rate * 1.08);
    }
  }

  /** Chunks many listening devices missed go to the group again, once. */
  private planRepair(): void {
    const listening = this.members.filter((m) => !m.session.gateOpen && m.heard);
    const threshold = Math.max(2, Math.ceil(REPAIR_SHARE * listening.length));
    this.repairQueue = [];
    if (listening.length >= 2) {
      for (let i = 0; i < this.sealed.totalChunks; i++) {
        let missing = 0;
        for (const m of listening) if (!m.session.isAcked(i)) missing++;
        if (missing >= threshold) this.repairQueue.push(i);
      }
    }
    this.repairAt = 0;
    this.phase = 'repairing';
    this.nextSendAt = Math.max(this.nextSendAt, this.clock.now());
  }

  /** The group is done: every device gets the rest from its own session. */
  private finish(): void {
    this.phase = 'done';
    this.timer.clear();
    for (const m of this.members) m.session.openGate();
  }
}
