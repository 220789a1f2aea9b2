/**
 * Simulated clients (1,000 by default; the target is 10,000) registered and renewing against one
 * real server process, on loopback (ten clients per address from 127.1.0.2 on, like sites behind
 * NAT). Each simulated client is the real secure channel (its own X25519 key, handshake, sealed
 * frames) with a minimal agent: it registers, renews when told, answers the server's version
 * queries, and shakes hands again when the server stops answering. Then the server is killed
 * (-9) and started again on its port, and the time until every client is registered again is
 * measured. Not a test: bounded in count and time, it prints a table.
 *
 *   npm run bench:fleet [-- --clients 10000 --renew 10000 --seconds 30 [--max-handshakes N] [--explain] [--postgres]]
 *
 * --postgres: the fleet in a real PostgreSQL started here (Debian's package), as one node of
 * several would keep it, instead of the embedded SQLite file.
 *
 * --explain: once a second after the restart, how many are back, what the simulated devices did
 * (handshakes, stale answers, reconnects for silence, their event-loop lag) and the server's
 * channel counters (`stats`).
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { openUdpEndpoint } from '../src/net/endpoint.js';
import { decodeOrUndefined, encode, Enrollment, UpdateResult, UpdateState } from '../src/protocol/messages.js';
import { DEFAULT_CLIENT_TIMING, renewalDelay } from '../src/client/agent.js';
import { ClientChannel } from '../src/session/client-channel.js';
import { clientIdOf, keyPairFromSecret } from '../src/session/handshake.js';
import { readIdentityPublic } from '../src/session/identity.js';
import { systemClock } from '../src/util/clock.js';
import { startServer, stopAll, tempDir, TEST_ENROLL_TOKEN } from '../test/support/processes.js';
import { havePostgres, startPostgres } from '../test/support/postgres.js';
import { cpuSeconds, peakRssMb, rssMb } from './proc-stats.js';
import { benchArgs } from './args.js';

const args = benchArgs('npm run bench:fleet --', 'Simulated clients registered and renewing against one real server on loopback, which is then killed and restarted.', {
  clients: { number: 1000, help: 'simulated clients' },
  renew: { number: 2000, help: 'the server\'s --renew, ms' },
  seconds: { number: 20, help: 'how long the steady state is measured' },
  'max-handshakes': { number: 0, help: 'the server\'s --max-handshakes (0: its default)' },
  postgres: { flag: true, help: 'the fleet in a PostgreSQL started here (Debian\'s package), not the embedded SQLite' },
  explain: { flag: true, help: 'print where the time goes' },
});
const CLIENTS = args.clients;
const RENEW_MS = args.renew;
const STEADY_S = args.seconds;
const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

const work = tempDir('nxt-fleet-sim-');
const MAX_HANDSHAKES = args['max-handshakes'];
const serverArgs = ['--renew', String(RENEW_MS), ...(MAX_HANDSHAKES > 0 ? ['--max-handshakes', String(MAX_HANDSHAKES)] : [])];
if (args.postgres && !havePostgres) throw new Error('--postgres: PostgreSQL is not installed (apt-get install postgresql)');
const pg = args.postgres ? await startPostgres() : undefined;
const serverEnv: Record<string, string> = pg ? { NXT_DATABASE: pg.newDatabase('fleet') } : {};
let { proc: server, port } = await startServer(join(work, 'server'), serverArgs, serverEnv);
const serverKey = readIdentityPublic(join(work, 'server/identity.pub'));

let registered = 0;
/** Clients registered again since the restart. */
let back = 0;
let restarted = false;
/** Handshakes started because registrations went unanswered (--explain). */
let reconnects = 0;
const started = performance.now();
const clients = [];
for (let i = 0; i < CLIENTS; i++) {
  const site = Math.floor(i / 10);
  const host = `127.1.${Math.floor(site / 250)}.${2 + (site % 250)}`;
  const endpoint = await openUdpEndpoint({ port: 0, host });
  const identity = keyPairFromSecret(random(32));
  const clientId = clientIdOf(identity.publicKey);
  let stamp = Date.now();
  const channel = new ClientChannel({ endpoint, server: { address: '127.0.0.1', port }, serverKey, identity, clock: systemClock, random, nextStamp: () => ++stamp });
  let seq = 0;
  let approved = false;
  let isBack = false;
  let renewTimer: NodeJS.Timeout | undefined;
  // An unanswered registration is retried as the agent does (agent.ts): after 0.5 s, doubling;
  // after two unanswered in a row on a session older than 10 s the server has likely forgotten
  // it: shake hands again. A late answer to an earlier try counts.
  let retryDelay = DEFAULT_CLIENT_TIMING.registerRetryMs;
  let unanswered = 0;
  let answeredSeq = 0;
  const register = (): void => {
    clearTimeout(renewTimer);
    const delay = retryDelay;
    retryDelay = Math.min(2 * retryDelay, DEFAULT_CLIENT_TIMING.registerRetryMaxMs);
    renewTimer = setTimeout(() => {
      if (++unanswered >= DEFAULT_CLIENT_TIMING.reconnectAfterUnanswered && channel.isEstablished
        && channel.sessionAgeMs >= DEFAULT_CLIENT_TIMING.newSessionPatienceMs) {
        unanswered = 0;
        reconnects++;
        channel.reconnect();
      }
      register();
    }, delay);
    channel.send(encode({
      type: 'register', clientId, seq: ++seq, version: { major: 1, minor: 0, patch: 0 }, product: { major: 5, minor: 6, productName: 'sim' },
      enrollToken: TEST_ENROLL_TOKEN, inventory: '{"hostname":"sim"}', updateState: UpdateState.idle, updateResult: UpdateResult.initial,
    }));
  };
  channel.on('established', register);
  channel.onDatagram((data) => {
    const msg = decodeOrUndefined(data);
    if (msg?.type === 'registered') {
      if (msg.seq <= answeredSeq) return; // stale: a newer one was answered already
      answeredSeq = msg.seq;
      if (!approved && msg.enrollment === Enrollment.approved) { approved = true; registered++; }
      if (restarted && !isBack) { isBack = true; back++; }
      unanswered = 0;
      retryDelay = DEFAULT_CLIENT_TIMING.registerRetryMs;
      clearTimeout(renewTimer);
      renewTimer = setTimeout(register, renewalDelay(msg.renewMs, Math.random()));
    } else if (msg?.type === 'query') {
      retryDelay = DEFAULT_CLIENT_TIMING.registerRetryMs;
      register();
    }
  });
  channel.connect();
  clients.push({ channel, stop: () => { clearTimeout(renewTimer); } });
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

// Asked first: `versions` makes every device answer at once, which lines up their renewals
// (each then renews at 75–100% of RENEW_MS, agent.ts); the steady phase after it spreads them
// again, so the kill below comes at an arbitrary point of their renewal cycles, as a crash would.
const clientsJsonMs = await timed('clients --json', /\]\n/);
const before = server.output.length;
const versionsMs = await timed('versions --json', /\]\n/);
const out = server.output.slice(before);
const versions = JSON.parse(out.slice(out.indexOf('['), out.lastIndexOf(']') + 1)) as { answered: boolean }[];

