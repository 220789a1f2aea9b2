/**
 * Minor garbage collections at a steady pace, for threads that turn bulk data through
 * node:crypto. Every chunk sealed or opened comes back in a fresh buffer, garbage at once, and V8
 * collects memory outside its heap only once about 64 MB of it has piled up (its trigger for
 * external memory), the pages of which glibc then keeps: a 1 GiB push peaked at ~150 MB on the
 * server (the sealing thread's arena, ~35 MB of it) and the device alike. A minor collection
 * every few MiB keeps the pile to that; it is cheap where glibc keeps the freed pages (the
 * server's launchers raise its trim threshold: scripts/UpdateServer.sh says why).
 *
 * V8's gc() is reached through a context made while its flag is set, which is unset at once: a
 * context made later (a plugin's thread) does not get it. Made when this module loads, before any
 * such thread starts.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (options?: { type?: 'minor' | 'major' }) => void;

function exposeGc(): Gc | undefined {
  const given = (globalThis as { gc?: Gc }).gc;
  if (typeof given === 'function') return given;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? gc as Gc : undefined;
  } catch {
    return undefined;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

const gc = exposeGc();

/** Counts the bytes a thread turned into garbage; past `everyBytes`, a minor collection. */
export class GarbagePace {
  private since = 0;
  /** Collections made so far. */
  collections = 0;

  constructor(private readonly everyBytes = 8 * 1024 * 1024) {}

  spent(bytes: number): void {
    this.since += bytes;
    if (this.since < this.everyBytes || gc === undefined) return;
    this.since = 0;
    this.collections++;
    gc({ type: 'minor' });
  }
}
