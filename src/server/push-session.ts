/**
 * One module pushed to one client: the signed OFFER for that client, and the file sent by an
 * OutgoingFile through the client's session.
 */
import { encode, type AckMessage, type Message } from '../protocol/messages.js';
import type { SenderOptions, SendOutcome } from '../transfer/sender.js';
import type { Peer } from '../net/endpoint.js';
import type { Clock } from '../util/clock.js';
import { OutgoingFile, type TransferProgress } from '../files/outgoing-file.js';
import type { Release } from './release.js';
import type { ClientRecord } from './registry.js';

export type PushProgress = TransferProgress;

export class PushSession {
  private readonly file: OutgoingFile;

  constructor(
    transferId: number,
    readonly client: ClientRecord,
    readonly release: Release,
    endpoint: { send(data: Uint8Array, to: Peer): unknown },
    clock: Clock,
    senderOptions: Partial<SenderOptions>,
    /** Gives this session a fresh transfer id and returns it. */
    renumber: (session: PushSession) => number,
  ) {
    // Signed once per session: a re-offer repeats the same manifest, not a new signature.
    const signed = release.signedFor(client.id);
    const m = release.manifest;
    this.file = new OutgoingFile(transferId, { path: release.path, size: m.size, chunkSize: m.chunkSize }, {
      // The client's address now: it may re-register from a new one mid-transfer.
      send: (bytes) => endpoint.send(bytes, client.peer),
      encodeOffer: (id) => encode({ type: 'offer', transferId: id, manifest: signed.bytes, signature: signed.signature }),
      renumber: () => renumber(this),
    }, clock, senderOptions);
  }

  get transferId(): number { return this.file.transferId; }
  get done(): Promise<SendOutcome> { return this.file.done; }
  get startedAt(): number { return this.file.startedAt; }
  get dataDoneAt(): number | undefined { return this.file.dataDoneAt; }
  get peer(): Peer { return this.client.peer; }
  get progress(): PushProgress { return this.file.progress; }

  start(): void { this.file.start(); }
  onAck(ack: AckMessage): void { this.file.onAck(ack); }
  onResult(msg: Extract<Message, { type: 'result' }>): void { this.file.onResult(msg.code, msg.message, msg.active); }
  onAbort(code: number, message: string): void { this.file.onAbort(code, message); }
  cancel(reason: string): void { this.file.cancel(reason); }
}
