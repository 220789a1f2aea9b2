/**
 * Floors: what Node itself costs a receiver that does only what any receiver of a sealed release
 * must do, with nothing of nxt — `node:dgram`, ChaCha20-Poly1305 opening each chunk, SHA-256 over
 * the module, its bytes written to a file in 512 KiB writes, the module loaded with `import()` at
 * the end. No session, no rate model, no loss recovery: a datagram lost is a chunk missing.
 *
 * - A group (fanout.ts): one receiver per device namespace, the sender pacing at a fixed rate;
 *   each receiver's CPU-seconds to receive, and with the load.
 *     node dist-bench/bench/bare.js group-receive GROUP PORT IFACE-ADDR FILE CHUNKS
 *     node dist-bench/bench/bare.js group-send GROUP PORT IFACE-ADDR MODULE MBIT
 * - A pair on loopback (transfer.ts, `barePair`): the sender keeps at most 1 MiB in flight, and
 *   no more than a quarter of the receiver's socket buffer (the kernel counts more than the bytes
 *   for each datagram), the receiver returns credit every 16 datagrams: lossless on loopback. The
 *   data phase from the first datagram to the last chunk.
 *     node dist-bench/bench/bare.js pair-receive FILE BYTES CHUNK
 *     node dist-bench/bench/bare.js pair-send PORT MODULE CHUNK WINDOW
 */
import dgram from 'node:dgram';
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Proc } from '../test/support/processes.js';

/** A group's chunks: about nxt's (8650 bytes there), one a datagram, which IP cuts into six
 *  frames on a 1500-byte LAN. */
export const GROUP_CHUNK = 8192;
const HEADER = 4;
const TAG = 16;
/** IPv4 and UDP headers: a datagram of D bytes on the wire carries D − 28 of its own. */
const IP_UDP = 28;
const KEY = Buffer.alloc(32, 0x5a);
const END = Buffer.from('bare end');
const CREDIT_EVERY = 16;
const MAX_WINDOW_BYTES = 1 << 20;

function nonceOf(index: number, into: Buffer): Buffer {
  into.fill(0);
  into.writeUInt32BE(index, 8);
  return into;
}

/** The module's chunks, each sealed in a datagram of its own: index, ciphertext, tag. */
function sealAll(module: string, chunk: number): Buffer[] {
  const bytes = readFileSync(module);
  const nonce = Buffer.alloc(12);
  const out: Buffer[] = [];
  for (let i = 0, off = 0; off < bytes.length; i++, off += chunk) {
    const c = createCipheriv('chacha20-poly1305', KEY, nonceOf(i, nonce), { authTagLength: TAG });
    const body = c.update(bytes.subarray(off, off + chunk));
    c.final();
    const head = Buffer.alloc(HEADER);
    head.writeUInt32BE(i);
    out.push(Buffer.concat([head, body, c.getAuthTag()]));
  }
  return out;
}

/** Opens, hashes and writes chunks as they come; `load` when all are in. */
class BareReceiver {
  got = 0;
  private readonly fd: number;
  private readonly hash = createHash('sha256');
  private readonly held: Uint8Array;
  private readonly nonce = Buffer.alloc(12);
  // In-order chunks gathered into 512 KiB, one write each (as nxt writes).
  private readonly batch = Buffer.allocUnsafe(512 * 1024);
  private batchAt = 0;
  private batchBytes = 0;

  constructor(private readonly file: string, readonly chunks: number, private readonly chunk: number) {
    this.fd = openSync(file, 'w');
    this.held = new Uint8Array(chunks);
  }

  /** False for a chunk out of range, held already, or that does not open. */
  take(m: Buffer): boolean {
    const index = m.readUInt32BE(0);
    if (index >= this.chunks || this.held[index] === 1) return false;
    const d = createDecipheriv('chacha20-poly1305', KEY, nonceOf(index, this.nonce), { authTagLength: TAG });
    d.setAuthTag(m.subarray(m.length - TAG));
    const plain = d.update(m.subarray(HEADER, m.length - TAG));
    try { d.final(); } catch { return false; }
    this.held[index] = 1;
    this.got++;
    this.hash.update(plain);
    const at = index * this.chunk;
    if (this.batchBytes > 0 && (at !== this.batchAt + this.batchBytes || this.batchBytes + plain.length > this.batch.length)) this.flush();
    if (this.batchBytes === 0) this.batchAt = at;
    plain.copy(this.batch, this.batchBytes);
    this.batchBytes += plain.length;
    return true;
  }

