/**
 * One module pushed to one client: the signed OFFER for that client (with the release's content
 * key, inside its session), and the release's sealed chunks sent by an OutgoingFile in CHUNKS
 * frames sized for the client's path.
 */
import { encode, type AckMessage, type Message } from '../protocol/messages.js';
import type { SenderOptions, SendOutcome } from '../transfer/sender.js';
import type { PathMtu } from '../transfer/path-mtu.js';
import type { Peer } from '../net/endpoint.js';
import type { Clock } from '../util/clock.js';
import type { SharedRate, Turn } from '../transfer/rate-share.js';
import { OutgoingFile, type TransferProgress } from '../files/outgoing-file.js';
import { SealedChunkWire } from '../files/sealed-chunk-wire.js';
import type { SignedManifest } from '../security/manifest.js';
import type { Release } from './release.js';
import type { SealedRelease } from './sealed-release.js';
import type { NxtError } from '../errors.js';
import { ResultCode } from '../protocol/result-codes.js';
import { DEFAULT_RTT_OPTIONS } from '../transfer/rtt.js';
import type { ClientRecord } from './registry.js';

export type PushProgress = TransferProgress;

/** Sealed bytes sent with the OFFER, before the device has accepted it: QUIC's initial window
 *  (RFC 9002 §7.2, 14,720 bytes), which a path is expected to take at once. A module this small
 *  (10 KiB with its tags) is all on the device once it has checked the offer. */
export const FIRST_FLIGHT_BYTES = 14_720;

/** A device's next OFFER waits at least this long for its answer before it goes again: its
 *  check of the signature takes 5–26 ms on the benchmark VM (tweetnacl), more on a slow ARM box. */
export const OFFER_WAIT_MIN_MS = 60;

/** A first OFFER's answer is guessed to take the handshake's round trip and this (the top of
 *  the signature checks measured on the benchmark VM). */
const FIRST_CHECK_GUESS_MS = 30;

/**
 * How long a device's OFFER waits for its answer before it goes again, from how long the last one
 * it answered took (its round trip and its check of the signature): twice that, at least
 * OFFER_WAIT_MIN_MS, at most the RTO before any sample (500 ms). On a link that loses a fifth of
 * its datagrams a third of offers or their answers are lost; each cost 500 ms, 1 s, 2 s … before,
 * ~60, 120, 240 ms now. A device never offered anything here is guessed from its session's
 * handshake (`handshakeRttMs`: our RESPONSE to its first datagram); with neither, undefined (the
 * 500 ms). A guess too short costs a repeated OFFER, which a device answers at once.
 */
export function offerTimeoutFor(lastAnswerMs: number | undefined, handshakeRttMs?: number): number | undefined {
  const answer = lastAnswerMs ?? (handshakeRttMs === undefined ? undefined : handshakeRttMs + FIRST_CHECK_GUESS_MS);
  if (answer === undefined) return undefined;
  return Math.min(DEFAULT_RTT_OPTIONS.initialRtoMs, Math.max(OFFER_WAIT_MIN_MS, 2 * answer));
}

/** How many of a sealed release's first chunks fit the first flight. */
export function firstFlightChunks(sealed: Pick<SealedRelease, 'size' | 'chunkSize' | 'totalChunks' | 'entryBytes'>): number {
  const sealedBytes = sealed.size + sealed.totalChunks * (sealed.entryBytes - sealed.chunkSize);
  return sealedBytes <= FIRST_FLIGHT_BYTES ? sealed.totalChunks : Math.floor(FIRST_FLIGHT_BYTES / sealed.entryBytes);
}

/** What a push session needs of the server's channel. */
export interface PushChannel {
  /** A message, sealed by the client's session. */
  send(message: Uint8Array, to: Peer): unknown;
  /** A CHUNKS frame, already sealed under the release's content key: sent as it is. */
  sendChunks(parts: readonly Uint8Array[], to: Peer): void;
  sendQueueCount(): number;
}

