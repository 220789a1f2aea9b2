/**
 * Transfer benchmark: nxt beside atftp and UFTP, measured in the same run on this machine.
 * Not a test. Prints markdown tables; every figure is a median of --runs runs (default 3).
 *
 *   npm run bench [-- --runs 3 --only loopback,lossy,fleet,huge,latency --fleet-sizes 1,10,50]
 *
 * Times are wall clock: for nxt from typing `push` to the server's "push finished" (signing,
 * transfer, the client's verification and import()), with the data phase (until every chunk was
 * acknowledged) beside it; for atftp the `atftp -g` process; for UFTP its process and, beside it,
 * its own "Total elapsed time" (its transfer phase, without the announce rounds). Each nxt push
 * starts with the server and the device at rest (bench/proc-stats.ts, atRest), as an operator's
 * push finds them; the latency section times pushes back to back as well.
 */
import { runFanout } from './fanout.js';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeModule } from '../test/support/modules.js';
import { Proc, ROOT, startClient, startServer, stopAll, tempDir, TEST_ENROLL_TOKEN } from '../test/support/processes.js';
import { UdpProxy, lossyLink, passThrough, type ProxyRule } from '../test/support/udp-proxy.js';
import { barePair } from './bare.js';
import { atftpGet, ensurePeers, startAtftpd, startUftpd, uftpSend, type Daemon } from './peers.js';
import { CLIENT_ADDR, CLIENT_NS, createTestbed, inNs, RELAY_CLIENT_SIDE, RELAY_NS, RELAY_SERVER_SIDE, removeTestbed, SERVER_ADDR, SERVER_NS } from './netns.js';
import { startTcpSender, startTunnel, tcpDownload, tcpTunnelReady } from './tcp-tunnel.js';
import { atRest, cpuSeconds, freshPageMicros, minorFaults, peakRssMb, rssMb } from './proc-stats.js';
import { benchArgs } from './args.js';

const MiB = 1024 * 1024;
/** The largest datagram loopback carries: the bare pair's "wide" row (nxt's own probe goes there). */
const BARE_WIDE_DATAGRAM = 65_507;
const SECTIONS = ['loopback', 'lossy', 'ctl', 'fleet', 'huge', 'latency', 'fanout', 'lossy-loopback'];
const args = benchArgs('npm run bench --', 'nxt beside atftp and UFTP (and TCP), measured in the same run; the lossy and fanout sections need root (network namespaces) and say so when skipped.', {
  runs: { number: 3, help: 'runs per figure (the median is shown)' },
  only: { words: SECTIONS.filter((s) => s !== 'lossy-loopback'), among: SECTIONS, help: 'the sections to run (lossy-loopback: the lossy rows without namespaces)' },
  'fleet-sizes': { numbers: [1, 10, 50], help: 'clients per push in the fleet section' },
});
const FLEET_SIZES = args['fleet-sizes'];
const RUNS = Math.max(1, args.runs);
const ONLY = new Set(args.only);
const TFTP_PORT = 16969;
const UFTP_PORT = 11044;
const PEER_TIMEOUT_MS = 60_000;
/** The relay's port facing whoever starts the transfer (nxt's client, UFTP's sender, atftp). */
const RELAY_PORT = 17_000;

interface Sent { toClient: number; toServer: number }
interface Relay {
  readonly port: number;
  /** Datagrams each end has sent through the relay so far. */
  counts(): Promise<Sent>;
  stop(): Promise<Sent>;
}

/** A relay process (bench/relay.ts) in the relay namespace. */
async function startRelay(o: { front: string; back: string; server: string; frontPort: number; loss: number; reorder: number; delayMs: number; seed: number; perFrame?: boolean }): Promise<Relay> {
  const proc = new Proc('relay', ...inNs(RELAY_NS, 'node', [join(ROOT, 'dist-bench/bench/relay.js'), '--front', `${o.front}:${o.frontPort}`, '--back', o.back,
    '--server', o.server, '--loss', String(o.loss), '--reorder', String(o.reorder), '--delay', String(o.delayMs), '--seed', String(o.seed), ...(o.perFrame ? ['--loss-per-frame'] : [])]));
  const port = Number((await proc.waitFor(/relay ready on [\d.]+:(\d+)/))[1]);
  let stopped: Promise<Sent> | undefined;
  const last = (): Sent => {
    const all = [...proc.output.matchAll(/relay sent: to-client (\d+), to-server (\d+)/g)];
    const m = all[all.length - 1];
    return { toClient: Number(m?.[1] ?? NaN), toServer: Number(m?.[2] ?? NaN) };
  };
  return {
    port,
    counts: async () => {
      const from = proc.output.length;
      process.kill(proc.pid, 'SIGUSR1');
      await proc.waitFor(/relay sent: .*\n/, 5000, from);
      return last();
    },
    stop: () => (stopped ??= (async () => { await proc.stop('SIGTERM'); return last(); })()),
  };
}

const work = tempDir('nxt-bench-');
const peers = ensurePeers();
let version = 10;

