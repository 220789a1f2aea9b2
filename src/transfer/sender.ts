/**
 * The sending side of one transfer (server → one client), as a pure state machine.
 *
 * It never touches a socket or a clock: every method takes `now` (ms) and returns the actions
 * the driver must perform. Phases: offering → sending → verifying → done.
 *
 * Reliability: selective acknowledgement (cumulative point + bitmap). Loss detection is time-based,
 * as RACK (RFC 8985): a chunk is lost once a chunk transmitted after it has been acknowledged
 * *and* a reordering window has passed since it should have arrived (until the path has shown
 * reordering, 3 later transmissions acknowledged also suffice: DupThresh). The window is min
 * RTT / 4, widened each time the receiver reports a duplicate of a chunk we resent (a spurious
 * retransmission: the original was only late), at most one smoothed RTT; each spurious
 * retransmission is undone in the loss count the rate model sees. A retransmission timeout
 * (RFC 6298, Karn's rule for samples; F-RTO, RFC 5682, on the first) catches the tail. Rate: chunks are paced at the rate the
 * RateModel derives from measured delivery rate and round-trip time, with at most its window in
 * flight and never more than the receiver's window; and never faster than its share of
 * `--max-rate` (setRateCap), whose samples then count as app-limited (they measure the cap).
 *
 * Memory: per-chunk bookkeeping (state, send time, …) is kept for at most `trackedChunks` chunks,
 * a ring from a quarter of that below the receiver's cumulative point: everything below it is
 * acknowledged, nothing above it was sent. A session's memory is bounded by its window, not by
 * its file (a 1 GiB module in 1,400-byte chunks took 34 MB per device), so a push to many devices
 * does not grow with the module's size times the fleet's.
 */
import type { AckMessage } from '../protocol/messages.js';
import { ResultCode, type ResultCodeValue } from '../protocol/result-codes.js';
import type { ReleaseVersion } from '../protocol/release-version.js';
import { RateModel } from './rate-model.js';
import { DEFAULT_RTT_OPTIONS, RttEstimator, type RttOptions } from './rtt.js';

export interface SenderOptions {
  /** Chunks in flight before anything is measured (TCP's IW10 scaled up: LANs absorb this at once). */
  readonly initialWindow: number;
  /** The window never drops below this, so a lossy link still makes progress every RTT. */
  readonly minWindow: number;
  /** The longest burst pacing allows, in chunks: bursts overflow shallow queues (a slow device's
   *  socket buffer, a router), so the driver wakes more often instead. */
  readonly maxBurst: number;
  /** Upper bound on chunks in flight, whatever the receiver advertises. */
  readonly maxWindow: number;
  /** Until the path has shown reordering, a chunk that this many later transmissions overtook
   *  is lost at once (RFC 8985 §6.2 step 4: DupThresh, RFC 6675). */
  readonly dupThresh: number;
  /** RFC 8985 §6.2: the reordering window's step is min RTT / 4, times a multiplier that grows
   *  (doubling here) once per round with a spurious retransmission, up to this, and is never
   *  above the SRTT. */
  readonly maxReorderMultiplier: number;
  /** Loss recoveries without a spurious retransmission after which the multiplier resets
   *  (RFC 8985: 16). */
  readonly reorderResetAfter: number;
  /** Give up when the peer has said nothing at all for this long, or has acknowledged nothing new
   *  for this long while chunks are outstanding (a peer that ACKs without progress). */
  readonly peerTimeoutMs: number;
  /** How many times a client that forgot the transfer (it restarted) is offered it again. */
  readonly maxReoffers: number;
  /** Silence the driver excuses (excuseSilence: it did not run for a while, or its socket dropped
   *  datagrams, so it may not have heard the peer) counts at most this much beyond what was last
   *  really heard. */
  readonly maxExcusedMs: number;
  /** Chunks sent with the first OFFER, before the peer has accepted it (0: none). The peer reads
   *  the OFFER before them, so a file this small is all there once the offer is accepted: one
   *  round trip less, as TCP Fast Open's data in the SYN. They give no round-trip or delivery-rate
   *  sample (the peer checked the offer while they waited), and are resent once the offer has to
   *  be repeated (the peer dropped them with it, as chunks of a transfer it did not know). */
  readonly firstFlight: number;
  /** How long the first OFFER waits for its answer before it goes again (doubling each time, up to
   *  the RTO's ceiling). Unset: the RTO before any sample (500 ms). The server usually knows
   *  better: how long this device took to answer an offer before, or its session's handshake
   *  (push-session.ts, offerTimeoutFor). */
  readonly offerTimeoutMs?: number;
  /** Chunks whose state is kept at most (rounded up to a power of two; 44 bytes each): the ring
   *  starts a quarter of it below the receiver's cumulative point, so that a duplicate of a chunk
   *  that recent still shows its resend was needless, and the rest (3,072 of 4,096) exceeds a
   *  device's receive window (2,048). */
  readonly trackedChunks: number;
  readonly rtt: RttOptions;
}

export const DEFAULT_SENDER_OPTIONS: SenderOptions = {
  initialWindow: 32,
  minWindow: 4,
  maxBurst: 32,
  maxWindow: 8192,
  dupThresh: 3,
  maxReorderMultiplier: 64,
  reorderResetAfter: 16,
  peerTimeoutMs: 10_000,
  firstFlight: 0,
  maxReoffers: 20,
  maxExcusedMs: 60_000,
  trackedChunks: 4096,
  rtt: DEFAULT_RTT_OPTIONS,
};

export type SenderPhase = 'offering' | 'sending' | 'verifying' | 'done';

/** How a transfer ended, from the sender's point of view. */
export interface SendOutcome {
  /** A ResultCode: what the client reported, or timeout / cancelled decided here. */
  readonly code: number;
  readonly message: string;
  /** The version the client reports active after the transfer, when it said. */
  readonly active?: ReleaseVersion;
}

