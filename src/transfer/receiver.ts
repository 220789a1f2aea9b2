/**
 * The receiving side of one transfer, as a pure state machine.
 *
 * It delivers chunks strictly in order (so the driver can append to a file and hash as it goes),
 * buffers at most `window` chunks that arrive early, and answers with selective ACKs: at once when
 * a new gap opens, a gap is filled or a duplicate arrives (the sender needs these fast); every
 * `outOfOrderAckEvery` chunks while a gap stays open (the sender counts a chunk lost once 3 later
 * ones are acknowledged, so more frequent ACKs buy nothing and cost a datagram each); otherwise
 * every `ackEvery` chunks or after `ackDelayMs`, whichever comes first (the delayed ACK of
 * RFC 1122 §4.2.3.2, batched harder because a chunk sender is bulk-only).
 *
 * Chunks from a multicast group are acknowledged more lazily still (`groupAckEvery`,
 * `groupAckDelayMs`, and a gap is no reason to answer at once): the group does not resend on
 * them, it counts from them what each device lost, at its own pace, and repairs after its pass
 * (server/group-push.ts). A device among many sharing a slow machine pays for each ACK with a
 * wake-up, a seal and a send: fifty devices on two cores, their group's chunks trickling in,
 * spent about a fifth of their main threads' time sending ACKs every 15 ms.
 */
import { MAX_SACK_BITMAP_BYTES, NO_ECHO, type AckMessage } from '../protocol/messages.js';
import { LARGE_CHUNK_BYTES } from '../net/fragments.js';

export interface ReceiverOptions {
  /** Chunks buffered beyond the first missing one: bounds memory at window × chunk size. */
  readonly window: number;
  readonly ackEvery: number;
  /** While chunks arrive beyond a gap: ACK every this many. */
  readonly outOfOrderAckEvery: number;
  /** Bounds the sender's wait for an ACK on a quiet tail; well below the sender's RTO floor
   *  (40 ms). Where chunks arrive slowly (one of many sessions sharing a server) this, not
   *  `ackEvery`, sets how often a device ACKs: at 5 ms, ten devices receiving 16 MiB at once
   *  spent about a fifth more CPU, the server too, than at 15 (docs/benchmarks.md). The last
   *  chunk, a gap and a duplicate are answered at once whatever this is. */
  readonly ackDelayMs: number;
  /** Chunks from a multicast group: ACK every this many (in order or not), or after
   *  `groupAckDelayMs`; only the last chunk at once. The group's count of what each device lacks
   *  waits this long for its ACKs (GroupPush.lag). */
  readonly groupAckEvery: number;
  readonly groupAckDelayMs: number;
  /** Give up (keeping what arrived, for resume) when the sender is silent this long. */
  readonly idleTimeoutMs: number;
}

/** Bytes a transfer holds beyond a gap at most, whatever its chunks' size: 2048 chunks of 8650
 *  bytes, 17.7 MB (a device that missed a multicast group's first chunks holds the rest of a
 *  16 MiB module until the repair). */
export const MAX_EARLY_BYTES = 2048 * LARGE_CHUNK_BYTES;
/** Chunks larger than that (wide ones: a device on the server's host, over loopback) at most
 *  6 MiB, 96 wide chunks: ~20 ms at loopback's rate here, where nothing is late for long. The
 *  flight must fit the device's socket buffer (8 MiB where the kernel allows 4 MiB: it doubles
 *  what it grants), in which a 64 KiB datagram counts for ~68 KiB. With 270 (17.7 MB) a 1 GiB
 *  push resent 0.9–2.6% of its chunks, and the device, holding what came beyond each gap,
 *  peaked at up to 151 MB; with 128 (8 MiB), 128 MiB pushes resent 0–10% (median 2%) whenever
 *  the device fell behind; with 96, one chunk each in 3 pushes of 18, no slower (docs/benchmarks.md). */
export const MAX_EARLY_WIDE_BYTES = 6 * 1024 * 1024;