  /** Written, synced and, when every chunk is in, loaded: whether it loaded. */
  async finish(): Promise<boolean> {
    this.flush();
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.hash.digest(); // what a receiver checks against its manifest (this one has none)
    if (this.got !== this.chunks) return false;
    try { await import(pathToFileURL(this.file).href); return true; } catch { return false; }
  }

  private flush(): void {
    if (this.batchBytes > 0) writeSync(this.fd, this.batch, 0, this.batchBytes, this.batchAt);
    this.batchBytes = 0;
  }
}

const cpuOf = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1e6;

async function groupReceive(group: string, port: number, iface: string, file: string, chunks: number): Promise<void> {
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: 16 << 20 });
  const receiver = new BareReceiver(file, chunks, GROUP_CHUNK);
  let cpu0: NodeJS.CpuUsage | undefined;
  let t0 = 0;
  let ended = false;
  const finish = async (): Promise<void> => {
    if (ended) return;
    ended = true;
    socket.close();
    const received = process.cpuUsage(cpu0);
    const loaded = await receiver.finish();
    console.log(JSON.stringify({ got: receiver.got, chunks, loaded, receiveCpu: cpuOf(received), cpu: cpuOf(process.cpuUsage(cpu0)), ms: Math.round(performance.now() - t0) }));
    process.exit(0);
  };
  socket.on('message', (m) => {
    if (m.equals(END)) { void finish(); return; }
    if (cpu0 === undefined) { cpu0 = process.cpuUsage(); t0 = performance.now(); }
    receiver.take(m);
  });
  setTimeout(() => void finish(), 120_000).unref();
  socket.bind(port, () => {
    socket.addMembership(group, iface);
    console.log('ready');
  });
}

async function groupSend(group: string, port: number, iface: string, module: string, mbit: number): Promise<void> {
  // Sealed before the clock starts, as nxt seals a release once.
  const datagrams = sealAll(module, GROUP_CHUNK);
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((res) => socket.bind(0, iface, res));
  socket.setMulticastInterface(iface);
  socket.setMulticastTTL(1);
  const perDatagramMs = ((GROUP_CHUNK + HEADER + TAG) * 8) / (mbit * 1000);
  const t0 = performance.now();
  for (let i = 0; i < datagrams.length; i++) {
    const wait = t0 + i * perDatagramMs - performance.now();
    if (wait > 1) await new Promise((res) => setTimeout(res, wait));
    await new Promise<void>((res, rej) => socket.send(datagrams[i]!, port, group, (e) => (e ? rej(e) : res())));
  }
  // The end mark a few times over (it may be lost as any datagram may), after the last chunk
  // has had time to be read.
  for (let k = 0; k < 5; k++) {
    await new Promise((res) => setTimeout(res, 200));
    socket.send(END, port, group);
  }
  await new Promise((res) => setTimeout(res, 100));
  socket.close();
}

async function pairReceive(file: string, bytes: number, chunk: number): Promise<void> {
  const chunks = Math.ceil(bytes / chunk);
  const receiver = new BareReceiver(file, chunks, chunk);
  const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const credit = Buffer.alloc(4);
  let creditEvery = CREDIT_EVERY;
  let cpu0: NodeJS.CpuUsage | undefined;
  let t0 = 0;
  socket.on('message', (m, from) => {
    if (cpu0 === undefined) { cpu0 = process.cpuUsage(); t0 = performance.now(); }
    receiver.take(m);
    if (receiver.got % creditEvery !== 0 && receiver.got !== chunks) return;
    credit.writeUInt32BE(receiver.got);
    socket.send(credit, from.port, from.address);
    if (receiver.got !== chunks) return;
    const dataMs = performance.now() - t0;
    const received = process.cpuUsage(cpu0);
    void receiver.finish().then((loaded) => {
      console.log(JSON.stringify({ dataMs, loadMs: performance.now() - t0 - dataMs, loaded, receiveCpu: cpuOf(received), cpu: cpuOf(process.cpuUsage(cpu0)) }));
      socket.close();
    });
  });
  // The window (datagrams) from the buffer the kernel granted (net.core.rmem_max caps what was
  // asked for): the sender's to keep to, credit at least twice in it.
  socket.bind(0, '127.0.0.1', () => {
    const window = Math.max(1, Math.floor(Math.min(MAX_WINDOW_BYTES, socket.getRecvBufferSize() / 4) / chunk));
    creditEvery = Math.max(1, Math.min(CREDIT_EVERY, Math.floor(window / 2)));
    console.log(`ready ${socket.address().port} ${window}`);
  });
}

