/**
 * How fast to send: a delivery-rate model in the style of BBR (Cardwell et al., "BBR:
 * Congestion-Based Congestion Control", ACM Queue 2016), reduced to what a bulk chunk sender needs.
 *
 * Why not AIMD: on a link with random loss (radio, a lossy WAN), halving on every loss caps
 * throughput near 1.22/√p chunks per RTT (Mathis et al.): 12 per RTT at 1% loss. Here loss only
 * triggers retransmission; the rate follows the measured delivery rate instead, so random loss
 * costs just the lost chunks, while a slow device or a full queue still slows the sender down.
 *
 * - bottleneck bandwidth: the maximum delivery-rate sample over the last BW_WINDOW_ROUNDS rounds;
 * - min RTT: the smallest round-trip sample over the last MIN_RTT_WINDOW_MS;
 * - startup: pace at 2/ln2 × bandwidth until it stops growing by 25% for 3 rounds;
 * - then cycle the pacing gain 1.25, 0.75, 1 ×6, one phase per min RTT: probe for more, drain
 *   the queue that probe made, cruise;
 * - window (chunks in flight): 2 × bandwidth × min RTT, plus room for delayed ACKs;
 * - congestion (a round that lost over 2%, and over twice the link's usual loss, while even its
 *   smallest RTT rose a quarter above the minimum — a queue overflowing, not a lossy radio or a
 *   jittery host, which raise only some samples): leave startup, or cut a probe short, and drain;
 * - the link's usual (random) loss rate is learnt from cruise rounds (gain 1, no queueing: loss
 *   there is the medium's, not ours), and the pacing rate is divided by (1 − that rate), at most
 *   by 0.7: otherwise, at 20% loss, a 1.25× probe delivers only 1.0× and the estimate could
 *   never grow.
 * Pure: time comes in as an argument.
 */
const STARTUP_GAIN = 2 / Math.LN2;
const PROBE_GAINS = [1.25, 0.75, 1, 1, 1, 1, 1, 1];
const CWND_GAIN = 2;
const BW_WINDOW_ROUNDS = 10;
/** On loopback and LANs a round is well under a millisecond, shorter than one garbage collection
 *  or disk flush at the receiver; so the filter also keeps at least this much time, and a gain
 *  phase lasts at least PHASE_MIN_MS, or a hiccup would make the estimate forget the link. */
const BW_WINDOW_MIN_MS = 100;
const PHASE_MIN_MS = 4;
const MIN_RTT_WINDOW_MS = 10_000;
const FULL_BW_GROWTH = 1.25;
const FULL_BW_ROUNDS = 3;
const CONGESTION_LOSS_RATE = 0.02;
/** Weight of a new round in the average of the link's usual (random) loss, and the most the
 *  pacing rate compensates for. */
const LOSS_EWMA = 1 / 8;
const MAX_LOSS_COMPENSATION = 0.3;
const QUEUE_RTT_FACTOR = 1.25;
const QUEUE_RTT_MIN_MS = 1;

export interface RateModelOptions {
  /** Window before any measurement, in chunks. */
  readonly initialWindow: number;
  readonly minWindow: number;
  readonly maxWindow: number;
  /** Extra window for ACKs that arrive in batches (the receiver ACKs every N chunks). */
  readonly ackAllowance: number;
  /** Pacing-rate floor, chunks per ms: a dying link still gets probes. */
  readonly minRate: number;
}

export class RateModel {
  private bwSamples: { at: number; rate: number }[] = []; // max delivery rate per round, newest last
  private roundMax = 0;
  private minRttMs = Number.POSITIVE_INFINITY;
  private minRttAt = 0;
  private startup = true;
  private fullBw = 0;
  private fullBwRounds = 0;
  private cycleIndex = 0;
  private cycleStart = 0;
  private roundMinRtt = Number.POSITIVE_INFINITY;
  private randomLoss = 0;

  constructor(private readonly options: RateModelOptions) {}

  /** Bottleneck bandwidth estimate, chunks per ms (0 before any sample). */
  get bandwidth(): number {
    let m = this.roundMax;
    for (const s of this.bwSamples) if (s.rate > m) m = s.rate;
    return m;
  }

