/**
 * The server's side of the secure channel, between the UDP endpoint and the server logic. It
 * answers handshakes, keeps one session per client, and hands up only datagrams that decrypted
 * under a session, with the client key that session proved. Everything else is dropped and
 * counted. Cheap to refuse: until a sender echoes a cookie for its address (one HMAC to check),
 * it gets at most a COOKIE reply, no key exchange and no state; handshakes are rate-limited per
 * address and in total, so a flood cannot starve the clients that already have sessions.
 */
import { decodeEnvelope, encodeCookie, encodeRefused, RefusedReason, type InitFrame, type SealedFrame } from '../protocol/envelope.js';
import { displayAddress, samePeer, type Endpoint, type Peer } from '../net/endpoint.js';
import { fingerprint } from './identity.js';
import type { Clock } from '../util/clock.js';
import { CookieJar } from './cookie.js';
import { clientIdOf, createResponse, HandshakeError, newKeyPair, readInit, type KeyPair, type SessionKeys } from './handshake.js';
import { KeyedBuckets, TokenBucket } from './rate-limit.js';
import { SealedSession } from './sealed-session.js';
import { DecodeError } from '../errors.js';

/** A warning about one address at most this often, about this many addresses remembered. */
const WARN_EVERY_MS = 60_000;
const MAX_WARNED = 1024;

/** A peer whose datagram decrypted under a session: `clientId` is the hash of its proven key. */
export interface AuthenticatedPeer extends Peer {
  readonly clientId: string;
  readonly clientKey: Uint8Array;
}

export interface ServerChannelLimits {
  /** Handshakes (key exchanges) per second, all senders together… */
  readonly handshakesPerSecond: number;
  readonly handshakeBurst: number;
  /** …and per source address. */
  readonly handshakesPerAddressPerSecond: number;
  readonly handshakeBurstPerAddress: number;
  /** COOKIE replies per second (each no bigger than the INIT it answers: no amplification). */
  readonly cookiesPerSecond: number;
  readonly maxSessions: number;
  /** A session not heard from this long is forgotten (the client then shakes hands again). */
  readonly sessionIdleMs: number;
  /** A session older than this is refused however busy (clients rekey well before). */
  readonly sessionMaxAgeMs: number;
}

/** A handshake costs the server about 0.4 ms of CPU (X25519 in node:crypto, HKDF, two AEADs:
 *  375 µs each in a loop; 1.2 ms before key objects were made the cheap way, handshake.ts): 1,000
 *  a second is at most ~40% of a core, and 10,000 devices coming back after a restart shake hands
 *  in 10 s (bench/fleet-sim.ts: all back in 12–13 s; 27.4 s at 400 a second). Per address, room
 *  for a site of devices behind one NAT address, not for one flooder. */
export const DEFAULT_LIMITS: ServerChannelLimits = {
  handshakesPerSecond: 1000,
  handshakeBurst: 2000,
  handshakesPerAddressPerSecond: 10,
  handshakeBurstPerAddress: 20,
  cookiesPerSecond: 5_000,
  maxSessions: 200_000,
  sessionIdleMs: 180_000,
  sessionMaxAgeMs: 45 * 60_000,
};

/** After a rekey, the old session still decrypts this long (datagrams already in flight). */
const RETIRE_GRACE_MS = 10_000;
/** A session the client never used (its RESPONSE was lost) is dropped after this. */
const UNCONFIRMED_MS = 10_000;
/** Last handshake stamp per client key, to refuse replayed INITs; bounded. */
const MAX_STAMPS = 200_000;

export interface ChannelStats {
  unauthenticated: number;
  malformed: number;
  cookiesSent: number;
  badCookie: number;
  rateLimited: number;
  handshakes: number;
  badHandshake: number;
  replayedHandshake: number;
  /** The same INIT again, answered with the same RESPONSE (no key exchange). */
  repeatedInit: number;
  revokedKey: number;
  unknownSession: number;
  wrongAddress: number;
  replayed: number;
  badTag: number;
  /** Messages the server logic sent to a peer with no session: dropped. */
  noSession: number;
}

/** A client's session, with what the server tracks about it. */
class Session extends SealedSession {
  confirmed = false;
  /** Until the client uses the session: the INIT it answers and the RESPONSE sent, to answer the
   *  same INIT again (the RESPONSE was lost, or came after the device's retry) without a second
   *  key exchange or a second session. */
  answered: { readonly key: string; readonly init: Buffer; readonly response: Buffer } | undefined;
  retireAt = Infinity;
  lastReceived: number;
  /** From our RESPONSE to the client's first datagram on the session: a round trip and the
   *  client's half of the handshake (undefined until it used the session). */
  handshakeRttMs: number | undefined;