export type SenderAction =
  | { readonly kind: 'send-offer' }
  | { readonly kind: 'send-chunk'; readonly index: number }
  | { readonly kind: 'send-result-ack' }
  | { readonly kind: 'done'; readonly outcome: SendOutcome };

const UNSENT = 0;
const IN_FLIGHT = 1;
const LOST = 2;
const ACKED = 3;

export class ChunkSender {
  private phaseValue: SenderPhase = 'offering';
  private readonly options: SenderOptions;
  private readonly rtt: RttEstimator;

  /** The ring's size (a power of two; the whole file when it is smaller) and its first chunk:
   *  the arrays below hold chunk i at i & mask, for base ≤ i < base + slots (see `at`). */
  private readonly slots: number;
  private readonly mask: number;
  private base = 0;
  /** Per chunk: UNSENT | IN_FLIGHT | LOST | ACKED. */
  private readonly state: Uint8Array;
  private readonly sentAt: Float64Array;
  private readonly txSeqOf: Float64Array;
  private readonly sendCount: Uint8Array;
  /** 1 once a duplicate showed this chunk's resend was needless (counted once). */
  private readonly retransmittedSpuriously: Uint8Array;
  /** Delivery-rate bookkeeping per chunk, as of its latest transmission (BBR's P.delivered, …). */
  private readonly deliveredAtSend: Float64Array;
  private readonly deliveredTimeAtSend: Float64Array;
  private readonly firstSentAtSend: Float64Array;
  /** 1: sent while the sender was app-limited (BBR's P.is_app_limited). */
  private readonly appLimitedAtSend: Uint8Array;
  /** While the file is still being prepared and the sender ran out of chunks to send, the
   *  delivery count up to which samples are app-limited: they show how fast the chunks were
   *  prepared, not what the path carries (BBR's C.app_limited). 0: not app-limited. */
  private appLimitedUntil = 0;

  /** Transmissions in order: [index, txSeq] pairs; stale entries are skipped when scanned. */
  private flightIdx: number[] = [];
  private flightTx: number[] = [];
  private flightHead = 0;
  private retransmitQueue: number[] = [];
  private retransmitHead = 0;

  private txSeq = 0;
  /** The last transmission of the first flight (0: none): those went before the offer was accepted. */
  private firstFlightTx = 0;
  private maxAckedTx = 0;
  private nextNew = 0;
  private inFlight = 0;
  private ackedCount = 0;
  /** One past the highest chunk the receiver acknowledged (0: none yet). */
  private frontierValue = 0;
  private peerCumulative = 0;
  private peerWindow: number;
  /** Chunks that exist yet (a release still being sealed); the sender never passes this. */
  private available: number;

  private readonly model: RateModel;
  private deliveredTime = 0;
  private lastAckedSentAt = 0;
  /** Chunks acknowledged when the current round began. */
  private roundDelivered = 0;
  private lostInRound = 0;
  private nextSendAt = 0;
  private pacedWake: number | undefined;
  /** The most this transfer may send, chunks per ms (`--max-rate`'s share: rate-share.ts). */
  private rateCap = Number.POSITIVE_INFINITY;
  /** The cap held the pace below the model's at the last fill: what is sent then is measured
   *  against the cap, not the path (app-limited, as while the file is prepared). */
  private capLimited = false;
  /** After a retransmission timeout, send at most minWindow until new data is acknowledged. */
  private timeoutClamp = false;

  private offerDeadline = 0;
  private offerWaitMs: number;
  private reoffers = 0;
  private acceptedValue = false;
  private rtoDeadline: number | undefined;
  private lastHeardAt = 0;
  private lastProgressAt = 0;
  /** The driver could not hear at this time (excuseSilence). */
  private excusedAt = Number.NEGATIVE_INFINITY;

  /** RACK (RFC 8985 §6): the RTT of the most recently sent chunk acknowledged (which one that is,
   *  is maxAckedTx: transmissions are numbered, so "sent before it" is a comparison). */
  private rackRtt = 0;
  private minRtt = Number.POSITIVE_INFINITY;
  private reorderingSeen = false;
  private reorderMultiplier = 1;
  /** The multiplier grows at most once per round: a round is over when this much is acknowledged. */
  private reorderGrowthUntil = 0;
  private recoveriesWithoutSpurious = 0;
  private inRecovery = false;
  /** When the oldest overtaken chunk's reordering window ends (RACK's reorder timer). */
  private reorderDeadline: number | undefined;

  private retransmitsValue = 0;
  private timeoutsValue = 0;
  /** Timeouts since new data was last acknowledged. */
  private timeoutsInARow = 0;
  /** After a first timeout (F-RTO, RFC 5682): the last transmission before it (0: no timeout
   *  waiting to be judged). An ACK of a chunk sent once, at or before it, shows the timeout was
   *  spurious (the path stalled; nothing was lost); one of only what was sent since shows it was
   *  not. */
  private frtoBeforeTx = 0;
  /** A later timeout in a row took everything outstanding for lost, before the first was judged:
   *  found spurious, that is undone (Eifel's response, RFC 4015). */
  private presumedLost = false;
  /** Chunks resent during timeouts found spurious have transmissions (from, to]: an ACK of one may
   *  be for its late original, so it does not move RACK (as Karn's rule keeps it from the RTT). */
  private ambiguousFromTx = 0;
  private ambiguousToTx = 0;
  /** The last timeout found spurious: when its first ACK came, and the chunks sent before it
   *  (transmissions up to stallBeforeTx). What the stall held on its way to the peer is
   *  acknowledged a round trip after what it held on its way back: RACK waits for that. */
  private stallAckedAt = Number.NEGATIVE_INFINITY;
  private stallBeforeTx = 0;
  private spuriousTimeoutsValue = 0;
  private spuriousValue = 0;
  private outcomeValue: SendOutcome | undefined;

