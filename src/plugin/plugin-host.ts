/**
 * A plugin module runs in a worker thread of its own, never in the agent's thread: whatever the
 * module does, the agent keeps its console, its renewals and its transfers. The host loads the
 * module there (with a deadline and a heap cap), runs its selfTest() on a trial, and from then on
 * watches it: pings (ten a `hangMs`) that must be answered within `hangMs` (a loop that never
 * yields; time the thread or the host spent waiting for a CPU does not count: hang-watch.ts),
 * the thread's uncaught errors and unhandled rejections, process.exit() (it ends only the
 * thread), the heap cap (resourceLimits) and the process's resident memory (Buffers live outside
 * the heap). The first of these ends the module and is reported once as 'failed'.
 *
 * One worker is kept started and idle (a spare), so a trial does not wait the ~40 ms a new
 * thread takes (pushes of small modules are timed in tens of milliseconds); two for a while when
 * modules come in quick succession (spare-policy.ts). The next spare starts once a trial's load
 * is over, not beside it: starting a thread costs ~45 ms of CPU, which a device loading a module
 * (or a fleet of them sharing a host) has better use for. A device told of a module too large for
 * the spare's heap asks for a spare of the right size while the module is still arriving
 * (`prepareSpareFor`), and a spare reserves the memory a large module will be read into then,
 * not after its last chunk.
 */
import { EventEmitter } from 'node:events';
import { constants } from 'node:buffer';
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { Worker } from 'node:worker_threads';
import { NxtError } from '../errors.js';
import type { ProductInfo } from '../protocol/messages.js';
import { HangWatch } from './hang-watch.js';
import { HeldMemory, type Hold } from './held-memory.js';
import { pluginThreadFlags } from './module-loader.js';
import { SparePolicy } from './spare-policy.js';

export type HostRequest =
  | { type: 'load'; url: string; selfTest: boolean }
  /** Memory for the coming module's bytes; `map` maps its pages up to `upTo` (as the module
   *  arrives); `release` lets it go. */
  /** `memory`: a reserve kept from an earlier module (its pages mapped), at least `bytes` long. */
  | { type: 'reserve'; bytes: number; memory?: ArrayBuffer }
  | { type: 'map'; upTo: number }
  /** The module's file, `identity` its `device:inode`, is whole on disk up to `upTo`: read that
   *  much of it into the reserve (readUpTo). */
  | { type: 'take'; path: string; identity: string; upTo: number }
  /** `id`: echoed by its 'released', so that an answer to an earlier release is not taken for it. */
  | { type: 'release'; id: number }
  | { type: 'read'; url: string; path: string }
  | { type: 'ping'; id: number }
  | { type: 'health'; id: number }
  | { type: 'reconfigure'; id: number; name: string; path: string }
  | { type: 'status'; id: number; maxBytes: number };

export type HostReply =
  /** `thread`: the worker's kernel thread id (Linux), for its run-queue wait. */
  | { type: 'ready'; thread?: number }
  | { type: 'loaded'; product: ProductInfo; hasHealthCheck: boolean }
  | { type: 'failed'; code: string; message: string }
  | { type: 'pong'; id: number }
  | { type: 'health'; id: number; ok: boolean; message?: string }
  | { type: 'reconfigured'; id: number; ok: boolean; supported: boolean; message?: string }
  | { type: 'status'; id: number; report: unknown }
  /** The text of the module on its way was read ahead (`ok`), or left to its load; `early`:
   *  bytes of it that were read while it arrived (readUpTo), not after. */
  | { type: 'read'; url: string; ok: boolean; early: number }
  /** The reserve, done with (its module's text made, or its transfer stopped): back to the agent,
   *  which may keep it for the next module (keepReserve). */
  | { type: 'memory'; memory: ArrayBuffer }
  /** The release `id` asked for is done (its memory, if it had any, came just before). */
  | { type: 'released'; id: number };

/** Why a module was refused or ended: the NxtError codes a host uses. */
export type HostFailureCode =
  | 'load-failed' | 'bad-shape' | 'self-test-failed' | 'hung' | 'out-of-memory' | 'exited' | 'crashed' | 'unhealthy';

