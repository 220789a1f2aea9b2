/**
 * Drives one ChunkSender: one module to one client. It turns the sender's actions into
 * datagrams (reading chunks from disk as they are needed) and its wake-ups into one timer.
 */
import { DATA_HEADER_BYTES, encode, writeDataHeader, type AckMessage, type Message } from '../protocol/messages.js';
import { chunkCount, type SignedManifest } from '../security/manifest.js';
import { ChunkSender, type SenderAction, type SenderOptions, type SendOutcome } from '../transfer/sender.js';
import type { Peer } from '../net/endpoint.js';
import type { Clock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';
import { ModuleSource } from './module-source.js';
import type { Release } from './release.js';
import type { ClientRecord } from './registry.js';

export interface PushProgress {
  readonly acked: number;
  readonly total: number;
  readonly retransmits: number;
  readonly timeouts: number;
  readonly phase: string;
}

export class PushSession {
  readonly done: Promise<SendOutcome>;
  readonly startedAt: number;
  /** When every chunk was acknowledged (the client then verifies and imports). */
  dataDoneAt: number | undefined;
  private resolveDone!: (o: SendOutcome) => void;
  private readonly sender: ChunkSender;
  private readonly source: ModuleSource;
  private readonly timer: WakeTimer;
  private offerBytes: Uint8Array;
  /** Signed once per session: a re-offer repeats the same manifest, not a new signature. */
  private readonly signed: SignedManifest;

  constructor(
    /** Changes when the transfer is offered again to a restarted client (see onAbort). */
    public transferId: number,
    readonly client: ClientRecord,
    readonly release: Release,
    private readonly endpoint: { send(data: Uint8Array, to: Peer): unknown },
    private readonly clock: Clock,
    senderOptions: Partial<SenderOptions>,
    /** Gives this session a fresh transfer id and returns it. */
    private readonly renumber: (session: PushSession) => number,
  ) {
    const m = release.manifest;
    this.sender = new ChunkSender(chunkCount(m), senderOptions);
    this.source = new ModuleSource(release.path, m.size, m.chunkSize);
    this.timer = new WakeTimer(clock, () => this.run(this.sender.onTimer(clock.now())));
    this.signed = release.signedFor(client.id);
    this.offerBytes = this.encodeOffer();
    this.done = new Promise((resolve) => { this.resolveDone = resolve; });
    this.startedAt = clock.now();
  }

  /** The client's address now: it may re-register from a new one mid-transfer. */
  get peer(): Peer { return this.client.peer; }

  get progress(): PushProgress {
    const s = this.sender;
    return { acked: s.acked, total: s.totalChunks, retransmits: s.retransmits, timeouts: s.timeouts, phase: s.phase };
  }

  start(): void { this.run(this.sender.start(this.clock.now())); }
  onAck(ack: AckMessage): void {
    this.run(this.sender.onAck(ack, this.clock.now()));
    if (this.dataDoneAt === undefined && this.sender.acked === this.sender.totalChunks) this.dataDoneAt = this.clock.now();
  }
  onResult(msg: Extract<Message, { type: 'result' }>): void {
    this.run(this.sender.onResult(msg.code, msg.message, msg.active, this.clock.now()));
  }
  onAbort(code: number, message: string): void {
    const actions = this.sender.onAbort(code, message, this.clock.now());
    if (actions.some((a) => a.kind === 'send-offer')) {
      // The client restarted and is offered the transfer again, under a new id: a late ACK from
      // the process that died would otherwise claim chunks the new one never wrote to disk,
      // and they would never be sent again.
      this.transferId = this.renumber(this);
      this.offerBytes = this.encodeOffer();
    }
    this.run(actions);
  }

  private encodeOffer(): Uint8Array {
    return encode({ type: 'offer', transferId: this.transferId, manifest: this.signed.bytes, signature: this.signed.signature });
  }
  cancel(reason: string): void { this.run(this.sender.cancel(reason)); }

  private run(actions: SenderAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'send-offer':
          this.endpoint.send(this.offerBytes, this.peer);
          break;
        case 'send-chunk': {
          // Each datagram needs its own buffer: dgram sends asynchronously.
          const m = this.release.manifest;
          const len = Math.min(m.chunkSize, m.size - a.index * m.chunkSize);
          const buf = Buffer.allocUnsafe(DATA_HEADER_BYTES + len);
          writeDataHeader(buf, this.transferId, a.index);
          this.source.readChunk(a.index, buf, DATA_HEADER_BYTES);
          this.endpoint.send(buf, this.peer);
          break;
        }
        case 'send-result-ack':
          this.endpoint.send(encode({ type: 'resultAck', transferId: this.transferId }), this.peer);
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
