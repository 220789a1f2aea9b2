/**
 * A push to several devices on one LAN through a multicast group: the release's sealed chunks go
 * once to the group, paced at the rate the slowest healthy device keeps up with, while each
 * device's own session (a PushSession held back by holdForGroup) receives its ACKs. Then:
 *
 *   - chunks that many devices missed go to the group once more;
 *   - every session's gate opens, and each sends its device only what that device still lacks
 *     (unicast repair, with the session's own loss recovery and pacing);
 *   - a device that hears nothing from the group (a router or firewall in the way) has its gate
 *     opened within a few hundred milliseconds and gets everything by unicast; so does a
 *     straggler that misses most of what the group sends, so that it does not slow the others
 *     down. Either is told to leave the group (MULTICAST_LEAVE). A device that will not join, or
 *     could not, says so with the same message, and its gate opens at once (PushSession).
 *
 * Nothing about verification changes: the chunks are the ones every session would send, sealed
 * under the release's content key, which each device got in its session.
 */
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';
import { SealedChunkWire } from '../files/sealed-chunk-wire.js';
import type { MulticastSender } from '../net/multicast.js';
import { GROUP_BATCH_MS } from '../net/datagram-batch.js';
import { GroupPace, type HandOver, type MemberView } from '../transfer/group-pace.js';
import { PathMtu } from '../transfer/path-mtu.js';
import { DEFAULT_RECEIVER_OPTIONS } from '../transfer/receiver.js';
import type { RateSharer, SharedRate } from '../transfer/rate-share.js';
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
/** The pace never drops below this (Mbit/s): standing loss is repaired, not waited out. */
const MIN_MBIT = 20;
/** Chunks one wake may send at most (bursts overflow switch and socket queues). */
const MAX_BURST = 16;
/** A chunk missed by at least this share of the listening devices (and two) goes to the group again. */
const REPAIR_SHARE = 0.25;

export type Phase = 'waiting' | 'sending' | 'settling' | 'repairing' | 'done';

export class GroupPush implements RateSharer {
  private readonly wire: SealedChunkWire;
  private readonly sessions: readonly PushSession[];
  private readonly pace: GroupPace;
  private readonly views: MemberView[];
  private readonly timer: WakeTimer;
  private phase: Phase = 'waiting';
  private readonly startedAt: number;
  /** When each chunk first went to the group (NaN: not yet). */
  private readonly sentAt: Float64Array;
  private next = 0;
  private repairQueue: number[] = [];
  private repairAt = 0;
  private nextSendAt = 0;
  private nextControlAt = 0;
  private settleUntil = 0;
  private readonly batch: number[] = [];
  repaired = 0;
  /** How long the first pass took, from the group's start (ms), once it is over. */
  passMs: number | undefined;
  private passStartedAt = 0;
  /** Its share of `--max-rate` (bytes per ms; Infinity: none), and how to give it up. */
  private rateCap = Number.POSITIVE_INFINITY;
  private leaveShare: (() => void) | undefined;

  constructor(
    readonly groupTransferId: number,
    private readonly sealed: SealedRelease,
    private readonly sender: MulticastSender,
    sessions: readonly PushSession[],
    private readonly clock: Clock,
    options: Partial<GroupPushOptions> = {},
    /** Every member takes PIECE frames: chunks larger than the group's datagrams go in pieces. */
    pieces = false,
    /** `--max-rate`, shared with the server's other transfers: the group counts once. */
    private readonly shared?: SharedRate,
  ) {
    const o = { ...DEFAULT_GROUP_OPTIONS, ...options };
    const perMs = (mbit: number): number => (mbit * 1e6) / 8 / 1000;
    this.pace = new GroupPace(sessions.length, perMs(o.startMbit), perMs(Math.min(MIN_MBIT, o.maxMbit)), perMs(o.maxMbit));
    // The group's datagram size is the interface's: no discovery, every member gets the same.
    // Chunks larger than that (`--multicast-datagram 1472`: fragments do not get through) go in
    // pieces, one datagram each, when every member takes them.
    this.wire = new SealedChunkWire(sealed, sender, new PathMtu({ base: sender.maxDatagram, max: sender.maxDatagram }), pieces);
    this.sessions = sessions;
    this.views = sessions.map((session) => ({
      get accepted() { return session.progress.phase !== 'offering'; },
      get released() { return session.gateOpen; },
      isAcked: (i: number) => session.isAcked(i),
      get acked() { return session.ackedCount; },
      get frontier() { return session.frontier; },
      get receiveEdge() { return session.receiveEdge; },
      get heardAt() { return session.heardAt; },
    }));
    this.sentAt = new Float64Array(sealed.totalChunks).fill(Number.NaN);
    this.timer = new WakeTimer(clock, () => this.onTimer());
    this.startedAt = clock.now();
  }

  /** Group datagrams sent so far. */
  get datagrams(): number { return this.wire.datagrams; }
  /** The devices that went to unicast before the group was done, by why: the pace's reasons,
   *  and `declined` for those that said they are not in the group (MULTICAST_LEAVE from them). */
  handedOver(): Record<HandOver | 'declined', number> {
    const counts = { deaf: 0, silent: 0, behind: 0, lossy: 0, declined: 0 };
    this.sessions.forEach((s, i) => {
      const why = this.pace.handedOver(i);
      if (why) counts[why]++;
      else if (s.declinedGroup) counts.declined++;
    });
    return counts;
  }

