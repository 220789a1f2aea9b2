/**
 * Drives one ChunkSender: one file to one peer, in either direction (a module pushed to a
 * device, a file put on one, a log extract uploaded from one). It turns the sender's actions into
 * datagrams through a ChunkWire — sealed release chunks in CHUNKS frames for pushes
 * (sealed-chunk-wire.ts), DATA messages inside the session for jobs' files (SessionDataWire) —
 * and its wake-ups into one timer.
 */
import { DATA_HEADER_BYTES, encode, writeDataHeader, type AckMessage } from '../protocol/messages.js';
import type { ReleaseVersion } from '../protocol/release-version.js';
import { ChunkSender, type SenderAction, type SenderOptions, type SendOutcome } from '../transfer/sender.js';
import { ResultCode, type ResultCodeValue } from '../protocol/result-codes.js';
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';
import type { RateSharer, SharedRate } from '../transfer/rate-share.js';
import { ModuleSource } from './module-source.js';

export interface TransferProgress {
  readonly acked: number;
  readonly total: number;
  readonly retransmits: number;
  readonly timeouts: number;
  /** Timeouts found spurious, each with any in a row after it: the path stalled, nothing was
   *  lost (F-RTO). */
  readonly spuriousTimeouts: number;
  readonly phase: string;
  /** Chunks the sender resent and the receiver then reported it already held. */
  readonly spurious: number;
  readonly datagrams: number;
  /** The peer answered the offer (chunks may go before it does: the sender's first flight). */
  readonly accepted: boolean;
}

/** How chunks reach the peer. */
export interface ChunkWire {
  /** Send these chunks (in the sender's order) under `transferId`, packed as the path allows. */
  send(transferId: number, indices: readonly number[], now: number): void;
  /** More was acknowledged (a datagram-size probe may be settled by it). */
  onAcked(isAcked: (index: number) => boolean, now: number): void;
  /** Timeouts in a row with nothing acknowledged: datagrams may be too big for the path now. */
  onBlackHole(now: number): void;
  /** The socket's queue is long: wait before sending more. */
  backlogged(): boolean;
  readonly datagrams: number;
  /** Bytes a chunk takes on the wire (a full one, headers included): rates in chunks become
   *  bytes for `--max-rate`. */
  readonly chunkBytes: number;
  close(): void;
}

export interface OutgoingIo {
  /** Send one message to the peer (sealed by the channel). */
  send(message: Uint8Array): void;
  /** The OFFER (or FILE_OFFER) for this transfer under `transferId`. */
  encodeOffer(transferId: number): Uint8Array;
  /** A fresh transfer id, when the peer restarted and must be offered the file anew. */
  renumber(): number;
}

/** Timeouts in a row, with nothing acknowledged, that count as a black hole (RFC 8899 §4.3). */
const BLACK_HOLE_TIMEOUTS = 2;
/** How soon to look again when the socket's queue was too long, and how many times in a row. */
const BACKLOG_RETRY_MS = 1;
const MAX_BACKLOG_WAITS = 50;
/** A timer this late means the process was not running: see onTimer. */
export const STALLED_AFTER_MS = 1_000;

export class OutgoingFile implements RateSharer {
  readonly done: Promise<SendOutcome>;
  readonly startedAt: number;
  /** When every chunk was acknowledged (the peer then verifies); if the last ACKs were all lost,
   *  when the peer's verdict on the whole file came. */
  dataDoneAt: number | undefined;
  private resolveDone!: (o: SendOutcome) => void;
  private readonly sender: ChunkSender;
  private readonly timer: WakeTimer;
  private offerBytes: Uint8Array;
  private readonly batch: number[] = [];
  private ackedAtTimeout = -1;
  private timeoutsWithoutProgress = 0;
  private backlogWaits = 0;
  /** Ends its share of `--max-rate` (undefined: it has none). */
  private leaveShare: (() => void) | undefined;