  constructor(readonly totalChunks: number, options: Partial<SenderOptions> = {}) {
    this.options = { ...DEFAULT_SENDER_OPTIONS, ...options };
    this.rtt = new RttEstimator(this.options.rtt);
    let slots = 1;
    while (slots < Math.min(totalChunks, this.options.trackedChunks)) slots *= 2;
    this.slots = slots;
    this.mask = slots - 1;
    this.state = new Uint8Array(slots);
    this.sentAt = new Float64Array(slots);
    this.txSeqOf = new Float64Array(slots);
    this.sendCount = new Uint8Array(slots);
    this.retransmittedSpuriously = new Uint8Array(slots);
    this.deliveredAtSend = new Float64Array(slots);
    this.appLimitedAtSend = new Uint8Array(slots);
    this.deliveredTimeAtSend = new Float64Array(slots);
    this.firstSentAtSend = new Float64Array(slots);
    this.peerWindow = this.options.initialWindow;
    this.offerWaitMs = this.options.offerTimeoutMs ?? this.rtt.rto;
    this.available = totalChunks;
    this.model = new RateModel({
      initialWindow: this.options.initialWindow,
      minWindow: this.options.minWindow,
      maxWindow: this.options.maxWindow,
      // Two ACKs' worth: the receiver acknowledges every 16 chunks.
      ackAllowance: 32,
      minRate: 0.01,
    });
  }

  get phase(): SenderPhase { return this.phaseValue; }
  get acked(): number { return this.ackedCount; }
  /** One past the highest chunk the receiver has acknowledged (0: none). */
  get frontier(): number { return this.frontierValue; }
  /** The first chunk the receiver cannot hold yet (its in-order point plus its window). */
  get receiveEdge(): number { return this.peerCumulative + this.peerWindow; }
  get retransmits(): number { return this.retransmitsValue; }
  /** Timeouts (a first one, and any in a row after it) that turned out spurious: ACKs came for
   *  chunks sent before them, never resent. */
  get spuriousTimeouts(): number { return this.spuriousTimeoutsValue; }
  /** Retransmission timeouts so far: a high count means a tail-lossy or dying link. */
  get timeouts(): number { return this.timeoutsValue; }
  get window(): number { return this.currentWindow(); }
  /** Estimated bottleneck bandwidth in chunks per ms (0 until measured). */
  get bandwidth(): number { return this.model.bandwidth; }
  get srtt(): number | undefined { return this.rtt.srtt; }
  get rto(): number { return this.rtt.rto; }
  get outcome(): SendOutcome | undefined { return this.outcomeValue; }
  /** Chunks whose state is kept: the file's, up to `trackedChunks`. */
  get trackedChunks(): number { return this.slots; }
  /** Retransmissions the receiver then reported it already had (reordering, not loss). */
  get spuriousRetransmits(): number { return this.spuriousValue; }
  isAcked(index: number): boolean { return this.stateOf(index) === ACKED; }
  /** When the peer last said anything about this transfer (an ACK, a RESULT, an ABORT). */
  get heardAt(): number { return this.lastHeardAt; }

  /**
   * The driver may not have heard the peer until `now` (it did not run for a while, or its socket
   * dropped datagrams unread: the server short of CPU): the peer's silence so far may be the
   * driver's deafness, so the peer timeout counts afresh from here (at most maxExcusedMs past
   * what was really heard: a peer that is gone is still given up on while the driver stays
   * overloaded).
   */
  excuseSilence(now: number): void {
    if (now > this.excusedAt) this.excusedAt = now;
  }

  /** Since when a silence (or a lack of progress) that began at `since` counts, excuses applied. */
  private countsFrom(since: number): number {
    return Math.max(since, Math.min(this.excusedAt, since + this.options.maxExcusedMs));
  }

  /** When the driver must call `onTimer` next, or undefined once done. */
  get wakeAt(): number | undefined {
    if (this.phaseValue === 'done') return undefined;
    const silence = this.countsFrom(this.lastHeardAt) + this.options.peerTimeoutMs;
    if (this.phaseValue === 'offering') return Math.min(this.offerDeadline, silence);
    if (this.phaseValue === 'sending') {
      let at = Math.min(silence, this.countsFrom(this.lastProgressAt) + this.options.peerTimeoutMs);
      if (this.rtoDeadline !== undefined && this.rtoDeadline < at) at = this.rtoDeadline;
      if (this.pacedWake !== undefined && this.pacedWake < at) at = this.pacedWake;
      if (this.reorderDeadline !== undefined && this.reorderDeadline < at) at = this.reorderDeadline;
      return at;
    }
    return silence;
  }

  start(now: number): SenderAction[] {
    this.lastHeardAt = now;
    const actions = this.sendOffer(now);
    const flight = Math.min(this.options.firstFlight, this.available, this.slots);
    for (let i = 0; i < flight; i++) {
      this.takeNext(i);
      this.transmit(i, now);
      actions.push({ kind: 'send-chunk', index: i });
    }
    this.firstFlightTx = this.txSeq;
    return actions;
  }

  /** The peer has answered the offer (an ACK came): it accepted the transfer. */
  get accepted(): boolean { return this.acceptedValue; }

  /** How fast it would send now uncapped, chunks per ms: 0 with nothing it may send (offering,
   *  waiting for the file, for the receiver's window, for the last ACKs or the verdict). */
  wantedRate(now: number): number {
    if (this.phaseValue !== 'sending' || this.nextToSend(this.sendEdge()) === undefined) return 0;
    return this.model.pacingRate(now, this.rtt.srtt);
  }

  /** Send at most `chunksPerMs` from now on (Infinity: no cap). A higher cap takes effect at once. */
  setRateCap(chunksPerMs: number, now: number): SenderAction[] {
    const raised = chunksPerMs > this.rateCap;
    this.rateCap = chunksPerMs;
    if (!raised || this.phaseValue !== 'sending') return [];
    // The next send was scheduled at the old cap's pace: bring it forward.
    this.nextSendAt = Math.min(this.nextSendAt, now);
    return this.fill(now);
  }