export interface HostLimits {
  /** Loading, the version function and selfTest() together must finish within this. */
  readonly loadTimeoutMs: number;
  /** The module's JavaScript heap (V8 old generation) in MiB; more ends it as out of memory. */
  readonly heapMb: number;
  /** A loaded module's thread must answer a ping within this. */
  readonly hangMs: number;
  /** The whole process's resident memory may grow by at most this many MiB over what it was when
   *  the module was loaded (off-heap allocations: Buffers, typed arrays). */
  readonly rssGrowthMb: number;
}

export const DEFAULT_HOST_LIMITS: HostLimits = { loadTimeoutMs: 30_000, heapMb: 256, hangMs: 5_000, rssGrowthMb: 512 };

/** How often the host looks at its module. On trial and on probation: memory every TICK_MS (a
 *  module allocating Buffers in a loop grows hundreds of MiB a second), a ping every
 *  PINGS_PER_HANG-th of `hangMs` (at least a tick: ten a hang limit tell a hang within a tenth
 *  of it). Committed (`commit`), a module has shown it does neither, and is looked at, memory and
 *  ping, every PINGS_PER_HANG-th of its limit: twice a second at the default 5 s. An agent runs
 *  its module for months: on the 2-core VM of docs/benchmarks.md an empty 100 ms interval alone
 *  cost 2.5 ms of CPU a second, and an idle agent ticking and pinging ten times a second ~9 ms
 *  (~4.7 with a ping every fifth tick). */
const TICK_MS = 100;
const PINGS_PER_HANG = 10;
const MIB = 1024 * 1024;
/** Smaller modules are read into fresh memory when they load: a 4 MiB one's pages take a few ms
 *  (~16 µs each on the benchmark VM), not worth a reserve that may be in vain. */
const RESERVE_MIN_BYTES = 4 * MIB;
/** A reserve's pages are mapped this far ahead of the bytes received, this much at a time. */
const MAP_STEP_BYTES = 4 * MIB;
/** A reserve takes the module's bytes from its file this much at a time (readUpTo). */
const READ_STEP_BYTES = 4 * MIB;
/** How long a reserve done with is kept for the next module (keepReserve). */
export const KEEP_RESERVE_MS = 30_000;
const WORKER_URL = new URL('./plugin-host-worker.js', import.meta.url);
/** The plugin thread's own Node options (module-loader.ts): none of the agent's are passed on. */
const PLUGIN_THREAD_FLAGS = pluginThreadFlags();

/** A started worker, not yet given a module. */
interface Thread {
  readonly worker: Worker;
  readonly heapMb: number;
  /** Resolves with the kernel thread id, when the worker could tell it. */
  readonly ready: Promise<number | undefined>;
  /** `ready` has resolved: the thread can take a module at once. */
  started: boolean;
}

function startThread(heapMb: number): Thread {
  const worker = new Worker(WORKER_URL, {
    execArgv: PLUGIN_THREAD_FLAGS,
    resourceLimits: { maxOldGenerationSizeMb: heapMb, maxYoungGenerationSizeMb: Math.min(64, Math.max(16, heapMb / 8)), stackSizeMb: 4 },
  });
  // Until a host owns it, a spare that fails is simply replaced (its error must not go unheard).
  const ready = new Promise<number | undefined>((resolve, reject) => {
    worker.once('message', (reply: HostReply) => {
      // The first message a thread receives takes ~2.5 ms longer than the next ones (Node sets up
      // its receiving side then): a ping spends that here, not in the trial's 'load'.
      worker.postMessage({ type: 'ping', id: 0 } satisfies HostRequest);
      worker.once('message', () => resolve(reply.type === 'ready' ? reply.thread : undefined));
    });
    worker.once('error', reject);
    worker.once('exit', () => reject(new Error('the plugin thread ended before it was ready')));
  });
  // Whichever module it is for by then: a reserve the thread is done with comes back here.
  worker.on('message', (reply: HostReply) => {
    if (reply.type === 'memory') keepReserve(reply.memory);
    else if (reply.type === 'released' && returning?.id === reply.id) {
      const { end } = returning;
      returning = undefined;
      if (end) void worker.terminate();
    }
  });
  worker.once('exit', () => { if (returning?.thread === thread) returning = undefined; });
  const thread: Thread = { worker, heapMb, ready, started: false };
  ready.then(() => { thread.started = true; }, () => undefined);
  return thread;
}

/** What the agent holds for modules on their way (reserves, trials), which no running module's
 *  memory watch counts as its own. */
const held = new HeldMemory();

