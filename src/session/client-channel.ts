/**
 * The client's side of the secure channel: it shakes hands with the one server it trusts (whose
 * identity key it installed), seals every message it sends, and hands up only datagrams that
 * decrypted under its session. It shakes hands again before a session ages out (rekey), and
 * whenever the agent says the server stopped answering (the server restarted and forgot us).
 */
import { EventEmitter } from 'node:events';
import { errorMessage } from '../errors.js';
import { decodeEnvelope, RefusedReason, type ChunksFrame, type CookieFrame, type PieceFrame, type RefusedFrame, type ResponseFrame, type SealedFrame } from '../protocol/envelope.js';
import { displayAddress, samePeer, type Endpoint, type Peer } from '../net/endpoint.js';
import { fingerprint } from './identity.js';
import type { Clock } from '../util/clock.js';
import { createInit, newKeyPair, readResponse, type Initiation, type KeyPair } from './handshake.js';
import { SealedSession as Session } from './sealed-session.js';

export interface ClientChannelTiming {
  /** First handshake retry; doubles up to handshakeRetryMaxMs. */
  readonly handshakeRetryMs: number;
  readonly handshakeRetryMaxMs: number;
  /** Shake hands again after this long (the server refuses sessions older than 45 minutes). */
  readonly rekeyAfterMs: number;
}

export const DEFAULT_CHANNEL_TIMING: ClientChannelTiming = {
  handshakeRetryMs: 500,
  handshakeRetryMaxMs: 30_000,
  rekeyAfterMs: 10 * 60_000,
};

/** The previous session keeps decrypting this long after a rekey (datagrams in flight). */
const PREVIOUS_GRACE_MS = 15_000;
/** The same refusal is reported again after this long (the handshake keeps being retried). */
const REFUSAL_REPEAT_MS = 60_000;
/** After the server answered (a COOKIE, a notice), handshake retries stay this short for a while:
 *  it is alive, and a handshake it did not answer met its limit (a fleet coming back at once). */
const BUSY_RETRY_MAX_MS = 4000;
const ALIVE_FOR_MS = 60_000;
/** A pending INIT is sent again as it is for this long, then made anew (the server keeps an unused
 *  session 10 s). */
const INIT_REPEAT_MS = 5000;
/** "Unknown session" makes a handshake at most this often. */
const UNKNOWN_SESSION_HANDSHAKE_MS = 1000;

export interface ClientChannelStats {
  foreign: number;
  malformed: number;
  unknownSession: number;
  replayed: number;
  badTag: number;
  badHandshake: number;
  handshakes: number;
}