  onAck(ack: AckMessage, now: number): SenderAction[] {
    if (this.phaseValue === 'done') return [];
    // A peer that claims more than exists is lying or confused: ignore the whole ACK.
    if (ack.cumulative > this.totalChunks) return [];
    this.lastHeardAt = now;
    if (this.phaseValue === 'offering') {
      // The first ACK accepts the offer; it may already hold chunks (resume after a restart).
      // No RTT sample from it: the client verified a signature and opened files in between,
      // which would make startup pace as if the path were that slow.
      this.phaseValue = 'sending';
      this.acceptedValue = true;
      this.lastProgressAt = now;
      // The first flight's retransmission timer runs from here: the peer's check of the offer,
      // however long, is not a round trip.
      this.rtoDeadline = this.inFlight > 0 ? now + this.rtt.rto : undefined;
      // Delivery-rate intervals are measured from here (BBR initialises both to "now").
      this.deliveredTime = now;
      this.lastAckedSentAt = now;
      this.nextSendAt = now;
    }
    this.peerWindow = Math.max(1, ack.window);

    const echo = ack.echo;
    const echoWasOutstanding = echo < this.totalChunks && this.stateOf(echo) !== ACKED;
    // The receiver ACKs a duplicate at once, echoing it. A duplicate of a chunk we resent means
    // the resend was needless: the original was late, not lost (DSACK's signal, RFC 2883). (A
    // chunk the ring no longer holds, a quarter of the ring behind, is not judged.)
    if (echo < this.totalChunks && !echoWasOutstanding && this.holds(echo) && (this.sendCount[this.at(echo)] ?? 0) > 1 && this.retransmittedSpuriously[this.at(echo)] === 0) {
      this.retransmittedSpuriously[this.at(echo)] = 1;
      this.onSpuriousRetransmission();
    }
    const rackBefore = this.maxAckedTx;
    let newlyAcked = 0;
    let newestTx = 0;
    let newest = -1;
    // The newest of those sent once, and whether one sent before a timeout waiting to be judged;
    // the newest whose ACK is not ambiguous (resent during a spurious timeout).
    let newestOnceTx = 0;
    let newestOnce = -1;
    let lateOriginal = false;
    let newestClearTx = 0;
    let newestClear = -1;
    const mark = (i: number): void => {
      const s = this.stateOf(i);
      if (s === ACKED) return;
      this.ackedCount++;
      newlyAcked++;
      if (i >= this.frontierValue) this.frontierValue = i + 1;
      // Beyond the ring: never sent (the receiver had it from elsewhere: a resume, the group).
      if (!this.holds(i)) return;
      const k = this.at(i);
      if (s === IN_FLIGHT) this.inFlight--;
      this.state[k] = ACKED;
      const tx = this.txSeqOf[k] ?? 0;
      // RFC 8985 §6.2 step 2: a chunk sent once, acknowledged after one sent later was: reordering.
      if (tx < rackBefore && this.sendCount[k] === 1) this.reorderingSeen = true;
      if (tx > newestTx) { newestTx = tx; newest = i; }
      if (this.sendCount[k] === 1) {
        if (tx > newestOnceTx) { newestOnceTx = tx; newestOnce = i; }
        if (tx <= this.frtoBeforeTx) lateOriginal = true;
      }
      const ambiguous = (this.sendCount[k] ?? 0) > 1 && tx > this.ambiguousFromTx && tx <= this.ambiguousToTx;
      if (tx > newestClearTx && !ambiguous) { newestClearTx = tx; newestClear = i; }
    };
    if (ack.cumulative > this.peerCumulative) {
      for (let i = this.peerCumulative; i < ack.cumulative; i++) mark(i);
      this.peerCumulative = ack.cumulative;
    }
    const base = ack.cumulative + 1;
    for (let byte = 0; byte < ack.sack.length; byte++) {
      const bits = ack.sack[byte] ?? 0;
      if (bits === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        if (bits & (0x80 >> bit)) {
          const i = base + byte * 8 + bit;
          // Past the ring nothing was sent (and the receiver's window is smaller): a claim there
          // is not counted now; the next ACK repeats it once the ring has moved.
          if (i < this.totalChunks && i < this.base + this.slots) mark(i);
        }
      }
    }

    // Karn's rule: only a chunk sent exactly once gives an unambiguous sample (and none sent
    // with the offer: its time includes the peer's check of the offer).
    if (echoWasOutstanding && this.stateOf(echo) === ACKED && this.holds(echo) && this.sendCount[this.at(echo)] === 1 && (this.txSeqOf[this.at(echo)] ?? 0) > this.firstFlightTx) {
      this.sampleRtt(now - (this.sentAt[this.at(echo)] ?? now), now);
    }
    // What RACK goes by (RFC 8985 §6.2 step 1: the most recently sent chunk acknowledged).
    let rackTx = newestClearTx;
    let rack = newestClear;
    const undecided = this.frtoBeforeTx > 0 && newlyAcked > 0 && newestOnce < 0 && this.nextNewChunk(this.sendEdge()) !== undefined;
    if (undecided) {
      // Only chunks resent since the timeout were acknowledged (the oldest, at the receiver the
      // gap it fills): for their late originals or for the resends, nobody can tell. F-RTO's
      // step 2: send a few new chunks (the window stays clamped) and judge by the next ACK.
      // (Nothing new to send: judged now.)
      rackTx = 0;
    } else if (this.frtoBeforeTx > 0 && newlyAcked > 0) {
      if (lateOriginal) {
        // F-RTO's verdict (RFC 5682 §3, with SACK): chunks sent before the timeout, never resent,
        // were acknowledged after it: the path stalled, nothing was lost. The chunk resent at the
        // timeout may be acknowledged here too, for its late original as likely as for the
        // resend: it must not tell RACK that everything sent before it is lost (after a 150 ms
        // stall of a relay, that resent hundreds of chunks that were only late). RACK goes by
        // chunks sent once, here and, for those resent during the timeouts, from now on.
        this.spuriousTimeoutsValue++;
        this.stallAckedAt = now;
        this.stallBeforeTx = this.frtoBeforeTx;
        rackTx = newestOnceTx;
        rack = newestOnce;
        this.ambiguousFromTx = this.frtoBeforeTx;
        this.ambiguousToTx = this.txSeq;
        if (this.presumedLost) this.undoPresumedLoss();
      } else {
        // Not spurious: the resend's ACK is the news (a tail lost whole).
        rackTx = newestTx;
        rack = newest;
      }
      this.frtoBeforeTx = 0;
      this.presumedLost = false;
    }
    // RFC 8985 §6.2 step 1: an ACK that comes sooner than a min RTT after a resend is for the
    // original (which was late, not lost): it says nothing about what was sent since.
    if (rackTx > this.maxAckedTx && !this.originalsAck(rack, now)) {
      this.maxAckedTx = rackTx;
      // The first flight's RTT includes the peer's check of the offer: not RACK's.
      if (rackTx > this.firstFlightTx) this.rackRtt = now - (this.sentAt[this.at(rack)] ?? now);
    }

    if (newlyAcked > 0) {
      this.lastProgressAt = now;
      this.timeoutsInARow = 0;
      this.rtt.resetBackoff();
      this.timeoutClamp = undecided;
      // A resend acknowledged sooner than a min RTT after it went was not what arrived (its
      // original was): the sample goes by the newest chunk sent once. Taken for the resend's, it
      // was a sample over 0.1 ms (after a relay stalled 100 ms: 16 × the path's rate), and it
      // made the next chunks' sampling intervals start at that moment (after a simulated stall,
      // 2.8 × the link's rate); the floods that followed lost hundreds of chunks.
      this.sampleDeliveryRate(newest >= 0 && this.originalsAck(newest, now) ? newestOnce : newest, now);
      // RFC 6298 §5.2–5.3: restart the timer when new data is acknowledged, and turn it off when
      // nothing is outstanding (the rest not sealed yet, or a multicast group sending it): a
      // timeout then would only back the timer off and clamp the window for what comes next.
      this.rtoDeadline = this.inFlight > 0 ? now + this.rtt.rto : undefined;
    }
    this.detectLosses(now);
    this.slide();

    if (this.ackedCount === this.totalChunks) {
      if (this.phaseValue === 'sending') {
        this.phaseValue = 'verifying';
        this.rtoDeadline = undefined;
      }
      return [];
    }
    if (undecided) return [...this.probeWithNew(now), ...this.fill(now)];
    return this.fill(now);
  }