export class PushSession {
  private readonly file: OutgoingFile;
  /** Chunks this session may send itself (all, unless a multicast group sends them first). */
  private gate = Infinity;
  readonly chunkSize: number;
  private readonly wire: SealedChunkWire;

  constructor(
    transferId: number,
    readonly client: ClientRecord,
    readonly release: Release,
    /** Signed for this client, with the chunk size `sealed` was made with. */
    signed: SignedManifest,
    private readonly sealed: SealedRelease,
    path: PathMtu,
    private readonly channel: PushChannel,
    clock: Clock,
    senderOptions: Partial<SenderOptions>,
    /** Gives this session a fresh transfer id and returns it. */
    renumber: (session: PushSession) => number,
    /** The device may be sent chunks in pieces (when they do not fit its path's datagrams). */
    pieces = false,
    /** `--max-rate`, shared with the server's other transfers. */
    shared?: SharedRate,
  ) {
    this.chunkSize = sealed.chunkSize;
    // The client's address now, on every send: it may re-register from a new one mid-transfer.
    const wire = new SealedChunkWire(sealed, {
      sendv: (parts) => channel.sendChunks(parts, client.peer),
      queued: () => channel.sendQueueCount(),
    }, path, pieces);
    this.wire = wire;
    this.file = new OutgoingFile(transferId, sealed.totalChunks, wire, {
      send: (bytes) => channel.send(bytes, client.peer),
      // Signed once per session: a re-offer repeats the same manifest, not a new signature.
      encodeOffer: (id) => encode({ type: 'offer', transferId: id, manifest: signed.bytes, signature: signed.signature, contentKey: sealed.key, sealId: sealed.sealId }),
      renumber: () => renumber(this),
    }, clock, { firstFlight: firstFlightChunks(sealed), ...senderOptions }, shared);
  }

  /** Start sending; chunks go out as the release's sealing makes them available (and, in a
   *  multicast push, once the group's pass let them: see holdForGroup). */
  start(): void {
    const sealed = this.sealed;
    this.file.setAvailable(Math.min(sealed.sealedChunks, this.gate));
    if (sealed.sealedChunks < sealed.totalChunks && !sealed.failure) {
      const stop = sealed.onProgress(() => {
        if (sealed.failure) this.cannotSeal(sealed.failure);
        else this.file.setAvailable(Math.min(sealed.sealedChunks, this.gate));
        if (sealed.failure || sealed.sealedChunks === sealed.totalChunks) stop();
      });
      void this.file.done.then(stop);
    }
    this.file.start();
    if (sealed.failure) this.cannotSeal(sealed.failure);
  }

  /** start() once `turn` (under `--max-rate`; undefined: none) lets it; false if the session
   *  ended while it waited (cancelled), and never started. */
  async startInTurn(turn: Turn | undefined): Promise<boolean> {
    this.turn = turn;
    if (turn && !await Promise.race([turn.admitted.then(() => true), this.done.then(() => false)])) return false;
    this.start();
    return true;
  }

  /** Sealing stopped short: the push fails with the reason (a full disk is a storage failure). */
  private cannotSeal(failure: NxtError): void {
    this.file.cancel(`cannot send ${this.release.manifest.name}: ${failure.message}`, failure.code === 'storage' ? ResultCode.storage : ResultCode.cancelled);
  }

  /**
   * Before start(): send no chunk of its own until openGate() — the multicast group carries them
   * first (server/group-push.ts); the device's ACKs still come here, and what they leave missing
   * is what this session sends once the gate opens.
   */
  holdForGroup(): void { this.gate = 0; }

  openGate(): void {
    if (this.gate === Infinity) return;
    this.gate = Infinity;
    this.file.setAvailable(this.sealed.sealedChunks);
  }

  get gateOpen(): boolean { return this.gate === Infinity; }

  /** The device said it is not in the group (it refuses groups, or could not join one). */
  declinedGroup = false;

