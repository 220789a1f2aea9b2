/** What /proc says about a process (Linux): CPU seconds and memory. */
import { readFileSync } from 'node:fs';

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
