/**
 * A UDP proxy on real sockets between one client and a server, for end-to-end tests and
 * benchmarks. Each datagram passes through `rule`, which may drop it, change it, duplicate it or
 * delay it, with a seeded random source so that a failing run replays.
 */
import { CHUNKS_HEADER_BYTES, EnvelopeType, forEachChunk } from '../../src/protocol/envelope.js';
import dgram from 'node:dgram';
import { seededRandom } from './random.js';
import { EventQueue } from './event-queue.js';

export type Direction = 'to-server' | 'to-client';

export interface ProxyRule {
  /** Return the datagrams to forward (none = drop) and an optional delay in ms for each. */
  (datagram: Buffer, direction: Direction): { data: Buffer; delayMs?: number }[];
}

export class UdpProxy {
  /** Faces the client: the client sends here as if it were the server. */
  private readonly front = dgram.createSocket('udp4');
  /** Faces the server: the server sees the proxy as one client at this socket's port. */
  private readonly back = dgram.createSocket('udp4');
  private client: { address: string; port: number } | undefined;
  /** Where the server last answered from: a TFTP server answers from a new port (its TID). */
  private serverReplyPort: number;
  /** Delayed datagrams, by due time (then arrival): one timer for all of them. Node keeps a timer
   *  list per distinct delay and, after a stall, runs each list whole before the next, which
   *  reordered datagrams by the length of the stall; a heap keeps them in due order, as netem. */
  private readonly due = new EventQueue<{ at: number; seq: number; send: () => void }>();
  private dueSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  forwarded = 0;
  dropped = 0;
  /** Datagrams that arrived, per direction (before the rule: what each end sent). */
  readonly arrived = { 'to-server': 0, 'to-client': 0 };

  /** The rule can be swapped mid-test (e.g. cut the link). */
  private constructor(serverPort: number, public rule: ProxyRule, private readonly serverHost: string) {
    this.serverReplyPort = serverPort;
  }

  /**
   * `at` places the proxy between networks (the benchmark's relay between namespaces): it faces
   * the client on `front` (port `frontPort`), and the server, at `server`, from `back`.
   */
  static async start(
    serverPort: number, rule: ProxyRule,
    at: { front: string; back: string; server: string; frontPort?: number } = { front: '127.0.0.1', back: '127.0.0.1', server: '127.0.0.1' },
  ): Promise<UdpProxy> {
    const p = new UdpProxy(serverPort, rule, at.server);
    for (const [s, host, port] of [[p.front, at.front, at.frontPort ?? 0], [p.back, at.back, 0]] as const) {
      await new Promise<void>((res) => s.bind(port, host, () => res()));
      for (const set of [s.setRecvBufferSize, s.setSendBufferSize]) {
        try { set.call(s, 8 * 1024 * 1024); } catch { /* capped */ }
      }
    }
    p.front.on('message', (msg, rinfo) => {
      p.client = { address: rinfo.address, port: rinfo.port };
      p.forward(msg, 'to-server', p.back, { address: p.serverHost, port: p.serverReplyPort });
    });
    p.back.on('message', (msg, rinfo) => {
      p.serverReplyPort = rinfo.port;
      if (p.client) p.forward(msg, 'to-client', p.front, p.client);
    });
    return p;
  }

  get port(): number { return this.front.address().port; }

  private forward(msg: Buffer, direction: Direction, via: dgram.Socket, to: { address: string; port: number }): void {
    this.arrived[direction]++;
    const out = this.rule(msg, direction);
    if (out.length === 0) this.dropped++;
    for (const { data, delayMs } of out) {
      this.forwarded++;
      if (!delayMs) { via.send(data, to.port, to.address); continue; }
      this.later(performance.now() + delayMs, () => via.send(data, to.port, to.address));
    }
  }

  private later(at: number, send: () => void): void {
    this.due.push({ at, seq: this.dueSeq++, send });
    if (this.due.peek()!.seq === this.dueSeq - 1) this.arm();
  }

  private arm(): void {
    clearTimeout(this.timer);
    const next = this.due.peek();
    if (!next) return;
    this.timer = setTimeout(() => this.release(), Math.max(0, next.at - performance.now()));
  }

  /** Send everything due, in due order. */
  private release(): void {
    const now = performance.now();
    while (this.due.size > 0 && this.due.peek()!.at <= now) this.due.pop().send();
    this.arm();
  }

