/**
 * How big a datagram the path to one device carries: packetization-layer path MTU discovery in
 * the manner of RFC 8899 (DPLPMTUD), reduced to what a bulk sender needs. Pure: time is an
 * argument, and the driver (files/chunk-wire.ts) says what happened to each probe.
 *
 * - BASE_PLPMTU: `base`, a size that never fragments (1452: a 1500-byte MTU less IPv6 and UDP
 *   headers), confirmed from the start.
 * - MAX_PLPMTU: `max`, the local interface's MTU less headers, or `--max-datagram`.
 * - Search: probe the next size of the ladder above the confirmed one, one probe at a time. The
 *   probes carry data (§4.1: data-bearing probes), so a probe costs nothing when it arrives; it
 *   is confirmed when the device acknowledges its chunks (inside the authenticated session: an
 *   off-path attacker cannot confirm a size the path does not carry), and lost when the sender
 *   declares its chunks lost. MAX_PROBES losses of one size end the search (SEARCH_COMPLETE).
 * - Black hole (§4.3): the driver reports repeated timeouts with nothing acknowledged while
 *   sending above the base; the confirmed size falls back to the base and the search starts
 *   again below the size that failed.
 * - PMTU_RAISE_TIMER: a finished search is tried again after raiseAfterMs (the path may have
 *   grown).
 */
export interface PathMtuOptions {
  readonly base: number;
  readonly max: number;
  /** Losses of one probe size before the search stops (RFC 8899 MAX_PROBES). */
  readonly maxProbes: number;
  /** After a search completes, search again this much later (RFC 8899 PMTU_RAISE_TIMER). */
  readonly raiseAfterMs: number;
}

/** RFC 8899 §5.1.2: MAX_PROBES 3, PMTU_RAISE_TIMER 600 s. */
export const DEFAULT_PATH_MTU_OPTIONS: Omit<PathMtuOptions, 'max'> = { base: 1452, maxProbes: 3, raiseAfterMs: 600_000 };

/** The sizes tried above the base: a jumbo frame (9000 − IPv6 − UDP), then doubling to the max. */
const LADDER = [8952, 16384, 32768, 65507];

export class PathMtu {
  readonly options: PathMtuOptions;
  private confirmed: number;
  /** Sizes at or above this are not tried again until the raise timer (a black hole, or probes
   *  lost MAX_PROBES times). */
  private ceiling: number;
  private failures = 0;
  private outstanding: number | undefined;
  private searchDoneAt: number | undefined;

  constructor(options: Partial<PathMtuOptions> & { readonly max: number }) {
    this.options = { ...DEFAULT_PATH_MTU_OPTIONS, ...options };
    this.confirmed = Math.min(this.options.base, this.options.max);
    this.ceiling = this.options.max + 1;
  }

  /** The largest datagram known to reach the device (PLPMTU). */
  get size(): number { return this.confirmed; }
  get searching(): boolean { return this.searchDoneAt === undefined; }

  /** The size to probe now, if any: the next ladder step, when no probe is outstanding. */
  nextProbe(now: number): number | undefined {
    if (this.outstanding !== undefined) return undefined;
    if (this.searchDoneAt !== undefined) {
      if (now - this.searchDoneAt < this.options.raiseAfterMs) return undefined;
      this.searchDoneAt = undefined;
      this.ceiling = this.options.max + 1;
      this.failures = 0;
    }
    const next = this.ladder().find((s) => s > this.confirmed);
    if (next === undefined) {
      this.searchDoneAt = now;
      return undefined;
    }
    return next;
  }

  probeSent(size: number): void {
    this.outstanding = size;
  }

  /** The probe's data was acknowledged: the path carries `size`. */
  probeAcked(size: number, now: number): void {
    if (size > this.confirmed) this.confirmed = size;
    this.outstanding = undefined;
    this.failures = 0;
    if (this.ladder().every((s) => s <= this.confirmed)) this.searchDoneAt = now;
  }

  /** The probe's data was declared lost (it may be random loss: MAX_PROBES tries). */
  probeLost(size: number, now: number): void {
    this.outstanding = undefined;
    if (++this.failures >= this.options.maxProbes) {
      this.ceiling = size;
      this.failures = 0;
      this.searchDoneAt = now;
    }
  }

  /** The transfer carrying the probe ended before it was settled: neither acked nor lost. */
  probeAbandoned(): void {
    this.outstanding = undefined;
  }

  /** Datagrams above the base stopped arriving (the path changed): back to the base. */
  blackHole(now: number): void {
    if (this.confirmed <= this.options.base) return;
    this.ceiling = this.confirmed;
    this.confirmed = Math.min(this.options.base, this.options.max);
    this.outstanding = undefined;
    this.failures = 0;
    // Search again at once, below the size that failed.
    this.searchDoneAt = undefined;
    void now;
  }

  private ladder(): number[] {
    const sizes = LADDER.map((s) => Math.min(s, this.options.max)).filter((s) => s < this.ceiling);
    return [...new Set(sizes)];
  }
}
