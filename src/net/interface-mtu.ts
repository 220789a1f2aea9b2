/**
 * The largest UDP payload this host can send to an address without fragmenting it itself: the
 * MTU of the interface the datagram leaves by, less the IP and UDP headers. It is the upper bound
 * of datagram-size discovery (RFC 8899's MAX_PLPMTU, "limited by the local interface MTU"):
 * Node cannot set the don't-fragment bit, so a probe above it would be fragmented by the kernel,
 * arrive anyway and teach us a size that only works whole while no fragment is lost. Datagrams
 * fragmented on purpose, to a device on the same LAN, are net/fragments.ts's decision.
 *
 * Linux only (/sys/class/net); elsewhere, or when unsure, the Ethernet value.
 */
import { readFileSync } from 'node:fs';
import { BlockList, isIPv4 } from 'node:net';
import os from 'node:os';

const ETHERNET_MTU = 1500;
const LOOPBACK_MTU = 65536;
/** IPv4 + UDP headers, IPv6 + UDP headers. */
const HEADERS_V4 = 28;
const HEADERS_V6 = 48;
const MAX_UDP_PAYLOAD = 65_507;

export interface RouteTo {
  /** The largest UDP payload that leaves whole. */
  readonly whole: number;
  /** On a directly attached subnet (or this host): no router between, which could drop
   *  fragments (net/fragments.ts). */
  readonly onLink: boolean;
}

/** What is known locally of the way to `address`. */
export function routeTo(address: string): RouteTo {
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  const v4 = isIPv4(plain);
  const headers = v4 ? HEADERS_V4 : HEADERS_V6;
  const { mtu, onLink } = interfaceFor(plain, v4);
  return { whole: Math.min(MAX_UDP_PAYLOAD, mtu - headers), onLink };
}

function interfaceFor(address: string, v4: boolean): { mtu: number; onLink: boolean } {
  const interfaces = os.networkInterfaces();
  // To ourselves (loopback, or one of our own addresses): the kernel routes it over lo.
  if (address.startsWith('127.') || address === '::1') return { mtu: mtuOf('lo', LOOPBACK_MTU), onLink: true };
  if (Object.values(interfaces).some((addrs) => addrs?.some((a) => a.address === address))) return { mtu: mtuOf('lo', LOOPBACK_MTU), onLink: true };
  // On a directly attached subnet: that interface.
  for (const [name, addrs] of Object.entries(interfaces)) {
    for (const a of addrs ?? []) {
      if (a.internal || (a.family === 'IPv4') !== v4 || !a.cidr) continue;
      const [net, bits] = a.cidr.split('/');
      const list = new BlockList();
      try {
        list.addSubnet(net!, Number(bits), v4 ? 'ipv4' : 'ipv6');
        if (list.check(address, v4 ? 'ipv4' : 'ipv6')) return { mtu: mtuOf(name, ETHERNET_MTU), onLink: true };
      } catch {
        // An address form BlockList does not take (a scoped link-local one): not this interface.
      }
    }
  }
  // Through a router: by one of the external interfaces; the smallest is the safe guess.
  let smallest = Infinity;
  for (const [name, addrs] of Object.entries(interfaces)) {
    if (addrs?.some((a) => !a.internal && (a.family === 'IPv4') === v4)) smallest = Math.min(smallest, mtuOf(name, ETHERNET_MTU));
  }
  return { mtu: Number.isFinite(smallest) ? smallest : ETHERNET_MTU, onLink: false };
}

/**
 * The largest UDP payload that leaves by the interface holding `localAddress` (a multicast
 * group's datagrams go out of it, not over lo as datagrams to our own address do).
 */
export function maxUdpPayloadFrom(localAddress: string): number {
  const v4 = isIPv4(localAddress);
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (addrs?.some((a) => a.address === localAddress)) {
      return Math.min(MAX_UDP_PAYLOAD, mtuOf(name, name === 'lo' ? LOOPBACK_MTU : ETHERNET_MTU) - (v4 ? HEADERS_V4 : HEADERS_V6));
    }
  }
  return ETHERNET_MTU - (v4 ? HEADERS_V4 : HEADERS_V6);
}

function mtuOf(name: string, fallback: number): number {
  try {
    const mtu = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
    return Number.isInteger(mtu) && mtu >= 576 ? mtu : fallback;
  } catch {
    return fallback;
  }
}