  onResult(code: number, message: string, active: ReleaseVersion, now: number): SenderAction[] {
    this.lastHeardAt = now;
    if (this.phaseValue === 'done') return [{ kind: 'send-result-ack' }];
    return [{ kind: 'send-result-ack' }, this.finish({ code, message, active })];
  }

  /** The client aborted. If it no longer knows the transfer (it restarted), offer it again: it
   *  will answer with what it kept, and only the rest crosses the network. */
  onAbort(code: number, message: string, now: number): SenderAction[] {
    if (this.phaseValue === 'done') return [];
    this.lastHeardAt = now;
    if (code === ResultCode.unknownTransfer && this.phaseValue !== 'offering' && this.reoffers < this.options.maxReoffers) {
      this.reoffers++;
      this.resetForReoffer();
      return this.sendOffer(now);
    }
    if (code === ResultCode.unknownTransfer && this.phaseValue === 'offering') return [];
    return [this.finish({ code, message })];
  }

  onTimer(now: number): SenderAction[] {
    if (this.phaseValue === 'done') return [];
    if (now - this.countsFrom(this.lastHeardAt) >= this.options.peerTimeoutMs) {
      const what = this.phaseValue === 'offering' ? 'never answered the offer'
        : this.phaseValue === 'verifying' ? 'received every chunk but never reported a result'
        : `stopped acknowledging at ${this.ackedCount}/${this.totalChunks} chunks`;
      return [this.finish({ code: ResultCode.timeout, message: `client ${what} (silent for ${Math.round(now - this.lastHeardAt)} ms)` })];
    }
    if (this.phaseValue === 'sending' && now - this.countsFrom(this.lastProgressAt) >= this.options.peerTimeoutMs) {
      return [this.finish({
        code: ResultCode.timeout,
        message: `client acknowledged nothing new for ${Math.round(now - this.lastProgressAt)} ms, stuck at ${this.ackedCount}/${this.totalChunks} chunks`,
      })];
    }
    if (this.phaseValue === 'offering' && now >= this.offerDeadline) {
      this.rtt.backoff();
      this.offerWaitMs = Math.min(this.options.rtt.maxRtoMs, this.offerWaitMs * 2);
      // The first flight most likely went with the offer (its chunks are dropped by a peer that
      // does not know the transfer): resent as soon as the offer is accepted.
      for (let i = 0; i < this.nextNew; i++) {
        if (this.stateOf(i) !== IN_FLIGHT) continue;
        this.state[this.at(i)] = LOST;
        this.inFlight--;
        this.retransmitQueue.push(i);
      }
      return this.sendOffer(now);
    }
    if (this.phaseValue === 'sending') {
      if (this.rtoDeadline !== undefined && now >= this.rtoDeadline) {
        if (this.inFlight > 0) return this.retransmissionTimeout(now);
        // Nothing on the wire (what was lost waits for its pacing slot): no timeout to take.
        this.rtoDeadline = undefined;
        return this.fill(now);
      }
      if (this.reorderDeadline !== undefined && now >= this.reorderDeadline) {
        this.detectLosses(now);
        return this.fill(now);
      }
      if (this.pacedWake !== undefined && now >= this.pacedWake) return this.fill(now);
    }
    return [];
  }

  /**
   * Only the first `chunks` chunks can be sent yet (the file is still being prepared); more
   * become sendable as this grows. Preparing counts as progress for the peer timeout.
   */
  setAvailable(chunks: number, now: number): SenderAction[] {
    const n = Math.min(this.totalChunks, chunks);
    const grew = n > this.available;
    // Set before start() (it may shrink then), it only grows afterwards.
    this.available = n;
    if (!grew || this.phaseValue !== 'sending') return [];
    this.lastProgressAt = now;
    return this.fill(now);
  }