/** The median of the figures there are (a run without one, NaN, is left out). */
function median(all: number[]): number {
  const xs = all.filter((x) => !Number.isNaN(x));
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmtMs = (ms: number | undefined): string => (ms === undefined ? 'failed' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
const rate = (bytes: number, ms: number | undefined): string => (ms === undefined ? '–' : `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`);
/** How many times faster nxt is than the peer (time ratio peer/nxt). */
const ratio = (nxtMs: number | undefined, peerMs: number | undefined): string =>
  nxtMs === undefined || peerMs === undefined ? '–' : `${(peerMs / nxtMs).toFixed(2)}×`;
interface PushResult { wallMs: number; dataMs: number[]; totalMs: number[]; ok: number; failed: number; text: string }

async function push(server: Proc, file: string, timeoutMs = 300_000): Promise<PushResult> {
  const at = server.type(`push ${file} --version ${version++}.0`);
  const t0 = performance.now();
  const m = await server.waitFor(/push finished: (\d+) done, (\d+) failed/, timeoutMs, at);
  const wallMs = performance.now() - t0;
  const text = server.output.slice(at);
  const dataMs = [...text.matchAll(/\(data (\d+) ms\)/g)].map((x) => Number(x[1]));
  const totalMs = [...text.matchAll(/ in (\d+) ms/g)].map((x) => Number(x[1]));
  return { wallMs, dataMs, totalMs, ok: Number(m[1]), failed: Number(m[2]), text };
}

async function fleet(n: number, proxyRule?: ProxyRule, clientArgs: string[] = [], serverArgs: string[] = []): Promise<{ server: Proc; clients: Proc[]; proxy?: UdpProxy }> {
  const { proc: server, port } = await startServer(join(work, `server-${version}-${n}`), serverArgs);
  const proxy = proxyRule ? await UdpProxy.start(port, passThrough) : undefined;
  const trust = join(work, `server-${version}-${n}/release.pub`);
  const clients: Proc[] = [];
  for (let i = 0; i < n; i += 10) {
    clients.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, (_, k) =>
      startClient(`c${i + k}`, proxy?.port ?? port, join(work, `client-${version}-${n}-${i + k}`), trust, '127.0.0.1', clientArgs))));
  }
  if (proxy && proxyRule) proxy.rule = proxyRule;
  return { server, clients, proxy };
}

async function section(name: string, run: () => Promise<void>): Promise<void> {
  if (!ONLY.has(name)) return;
  try {
    await run();
  } catch (err) {
    console.log(`\n(${name}: failed: ${(err as Error).message.split('\n')[0]})`);
  } finally {
    await stopAll();
  }
}

console.log(`# nxt transfer benchmark\n`);
console.log(`${new Date().toISOString()}, ${RUNS} runs per figure (median), Node ${process.version}; peers: atftp ${peers.atftp ? 'yes' : 'missing'}, UFTP ${peers.uftp ? 'yes' : 'missing'}`);

