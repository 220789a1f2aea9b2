/**
 * Inside a plugin host's worker thread (see plugin-host.ts): loads one module (module-loader.ts),
 * checks its shape, runs its selfTest() when asked, then answers pings (is the event loop
 * alive?) and health checks (its healthCheck(), if it exports one) for as long as it is the
 * device's module. Whatever the module does goes wrong here, in this thread: an uncaught error
 * or rejection ends the thread (the host hears 'error'), process.exit() ends only the thread, a
 * loop that never yields stops the pings, and the heap is capped by the host's resourceLimits.
 */
import { isAscii } from 'node:buffer';
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parentPort } from 'node:worker_threads';
import { errorMessage } from '../errors.js';
import { checkTextLength, loadModule, moduleText, readModuleText } from './module-loader.js';
import { checkModuleExports } from './plugin-shape.js';
import type { HostReply, HostRequest } from './plugin-host.js';

const port = parentPort!;
let exports: Record<string, unknown> | undefined;
/** Memory to read the coming module into (plugin-host.ts's prepareSpareFor), and how much of it
 *  has its pages mapped. */
let reserved: Buffer | undefined;
let mapped = 0;
/** The module's file as it is read into the reserve while it arrives (`take`): its descriptor
 *  and `device:inode`, how far it was read, and whether all of that is ASCII. */
let reading: { readonly fd: number; readonly identity: string; at: number; ascii: boolean } | undefined;
/** The coming module's text, read while the agent checked its digest (`readAhead`), for the
 *  load of that url. */
let ahead: { readonly url: string; readonly text: string } | undefined;

// A module may signal other processes, not the agent's (nor its group, nor every process): a
// signal would end the agent from this thread, which is what the thread is there to prevent.
const agentPid = process.pid;
const realKill = process.kill.bind(process);
const guardedKill = (pid: number, signal?: string | number): true => {
  if (pid === agentPid || pid <= 0) throw new Error('a plugin module may not signal the agent\'s process (or its group, or every process)');
  return realKill(pid, signal);
};
process.kill = guardedKill;
Object.defineProperty(process, '_kill', { value: (pid: number, signal: number) => guardedKill(pid, signal), writable: false });

/** This thread's id in the kernel (Linux: /proc/thread-self is "PID/task/TID"), so the host can
 *  tell a hung thread from one starved of CPU (hang-watch.ts). */
function kernelThreadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : undefined;
  } catch {
    return undefined;
  }
}

/** Memory for a module of `bytes`, its pages mapped (`map`) while the module still arrives: on
 *  the benchmark VM a 128 MiB module's read into fresh memory took ~240 ms after its last chunk,
 *  into mapped memory ~10 ms. `memory`: an earlier module's reserve the agent kept, mapped
 *  already as far as that module got (`map` then touches pages that are there: no faults).
 *  Without the memory for it now, the load reads into its own. */
function reserve(bytes: number, memory?: ArrayBuffer): void {
  release();
  if (memory !== undefined && memory.byteLength >= bytes) {
    reserved = Buffer.from(memory, 0, bytes);
    return;
  }
  try {
    reserved = Buffer.allocUnsafeSlow(bytes);
  } catch { /* no memory for it now */ }
}

function release(): void {
  stopReading();
  giveBack(reserved);
  reserved = undefined;
  mapped = 0;
  ahead = undefined;
}

function stopReading(): void {
  if (reading !== undefined) closeSync(reading.fd);
  reading = undefined;
}

/** `device:inode` of a file's stat. */
function identityOf(st: { dev: bigint; ino: bigint }): string {
  return `${st.dev}:${st.ino}`;
}

/** The module's file at `path` (the very one whose identity the agent gave: not a file or link
 *  planted at its name) is whole up to `upTo`: read it into the reserve that far. Reading
 *  stops (and the text is read whole after all: readAhead) if it cannot be read. */
