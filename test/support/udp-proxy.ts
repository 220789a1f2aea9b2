/**
 * A UDP proxy on real sockets between one client and a server, for end-to-end tests and
 * benchmarks. Each datagram passes through `rule`, which may drop it, change it, duplicate it or
 * delay it, with a seeded random source so that a failing run replays.
 */
import dgram from 'node:dgram';
import { seededRandom } from './random.js';

export type Direction = 'to-server' | 'to-client';

export interface ProxyRule {
  /** Return the datagrams to forward (none = drop) and an optional delay in ms for each. */
  (datagram: Buffer, direction: Direction): { data: Buffer; delayMs?: number }[];
}

export class UdpProxy {
  private readonly socket = dgram.createSocket('udp4');
  private client: { address: string; port: number } | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  forwarded = 0;
  dropped = 0;

  /** The rule can be swapped mid-test (e.g. cut the link). */
  private constructor(private readonly serverPort: number, public rule: ProxyRule) {}

  static async start(serverPort: number, rule: ProxyRule): Promise<UdpProxy> {
    const p = new UdpProxy(serverPort, rule);
    await new Promise<void>((res) => p.socket.bind(0, '127.0.0.1', () => res()));
    for (const set of [p.socket.setRecvBufferSize, p.socket.setSendBufferSize]) {
      try { set.call(p.socket, 8 * 1024 * 1024); } catch { /* capped */ }
    }
    p.socket.on('message', (msg, rinfo) => p.onMessage(msg, rinfo));
    return p;
  }

  get port(): number { return this.socket.address().port; }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const fromServer = rinfo.port === this.serverPort;
    if (!fromServer) this.client = { address: rinfo.address, port: rinfo.port };
    const to = fromServer ? this.client : { address: '127.0.0.1', port: this.serverPort };
    if (!to) return;
    const out = this.rule(msg, fromServer ? 'to-client' : 'to-server');
    if (out.length === 0) this.dropped++;
    for (const { data, delayMs } of out) {
      this.forwarded++;
      if (!delayMs) { this.socket.send(data, to.port, to.address); continue; }
      const t = setTimeout(() => { this.timers.delete(t); this.socket.send(data, to.port, to.address); }, delayMs);
      this.timers.add(t);
    }
  }

  /** Send a datagram to the client as if the server had sent it. */
  injectToClient(data: Buffer): Promise<void> {
    const to = this.client;
    if (!to) return Promise.reject(new Error('no client has spoken through the proxy yet'));
    return new Promise((res) => this.socket.send(data, to.port, to.address, () => res()));
  }

  close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    return new Promise((res) => this.socket.close(() => res()));
  }
}

export const passThrough: ProxyRule = (data) => [{ data }];

/**
 * A bad network: each datagram is lost with probability `loss`, duplicated with `duplicate`, and
 * delayed by `delayMs` plus, with probability `reorder`, up to `delayMs` more (which reorders it).
 */
export function lossyLink(seed: number, o: { loss: number; duplicate?: number; reorder?: number; delayMs?: number }): ProxyRule {
  const random = seededRandom(seed);
  return (data) => {
    if (random() < o.loss) return [];
    const delay = (): number => (o.delayMs ?? 0) + (random() < (o.reorder ?? 0) ? random() * (o.delayMs ?? 1) : 0);
    const out = [{ data, delayMs: delay() }];
    if (random() < (o.duplicate ?? 0)) out.push({ data, delayMs: delay() });
    return out;
  };
}

export const dropAll: ProxyRule = () => [];