  /** Where the group pass stands, for the console's progress lines. */
  status(): { phase: Phase; sent: number; total: number; mbit: number; unicastIds: string[] } {
    return {
      phase: this.phase, sent: this.next, total: this.sealed.totalChunks, mbit: (this.rate * 8 * 1000) / 1e6,
      unicastIds: this.sessions.filter((s) => s.gateOpen && this.phase !== 'done').map((s) => s.client.id),
    };
  }

  /** Sessions are started (and held); tell each device the group, then wait for them to accept. */
  start(): void {
    for (const s of this.sessions) this.announce(s);
    this.timer.arm(this.clock.now());
    this.leaveShare = this.shared?.join(this);
  }

  /** Its pace while it sends (a pass or repairs), else nothing. */
  wants(): number { return this.phase === 'sending' || this.phase === 'repairing' ? this.pace.rate : 0; }

  cap(bytesPerMs: number): void { this.rateCap = bytesPerMs; }

  /** A chunk a second, as a session's (nothing times the group out, but its devices wait). */
  get floor(): number { return this.sealed.entryBytes / 1000; }

  /** The pace it sends at: the devices' (GroupPace), within its share of `--max-rate`. */
  private get rate(): number { return Math.min(this.pace.rate, this.rateCap); }

  /** Everything is over (every session finished): let go of the file. */
  close(): void {
    this.timer.clear();
    if (this.phase !== 'done') this.finish();
    this.wire.close();
  }

  private announce(session: PushSession): void {
    const g = this.sender.group;
    session.say({ type: 'multicast', transferId: session.transferId, groupTransferId: this.groupTransferId, address: g.address, port: g.port });
  }

  private onTimer(): void {
    const now = this.clock.now();
    // Sealing failed (a full disk): every session fails with the reason; the group sends no more.
    if (this.sealed.failure) { this.finish(); return; }
    if (this.phase === 'waiting') {
      const accepted = this.views.filter((v) => v.accepted).length;
      if (accepted < this.sessions.length && now - this.startedAt < ACCEPT_WAIT_MS) { this.timer.arm(now + 5); return; }
      this.phase = 'sending';
      this.passStartedAt = now;
      this.nextSendAt = now;
      this.nextControlAt = now + CONTROL_MS;
      // The devices that accepted are judged from the first chunk; later ones from where the
      // group is when they accept (and are told the group again then: see control).
      this.pace.step(now, this.lag(), 0, this.views, false);
      this.pace.takeJoined();
    }
    if (now >= this.nextControlAt && (this.phase === 'sending' || this.phase === 'settling')) {
      this.control(now);
      this.nextControlAt = now + CONTROL_MS;
    }
    if (this.phase === 'sending') this.sendSome(now, this.nextIndices(now));
    if (this.phase === 'settling' && now >= this.settleUntil) this.planRepair();
    if (this.phase === 'repairing') {
      this.sendSome(now, this.repairIndices(now));
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

  private repairIndices(now: number): number[] {
    const batch = this.batch;
    batch.length = 0;
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

  /** How long after a chunk went out its acknowledgement can be expected: two round trips, the
   *  receivers' batching and delay for the group's chunks (with a margin), from the median
   *  device's measured RTT. */
  private lag(): number {
    const rtts = this.sessions.map((s) => s.srtt).filter((r): r is number => r !== undefined).sort((a, b) => a - b);
    const median = rtts.length > 0 ? rtts[Math.floor(rtts.length / 2)]! : 5;
    return 2 * median + GROUP_BATCH_MS + DEFAULT_RECEIVER_OPTIONS.groupAckDelayMs + 5;
  }

  /** Count what each listening device lacks of what it should have by now (GroupPace decides
   *  who goes to unicast, and the pace). */
  private control(now: number): void {
    const lag = this.lag();
    let expected = this.next;
    while (expected > 0 && !(this.sentAt[expected - 1]! <= now - lag)) expected--;
    for (const i of this.pace.step(now, lag, expected, this.views, this.phase === 'sending')) this.release(this.sessions[i]!);
    for (const i of this.pace.takeQuestions()) this.sessions[i]!.askWhatItHolds();
    // A device that accepted after the group began (its offer was lost or slow) is told the group
    // now, when it has the transfer to join it for: the rest of the pass reaches it too.
    for (const i of this.pace.takeJoined()) if (expected > 0) this.announce(this.sessions[i]!);
  }

  /**
   * Hand a device to unicast while the group goes on: its session sends it what it lacks, and it
   * leaves the group. Otherwise it would go on receiving the rest of the pass, every datagram a
   * wake-up and a header to read before it is dropped: a device too busy to keep up with the
   * group (one of fifty sharing a machine's cores, a gateway running its own work) is the one
   * that can least afford them.
   */
  private release(session: PushSession): void {
    session.openGate();
    session.say({ type: 'multicastLeave', transferId: session.transferId, groupTransferId: this.groupTransferId });
  }

  /** Chunks many listening devices missed go to the group again, once. */
  private planRepair(): void {
    const listening = this.sessions.filter((s, i) => !s.gateOpen && this.pace.heard(i));
    const threshold = Math.max(2, Math.ceil(REPAIR_SHARE * listening.length));
    this.repairQueue = [];
    if (listening.length >= 2) {
      for (let i = 0; i < this.sealed.totalChunks; i++) {
        let missing = 0;
        for (const s of listening) if (!s.isAcked(i)) missing++;
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
    this.leaveShare?.();
    this.leaveShare = undefined;
    for (const s of this.sessions) s.openGate();
  }
}
