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
    try { ns += taskRunNanos(pid, tid); } catch { /* ended meanwhile */ }
  }
  return ns;
}

/** Nanoseconds of CPU thread `tid` of `pid` has had so far (throws if it ended). */
const taskRunNanos = (pid: number, tid: string): number =>
  Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);

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

/** Each live thread of `pid` by id: its name and nanoseconds of CPU so far. Node 20 leaves its
 *  threads named `node`; the main thread is named `main` here, and the others by the rank of
 *  their CPU within the process when `cpuByThreadName` sums them. */
export function threadRunNanos(pid: number): Map<string, { name: string; ns: number }> {
  const out = new Map<string, { name: string; ns: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = tid === String(pid) ? 'main' : readFileSync(`/proc/${pid}/task/${tid}/comm`, 'latin1').trim();
      out.set(tid, { name, ns: taskRunNanos(pid, tid) });
    } catch { /* ended meanwhile */ }
  }
  return out;
}

/** CPU seconds by thread name between two `threadRunNanos` of one process, with what threads that
 *  ended in between used since `before` under "(ended)" (from `cpuBefore`/`cpuAfter`, the process's
 *  own totals, which keep an ended thread's share; to their 10 ms clock ticks). */
export function cpuByThreadName(before: ReturnType<typeof threadRunNanos>, after: ReturnType<typeof threadRunNanos>, cpuBefore: number, cpuAfter: number): Map<string, number> {
  const out = new Map<string, number>();
  let live = 0;
  const others: number[] = [];
  for (const [tid, t] of after) {
    const s = (t.ns - (before.get(tid)?.ns ?? 0)) / 1e9;
    live += s;
    if (t.name === 'node') others.push(s);
    else out.set(t.name, (out.get(t.name) ?? 0) + s);
  }
  // Unnamed threads by rank: the busiest (a plugin thread loading a module), the next, the rest.
  others.sort((a, b) => b - a);
  others.forEach((s, i) => {
    const key = i < 2 ? `thread #${i + 1}` : 'the other threads';
    out.set(key, (out.get(key) ?? 0) + s);
  });
  out.set('(ended)', Math.max(0, cpuAfter - cpuBefore - live));
  return out;
}
