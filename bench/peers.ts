/**
 * The peers an operator would otherwise use, run the same way on the same machine: atftp (TFTP,
 * RFC 7440 windowsize) and UFTP (unicast, with and without AES-256-GCM). Installed from Debian
 * when missing.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ensureCommands, have } from '../test/support/debian.js';
import { Proc } from '../test/support/processes.js';

export { have };

/** Install atftp, atftpd and uftp from Debian if they are missing; returns what is usable. */
export function ensurePeers(): { atftp: boolean; uftp: boolean } {
  ensureCommands(['atftp', 'atftpd', 'uftp', 'uftpd'], ['atftp', 'atftpd', 'uftp'], 'the benchmark peers');
  return { atftp: have('atftp') && have('atftpd'), uftp: have('uftp') && have('uftpd') };
}

export interface Daemon { readonly pid: number; stop(): Promise<void> }

/** Where a peer runs: on this host (loopback), or inside a namespace of bench/netns.ts. */
export interface Place {
  /** The namespace to run in; none: this host. */
  readonly ns?: string;
  /** The address to bind (daemons) or to reach (clients: the relay's address). */
  readonly host: string;
}
export const LOOPBACK: Place = { host: '127.0.0.1' };

/** `command args` as run in `place`. */
function placed(place: Place, command: string, args: string[]): [string, string[]] {
  return place.ns ? ['ip', ['netns', 'exec', place.ns, command, ...args]] : [command, args];
}

function daemon(place: Place, cmd: string, args: string[]): Daemon {
  const child: ChildProcess = spawn(...placed(place, cmd, args), { stdio: 'ignore' });
  return {
    // `ip netns exec` execs the command: this is the daemon's own pid.
    pid: child.pid ?? -1,
    stop: () => new Promise((res) => {
      if (child.exitCode !== null) { res(); return; }
      child.once('exit', () => res());
      child.kill('SIGTERM');
    }),
  };
}

/** Wait until a UDP port has a listener (read from /proc, no traffic sent). */
async function listening(port: number, place: Place = LOOPBACK, timeoutMs = 5000): Promise<void> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    // Each namespace has its own tables: read them from inside it.
    const tables = ['/proc/net/udp', '/proc/net/udp6'].map((f) => { try { return execFileSync(...placed(place, 'cat', [f]), { encoding: 'utf8' }); } catch { return ''; } }).join('');
    if (tables.includes(`:${hex} `)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing listens on UDP port ${port}`);
}

export async function startAtftpd(root: string, port: number, place: Place = LOOPBACK): Promise<Daemon> {
  const d = daemon(place, 'atftpd', ['--daemon', '--no-fork', '--port', String(port), '--bind-address', place.host,
    '--user', 'root', '--group', 'root', '--logfile', '/dev/null', root]);
  await listening(port, place);
  return d;
}

/** One TFTP download (blksize 1428, windowsize 64); ms, or undefined if it failed or timed out. */
export function atftpGet(port: number, remote: string, local: string, timeoutMs: number, place: Place = LOOPBACK): number | undefined {
  rmSync(local, { force: true });
  const t0 = performance.now();
  const r = spawnSync(...placed(place, 'atftp', ['-g', '-r', remote, '-l', local, '--option', 'blksize 1428', '--option', 'windowsize 64', place.host, String(port)]),
    { stdio: 'ignore', timeout: timeoutMs });
  const ms = performance.now() - t0;
  return r.status === 0 ? ms : undefined;
}

export async function startUftpd(dest: string, port: number, place: Place = LOOPBACK): Promise<Daemon> {
  mkdirSync(dest, { recursive: true });
  const d = daemon(place, 'uftpd', ['-d', '-p', String(port), '-D', dest, '-B', '104857600', '-x', '0']);
  await listening(port, place);
  return d;
}

/**
 * One UFTP send (unicast, 1428-byte blocks). Returns the wall time and UFTP's own "Total elapsed
 * time" (its transfer phase, without the announce/handshake rounds), or undefined on failure.
 */
export async function uftpSend(port: number, file: string, o: { encrypt: boolean; rateKbps: number; timeoutMs: number; dest: string; place?: Place }): Promise<{ wallMs: number; transferMs: number; cpuSeconds?: number } | undefined> {
  const place = o.place ?? LOOPBACK;
  rmSync(join(o.dest, basename(file)), { force: true });
  // Log level 2 (the default): below it UFTP does not print its transfer summary.
  const args = ['-M', place.host, '-p', String(port), '-R', String(o.rateKbps), '-b', '1428', '-B', '104857600', '-x', '2'];
  if (o.encrypt) args.push('-Y', 'aes256-gcm', '-h', 'sha256', '-e', 'ecdh_rsa');
  // A relative name: uftpd refuses an absolute path outside its destination directories.
  args.push(basename(file));
  const t0 = performance.now();
  const out = await new Promise<{ code: number | null; text: string }>((res) => {
    // Under /usr/bin/time (where present) for the sender's CPU seconds.
    const timed: [string, string[]] = have('/usr/bin/time') ? ['/usr/bin/time', ['-f', 'CPU-SECONDS %U %S', 'uftp', ...args]] : ['uftp', args];
    const child = spawn(...placed(place, ...timed), { stdio: ['ignore', 'pipe', 'pipe'], cwd: dirname(file) });
    let text = '';
    child.stdout.on('data', (d) => { text += d; });
    child.stderr.on('data', (d) => { text += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    child.on('exit', (code) => { clearTimeout(timer); res({ code, text }); });
  });
  const wallMs = performance.now() - t0;
  const m = /Total elapsed time: ([\d.]+) seconds/.exec(out.text);
  let received = false;
  try { received = statSync(join(o.dest, basename(file))).size === statSync(file).size; } catch { /* not there */ }
  if (out.code !== 0 || !m || !/Completed/.test(out.text) || !received) return undefined;
  const cpu = /CPU-SECONDS ([\d.]+) ([\d.]+)/.exec(out.text);
  return { wallMs, transferMs: Number(m[1]) * 1000, cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : undefined };
}

/** TCP's side of a comparison: a Node server in `place` that sends `file` to every connection on
 *  `port`; resolves once it listens (a Proc: stopAll ends it). */
export async function startTcpFileServer(file: string, port: number, place: Place): Promise<Proc> {
  const server = new Proc('tcp-sender', ...placed(place, 'node', ['-e', `
    const fs = require('node:fs');
    require('node:net').createServer((s) => fs.createReadStream(${JSON.stringify(file)}).pipe(s)).listen(${port}, '${place.host}', () => console.log('tcp ready'));`]));
  await server.waitFor('tcp ready');
  return server;
}
