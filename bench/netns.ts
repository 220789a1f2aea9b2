/**
 * A testbed of three network namespaces for the benchmark, as the peers are compared on real
 * networks: the server's, the client's, and a relay's between them, joined by veth pairs (MTU
 * 1500, so datagram-size discovery sees an Ethernet path). Every address lives inside a
 * namespace made here, and everything is removed afterwards. Needs root and `ip`.
 *
 *   server ns  10.203.1.2 ── 10.203.1.1  relay ns  10.203.2.1 ── 10.203.2.2  client ns
 */
import { spawnSync } from 'node:child_process';

export const SERVER_NS = 'nxtb-server';
export const RELAY_NS = 'nxtb-relay';
export const CLIENT_NS = 'nxtb-client';
export const SERVER_ADDR = '10.203.1.2';
export const RELAY_SERVER_SIDE = '10.203.1.1';
export const RELAY_CLIENT_SIDE = '10.203.2.1';
export const CLIENT_ADDR = '10.203.2.2';

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
}

export function removeTestbed(): void {
  for (const ns of [SERVER_NS, RELAY_NS, CLIENT_NS]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

/** Make the three namespaces; undefined (and why) where this machine cannot. */
export function createTestbed(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  removeTestbed();
  try {
    for (const ns of [SERVER_NS, RELAY_NS, CLIENT_NS]) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    ip('link', 'add', 'nxtb-s', 'netns', SERVER_NS, 'type', 'veth', 'peer', 'name', 'nxtb-rs', 'netns', RELAY_NS);
    ip('link', 'add', 'nxtb-c', 'netns', CLIENT_NS, 'type', 'veth', 'peer', 'name', 'nxtb-rc', 'netns', RELAY_NS);
    ip('-n', SERVER_NS, 'addr', 'add', `${SERVER_ADDR}/24`, 'dev', 'nxtb-s');
    ip('-n', RELAY_NS, 'addr', 'add', `${RELAY_SERVER_SIDE}/24`, 'dev', 'nxtb-rs');
    ip('-n', RELAY_NS, 'addr', 'add', `${RELAY_CLIENT_SIDE}/24`, 'dev', 'nxtb-rc');
    ip('-n', CLIENT_NS, 'addr', 'add', `${CLIENT_ADDR}/24`, 'dev', 'nxtb-c');
    for (const [ns, dev] of [[SERVER_NS, 'nxtb-s'], [RELAY_NS, 'nxtb-rs'], [RELAY_NS, 'nxtb-rc'], [CLIENT_NS, 'nxtb-c']] as const) ip('-n', ns, 'link', 'set', dev, 'up');
    return undefined;
  } catch (err) {
    removeTestbed();
    return (err as Error).message;
  }
}

/** The command line that runs `command args…` inside namespace `ns`. */
export function inNs(ns: string, command: string, args: string[]): [string, string[]] {
  return ['ip', ['netns', 'exec', ns, command, ...args]];
}
