/**
 * The one place that touches node:dgram: an Endpoint sends and receives datagrams and nothing
 * else. Everything above it is testable with a fake.
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { udpReceiveDrops } from './socket-drops.js';

export interface Peer {
  readonly address: string;
  readonly port: number;
}

export interface Endpoint {
  readonly port: number;
  send(data: Uint8Array, to: Peer): void;
  /** One datagram gathered from `parts` (no concatenation: the kernel reads them in place). */
  sendv(parts: readonly Uint8Array[], to: Peer): void;
  /** Datagrams queued in the socket, not yet handed to the kernel. */
  sendQueueCount(): number;
  /** Datagrams the kernel dropped for this socket, its receive buffer full (undefined: unknown). */
  receiveDrops?(): number | undefined;
  onDatagram(handler: (data: Buffer, from: Peer) => void): void;
  close(): Promise<void>;
}

/** Socket buffers big enough for a window of chunks in flight; the kernel may cap them lower. */
const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * A server's receive buffer: what it receives is mostly ACKs, and an ACK read late is worse than
 * one lost (the next one says as much, and more). At 50 devices sharing two cores with the
 * server, an 8 MiB buffer held 5-7 MB of ACKs, ten seconds of them: every session saw its device
 * ten seconds late, and gave up on devices that were doing fine. This much holds ~800 ACKs (a
 * second of a starved server's reading, milliseconds of a healthy one's).
 */
export const SERVER_RECEIVE_BUFFER_BYTES = 512 * 1024;

/**
 * Bind a UDP endpoint. With no host it listens on both IPv4 and IPv6 (a dual-stack socket),
 * falling back to IPv4 only where the machine has no IPv6.
 */
export async function openUdpEndpoint(options: { port: number; host?: string; family?: 4 | 6; receiveBufferBytes?: number }): Promise<Endpoint> {
  const receive = options.receiveBufferBytes ?? SOCKET_BUFFER_BYTES;
  if (options.host !== undefined) {
    const family = options.family ?? (isIP(options.host) === 6 ? 6 : 4);
    return bind(socket(family === 6 ? 'udp6' : 'udp4'), options.port, options.host, receive);
  }
  if (options.family === 4) return bind(socket('udp4'), options.port, '0.0.0.0', receive);
  try {
    return await bind(socket('udp6', false), options.port, '::', receive);
  } catch (err) {
    if (options.family === 6) throw err;
    return bind(socket('udp4'), options.port, '0.0.0.0', receive);
  }
}

/**
 * Peers are always IP literals (we never resolve names), so skip dgram's per-send DNS lookup:
 * on the hot path it costs a regular expression and a tick for every datagram.
 */
function socket(type: 'udp4' | 'udp6', ipv6Only?: boolean): dgram.Socket {
  // dgram still calls this on every send: remember the last answer, so a transfer's datagrams
  // (all to one peer) pay one string comparison, not isIP()'s regular expression.
  let lastAddress = '';
  let lastFamily = 0;
  return dgram.createSocket({
    type,
    ipv6Only,
    lookup: (address, _options, callback) => {
      if (address !== lastAddress) {
        lastFamily = isIP(address);
        lastAddress = address;
      }
      if (lastFamily === 0) callback(new Error(`not an IP address: ${address}`), '', 0);
      else callback(null, address, lastFamily);
    },
  });
}

function bind(socket: dgram.Socket, port: number, host: string, receiveBufferBytes: number): Promise<Endpoint> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      socket.close();
      reject(err);
    };
    socket.once('error', onError);
    socket.bind(port, host, () => {
      socket.off('error', onError);
      // A send to a peer that went away surfaces as an error event on some platforms; a lost
      // datagram is the protocol's business, not a reason to crash.
      socket.on('error', () => undefined);
      try { socket.setRecvBufferSize(receiveBufferBytes); } catch { /* capped by the kernel: fine */ }
      try { socket.setSendBufferSize(SOCKET_BUFFER_BYTES); } catch { /* capped by the kernel: fine */ }
      resolve(new UdpEndpoint(socket));
    });
  });
}

class UdpEndpoint implements Endpoint {
  private closed = false;

  constructor(private readonly socket: dgram.Socket) {}

  get port(): number {
    return this.socket.address().port;
  }

  send(data: Uint8Array, to: Peer): void {
    if (this.closed) return;
    // No callback: Node then tries a synchronous send first, much cheaper per datagram. Errors
    // (ENOBUFS, unreachable) become 'error' events, which bind() ignores: a lost datagram is
    // the protocol's business.
    this.socket.send(data, to.port, to.address);
  }

  sendv(parts: readonly Uint8Array[], to: Peer): void {
    if (this.closed) return;
    // dgram copies the list into the iovec of one sendmsg (the caller may reuse its array).
    this.socket.send(parts as Uint8Array[], to.port, to.address);
  }

  sendQueueCount(): number {
    return this.closed ? 0 : this.socket.getSendQueueCount();
  }

  receiveDrops(): number | undefined {
    return this.closed ? undefined : udpReceiveDrops(this.port);
  }

  onDatagram(handler: (data: Buffer, from: Peer) => void): void {
    this.socket.on('message', (msg, rinfo) => handler(msg, { address: rinfo.address, port: rinfo.port }));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

/** "::ffff:127.0.0.1" → "127.0.0.1": how a person expects to see an IPv4 peer. */
export function displayAddress(peer: Peer): string {
  const a = peer.address.startsWith('::ffff:') ? peer.address.slice(7) : peer.address;
  return a.includes(':') ? `[${a}]:${peer.port}` : `${a}:${peer.port}`;
}

export function samePeer(a: Peer, b: Peer): boolean {
  return a.port === b.port && a.address === b.address;
}
