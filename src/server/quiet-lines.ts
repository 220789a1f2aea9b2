/**
 * Lines about one device's comings and goings, at most one a device each `everyMs`. A device on a
 * bad link (or one that misbehaves: 1,400 goodbyes and returns in 40 s from one enrolled device
 * in a scratch fuzz) would otherwise fill the console and the log. A line held back is not lost
 * for good: when the device's quiet period ends, the last one held is shown with how many came
 * in it, so the console always ends on the device's state as it is. Pure: time is passed in.
 */
export class QuietLines {
  private readonly quiet = new Map<string, { until: number; held: number; last?: string }>();

  constructor(private readonly everyMs: number) {}

  /** A line about `key`: returned to be shown now, or undefined (held back: see due). */
  offer(key: string, line: string, now: number): string | undefined {
    const q = this.quiet.get(key);
    if (q === undefined || now >= q.until) {
      this.quiet.set(key, { until: now + this.everyMs, held: 0 });
      return line;
    }
    q.held++;
    q.last = line;
    return undefined;
  }

  /** Devices in a quiet period: while there are any, call due() again within `everyMs`. */
  get size(): number { return this.quiet.size; }

  /** The held lines whose quiet period is over, each with its count; quiet periods over are
   *  forgotten (the map holds only devices heard in the last `everyMs`). */
  due(now: number): string[] {
    const lines: string[] = [];
    for (const [key, q] of this.quiet) {
      if (now < q.until) continue;
      if (q.last !== undefined) lines.push(`${q.last} (${q.held + 1} changes in ${Math.round(this.everyMs / 1000)} s)`);
      this.quiet.delete(key);
    }
    return lines;
  }
}