function readUpTo(path: string, identity: string, upTo: number): void {
  if (reserved === undefined) return;
  if (reading === undefined) {
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      return;
    }
    if (identityOf(fstatSync(fd, { bigint: true })) !== identity) {
      closeSync(fd);
      return;
    }
    reading = { fd, identity, at: 0, ascii: true };
  } else if (reading.identity !== identity) {
    return;
  }
  readOn(reading, reserved, Math.min(upTo, reserved.length));
}

/** The file `r` reads, on into `into` up to `end` (or its end, if shorter); reading stops if it
 *  fails. */
function readOn(r: NonNullable<typeof reading>, into: Buffer, end: number): void {
  try {
    while (r.at < end) {
      const n = readSync(r.fd, into, r.at, end - r.at, r.at);
      if (n === 0) break;
      r.ascii &&= isAscii(into.subarray(r.at, r.at + n));
      r.at += n;
    }
  } catch {
    stopReading();
  }
  // Its pages are mapped now: read into.
  mapped = Math.max(mapped, Math.floor(r.at / 4096) * 4096);
}

/** The module's text from what was read of `file` while it arrived, and the rest of it now;
 *  undefined when that was not this file (the load reads it whole then). */
function textFromReading(file: string): string | undefined {
  const r = reading;
  if (r === undefined || reserved === undefined) return undefined;
  let there: string | undefined;
  try {
    there = identityOf(lstatSync(file, { bigint: true }));
  } catch { /* gone meanwhile */ }
  if (there !== r.identity) return undefined;
  const size = Number(fstatSync(r.fd, { bigint: true }).size);
  checkTextLength(size);
  if (size > reserved.length || size < r.at) return undefined;
  readOn(r, reserved, size);
  if (reading !== r || r.at !== size) return undefined;
  return moduleText(reserved.subarray(0, size), r.ascii);
}

/** A reserve done with goes back to the agent (moved, not copied), which may keep it for the
 *  next module (plugin-host.ts, keepReserve). Only once nothing refers to it: a module's text is
 *  a copy of its bytes (module-loader.ts). */
function giveBack(memory: Buffer | undefined): void {
  const buffer = memory?.buffer;
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength === 0) return;
  port.postMessage({ type: 'memory', memory: buffer } satisfies HostReply, [buffer]);
}

/** The reserve's pages up to `upTo` mapped: a byte written in each. */
function map(upTo: number): void {
  if (!reserved) return;
  const end = Math.min(upTo, reserved.length);
  for (let i = mapped; i < end; i += 4096) reserved[i] = 0;
  mapped = Math.max(mapped, Math.ceil(end / 4096) * 4096);
}

function reply(message: HostReply): void {
  port.postMessage(message);
}

/** The whole module is on disk at `path`, to become `url` once its digest is checked: read it
 *  into the reserve and make its text now (bytes only: nothing parses it before the load). If
 *  the message waited behind others, the file may be at `url` already (renamed there once
 *  verified: nothing else is). If it cannot be read, the load reads it as it would have. */
function readAhead(url: string, path: string): void {
  let ok = false;
  let early = 0;
  try {
    const file = existsSync(path) ? path : fileURLToPath(url);
    const before = reading?.at ?? 0;
    const fromReading = textFromReading(file);
    early = fromReading === undefined ? 0 : before;
    ahead = { url, text: fromReading ?? readModuleText(file, reserved) };
    giveBack(reserved);
    reserved = undefined;
    ok = true;
  } catch { /* left to the load */ }
  stopReading();
  reply({ type: 'read', url, ok, early });
}