/** The memory a spare reserves for the module on its way (one at a time: the next offer's
 *  replaces it): its bytes in `held`, how far its pages were asked to be mapped, and its text's
 *  bytes once it was read ahead (readAhead). */
interface Reservation {
  readonly thread: Thread; readonly bytes: number; readonly hold: Hold; mapAsked: number; text?: Hold;
  /** The file it reads the module from as it arrives (readUpTo): the first one named, only. */
  file?: { readonly path: string; readonly identity: string; readAsked: number };
}
let reservation: Reservation | undefined;

/**
 * A reserve its thread is done with, its pages mapped, kept for KEEP_RESERVE_MS for the next
 * module's reserve. On a VM that hands freed memory back to its host, memory taken again seconds
 * later can fault in as slowly as fresh (on the fourteenth and fifteenth sessions' VMs up to
 * ~10 ms a MiB, see docs/benchmarks.md); kept, a 128 MiB module pushed again within the half-minute (a retry, a
 * fix, a rollout's next release) maps none of its reserve. Counted in `held` while kept, so no
 * running module's memory watch takes it for the module's own growth.
 */
let kept: { readonly memory: ArrayBuffer; readonly hold: Hold; readonly timer: NodeJS.Timeout } | undefined;

function keepReserve(memory: unknown): void {
  dropKeptReserve();
  // Only memory moved here, which no other thread can write any more: the thread's module runs
  // there too, and could send a SharedArrayBuffer it keeps a view of, to change the next
  // module's bytes between their read and their text.
  if (!(memory instanceof ArrayBuffer) || memory.byteLength === 0) return;
  // Not at the expense of the device: kept only while as much again is still available.
  if (memory.byteLength > availableMemory()) return;
  const timer = setTimeout(dropKeptReserve, KEEP_RESERVE_MS);
  timer.unref();
  kept = { memory, hold: held.hold(memory.byteLength), timer };
}

/** The kept reserve goes (its garbage, like any, is freed at the agent's next collection). */
function dropKeptReserve(graceMs?: number): void {
  if (kept === undefined) return;
  clearTimeout(kept.timer);
  kept.hold.release(performance.now(), graceMs);
  kept = undefined;
}

/** The reservation ends (released, its thread taken or ended): counted a while more, until its
 *  garbage is collected. `graceMs` 0: taken by a load, whose own hold counts it from then. */
function endReservation(graceMs?: number): void {
  reservation?.hold.release(performance.now(), graceMs);
  reservation?.text?.release(performance.now(), graceMs);
  reservation = undefined;
}

/** The spares: started, idle, all of one heap size (spare-policy.ts says how many), and the one
 *  that reserves, whatever its size. */
let spares: Thread[] = [];
const sparePolicy = new SparePolicy();
let relaxTimer: NodeJS.Timeout | undefined;
/** The spare told last to give its reserve back, until it has. A spare no longer wanted
 *  meanwhile (the restocking after a trial, or the spare policy relaxing, right after a transfer
 *  stopped) ends only then (`end`): ended at once, it took the memory with it, and the next
 *  module mapped its own afresh. */
let returning: { thread: Thread; end: boolean; id: number } | undefined;
/** The last release asked of a spare: ids are unique across spares, so an answer names its spare too. */
let releaseId = 0;

/** A spare no longer wanted ends, once any reserve it was told to give back is back. */
function endSpare(s: Thread): void {
  if (returning?.thread === s) returning.end = true;
  else void s.worker.terminate();
}
/** The next spares' start, due once the trial that took a thread has handed back its module. */
let respare: NodeJS.Immediate | undefined;

function takeThread(heapMb: number, bytes: number): Thread {
  const fit = spares.filter((s) => s.heapMb === heapMb);
  const reserved = reservation !== undefined && reservation.bytes === bytes ? fit.find((s) => s === reservation?.thread) : undefined;
  const taken = reserved ?? fit.find((s) => s.started) ?? fit[0];
  spares = spares.filter((s) => s !== taken);
  if (taken !== undefined && taken === reservation?.thread) endReservation(0);
  const now = performance.now();
  sparePolicy.trial(now, !taken?.started);
  const relaxAt = sparePolicy.relaxAt(now);
  if (relaxAt !== undefined) {
    clearTimeout(relaxTimer);
    relaxTimer = setTimeout(() => keepSpares(spares.find((s) => s !== reservation?.thread)?.heapMb ?? heapMb, sparePolicy.count(performance.now())), relaxAt - now);
    relaxTimer.unref();
  }
  return taken ?? startThread(heapMb);
}