/** Events: 'established' (a new session is ready: say something on it so the server uses it). */
export class ClientChannel extends EventEmitter {
  readonly stats: ClientChannelStats = { foreign: 0, malformed: 0, unknownSession: 0, replayed: 0, badTag: 0, badHandshake: 0, handshakes: 0 };
  private readonly timing: ClientChannelTiming;
  private current: Session | undefined;
  private previous: { session: Session; until: number } | undefined;
  private pending: Initiation | undefined;
  /** The pending INIT as sent, and when it was made: repeated as it is for a while. */
  private pendingInit: { readonly bytes: Buffer; readonly at: number } | undefined;
  private cookie: Uint8Array = new Uint8Array(16);
  private retryDelay: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private rekeyTimer: NodeJS.Timeout | undefined;
  private handler: (data: Buffer, from: Peer) => void = () => undefined;
  private chunksHandler: (frame: ChunksFrame | PieceFrame) => void = () => undefined;
  private closed = false;
  /** Where the server is: its address may change (a host name resolved again, see reconnect). */
  private serverValue: Peer;
  private lastRefusal = '';
  private lastRefusalAt = 0;
  private lastToldUnknownAt = Number.NEGATIVE_INFINITY;
  /** When the server last answered outside a session (monotonic ms). */
  private heardAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: {
    readonly endpoint: Endpoint;
    readonly server: Peer;
    readonly serverKey: Uint8Array;
    /** Looks the server's host name up again (absent: it was given as an address). Resolves
     *  undefined when the lookup fails (the old address is kept). */
    readonly resolveServer?: () => Promise<string | undefined>;
    readonly identity: KeyPair;
    readonly clock: Clock;
    readonly random: (n: number) => Uint8Array;
    /** A number above every one this key used before (even across restarts): see handshake.ts. */
    readonly nextStamp: () => number;
    readonly timing?: Partial<ClientChannelTiming>;
  }) {
    super();
    this.serverValue = { ...options.server };
    this.timing = { ...DEFAULT_CHANNEL_TIMING, ...options.timing };
    this.retryDelay = this.timing.handshakeRetryMs;
    options.endpoint.onDatagram((data, from) => this.receive(data, from));
  }

  get port(): number { return this.options.endpoint.port; }
  get isEstablished(): boolean { return this.current !== undefined; }
  /** How long ago the current session was made (Infinity without one). */
  get sessionAgeMs(): number { return this.current ? this.options.clock.now() - this.current.createdAt : Number.POSITIVE_INFINITY; }

  onDatagram(handler: (data: Buffer, from: Peer) => void): void {
    this.handler = handler;
  }

  /** CHUNKS and PIECE frames from the server's address: sealed under a release's content key,
   *  which the handler holds (from the OFFER that came through the session). */
  onChunks(handler: (frame: ChunksFrame | PieceFrame) => void): void {
    this.chunksHandler = handler;
  }

  /** Shake hands (unless already doing so). */
  connect(): void {
    if (this.closed || this.pending) return;
    this.retryDelay = this.timing.handshakeRetryMs;
    this.sendInit();
  }

  /**
   * The server stopped answering on our session (it restarted and forgot it, or we moved): shake
   * hands anew. The current session stays in use until the new one is up: if the server was only
   * slow, nothing is lost.
   */
  reconnect(): void {
    this.connect();
    // A server named by host name may have moved: look it up again for the next handshake.
    void this.options.resolveServer?.().then((address) => {
      if (address === undefined || address === this.serverValue.address) return;
      this.emit('warning', `the server's name now resolves to ${address} (was ${this.serverValue.address})`);
      this.serverValue = { address, port: this.serverValue.port };
    });
  }

  /** The server's address now. */
  get server(): Peer { return this.serverValue; }

  /** Seal and send; without a session the message is dropped (the agent repeats what matters). */
  send(message: Uint8Array, _to?: Peer): void {
    const s = this.current;
    if (!s) {
      this.connect();
      return;
    }
    this.options.endpoint.send(s.seal(message), this.server);
  }

  close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.rekeyTimer);
    return this.options.endpoint.close();
  }

  /**
   * Send an INIT: the pending one again while it is young (`repeat`: a retry), else a fresh one
   * (new ephemeral key, new stamp). The server answers a repeated INIT with the RESPONSE it sent
   * already, so a retry that crosses a late answer costs the server nothing and leaves one session;
   * a fresh INIT costs it a key exchange. After INIT_REPEAT_MS the INIT is made anew: the server
   * forgets an unused session after 10 s and refuses its stamp again.
   */
  private sendInit(repeat = false): void {
    if (this.closed) return;
    try {
      const now = this.options.clock.now();
      if (repeat && this.pending && this.pendingInit && now - this.pendingInit.at < INIT_REPEAT_MS) {
        this.options.endpoint.send(this.pendingInit.bytes, this.server);
      } else {
        const { bytes, initiation } = createInit({
          clientStatic: this.options.identity, serverPublic: this.options.serverKey, senderIndex: this.newIndex(),
          cookie: this.cookie, stamp: this.options.nextStamp(), ephemeral: newKeyPair(),
        });
        this.pending = initiation;
        this.pendingInit = { bytes, at: now };
        this.options.endpoint.send(bytes, this.server);
      }
    } catch (err) {
      // Called from timers: an error here must not end the process. Try again at the next retry.
      this.emit('warning', `cannot start a handshake: ${errorMessage(err)}`);
    }
    clearTimeout(this.retryTimer);
    // Jittered (½ to 1½ times the delay): devices that lost the server at the same moment (it
    // restarted) must not come back in lockstep, each round hitting its handshake limit at once.
    const delay = Math.round(this.retryDelay * (0.5 + this.options.random(1)[0]! / 256));
    // A server that answered lately (a COOKIE, a notice) is alive, only busy (at its handshake
    // limit, which drops the rest unanswered): keep trying every few seconds, not every 30.
    const alive = this.options.clock.now() - this.heardAt < ALIVE_FOR_MS;
    this.retryDelay = Math.min(this.retryDelay * 2, alive ? BUSY_RETRY_MAX_MS : this.timing.handshakeRetryMaxMs);
    this.retryTimer = setTimeout(() => this.sendInit(true), delay);
    this.retryTimer.unref();
  }

  private receive(data: Buffer, from: Peer): void {
    if (!samePeer(from, this.server)) { this.stats.foreign++; return; }
    let frame;
    try {
      frame = decodeEnvelope(data);
    } catch {
      this.stats.malformed++;
      return;
    }
    switch (frame.type) {
      case 'sealed': return this.onSealed(frame);
      case 'chunks':
      case 'piece': return this.chunksHandler(frame);
      case 'cookie': return this.onCookie(frame);
      case 'response': return this.onResponse(frame);
      case 'refused': return this.onRefused(frame);
      default: this.stats.malformed++; // an INIT: only servers receive those
    }
  }

  private onCookie(frame: CookieFrame): void {
    if (!this.pending || frame.receiverIndex !== this.pending.senderIndex) { this.stats.unknownSession++; return; }
    this.heardAt = this.options.clock.now();
    // The same cookie back means the server did not accept it (it rotated, or we moved): wait
    // for the retry timer rather than answer at once and loop.
    if (Buffer.compare(frame.cookie, this.cookie) === 0) return;
    this.cookie = new Uint8Array(frame.cookie);
    this.sendInit();
  }

  /**
   * The server says it will not take our handshake. Unauthenticated (anyone on the path could say
   * it), so nothing changes but what the operator reads: the handshake is tried again as before.
   */
  private onRefused(frame: RefusedFrame): void {
    if (frame.reason === RefusedReason.unknownSession) { this.onSessionUnknown(frame); return; }
    if (!this.pending || frame.receiverIndex !== this.pending.senderIndex) { this.stats.unknownSession++; return; }
    const server = displayAddress(this.server);
    const line = frame.reason === RefusedReason.revoked
      ? `the server at ${server} refuses this device: its key is revoked there (ask the operator)`
      : frame.reason === RefusedReason.wrongServerKey
        ? `the server at ${server} does not take our handshake: its identity key is ${fingerprint(frame.serverKey)}, this client trusts `
          + `${fingerprint(this.options.serverKey)}. Give this client that server's identity.pub and release.pub (or this is not the server meant)`
        : `the server at ${server} refuses our handshake (reason ${frame.reason})`;
    const now = this.options.clock.now();
    if (line === this.lastRefusal && now - this.lastRefusalAt < REFUSAL_REPEAT_MS) return;
    this.lastRefusal = line;
    this.lastRefusalAt = now;
    this.emit('warning', line);
  }

  /**
   * The server does not know the session we send on (it restarted, or we reach another node now):
   * shake hands at once rather than after unanswered renewals. It names the server's index of our
   * session, which only the path sees; a forged notice costs at most one handshake a second.
   */
  private onSessionUnknown(frame: RefusedFrame): void {
    const now = this.options.clock.now();
    if (this.current?.theirIndex !== frame.receiverIndex || this.pending || now - this.lastToldUnknownAt < UNKNOWN_SESSION_HANDSHAKE_MS) {
      this.stats.unknownSession++;
      return;
    }
    this.lastToldUnknownAt = now;
    this.heardAt = now;
    this.reconnect();
  }

  private onResponse(frame: ResponseFrame): void {
    const pending = this.pending;
    if (!pending || frame.receiverIndex !== pending.senderIndex) { this.stats.unknownSession++; return; }
    let keys;
    try {
      keys = readResponse(pending, this.options.identity, frame);
    } catch {
      this.stats.badHandshake++;
      return;
    }
    const now = this.options.clock.now();
    this.pending = undefined;
    this.pendingInit = undefined;
    clearTimeout(this.retryTimer);
    if (this.current) this.previous = { session: this.current, until: now + PREVIOUS_GRACE_MS };
    this.current = new Session(pending.senderIndex, frame.senderIndex, keys, now);
    this.stats.handshakes++;
    clearTimeout(this.rekeyTimer);
    this.rekeyTimer = setTimeout(() => this.connect(), this.timing.rekeyAfterMs);
    this.rekeyTimer.unref();
    this.emit('established');
  }

  private onSealed(frame: SealedFrame): void {
    const now = this.options.clock.now();
    if (this.previous && now > this.previous.until) this.previous = undefined;
    const s = this.current?.ourIndex === frame.receiverIndex ? this.current
      : this.previous?.session.ourIndex === frame.receiverIndex ? this.previous.session : undefined;
    if (!s) { this.stats.unknownSession++; return; }
    const plain = s.open(frame);
    if (plain === 'replayed') this.stats.replayed++;
    else if (plain === 'bad-tag') this.stats.badTag++;
    else this.handler(plain, this.server);
  }

  private newIndex(): number {
    const b = this.options.random(4);
    return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }
}