  /** Send a datagram to the client as if the server had sent it. */
  injectToClient(data: Buffer): Promise<void> {
    const to = this.client;
    if (!to) return Promise.reject(new Error('no client has spoken through the proxy yet'));
    return new Promise((res) => this.front.send(data, to.port, to.address, () => res()));
  }

  /** Send a datagram to the server as if the client had sent it (from the proxy's address). */
  injectToServer(data: Buffer): Promise<void> {
    return new Promise((res) => this.back.send(data, this.serverReplyPort, this.serverHost, () => res()));
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.due.clear();
    await Promise.all([this.front, this.back].map((s) => new Promise<void>((res) => s.close(() => res()))));
  }
}

export const passThrough: ProxyRule = (data) => [{ data }];

/**
 * A bad network: each datagram is lost with probability `loss`, duplicated with `duplicate`, and
 * delayed by `delayMs` plus, with probability `reorder`, up to `delayMs` more (which reorders it).
 */
/** IPv4 fragments on a 1500-byte link carry 1480 bytes of the UDP datagram each. */
const FRAGMENT_PAYLOAD_BYTES = 1480;
const UDP_HEADER_BYTES = 8;

export function lossyLink(seed: number, o: { loss: number; duplicate?: number; reorder?: number; delayMs?: number; perFrame?: boolean }): ProxyRule {
  const random = seededRandom(seed);
  return (data) => {
    // perFrame: `loss` is each 1500-byte Ethernet frame's, as on a real link, where a datagram
    // bigger than a frame travels as IP fragments and is lost with any one of them.
    const frames = o.perFrame ? Math.ceil((data.length + UDP_HEADER_BYTES) / FRAGMENT_PAYLOAD_BYTES) : 1;
    if (random() < 1 - (1 - o.loss) ** frames) return [];
    const delay = (): number => (o.delayMs ?? 0) + (random() < (o.reorder ?? 0) ? random() * (o.delayMs ?? 1) : 0);
    const out = [{ data, delayMs: delay() }];
    if (random() < (o.duplicate ?? 0)) out.push({ data, delayMs: delay() });
    return out;
  };
}

export const dropAll: ProxyRule = () => [];

/**
 * `rule`, but a relay that stops for `forMs`, `afterMs` after the module's first chunk passed
 * (a relay or a radio that stalls): what arrives meanwhile, both ways, waits and then goes on in
 * the order it came, nothing lost.
 */
export function stallsOnce(rule: ProxyRule, afterMs: number, forMs: number): ProxyRule {
  let firstChunkAt: number | undefined;
  return (data, direction) => {
    const now = performance.now();
    if (firstChunkAt === undefined && isBulkData(data, direction)) firstChunkAt = now;
    const out = rule(data, direction);
    const resumesAt = firstChunkAt === undefined ? 0 : firstChunkAt + afterMs + forMs;
    if (firstChunkAt === undefined || now < firstChunkAt + afterMs || now >= resumesAt) return out;
    return out.map((d) => ({ ...d, delayMs: (d.delayMs ?? 0) + (resumesAt - now) }));
  };
}

/**
 * A pushed module's chunks travel in CHUNKS frames (envelope type 20, readable: the chunks inside
 * are sealed, the frame is not); every other datagram is a small sealed message.
 */
export function isBulkData(data: Buffer, direction: 'to-client' | 'to-server'): boolean {
  return direction === 'to-client' && data.length > CHUNKS_HEADER_BYTES && (data[3] === EnvelopeType.chunks || data[3] === EnvelopeType.piece);
}

/** A link of `bytesPerSecond` toward the client: the module's chunks queue behind one another,
 *  so a push lasts seconds on any machine (a test can act mid-push); the rest passes at once. */
export function rateCapped(bytesPerSecond: number): ProxyRule {
  let freeAt = 0;
  return (data, direction) => {
    if (!isBulkData(data, direction)) return [{ data }];
    const now = performance.now();
    freeAt = Math.max(freeAt, now) + (data.length * 1000) / bytesPerSecond;
    return [{ data, delayMs: freeAt - now }];
  };
}

/** How many chunks a datagram carries toward the client (0: not a CHUNKS frame). */
export function bulkChunks(data: Buffer, direction: 'to-client' | 'to-server'): number {
  if (!isBulkData(data, direction) || data[3] !== EnvelopeType.chunks) return 0;
  let n = 0;
  try {
    forEachChunk(data.subarray(CHUNKS_HEADER_BYTES), () => { n++; });
  } catch {
    return 0;
  }
  return n;
}