  /** MULTICAST_LEAVE from the device: everything by unicast, at once (the group would find it
   *  deaf only after half a second and a question). */
  onGroupDeclined(): void {
    if (this.gateOpen) return;
    this.declinedGroup = true;
    this.openGate();
  }

  get sealedRelease(): SealedRelease { return this.sealed; }
  /** How long the device took to answer the OFFER, from its last sending (undefined: it has not). */
  get offerAnswerMs(): number | undefined { return this.file.offerAnswerMs; }
  isAcked(index: number): boolean { return this.file.isAcked(index); }
  /** How many chunks the device has acknowledged. */
  get ackedCount(): number { return this.file.ackedCount; }
  /** One past the highest chunk the device has acknowledged (0: none). */
  get frontier(): number { return this.file.frontier; }
  get receiveEdge(): number { return this.file.receiveEdge; }
  /** Smoothed round-trip time to the device, once measured. */
  get srtt(): number | undefined { return this.file.srtt; }
  /** When the device last said anything about this transfer. */
  get heardAt(): number { return this.file.heardAt; }
  /** Ask the device for an ACK of what it holds now (the group's question to one that seems deaf). */
  askWhatItHolds(): void { this.file.askWhatItHolds(); }
  /** A message to the device, in its session. */
  say(message: Message): void { this.channel.send(encode(message), this.client.peer); }

  get transferId(): number { return this.file.transferId; }
  /** The least it may be held to under `--max-rate` (bytes per ms): a chunk a second. */
  get floor(): number { return this.file.floor; }
  get done(): Promise<SendOutcome> { return this.file.done; }
  get startedAt(): number { return this.file.startedAt; }
  get dataDoneAt(): number | undefined { return this.file.dataDoneAt; }
  get peer(): Peer { return this.client.peer; }
  /** Its turn under `--max-rate` (startInTurn): while that waits, so does this session. */
  private turn: Turn | undefined;
  get progress(): PushProgress {
    const p = this.file.progress;
    return this.turn?.waiting === true ? { ...p, phase: 'waiting' } : p;
  }
  /** Its chunks go in pieces (PIECE frames): the path's datagrams cannot carry one whole. */
  get pieced(): boolean { return this.wire.pieced; }
  /** Chunks sent so far, each time it was sent (a chunk in pieces counts once). */
  get chunksSent(): number { return this.wire.chunksSent; }

  /**
   * This session's chunks are cut into several frames, by IP or in pieces: once it has sent
   * `minChunks` chunks, it gives up (ends, `fragmentsLost`) if more than `maxResentShare` of
   * what it sent was sending again.
   */
  watchFragments(minChunks: number, maxResentShare: number): void {
    this.fragmentLimit = { minChunks, maxResentShare };
  }

  /** It gave up on datagrams that IP fragments, or on pieces (watchFragments). */
  fragmentsLost = false;
  private fragmentLimit: { readonly minChunks: number; readonly maxResentShare: number } | undefined;

  onAck(ack: AckMessage): void {
    this.file.onAck(ack);
    const limit = this.fragmentLimit;
    if (!limit || this.fragmentsLost) return;
    const p = this.file.progress;
    const sent = this.wire.chunksSent;
    if (p.phase === 'sending' && sent >= limit.minChunks && p.retransmits - p.spurious > limit.maxResentShare * sent) {
      this.fragmentsLost = true;
      this.file.cancel(this.wire.pieced
        ? 'chunks in pieces are lost too often on this path: sent again in 1400-byte chunks'
        : 'datagrams that IP fragments are lost too often on this path: sent again in whole datagrams');
    }
  }
  onResult(msg: Extract<Message, { type: 'result' }>): void { this.file.onResult(msg.code, msg.message, msg.active); }
  onAbort(code: number, message: string): void { this.file.onAbort(code, message); }
  cancel(reason: string): void { this.file.cancel(reason); }
  /** The server's socket dropped datagrams unread: this device's silence may be the server's. */
  excuseSilence(): void { this.file.excuseSilence(); }
}