// Steady state: every client renews every RENEW_MS.
const cpu0 = cpuSeconds(server.pid);
const rss0 = rssMb(server.pid);
await new Promise((r) => setTimeout(r, STEADY_S * 1000));
const steadyCpu = (cpuSeconds(server.pid) - cpu0) / STEADY_S;
const rss1 = rssMb(server.pid);

console.log(`\n## ${CLIENTS} simulated clients on one server\n`);
console.log(`Renewal every ${RENEW_MS} ms (${Math.round((CLIENTS * 1000) / RENEW_MS)} sealed REGISTERs a second), ${MAX_HANDSHAKES > 0 ? `at most ${MAX_HANDSHAKES} handshakes a second` : 'the server\'s default handshake limits'}.\n`);
console.log('| measure | value |');
console.log('|---|---|');
console.log(`| all registered (handshake + approval by token) | ${registered}/${CLIENTS} in ${registerS.toFixed(1)} s |`);
console.log(`| server CPU while renewing | ${(steadyCpu * 100).toFixed(1)}% of one core |`);
console.log(`| server RSS | ${rss0.toFixed(0)} → ${rss1.toFixed(0)} MB over ${STEADY_S} s (peak ${peakRssMb(server.pid)} MB) |`);
console.log(`| \`clients --json\` | ${clientsJsonMs.toFixed(0)} ms |`);
console.log(`| \`versions --json\` (asks all ${CLIENTS}, waits for answers) | ${versionsMs.toFixed(0)} ms, ${versions.filter((v) => v.answered).length} answered |`);

// Killed and started again on its port: every client must find it again by itself.
// (NXT_BENCH_TERM: stopped cleanly instead, so that a profiling node writes its profile.)
await server.stop(process.env.NXT_BENCH_TERM ? 'SIGTERM' : 'SIGKILL');
restarted = true;
const restartedAt = performance.now();
({ proc: server } = await startServer(join(work, 'server'), [...serverArgs, '--port', String(port)], serverEnv));
const upS = (performance.now() - restartedAt) / 1000;
const backDeadline = performance.now() + 120_000;
// --explain: once a second, how many are back and what the server's channel counted.
const explain = args.explain;
let nextReport = performance.now() + 1000;
const lag = monitorEventLoopDelay({ resolution: 20 });
lag.enable();
while (back < CLIENTS && performance.now() < backDeadline) {
  await new Promise((r) => setTimeout(r, 100));
  if (explain && performance.now() >= nextReport) {
    nextReport += 1000;
    const at = server.type('stats');
    const line = await server.waitFor(/channel: .*\n/, 10_000, at).then((m) => m[0], () => '');
    const stats = /channel: (.*)/.exec(line)?.[1] ?? '';
    const sum = { handshakes: 0, unknownSession: 0 };
    for (const c of clients) { sum.handshakes += c.channel.stats.handshakes; sum.unknownSession += c.channel.stats.unknownSession; }
    const lagMs = `lag p50 ${(lag.percentile(50) / 1e6).toFixed(0)} max ${(lag.max / 1e6).toFixed(0)} ms`;
    lag.reset();
    console.error(`${((performance.now() - restartedAt) / 1000).toFixed(1)} s: ${back} back; devices (${lagMs}): ${sum.handshakes} handshakes, ${sum.unknownSession} stale answers, ${reconnects} reconnects for silence; server: ${stats}`);
  }
}
const backS = (performance.now() - restartedAt) / 1000;
console.log(`| after a kill -9 and a restart, registered again | ${back}/${CLIENTS} in ${backS.toFixed(1)} s (the server answered after ${upS.toFixed(1)} s) |`);

for (const c of clients) { c.stop(); await c.channel.close(); }
await server.stop('SIGTERM'); // cleanly: a profiling node writes its profile
await stopAll();
pg?.stop();
process.exit(registered === CLIENTS && back === CLIENTS ? 0 : 1);