  /** Stop, with `code` as the outcome (cancelled, or why this side cannot go on: storage). */
  cancel(message: string, code: ResultCodeValue = ResultCode.cancelled): SenderAction[] {
    if (this.phaseValue === 'done') return [];
    return [this.finish({ code, message })];
  }

  // -------------------------------------------------------------------------------------------

  private sendOffer(now: number): SenderAction[] {
    this.offerDeadline = now + this.offerWaitMs;
    return [{ kind: 'send-offer' }];
  }

  private finish(outcome: SendOutcome): SenderAction {
    this.phaseValue = 'done';
    this.outcomeValue = outcome;
    this.rtoDeadline = undefined;
    this.pacedWake = undefined;
    return { kind: 'done', outcome };
  }

  private resetForReoffer(): void {
    this.phaseValue = 'offering';
    this.state.fill(UNSENT);
    this.sendCount.fill(0);
    this.retransmittedSpuriously.fill(0);
    this.base = 0;
    this.reorderDeadline = undefined;
    this.timeoutsInARow = 0;
    this.frtoBeforeTx = 0;
    this.presumedLost = false;
    this.maxAckedTx = 0;
    this.flightIdx = [];
    this.flightTx = [];
    this.flightHead = 0;
    this.retransmitQueue = [];
    this.retransmitHead = 0;
    this.nextNew = 0;
    this.inFlight = 0;
    this.ackedCount = 0;
    this.peerCumulative = 0;
    this.rtoDeadline = undefined;
    this.pacedWake = undefined;
    // Delivery counts restart from zero; the rate model keeps what it learnt about the path.
    this.roundDelivered = 0;
    this.appLimitedUntil = 0;
    this.lostInRound = 0;
  }

  private sampleRtt(rttMs: number, now: number): void {
    this.rtt.sample(rttMs);
    if (rttMs < this.minRtt) this.minRtt = rttMs;
    this.model.onRttSample(rttMs, now);
  }

  /**
   * BBR's delivery-rate sample from the most recently sent chunk this ACK covers: chunks
   * delivered since it was sent, over the longer of the send and ACK intervals (the longer one
   * guards against ACK compression inflating the estimate).
   */
  private sampleDeliveryRate(newest: number, now: number): void {
    if (newest < 0) return;
    const k = this.at(newest);
    // Sent with the offer: delivered only once the peer had checked it, so no measure of the path.
    if ((this.txSeqOf[k] ?? 0) <= this.firstFlightTx) return;
    const delivered = this.ackedCount - (this.deliveredAtSend[k] ?? 0);
    const ackElapsed = now - (this.deliveredTimeAtSend[k] ?? now);
    const sendElapsed = (this.sentAt[k] ?? now) - (this.firstSentAtSend[k] ?? now);
    const interval = Math.max(ackElapsed, sendElapsed);
    this.deliveredTime = now;
    this.lastAckedSentAt = this.sentAt[k] ?? now;
    if (this.appLimitedUntil !== 0 && this.ackedCount > this.appLimitedUntil) this.appLimitedUntil = 0;
    const appLimited = this.appLimitedAtSend[k] === 1;
    if (interval > 0 && delivered > 0) this.model.onDeliveryRate(delivered / interval, appLimited);
    // A round ends when a chunk sent after the round began is acknowledged.
    if ((this.deliveredAtSend[k] ?? 0) >= this.roundDelivered) {
      this.model.onRoundEnd(now, this.lostInRound, this.ackedCount - this.roundDelivered, appLimited);
      this.roundDelivered = this.ackedCount;
      this.lostInRound = 0;
    }
  }

  private currentWindow(): number {
    return this.timeoutClamp ? this.options.minWindow : Math.min(this.model.window(), this.options.maxWindow);
  }

  /** RFC 8985 §6.2 step 4: the reordering window. */
  private reorderWindow(): number {
    if (!Number.isFinite(this.minRtt)) return 0;
    return Math.min((this.reorderMultiplier * this.minRtt) / 4, this.rtt.srtt ?? this.minRtt);
  }

  /**
   * RACK (RFC 8985 §6.2 step 5): every in-flight chunk transmitted before the most recently sent
   * chunk acknowledged is lost once its reordering window has passed: now ≥ its send time +
   * RACK.rtt + window. While the path has shown no reordering, one that DupThresh later
   * transmissions overtook is lost at once (the window is zero then, step 4). Those whose window
   * is still open set the reorder timer. Transmissions are scanned oldest first, and both tests
   * only get easier for older ones, so the first one still waiting ends the scan.
   */
  private detectLosses(now: number): void {
    this.reorderDeadline = undefined;
    const window = this.reorderWindow();
    let lostAny = false;
    while (this.flightHead < this.flightIdx.length) {
      const i = this.flightIdx[this.flightHead] ?? 0;
      const tx = this.flightTx[this.flightHead] ?? 0;
      if (this.stateOf(i) !== IN_FLIGHT || this.txSeqOf[this.at(i)] !== tx) { this.flightHead++; continue; }
      if (tx >= this.maxAckedTx) break;
      // Sent before a stall: when it ended, ACKs the stall held on their way back came at once,
      // and those of chunks it held on their way to the peer come a round trip later. Judged
      // on the ACKs alone, every chunk of the second kind sent before one of the first looked
      // lost (a 100 ms stall at 25% reordering: up to 400 of 6,000 chunks resent for nothing).
      if (tx <= this.stallBeforeTx) {
        const settled = this.stallAckedAt + (Number.isFinite(this.minRtt) ? this.minRtt : 0) + window;
        if (now < settled) {
          this.reorderDeadline = settled;
          break;
        }
      }
      const deadline = (this.sentAt[this.at(i)] ?? 0) + this.rackRtt + window;
      const dupThreshMet = !this.reorderingSeen && this.maxAckedTx - tx >= this.options.dupThresh;
      if (!dupThreshMet && now < deadline) {
        this.reorderDeadline = deadline;
        break;
      }
      // Loss alone does not slow us down: the rate model follows what is actually delivered.
      this.state[this.at(i)] = LOST;
      this.inFlight--;
      this.lostInRound++;
      this.retransmitQueue.push(i);
      this.flightHead++;
      lostAny = true;
    }
    if (lostAny && !this.inRecovery) {
      this.inRecovery = true;
      // RFC 8985 §6.2 step 4: after 16 recoveries without a spurious retransmission, the
      // reordering that widened the window is taken to be over.
      if (++this.recoveriesWithoutSpurious >= this.options.reorderResetAfter) {
        this.reorderMultiplier = 1;
        this.recoveriesWithoutSpurious = 0;
      }
    } else if (!lostAny && this.retransmitHead >= this.retransmitQueue.length) {
      this.inRecovery = false;
    }
    this.compactFlight();
  }