/** `count` spares of `heapMb`: others end, missing ones start, extra ones (the last started) end.
 *  A spare holding a reserve stays whatever its size: it is for a module on its way (the next
 *  trial's restocking, or fewer spares after a quick succession, must not take it away). */
function keepSpares(heapMb: number, count: number): void {
  const reserving = spares.find((s) => s === reservation?.thread);
  const fit = spares.filter((s) => s.heapMb === heapMb && s !== reserving);
  const fitCount = Math.max(0, count - (reserving?.heapMb === heapMb ? 1 : 0));
  for (const s of [...spares.filter((x) => x.heapMb !== heapMb && x !== reserving), ...fit.slice(fitCount)]) endSpare(s);
  spares = [...(reserving ? [reserving] : []), ...fit.slice(0, fitCount)];
  while (spares.filter((s) => s.heapMb === heapMb).length < count) {
    const s = startThread(heapMb);
    s.worker.unref();
    s.ready.catch(() => {
      spares = spares.filter((x) => x !== s);
      if (reservation?.thread === s) endReservation();
    });
    spares.push(s);
  }
}

/** Start the spares for the next trials (at agent start, and after each use). */
export function prepareSpare(heapMb = DEFAULT_HOST_LIMITS.heapMb): void {
  keepSpares(heapMb, sparePolicy.count(performance.now()));
}

/**
 * A spare fit for a module of `bytes` (the agent calls this when it accepts an offer): one of
 * another size is started, in place of the usual ones (a no-op for the usual sizes). With
 * `reserve`, the spare also maps the memory the module will be read into, while it arrives: a
 * device waiting for the network has the time then, and after the last chunk the load reads into
 * memory that is there (on the benchmark VM, where fresh memory is slow to come, a 128 MiB
 * module's load took ~390 ms rather than ~700). Not for small modules, nor for what could not
 * load anyway, nor when the memory still available could not hold the module twice (its bytes,
 * and the text they become): such a module is read when it loads, as before.
 */
export function prepareSpareFor(bytes: number, floorMb = DEFAULT_HOST_LIMITS.heapMb, { reserve = true } = {}): void {
  const heapMb = heapFor(bytes, floorMb);
  releaseReserve();
  if (!spares.some((s) => s.heapMb === heapMb)) keepSpares(heapMb, 1);
  // A kept reserve that fits is memory the device has already. It serves this module or goes: a
  // device taking a module it cannot serve (larger, or with no reserve at all: a 1 GiB module
  // is longer than V8 compiles) would hold it for nothing meanwhile.
  const memory = kept !== undefined && kept.memory.byteLength >= bytes ? kept.memory : undefined;
  const spare = spares.find((s) => s.heapMb === heapMb && s.started) ?? spares.find((s) => s.heapMb === heapMb);
  if (!reserve || !reservesFor(bytes, availableMemory() + (memory?.byteLength ?? 0)) || !spare) {
    dropKeptReserve();
    return;
  }
  // Taken: the reservation's hold counts it from now.
  dropKeptReserve(0);
  reservation = { thread: spare, bytes, hold: held.hold(memory?.byteLength ?? bytes), mapAsked: 0 };
  spare.worker.postMessage({ type: 'reserve', bytes, memory } satisfies HostRequest, memory === undefined ? [] : [memory]);
  reserveUpTo(0);
}

/**
 * `receivedBytes` of the module on its way are here (the agent calls this for every chunk): the
 * spare maps its reserve's pages a step ahead of them. In step with the module rather than all at
 * the offer: memory grows with the download, as the file does, and the work is spread over the
 * transfer (fifty devices sharing two cores, each mapping its 16 MiB at the offer, fell behind
 * the group's start).
 */
export function reserveUpTo(receivedBytes: number): void {
  const r = reservation;
  if (r === undefined) return;
  const upTo = Math.min(receivedBytes + MAP_STEP_BYTES, r.bytes);
  if (upTo <= r.mapAsked || (upTo < r.mapAsked + MAP_STEP_BYTES && upTo < r.bytes)) return;
  r.mapAsked = upTo;
  r.thread.worker.postMessage({ type: 'map', upTo } satisfies HostRequest);
}

