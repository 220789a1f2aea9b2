import type { Clock } from './clock.js';

/**
 * One timer for a state machine that reports when it next needs waking (`wakeAt`). It keeps an
 * earlier timer rather than resetting it on every event: resetting a timer per datagram costs
 * more than an early wake-up, which the machine answers with no actions.
 *
 * Node's timers count whole milliseconds of the event loop's clock, so one may fire up to 1 ms
 * before `clock.now()` reaches the time it was armed for; the machine then asks again for that
 * time, now less than 1 ms away. A fine timer (a sender's pacing) waits for it on immediates,
 * spinning the event loop; a `coarse` one (an ACK's delay, an idle timeout) sleeps another
 * millisecond. A device receiving a multicast group's trickle spun like this at each of its
 * delayed ACKs: 17% of its main thread's samples in a profile (docs/benchmarks.md).
 */
export class WakeTimer {
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private at = Number.POSITIVE_INFINITY;

  /** `fire` is told how late it came (ms past the time it was armed for, or past its arming if
   *  that time had gone already): a timer seconds late means this process was not running (a
   *  stopped or starved process, a paused machine). */
  constructor(
    private readonly clock: Clock,
    private readonly fire: (lateMs: number) => void,
    /** No wake-up finer than a millisecond: never an immediate (see above). */
    private readonly coarse = false,
  ) {}

  arm(at: number | undefined): void {
    if (at === undefined) return this.clear();
    if (this.timer !== undefined && this.at <= at) return;
    this.clear();
    this.at = at;
    const now = this.clock.now();
    const due = Math.max(at, now);
    const fire = (): void => {
      this.timer = undefined;
      this.at = Number.POSITIVE_INFINITY;
      this.fire(this.clock.now() - due);
    };
    const delay = at - now;
    // setTimeout cannot wait less than 1 ms; pacing at high rates needs finer steps. An
    // immediate runs after pending I/O, so ACKs are still read between bursts.
    if (this.coarse) this.timer = setTimeout(fire, Math.max(1, delay));
    else this.timer = delay < 1 ? setImmediate(fire) : setTimeout(fire, delay);
  }

  clear(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
    }
    this.timer = undefined;
    this.at = Number.POSITIVE_INFINITY;
  }
}