async function load(url: string, selfTest: boolean): Promise<void> {
  let mod: Record<string, unknown>;
  // Nothing of the agent's stays open in the thread the module runs in.
  stopReading();
  const into = reserved;
  const early = ahead?.url === url ? ahead.text : undefined;
  reserved = undefined;
  ahead = undefined;
  try {
    mod = (await loadModule(url, into, early)).exports;
  } catch (err) {
    return reply({ type: 'failed', code: 'load-failed', message: `module failed to load: ${errorMessage(err)}` });
  } finally {
    giveBack(into);
  }
  let product;
  try {
    product = await checkModuleExports(mod);
  } catch (err) {
    return reply({ type: 'failed', code: (err as { code?: string }).code ?? 'load-failed', message: errorMessage(err) });
  }
  if (selfTest && typeof mod.selfTest === 'function') {
    try {
      const verdict: unknown = await (mod.selfTest as () => unknown)();
      if (verdict === false) return reply({ type: 'failed', code: 'self-test-failed', message: 'its selfTest() returned false' });
    } catch (err) {
      return reply({ type: 'failed', code: 'self-test-failed', message: `its selfTest() failed: ${errorMessage(err)}` });
    }
  }
  // One turn of the event loop first: a rejection nobody handled surfaces only after the
  // microtasks ran, and should refuse the module rather than roll it back a moment later.
  await new Promise((resolve) => setImmediate(resolve));
  exports = mod;
  reply({ type: 'loaded', product, hasHealthCheck: typeof mod.healthCheck === 'function' });
}

async function health(id: number): Promise<void> {
  const check = exports?.healthCheck;
  if (typeof check !== 'function') return reply({ type: 'health', id, ok: true });
  try {
    const verdict: unknown = await (check as () => unknown)();
    reply(verdict === false ? { type: 'health', id, ok: false, message: 'its healthCheck() returned false' } : { type: 'health', id, ok: true });
  } catch (err) {
    reply({ type: 'health', id, ok: false, message: `its healthCheck() failed: ${errorMessage(err)}` });
  }
}

/** A new config file for the module: its reconfigure(name, path) takes it (true or nothing) or
 *  refuses it (false, or it throws: the agent puts the old file back). */
async function reconfigure(id: number, name: string, path: string): Promise<void> {
  const take = exports?.reconfigure;
  if (typeof take !== 'function') return reply({ type: 'reconfigured', id, ok: false, supported: false });
  try {
    const verdict: unknown = await (take as (n: string, p: string) => unknown)(name, path);
    reply(verdict === false ? { type: 'reconfigured', id, ok: false, supported: true, message: 'its reconfigure() returned false' }
      : { type: 'reconfigured', id, ok: true, supported: true, message: typeof verdict === 'string' ? verdict.slice(0, 200) : undefined });
  } catch (err) {
    reply({ type: 'reconfigured', id, ok: false, supported: true, message: `its reconfigure() failed: ${errorMessage(err)}` });
  }
}

/** Its statusReport(), as JSON no larger than `maxBytes` (else a note of the size). */
async function status(id: number, maxBytes: number): Promise<void> {
  const make = exports?.statusReport;
  if (typeof make !== 'function') return reply({ type: 'status', id, report: undefined });
  try {
    const report: unknown = await (make as () => unknown)();
    const json = JSON.stringify(report ?? null);
    reply({ type: 'status', id, report: json.length > maxBytes ? { error: `its statusReport() is ${json.length} bytes of JSON, more than the ${maxBytes} allowed` } : JSON.parse(json) });
  } catch (err) {
    reply({ type: 'status', id, report: { error: `its statusReport() failed: ${errorMessage(err)}` } });
  }
}

port.on('message', (request: HostRequest) => {
  switch (request.type) {
    case 'load': void load(request.url, request.selfTest); break;
    case 'reserve': reserve(request.bytes, request.memory); break;
    case 'map': map(request.upTo); break;
    case 'take': readUpTo(request.path, request.identity, request.upTo); break;
    case 'release': release(); reply({ type: 'released', id: request.id }); break;
    case 'read': readAhead(request.url, request.path); break;
    case 'ping': reply({ type: 'pong', id: request.id }); break;
    case 'health': void health(request.id); break;
    case 'reconfigure': void reconfigure(request.id, request.name, request.path); break;
    case 'status': void status(request.id, request.maxBytes); break;
  }
});
reply({ type: 'ready', thread: kernelThreadId() });