  onRttSample(rttMs: number, now: number): void {
    if (rttMs <= 0) rttMs = 0.01;
    if (rttMs < this.roundMinRtt) this.roundMinRtt = rttMs;
    if (rttMs <= this.minRttMs || now - this.minRttAt > MIN_RTT_WINDOW_MS) {
      this.minRttMs = rttMs;
      this.minRttAt = now;
    }
  }

  /** `appLimited`: the sender had nothing more to send (a file still being prepared), so the
   *  sample says how fast chunks came, not what the path carries: it counts only if it raises
   *  the estimate (BBR). */
  onDeliveryRate(chunksPerMs: number, appLimited = false): void {
    if (appLimited && chunksPerMs < this.bandwidth) return;
    if (chunksPerMs > this.roundMax) this.roundMax = chunksPerMs;
  }

  /** A round trip has passed (a chunk sent after the previous round's start was acknowledged);
   *  `lost` and `delivered` count chunks in that round. An app-limited round cannot show that
   *  the bandwidth stopped growing: startup goes on. */
  onRoundEnd(now: number, lost = 0, delivered = 0, appLimited = false): void {
    this.bwSamples.push({ at: now, rate: this.roundMax });
    while (this.bwSamples.length > BW_WINDOW_ROUNDS && now - (this.bwSamples[0]?.at ?? now) > BW_WINDOW_MIN_MS) this.bwSamples.shift();
    this.roundMax = 0;
    const queueing = Number.isFinite(this.roundMinRtt)
      && this.roundMinRtt > Math.max(this.minRttMs * QUEUE_RTT_FACTOR, this.minRttMs + QUEUE_RTT_MIN_MS);
    this.roundMinRtt = Number.POSITIVE_INFINITY;
    const lossRate = lost + delivered > 0 ? lost / (lost + delivered) : 0;
    const congested = queueing && lossRate > Math.max(CONGESTION_LOSS_RATE, 2 * this.randomLoss);
    if (congested && (this.startup || (PROBE_GAINS[this.cycleIndex] ?? 1) > 1)) {
      this.startup = false;
      this.cycleIndex = 1; // drain
      this.cycleStart = now;
      return;
    }
    const cruising = !this.startup && (PROBE_GAINS[this.cycleIndex] ?? 1) === 1;
    if (cruising && !queueing && lost + delivered > 0) this.randomLoss += LOSS_EWMA * (lossRate - this.randomLoss);
    if (this.startup && !appLimited) {
      const bw = this.bandwidth;
      if (bw >= this.fullBw * FULL_BW_GROWTH) {
        this.fullBw = bw;
        this.fullBwRounds = 0;
      } else if (++this.fullBwRounds >= FULL_BW_ROUNDS) {
        this.startup = false;
        this.cycleIndex = 1; // start by draining what startup queued
        this.cycleStart = now;
      }
    }
  }

  /** Pacing rate in chunks per ms. */
  pacingRate(now: number, srttMs: number | undefined): number {
    const bw = this.bandwidth;
    if (bw === 0) {
      // No sample yet: the initial window per RTT, at startup gain.
      const rtt = Math.max(1, Number.isFinite(this.minRttMs) ? this.minRttMs : srttMs ?? 1);
      return Math.max(this.options.minRate, (STARTUP_GAIN * this.options.initialWindow) / rtt);
    }
    return Math.max(this.options.minRate, (this.gain(now) * bw) / (1 - Math.min(this.randomLoss, MAX_LOSS_COMPENSATION)));
  }


  /** How many chunks may be in flight. */
  window(): number {
    const bw = this.bandwidth;
    if (bw === 0 || !Number.isFinite(this.minRttMs)) return this.options.initialWindow;
    const gain = this.startup ? STARTUP_GAIN : CWND_GAIN;
    const w = gain * bw * Math.max(this.minRttMs, 1) + this.options.ackAllowance;
    return Math.min(this.options.maxWindow, Math.max(this.options.minWindow, Math.ceil(w)));
  }

  private gain(now: number): number {
    if (this.startup) return STARTUP_GAIN;
    const phase = Math.max(this.minRttMs, PHASE_MIN_MS);
    if (now - this.cycleStart >= phase) {
      this.cycleIndex = (this.cycleIndex + 1) % PROBE_GAINS.length;
      this.cycleStart = now;
    }
    return PROBE_GAINS[this.cycleIndex] ?? 1;
  }
}
