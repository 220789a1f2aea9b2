/**
 * The sending side of one transfer (server → one client), as a pure state machine.
 *
 * It never touches a socket or a clock: every method takes `now` (ms) and returns the actions
 * the driver must perform. Phases: offering → sending → verifying → done.
 *
 * Reliability: selective acknowledgement (cumulative point + bitmap). A chunk counts as lost when
 * DUP_THRESH chunks transmitted after it have been acknowledged (the sequence form of RFC 6675's
 * DupThresh, as RACK does with time), and is retransmitted at once; a retransmission timeout
 * (RFC 6298, Karn's rule for samples) catches the tail. Congestion: AIMD on a window of chunks,
 * slow start up to ssthresh, one halving per loss episode, never more than the receiver's window.
 */
import type { AckMessage } from '../protocol/messages.js';
import { ResultCode } from '../protocol/result-codes.js';
import type { ReleaseVersion } from '../protocol/release-version.js';
import { DEFAULT_RTT_OPTIONS, RttEstimator, type RttOptions } from './rtt.js';

export interface SenderOptions {
  /** Chunks in flight at the start (TCP's IW10 scaled up: loopback and LANs absorb this at once). */
  readonly initialWindow: number;
  /** The window never drops below this, so a lossy link still makes progress every RTT. */
  readonly minWindow: number;
  /** Upper bound on chunks in flight, whatever the receiver advertises. */
  readonly maxWindow: number;
  /** Chunks transmitted after a missing one that must be acknowledged before it counts as lost. */
  readonly dupThresh: number;
  /** Give up when the peer has said nothing at all for this long. */
  readonly peerTimeoutMs: number;
  /** How many times a client that forgot the transfer (it restarted) is offered it again. */
  readonly maxReoffers: number;
  readonly rtt: RttOptions;
}