  constructor(ourIndex: number, readonly peer: AuthenticatedPeer, theirIndex: number, keys: SessionKeys, createdAt: number) {
    super(ourIndex, theirIndex, keys, createdAt);
    this.lastReceived = createdAt;
  }
}

export class ServerChannel {
  readonly stats: ChannelStats = {
    unauthenticated: 0, malformed: 0, cookiesSent: 0, badCookie: 0, rateLimited: 0, handshakes: 0, badHandshake: 0,
    replayedHandshake: 0, repeatedInit: 0, revokedKey: 0, unknownSession: 0, wrongAddress: 0, replayed: 0, badTag: 0, noSession: 0,
  };
  private readonly limits: ServerChannelLimits;
  private readonly cookies: CookieJar;
  private readonly perAddress: KeyedBuckets;
  private readonly global: TokenBucket;
  private readonly cookieBudget: TokenBucket;
  private readonly byIndex = new Map<number, Session>();
  /** The session used to send to an address / to a client: the newest confirmed one. */
  private readonly byAddress = new Map<string, Session>();
  private readonly byClient = new Map<string, Session>();
  private readonly unconfirmed = new Map<string, Session>();
  /** Unconfirmed sessions by the ephemeral key of the INIT they answer. */
  private readonly byInit = new Map<string, Session>();
  private readonly stamps = new Map<string, number>();
  /** When each address was last warned about (oldest first, bounded). */
  private readonly warnedAt = new Map<string, number>();
  private handler: (data: Buffer, from: AuthenticatedPeer) => void = () => undefined;
  /** Peers sendChunks found a session for (emptied when any session is forgotten). */
  private chunksPeers = new WeakSet<Peer>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly options: {
    readonly endpoint: Endpoint;
    readonly clock: Clock;
    readonly identity: KeyPair;
    readonly random: (n: number) => Uint8Array;
    /** Refuse the handshake of a revoked client (checked before the costlier half of it). */
    readonly isRevoked?: (clientId: string) => boolean;
    /** Something the operator should hear (a device trusting another server's key), at most once
     *  a minute per address. */
    readonly onWarning?: (line: string) => void;
    readonly limits?: Partial<ServerChannelLimits>;
    /** This node's number (1-255) when several nodes serve one fleet: the top byte of every
     *  session index it hands out. */
    readonly nodeNumber?: number;
  }) {
    const now = options.clock.now();
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.cookies = new CookieJar(options.random, now);
    this.perAddress = new KeyedBuckets(this.limits.handshakesPerAddressPerSecond, this.limits.handshakeBurstPerAddress);
    this.global = new TokenBucket(this.limits.handshakesPerSecond, this.limits.handshakeBurst, now);
    this.cookieBudget = new TokenBucket(this.limits.cookiesPerSecond, this.limits.cookiesPerSecond, now);
    options.endpoint.onDatagram((data, from) => this.receive(data, from));
    this.sweeper = setInterval(() => this.sweep(options.clock.now()), 1000);
    this.sweeper.unref();
  }

  get port(): number { return this.options.endpoint.port; }
  get sessionCount(): number { return this.byIndex.size; }

  /** How long the client's current session took from our RESPONSE to its first datagram: a
   *  round trip, before anything else measured one (undefined: no session in use). */
  handshakeRttOf(clientId: string): number | undefined { return this.byClient.get(clientId)?.handshakeRttMs; }

  onDatagram(handler: (data: Buffer, from: AuthenticatedPeer) => void): void {
    this.handler = handler;
  }

  /** Seal `message` for the client at `to`; false (and counted) when it has no session. */
  send(message: Uint8Array, to: Peer): boolean {
    const s = this.byAddress.get(addressKey(to));
    if (!s) {
      this.stats.noSession++;
      return false;
    }
    this.options.endpoint.send(s.seal(message), s.peer);
    return true;
  }

  /**
   * A CHUNKS frame, already sealed under a release's content key, sent as it is: the session's
   * AEAD would only encrypt it twice. Only to an address that holds a session (it got the key
   * through it), so the server never sends module data to a stranger.
   */
  sendChunks(parts: readonly Uint8Array[], to: Peer): void {
    // Checked once per peer, not per datagram (forget() clears what was checked).
    if (!this.chunksPeers.has(to)) {
      if (!this.byAddress.has(addressKey(to))) {
        this.stats.noSession++;
        return;
      }
      this.chunksPeers.add(to);
    }
    this.options.endpoint.sendv(parts, to);
  }

  /** Datagrams the kernel dropped before this server read them (its socket's buffer full). */
  receiveDrops(): number | undefined {
    return this.options.endpoint.receiveDrops?.();
  }

  sendQueueCount(): number {
    return this.options.endpoint.sendQueueCount();
  }

  /** Forget every session of a client (its key was revoked). */
  dropClient(clientId: string): void {
    for (const s of [...this.byIndex.values()]) if (s.peer.clientId === clientId) this.forget(s);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    return this.options.endpoint.close();
  }

  /** Drop expired sessions. Called every second; exposed for tests with a fake clock. */
  sweep(now: number): void {
    for (const s of this.byIndex.values()) {
      const expired = now >= s.retireAt
        || (!s.confirmed && now - s.createdAt > UNCONFIRMED_MS)
        || now - s.lastReceived > this.limits.sessionIdleMs
        || now - s.createdAt > this.limits.sessionMaxAgeMs;
      if (expired) this.forget(s);
    }
  }

  private forget(s: Session): void {
    this.chunksPeers = new WeakSet<Peer>();
    this.byIndex.delete(s.ourIndex);
    const key = addressKey(s.peer);
    if (this.byAddress.get(key) === s) this.byAddress.delete(key);
    if (this.byClient.get(s.peer.clientId) === s) this.byClient.delete(s.peer.clientId);
    if (this.unconfirmed.get(s.peer.clientId) === s) this.unconfirmed.delete(s.peer.clientId);
    this.unanswer(s);
  }

  private unanswer(s: Session): void {
    if (s.answered && this.byInit.get(s.answered.key) === s) this.byInit.delete(s.answered.key);
    s.answered = undefined;
  }

  private receive(data: Buffer, from: Peer): void {
    let frame;
    try {
      frame = decodeEnvelope(data);
    } catch (err) {
      if (err instanceof DecodeError && err.code === 'unauthenticated') this.stats.unauthenticated++;
      else this.stats.malformed++;
      return;
    }
    const now = this.options.clock.now();
    switch (frame.type) {
      case 'sealed': return this.onSealed(frame, from, now);
      case 'init': return this.onInit(frame, data, from, now);
      default: this.stats.unauthenticated++; // COOKIE and RESPONSE only go to clients
    }
  }

  private onSealed(frame: SealedFrame, from: Peer, now: number): void {
    const s = this.byIndex.get(frame.receiverIndex);
    if (!s) {
      this.stats.unknownSession++;
      // Tell the device at once, instead of leaving it to find out by its timeouts (after a
      // restart, or when a balancer moved it here from another node). Smaller than what it
      // answers, and from the cookie budget: no amplification, no flood.
      if (this.cookieBudget.take(now)) {
        this.options.endpoint.send(encodeRefused({ receiverIndex: frame.receiverIndex, reason: RefusedReason.unknownSession, serverKey: this.options.identity.publicKey }), from);
      }
      return;
    }
    // A session belongs to the address that shook hands; a client that moves shakes hands again.
    if (!samePeer(s.peer, from)) { this.stats.wrongAddress++; return; }
    const plain = s.open(frame);
    if (plain === 'replayed') { this.stats.replayed++; return; }
    if (plain === 'bad-tag') { this.stats.badTag++; return; }
    s.lastReceived = now;
    if (!s.confirmed) this.confirm(s, now);
    this.handler(plain, s.peer);
  }

  /** The client used its new session, so it has the keys: send with it from now on. */
  private confirm(s: Session, now: number): void {
    s.confirmed = true;
    s.handshakeRttMs = now - s.createdAt;
    this.unanswer(s);
    const id = s.peer.clientId;
    if (this.unconfirmed.get(id) === s) this.unconfirmed.delete(id);
    const old = this.byClient.get(id);
    if (old && old !== s) {
      old.retireAt = Math.min(old.retireAt, now + RETIRE_GRACE_MS);
      const oldKey = addressKey(old.peer);
      if (this.byAddress.get(oldKey) === old) this.byAddress.delete(oldKey);
    }
    this.byClient.set(id, s);
    this.byAddress.set(addressKey(s.peer), s);
  }

  private onInit(frame: InitFrame, data: Buffer, from: Peer, now: number): void {
    if (!this.cookies.isValid(frame.cookie, from.address, from.port, now)) {
      if (frame.cookie.some((b) => b !== 0)) this.stats.badCookie++;
      if (!this.cookieBudget.take(now)) { this.stats.rateLimited++; return; }
      this.stats.cookiesSent++;
      this.options.endpoint.send(encodeCookie({ receiverIndex: frame.senderIndex, cookie: this.cookies.make(from.address, from.port, now) }), from);
      return;
    }
    // A device repeats its INIT until answered; a busy server answers after the repeat. The same
    // bytes from the same address get the same RESPONSE (smaller than the INIT, from the cookie
    // budget): no second key exchange, no second session for a device to miss.
    const initKey = Buffer.from(frame.ephemeral).toString('base64');
    const earlier = this.byInit.get(initKey);
    if (earlier?.answered && samePeer(earlier.peer, from) && earlier.answered.init.equals(data)) {
      if (!this.cookieBudget.take(now)) { this.stats.rateLimited++; return; }
      this.stats.repeatedInit++;
      this.options.endpoint.send(earlier.answered.response, from);
      return;
    }
    if (!this.perAddress.take(from.address, now) || !this.global.take(now) || this.byIndex.size >= this.limits.maxSessions) {
      this.stats.rateLimited++;
      return;
    }
    let accepted;
    try {
      accepted = readInit(this.options.identity, frame, (key) => {
        if (this.options.isRevoked?.(hex(clientIdOf(key)))) throw new HandshakeError('revoked', 'revoked key');
      });
    } catch (err) {
      const code = err instanceof HandshakeError ? err.code : '';
      if (code === 'revoked') this.stats.revokedKey++;
      else this.stats.badHandshake++;
      // The address is proven (the cookie) and the handshake budget paid: say why, in fewer
      // bytes than the INIT, so the device can say so too instead of retrying in silence.
      if (code === 'revoked' || code === 'wrong-server-key') {
        const reason = code === 'revoked' ? RefusedReason.revoked : RefusedReason.wrongServerKey;
        this.options.endpoint.send(encodeRefused({ receiverIndex: frame.senderIndex, reason, serverKey: this.options.identity.publicKey }), from);
        if (code === 'wrong-server-key') {
          this.warnOnce(from, now, `a device at ${displayAddress(from)} shakes hands with another server's identity key: it must trust this server's `
            + `identity.pub (key ${fingerprint(this.options.identity.publicKey)}) and release.pub`);
        }
      }
      return;
    }
    const clientId = hex(clientIdOf(accepted.clientPublic));
    const last = this.stamps.get(clientId);
    if (last !== undefined && accepted.stamp <= last) {
      this.stats.replayedHandshake++;
      return;
    }
    this.stamps.delete(clientId);
    this.stamps.set(clientId, accepted.stamp);
    if (this.stamps.size > MAX_STAMPS) this.stamps.delete(this.stamps.keys().next().value!);

    const index = this.newIndex();
    const { bytes, keys } = createResponse(accepted, index, newKeyPair());
    const peer: AuthenticatedPeer = { address: from.address, port: from.port, clientId, clientKey: accepted.clientPublic };
    const session = new Session(index, peer, accepted.clientIndex, keys, now);
    const previous = this.unconfirmed.get(clientId);
    if (previous) this.forget(previous);
    this.byIndex.set(index, session);
    this.unconfirmed.set(clientId, session);
    session.answered = { key: initKey, init: Buffer.from(data), response: bytes };
    this.byInit.set(initKey, session);
    this.stats.handshakes++;
    this.options.endpoint.send(bytes, from);
  }

  private warnOnce(from: Peer, now: number, line: string): void {
    const key = from.address;
    const last = this.warnedAt.get(key);
    if (last !== undefined && now - last < WARN_EVERY_MS) return;
    this.warnedAt.delete(key);
    this.warnedAt.set(key, now);
    if (this.warnedAt.size > MAX_WARNED) this.warnedAt.delete(this.warnedAt.keys().next().value!);
    this.options.onWarning?.(line);
  }

  /** A session index no session has; with a node number, its top byte (the connection id names
   *  the node that holds the session: docs/protocol.md, "Several nodes"). */
  private newIndex(): number {
    const node = this.options.nodeNumber;
    for (;;) {
      const b = this.options.random(4);
      const i = ((node === undefined ? b[0]! : node) << 24 | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
      if (!this.byIndex.has(i)) return i;
    }
  }
}

function addressKey(p: Peer): string {
  return `${p.address}|${p.port}`;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}