/**
 * The module on its way is whole on disk at `path` from its start up to `bytes` (the agent calls
 * this as its writes land; `identity`: the file's `device:inode`): the spare that reserved for it
 * reads that much into its reserve, a step at a time, beside the transfer. After the last chunk
 * only the text is left to make (readAhead): on the benchmark VM, reading a 128 MiB module from
 * the page cache and checking it is ASCII took ~35 ms there, with the device's cores otherwise
 * idle but for the hash. Bytes only, like readAhead's; a reservation reads from one file only
 * (the first named), and readAhead makes the text from it only if that is still the file there.
 */
export function readUpTo(path: string, identity: string, bytes: number): void {
  const r = reservation;
  if (r === undefined || r.text !== undefined) return;
  r.file ??= { path, identity, readAsked: 0 };
  const f = r.file;
  if (f.path !== path || f.identity !== identity) return;
  const upTo = Math.min(bytes, r.bytes);
  if (upTo <= f.readAsked || (upTo < f.readAsked + READ_STEP_BYTES && upTo < r.bytes)) return;
  f.readAsked = upTo;
  r.thread.worker.postMessage({ type: 'take', path, identity, upTo } satisfies HostRequest);
}

/** Whether a module's text was read ahead of its load, and how many of its bytes were read while
 *  it arrived (the rest after its last chunk). */
export interface ReadAhead { readonly ok: boolean; readonly early: number }
const NOT_READ_AHEAD: ReadAhead = { ok: false, early: 0 };

/**
 * The module on its way is whole on disk at `path` (or at `url`'s, once renamed there), to become
 * `url` once its digest is checked: the spare that reserved for it reads it into its reserve and
 * makes its text now, beside that check (on the benchmark VM the digest of a 128 MiB module came
 * 30–45 ms after its last chunk; its text, a copy into fresh memory, took 25–300 ms). What it read
 * while the module arrived (readUpTo) is not read again. Bytes only: nothing parses the text
 * before the load of `url` in that thread compiles and evaluates it, once the digest was checked;
 * any other end of the transfer releases it (releaseReserve).
 */
export function readAhead(path: string, url: string): Promise<ReadAhead> {
  const r = reservation;
  if (r === undefined || r.text !== undefined) return Promise.resolve(NOT_READ_AHEAD);
  // Its text, beside its bytes, until a load takes the thread (and counts both as its own).
  r.text = held.hold(r.bytes);
  const { worker } = r.thread;
  // Resolves whether it was read ahead (the agent does not wait: its tests do).
  const told = new Promise<ReadAhead>((resolve) => {
    const onReply = (reply: HostReply): void => {
      if (reply.type !== 'read' || reply.url !== url) return;
      worker.off('message', onReply);
      resolve({ ok: reply.ok, early: reply.early });
    };
    worker.on('message', onReply);
    worker.once('exit', () => resolve(NOT_READ_AHEAD));
  });
  worker.postMessage({ type: 'read', url, path } satisfies HostRequest);
  return told;
}

/** Memory the agent may still take: within its container's limit where Node can tell (Node
 *  20.13 and later), else the system's. */
function availableMemory(): number {
  const p = process as { availableMemory?: () => number };
  return p.availableMemory?.() ?? freemem();
}

/** Whether a spare reserves memory for a module of `bytes` while it arrives (prepareSpareFor). */
export function reservesFor(bytes: number, availableBytes: number): boolean {
  return bytes >= RESERVE_MIN_BYTES && bytes <= constants.MAX_STRING_LENGTH && 2 * bytes <= availableBytes;
}

/** The spares let go of memory reserved for a module that will not load now (its transfer
 *  stopped, or it waits for an upgrade). */
export function releaseReserve(): void {
  if (reservation === undefined) return;
  const { thread } = reservation;
  endReservation();
  const id = ++releaseId;
  thread.worker.postMessage({ type: 'release', id } satisfies HostRequest);
  // One still owed by another spare no longer wanted: that memory is given up.
  if (returning !== undefined && returning.thread !== thread && returning.end) void returning.thread.worker.terminate();
  // Only this release's answer ends it: the answer to the same spare's release before may still
  // be on its way, and taken for this one, it ended the spare before this memory came back.
  returning = { thread, end: returning?.thread === thread && returning.end, id };
}

