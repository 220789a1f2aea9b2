/**
 * Memory the agent itself holds for modules on their way: a spare's reserve for a module that is
 * arriving, a trial's bytes and text while it loads. A running module's memory watch
 * (plugin-host.ts) measures the whole process, and must not take these for the module's own
 * growth (counted as such, a 300 MiB module's trial ended the running module as out of memory).
 *
 * What is let go stays counted for a while: a JavaScript thread's garbage is freed at its next
 * collection, which an idle thread runs on its own after some seconds (6–9 s measured for a
 * released 128 MiB reserve and for a loaded module's read buffer).
 */

/** How long memory let go still counts as held. */
export const HELD_GRACE_MS = 30_000;

export class Hold {
  /** Counted until then (Infinity: held). */
  until = Infinity;

  constructor(readonly bytes: number) {}

  /** The memory goes: counted until `now` + `graceMs`. Once; later calls change nothing. */
  release(now: number, graceMs = HELD_GRACE_MS): void {
    if (this.until === Infinity) this.until = now + graceMs;
  }
}

export class HeldMemory {
  private readonly holds = new Set<Hold>();

  /** `bytes` held from now until released. */
  hold(bytes: number): Hold {
    const h = new Hold(bytes);
    this.holds.add(h);
    return h;
  }

  /** Bytes held at `now`, but for `except`'s (a module's own load is its own growth to watch). */
  bytes(now: number, except?: Hold): number {
    let total = 0;
    for (const h of this.holds) {
      if (h.until <= now) this.holds.delete(h);
      else if (h !== except) total += h.bytes;
    }
    return total;
  }
}