  constructor(
    public transferId: number,
    totalChunks: number,
    private readonly wire: ChunkWire,
    private readonly io: OutgoingIo,
    private readonly clock: Clock,
    senderOptions: Partial<SenderOptions>,
    /** The total it shares with the other transfers (`--max-rate`), from start() until done. */
    private readonly shared?: SharedRate,
  ) {
    this.sender = new ChunkSender(totalChunks, senderOptions);
    this.timer = new WakeTimer(clock, (lateMs) => this.onTimer(lateMs));
    this.offerBytes = io.encodeOffer(transferId);
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
    this.startedAt = clock.now();
  }

  /** When the offer last went. */
  private offeredAt: number | undefined;
  /** How long the peer took to answer the offer, from its last sending (undefined: not yet). */
  offerAnswerMs: number | undefined;

  get progress(): TransferProgress {
    const s = this.sender;
    return {
      acked: s.acked, total: s.totalChunks, retransmits: s.retransmits, timeouts: s.timeouts, spuriousTimeouts: s.spuriousTimeouts, phase: s.phase,
      spurious: s.spuriousRetransmits, datagrams: this.wire.datagrams, accepted: s.accepted,
    };
  }

  start(): void {
    this.run(this.sender.start(this.clock.now()));
    if (this.shared && this.sender.phase !== 'done') this.leaveShare = this.shared.join(this);
  }

  /** A chunk a second: slower, the peer's timeouts would end the transfer (rate-share.ts). */
  get floor(): number { return this.wire.chunkBytes / 1000; }

  wants(now: number): number { return this.sender.wantedRate(now) * this.wire.chunkBytes; }

  cap(bytesPerMs: number, now: number): void {
    if (this.sender.phase === 'done') return;
    this.run(this.sender.setRateCap(bytesPerMs / this.wire.chunkBytes, now));
  }

  isAcked(index: number): boolean { return this.sender.isAcked(index); }
  get ackedCount(): number { return this.sender.acked; }
  get frontier(): number { return this.sender.frontier; }
  /** The first chunk the peer cannot hold yet (its in-order point plus its window). */
  get receiveEdge(): number { return this.sender.receiveEdge; }
  get srtt(): number | undefined { return this.sender.srtt; }
  get heardAt(): number { return this.sender.heardAt; }

  /** Ask the device what it holds: the OFFER once more, which it answers with an ACK at once
   *  (an OFFER of the transfer it has is only that question). Nothing if the transfer is over. */
  askWhatItHolds(): void {
    if (this.sender.phase === 'sending') this.io.send(this.offerBytes);
  }

  /** Only the first `chunks` can be sent yet (the file is still being prepared). */
  setAvailable(chunks: number): void {
    if (this.sender.phase === 'done') return;
    this.run(this.sender.setAvailable(chunks, this.clock.now()));
  }

  onAck(ack: AckMessage): void {
    const now = this.clock.now();
    const before = this.sender.acked;
    this.run(this.sender.onAck(ack, now));
    if (this.offerAnswerMs === undefined && this.sender.accepted && this.offeredAt !== undefined) this.offerAnswerMs = now - this.offeredAt;
    if (this.sender.acked > before) {
      this.timeoutsWithoutProgress = 0;
      this.wire.onAcked((i) => this.sender.isAcked(i), now);
    }
    if (this.dataDoneAt === undefined && this.sender.acked === this.sender.totalChunks) this.dataDoneAt = now;
  }

  onResult(code: number, message: string, active: ReleaseVersion): void {
    const now = this.clock.now();
    // A verdict on the whole file means the peer had every chunk, whatever became of its ACKs.
    if (this.dataDoneAt === undefined && (code === ResultCode.ok || code === ResultCode.deferred)) this.dataDoneAt = now;
    this.run(this.sender.onResult(code, message, active, now));
  }

  onAbort(code: number, message: string): void {
    const actions = this.sender.onAbort(code, message, this.clock.now());
    if (actions.some((a) => a.kind === 'send-offer')) {
      // The peer restarted and is offered the file again, under a new id: a late ACK from the
      // process that died would otherwise claim chunks the new one never wrote to disk, and they
      // would never be sent again.
      this.transferId = this.io.renumber();
      this.offerBytes = this.io.encodeOffer(this.transferId);
    }
    this.run(actions);
  }