/** The spares as they are: heap size, and bytes reserved (0: none). */
export function spareThreads(): { heapMb: number; reservedBytes: number }[] {
  return spares.map((s) => ({ heapMb: s.heapMb, reservedBytes: s === reservation?.thread ? reservation.bytes : 0 }));
}

/** The size of the reserve kept for the next module (0: none). */
export function keptReserveBytes(): number {
  return kept?.memory.byteLength ?? 0;
}

/** End the spares (the agent is stopping). */
export async function dropSpare(): Promise<void> {
  clearTimeout(relaxTimer);
  clearImmediate(respare);
  respare = undefined;
  const ending = [...spares, ...(returning?.end ? [returning.thread] : [])];
  spares = [];
  returning = undefined;
  endReservation();
  dropKeptReserve();
  await Promise.all(ending.map((s) => s.worker.terminate()));
}

/**
 * Heap for a module of `bytes`: its source text, the compiled code and the module's own data
 * must fit, so large modules get more than the configured floor.
 */
export function heapFor(bytes: number, floorMb: number): number {
  return Math.max(floorMb, Math.ceil((4 * bytes) / MIB) + 64);
}

/** Events: 'failed' (NxtError with a HostFailureCode), at most once, after the module loaded. */
export class PluginHost extends EventEmitter {
  private stopping = false;
  private loaded = false;
  private failure: NxtError | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pingId = 0;
  private hangWatch: HangWatch | undefined;
  private ticks = 0;
  private pings = 0;
  private pingEveryTicks: number;
  private hangMs: number;
  private tickMs = TICK_MS;
  /** The worker's kernel thread id (Linux), once it is ready. */
  private threadId: number | undefined;
  private rssLimit = Infinity;
  /** Its own load's hold in `held` (its own growth, which its watch counts). */
  private loading: Hold | undefined;
  /** Refuses the load (until it is loaded, every failure goes there). */
  private rejectLoad: (err: NxtError) => void = () => undefined;
  private readonly healthWaiters = new Map<number, (reply: { ok: boolean; message?: string }) => void>();
  private readonly reconfigureWaiters = new Map<number, (reply: { ok: boolean; supported: boolean; message?: string }) => void>();
  private readonly statusWaiters = new Map<number, (report: unknown) => void>();
  private readonly answerWaiters: { resolve: () => void; reject: (err: NxtError) => void }[] = [];

  private constructor(private readonly worker: Worker, private readonly limits: HostLimits, readonly url: string) {
    super();
    this.hangMs = limits.hangMs;
    this.pingEveryTicks = Math.max(1, Math.round(this.hangMs / PINGS_PER_HANG / TICK_MS));
  }

  /** The module is committed: hold it to `hangMs` (the default limit, not its probation's
   *  shorter one: with `--probation 1`, half a second of synchronous work would otherwise end a
   *  committed module's thread), and look at it less often (see TICK_MS). */
  commit(hangMs: number): void {
    this.hangMs = hangMs;
    this.tickMs = Math.max(TICK_MS, hangMs / PINGS_PER_HANG);
    this.pingEveryTicks = 1;
    if (this.hangWatch) {
      this.hangWatch.hangMs = hangMs;
      this.hangWatch.tickMs = this.tickMs;
    }
    if (this.timer !== undefined && !this.stopping) {
      clearInterval(this.timer);
      this.watch(false);
    }
  }

  product!: ProductInfo;
  hasHealthCheck = false;

  /**
   * Load `url` in a thread of its own; with `selfTest`, also run the module's selfTest(). Resolves
   * once it is loaded and watched; rejects (NxtError, a HostFailureCode) with the thread ended.
   */
  static async load(url: string, options: { selfTest: boolean; limits?: Partial<HostLimits>; sizeBytes?: number }): Promise<PluginHost> {
    const configured = { ...DEFAULT_HOST_LIMITS, ...options.limits };
    const heapMb = heapFor(options.sizeBytes ?? 0, configured.heapMb);
    // A large module's source and code live in its heap and, while it loads, outside it too.
    const limits = { ...configured, heapMb, rssGrowthMb: Math.max(configured.rssGrowthMb, 2 * heapMb) };
    const thread = takeThread(limits.heapMb, options.sizeBytes ?? 0);
    const host = new PluginHost(thread.worker, limits, url);
    // Its bytes and its text, while it loads: the running module's growth they are not.
    host.loading = held.hold(2 * (options.sizeBytes ?? 0));
    try {
      await host.start(thread, options.selfTest);
    } catch (err) {
      host.stopping = true;
      clearInterval(host.timer);
      await thread.worker.terminate();
      throw err;
    } finally {
      host.loading.release(performance.now());
      // The next trial's thread, now that this one no longer competes with it for the CPU, and
      // after the caller has made the module the running one (new Worker() holds this thread
      // ~1 ms).
      clearImmediate(respare);
      respare = setImmediate(() => { respare = undefined; prepareSpare(configured.heapMb); });
    }
    return host;
  }