/** The window (chunks held beyond the first missing one) for chunks of `chunkSize` bytes. */
export function windowFor(chunkSize: number, window = DEFAULT_RECEIVER_OPTIONS.window): number {
  const bytes = chunkSize > LARGE_CHUNK_BYTES ? MAX_EARLY_WIDE_BYTES : MAX_EARLY_BYTES;
  return Math.max(1, Math.min(window, Math.floor(bytes / chunkSize)));
}

export const DEFAULT_RECEIVER_OPTIONS: ReceiverOptions = {
  window: 2048,
  ackEvery: 16,
  outOfOrderAckEvery: 4,
  ackDelayMs: 15,
  groupAckEvery: 32,
  groupAckDelayMs: 60,
  idleTimeoutMs: 15_000,
};

/** When to acknowledge: chunks the sender sent, or chunks from the group (see the top). */
interface AckPolicy {
  readonly every: number;
  readonly outOfOrderEvery: number;
  readonly delayMs: number;
  /** A gap that opens or fills is answered at once. */
  readonly gapsAtOnce: boolean;
}

export type ReceiverAction =
  | { readonly kind: 'deliver'; readonly index: number; readonly payload: Uint8Array }
  | { readonly kind: 'send-ack' }
  | { readonly kind: 'complete' }
  | { readonly kind: 'idle-timeout' };

export class ChunkReceiver {
  private readonly options: ReceiverOptions;
  private readonly sent: AckPolicy;
  private readonly group: AckPolicy;
  private cumulative: number;
  private readonly early = new Map<number, Uint8Array>();
  private highestEarly = -1;
  private sinceAck = 0;
  private ackDueAt: number | undefined;
  private lastHeardAt: number;
  private lastEcho = NO_ECHO;
  private finished = false;

  /** `alreadyHeld` chunks (a resumed prefix) are treated as received. */
  constructor(readonly totalChunks: number, now: number, alreadyHeld = 0, options: Partial<ReceiverOptions> = {}) {
    this.options = { ...DEFAULT_RECEIVER_OPTIONS, ...options };
    const o = this.options;
    this.sent = { every: o.ackEvery, outOfOrderEvery: o.outOfOrderAckEvery, delayMs: o.ackDelayMs, gapsAtOnce: true };
    this.group = { every: o.groupAckEvery, outOfOrderEvery: o.groupAckEvery, delayMs: o.groupAckDelayMs, gapsAtOnce: false };
    if (this.options.window > MAX_SACK_BITMAP_BYTES * 8) throw new RangeError('window larger than a SACK bitmap can describe');
    this.cumulative = Math.min(alreadyHeld, totalChunks);
    this.lastHeardAt = now;
    this.finished = this.cumulative === totalChunks;
  }

  get received(): number { return this.cumulative + this.early.size; }
  /** Whether chunk `index` is one to take now: not held yet, and within the window. */
  wants(index: number): boolean {
    return !this.finished && index >= this.cumulative && index < this.cumulative + this.options.window && !this.early.has(index);
  }

  /**
   * A chunk from the multicast group. Unlike the sender's own chunks, the group's come whatever
   * this device holds: one it holds or cannot hold yet is not a sign that an ACK was lost, and
   * answering each at once would flood the server with ACKs (a device served by unicast still
   * hears the whole group). Only a chunk it wants counts, and it is acknowledged lazily (see
   * the top).
   */
  onGroupData(index: number, payload: Uint8Array, now: number): ReceiverAction[] {
    if (index >= this.totalChunks) return [];
    this.lastHeardAt = now;
    if (!this.wants(index)) return [];
    this.lastEcho = index;
    return this.take(index, payload, now, this.group);
  }
  get inOrder(): number { return this.cumulative; }
  get complete(): boolean { return this.finished; }

