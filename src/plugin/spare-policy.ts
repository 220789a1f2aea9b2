/**
 * How many idle plugin threads (spares) a device keeps started: one, so a trial does not wait
 * for a thread to start (50–85 ms on a 2-core VM). Modules pushed in quick succession leave
 * less than that between trials, and the one spare started after a trial is not ready for the
 * next: a trial that waited for its thread soon after the one before makes it two spares for a
 * while (the next trial takes the older, started a trial earlier). After HOLD_MS without another
 * such wait it is one again: an idle thread holds ~8–10 MB.
 */

/** Trials closer than this are "in quick succession". */
export const QUICK_SUCCESSION_MS = 10_000;
/** How long two spares are kept after the last trial that waited. */
export const HOLD_MS = 60_000;

export class SparePolicy {
  private lastTrialAt = -Infinity;
  private twoUntil = -Infinity;

  constructor(private readonly quickMs = QUICK_SUCCESSION_MS, private readonly holdMs = HOLD_MS) {}

  /** A trial took a thread at `now`; `waited`: the thread had not finished starting. */
  trial(now: number, waited: boolean): void {
    if (waited && now - this.lastTrialAt < this.quickMs) this.twoUntil = now + this.holdMs;
    this.lastTrialAt = now;
  }

  /** How many spares to keep at `now`. */
  count(now: number): number {
    return now < this.twoUntil ? 2 : 1;
  }

  /** When the count falls back to one, if it is two at `now`. */
  relaxAt(now: number): number | undefined {
    return now < this.twoUntil ? this.twoUntil : undefined;
  }
}
