/**
 * 1,000 simulated clients registered and renewing against one real server process, on loopback
 * (from 127.0.0.2–127.0.0.101, ten clients per address, like sites behind NAT). Each simulated
 * client is the real secure channel (its own X25519 key, handshake, sealed frames) with a minimal
 * agent: it registers, renews when told, and answers the server's version queries. Not a test:
 * bounded in count and time, it prints a table.
 *
 *   npm run bench:fleet [-- --clients 1000 --renew 2000 --seconds 20]
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { openUdpEndpoint } from '../src/net/endpoint.js';
import { decodeOrUndefined, encode, Enrollment, UpdateResult, UpdateState } from '../src/protocol/messages.js';
import { ClientChannel } from '../src/session/client-channel.js';
import { clientIdOf, keyPairFromSecret } from '../src/session/handshake.js';
import { readIdentityPublic } from '../src/session/identity.js';
import { systemClock } from '../src/util/clock.js';
import { startServer, stopAll, tempDir, TEST_ENROLL_TOKEN } from '../test/support/processes.js';
import { cpuSeconds, peakRssMb, rssMb } from './proc-stats.js';

const argv = process.argv.slice(2);
const opt = (name: string, fallback: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const CLIENTS = opt('clients', 1000);
const RENEW_MS = opt('renew', 2000);
const STEADY_S = opt('seconds', 20);
const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

const work = tempDir('nxt-fleet-sim-');
// Handshakes: 200/s here (the default 50/s would take 20 s to admit 1,000 new devices).
const { proc: server, port } = await startServer(join(work, 'server'), ['--renew', String(RENEW_MS), '--max-handshakes', '200']);
const serverKey = readIdentityPublic(join(work, 'server/identity.pub'));

let registered = 0;
const started = performance.now();
const clients = [];
for (let i = 0; i < CLIENTS; i++) {
  const host = `127.0.0.${2 + Math.floor(i / 10)}`;
  const endpoint = await openUdpEndpoint({ port: 0, host });
  const identity = keyPairFromSecret(random(32));
  const clientId = clientIdOf(identity.publicKey);
  let stamp = Date.now();
  const channel = new ClientChannel({ endpoint, server: { address: '127.0.0.1', port }, serverKey, identity, clock: systemClock, random, nextStamp: () => ++stamp });
  let seq = 0;
  let approved = false;
  let renewTimer: NodeJS.Timeout | undefined;
  const register = (): void => {
    channel.send(encode({
      type: 'register', clientId, seq: ++seq, version: { major: 1, minor: 0, patch: 0 }, product: { major: 5, minor: 6, productName: 'sim' },
      enrollToken: TEST_ENROLL_TOKEN, inventory: '{"hostname":"sim"}', updateState: UpdateState.idle, updateResult: UpdateResult.initial,
    }));
  };
  channel.on('established', register);
  channel.onDatagram((data) => {
    const msg = decodeOrUndefined(data);
    if (msg?.type === 'registered') {
      if (!approved && msg.enrollment === Enrollment.approved) { approved = true; registered++; }
      clearTimeout(renewTimer);
      renewTimer = setTimeout(register, msg.renewMs);
    } else if (msg?.type === 'query') {
      register();
    }
  });
  channel.connect();
  clients.push({ channel, stop: () => clearTimeout(renewTimer) });
}
const deadline = performance.now() + 120_000;
while (registered < CLIENTS && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
const registerS = (performance.now() - started) / 1000;

async function timed(command: string, until: RegExp): Promise<number> {
  const t = performance.now();
  const at = server.type(command);
  await server.waitFor(until, 30_000, at);
  return performance.now() - t;
}

// Steady state: every client renews every RENEW_MS.
const cpu0 = cpuSeconds(server.pid);
const rss0 = rssMb(server.pid);
await new Promise((r) => setTimeout(r, STEADY_S * 1000));
const steadyCpu = (cpuSeconds(server.pid) - cpu0) / STEADY_S;
const rss1 = rssMb(server.pid);
const clientsMs = await timed('clients', /NxtServer# $/);
const clientsJsonMs = await timed('clients --json', /\]\n/);
const before = server.output.length;
const versionsMs = await timed('versions --json', /\]\n/);
const out = server.output.slice(before);
const versions = JSON.parse(out.slice(out.indexOf('['), out.lastIndexOf(']') + 1)) as { answered: boolean }[];

console.log(`\n## ${CLIENTS} simulated clients on one server\n`);
console.log(`Renewal every ${RENEW_MS} ms (${Math.round((CLIENTS * 1000) / RENEW_MS)} sealed REGISTERs a second), server handshake limit 200/s.\n`);
console.log('| measure | value |');
console.log('|---|---|');
console.log(`| all registered (handshake + approval by token) | ${registered}/${CLIENTS} in ${registerS.toFixed(1)} s |`);
console.log(`| server CPU while renewing | ${(steadyCpu * 100).toFixed(1)}% of one core |`);
console.log(`| server RSS | ${rss0.toFixed(0)} → ${rss1.toFixed(0)} MB over ${STEADY_S} s (peak ${peakRssMb(server.pid)} MB) |`);
console.log(`| \`clients\` (text) | ${clientsMs.toFixed(0)} ms |`);
console.log(`| \`clients --json\` | ${clientsJsonMs.toFixed(0)} ms |`);
console.log(`| \`versions --json\` (asks all ${CLIENTS}, waits for answers) | ${versionsMs.toFixed(0)} ms, ${versions.filter((v) => v.answered).length} answered |`);

for (const c of clients) { c.stop(); await c.channel.close(); }
await stopAll();
process.exit(registered === CLIENTS ? 0 : 1);