  private start(thread: Thread, selfTest: boolean): Promise<void> {
    const { worker } = this;
    worker.ref();
    return new Promise<void>((resolve, reject) => {
      const deadline = setTimeout(() => this.fail(new NxtError('hung', `it did not finish loading${selfTest ? ' and its selfTest()' : ''} within ${this.limits.loadTimeoutMs} ms`)), this.limits.loadTimeoutMs);
      this.rejectLoad = (err) => { clearTimeout(deadline); reject(err); };
      worker.on('message', (reply: HostReply) => {
        switch (reply.type) {
          case 'loaded':
            clearTimeout(deadline);
            this.product = reply.product;
            this.hasHealthCheck = reply.hasHealthCheck;
            this.hangWatch = new HangWatch(this.hangMs, this.tickMs, performance.now(), this.runQueueWaitMs());
            this.loaded = true;
            resolve();
            return;
          case 'failed': return this.fail(new NxtError(reply.code, reply.message));
          case 'pong': {
            this.hangWatch?.answered(performance.now(), this.runQueueWaitMs());
            for (const w of this.answerWaiters.splice(0)) w.resolve();
            return;
          }
          case 'health': this.healthWaiters.get(reply.id)?.(reply); return;
          case 'reconfigured': this.reconfigureWaiters.get(reply.id)?.(reply); return;
          case 'status': this.statusWaiters.get(reply.id)?.(reply.report); return;
          default: return;
        }
      });
      worker.on('error', (err: Error & { code?: string }) => {
        this.fail(err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new NxtError('out-of-memory', `it ran out of memory (its heap is capped at ${this.limits.heapMb} MiB)`)
          : new NxtError('crashed', `an uncaught error in it: ${err.message}`));
      });
      worker.on('exit', (code) => {
        if (!this.stopping) this.fail(new NxtError('exited', `it ended its thread (process.exit(${code}) or the like)`));
      });
      this.watch();
      void thread.ready.then(
        (threadId) => {
          this.threadId = threadId;
          worker.postMessage({ type: 'load', url: this.url, selfTest } satisfies HostRequest);
        },
        (err: Error) => this.fail(new NxtError('crashed', `its thread did not start: ${err.message}`)),
      );
    });
  }

  /** From the start of loading: memory; once loaded: pings too (compiling a large module keeps
   *  the thread busy for seconds, and the load deadline covers that). */
  private watch(fromNow = true): void {
    if (fromNow) this.rssLimit = process.memoryUsage.rss() + this.limits.rssGrowthMb * MIB;
    this.timer = setInterval(() => {
      if (process.memoryUsage.rss() > this.rssLimit + held.bytes(performance.now(), this.loading)) {
        this.fail(new NxtError('out-of-memory', `the agent's memory grew by more than ${this.limits.rssGrowthMb} MiB while it ran`));
        return;
      }
      if (!this.loaded || !this.hangWatch) return;
      const hang = this.hangWatch.tick(performance.now(), () => this.runQueueWaitMs());
      if (hang) {
        const starved = hang.starvedMs >= 1 ? `, ${Math.round(hang.starvedMs)} ms of it waiting for a CPU` : '';
        this.fail(new NxtError('hung', `it stopped answering for ${Math.round(hang.silentMs)} ms${starved} (a loop that never yields?)`));
        return;
      }
      if (++this.ticks % this.pingEveryTicks !== 0) return;
      this.pings++;
      this.worker.postMessage({ type: 'ping', id: ++this.pingId } satisfies HostRequest);
    }, this.tickMs);
    this.timer.unref();
  }

