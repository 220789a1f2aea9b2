/**
 * A discrete-event simulation of transfers: ChunkSenders and ChunkReceivers joined by a link that
 * loses, duplicates, reorders and delays datagrams, optionally through one shared bottleneck
 * (capacity and a tail-drop queue), all on a fake clock. No sockets, no timers: the same seed
 * gives the same run.
 */
import { ChunkSender, type SenderOptions, type SendOutcome } from '../../src/transfer/sender.js';
import { ChunkReceiver, type ReceiverOptions, type ReceiverAction } from '../../src/transfer/receiver.js';
import { ResultCode } from '../../src/protocol/result-codes.js';
import type { AckMessage } from '../../src/protocol/messages.js';
import { SharedRate, type RateSharer } from '../../src/transfer/rate-share.js';
import { seededRandom } from './random.js';
import { EventQueue } from './event-queue.js';

export interface LinkProfile {
  loss: number;
  duplicate: number;
  /** Extra random delay up to this many ms, which reorders datagrams. */
  jitterMs: number;
  /** Extra random delay up to this many ms that keeps datagrams in order (a busy host, a
   *  scheduler): round trips vary, nothing is reordered. */
  fifoJitterMs?: number;
  /** With this probability a datagram is held up to `reorderMs` more than the rest (netem's
   *  reordering, and the benchmark relay's): it arrives after datagrams sent later. */
  reorder?: number;
  reorderMs?: number;
  delayMs: number;
  /** Hold every datagram that would arrive in [at, at + ms) after the start until at + ms, in order (a host
   *  that stops reading for a while: a GC pause, a process starved of CPU). */
  stall?: { at: number; ms: number };
  /** Drop every datagram in both directions from this time on (a device that vanished). */
  deadAfterMs?: number;
  /** Drop the first this many OFFERs. */
  dropOffers?: number;
  /** Drop specific chunk transmissions: (index, attempt) → drop. */
  dropChunk?: (index: number, attempt: number) => boolean;
  /** A bottleneck toward the receivers, shared by all flows: chunks per ms it forwards, and how
   *  many it can queue (tail drop beyond that). Unset: infinitely fast. */
  capacity?: { chunksPerMs: number; buffer: number };
}

export interface SimulationResult {
  outcome: SendOutcome | undefined;
  /** Chunks the bottleneck dropped because its queue was full (all flows together). */
  overflowDrops: number;
  delivered: Uint8Array[];
  chunkTransmissions: number;
  retransmits: number;
  /** Retransmissions the receiver's duplicates showed to be needless. */
  spurious: number;
  /** Retransmission timeouts. */
  timeouts: number;
  /** Timeouts found spurious, each with any in a row after it (ACKs came for chunks sent before
   *  them, never resent: F-RTO). */
  spuriousTimeouts: number;
  /** The sender's largest bandwidth estimate (chunks per ms), after any ACK. */
  maxBandwidth: number;
  /** When this flow's sender finished, in ms after the simulation began. */
  endedAt: number;
  receiverTimedOut: boolean;
  /** When each chunk transmission went, ms after the simulation began. */
  sentAt: number[];
}

export interface FlowSpec {
  chunks: Uint8Array[];
  /** When this flow starts, ms after the simulation began. */
  startAt?: number;
  alreadyHeld?: number;
  /** The file is still being prepared (a release being sealed): these many chunks exist at each
   *  time (ms after the flow starts), [ms, chunks] in order; all of them after the last step. */
  prepared?: readonly (readonly [number, number])[];
}

type SimOptions = {
  sender?: Partial<SenderOptions>;
  receiver?: Partial<ReceiverOptions>;
  maxTimeMs?: number;
  /** The receiver takes this long to accept a new offer (a device checking its signature): what
   *  reaches it meanwhile waits, in order, as in a socket's buffer. */
  offerCheckMs?: number;
  /** `--max-rate`: chunks per ms all flows together may send, shared as the server shares it. */
  maxRate?: number;
};
type Event = { at: number; seq: number; run: () => void };

