/**
 * Datagrams kept a moment to be handled together. A device receiving a multicast group's chunks
 * at a trickle (one of fifty sharing a machine, or a group paced for a slow LAN) wakes for each
 * datagram with its caches cold: for the same 16 MiB, a device's main thread used 1.0–1.5 CPU-s
 * at 5 Mbit/s against 0.17–0.28 at 500 here. Taking the group's datagrams by the batch (at most
 * `limit` of them, the oldest at most `maxWaitMs` old) took a sixth off that at 5–10 Mbit/s
 * (docs/benchmarks.md, fifth session). Pure: time is an argument.
 */
import { DEFAULT_RECEIVER_OPTIONS } from '../transfer/receiver.js';

/** The group's datagrams wait at most this long on a device: the server allows for it when it
 *  counts what a device lacks (a late acknowledgement is not a loss). */
export const GROUP_BATCH_MS = 50;
/** A full batch is taken at once: as many as the receiver acknowledges at a time. */
export const GROUP_BATCH_DATAGRAMS = DEFAULT_RECEIVER_OPTIONS.groupAckEvery;

export class DatagramBatch<T> {
  private items: T[] = [];
  private firstAt = 0;

  constructor(readonly limit: number, readonly maxWaitMs: number) {}

  get size(): number { return this.items.length; }

  /** Queue `item`; true when the batch is full (take it now). */
  push(item: T, now: number): boolean {
    if (this.items.length === 0) this.firstAt = now;
    this.items.push(item);
    return this.items.length >= this.limit;
  }

  /** When the batch must be taken, its oldest having waited `maxWaitMs` (undefined: empty). */
  get dueAt(): number | undefined {
    return this.items.length === 0 ? undefined : this.firstAt + this.maxWaitMs;
  }

  /** Everything queued, oldest first; the batch is empty afterwards. */
  take(): T[] {
    const out = this.items;
    this.items = [];
    return out;
  }
}
