/**
 * Fuzz a live server and a live client with random and mutated datagrams on loopback, then check
 * that both still complete a push, neither died, and memory stayed bounded. Not a test: bounded
 * in count and time, it prints a report and exits non-zero if anything failed.
 *
 *   npm run fuzz [-- --count 1000000 --rate 50000]
 *
 * Mutations start from real datagrams captured during a push (handshake INIT, COOKIE and RESPONSE,
 * and SEALED frames carrying REGISTER, OFFER, DATA, ACK, RESULT), with bytes flipped, truncated,
 * extended, types, indexes and counters rewritten, or replayed unchanged; a third are random bytes.
 * Each must be dropped by the secure channel (and counted) before any message logic sees it.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeModule } from '../test/support/modules.js';
import { seededRandom } from '../test/support/random.js';
import { startClient, startServer, stopAll, tempDir } from '../test/support/processes.js';
import { UdpProxy } from '../test/support/udp-proxy.js';
import { benchArgs } from './args.js';

const args = benchArgs('npm run fuzz --', 'Random and mutated datagrams at a live server and client on loopback; exits non-zero if anything failed.', {
  count: { number: 1_000_000, help: 'datagrams in all' },
  rate: { number: 50_000, help: 'datagrams per second, both targets together' },
  seed: { number: 7, help: 'the random source\'s seed' },
  'max-datagram': { number: undefined, help: 'the server\'s --max-datagram (1452: module data in PIECE frames, which then seed mutations too)' },
});
const COUNT = args.count;
const RATE = args.rate;
/** Memory may grow by at most this much during the fuzzing (caches, JIT, GC slack). */
const RSS_GROWTH_BOUND_MB = 64;

const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
const random = seededRandom(args.seed);
const int = (n: number): number => Math.floor(random() * n);

const work = tempDir('nxt-fuzz-');
const { proc: server, port } = await startServer(join(work, 'server'), ['--renew', '1000', ...(args['max-datagram'] === undefined ? [] : ['--max-datagram', String(args['max-datagram'])])]);
// The client listens only to its server's address: reach it through a proxy that can inject.
const seeds: Buffer[] = [];
const proxy = await UdpProxy.start(port, (data) => {
  if (seeds.length < 400) seeds.push(Buffer.from(data));
  return [{ data }];
});
const client = await startClient('client', proxy.port, join(work, 'client'), join(work, 'server/release.pub'));

const [, clientId] = (await server.waitFor(/client (\w{12}) registered from (\S+)/)) as unknown as [string, string, string];

/** Push, and report how it went for the real client. */
async function push(file: string, label: string): Promise<boolean> {
  const at = server.type(`push ${file}`);
  await server.waitFor(/push finished: .*\n/, 120_000, at);
  const line = server.output.slice(at).split('\n').find((l) => l.includes(clientId) && /done:|failed \(/.test(l))?.trim() ?? 'no result line';
  console.log(`${label}: ${line}`);
  return / done: /.test(line);
}

// A push first, to capture real datagrams of every kind as mutation seeds.
const ok0 = await push(writeModule(work, 'seed_2_0.mjs', 64 * 1024), 'push before fuzzing');
const rss0 = { server: rssMb(server.pid), client: rssMb(client.pid) };

function mutate(seed: Buffer): Buffer {
  const b = Buffer.from(seed);
  switch (int(8)) {
    case 7: return b; // a replay, byte for byte
    case 0: for (let k = 1 + int(4); k > 0; k--) { const i = int(b.length); b[i] = (b[i] ?? 0) ^ (1 << int(8)); } return b; // flip bits
    case 1: return b.subarray(0, int(b.length)); // truncate
    case 2: return Buffer.concat([b, Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)))]); // extend
    case 3: if (b.length > 3) b[3] = int(256); return b; // another type
    case 4: { const at = 4 + int(Math.max(1, b.length - 6)); if (at + 1 < b.length) b.writeUInt16BE(int(65536), at); return b; } // a length or id
    case 5: if (b.length > 11) b.writeUInt32BE(int(2 ** 32), 4 + 4 * int(2)); return b; // transfer id or index
    default: { const at = int(b.length); b.fill(int(256), at, Math.min(b.length, at + int(32))); return b; } // smear
  }
}

const sock = dgram.createSocket('udp4');
await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
const started = performance.now();
let sent = 0;
const batch = Math.max(1, Math.round(RATE / 100)); // every 10 ms
while (sent < COUNT && server.alive && client.alive) {
  for (let k = 0; k < batch && sent < COUNT; k++, sent++) {
    const d = random() < 0.33 || seeds.length === 0
      ? Buffer.from(Array.from({ length: int(1500) }, () => int(256)))
      : mutate(seeds[int(seeds.length)]!);
    if (sent % 2 === 0) sock.send(d, port, '127.0.0.1');
    else void proxy.injectToClient(d);
  }
  const due = started + (sent / RATE) * 1000;
  await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
}
sock.close();
const seconds = (performance.now() - started) / 1000;
const rss1 = { server: rssMb(server.pid), client: rssMb(client.pid) };

const aliveAfter = server.alive && client.alive;
const statsAt = server.type('stats');
const serverStats = (await server.waitFor(/channel: .*\n/, 5000, statsAt))[0].trim();
const clientAt = client.type('stats');
const clientStats = (await client.waitFor(/dropped: .*\n/, 5000, clientAt))[0].trim();
const ok1 = aliveAfter && await push(writeModule(work, 'after_3_0.mjs', 256 * 1024, 8, 6), 'push after fuzzing');
const clientOn8 = /Major = 8\nMinor = 6/.test(client.output);

console.log(`\nsent ${sent} datagrams in ${seconds.toFixed(1)} s (${Math.round(sent / seconds)}/s), half to the server, half to the client`);
console.log(`server: ${serverStats}`);
console.log(`client: ${clientStats}`);
console.log(`RSS server ${rss0.server.toFixed(0)} → ${rss1.server.toFixed(0)} MB, client ${rss0.client.toFixed(0)} → ${rss1.client.toFixed(0)} MB (bound: +${RSS_GROWTH_BOUND_MB} MB)`);
const grewTooMuch = rss1.server - rss0.server > RSS_GROWTH_BOUND_MB || rss1.client - rss0.client > RSS_GROWTH_BOUND_MB;
const passed = ok0 && aliveAfter && ok1 && clientOn8 && !grewTooMuch && sent === COUNT;
console.log(passed ? 'PASS: both alive, a push completed afterwards, memory bounded' : 'FAIL');
await proxy.close();
await stopAll();
process.exit(passed ? 0 : 1);
