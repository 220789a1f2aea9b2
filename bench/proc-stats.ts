/** What /proc says about a process (Linux): CPU seconds and memory. */
import { readdirSync, readFileSync } from 'node:fs';

export const peakRssMb = (pid: number): number => {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
};

/** User + system CPU seconds a process has used (clock ticks are 1/100 s on Linux). */
export const cpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

export const rssMb = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

/** Minor page faults a process has taken (all its threads): each maps a page of fresh memory. */
export const minorFaults = (pid: number): number =>
  Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[7]);

/** What touching one page of fresh memory costs this machine now, in µs: 64 MiB never used
 *  before, a byte a page (on some VMs a fault costs ten times what it does on bare metal, and
 *  Node's module loader reads a module into fresh memory, then decodes it into more). */
export function freshPageMicros(): number {
  const bytes = 64 * 1024 * 1024;
  const buf = Buffer.allocUnsafeSlow(bytes);
  const t0 = performance.now();
  for (let i = 0; i < bytes; i += 4096) buf[i] = 1;
  return ((performance.now() - t0) * 1000) / (bytes / 4096);
}

/** Nanoseconds of CPU every thread of `pid` has had so far, from the scheduler's own accounting
 *  (/proc/PID/task/TID/schedstat: exact, where the clock ticks of /proc/PID/stat are 10 ms). A
 *  thread that ended takes its share with it. */
export function runNanos(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try { ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]); } catch { /* ended meanwhile */ }
  }
  return ns;
}

/**
 * Wait until `pids` are at rest: together under `budgetMs` of CPU over `windowMs` (a device's idle
 * watch costs well under that; starting a thread, tens of ms), and no thread of theirs ended in
 * the window. Gives up after `maxMs`. Resolves with the ms waited.
 */
export async function atRest(pids: readonly number[], { windowMs = 100, budgetMs = 3, maxMs = 5000 } = {}): Promise<number> {
  const t0 = performance.now();
  let before = pids.map(runNanos);
  while (performance.now() - t0 < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    const now = pids.map(runNanos);
    const used = now.map((n, i) => n - before[i]!);
    if (used.every((ns) => ns >= 0) && used.reduce((a, b) => a + b, 0) < budgetMs * 1e6) break;
    before = now;
  }
  return performance.now() - t0;
}
