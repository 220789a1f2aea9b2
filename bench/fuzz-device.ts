/**
 * Fuzz a live server from an enrolled device: the real secure channel (test/support/rogue-device.ts),
 * sending well-formed messages of every type with hostile fields (extreme numbers, transfer and job
 * ids it has seen or made up, texts with escape sequences and line feeds, bits flipped, messages
 * cut short) while a real device on the same server takes pushes and jobs. Not a test: bounded in
 * time, it prints a report and exits non-zero if anything failed.
 *
 *   npm run fuzz:device [-- --seconds 30 --rate 2000 --seed 1]
 *
 * Passes when the server and the real device are alive at the end, every push reached the real
 * device, nothing the rogue said put a control character on the server's console, and the
 * server's memory grew by less than a bound.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode, type EnrollmentValue, type Message, type UpdateResultValue, type UpdateStateValue } from '../src/protocol/messages.js';
import type { ReleaseVersion } from '../src/protocol/release-version.js';
import { writeModule } from '../test/support/modules.js';
import { seededRandom } from '../test/support/random.js';
import { startClient, startServer, stopAll, tempDir, TEST_ENROLL_TOKEN } from '../test/support/processes.js';
import { rogueDevice } from '../test/support/rogue-device.js';
import { benchArgs } from './args.js';

const args = benchArgs('npm run fuzz:device --', 'Hostile well-formed messages from an enrolled device at a live server that serves a real device meanwhile; exits non-zero if anything failed.', {
  seconds: { number: 30, help: 'how long to fuzz' },
  rate: { number: 2000, help: 'messages a second from the rogue device' },
  seed: { number: 1, help: 'the random source\'s seed' },
});
const RSS_GROWTH_BOUND_MB = 96;

const random = seededRandom(args.seed);
const int = (n: number): number => Math.floor(random() * n);
const pick = <T>(a: readonly T[]): T => a[int(a.length)]!;
const u32 = (): number => pick([0, 1, 2, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0xffff_fffe, int(100), int(2 ** 32)]);
const u16 = (): number => pick([0, 1, 0xffff, int(0x10000)]);
const u8 = (): number => pick([0, 1, 255, int(256)]);
const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));
const anyBytes = (max: number): Uint8Array => bytes(pick([0, 1, 16, 32, int(max + 1)]));
const EVIL = '\x1b[2J\x1b[31m\npush finished: 9 done, 0 failed\x07\u202e';
const text = (max: number): string => pick(['', 'x'.repeat(int(max)), '../../etc/passwd', '\u0000\uffff', '{"a":1}', '%s%n', EVIL, 'é'.repeat(int(max / 2)), '🙂'.repeat(int(max / 4))]);
const version = (): ReleaseVersion => ({ major: u32(), minor: u32(), patch: u32() });
const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

const work = tempDir('nxt-fuzz-device-');
const { proc: server, port } = await startServer(join(work, 'server'), ['--renew', '1000']);
const client = await startClient('client', port, join(work, 'client'), join(work, 'server/release.pub'));
const rogue = await rogueDevice(port, join(work, 'server/identity.pub'));
const rogueId = rogue.clientId;
rogue.register();
await server.waitFor(/registered from/);

// Ids the server used with the rogue (transfers, jobs): most hostile messages name one of these.
const seen = { transfer: [1], job: [1], seq: [1] };
const heardTypes = new Map<string, number>();
let heardAt = 0;
function learn(): void {
  for (; heardAt < rogue.heard.length; heardAt++) {
    const m = rogue.heard[heardAt]! as Message & { transferId?: number; jobId?: number; seq?: number };
    heardTypes.set(m.type, (heardTypes.get(m.type) ?? 0) + 1);
    if (m.transferId !== undefined) seen.transfer = [...seen.transfer.slice(-49), m.transferId];
    if (m.jobId !== undefined) seen.job = [...seen.job.slice(-49), m.jobId];
    if (m.seq !== undefined) seen.seq = [...seen.seq.slice(-49), m.seq];
  }
}
const transferId = (): number => (random() < 0.7 ? (pick(seen.transfer) + pick([0, 0, 0, 1, -1])) >>> 0 : u32());
const jobId = (): number => (random() < 0.7 ? pick(seen.job) : u32());

const messages: Record<string, () => Message> = {
  register: () => ({
    type: 'register', clientId: random() < 0.8 ? rogueId : bytes(16), seq: u32(), version: version(), product: { major: u32(), minor: u32(), productName: text(64) },
    enrollToken: random() < 0.8 ? TEST_ENROLL_TOKEN : text(64), updateState: (u8() % 8) as UpdateStateValue, updateResult: (u8() % 16) as UpdateResultValue,
    inventory: pick([text(512), `{"hostname":${'['.repeat(200)}`, JSON.stringify({ hostname: EVIL, cpus: -1, memoryBytes: 1e308 })]),
  }),
  ack: () => ({ type: 'ack', transferId: transferId(), cumulative: u32(), window: u16(), echo: u32(), sack: anyBytes(1024) }),
  result: () => ({ type: 'result', transferId: transferId(), code: u8(), active: version(), message: text(512) }),
  abort: () => ({ type: 'abort', transferId: transferId(), code: u8(), message: text(512) }),
  resultAck: () => ({ type: 'resultAck', transferId: transferId() }),
  jobPoll: () => ({ type: 'jobPoll', seq: random() < 0.5 ? pick(seen.seq) : u32() }),
  jobResult: () => ({ type: 'jobResult', jobId: jobId(), code: u8(), message: text(512) }),
  jobAck: () => ({ type: 'jobAck', jobId: jobId() }),
  fileOffer: () => ({ type: 'fileOffer', transferId: u32(), jobId: jobId(), size: u32(), chunkSize: u16(), sha256: bytes(32), name: text(64) }),
  data: () => ({ type: 'data', transferId: transferId(), index: u32(), payload: bytes(1 + int(1400)) }),
  trialOutcome: () => ({ type: 'trialOutcome', seq: u32(), committed: random() < 0.5, code: u8(), version: version(), sha256: bytes(32), active: version(), message: text(512) }),
  trialAck: () => ({ type: 'trialAck', seq: u32() }),
  goodbye: () => ({ type: 'goodbye', clientId: random() < 0.3 ? rogueId : bytes(16) }),
  multicastLeave: () => ({ type: 'multicastLeave', transferId: transferId(), groupTransferId: u32() }),
  // Messages only a server sends: a device that sends them is ignored.
  query: () => ({ type: 'query', seq: u32() }),
  registered: () => ({ type: 'registered', clientId: rogueId, seq: u32(), leaseMs: u32(), renewMs: u32(), enrollment: (u8() % 3) as EnrollmentValue }),
  offer: () => ({ type: 'offer', transferId: u32(), manifest: anyBytes(400), signature: bytes(64), contentKey: bytes(32), sealId: bytes(16) }),
  job: () => ({ type: 'job', seq: u32(), jobId: u32(), kind: u8(), params: text(300) }),
  multicast: () => ({ type: 'multicast', transferId: u32(), groupTransferId: u32(), port: u16(), address: pick(['224.1.1.1', 'x', '', '::1']) }),
};
const kinds = Object.keys(messages);

const rss0 = rssMb(server.pid);
let sent = 0;
const started = performance.now();
const blast = setInterval(() => {
  learn();
  for (let i = 0; i < args.rate / 100; i++) {
    let frame = encode(messages[pick(kinds)]!());
    if (random() < 0.1) { frame = Buffer.from(frame); const at = 4 + int(Math.max(1, frame.length - 4)); frame[at] = (frame[at] ?? 0) ^ (1 << int(8)); }
    if (random() < 0.05) frame = frame.subarray(0, int(frame.length));
    rogue.sendBytes(frame);
    sent++;
  }
}, 10);

// Meanwhile the real device takes pushes, and jobs are queued for every device, the rogue too.
const putFile = join(work, 'put.txt');
writeFileSync(putFile, 'hello\n');
let pushes = 0;
let reached = 0;
for (let v = 10; performance.now() - started < args.seconds * 1000; v++) {
  const file = writeModule(work, `m_${v}.mjs`, pick([10 * 1024, 300 * 1024, 2 * 1024 * 1024]));
  const at = server.type(`push ${file} --version ${v}.0`);
  await server.waitFor(/^push finished: .*$/m, 60_000, at);
  pushes++;
  if (new RegExp(`done: 9\\.1 bulk active.*\\(release ${v}\\.0\\.0\\)`).test(server.output.slice(at))) reached++;
  server.type(pick([`job put all ${putFile} p${v}.txt`, 'job logs all', 'job report all', 'clients', 'stats', 'jobs']));
}
clearInterval(blast);
const seconds = (performance.now() - started) / 1000;
const rss1 = rssMb(server.pid);
const alive = server.alive && client.alive;
const statsAt = server.type('stats');
const stats = alive ? (await server.waitFor(/channel: .*\n/, 5000, statsAt))[0] : '';
const messagesLine = alive ? /messages \d+.*/.exec(server.output.slice(statsAt))?.[0] ?? '' : '';
const comingsAndGoings = (server.output.match(/went offline|is back from/g) ?? []).length;
// What the server printed may hold no control character but its line ends.
const controls = (server.output.match(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/g) ?? []).length;

console.log(`\nthe rogue sent ${sent} messages in ${seconds.toFixed(1)} s (${Math.round(sent / seconds)}/s); it heard ${[...heardTypes].map(([t, n]) => `${t} ${n}`).join(', ')}`);
console.log(`pushes: ${pushes}, ${reached} reached the real device`);
console.log(`server: ${messagesLine.trim()}\n        ${stats.trim()}`);
console.log(`lines on the server's console about the rogue's goodbyes and returns: ${comingsAndGoings}`);
console.log(`server RSS ${rss0.toFixed(0)} → ${rss1.toFixed(0)} MB (bound: +${RSS_GROWTH_BOUND_MB} MB); control characters in its output: ${controls}`);
const passed = alive && pushes > 0 && reached === pushes && controls === 0 && rss1 - rss0 <= RSS_GROWTH_BOUND_MB;
console.log(passed ? 'PASS: both alive, every push reached the real device, nothing obeyed, memory bounded' : 'FAIL');
await rogue.close();
await stopAll();
process.exit(passed ? 0 : 1);
