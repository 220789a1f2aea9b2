/**
 * TCP through the benchmark's relay. This kernel has no netem, and the relay (relay.ts) moves UDP
 * datagrams: so each namespace gets a TUN device whose IP packets socat carries in UDP datagrams,
 * one a datagram, through the relay (losing, delaying, reordering them as it does nxt's and
 * UFTP's). A TCP transfer between the two TUN addresses then crosses the same lossy link:
 *
 *   server ns  TUN 10.203.9.1 ─ socat ─ UDP ─ relay ns ─ UDP ─ socat ─ TUN 10.203.9.2  client ns
 *
 * The TUN MTU is 1400, so a tunnelled packet fits the veth's 1500 bytes whole. socat copies each
 * packet through user space on both ends: the tunnel with no loss is its own ceiling (printed
 * beside the lossy rows), and TCP's times here are somewhat pessimistic.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { ensureCommands } from '../test/support/debian.js';
import { Proc } from '../test/support/processes.js';
import { startTcpFileServer } from './peers.js';
import { CLIENT_NS, inNs, RELAY_CLIENT_SIDE, SERVER_ADDR, SERVER_NS } from './netns.js';

const TUN = 'nxtt';
const TUN_SERVER_ADDR = '10.203.9.1';
const TUN_CLIENT_ADDR = '10.203.9.2';
const TUN_MTU = 1400;
/** The server-side socat's UDP port (in the server namespace). */
const TUNNEL_PORT = 17_100;
const TCP_PORT = 18_500;

/** socat, and a congestion control for both namespaces (bbr where the kernel has it). */
export function tcpTunnelReady(): { ok: boolean; congestion: string } {
  const ok = ensureCommands(['socat'], ['socat'], 'TCP through the lossy relay');
  const available = spawnSync('sysctl', ['-n', 'net.ipv4.tcp_available_congestion_control'], { encoding: 'utf8' }).stdout ?? '';
  return { ok, congestion: /\bbbr\b/.test(available) ? 'bbr' : 'cubic' };
}

/** Serves `file` to every connection, from the server namespace, with `congestion` there and in
 *  the client's namespace (until stopped). */
export async function startTcpSender(file: string, congestion: string): Promise<Proc> {
  for (const ns of [SERVER_NS, CLIENT_NS]) {
    const set = spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-w', `net.ipv4.tcp_congestion_control=${congestion}`], { encoding: 'utf8' });
    if (set.status !== 0) throw new Error(`cannot use ${congestion} for TCP in ${ns}: ${(set.stderr || set.error?.message || '').trim()}`);
  }
  // On every address of the namespace: the TUN one comes and goes with each tunnel.
  return startTcpFileServer(file, TCP_PORT, { ns: SERVER_NS, host: '0.0.0.0' });
}

export interface Tunnel { stop(): Promise<void> }

/** The two socats, through a relay started by `relayTo(server, frontPort)` on the relay's
 *  client side; resolves once both TUN devices are up. */
export async function startTunnel(relayTo: (server: string, frontPort: number) => Promise<{ stop(): Promise<unknown> }>, frontPort: number): Promise<Tunnel> {
  const tun = (addr: string): string => `TUN:${addr}/24,tun-name=${TUN},iff-no-pi,up`;
  // It answers whoever sent the first datagram: the relay, which this tunnel has to itself.
  const serverSide = new Proc('socat-server', ...inNs(SERVER_NS, 'socat', ['-b', '65536', `UDP-LISTEN:${TUNNEL_PORT},bind=${SERVER_ADDR}`, tun(TUN_SERVER_ADDR)]));
  const relay = await relayTo(`${SERVER_ADDR}:${TUNNEL_PORT}`, frontPort);
  const clientSide = new Proc('socat-client', ...inNs(CLIENT_NS, 'socat', ['-b', '65536', `UDP:${RELAY_CLIENT_SIDE}:${frontPort}`, tun(TUN_CLIENT_ADDR)]));
  const stop = async (): Promise<void> => {
    await Promise.all([serverSide.stop(), clientSide.stop()]);
    await relay.stop();
  };
  try {
    for (const ns of [SERVER_NS, CLIENT_NS]) {
      for (let waited = 0; spawnSync('ip', ['-n', ns, 'link', 'show', TUN], { stdio: 'ignore' }).status !== 0; waited += 50) {
        if (waited > 5000) throw new Error(`no ${TUN} device in ${ns} after 5 s: ${serverSide.output}${clientSide.output}`);
        await new Promise((res) => setTimeout(res, 50));
      }
      execFileSync('ip', ['-n', ns, 'link', 'set', TUN, 'mtu', String(TUN_MTU)]);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}

/** One download of the sender's file through the tunnel: ms from connect to the last byte, or
 *  why not (it did not finish within `timeoutMs`, fell short, or could not connect). */
export function tcpDownload(bytes: number, timeoutMs: number): { ms: number } | { failed: string } {
  const r = spawnSync('ip', ['netns', 'exec', CLIENT_NS, 'node', '-e', `
    const t0 = performance.now(); let n = 0;
    const s = require('node:net').connect(${TCP_PORT}, '${TUN_SERVER_ADDR}');
    s.on('data', (d) => { n += d.length; });
    s.on('end', () => { console.log(n === ${bytes} ? 'ms ' + (performance.now() - t0) : 'short: ' + n + ' bytes of ${bytes}'); process.exit(0); });
    s.on('error', (e) => { console.log('error: ' + e.message); process.exit(1); });
    setTimeout(() => { console.log('did not finish in ${timeoutMs / 1000} s: ' + n + ' bytes of ${bytes}'); process.exit(1); }, ${timeoutMs});`], { encoding: 'utf8', timeout: timeoutMs + 10_000 });
  const out = (r.stdout ?? '').trim();
  const m = /^ms ([\d.]+)/.exec(out);
  return m ? { ms: Number(m[1]) } : { failed: out || `no answer (${r.error?.message ?? `exit ${r.status}`})` };
}
