/** A binary min-heap of events by (time, insertion order): the simulated link's clock and the
 *  proxy's delayed datagrams both release events in due order, ties first come first. */
export interface Due {
  readonly at: number;
  readonly seq: number;
}

export class EventQueue<E extends Due> {
  private readonly heap: E[] = [];
  get size(): number { return this.heap.length; }
  /** The earliest event, without taking it. */
  peek(): E | undefined { return this.heap[0]; }
  clear(): void { this.heap.length = 0; }

  push(e: E): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  pop(): E {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Due, b: Due): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
