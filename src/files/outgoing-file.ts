/**
 * Drives one ChunkSender: one file to one peer, in either direction (a module pushed to a
 * device, a file put on one, a log extract uploaded from one). It turns the sender's actions into
 * datagrams — reading chunks from disk only as they are needed — and its wake-ups into one timer.
 */
import { DATA_HEADER_BYTES, encode, writeDataHeader, type AckMessage } from '../protocol/messages.js';
import type { ReleaseVersion } from '../protocol/release-version.js';
import { ChunkSender, type SenderAction, type SenderOptions, type SendOutcome } from '../transfer/sender.js';
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';
import { ModuleSource } from './module-source.js';

export interface TransferProgress {
  readonly acked: number;
  readonly total: number;
  readonly retransmits: number;
  readonly timeouts: number;
  readonly phase: string;
}

export interface OutgoingIo {
  /** Send one datagram's message to the peer (sealed by the channel). */
  send(message: Uint8Array): void;
  /** The OFFER (or FILE_OFFER) for this transfer under `transferId`. */
  encodeOffer(transferId: number): Uint8Array;
  /** A fresh transfer id, when the peer restarted and must be offered the file anew. */
  renumber(): number;
}

export class OutgoingFile {
  readonly done: Promise<SendOutcome>;
  readonly startedAt: number;
  /** When every chunk was acknowledged (the peer then verifies). */
  dataDoneAt: number | undefined;
  private resolveDone!: (o: SendOutcome) => void;
  private readonly sender: ChunkSender;
  private readonly source: ModuleSource;
  private readonly timer: WakeTimer;
  private offerBytes: Uint8Array;

  constructor(
    public transferId: number,
    private readonly file: { readonly path: string; readonly size: number; readonly chunkSize: number },
    private readonly io: OutgoingIo,
    private readonly clock: Clock,
    senderOptions: Partial<SenderOptions>,
  ) {
    this.sender = new ChunkSender(Math.ceil(file.size / file.chunkSize), senderOptions);
    this.source = new ModuleSource(file.path, file.size, file.chunkSize);
    this.timer = new WakeTimer(clock, () => this.run(this.sender.onTimer(clock.now())));
    this.offerBytes = io.encodeOffer(transferId);
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
    this.startedAt = clock.now();
  }

  get progress(): TransferProgress {
    const s = this.sender;
    return { acked: s.acked, total: s.totalChunks, retransmits: s.retransmits, timeouts: s.timeouts, phase: s.phase };
  }

  start(): void { this.run(this.sender.start(this.clock.now())); }

  onAck(ack: AckMessage): void {
    this.run(this.sender.onAck(ack, this.clock.now()));
    if (this.dataDoneAt === undefined && this.sender.acked === this.sender.totalChunks) this.dataDoneAt = this.clock.now();
  }

  onResult(code: number, message: string, active: ReleaseVersion): void {
    this.run(this.sender.onResult(code, message, active, this.clock.now()));
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

  cancel(reason: string): void { this.run(this.sender.cancel(reason)); }

  private run(actions: SenderAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'send-offer':
          this.io.send(this.offerBytes);
          break;
        case 'send-chunk': {
          // Each datagram needs its own buffer: dgram sends asynchronously.
          const len = Math.min(this.file.chunkSize, this.file.size - a.index * this.file.chunkSize);
          const buf = Buffer.allocUnsafe(DATA_HEADER_BYTES + len);
          writeDataHeader(buf, this.transferId, a.index);
          this.source.readChunk(a.index, buf, DATA_HEADER_BYTES);
          this.io.send(buf);
          break;
        }
        case 'send-result-ack':
          this.io.send(encode({ type: 'resultAck', transferId: this.transferId }));
          break;
        case 'done':
          this.timer.clear();
          this.source.close();
          this.resolveDone(a.outcome);
          return;
      }
    }
    this.timer.arm(this.sender.wakeAt);
  }
}
