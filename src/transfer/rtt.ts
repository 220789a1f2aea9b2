/**
 * Retransmission timeout from measured round trips, RFC 6298. Pure: the caller supplies samples
 * (already filtered by Karn's rule: never from a retransmitted chunk) and asks for backoff.
 */
export interface RttOptions {
  /** RTO before any sample (RFC 6298 §2.1 says 1 s; our peers are LAN/WAN devices and the first
   *  exchange is a one-datagram OFFER, so a lost OFFER costs half of that). */
  readonly initialRtoMs: number;
  /** Floor (RFC 6298 §2.4 suggests 1 s for the Internet; Linux uses 200 ms). The receiver acks at
   *  least every ACK_DELAY_MS, so a floor well above that never fires on a healthy link. */
  readonly minRtoMs: number;
  /** Ceiling for backoff (§2.5 allows ≥ 60 s). Low enough that the default 10 s peer timeout
   *  still sees several tries at the ceiling before it gives up. */
  readonly maxRtoMs: number;
  /** Clock granularity G of §2: our timers tick in milliseconds. */
  readonly granularityMs: number;
}

export const DEFAULT_RTT_OPTIONS: RttOptions = {
  initialRtoMs: 500,
  minRtoMs: 40,
  maxRtoMs: 2000,
  granularityMs: 1,
};

const ALPHA = 1 / 8; // RFC 6298 §2.3
const BETA = 1 / 4;
const K = 4;

export class RttEstimator {
  private srttMs: number | undefined;
  private rttvarMs = 0;
  private rtoMs: number;

  constructor(private readonly options: RttOptions = DEFAULT_RTT_OPTIONS) {
    this.rtoMs = options.initialRtoMs;
  }

  get rto(): number { return this.rtoMs; }
  get srtt(): number | undefined { return this.srttMs; }

  /** Feed one round-trip measurement (ms). */
  sample(rttMs: number): void {
    const r = Math.max(0, rttMs);
    if (this.srttMs === undefined) {
      // §2.2: first measurement.
      this.srttMs = r;
      this.rttvarMs = r / 2;
    } else {
      // §2.3: RTTVAR first, using the old SRTT.
      this.rttvarMs = (1 - BETA) * this.rttvarMs + BETA * Math.abs(this.srttMs - r);
      this.srttMs = (1 - ALPHA) * this.srttMs + ALPHA * r;
    }
    this.rtoMs = this.clamp(this.srttMs + Math.max(this.options.granularityMs, K * this.rttvarMs));
  }

  /** New data was acknowledged: the path works again, so drop any backoff. Under heavy loss
   *  Karn's rule may yield no sample for a long time, and a backed-off RTO would stall recovery. */
  resetBackoff(): void {
    if (this.srttMs === undefined) this.rtoMs = this.options.initialRtoMs;
    else this.rtoMs = this.clamp(this.srttMs + Math.max(this.options.granularityMs, K * this.rttvarMs));
  }

  /** §5.5: the timer expired; double the RTO (bounded by the ceiling). */
  backoff(): void {
    this.rtoMs = this.clamp(this.rtoMs * 2);
  }

  private clamp(ms: number): number {
    return Math.min(this.options.maxRtoMs, Math.max(this.options.minRtoMs, ms));
  }
}