  /** How long the module's thread has waited, runnable, for a CPU (Linux schedstat, in ms since
   *  it started), or undefined where the system does not say. */
  private runQueueWaitMs(): number | undefined {
    if (this.threadId === undefined) return undefined;
    try {
      const fields = readFileSync(`/proc/self/task/${this.threadId}/schedstat`, 'latin1').split(' ');
      const waitedNs = Number(fields[1]);
      return Number.isFinite(waitedNs) ? waitedNs / 1e6 : undefined;
    } catch {
      return undefined;
    }
  }

  /** The first failure ends the module's thread and is reported once (while it loads: the load
   *  is refused with it). */
  private fail(err: NxtError): void {
    if (!this.loaded) { this.rejectLoad(err); return; }
    if (this.failure || this.stopping) return;
    this.failure = err;
    this.stopping = true;
    clearInterval(this.timer);
    for (const w of this.healthWaiters.values()) w({ ok: false, message: err.message });
    for (const w of this.answerWaiters.splice(0)) w.reject(err);
    for (const w of this.reconfigureWaiters.values()) w({ ok: false, supported: true, message: err.message });
    void this.worker.terminate();
    this.emit('failed', err);
  }

  /** The watch's ticks since the module loaded, the pings among them, and its tick now. */
  get watched(): { ticks: number; pings: number; tickMs: number } { return { ticks: this.ticks, pings: this.pings, tickMs: this.tickMs }; }

  /** Resolves at the thread's next answer to a ping (within a ping's interval of a running
   *  thread); rejects with the failure if the module fails first (a thread that never answers
   *  is found hung). */
  nextAnswer(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => { this.answerWaiters.push({ resolve, reject }); });
  }

  /** Ask the module's healthCheck() (true when it exports none); rejects with 'unhealthy'. */
  async healthCheck(timeoutMs: number): Promise<void> {
    if (this.failure) throw this.failure;
    const id = ++this.pingId;
    const reply = await new Promise<{ ok: boolean; message?: string }>((resolve) => {
      const timer = setTimeout(() => resolve({ ok: false, message: `its healthCheck() did not answer within ${timeoutMs} ms` }), timeoutMs);
      this.healthWaiters.set(id, (r) => { clearTimeout(timer); resolve(r); });
      this.worker.postMessage({ type: 'health', id } satisfies HostRequest);
    });
    this.healthWaiters.delete(id);
    if (!reply.ok) throw new NxtError('unhealthy', reply.message ?? 'its healthCheck() failed');
  }

  /**
   * Hand the module a new config file through its reconfigure(name, path), within `timeoutMs`.
   * Resolves with what it said; rejects 'not-supported' (no such export) or 'refused' (it
   * returned false, threw, or did not answer).
   */
  async reconfigure(name: string, path: string, timeoutMs: number): Promise<string | undefined> {
    if (this.failure) throw this.failure;
    const id = ++this.pingId;
    const reply = await new Promise<{ ok: boolean; supported: boolean; message?: string }>((resolve) => {
      const timer = setTimeout(() => resolve({ ok: false, supported: true, message: `its reconfigure() did not answer within ${timeoutMs} ms` }), timeoutMs);
      this.reconfigureWaiters.set(id, (r) => { clearTimeout(timer); resolve(r); });
      this.worker.postMessage({ type: 'reconfigure', id, name, path } satisfies HostRequest);
    });
    this.reconfigureWaiters.delete(id);
    if (!reply.supported) throw new NxtError('not-supported', 'the active plugin takes no configuration (it exports no reconfigure())');
    if (!reply.ok) throw new NxtError('refused', reply.message ?? 'its reconfigure() refused the file');
    return reply.message;
  }

  /**
   * What the module's statusReport() says (for `job report`), bounded: an answer later than
   * `timeoutMs` or larger than `maxBytes` of JSON is replaced by a note saying so. Undefined when
   * the module exports none.
   */
  async statusReport(timeoutMs: number, maxBytes: number): Promise<unknown> {
    if (this.failure) return { error: this.failure.message };
    const id = ++this.pingId;
    const report = await new Promise<unknown>((resolve) => {
      const timer = setTimeout(() => resolve({ error: `its statusReport() did not answer within ${timeoutMs} ms` }), timeoutMs);
      this.statusWaiters.set(id, (r) => { clearTimeout(timer); resolve(r); });
      this.worker.postMessage({ type: 'status', id, maxBytes } satisfies HostRequest);
    });
    this.statusWaiters.delete(id);
    return report;
  }

  /** End the module (it is replaced, or the agent stops); no 'failed' follows. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.worker.terminate();
  }
}
