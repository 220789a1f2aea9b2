import type { Clock } from './clock.js';

/**
 * One timer for a state machine that reports when it next needs waking (`wakeAt`). It keeps an
 * earlier timer rather than resetting it on every event: resetting a timer per datagram costs
 * more than an early wake-up, which the machine answers with no actions.
 */
export class WakeTimer {
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private at = Number.POSITIVE_INFINITY;

  /** `fire` is told how late it came (ms past the time it was armed for, or past its arming if
   *  that time had gone already): a timer seconds late means this process was not running (a
   *  stopped or starved process, a paused machine). */
  constructor(private readonly clock: Clock, private readonly fire: (lateMs: number) => void) {}

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
    this.timer = delay < 1 ? setImmediate(fire) : setTimeout(fire, delay);
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
