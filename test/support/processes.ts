/**
 * Real processes for end-to-end tests: start, wait for output (an event, with a timeout, never
 * a sleep), type a line, stop. Every process started is stopped by stopAll() in afterEach.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The checkout: the nearest folder above this file with the launcher scripts (this file also
 *  runs compiled, from dist-bench/, for the benchmarks). */
export const ROOT = ((): string => {
  for (let d = import.meta.dirname; d !== dirname(d); d = dirname(d)) {
    if (existsSync(join(d, 'scripts/UpdateServer.sh')) && existsSync(join(d, 'package.json'))) return d;
  }
  throw new Error('cannot find the nxt checkout above ' + import.meta.dirname);
})();
const running = new Set<Proc>();

export class Proc {
  output = '';
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;

  constructor(readonly name: string, command: string, args: string[], env: Record<string, string> = {}) {
    this.child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const take = (d: Buffer): void => {
      this.output += d.toString();
      for (const w of [...this.waiters]) w();
    };
    this.child.stdout!.on('data', take);
    this.child.stderr!.on('data', take);
    this.child.stdin!.on('error', () => undefined);
    this.exited = new Promise((res) => this.child.on('exit', (code) => {
      running.delete(this);
      for (const w of [...this.waiters]) w();
      res(code);
    }));
    running.add(this);
  }

  get pid(): number { return this.child.pid ?? -1; }
  get alive(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }

  /** Resolve with the first match of `pattern` in output after `from` (a character offset). */
  waitFor(pattern: RegExp | string, timeoutMs = 15_000, from = 0): Promise<RegExpMatchArray> {
    const re = typeof pattern === 'string' ? new RegExp(escape(pattern)) : pattern;
    return new Promise((res, rej) => {
      const check = (): void => {
        const m = this.output.slice(from).match(re);
        if (m) { done(); res(m); return; }
        if (!this.alive) { done(); rej(new Error(`${this.name} exited (${this.child.exitCode}) before printing ${re}\n--- output ---\n${this.output}`)); }
      };
      const timer = setTimeout(() => { done(); rej(new Error(`${this.name}: no ${re} within ${timeoutMs} ms\n--- output ---\n${this.output}`)); }, timeoutMs);
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
      check();
    });
  }

  /** Type a command; returns the output offset before it, for waitFor(…, …, offset). */
  type(line: string): number {
    const at = this.output.length;
    this.child.stdin!.write(`${line}\n`);
    return at;
  }

  /** Type a command and wait for `until` in what follows; resolves with everything printed since. */
  async run(command: string, until: RegExp, timeoutMs = 20_000): Promise<string> {
    const at = this.type(command);
    await this.waitFor(until, timeoutMs, at);
    return this.output.slice(at);
  }

  /** Stop reading what the process prints (a log's reader gone): its writes fail from then on. */
  closeOutput(): void {
    this.child.stdout!.destroy();
    this.child.stderr!.destroy();
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.alive) {
      this.child.kill(signal);
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop('SIGKILL')));
}

export function runningCount(): number {
  return running.size;
}

/** Folders made by tempDir in this test file (or benchmark), removed by removeTempDirs. */
const made: string[] = [];

export function tempDir(prefix = 'nxt-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  // A benchmark (no test runner's afterAll) cleans up as it exits.
  if (made.length === 0) process.once('exit', removeTempDirs);
  made.push(dir);
  return dir;
}

/** Remove every folder tempDir made (NXT_KEEP_TEST_DIRS=1 keeps them, to look at after a
 *  failure): test runs must not fill the disk (modules of 16–128 MiB, sealed copies, state). */
export function removeTempDirs(): void {
  if (process.env.NXT_KEEP_TEST_DIRS) return;
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** The enrollment token test servers and clients share unless a test says otherwise, so clients
 *  are approved without an operator (the enrollment tests start them without it). */
export const TEST_ENROLL_TOKEN = 'e2e-enroll-token';

/** A server from scripts/UpdateServer.sh on a free port (or `port`: a restart where its clients
 *  expect it); resolves once it listens. */
export async function startServer(stateDir: string, extra: string[] = [], env: Record<string, string> = {}, port = 0, netns?: string): Promise<{ proc: Proc; port: number }> {
  const [command, args] = inNetns(netns, join(ROOT, 'scripts/UpdateServer.sh'), [String(port), ...extra]);
  const proc = new Proc('server', command, args, { NXT_STATE_DIR: stateDir, NXT_ENROLL_TOKEN: TEST_ENROLL_TOKEN, ...env });
  const m = await proc.waitFor(/listening on UDP port (\d+)/);
  await proc.waitFor('NxtServer# ');
  return { proc, port: Number(m[1]) };
}

/** A client from scripts/UpdateClient.sh; resolves once it is registered (or, with
 *  `until`, once it printed that). */
export async function startClient(
  name: string, port: number, dataDir: string, trust: string, host = '127.0.0.1', extra: string[] = [],
  options: { env?: Record<string, string>; until?: RegExp | string; netns?: string } = {},
): Promise<Proc> {
  const [command, args] = inNetns(options.netns, join(ROOT, 'scripts/UpdateClient.sh'), [host, String(port), ...extra]);
  const proc = new Proc(name, command, args, {
    NXT_DATA_DIR: dataDir, NXT_TRUST: trust, NXT_ENROLL_TOKEN: TEST_ENROLL_TOKEN, ...options.env,
  });
  await proc.waitFor(options.until ?? 'registered with the server');
  return proc;
}

/** A command run inside a network namespace (`ip netns exec`), or as it is. */
function inNetns(netns: string | undefined, command: string, args: string[]): [string, string[]] {
  return netns === undefined ? [command, args] : ['ip', ['netns', 'exec', netns, command, ...args]];
}
