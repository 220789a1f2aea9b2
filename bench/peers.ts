/**
 * The peers an operator would otherwise use, run the same way on the same machine: atftp (TFTP,
 * RFC 7440 windowsize) and UFTP (unicast, with and without AES-256-GCM). Installed from Debian
 * when missing.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Install atftp, atftpd and uftp from Debian if they are missing; returns what is usable. */
export function ensurePeers(): { atftp: boolean; uftp: boolean } {
  const missing = ['atftp', 'atftpd', 'uftp', 'uftpd'].filter((c) => !have(c));
  if (missing.length > 0 && process.getuid?.() === 0) {
    console.error(`installing benchmark peers (${missing.join(', ')}) with apt-get…`);
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    spawnSync('apt-get', ['install', '-y', '-qq', 'atftp', 'atftpd', 'uftp'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  return { atftp: have('atftp') && have('atftpd'), uftp: have('uftp') && have('uftpd') };
}

export interface Daemon { stop(): Promise<void> }

function daemon(cmd: string, args: string[]): Daemon {
  const child: ChildProcess = spawn(cmd, args, { stdio: 'ignore' });
  return {
    stop: () => new Promise((res) => {
      if (child.exitCode !== null) { res(); return; }
      child.once('exit', () => res());
      child.kill('SIGTERM');
    }),
  };
}

/** Wait until a UDP port has a listener (read from /proc, no traffic sent). */
async function listening(port: number, timeoutMs = 5000): Promise<void> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const tables = ['/proc/net/udp', '/proc/net/udp6'].map((f) => { try { return execFileSync('cat', [f], { encoding: 'utf8' }); } catch { return ''; } }).join('');
    if (tables.includes(`:${hex} `)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing listens on UDP port ${port}`);
}

export async function startAtftpd(root: string, port: number): Promise<Daemon> {
  const d = daemon('atftpd', ['--daemon', '--no-fork', '--port', String(port), '--bind-address', '127.0.0.1',
    '--user', 'root', '--group', 'root', '--logfile', '/dev/null', root]);
  await listening(port);
  return d;
}

/** One TFTP download (blksize 1428, windowsize 64); ms, or undefined if it failed or timed out. */
export function atftpGet(port: number, remote: string, local: string, timeoutMs: number): number | undefined {
  rmSync(local, { force: true });
  const t0 = performance.now();
  const r = spawnSync('atftp', ['-g', '-r', remote, '-l', local, '--option', 'blksize 1428', '--option', 'windowsize 64', '127.0.0.1', String(port)],
    { stdio: 'ignore', timeout: timeoutMs });
  const ms = performance.now() - t0;
  return r.status === 0 ? ms : undefined;
}

export async function startUftpd(dest: string, port: number): Promise<Daemon> {
  mkdirSync(dest, { recursive: true });
  const d = daemon('uftpd', ['-d', '-p', String(port), '-D', dest, '-B', '104857600', '-x', '0']);
  await listening(port);
  return d;
}

/**
 * One UFTP send (unicast, 1428-byte blocks). Returns the wall time and UFTP's own "Total elapsed
 * time" (its transfer phase, without the announce/handshake rounds), or undefined on failure.
 */
export async function uftpSend(port: number, file: string, o: { encrypt: boolean; rateKbps: number; timeoutMs: number; dest: string }): Promise<{ wallMs: number; transferMs: number } | undefined> {
  rmSync(join(o.dest, basename(file)), { force: true });
  // Log level 2 (the default): below it UFTP does not print its transfer summary.
  const args = ['-M', '127.0.0.1', '-p', String(port), '-R', String(o.rateKbps), '-b', '1428', '-B', '104857600', '-x', '2'];
  if (o.encrypt) args.push('-Y', 'aes256-gcm', '-h', 'sha256', '-e', 'ecdh_rsa');
  // A relative name: uftpd refuses an absolute path outside its destination directories.
  args.push(basename(file));
  const t0 = performance.now();
  const out = await new Promise<{ code: number | null; text: string }>((res) => {
    const child = spawn('uftp', args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dirname(file) });
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
  return { wallMs, transferMs: Number(m[1]) * 1000 };
}