await section('loopback', async () => {
  console.log(`\n## One client on loopback\n`);
  console.log('nxt: from typing `push` to the push reported done (the device has verified and activated the module), each run a module with new bytes (no help from a module cache); beside it, the data phase. Default settings, and `--max-datagram 1452` (an Ethernet path). The server\'s CPU seconds and the datagrams it sent, per MiB. atftp: the `atftp -g` process (blksize 1428, windowsize 64). UFTP: its process, and its transfer phase in brackets.\n');
  console.log('| size | nxt push (data) | CPU s/MiB, datagrams/MiB | nxt --max-datagram 1452 (data) | CPU s/MiB, datagrams/MiB | atftp | UFTP (transfer) | UFTP AES-256-GCM (transfer) | nxt ÷ atftp | nxt 1452 ÷ atftp | nxt ÷ UFTP AES |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  const tftpRoot = join(work, 'tftp');
  mkdirSync(tftpRoot, { recursive: true });
  let atftpd: Daemon | undefined;
  let uftpd: Daemon | undefined;
  try {
    atftpd = peers.atftp ? await startAtftpd(tftpRoot, TFTP_PORT) : undefined;
    uftpd = peers.uftp ? await startUftpd(join(work, 'uftp-in'), UFTP_PORT) : undefined;
    // Why a push's last step (the device loading the module) can cost more here than elsewhere.
    const pageMicros = freshPageMicros();
    const faultLines: string[] = [];
    const floorLines: string[] = [];
    const runLines: string[] = [];
    const wide = await fleet(1);
    version++; // a state dir of its own
    const narrow = await fleet(1, undefined, [], ['--max-datagram', '1452']);
    for (const mib of [1, 16, 128]) {
      const file = writeModule(work, `loop_${mib}.mjs`, mib * MiB);
      copyFileSync(file, join(tftpRoot, `loop_${mib}.mjs`));
      const nxtRuns = async ({ server, clients: [client] }: { server: Proc; clients: Proc[] }): Promise<{ wall: number; data: number; cpu: number; datagrams: number; faults: number; walls: number[] }> => {
        const wall: number[] = []; const data: number[] = []; const cpu: number[] = []; const datagrams: number[] = []; const faults: number[] = [];
        for (let r = 0; r < RUNS; r++) {
          const fresh = writeModule(work, `loop_${mib}_${version}.mjs`, mib * MiB);
          // As an operator's push finds them: not still starting the plugin thread for the
          // next push (~65 ms of CPU here), which the run before left them doing.
          await atRest([server.pid, client!.pid]);
          const c0 = cpuSeconds(server.pid);
          const f0 = minorFaults(client!.pid);
          const p = await push(server, fresh);
          cpu.push(cpuSeconds(server.pid) - c0);
          faults.push(minorFaults(client!.pid) - f0);
          rmSync(fresh, { force: true });
          if (p.ok !== 1) throw new Error(`nxt push failed: ${p.text}`);
          wall.push(p.wallMs); data.push(p.dataMs[0] ?? NaN);
          datagrams.push(Number(/, (\d+) datagrams/.exec(p.text)?.[1] ?? NaN));
        }
        return { wall: median(wall), data: median(data), cpu: median(cpu) / mib, datagrams: median(datagrams) / mib, faults: median(faults), walls: wall };
      };
      const a = await nxtRuns(wide);
      const b = await nxtRuns(narrow);
      faultLines.push(`- ${mib} MiB: ${a.faults.toFixed(0)} a push (${(a.faults / mib).toFixed(0)} per MiB; ${((a.faults * pageMicros) / 1000).toFixed(0)} ms at this machine's cost)`);
      const tftp: number[] = [];
      const uftp: { wallMs: number; transferMs: number }[] = [];
      const uftpAes: { wallMs: number; transferMs: number }[] = [];
      for (let r = 0; r < RUNS; r++) {
        if (atftpd) { const t = atftpGet(TFTP_PORT, `loop_${mib}.mjs`, join(work, 'tftp-got'), PEER_TIMEOUT_MS); if (t !== undefined) tftp.push(t); }
        if (uftpd) {
          const u = await uftpSend(UFTP_PORT, file, { encrypt: false, rateKbps: -1, timeoutMs: PEER_TIMEOUT_MS, dest: join(work, 'uftp-in') }); if (u) uftp.push(u);
          const e = await uftpSend(UFTP_PORT, file, { encrypt: true, rateKbps: -1, timeoutMs: PEER_TIMEOUT_MS, dest: join(work, 'uftp-in') }); if (e) uftpAes.push(e);
        }
      }
      const t = tftp.length ? median(tftp) : undefined;
      const each = (xs: number[]): string => (xs.length ? xs.map((x) => Math.round(x)).join(' / ') : '–');
      runLines.push(`- ${mib} MiB: nxt ${each(a.walls)}; nxt 1452 ${each(b.walls)}; atftp ${each(tftp)}; UFTP AES-256-GCM ${each(uftpAes.map((x) => x.wallMs))}`);
      const uw = uftp.length ? median(uftp.map((x) => x.wallMs)) : undefined;
      const u = uftp.length ? median(uftp.map((x) => x.transferMs)) : undefined;
      const ew = uftpAes.length ? median(uftpAes.map((x) => x.wallMs)) : undefined;
      const e = uftpAes.length ? median(uftpAes.map((x) => x.transferMs)) : undefined;
      const per = (x: { cpu: number; datagrams: number }): string => `${x.cpu.toFixed(3)}, ${x.datagrams.toFixed(0)}`;
      const times = (x: number | undefined, y: number | undefined): string => (x === undefined || y === undefined ? '–' : `${(x / y).toFixed(2)}`);
      if (mib >= 16) {
        // The floor: Node with nothing of nxt (bench/bare.ts), in the same run.
        const bare = async (datagram: number): Promise<{ data?: number; load?: number }> => {
          const got: { dataMs: number; loadMs: number }[] = [];
          for (let r = 0; r < RUNS; r++) {
            const x = await barePair(file, mib * MiB, datagram, join(work, `bare_${mib}_${r}.mjs`));
            if (x) got.push(x);
            rmSync(join(work, `bare_${mib}_${r}.mjs`), { force: true });
          }
          return got.length ? { data: median(got.map((x) => x.dataMs)), load: median(got.map((x) => x.loadMs)) } : {};
        };
        const wideBare = await bare(BARE_WIDE_DATAGRAM);
        const narrowBare = await bare(1452);
        floorLines.push(`| ${mib} MiB | ${fmtMs(wideBare.data)} | ${fmtMs(narrowBare.data)} | ${fmtMs(wideBare.load)} | ${times(a.data, wideBare.data)} / ${times(b.data, narrowBare.data)} | ${times(wideBare.data, t)} / ${times(narrowBare.data, t)} |`);
      }
      console.log(`| ${mib} MiB | ${fmtMs(a.wall)} (${fmtMs(a.data)}) | ${per(a)} | ${fmtMs(b.wall)} (${fmtMs(b.data)}) | ${per(b)} | ${fmtMs(t)} | ${fmtMs(uw)} (${fmtMs(u)}) | ${fmtMs(ew)} (${fmtMs(e)}) | ${times(a.wall, t)} (data ${times(a.data, t)}) | ${times(b.wall, t)} (data ${times(b.data, t)}) | ${times(a.wall, ew)} (vs transfer ${times(a.wall, e)}) |`);
    }
    // The medians alone hide how a peer moves: atftp's median for the same 128 MiB was 537, 982
    // and 2380 ms in three runs of this section one after another (docs/benchmarks.md,
    // seventeenth session), and the ratio with it.
    console.log(`\nEach run (ms, in the order run), of which the figures above are the medians:\n${runLines.join('\n')}`);
    console.log(`\nThe floor: a bare Node pair on the same loopback (bench/bare.ts: node:dgram, a chunk sealed with ChaCha20-Poly1305 in each datagram, SHA-256, 512 KiB writes, a window of credit of at most 1 MiB; no session, rate model or loss recovery), its data phase (first datagram to last chunk) in datagrams of ${BARE_WIDE_DATAGRAM} and of 1452 bytes, and its load with Node's own \`import()\`:\n`);
    console.log('| size | bare data, wide | bare data, 1452 | bare load | nxt data ÷ bare data (wide / 1452) | bare data ÷ atftp\'s whole transfer (wide / 1452) |\n|---|---|---|---|---|---|');
    console.log(floorLines.join('\n'));
    // The device reads the module into fresh memory and decodes it into more (Node's loader);
    // atftp's client writes into the page cache and takes none of these.
    console.log(`\nThe device's minor page faults per push (default settings; a fresh 4 KiB page costs ${pageMicros.toFixed(1)} µs to touch on this machine now):`);
    console.log(faultLines.join('\n'));
  } finally {
    await atftpd?.stop();
    await uftpd?.stop();
  }
});

/** What a script pays per `nxt-server ctl` call, beside what Node itself takes to start. */
await section('ctl', async () => {
  console.log(`\n## nxt-server ctl: start-up a script pays per command\n`);
  await fleet(1); // a running server for ctl to talk to
  const stateDir = join(work, `server-${version}-1`);
  const time = (args: string[]): number => {
    const t0 = performance.now();
    spawnSync('node', args, { stdio: 'ignore' });
    return performance.now() - t0;
  };
  const node: number[] = []; const ctl: number[] = [];
  for (let r = 0; r < Math.max(RUNS, 9); r++) {
    node.push(time(['-e', '0']));
    ctl.push(time([join(ROOT, 'dist/cli/server.js'), 'ctl', '--state-dir', stateDir, 'status']));
  }
  console.log(`| | median | min |\n|---|---|---|\n| node -e 0 | ${fmtMs(median(node))} | ${fmtMs(Math.min(...node))} |\n| nxt-server ctl status | ${fmtMs(median(ctl))} | ${fmtMs(Math.min(...ctl))} |\n| ctl's own (median difference) | ${fmtMs(median(ctl) - median(node))} | |`);
});

/**
 * The held-out comparison's setting: a relay process in its own namespace between the server's
 * and the client's (bench/netns.ts), veths of MTU 1500, 5 ms each way, seeded loss and
 * reordering. Each peer runs in the same namespaces through the same relay, which counts the
 * datagrams each end sent.
 */
await section('lossy', async () => {
  const why = createTestbed();
  if (why) { console.log(`\n(lossy: no namespaces on this machine: ${why}; see --only lossy-loopback)`); return; }
  console.log(`\n## 16 MiB through a relay between network namespaces (veth MTU 1500, 5 ms each way)\n`);
  const MB = 16;
  const file = writeModule(work, 'relay_16.mjs', MB * MiB);
  const tcpPeer = tcpTunnelReady();
  console.log(`nxt: from typing \`push\` to the push reported done (the device has activated the module); resends as a share of the chunks; the server's CPU seconds and the datagrams it sent, per MiB. UFTP sends at a fixed 400 Mbit/s (its transfer phase beside its wall time); atftp (blksize 1428, windowsize 64) gets 30 s. TCP (${tcpPeer.congestion}): from connect to the last byte, through the same relay in a TUN tunnel (bench/tcp-tunnel.ts; 30 s each).\n`);
  console.log('| link | nxt push (data) | nxt resent | nxt server CPU s/MiB | nxt datagrams/MiB | UFTP wall (transfer) | UFTP sender CPU s/MiB | UFTP datagrams/MiB | atftp | TCP | nxt ÷ UFTP wall | nxt ÷ TCP |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  /** TCP downloads through the tunnel, the relay losing and delaying as `c` says. */
  const tcpRuns = async (c: { loss: number; reorder: number }, seed: number): Promise<{ times: number[]; failed: string[] }> => {
    const times: number[] = [];
    const failed: string[] = [];
    // Started here: each condition's nxt runs end with stopAll.
    const sender = await startTcpSender(file, tcpPeer.congestion);
    const tunnel = await startTunnel((server, frontPort) => startRelay({ front: RELAY_CLIENT_SIDE, back: RELAY_SERVER_SIDE, server, frontPort, loss: c.loss, reorder: c.reorder, delayMs: 5, seed }), RELAY_PORT + 3);
    try {
      for (let r = 0; r < RUNS; r++) {
        const t = tcpDownload(MB * MiB, 30_000);
        if ('ms' in t) times.push(t.ms); else failed.push(t.failed);
      }
    } finally {
      await tunnel.stop();
      await sender.stop();
    }
    return { times, failed };
  };
  const tftpRoot = join(work, 'tftp-relay');
  mkdirSync(tftpRoot, { recursive: true });
  copyFileSync(file, join(tftpRoot, 'relay_16.mjs'));
  const conditions = [
    { name: '1% loss', loss: 0.01, reorder: 0 },
    { name: '5% loss', loss: 0.05, reorder: 0 },
    { name: '20% loss', loss: 0.2, reorder: 0 },
    { name: '25% reordering', loss: 0, reorder: 0.25 },
    // The relay drops whole datagrams; on a real link a datagram that IP fragments (nxt's, to a
    // device on its LAN: net/fragments.ts) is lost with any of its frames. The peers' datagrams
    // fit one frame: for them these rows are the ones above, so only nxt runs.
    { name: '1% loss per frame', loss: 0.01, reorder: 0, perFrame: true },
    { name: '5% loss per frame', loss: 0.05, reorder: 0, perFrame: true },
    { name: '20% loss per frame', loss: 0.2, reorder: 0, perFrame: true },
  ];
  try {
    for (const [ci, c] of conditions.entries()) {
      const relayAt = (front: string, back: string, server: string, frontPort: number, seed: number): Promise<Relay> =>
        startRelay({ front, back, server, frontPort, loss: c.loss, reorder: c.reorder, delayMs: 5, seed, perFrame: c.perFrame });
      // nxt: server and client once per condition; the relay anew each run (same port).
      const stateDir = join(work, `relay-server-${ci}`);
      const server = new Proc('server', ...inNs(SERVER_NS, 'node', [join(ROOT, 'dist/cli/server.js'), '--port', '0', '--state-dir', stateDir, '--peer-timeout', '30000']), { NXT_ENROLL_TOKEN: TEST_ENROLL_TOKEN });
      const port = Number((await server.waitFor(/listening on UDP port (\d+)/))[1]);
      await server.waitFor('NxtServer# ');
      // One relay for all runs: a new one would face the server from a new port, and the
      // client would first have to notice and shake hands again.
      const relay = await relayAt(RELAY_CLIENT_SIDE, RELAY_SERVER_SIDE, `${SERVER_ADDR}:${port}`, RELAY_PORT, 10 + ci);
      const client = new Proc('client', ...inNs(CLIENT_NS, 'node', [join(ROOT, 'dist/cli/client.js'), '--server', RELAY_CLIENT_SIDE, '--port', String(RELAY_PORT),
        '--trust', join(stateDir, 'release.pub'), '--data-dir', join(work, `relay-client-${ci}`)]), { NXT_ENROLL_TOKEN: TEST_ENROLL_TOKEN });
      await client.waitFor('registered with the server', 30_000);
      const nxt: { wall: number; data: number; resent: number; cpu: number; datagrams: number }[] = [];
      for (let r = 0; r < RUNS; r++) {
        // New bytes each run, as a new release would be (sealed, then sent).
        const fresh = writeModule(work, `relay_16_${ci}_${r}.mjs`, MB * MiB);
        await atRest([server.pid, client.pid]);
        const before = await relay.counts();
        const cpu0 = cpuSeconds(server.pid);
        const p = await push(server, fresh, 120_000);
        const cpu = cpuSeconds(server.pid) - cpu0;
        const after = await relay.counts();
        const sent = { toClient: after.toClient - before.toClient, toServer: after.toServer - before.toServer };
        if (p.ok !== 1) { console.log(`(nxt failed at ${c.name}: ${p.text.split('\n')[1] ?? ''})`); continue; }
        const m = /(\d+) of (\d+) chunks resent/.exec(p.text);
        nxt.push({ wall: p.wallMs, data: p.dataMs[0] ?? NaN, resent: m ? Number(m[1]) / Number(m[2]) : 0, cpu, datagrams: sent.toClient });
        // Each run on stderr: a median of three hides one slow run (a first push at 20% loss
        // per frame once took 34 s behind a median of 1.8 s).
        console.error(`${c.name}, run ${r + 1}: ${Math.round(p.wallMs)} ms (data ${p.dataMs[0] ?? '–'} ms), ${p.text.split('\n').find((l) => / {2}(done|failed)/.test(l))?.trim() ?? ''}`);
      }
      await relay.stop();
      await stopAll();
      // UFTP: the sender in the server's namespace, uftpd in the client's.
      const uftp: { wall: number; transfer: number; cpu?: number; datagrams: number }[] = [];
      if (peers.uftp && !c.perFrame) {
        // Stopped whatever happens: a namespace's removal does not end the processes in it.
        const uftpd = await startUftpd(join(work, 'uftp-relay'), UFTP_PORT, { ns: CLIENT_NS, host: CLIENT_ADDR });
        try {
          for (let r = 0; r < RUNS; r++) {
            const rl = await relayAt(RELAY_SERVER_SIDE, RELAY_CLIENT_SIDE, `${CLIENT_ADDR}:${UFTP_PORT}`, RELAY_PORT + 1, 300 + 100 * r + ci);
            const u = await uftpSend(RELAY_PORT + 1, file, { encrypt: false, rateKbps: 400_000, timeoutMs: PEER_TIMEOUT_MS, dest: join(work, 'uftp-relay'), place: { ns: SERVER_NS, host: RELAY_SERVER_SIDE } });
            const sent = await rl.stop();
            // UFTP's data flows from the initiator (the relay's front): "to-server" here.
            if (u) uftp.push({ wall: u.wallMs, transfer: u.transferMs, cpu: u.cpuSeconds, datagrams: sent.toServer });
          }
        } finally {
          await uftpd.stop();
        }
      }
      // atftp: atftpd in the server's namespace, the client in the client's.
      let tftp: number | undefined;
      let tftpTried = false;
      if (peers.atftp && !c.perFrame) {
        const atftpd = await startAtftpd(tftpRoot, TFTP_PORT, { ns: SERVER_NS, host: SERVER_ADDR });
        try {
          const rl = await relayAt(RELAY_CLIENT_SIDE, RELAY_SERVER_SIDE, `${SERVER_ADDR}:${TFTP_PORT}`, RELAY_PORT + 2, 700 + ci);
          tftpTried = true;
          tftp = atftpGet(RELAY_PORT + 2, 'relay_16.mjs', join(work, 'tftp-relay-got'), 30_000, { ns: CLIENT_NS, host: RELAY_CLIENT_SIDE });
          await rl.stop();
        } finally {
          await atftpd.stop();
        }
      }
      const tcp = tcpPeer.ok && !c.perFrame ? await tcpRuns(c, 900 + ci) : undefined;
      const med = (xs: number[]): number | undefined => (xs.length ? median(xs) : undefined);
      const n = med(nxt.map((x) => x.wall));
      const u = med(uftp.map((x) => x.wall));
      // A download that failed counts as slower than any that finished: when most failed, the
      // median is "not in 30 s" and nxt's ratio to TCP an upper bound.
      const t = tcp ? median([...tcp.times, ...tcp.failed.map(() => Infinity)]) : undefined;
      const tcpCell = tcp === undefined ? (c.perFrame ? 'as above' : 'missing')
        : `${t === Infinity ? 'not in 30 s' : fmtMs(t)}${tcp.failed.length ? ` (${tcp.failed.length} of ${RUNS}: ${tcp.failed[0]})` : ''}`;
      const tcpRatio = n === undefined || t === undefined ? '–' : t === Infinity ? `< ${(n / 30_000).toFixed(2)}` : (n / t).toFixed(2);
      const perMiB = (x: number | undefined, digits = 3): string => (x === undefined || Number.isNaN(x) ? '–' : (x / MB).toFixed(digits));
      console.log(`| ${c.name} | ${n === undefined ? 'failed' : `${fmtMs(n)} (${fmtMs(med(nxt.map((x) => x.data)))})`} | ${nxt.length ? `${(100 * median(nxt.map((x) => x.resent))).toFixed(1)}%` : '–'} | ${perMiB(med(nxt.map((x) => x.cpu)))} | ${perMiB(med(nxt.map((x) => x.datagrams)), 0)} | ${u === undefined ? (c.perFrame ? 'as above' : peers.uftp ? 'failed' : 'missing') : `${fmtMs(u)} (${fmtMs(med(uftp.map((x) => x.transfer)))})`} | ${perMiB(med(uftp.flatMap((x) => (x.cpu === undefined ? [] : [x.cpu]))))} | ${perMiB(med(uftp.map((x) => x.datagrams)), 0)} | ${tftp !== undefined ? fmtMs(tftp) : tftpTried ? 'did not finish in 30 s' : c.perFrame ? 'as above' : 'missing'} | ${tcpCell} | ${n !== undefined && u !== undefined ? `${(n / u).toFixed(2)}` : '–'} | ${tcpRatio} |`);
    }
    if (tcpPeer.ok) {
      const clean = await tcpRuns({ loss: 0, reorder: 0 }, 999);
      console.log(`\nTCP through the same tunnel with no loss (5 ms each way): ${clean.times.length ? fmtMs(median(clean.times)) : `failed (${clean.failed[0]})`}: the tunnel's own ceiling (socat copies every packet through user space at both ends).`);
    }
  } finally {
    await stopAll();
    removeTestbed();
  }
});

await section('lossy-loopback', async () => {
  console.log(`\n## 16 MiB through a lossy relay on loopback (5 ms delay each way, seeded loss both ways)\n`);
  console.log('| loss | nxt push (data) | atftp | UFTP at 400 Mbit/s (transfer) | nxt vs atftp | nxt vs UFTP |');
  console.log('|---|---|---|---|---|---|');
  const file = writeModule(work, 'lossy_16.mjs', 16 * MiB);
  const tftpRoot = join(work, 'tftp-lossy');
  mkdirSync(tftpRoot, { recursive: true });
  copyFileSync(file, join(tftpRoot, 'lossy_16.mjs'));
  for (const loss of [0.01, 0.05, 0.2]) {
    const rule = (seed: number): ProxyRule => lossyLink(seed, { loss, delayMs: 5 });
    const { server, clients, proxy } = await fleet(1, rule(1));
    const wall: number[] = []; const data: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      await atRest([server.pid, clients[0]!.pid]);
      proxy!.rule = rule(100 + r);
      const p = await push(server, file);
      if (p.ok === 1) { wall.push(p.wallMs); data.push(p.dataMs[0] ?? NaN); }
    }
    await proxy!.close();
    await stopAll();
    const tftp: number[] = []; let tftpFailed = 0;
    if (peers.atftp) {
      const atftpd = await startAtftpd(tftpRoot, TFTP_PORT);
      for (let r = 0; r < RUNS && tftpFailed === 0; r++) {
        const px = await UdpProxy.start(TFTP_PORT, rule(200 + r));
        const t = atftpGet(px.port, 'lossy_16.mjs', join(work, 'tftp-got'), PEER_TIMEOUT_MS);
        await px.close();
        if (t === undefined) tftpFailed++; else tftp.push(t);
      }
      await atftpd.stop();
    }
    const uftp: number[] = []; const uftpWall: number[] = []; let uftpFailed = 0;
    if (peers.uftp) {
      const uftpd = await startUftpd(join(work, 'uftp-lossy'), UFTP_PORT);
      for (let r = 0; r < RUNS && uftpFailed === 0; r++) {
        const px = await UdpProxy.start(UFTP_PORT, rule(300 + r));
        const u = await uftpSend(px.port, file, { encrypt: false, rateKbps: 400_000, timeoutMs: PEER_TIMEOUT_MS, dest: join(work, 'uftp-lossy') });
        await px.close();
        if (u) { uftp.push(u.transferMs); uftpWall.push(u.wallMs); } else uftpFailed++;
      }
      await uftpd.stop();
    }
    const n = wall.length ? median(wall) : undefined;
    const nd = data.length ? median(data) : undefined;
    const t = tftp.length && !tftpFailed ? median(tftp) : undefined;
    const u = uftp.length && !uftpFailed ? median(uftp) : undefined;
    const uw = uftpWall.length && !uftpFailed ? median(uftpWall) : undefined;
    const failNote = (failed: number, tried: boolean): string => (failed ? `did not finish in ${PEER_TIMEOUT_MS / 1000} s` : tried ? 'failed' : 'missing');
    console.log(`| ${loss * 100}% | ${n === undefined ? `failed (${RUNS - wall.length} of ${RUNS})` : `${fmtMs(n)} (${fmtMs(nd)})`} | ${t === undefined ? failNote(tftpFailed, peers.atftp) : fmtMs(t)} | ${u === undefined ? failNote(uftpFailed, peers.uftp) : `${fmtMs(uw)} (${fmtMs(u)})`} | ${ratio(n, t)} | ${ratio(n, uw)} (data vs transfer ${ratio(nd, u)}) |`);
  }
});

await section('fleet', async () => {
  console.log(`\n## 16 MiB to many clients at once (one client process each, all on this 2-core machine)\n`);
  console.log('Goodput over the data phase (until the last client had every chunk) and over the whole push (including 50 `import()`s of 16 MiB); CPU seconds used during the push by the server and by all clients together. The server runs with `--peer-timeout 30000`: 50 client processes on 2 cores starve some of them for over the default 10 s.\n');
  console.log('| clients | push wall time | data phase | goodput (data) | vs one client | goodput (whole push) | vs one client | server CPU | clients CPU | server peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  const file = writeModule(work, 'fleet_16.mjs', 16 * MiB);
  let one: { data: number; wall: number } | undefined;
  for (const n of FLEET_SIZES) {
    const { server, clients } = await fleet(n, undefined, [], ['--peer-timeout', '30000']);
    const wall: number[] = []; const data: number[] = []; const serverCpu: number[] = []; const clientCpu: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const s0 = cpuSeconds(server.pid); const c0 = clients.reduce((t, c) => t + cpuSeconds(c.pid), 0);
      const p = await push(server, file, 600_000);
      if (p.ok !== n) {
        // Say which clients were not there (offline: their lease lapsed) before giving up.
        const at = server.type('clients');
        await server.waitFor(/NxtServer# $/, 10_000, at + 1).catch(() => undefined);
        console.log(server.output.slice(at).split('\n').filter((l) => / offline, /.test(l)).join('\n'));
        const reasons = [...new Set(p.text.match(/failed \([a-zA-Z]+\): [^(\n]*/g) ?? [])].slice(0, 3).join('; ');
        throw new Error(`${p.ok} of ${n} done, ${p.failed} failed${reasons ? `: ${reasons}` : ''} (${p.text.match(/push \S+ .* to \d+ client\(s\)/)?.[0] ?? '?'})`);
      }
      serverCpu.push(cpuSeconds(server.pid) - s0);
      clientCpu.push(clients.reduce((t, c) => t + cpuSeconds(c.pid), 0) - c0);
      wall.push(p.wallMs);
      data.push(Math.max(...p.dataMs));
    }
    const w = median(wall); const d = median(data);
    const goodput = (ms: number): number => (n * 16 * MiB) / (ms / 1000);
    one ??= { data: goodput(d), wall: goodput(w) };
    console.log(`| ${n} | ${fmtMs(w)} | ${fmtMs(d)} | ${(goodput(d) / MiB).toFixed(0)} MiB/s | ${((100 * goodput(d)) / one.data).toFixed(0)}% | ${(goodput(w) / MiB).toFixed(0)} MiB/s | ${((100 * goodput(w)) / one.wall).toFixed(0)}% | ${median(serverCpu).toFixed(1)} s | ${median(clientCpu).toFixed(1)} s | ${peakRssMb(server.pid)} MB |`);
    await stopAll();
  }
});

await section('huge', async () => {
  console.log(`\n## 1 GiB to one client: memory\n`);
  const file = writeModule(work, 'huge_1024.mjs', 1024 * MiB);
  const { server, clients } = await fleet(1, undefined, ['--max-module-bytes', String(2 * 1024 * MiB)]);
  const client = clients[0]!;
  const samples: { at: number; server: number; client: number }[] = [];
  const t0 = performance.now();
  const sampler = setInterval(() => samples.push({ at: performance.now() - t0, server: rssMb(server.pid), client: rssMb(client.pid) }), 50);
  const p = await push(server, file, 600_000);
  clearInterval(sampler);
  const dataEnd = (p.dataMs[0] ?? p.wallMs) + (p.wallMs - (p.totalMs[0] ?? p.wallMs));
  const during = samples.filter((s) => s.at <= dataEnd);
  console.log('| phase | server peak RSS | client peak RSS |');
  console.log('|---|---|---|');
  console.log(`| transfer and hashing (${fmtMs(p.dataMs[0])}, ${rate(statSync(file).size, p.dataMs[0])}) | ${Math.round(Math.max(...during.map((s) => s.server)))} MB | ${Math.round(Math.max(...during.map((s) => s.client)))} MB |`);
  console.log(`| whole run, including the client's attempt to load it | ${peakRssMb(server.pid)} MB | ${peakRssMb(client.pid)} MB |`);
  const outcome = /(done|failed \([a-zA-Z]+\)): [^\n]*/.exec(p.text)?.[0] ?? '?';
  console.log(`\nOutcome: ${outcome.slice(0, 200)}`);
});

/** The far device's one-way delay in the latency section. */
const FAR_DELAY_MS = 25;

await section('latency', async () => {
  console.log(`\n## 10 KiB module: from typing push to the new version printed by the client\n`);
  // The sections before leave up to gigabytes of files to write back (the 1 GiB module, its
  // sealed copy): every fsync of a push (the device's records) would wait behind them.
  spawnSync('sync');
  const { server, clients } = await fleet(1);
  const client = clients[0]!;
  const pushes = Math.max(RUNS, 15);
  let r = 0;
  const timeOne = async (from: Proc, device: Proc): Promise<number> => {
    const at = device.output.length;
    const t0 = performance.now();
    // New bytes each time, as a new release would be (no help from a module cache).
    const pushed = push(from, writeModule(work, `small_10k_${r++}.mjs`, 10 * 1024));
    await device.waitFor(/Major = 9\nMinor = 1/, 30_000, at);
    const ms = performance.now() - t0;
    await pushed;
    return ms;
  };
  // An operator's push finds the device at rest; pushes back to back find it still starting the
  // plugin thread for the next one (~65 ms of CPU here) on the cores the push needs.
  const rest: number[] = [];
  const waited: number[] = [];
  for (let i = 0; i < pushes; i++) {
    waited.push(await atRest([server.pid, client.pid]));
    rest.push(await timeOne(server, client));
  }
  const backToBack: number[] = [];
  for (let i = 0; i < pushes; i++) backToBack.push(await timeOne(server, client));
  const line = (xs: number[]): string => `median ${fmtMs(median(xs))}, min ${fmtMs(Math.min(...xs))}, max ${fmtMs(Math.max(...xs))} over ${xs.length} pushes`;
  console.log(`- the device at rest before each push (waited ${fmtMs(median(waited))} for it, median): ${line(rest)} (target ≤ 50 ms: ${median(rest) <= 50 ? 'met' : 'NOT met'})`);
  console.log(`- back to back, each push typed as the one before finished: ${line(backToBack)}`);
  await stopAll();
  // A device far away (a WAN, a cellular link): what a push costs in round trips shows here.
  const far = await fleet(1, lossyLink(1, { loss: 0, delayMs: FAR_DELAY_MS }));
  const farTimes: number[] = [];
  for (let i = 0; i < pushes; i++) {
    await atRest([far.server.pid, far.clients[0]!.pid]);
    farTimes.push(await timeOne(far.server, far.clients[0]!));
  }
  await far.proxy?.close();
  console.log(`- through a relay that holds each datagram ${FAR_DELAY_MS} ms each way (a ${2 * FAR_DELAY_MS} ms round trip), at rest: ${line(farTimes)}`);
});

await section('fanout', async () => {
  await runFanout({ mib: 16, devices: [10, 50], runs: RUNS });
});

await stopAll();