  /** This side may not have heard the peer lately (ChunkSender.excuseSilence). */
  excuseSilence(): void {
    this.sender.excuseSilence(this.clock.now());
  }

  /** Stop here and tell the receiver (ABORT, once: if it is lost, the receiver's inactivity
   *  timeout ends its side), which keeps what arrived, to resume. */
  cancel(reason: string, code: ResultCodeValue = ResultCode.cancelled): void {
    if (this.sender.phase === 'done') return;
    this.io.send(encode({ type: 'abort', transferId: this.transferId, code, message: reason }));
    this.run(this.sender.cancel(reason, code));
  }

  private onTimer(lateMs: number): void {
    const now = this.clock.now();
    // This process did not run for a while (stopped, starved, its machine paused): the device's
    // ACKs may be waiting unread in the socket, so its silence is not yet a reason to give up.
    if (lateMs >= STALLED_AFTER_MS) this.sender.excuseSilence(now);
    // Wait for a long socket queue to drain, but not for ever: timeouts are due in this wake too.
    if (this.sender.phase === 'sending' && this.wire.backlogged() && this.backlogWaits < MAX_BACKLOG_WAITS) {
      this.backlogWaits++;
      this.timer.arm(now + BACKLOG_RETRY_MS);
      return;
    }
    this.backlogWaits = 0;
    const timeouts = this.sender.timeouts;
    const actions = this.sender.onTimer(now);
    if (this.sender.timeouts > timeouts) {
      if (this.sender.acked !== this.ackedAtTimeout) {
        this.ackedAtTimeout = this.sender.acked;
        this.timeoutsWithoutProgress = 0;
      }
      if (++this.timeoutsWithoutProgress === BLACK_HOLE_TIMEOUTS) this.wire.onBlackHole(now);
    }
    this.run(actions);
  }

  private run(actions: SenderAction[]): void {
    const batch = this.batch;
    batch.length = 0;
    for (const a of actions) {
      switch (a.kind) {
        case 'send-offer':
          this.io.send(this.offerBytes);
          this.offeredAt = this.clock.now();
          break;
        case 'send-chunk':
          batch.push(a.index);
          break;
        case 'send-result-ack':
          this.io.send(encode({ type: 'resultAck', transferId: this.transferId }));
          break;
        case 'done':
          this.timer.clear();
          this.wire.close();
          this.leaveShare?.();
          this.leaveShare = undefined;
          this.resolveDone(a.outcome);
          return;
      }
    }
    if (batch.length > 0) this.wire.send(this.transferId, batch, this.clock.now());
    this.timer.arm(this.sender.wakeAt);
  }
}

/** Jobs' files: one DATA message per chunk, sealed by the session like every other message. */
export class SessionDataWire implements ChunkWire {
  private readonly source: ModuleSource;
  datagrams = 0;
  readonly chunkBytes: number;

  constructor(private readonly file: { readonly path: string; readonly size: number; readonly chunkSize: number }, private readonly sendMessage: (message: Uint8Array) => void) {
    this.source = new ModuleSource(file.path, file.size, file.chunkSize);
    this.chunkBytes = DATA_HEADER_BYTES + file.chunkSize;
  }

  send(transferId: number, indices: readonly number[]): void {
    for (const index of indices) {
      const len = Math.min(this.file.chunkSize, this.file.size - index * this.file.chunkSize);
      const buf = Buffer.allocUnsafe(DATA_HEADER_BYTES + len);
      writeDataHeader(buf, transferId, index);
      this.source.readChunk(index, buf, DATA_HEADER_BYTES);
      this.sendMessage(buf);
      this.datagrams++;
    }
  }

  onAcked(): void { /* one size: nothing to learn */ }
  onBlackHole(): void { /* one size, the base: nothing smaller to fall back to */ }
  backlogged(): boolean { return false; }
  close(): void { this.source.close(); }
}
