/**
 * A push under a handshake flood: how much slower a 16 MiB push to one device gets while 12,000
 * forged INITs a second (random keys, no valid cookie, from 32 loopback addresses) hit the server,
 * against the same push without the flood, measured alternately in the same run. Also the
 * server's CPU seconds per flooded second. Not a test: bounded in count and time.
 *
 *   npm run bench:flood [-- --runs 3 --rate 12000 --mib 16]
 *
 * Issue 11's target: the flooded push at most 1.3× the plain one.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { COOKIE_BYTES, encodeInit, KEY_BYTES, SEALED_STAMP_BYTES, SEALED_STATIC_BYTES } from '../src/protocol/envelope.js';
import { writeModule } from '../test/support/modules.js';
import { startClient, startServer, stopAll, tempDir } from '../test/support/processes.js';
import { cpuSeconds } from './proc-stats.js';
import { benchArgs } from './args.js';

const args = benchArgs('npm run bench:flood --', 'A 16 MiB push to one device under a flood of forged handshake INITs, beside the same push without it.', {
  runs: { number: 3, help: 'pushes each way (alternated)' },
  rate: { number: 12_000, help: 'forged INITs per second' },
  mib: { number: 16, help: 'the module\'s size in MiB' },
});
const RUNS = args.runs;
const RATE = args.rate;
const MIB = args.mib;
const SOURCES = 32;
const TICK_MS = 5;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Forged INITs from many loopback addresses, paced in 5 ms ticks; the replies are read and dropped. */
async function startFlood(port: number): Promise<{ stop: () => Promise<number> }> {
  const sockets = await Promise.all(Array.from({ length: SOURCES }, (_, i) => new Promise<dgram.Socket>((res, rej) => {
    const s = dgram.createSocket('udp4');
    s.on('message', () => undefined);
    s.once('error', rej);
    s.bind(0, `127.0.1.${i + 1}`, () => res(s));
  })));
  // A pool of forged INITs: half with a cookie of zeros (a first try), half with random bytes
  // (a guessed cookie); each has a fresh sender index, ephemeral key and sealed parts.
  const pool = Array.from({ length: 4096 }, (_, i) => encodeInit({
    senderIndex: randomBytes(4).readUInt32BE(0),
    cookie: i % 2 === 0 ? new Uint8Array(COOKIE_BYTES) : randomBytes(COOKIE_BYTES),
    ephemeral: randomBytes(KEY_BYTES), sealedStatic: randomBytes(SEALED_STATIC_BYTES), sealedStamp: randomBytes(SEALED_STAMP_BYTES),
  }));
  let sent = 0;
  let next = 0;
  const perTick = Math.round((RATE * TICK_MS) / 1000);
  const started = performance.now();
  const timer = setInterval(() => {
    // Catch up on ticks the timer missed, so the rate holds on a loaded machine.
    const due = Math.floor(((performance.now() - started) * RATE) / 1000) - sent;
    for (let k = 0; k < Math.min(due, perTick * 4); k++) {
      sockets[k % SOURCES]!.send(pool[next++ % pool.length]!, port, '127.0.0.1');
      sent++;
    }
  }, TICK_MS);
  return {
    stop: async () => {
      clearInterval(timer);
      await Promise.all(sockets.map((s) => new Promise<void>((res) => s.close(() => res()))));
      return sent / ((performance.now() - started) / 1000);
    },
  };
}

const work = tempDir('nxt-flood-');
const { proc: server, port } = await startServer(join(work, 'server'), ['--renew', '5000']);
const client = await startClient('client', port, join(work, 'client'), join(work, 'server/release.pub'));
let minor = 0;

async function push(): Promise<number> {
  const file = writeModule(work, `flood_9_${++minor}.mjs`, MIB * 1024 * 1024, 9, minor);
  const at = server.type(`push ${file}`);
  await server.waitFor(/push finished: .*\n/, 300_000, at);
  const out = server.output.slice(at);
  const m = / done: .* in (\d+) ms/.exec(out);
  if (!m) throw new Error(`the push failed:\n${out}`);
  await client.waitFor(`Minor = ${minor}`, 30_000);
  return Number(m[1]);
}

try {
  await push(); // warm-up: JIT, the server's first sealing
  const plain: number[] = [];
  const flooded: number[] = [];
  const cpu: number[] = [];
  const rates: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    plain.push(await push());
    const flood = await startFlood(port);
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    // The flood runs a second before the push and during it.
    await new Promise((res) => setTimeout(res, 1000));
    flooded.push(await push());
    cpu.push((cpuSeconds(server.pid) - cpu0) / ((performance.now() - t0) / 1000));
    rates.push(await flood.stop());
  }
  const ratio = median(flooded) / median(plain);
  console.log(`# push under a handshake flood (${MIB} MiB, loopback, ${RUNS} runs each, medians; Node ${process.version})\n`);
  console.log('| | push ms | server CPU s per s |');
  console.log('|---|---:|---:|');
  console.log(`| no flood | ${median(plain)} | |`);
  console.log(`| ${Math.round(median(rates))} forged INIT/s | ${median(flooded)} | ${median(cpu).toFixed(2)} |`);
  console.log(`\nflooded / plain: ${ratio.toFixed(2)}× (target ≤ 1.3×: ${ratio <= 1.3 ? 'met' : 'NOT met'}); runs: plain ${plain.join(', ')}, flooded ${flooded.join(', ')}`);
  const stats = await server.run('stats', /NxtServer# /);
  const line = stats.split('\n').find((l) => /cookie|handshake/i.test(l));
  if (line) console.log(`server: ${line.trim()}`);
} finally {
  await stopAll();
}