  get wakeAt(): number | undefined {
    if (this.finished) return undefined;
    const idle = this.lastHeardAt + this.options.idleTimeoutMs;
    return this.ackDueAt === undefined ? idle : Math.min(this.ackDueAt, idle);
  }

  /** The sender has (re)offered this transfer: answer with what we hold. */
  onOffer(now: number): ReceiverAction[] {
    this.lastHeardAt = now;
    return [{ kind: 'send-ack' }];
  }

  onData(index: number, payload: Uint8Array, now: number): ReceiverAction[] {
    if (index >= this.totalChunks) return [];
    this.lastHeardAt = now;
    this.lastEcho = index;
    if (this.finished || index < this.cumulative || this.early.has(index)) {
      // Our ACK was probably lost: say again what we have.
      return this.ackNow();
    }
    if (index >= this.cumulative + this.options.window) return this.ackNow();
    return this.take(index, payload, now, this.sent);
  }

  /** A chunk within the window, not held yet: hold or deliver it, and say when to ACK. */
  private take(index: number, payload: Uint8Array, now: number, policy: AckPolicy): ReceiverAction[] {
    if (index !== this.cumulative) {
      const newGap = this.early.size === 0 || index > this.highestEarly + 1;
      this.early.set(index, payload);
      if (index > this.highestEarly) this.highestEarly = index;
      if ((newGap && policy.gapsAtOnce) || ++this.sinceAck >= policy.outOfOrderEvery) return this.ackNow();
      this.ackWithin(now, policy.delayMs);
      return [];
    }

    const actions: ReceiverAction[] = [{ kind: 'deliver', index, payload }];
    this.cumulative++;
    this.sinceAck++;
    let filledGap = false;
    for (let next = this.early.get(this.cumulative); next !== undefined; next = this.early.get(this.cumulative)) {
      this.early.delete(this.cumulative);
      actions.push({ kind: 'deliver', index: this.cumulative, payload: next });
      this.cumulative++;
      filledGap = true;
    }
    if (this.early.size === 0) this.highestEarly = -1;
    if (this.cumulative === this.totalChunks) {
      this.finished = true;
      actions.push({ kind: 'complete' });
      return [...actions, ...this.ackNow()];
    }
    const every = this.early.size > 0 ? policy.outOfOrderEvery : policy.every;
    if ((filledGap && policy.gapsAtOnce) || this.sinceAck >= every) return [...actions, ...this.ackNow()];
    this.ackWithin(now, policy.delayMs);
    return actions;
  }

  /** An ACK is due within `delayMs` (or sooner, if one already is). */
  private ackWithin(now: number, delayMs: number): void {
    if (this.ackDueAt === undefined || now + delayMs < this.ackDueAt) this.ackDueAt = now + delayMs;
  }

  onTimer(now: number): ReceiverAction[] {
    if (this.finished) return [];
    if (now - this.lastHeardAt >= this.options.idleTimeoutMs) {
      this.finished = true;
      return [{ kind: 'idle-timeout' }];
    }
    if (this.ackDueAt !== undefined && now >= this.ackDueAt) return this.ackNow();
    return [];
  }

  /** The ACK describing what we hold right now. */
  ack(transferId: number): AckMessage {
    let sack: Uint8Array = EMPTY;
    if (this.highestEarly > this.cumulative) {
      const bits = this.highestEarly - this.cumulative; // bit i ↔ chunk cumulative + 1 + i
      sack = new Uint8Array(Math.ceil(bits / 8));
      for (const index of this.early.keys()) {
        const bit = index - this.cumulative - 1;
        sack[bit >> 3] = (sack[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
      }
    }
    return {
      type: 'ack',
      transferId,
      cumulative: this.cumulative,
      window: this.options.window,
      echo: this.lastEcho,
      sack,
    };
  }

  private ackNow(): ReceiverAction[] {
    this.sinceAck = 0;
    this.ackDueAt = undefined;
    return [{ kind: 'send-ack' }];
  }
}

const EMPTY = new Uint8Array(0);