export const DEFAULT_SENDER_OPTIONS: SenderOptions = {
  initialWindow: 32,
  minWindow: 2,
  maxWindow: 8192,
  dupThresh: 3,
  peerTimeoutMs: 10_000,
  maxReoffers: 20,
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

  /** Per chunk: UNSENT | IN_FLIGHT | LOST | ACKED. */
  private readonly state: Uint8Array;
  private readonly sentAt: Float64Array;
  private readonly txSeqOf: Float64Array;
  private readonly sendCount: Uint8Array;

  /** Transmissions in order: [index, txSeq] pairs; stale entries are skipped when scanned. */
  private flightIdx: number[] = [];
  private flightTx: number[] = [];
  private flightHead = 0;
  private retransmitQueue: number[] = [];
  private retransmitHead = 0;

  private txSeq = 0;
  private maxAckedTx = 0;
  private recoveryPoint = 0;
  private nextNew = 0;
  private inFlight = 0;
  private ackedCount = 0;
  private peerCumulative = 0;
  private peerWindow: number;
  private cwnd: number;
  private ssthresh = Number.POSITIVE_INFINITY;

  private offerSentAt = 0;
  private offerSends = 0;
  private offerDeadline = 0;
  private reoffers = 0;
  private rtoDeadline: number | undefined;
  private lastHeardAt = 0;

  private retransmitsValue = 0;
  private timeoutsValue = 0;
  private outcomeValue: SendOutcome | undefined;

  constructor(readonly totalChunks: number, options: Partial<SenderOptions> = {}) {
    this.options = { ...DEFAULT_SENDER_OPTIONS, ...options };
    this.rtt = new RttEstimator(this.options.rtt);
    this.state = new Uint8Array(totalChunks);
    this.sentAt = new Float64Array(totalChunks);
    this.txSeqOf = new Float64Array(totalChunks);
    this.sendCount = new Uint8Array(totalChunks);
    this.cwnd = this.options.initialWindow;
    this.peerWindow = this.options.initialWindow;
  }

  get phase(): SenderPhase { return this.phaseValue; }
  get acked(): number { return this.ackedCount; }
  get retransmits(): number { return this.retransmitsValue; }
  /** Retransmission timeouts so far: a high count means a tail-lossy or dying link. */
  get timeouts(): number { return this.timeoutsValue; }
  get window(): number { return Math.floor(this.cwnd); }
  get srtt(): number | undefined { return this.rtt.srtt; }
  get rto(): number { return this.rtt.rto; }
  get outcome(): SendOutcome | undefined { return this.outcomeValue; }

  /** When the driver must call `onTimer` next, or undefined once done. */
  get wakeAt(): number | undefined {
    if (this.phaseValue === 'done') return undefined;
    const silence = this.lastHeardAt + this.options.peerTimeoutMs;
    if (this.phaseValue === 'offering') return Math.min(this.offerDeadline, silence);
    if (this.phaseValue === 'sending' && this.rtoDeadline !== undefined) return Math.min(this.rtoDeadline, silence);
    return silence;
  }

  start(now: number): SenderAction[] {
    this.lastHeardAt = now;
    return this.sendOffer(now);
  }

  onAck(ack: AckMessage, now: number): SenderAction[] {
    if (this.phaseValue === 'done') return [];
    // A peer that claims more than exists is lying or confused: ignore the whole ACK.
    if (ack.cumulative > this.totalChunks) return [];
    this.lastHeardAt = now;
    if (this.phaseValue === 'offering') {
      // The first ACK accepts the offer; it may already hold chunks (resume after a restart).
      if (this.offerSends === 1) this.rtt.sample(now - this.offerSentAt);
      this.phaseValue = 'sending';
    }
    this.peerWindow = Math.max(1, ack.window);

    const echo = ack.echo;
    const echoWasOutstanding = echo < this.totalChunks && this.state[echo] !== ACKED;
    let newlyAcked = 0;
    let newestTx = 0;
    const mark = (i: number): void => {
      const s = this.state[i];
      if (s === ACKED) return;
      if (s === IN_FLIGHT) this.inFlight--;
      this.state[i] = ACKED;
      this.ackedCount++;
      newlyAcked++;
      const tx = this.txSeqOf[i] ?? 0;
      if (tx > newestTx) newestTx = tx;
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
          if (i < this.totalChunks) mark(i);
        }
      }
    }

    // Karn's rule: only a chunk sent exactly once gives an unambiguous sample.
    if (echoWasOutstanding && this.state[echo] === ACKED && this.sendCount[echo] === 1) {
      this.rtt.sample(now - (this.sentAt[echo] ?? now));
    }
    if (newestTx > this.maxAckedTx) this.maxAckedTx = newestTx;

    if (newlyAcked > 0) {
      this.rtt.resetBackoff();
      this.growWindow(newlyAcked);
      // RFC 6298 §5.3: restart the timer when new data is acknowledged.
      this.rtoDeadline = now + this.rtt.rto;
    }
    this.detectLosses();

    if (this.ackedCount === this.totalChunks) {
      if (this.phaseValue === 'sending') {
        this.phaseValue = 'verifying';
        this.rtoDeadline = undefined;
      }
      return [];
    }
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
    if (now - this.lastHeardAt >= this.options.peerTimeoutMs) {
      const what = this.phaseValue === 'offering' ? 'never answered the offer'
        : this.phaseValue === 'verifying' ? 'received every chunk but never reported a result'
        : `stopped acknowledging at ${this.ackedCount}/${this.totalChunks} chunks`;
      return [this.finish({ code: ResultCode.timeout, message: `client ${what} (silent for ${Math.round(now - this.lastHeardAt)} ms)` })];
    }
    if (this.phaseValue === 'offering' && now >= this.offerDeadline) {
      this.rtt.backoff();
      return this.sendOffer(now);
    }
    if (this.phaseValue === 'sending' && this.rtoDeadline !== undefined && now >= this.rtoDeadline) {
      return this.retransmissionTimeout(now);
    }
    return [];
  }

  cancel(message: string): SenderAction[] {
    if (this.phaseValue === 'done') return [];
    return [this.finish({ code: ResultCode.cancelled, message })];
  }

  // -------------------------------------------------------------------------------------------

  private sendOffer(now: number): SenderAction[] {
    this.offerSends++;
    this.offerSentAt = now;
    this.offerDeadline = now + this.rtt.rto;
    return [{ kind: 'send-offer' }];
  }

  private finish(outcome: SendOutcome): SenderAction {
    this.phaseValue = 'done';
    this.outcomeValue = outcome;
    this.rtoDeadline = undefined;
    return { kind: 'done', outcome };
  }

  private resetForReoffer(): void {
    this.phaseValue = 'offering';
    this.offerSends = 0;
    this.state.fill(UNSENT);
    this.sendCount.fill(0);
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
  }

  private growWindow(newlyAcked: number): void {
    if (this.cwnd < this.ssthresh) this.cwnd += newlyAcked; // slow start
    else this.cwnd += newlyAcked / this.cwnd; // congestion avoidance: +1 chunk per window
    if (this.cwnd > this.options.maxWindow) this.cwnd = this.options.maxWindow;
  }

  /** Mark as lost every in-flight chunk that DUP_THRESH later transmissions have overtaken. */
  private detectLosses(): void {
    let lossEpisode = false;
    const limit = this.maxAckedTx - this.options.dupThresh;
    while (this.flightHead < this.flightIdx.length) {
      const i = this.flightIdx[this.flightHead] ?? 0;
      const tx = this.flightTx[this.flightHead] ?? 0;
      if (this.state[i] !== IN_FLIGHT || this.txSeqOf[i] !== tx) { this.flightHead++; continue; }
      if (tx > limit) break;
      this.state[i] = LOST;
      this.inFlight--;
      this.retransmitQueue.push(i);
      this.flightHead++;
      if (tx > this.recoveryPoint) lossEpisode = true;
    }
    if (lossEpisode) {
      // Multiplicative decrease, once per episode: losses among chunks sent before the
      // reaction are the same congestion event.
      this.cwnd = Math.max(this.options.minWindow, this.cwnd / 2);
      this.ssthresh = this.cwnd;
      this.recoveryPoint = this.txSeq;
    }
    this.compactFlight();
  }

  private retransmissionTimeout(now: number): SenderAction[] {
    // RFC 6298 §5.4–5.6: everything outstanding is presumed lost; back off; collapse the window.
    this.timeoutsValue++;
    // Rebuild the retransmit queue from chunk state, lowest index first, so the receiver's
    // cumulative point moves as early as possible.
    this.retransmitQueue = [];
    this.retransmitHead = 0;
    for (let i = this.peerCumulative; i < this.nextNew; i++) {
      if (this.state[i] !== ACKED) {
        this.state[i] = LOST;
        this.retransmitQueue.push(i);
      }
    }
    this.flightIdx = [];
    this.flightTx = [];
    this.flightHead = 0;
    this.ssthresh = Math.max(this.options.minWindow, this.inFlight / 2);
    this.inFlight = 0;
    this.cwnd = this.options.minWindow;
    this.recoveryPoint = this.txSeq;
    this.rtt.backoff();
    this.rtoDeadline = now + this.rtt.rto;
    return this.fill(now);
  }

  private fill(now: number): SenderAction[] {
    const actions: SenderAction[] = [];
    const limit = Math.min(Math.floor(this.cwnd), this.options.maxWindow);
    // The receiver buffers only [cumulative, cumulative + window): sending past it is waste.
    const edge = Math.min(this.totalChunks, this.peerCumulative + this.peerWindow);
    while (this.inFlight < limit) {
      let index: number | undefined;
      while (this.retransmitHead < this.retransmitQueue.length) {
        const candidate = this.retransmitQueue[this.retransmitHead++] ?? 0;
        if (this.state[candidate] === LOST) { index = candidate; break; }
      }
      if (index === undefined) {
        // Skip what the receiver already holds (a resumed prefix, or SACKed ahead of us).
        while (this.nextNew < edge && this.state[this.nextNew] === ACKED) this.nextNew++;
        if (this.nextNew >= edge) break;
        index = this.nextNew++;
      } else {
        this.retransmitsValue++;
      }
      this.transmit(index, now);
      actions.push({ kind: 'send-chunk', index });
    }
    if (this.retransmitHead > 1024 && this.retransmitHead * 2 > this.retransmitQueue.length) {
      this.retransmitQueue = this.retransmitQueue.slice(this.retransmitHead);
      this.retransmitHead = 0;
    }
    return actions;
  }

  private transmit(index: number, now: number): void {
    this.state[index] = IN_FLIGHT;
    this.inFlight++;
    this.sentAt[index] = now;
    const tx = ++this.txSeq;
    this.txSeqOf[index] = tx;
    if ((this.sendCount[index] ?? 0) < 255) this.sendCount[index] = (this.sendCount[index] ?? 0) + 1;
    this.flightIdx.push(index);
    this.flightTx.push(tx);
    // RFC 6298 §5.1: start the timer if it is not running.
    if (this.rtoDeadline === undefined) this.rtoDeadline = now + this.rtt.rto;
  }

  private compactFlight(): void {
    if (this.flightHead > 4096 && this.flightHead * 2 > this.flightIdx.length) {
      this.flightIdx = this.flightIdx.slice(this.flightHead);
      this.flightTx = this.flightTx.slice(this.flightHead);
      this.flightHead = 0;
    }
  }
}