async function pairSend(port: number, module: string, chunk: number, window: number): Promise<void> {
  const datagrams = sealAll(module, chunk);
  const socket = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
  await new Promise<void>((res) => socket.bind(0, '127.0.0.1', res));
  socket.connect(port, '127.0.0.1');
  await new Promise((res) => socket.once('connect', res));
  let sent = 0;
  let credited = 0;
  const cpu0 = process.cpuUsage();
  await new Promise<void>((res, rej) => {
    let stall: NodeJS.Timeout | undefined;
    const pump = (): void => {
      while (sent < datagrams.length && sent - credited < window) socket.send(datagrams[sent++]!);
      clearTimeout(stall);
      if (credited === datagrams.length) { res(); return; }
      stall = setTimeout(() => rej(new Error(`stalled at ${credited} of ${datagrams.length} (a datagram lost)`)), 5000);
    };
    socket.on('message', (m) => { credited = Math.max(credited, m.readUInt32BE(0)); pump(); });
    pump();
  });
  console.log(JSON.stringify({ senderCpu: cpuOf(process.cpuUsage(cpu0)), datagrams: datagrams.length }));
  socket.close();
}

/** A bare pair on loopback moving `module` in datagrams of `datagramBytes` (IP and UDP headers
 *  included): the receiver's data phase and load, both sides' CPU; undefined if it failed. */
export async function barePair(module: string, bytes: number, datagramBytes: number, into: string): Promise<{ dataMs: number; loadMs: number; receiveCpu: number; senderCpu: number } | undefined> {
  const chunk = datagramBytes - IP_UDP - HEADER - TAG;
  const script = import.meta.filename;
  const receiver = new Proc('bare-receiver', process.execPath, [script, 'pair-receive', into, String(bytes), String(chunk)]);
  try {
    const [, port, window] = await receiver.waitFor(/ready (\d+) (\d+)/, 10_000);
    const sender = new Proc('bare-sender', process.execPath, [script, 'pair-send', port!, module, String(chunk), window!]);
    const [r, s] = await Promise.all([receiver.waitFor(/\{"dataMs".*\}/, 60_000), sender.waitFor(/\{"senderCpu".*\}/, 60_000)]);
    const got = JSON.parse(r[0]) as { dataMs: number; loadMs: number; loaded: boolean; receiveCpu: number };
    return got.loaded ? { ...got, senderCpu: (JSON.parse(s[0]) as { senderCpu: number }).senderCpu } : undefined;
  } catch {
    return undefined;
  } finally {
    await receiver.stop('SIGKILL');
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [role, ...a] = process.argv.slice(2);
  if (role === 'group-receive' && a.length === 5) await groupReceive(a[0]!, Number(a[1]), a[2]!, a[3]!, Number(a[4]));
  else if (role === 'group-send' && a.length === 5) await groupSend(a[0]!, Number(a[1]), a[2]!, a[3]!, Number(a[4]));
  else if (role === 'pair-receive' && a.length === 3) await pairReceive(a[0]!, Number(a[1]), Number(a[2]));
  else if (role === 'pair-send' && a.length === 4) await pairSend(Number(a[0]), a[1]!, Number(a[2]), Number(a[3]));
  else {
    console.error('usage: bare.js group-receive GROUP PORT IFACE-ADDR FILE CHUNKS | group-send GROUP PORT IFACE-ADDR MODULE MBIT | pair-receive FILE BYTES CHUNK | pair-send PORT MODULE CHUNK WINDOW');
    process.exit(2);
  }
}