/** One transfer over `link`. */
export function simulateTransfer(
  chunks: Uint8Array[],
  link: LinkProfile,
  seed: number,
  opts: SimOptions & { alreadyHeld?: number } = {},
): SimulationResult {
  const [only] = simulateTransfers([{ chunks, alreadyHeld: opts.alreadyHeld }], link, seed, opts);
  return only!;
}

/** Several transfers at once, sharing the link (and its bottleneck). */
export function simulateTransfers(flows: FlowSpec[], link: LinkProfile, seed: number, opts: SimOptions = {}): SimulationResult[] {
  const random = seededRandom(seed);
  const events = new EventQueue<Event>();
  let seq = 0;
  // Not zero: a real monotonic clock has been running for a while, and code that confuses "0"
  // with "not yet" must fail here rather than in production.
  const epoch = 1_234_567.891;
  let now = epoch;
  const schedule = (at: number, run: () => void): void => { events.push({ at, seq: seq++, run }); };
  const alive = (): boolean => link.deadAfterMs === undefined || now - epoch < link.deadAfterMs;

  let bottleneckFreeAt = 0;
  let overflowDrops = 0;
  let lastFifoArrival = 0;
  const transmit = (deliver: () => void, throughBottleneck = false): void => {
    if (!alive() || random() < link.loss) return;
    let departs = now;
    if (throughBottleneck && link.capacity) {
      const { chunksPerMs, buffer } = link.capacity;
      const start = Math.max(now, bottleneckFreeAt);
      if ((start - now) * chunksPerMs >= buffer) { overflowDrops++; return; }
      bottleneckFreeAt = start + 1 / chunksPerMs;
      departs = bottleneckFreeAt;
    }
    const copies = random() < link.duplicate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      let at = departs + link.delayMs + random() * link.jitterMs;
      if (link.reorder && random() < link.reorder) at += random() * (link.reorderMs ?? link.delayMs);
      if (link.stall && at - epoch >= link.stall.at && at - epoch < link.stall.at + link.stall.ms) at = epoch + link.stall.at + link.stall.ms;
      if (link.fifoJitterMs) {
        at = Math.max(at + random() * link.fifoJitterMs, lastFifoArrival);
        lastFifoArrival = at;
      }
      schedule(at, deliver);
    }
  };

  const shared = opts.maxRate === undefined ? undefined : new SharedRate(opts.maxRate, { now: () => now }, (fire) => {
    let armedAt: number | undefined;
    return {
      arm: (at) => { armedAt = at; schedule(at, () => { if (armedAt === at) { armedAt = undefined; fire(); } }); },
      clear: () => { armedAt = undefined; },
    };
  });

  const results = flows.map((spec) => {
    const { chunks } = spec;
    const sender = new ChunkSender(chunks.length, opts.sender);
    let receiver: ChunkReceiver | undefined;
    const result: SimulationResult = {
      outcome: undefined, overflowDrops: 0, delivered: [], chunkTransmissions: 0, retransmits: 0, spurious: 0, timeouts: 0, spuriousTimeouts: 0, maxBandwidth: 0, endedAt: Number.NaN, receiverTimedOut: false, sentAt: [],
    };
    let leaveShare: (() => void) | undefined;
    const attempts = new Map<number, number>();
    let senderTimerAt: number | undefined;
    let receiverTimerAt: number | undefined;
    let offersSent = 0;
    /** The receiver is checking an offer until then; what reaches it waits (in order). */
    let receiverBusyUntil = Number.NEGATIVE_INFINITY;
    const atReceiver = (run: () => void): void => {
      if (now < receiverBusyUntil) schedule(receiverBusyUntil, run);
      else run();
    };

    const armSender = (): void => {
      const at = sender.wakeAt;
      if (at !== undefined && at !== senderTimerAt) {
        senderTimerAt = at;
        schedule(at, () => { if (senderTimerAt === at) { senderTimerAt = undefined; runSender(sender.onTimer(now)); } });
      }
    };
    const armReceiver = (): void => {
      const at = receiver?.wakeAt;
      if (at !== undefined && at !== receiverTimerAt) {
        receiverTimerAt = at;
        schedule(at, () => { if (receiverTimerAt === at && receiver) { receiverTimerAt = undefined; runReceiver(receiver.onTimer(now)); } });
      }
    };
    const toSender = (ack: AckMessage): void => transmit(() => {
      runSender(sender.onAck(ack, now));
      result.maxBandwidth = Math.max(result.maxBandwidth, sender.bandwidth);
    });
    const runReceiver = (actions: ReceiverAction[]): void => {
      for (const a of actions) {
        if (a.kind === 'deliver') result.delivered.push(a.payload);
        else if (a.kind === 'send-ack' && receiver) toSender(receiver.ack(7));
        else if (a.kind === 'complete') {
          // Like the client: repeat RESULT until the sender has it.
          const sendResult = (): void => {
            if (sender.phase === 'done') return;
            transmit(() => { runSender(sender.onResult(ResultCode.ok, 'ok', { major: 1, minor: 0, patch: 0 }, now)); });
            schedule(now + 50, sendResult);
          };
          sendResult();
        } else if (a.kind === 'idle-timeout') result.receiverTimedOut = true;
      }
      armReceiver();
    };
    const runSender = (actions: ReturnType<ChunkSender['onTimer']>): void => {
      for (const a of actions) {
        if (a.kind === 'send-offer') {
          if (offersSent++ < (link.dropOffers ?? 0)) continue;
          const accept = (): void => {
            receiver ??= new ChunkReceiver(chunks.length, now, spec.alreadyHeld ?? 0, opts.receiver);
            runReceiver(receiver.onOffer(now));
          };
          transmit(() => atReceiver(() => {
            if (receiver || !opts.offerCheckMs) { accept(); return; }
            receiverBusyUntil = now + opts.offerCheckMs;
            schedule(receiverBusyUntil, accept);
          }));
        } else if (a.kind === 'send-chunk') {
          result.chunkTransmissions++;
          result.sentAt.push(now - epoch);
          const attempt = (attempts.get(a.index) ?? 0) + 1;
          attempts.set(a.index, attempt);
          if (link.dropChunk?.(a.index, attempt)) continue;
          const payload = chunks[a.index]!;
          // Before its offer the receiver knows no such transfer: the chunk is dropped.
          transmit(() => atReceiver(() => { if (receiver) runReceiver(receiver.onData(a.index, payload, now)); }), true);
        } else if (a.kind === 'done') {
          result.endedAt = now - epoch;
          leaveShare?.();
        }
      }
      armSender();
    };
    const startAt = epoch + (spec.startAt ?? 0);
    if (spec.prepared) {
      // What exists at the start is set before start(), as a push session does.
      sender.setAvailable(spec.prepared.filter(([ms]) => ms === 0).at(-1)?.[1] ?? 0, startAt);
      for (const [ms, n] of spec.prepared) if (ms > 0) schedule(startAt + ms, () => runSender(sender.setAvailable(n, now)));
    }
    const member: RateSharer = { wants: (at) => sender.wantedRate(at), cap: (c, at) => runSender(sender.setRateCap(c, at)), floor: 0.001 };
    schedule(startAt, () => {
      runSender(sender.start(now));
      if (sender.phase !== 'done') leaveShare = shared?.join(member);
    });
    return { sender, result };
  });

  const maxTime = epoch + (opts.maxTimeMs ?? 600_000);
  const running = (): boolean => results.some((r) => r.sender.phase !== 'done');
  while (events.size > 0 && running()) {
    const ev = events.pop();
    if (ev.at > maxTime) break;
    now = ev.at;
    ev.run();
  }
  return results.map(({ sender, result }) => ({
    ...result,
    outcome: sender.outcome,
    retransmits: sender.retransmits,
    spurious: sender.spuriousRetransmits,
    timeouts: sender.timeouts,
    spuriousTimeouts: sender.spuriousTimeouts,
    overflowDrops,
    endedAt: Number.isNaN(result.endedAt) ? now - epoch : result.endedAt,
  }));
}

export function makeChunks(count: number, size = 100): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const c = new Uint8Array(size);
    c.fill(i & 0xff);
    c[0] = i >> 8;
    return c;
  });
}
