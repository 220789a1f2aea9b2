/**
 * When is a plugin thread that has not answered its pings hung, rather than starved? Pure: the
 * host passes the time and, when it can, how long the thread waited for a CPU.
 *
 * A device whose cores are busy elsewhere (a fleet of agents on one host, a gateway compiling,
 * a benchmark with fifty processes on two cores) can leave a healthy thread runnable but not
 * running for longer than `hangMs`; counting that as a hang rolls back a good module, and the
 * rollback's reload makes the starvation worse. So silence only counts while the thread could
 * have answered:
 * - minus the time the thread sat runnable on a run queue (Linux's per-thread schedstat: the
 *   second field of /proc/self/task/TID/schedstat), and
 * - minus the time the host's own ticks came late (the host was starved too, so it could not
 *   have read an answer; this is all there is where schedstat is not).
 * The larger of the two is forgiven, never their sum: both can be the same stretch of time, and
 * a sum could excuse a spinning thread on a loaded machine for ever. With the larger, a loop
 * that never yields still gathers silence whenever it runs, and a thread blocked for good (not
 * runnable: no run-queue wait) gathers all of it.
 */
export interface Hang {
  /** Since the last answer, wall clock. */
  readonly silentMs: number;
  /** Of that, forgiven as starvation (the thread or the host waiting for a CPU). */
  readonly starvedMs: number;
}

export class HangWatch {
  private lastAnswerAt: number;
  private lastTickAt: number;
  private hostLateMs = 0;
  private waitedAtAnswer: number | undefined;

  /** `waitedMs`: the thread's run-queue wait so far (any fixed origin), if the system tells.
   *  `hangMs` and `tickMs` may change while it watches (a module committed after a short
   *  probation is held to a longer limit, looked at less often). */
  constructor(public hangMs: number, public tickMs: number, now: number, waitedMs: number | undefined) {
    this.lastAnswerAt = now;
    this.lastTickAt = now;
    this.waitedAtAnswer = waitedMs;
  }

  /** The thread answered a ping. */
  answered(now: number, waitedMs: number | undefined): void {
    this.lastAnswerAt = now;
    this.hostLateMs = 0;
    this.waitedAtAnswer = waitedMs;
  }

  /**
   * A tick of the host's timer (due every `tickMs`): the hang, if the silence that counts has
   * passed `hangMs`. `waitedMs` is asked only when the wall-clock silence alone would be a hang.
   */
  tick(now: number, waitedMs: () => number | undefined): Hang | undefined {
    this.hostLateMs += Math.max(0, now - this.lastTickAt - this.tickMs);
    this.lastTickAt = now;
    const silentMs = now - this.lastAnswerAt;
    if (silentMs <= this.hangMs) return undefined;
    const waitedNow = waitedMs();
    const threadWaitedMs = waitedNow !== undefined && this.waitedAtAnswer !== undefined ? Math.max(0, waitedNow - this.waitedAtAnswer) : 0;
    const starvedMs = Math.min(silentMs, Math.max(threadWaitedMs, this.hostLateMs));
    return silentMs - starvedMs > this.hangMs ? { silentMs, starvedMs } : undefined;
  }
}
