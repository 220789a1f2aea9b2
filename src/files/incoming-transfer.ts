/**
 * Drives one ChunkReceiver: chunks in, ACKs out, bytes to an IncomingModule on disk. Used for
 * modules arriving at a device, files put on a device, and uploads arriving at the server; what
 * happens when the file is whole is the owner's business (`io.complete`).
 */
import { encode, type DataMessage } from '../protocol/messages.js';
import { ChunkReceiver, DEFAULT_RECEIVER_OPTIONS, windowFor, type ReceiverAction, type ReceiverOptions } from '../transfer/receiver.js';
import type { IncomingModule } from '../plugin/incoming-module.js';
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';

const NO_BYTES = new Uint8Array(0);

export interface IncomingIo {
  send(message: Uint8Array): void;
  /** Every chunk is on disk (still to be verified). */
  complete(): void;
  /** The sender went quiet for the receiver's idle timeout; what arrived is kept for a resume. */
  idle(): void;
}

export class IncomingTransfer {
  finishing = false;
  readonly receiver: ChunkReceiver;
  private readonly timer: WakeTimer;

  constructor(
    /** Changes when the same file is offered again under a new id. */
    public transferId: number,
    readonly incoming: IncomingModule,
    private readonly io: IncomingIo,
    private readonly clock: Clock,
    options?: Partial<ReceiverOptions>,
  ) {
    // The window in bytes, whatever the chunk size: 2048 wide chunks would be 128 MiB.
    const o = { ...DEFAULT_RECEIVER_OPTIONS, ...options };
    this.receiver = new ChunkReceiver(incoming.totalChunks, clock.now(), incoming.heldChunks, { ...o, window: windowFor(incoming.manifest.chunkSize, o.window) });
    // Coarse: an ACK's delay and the idle timeout need no sub-millisecond wake-ups.
    this.timer = new WakeTimer(clock, () => this.run(this.receiver.onTimer(clock.now())), true);
  }

  /** Bytes held: in order, and beyond a gap (a device that missed the first chunks of a group's
   *  pass holds most of the module long before its in-order prefix moves: progress says so). */
  get bytesReceived(): number {
    return Math.min(this.incoming.manifest.size, this.receiver.received * this.incoming.manifest.chunkSize);
  }

  /** The offer (again): answer with what is held; a file already whole completes at once. */
  onOffer(): void {
    if (this.receiver.complete) this.io.complete();
    else this.run(this.receiver.onOffer(this.clock.now()));
  }

  /** False for a chunk of the wrong length or index (endless-data attack): dropped. */
  onData(msg: DataMessage): boolean {
    return this.onChunk(msg.index, msg.payload);
  }

  onChunk(index: number, payload: Uint8Array, fromGroup = false): boolean {
    if (index >= this.incoming.totalChunks || payload.length !== this.incoming.chunkLength(index)) return false;
    const now = this.clock.now();
    this.run(fromGroup ? this.receiver.onGroupData(index, payload, now) : this.receiver.onData(index, payload, now));
    return true;
  }

  /** Chunk `index` came again (its pieces say so: a chunk in pieces that this side holds is not
   *  assembled): answer as for any duplicate, an ACK of what is held. */
  onDuplicate(index: number): void {
    if (index >= this.incoming.totalChunks || this.receiver.wants(index)) return;
    this.run(this.receiver.onData(index, NO_BYTES, this.clock.now()));
  }

  /** Whether chunk `index` is one to take now (a group's chunk that is not is not even opened). */
  wants(index: number): boolean { return this.receiver.wants(index); }

  run(actions: ReceiverAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'deliver': this.incoming.append(a.payload); break;
        case 'send-ack': this.io.send(encode(this.receiver.ack(this.transferId))); break;
        case 'complete': this.io.complete(); break;
        case 'idle-timeout': this.io.idle(); break;
      }
    }
    if (!this.finishing) this.timer.arm(this.receiver.wakeAt);
  }

  suspend(): Promise<void> {
    this.timer.clear();
    return this.finishing ? Promise.resolve() : this.incoming.suspend();
  }

  clearTimer(): void {
    this.timer.clear();
  }
}