  /**
   * A resend turned out needless. Widen the reordering window (once per round: RFC 8985
   * §6.2 step 4), and undo the loss the rate model was told of: it was reordering, and a path
   * that reorders is not a path that loses.
   */
  private onSpuriousRetransmission(): void {
    this.spuriousValue++;
    this.reorderingSeen = true;
    this.recoveriesWithoutSpurious = 0;
    if (this.lostInRound > 0) this.lostInRound--;
    if (this.ackedCount >= this.reorderGrowthUntil) {
      // Doubled, not RFC 8985's +1: a host that stalls (a busy 2-core machine, a starved relay)
      // reorders by tens of RTTs/4 at once, and +1 a round left hundreds of resends behind it.
      // The window stays below one SRTT whatever the multiplier.
      this.reorderMultiplier = Math.min(this.options.maxReorderMultiplier, this.reorderMultiplier * 2);
      this.reorderGrowthUntil = this.ackedCount + Math.max(1, this.inFlight);
    }
  }

  private retransmissionTimeout(now: number): SenderAction[] {
    this.timeoutsValue++;
    // RFC 6298 §5.5–5.6: back off; collapse the window until new data is acknowledged.
    this.timeoutClamp = true;
    this.rtt.backoff();
    this.rtoDeadline = now + this.rtt.rto;
    if (++this.timeoutsInARow === 1) {
      this.frtoBeforeTx = this.txSeq;
      // F-RTO (RFC 5682): a first timeout resends only the oldest unacknowledged chunk. On a busy
      // host (or path) an ACK can be late by more than the RTO without anything being lost;
      // ACKs then resume for chunks never resent, and nothing else was sent twice. If they do
      // not, the next timeout treats everything outstanding as lost. It goes now, whatever the
      // window (RFC 6298 §5.4: the earliest outstanding chunk is retransmitted at once).
      const probe: SenderAction[] = [];
      for (let i = this.peerCumulative; i < this.nextNew; i++) {
        const s = this.stateOf(i);
        if (s === ACKED) continue;
        if (s === IN_FLIGHT) {
          this.inFlight--;
          this.retransmitsValue++;
          this.transmit(i, now);
          probe.push({ kind: 'send-chunk', index: i });
        }
        break;
      }
      return [...probe, ...this.fill(now)];
    }
    this.presumedLost = this.frtoBeforeTx > 0;
    // RFC 6298 §5.4: everything outstanding is presumed lost. Rebuild the retransmit queue from
    // chunk state, lowest index first, so the receiver's cumulative point moves as early as
    // possible.
    this.retransmitQueue = [];
    this.retransmitHead = 0;
    for (let i = this.peerCumulative; i < this.nextNew; i++) {
      if (this.stateOf(i) !== ACKED) {
        this.state[this.at(i)] = LOST;
        this.retransmitQueue.push(i);
      }
    }
    this.flightIdx = [];
    this.flightTx = [];
    this.flightHead = 0;
    this.inFlight = 0;
    return this.fill(now);
  }

  /** F-RTO's step 2 (RFC 5682): two new chunks, whatever the (clamped) window: their ACKs tell
   *  a stall (chunks sent before the timeout are acknowledged too) from a loss (they are not). */
  private probeWithNew(now: number): SenderAction[] {
    const actions: SenderAction[] = [];
    const edge = this.sendEdge();
    for (let n = 0; n < 2; n++) {
      const index = this.nextNewChunk(edge);
      if (index === undefined) break;
      this.nextNew++;
      this.transmit(index, now);
      actions.push({ kind: 'send-chunk', index });
    }
    return actions;
  }

  /** Chunk `i` was resent, and acknowledged sooner than a min RTT after: the ACK is its
   *  original's, which arrived late (RFC 8985 §6.2 step 1). */
  private originalsAck(i: number, now: number): boolean {
    const k = this.at(i);
    return (this.sendCount[k] ?? 0) > 1 && now - (this.sentAt[k] ?? now) < this.minRtt;
  }

  /** One past the last chunk that may be sent: the receiver buffers only [cumulative, cumulative +
   *  window), sending past it is waste; and what exists yet, and what the ring holds. */
  private sendEdge(): number {
    return Math.min(this.available, this.peerCumulative + this.peerWindow, this.base + this.slots);
  }

  /**
   * Timeouts in a row took every outstanding chunk for lost, and chunks sent before the first of
   * them turned out only late. Those sent once before it and not resent yet are in flight again,
   * in their order, for RACK to judge as any other (what was really lost among them is found
   * so); only the few resent since the timeouts (the window is clamped meanwhile) went twice.
   */
  private undoPresumedLoss(): void {
    const back: number[] = [];
    for (let i = this.peerCumulative; i < this.nextNew; i++) {
      const k = this.at(i);
      if (this.stateOf(i) === LOST && this.sendCount[k] === 1 && (this.txSeqOf[k] ?? 0) <= this.frtoBeforeTx) back.push(i);
    }
    back.sort((a, b) => (this.txSeqOf[this.at(a)] ?? 0) - (this.txSeqOf[this.at(b)] ?? 0));
    for (const i of back) {
      this.state[this.at(i)] = IN_FLIGHT;
      this.inFlight++;
    }
    // Sent before anything now in the flight list (all of it went after the timeouts).
    this.flightIdx = [...back, ...this.flightIdx.slice(this.flightHead)];
    this.flightTx = [...back.map((i) => this.txSeqOf[this.at(i)] ?? 0), ...this.flightTx.slice(this.flightHead)];
    this.flightHead = 0;
  }

