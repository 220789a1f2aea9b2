import type { Clock } from './clock.js';

/**
 * One timer for a state machine that reports when it next needs waking (`wakeAt`). It keeps an
 * earlier timer rather than resetting it on every event: resetting a timer per datagram costs
 * more than an early wake-up, which the machine answers with no actions.
 */
export class WakeTimer {
  private timer: NodeJS.Timeout | undefined;
  private at = Number.POSITIVE_INFINITY;

  constructor(private readonly clock: Clock, private readonly fire: () => void) {}

  arm(at: number | undefined): void {
    if (at === undefined) return this.clear();
    if (this.timer !== undefined && this.at <= at) return;
    clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.at = Number.POSITIVE_INFINITY;
      this.fire();
    }, Math.max(0, at - this.clock.now()));
  }

  clear(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.at = Number.POSITIVE_INFINITY;
  }
}
