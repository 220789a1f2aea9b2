/**
 * Multicast sockets: the server's, which sends a release's sealed chunks once to a group, and the
 * device's, which joins the group on the interface it reaches the server by. Nothing sent to a
 * group is trusted for what it says: the CHUNKS frames are sealed under a release's content key,
 * which only devices in a session got, and the signed manifest decides what is installed.
 */
import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { NxtError } from '../errors.js';
import type { DatagramSink } from '../files/sealed-chunk-wire.js';
import { maxUdpPayloadFrom } from './interface-mtu.js';
import { FRAGMENTED_DATAGRAM } from './fragments.js';

const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;
export const DEFAULT_MULTICAST_PORT = 7702;
/**
 * Group datagrams carry one large chunk (8650 bytes) at least, whatever the interface's MTU: on a
 * 1500-byte LAN IP cuts each into six fragments (net/fragments.ts). Every device pays per datagram,
 * and a fleet shares the pace of its slowest: ten devices took 1.3 to 3 times as long with
 * 1400-byte chunks (docs/benchmarks.md). A lost fragment loses the chunk, which the repair passes
 * then cover; `--multicast-datagram 1472` keeps every datagram whole where fragments do not get
 * through (the chunks then go in pieces: server/group-push.ts).
 */
export const GROUP_DATAGRAM = FRAGMENTED_DATAGRAM;

export interface MulticastGroup {
  readonly address: string;
  readonly port: number;
}

/** As parseGroup reads it: "239.255.77.1:7702", "[ff15::77]:7702". */
export function formatGroup(group: MulticastGroup): string {
  return `${isIP(group.address) === 6 ? `[${group.address}]` : group.address}:${group.port}`;
}

/** "239.255.77.1", "239.255.77.1:7702", "ff15::77", "[ff15::77]:7702". */
export function parseGroup(text: string): MulticastGroup {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const v4 = /^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$/.exec(text);
  const [address, port] = bracketed ? [bracketed[1]!, bracketed[2]] : v4 ? [v4[1]!, v4[2]] : [text, undefined];
  const family = isIP(address);
  const multicast = family === 4 ? Number(address.split('.')[0]) >= 224 && Number(address.split('.')[0]) <= 239 : family === 6 && /^ff/i.test(address);
  if (!multicast) throw new NxtError('usage', `"${text}" is not a multicast group (224.0.0.0/4 or ff00::/8, e.g. 239.255.77.1:7702)`);
  const p = port === undefined ? DEFAULT_MULTICAST_PORT : Number(port);
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new NxtError('usage', `"${text}": the port must be 1-65535`);
  return { address, port: p };
}

/**
 * The interface an IPv6 multicast socket is to use, as Node names it: by scope ("::%eth0"), not
 * by address (an address alone leaves the choice to the routing table: on a host with several
 * interfaces, not necessarily the one toward the server). From the interface that holds
 * `address`, or the address's own scope. An interface that is not running yet (for about a
 * second after it comes up) is not listed: the routing table chooses then, and may have no
 * multicast route yet (ENODEV), in which case the device takes that push by unicast.
 */
export function ipv6Scope(address: string): string | undefined {
  const scope = /%(.+)$/.exec(address)?.[1];
  if (scope !== undefined) return `::%${scope}`;
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (addresses?.some((a) => a.family === 'IPv6' && a.address === address)) return `::%${name}`;
  }
  return undefined;
}

export interface MulticastSender extends DatagramSink {
  readonly group: MulticastGroup;
  /** The largest datagram that leaves the interface whole. */
  readonly maxDatagram: number;
  close(): void;
}

/** A socket that sends to `group` with `ttl`, out of `interfaceAddress` (the routing table's
 *  choice when undefined). */
export async function openMulticastSender(group: MulticastGroup, options: { ttl: number; interfaceAddress?: string; maxDatagram?: number }): Promise<MulticastSender> {
  const v6 = isIP(group.address) === 6;
  const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4' });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, v6 ? '::' : options.interfaceAddress ?? '0.0.0.0', () => { socket.off('error', reject); resolve(); });
  });
  socket.on('error', () => undefined); // a lost datagram is the protocol's business
  socket.setMulticastTTL(options.ttl);
  socket.setMulticastLoopback(true);
  if (options.interfaceAddress !== undefined) socket.setMulticastInterface(v6 ? ipv6Scope(options.interfaceAddress) ?? options.interfaceAddress : options.interfaceAddress);
  try { socket.setSendBufferSize(SOCKET_BUFFER_BYTES); } catch { /* capped by the kernel */ }
  return {
    group,
    maxDatagram: options.maxDatagram ?? Math.max(GROUP_DATAGRAM, options.interfaceAddress === undefined ? 0 : maxUdpPayloadFrom(options.interfaceAddress)),
    sendv: (parts) => socket.send(parts as Uint8Array[], group.port, group.address),
    queued: () => socket.getSendQueueCount(),
    close: () => { try { socket.close(); } catch { /* closed */ } },
  };
}

export interface MulticastReceiver {
  readonly group: MulticastGroup;
  close(): void;
}

/**
 * Join `group` on the interface with `localAddress` (the one the device reaches its server by)
 * and hand every datagram to `onDatagram`. Several groups, or several pushes to one group, may be
 * joined at once by different receivers (the port is shared).
 */
export async function joinMulticast(group: MulticastGroup, localAddress: string | undefined, onDatagram: (data: Buffer) => void): Promise<MulticastReceiver> {
  const v6 = isIP(group.address) === 6;
  const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    // Bound to the group's address: only datagrams sent to the group arrive here.
    socket.bind(group.port, group.address, () => { socket.off('error', reject); resolve(); });
  });
  socket.on('error', () => undefined);
  try { socket.setRecvBufferSize(SOCKET_BUFFER_BYTES); } catch { /* capped by the kernel */ }
  const on = v6 ? localAddress && ipv6Scope(localAddress) : localAddress;
  try {
    socket.addMembership(group.address, on);
  } catch (err) {
    socket.close();
    throw new NxtError('multicast', `cannot join ${group.address}${on === undefined ? '' : ` on ${on}`}: ${(err as Error).message}`);
  }
  socket.on('message', (data) => onDatagram(data));
  return { group, close: () => { try { socket.close(); } catch { /* closed */ } } };
}

/** The local address this host uses to reach `server` (no datagram is sent: a connected UDP
 *  socket only asks the routing table). */
export async function localAddressToward(server: string): Promise<string | undefined> {
  const socket = dgram.createSocket(isIP(server) === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(9, server, () => { socket.off('error', reject); resolve(); });
    });
    return socket.address().address;
  } catch {
    return undefined;
  } finally {
    socket.close();
  }
}