  private fill(now: number): SenderAction[] {
    const actions: SenderAction[] = [];
    this.pacedWake = undefined;
    const limit = this.currentWindow();
    const modelRate = this.model.pacingRate(now, this.rtt.srtt);
    this.capLimited = this.rateCap < modelRate;
    const interval = 1 / (this.capLimited ? this.rateCap : modelRate);
    // No credit for idle time beyond one burst: a paused sender must not flood afterwards. Under
    // a cap, no more than 2 ms of it: a slow uplink's shallow queue is what a cap is for.
    const burst = this.capLimited ? Math.min(this.options.maxBurst, Math.max(1, Math.ceil(2 * this.rateCap))) : this.options.maxBurst;
    const earliest = now - burst * interval;
    if (this.nextSendAt < earliest) this.nextSendAt = earliest;
    const edge = this.sendEdge();
    while (this.inFlight < limit) {
      const index = this.nextToSend(edge);
      if (index === undefined) break;
      if (this.nextSendAt > now) {
        this.pacedWake = this.nextSendAt;
        break;
      }
      this.takeNext(index);
      this.transmit(index, now);
      this.nextSendAt += interval;
      actions.push({ kind: 'send-chunk', index });
    }
    // Room to send, and nothing but chunks not prepared yet to send: what this sends now is
    // measured against the preparation, not the path.
    if (this.inFlight < limit && this.pacedWake === undefined && this.available < this.totalChunks && edge === this.available && this.nextToSend(edge) === undefined) {
      this.appLimitedUntil = Math.max(1, this.ackedCount + this.inFlight);
    }
    if (this.retransmitHead > 1024 && this.retransmitHead * 2 > this.retransmitQueue.length) {
      this.retransmitQueue = this.retransmitQueue.slice(this.retransmitHead);
      this.retransmitHead = 0;
    }
    return actions;
  }

  /** The chunk to send next (a lost one first, lowest index first), without taking it. */
  private nextToSend(edge: number): number | undefined {
    while (this.retransmitHead < this.retransmitQueue.length) {
      const candidate = this.retransmitQueue[this.retransmitHead] ?? 0;
      if (this.stateOf(candidate) === LOST) return candidate;
      this.retransmitHead++;
    }
    return this.nextNewChunk(edge);
  }

  /** The next chunk never sent below `edge`, skipping what the receiver already holds (a resumed
   *  prefix, or SACKed ahead of us). */
  private nextNewChunk(edge: number): number | undefined {
    while (this.nextNew < edge && this.stateOf(this.nextNew) === ACKED) this.nextNew++;
    return this.nextNew < edge ? this.nextNew : undefined;
  }

  private takeNext(index: number): void {
    if (this.retransmitHead < this.retransmitQueue.length && this.retransmitQueue[this.retransmitHead] === index) {
      this.retransmitHead++;
      this.retransmitsValue++;
    } else {
      this.nextNew++;
    }
  }

  private transmit(index: number, now: number): void {
    const k = this.at(index);
    this.state[k] = IN_FLIGHT;
    this.inFlight++;
    this.sentAt[k] = now;
    this.deliveredAtSend[k] = this.ackedCount;
    this.appLimitedAtSend[k] = this.appLimitedUntil !== 0 || this.capLimited ? 1 : 0;
    this.deliveredTimeAtSend[k] = this.deliveredTime;
    // With nothing in flight the send interval starts now (BBR's first_sent_time).
    this.firstSentAtSend[k] = this.inFlight === 1 ? now : this.lastAckedSentAt;
    const tx = ++this.txSeq;
    this.txSeqOf[k] = tx;
    if ((this.sendCount[k] ?? 0) < 255) this.sendCount[k] = (this.sendCount[k] ?? 0) + 1;
    this.flightIdx.push(index);
    this.flightTx.push(tx);
    // RFC 6298 §5.1: start the timer if it is not running.
    if (this.rtoDeadline === undefined) this.rtoDeadline = now + this.rtt.rto;
  }

  /** Where chunk `index` is kept; only for a chunk the ring holds (`holds`). */
  private at(index: number): number { return index & this.mask; }

  private holds(index: number): boolean { return index >= this.base && index < this.base + this.slots; }

  private stateOf(index: number): number {
    if (index < this.peerCumulative) return ACKED;
    return index < this.base + this.slots ? this.state[index & this.mask] ?? UNSENT : UNSENT;
  }

  /** Move the ring up behind the receiver's cumulative point (a quarter of it below); the places
   *  of the chunks it leaves are cleared for those it takes in (none of which was sent). */
  private slide(): void {
    const to = Math.max(this.base, Math.min(this.peerCumulative - (this.slots >> 2), this.totalChunks - this.slots));
    if (to <= this.base) return;
    const from = Math.max(this.base + this.slots, to);
    for (let i = from; i < to + this.slots; i++) {
      const k = i & this.mask;
      this.state[k] = UNSENT;
      this.sendCount[k] = 0;
      this.retransmittedSpuriously[k] = 0;
    }
    this.base = to;
  }

  private compactFlight(): void {
    if (this.flightHead > 4096 && this.flightHead * 2 > this.flightIdx.length) {
      this.flightIdx = this.flightIdx.slice(this.flightHead);
      this.flightTx = this.flightTx.slice(this.flightHead);
      this.flightHead = 0;
    }
  }
}
