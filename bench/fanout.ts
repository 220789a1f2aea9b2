/**
 * Fan-out: one release to a LAN of devices, each device in a network namespace of its own, all on
 * one bridge (veth, MTU 1500), the server in another. Compared in the same run with UFTP multicast
 * (fixed rate) and with N parallel TCP transfers of the same file. Needs root and `ip` (it says so
 * and skips otherwise). Not a test: bounded in count and time.
 *
 *   npm run bench:fanout [-- --mib 16 --devices 10,50 --runs 3]
 *
 * The devices run on the same machine as the server: their own CPU (a column) is the limit long
 * before the server's on a small machine (50 devices on 2 cores).
 *
 * Rows: time until every device activated (nxt: typing push → "push finished", every device
 * verified and loaded the module; UFTP: its process's wall time and its own "Total elapsed time";
 * TCP: from starting N receivers to the last byte at all of them), server CPU-seconds and peak RSS,
 * the devices' CPU (UFTP's receivers' too). Then the floor under them: receivers with nothing of
 * nxt in them (bench/bare.ts) on the same cores, and the least time their CPU allows.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Proc, startClient, startServer, stopAll, tempDir } from '../test/support/processes.js';
import { writeModule } from '../test/support/modules.js';
import { ensureCommands, have } from '../test/support/debian.js';
import { startTcpFileServer } from './peers.js';
import { cpuByThreadName, cpuSeconds, peakRssMb, threadRunNanos } from './proc-stats.js';
import { benchArgs } from './args.js';
import { GROUP_CHUNK } from './bare.js';

const HUB = 'nxtf-hub';
const SERVER_NS = 'nxtf-server';
const SERVER_ADDR = '10.204.0.1';
const GROUP = '239.255.77.1';
const GROUP_PORT = 7702;
const UFTP_PORT = 11045;
const TCP_PORT = 18_000;
const deviceNs = (i: number): string => `nxtf-d${i}`;
const deviceAddr = (i: number): string => `10.204.${1 + Math.floor(i / 200)}.${10 + (i % 200)}`;

/** What a namespace's kernel dropped: datagrams its sockets had no room for, fragments it could
 *  not reassemble (since the namespace was made). */
function kernelCounters(ns: string): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'nstat', '-az', 'UdpInDatagrams', 'UdpRcvbufErrors', 'IpReasmOKs', 'IpReasmFails', 'IpReasmTimeout'], { encoding: 'utf8' });
  const counters = (r.stdout ?? '').split('\n').filter((l) => /^\w/.test(l) && !l.startsWith('#')).map((l) => l.split(/\s+/).slice(0, 2).join(' '));
  return `kernel (${ns}): ${counters.join(', ') || 'nstat gave nothing'}`;
}

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${(r.stderr || '').trim()}`);
}

function removeNet(devices: number): void {
  for (let i = 0; i < devices; i++) spawnSync('ip', ['netns', 'del', deviceNs(i)], { stdio: 'ignore' });
  spawnSync('ip', ['netns', 'del', SERVER_NS], { stdio: 'ignore' });
  spawnSync('ip', ['netns', 'del', HUB], { stdio: 'ignore' });
}

/** The server's namespace and `devices` device namespaces, joined by a bridge in a hub namespace. */
function createNet(devices: number): void {
  removeNet(devices);
  ip('netns', 'add', HUB);
  ip('-n', HUB, 'link', 'add', 'br0', 'type', 'bridge');
  // No IGMP querier here: without snooping the bridge floods the group to every port, as a
  // plain switch does.
  spawnSync('ip', ['netns', 'exec', HUB, 'sh', '-c', 'echo 0 > /sys/class/net/br0/bridge/multicast_snooping'], { stdio: 'ignore' });
  ip('-n', HUB, 'link', 'set', 'br0', 'up');
  const attach = (ns: string, name: string, addr: string): void => {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    ip('link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', name, 'netns', HUB);
    ip('-n', ns, 'addr', 'add', `${addr}/16`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
    ip('-n', HUB, 'link', 'set', name, 'master', 'br0');
    ip('-n', HUB, 'link', 'set', name, 'up');
  };
  attach(SERVER_NS, 'vs', SERVER_ADDR);
  for (let i = 0; i < devices; i++) attach(deviceNs(i), `vd${i}`, deviceAddr(i));
}

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
};
const fmt = (ms: number): string => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'failed');

interface NxtRun {
  ms: number; cpu: number; rssMb: number; devicesCpu: number;
  /** With a lossy device named: when the others were done (their longest "in N ms"). */
  straggler?: number;
  /** The lossy device's loss was on for this push. */
  lossy?: boolean;
  /** Not counted: the first push of an alternating run (a fleet's first push is its slowest). */
  warmUp?: boolean;
}

/** nxt: a server (multicast or not) and `n` devices; `runs` pushes of fresh modules. With
 *  `alternate`, the lossy device's loss is on for half of them, interleaved: one clean push not
 *  counted, then `runs` pairs in the order lossy, clean, clean, lossy, … (the same processes, close
 *  in time: this machine's pushes slow down over a section, so runs minutes apart compare badly). */
async function nxtRuns(work: string, n: number, mib: number, runs: number, o: { multicast: boolean; lossyDevice?: number; alternate?: boolean; groupDatagram?: number; label?: string; explain?: boolean }): Promise<NxtRun[]> {
  const state = join(work, `server-${n}-${o.multicast}-${o.lossyDevice ?? 'clean'}-${o.groupDatagram ?? 'mtu'}${o.label ?? ''}`);
  const extra = ['--renew', '5000', ...(o.multicast ? ['--multicast', `${GROUP}:${GROUP_PORT}`, '--multicast-interface', SERVER_ADDR] : []),
    ...(o.groupDatagram === undefined ? [] : ['--multicast-datagram', String(o.groupDatagram)])];
  const { proc: server, port } = await startServer(state, extra, {}, 0, SERVER_NS);
  const devices: Proc[] = [];
  for (let i = 0; i < n; i += 10) {
    devices.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, (_, k) =>
      startClient(`d${i + k}`, port, join(state, `d${i + k}`), join(state, 'release.pub'), SERVER_ADDR, ['--probation', '1', ...(o.multicast ? [] : ['--no-multicast'])], { netns: deviceNs(i + k) }))));
  }
  // 5% of everything arriving at that device is lost (nft in its namespace).
  const setLoss = (on: boolean): void => {
    spawnSync('ip', ['netns', 'exec', deviceNs(o.lossyDevice!), 'nft', '-f', '-'], {
      input: on ? 'table inet lossy {\n chain in {\n  type filter hook input priority 0;\n  udp sport != 0 numgen random mod 20 == 0 drop\n }\n}\n' : 'delete table inet lossy\n',
    });
  };
  const alternate = o.alternate === true && o.lossyDevice !== undefined;
  if (o.lossyDevice !== undefined && !alternate) setLoss(true);
  const out: NxtRun[] = [];
  const pushes = alternate ? 1 + 2 * runs : runs;
  let lossOn = false;
  for (let r = 0; r < pushes; r++) {
    const minor = r + 1;
    const lossy = alternate ? r > 0 && (r - 1) % 4 !== 1 && (r - 1) % 4 !== 2 : o.lossyDevice !== undefined;
    if (alternate && lossy !== lossOn) { setLoss(lossy); lossOn = lossy; }
    const file = writeModule(work, `fan${n}${o.multicast ? 'm' : 'u'}${o.lossyDevice === undefined ? '' : 'lossy'}${o.groupDatagram ?? ''}${o.label ?? ''}_9_${minor}.mjs`, mib * 1024 * 1024, 9, minor);
    // Every device online first: after a push that loaded a module on each, a loaded machine may
    // have let some leases lapse.
    for (let waited = 0; waited < 60_000; waited += 500) {
      const listed = await server.run('clients --json', /\]\n/);
      if ((listed.match(/"online":true/g) ?? []).length >= n) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    if (o.explain) {
      for (let k = 0; k < 5; k++) {
        const c0 = devices.reduce((a, d) => a + cpuSeconds(d.pid), 0);
        await new Promise((res) => setTimeout(res, 1000));
        console.error(`devices' CPU over 1 s: ${(devices.reduce((a, d) => a + cpuSeconds(d.pid), 0) - c0).toFixed(2)} s`);
      }
    }
    const cpu0 = cpuSeconds(server.pid);
    const devicesCpu0 = devices.reduce((a, d) => a + cpuSeconds(d.pid), 0);
    const sys = (): number => devices.reduce((a, d) => a + Number(readFileSync(`/proc/${d.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[12]) / 100, 0);
    const sys0 = sys();
    const threads0 = o.explain ? devices.map((d) => threadRunNanos(d.pid)) : [];
    const cpus0 = o.explain ? devices.map((d) => cpuSeconds(d.pid)) : [];
    const at = server.type(`push ${file}`);
    const t0 = performance.now();
    const w0 = process.hrtime.bigint() / 1000n;
    await server.waitFor(/push finished: .*\n/, 300_000, at);
    const ms = performance.now() - t0;
    if (o.explain) console.error(`push window (monotonic µs, as in --cpu-prof): ${w0} ${process.hrtime.bigint() / 1000n}`);
    const text = server.output.slice(at);
    const done = Number(/push finished: (\d+) done/.exec(text)?.[1] ?? 0);
    if (o.explain) {
      // Progress lines left out, but the group's: its pace over the pass.
      console.error(text.split('\n').filter((l) => !/%/.test(l) || /multicast: sending/.test(l)).join('\n'));
      console.error(`devices' system CPU: ${(sys() - sys0).toFixed(2)} s`);
      const byThread = new Map<string, number>();
      devices.forEach((d, i) => {
        for (const [name, s] of cpuByThreadName(threads0[i]!, threadRunNanos(d.pid), cpus0[i]!, cpuSeconds(d.pid))) byThread.set(name, (byThread.get(name) ?? 0) + s);
      });
      console.error(`devices' CPU by thread: ${[...byThread].map(([k, v]) => `${k} ${v.toFixed(2)} s`).join(', ')}`);
      for (const d of [devices[0]!, devices.at(-1)!]) {
        console.error(`--- ${d.name} ---\n${d.output.split('\n').slice(-25).join('\n')}`);
        console.error(`stats: ${await d.run('stats', /bad chunks \d+\n/)}`);
      }
    }
    if (done !== n) {
      console.error(`(a push to ${n} devices did not reach all of them:)\n${text.split('\n').filter((l) => !/%/.test(l)).join('\n')}`);
      // The channels' counters say whether datagrams were dropped (and why) on either side.
      console.error(`--- server stats ---\n${await server.run('stats', /channel: .*\n/)}\n${kernelCounters(SERVER_NS)}`);
      // What each device that failed said meanwhile (its id is in its own log's first lines).
      for (const m of text.matchAll(/ {2}([0-9a-f]{12}) \S+ {2}failed/g)) {
        const d = devices.find((x) => x.output.includes(`nxt client ${m[1]}`));
        if (!d) continue;
        console.error(`--- ${d.name} (${m[1]}) ---\n${d.output.split('\n').slice(-40).join('\n')}`);
        console.error(`stats: ${await d.run('stats', /bad chunks \d+\n/)}${kernelCounters(deviceNs(devices.indexOf(d)))}`);
      }
    }
    let straggler: number | undefined;
    if (o.lossyDevice !== undefined) {
      // The others: their result lines' times ("in N ms"), the lossy one's left out.
      const lossyId = devices[o.lossyDevice]!.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
      const others = [...text.matchAll(/ {2}([0-9a-f]{12}) \S+ {2}done: .* in (\d+) ms/g)].filter((m) => m[1] !== lossyId).map((m) => Number(m[2]));
      straggler = Math.max(...others);
    }
    out.push({ ms: done === n ? ms : NaN, cpu: cpuSeconds(server.pid) - cpu0, rssMb: peakRssMb(server.pid), straggler,
      devicesCpu: devices.reduce((a, d) => a + cpuSeconds(d.pid), 0) - devicesCpu0, lossy, warmUp: alternate && r === 0 });
    // Every device on probation commits before the next push (a newer one would replace it anyway).
    await new Promise((res) => setTimeout(res, 1200));
  }
  // A profiling run (node wrapped with --cpu-prof) needs the processes to exit, not be killed.
  if (process.env.NXT_BENCH_TERM) await Promise.all([...devices, server].map((d) => d.stop('SIGTERM')));
  await stopAll();
  return out;
}

/** UFTP multicast at a fixed rate to `n` receivers; wall and transfer-phase ms per run. */
async function uftpRuns(work: string, n: number, mib: number, runs: number, rateKbps: number): Promise<{ wall: number; transfer: number; receiversCpu: number }[]> {
  const file = writeModule(work, `uftp_${n}.bin`, mib * 1024 * 1024);
  const daemons: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    const dest = join(work, `uftp-d${i}`);
    mkdirSync(dest, { recursive: true });
    daemons.push(spawn('ip', ['netns', 'exec', deviceNs(i), 'uftpd', '-d', '-p', String(UFTP_PORT), '-D', dest, '-I', 'eth0', '-M', GROUP, '-B', '104857600', '-x', '0'], { stdio: 'ignore' }));
  }
  await new Promise((res) => setTimeout(res, 500));
  const out: { wall: number; transfer: number; receiversCpu: number }[] = [];
  // `ip netns exec` execs uftpd (-d: in the foreground), so each daemon's pid is uftpd's.
  const receiversCpu = (): number => daemons.reduce((a, d) => { try { return a + cpuSeconds(d.pid!); } catch { return a; } }, 0);
  try {
    for (let r = 0; r < runs; r++) {
      const cpu0 = receiversCpu();
      const t0 = performance.now();
      const res = spawnSync('ip', ['netns', 'exec', SERVER_NS, 'uftp', '-M', GROUP, '-P', GROUP, '-I', 'eth0', '-p', String(UFTP_PORT), '-R', String(rateKbps), '-b', '1428',
        '-B', '104857600', '-x', '2', file], { encoding: 'utf8', timeout: 120_000, cwd: work });
      const wall = performance.now() - t0;
      const text = `${res.stdout}${res.stderr}`;
      const m = /Total elapsed time: ([\d.]+) seconds/.exec(text);
      let all = true;
      for (let i = 0; i < n; i++) {
        try { if (statSync(join(work, `uftp-d${i}`, `uftp_${n}.bin`)).size !== mib * 1024 * 1024) all = false; } catch { all = false; }
      }
      out.push(m && all ? { wall, transfer: Number(m[1]) * 1000, receiversCpu: receiversCpu() - cpu0 } : { wall: NaN, transfer: NaN, receiversCpu: NaN });
    }
  } finally {
    for (const d of daemons) d.kill('SIGTERM');
  }
  return out;
}

const BARE_PORT = 7703;
const BARE_MBIT = 100;

/** The floor (bench/bare.ts): `n` receivers that only receive, open, hash, write and load
 *  the module, the sender pacing its chunks at `mbit`. Their CPU-seconds, scaled to the whole
 *  module where datagrams were lost; `cores` of them can go no faster than CPU ÷ cores. */
async function bareRun(work: string, n: number, mib: number, mbit: number): Promise<{ cpu: number; receiveCpu: number; lost: number; loaded: number; ms: number }> {
  const module = writeModule(work, `bare_${n}.mjs`, mib * 1024 * 1024);
  const chunks = Math.ceil((mib * 1024 * 1024) / GROUP_CHUNK);
  const script = join(import.meta.dirname, 'bare.js');
  const receivers = Array.from({ length: n }, (_, i) => new Proc(`bare${i}`, 'ip',
    ['netns', 'exec', deviceNs(i), process.execPath, script, 'group-receive', GROUP, String(BARE_PORT), deviceAddr(i), join(work, `bare-d${i}.mjs`), String(chunks)]));
  try {
    await Promise.all(receivers.map((r) => r.waitFor('ready', 30_000)));
    const t0 = performance.now();
    const sender = new Proc('bare-sender', 'ip', ['netns', 'exec', SERVER_NS, process.execPath, script, 'group-send', GROUP, String(BARE_PORT), SERVER_ADDR, module, String(mbit)]);
    const results = (await Promise.all(receivers.map((r) => r.waitFor(/\{"got".*\}/, 180_000)))).map((m) => JSON.parse(m[0]) as { got: number; cpu: number; receiveCpu: number; loaded: boolean });
    const ms = performance.now() - t0;
    await sender.exited;
    const got = results.reduce((a, r) => a + r.got, 0);
    const scaled = (f: (r: typeof results[0]) => number): number => results.reduce((a, r) => a + (r.got > 0 ? (f(r) * chunks) / r.got : 0), 0);
    return { cpu: scaled((r) => r.cpu), receiveCpu: scaled((r) => r.receiveCpu), lost: n * chunks - got, loaded: results.filter((r) => r.loaded).length, ms };
  } finally {
    await Promise.all(receivers.map((r) => (r.alive ? r.stop('SIGKILL') : undefined)));
    for (let i = 0; i < n; i++) rmSync(join(work, `bare-d${i}.mjs`), { force: true });
  }
}

/** N parallel TCP downloads of the same file (a Node sender and receivers), to the last byte. */
async function tcpRuns(work: string, n: number, mib: number, runs: number): Promise<number[]> {
  const file = writeModule(work, `tcp_${n}.bin`, mib * 1024 * 1024);
  const sender = await startTcpFileServer(file, TCP_PORT, { ns: SERVER_NS, host: SERVER_ADDR });
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    const ok = await Promise.all(Array.from({ length: n }, (_, i) => new Promise<boolean>((res) => {
      const c = spawn('ip', ['netns', 'exec', deviceNs(i), 'node', '-e', `
        let n = 0; const s = require('node:net').connect(${TCP_PORT}, '${SERVER_ADDR}');
        s.on('data', (d) => { n += d.length; }); s.on('end', () => process.exit(n === ${mib * 1024 * 1024} ? 0 : 1));`], { stdio: 'ignore' });
      c.on('exit', (code) => res(code === 0));
    })));
    out.push(ok.every(Boolean) ? performance.now() - t0 : NaN);
  }
  await sender.stop();
  return out;
}

export async function runFanout(o: { mib: number; devices: number[]; runs: number; explain?: boolean; bareMbit?: number }): Promise<void> {
  const bareMbit = o.bareMbit ?? BARE_MBIT;
  console.log(`\n## Fan-out: ${o.mib} MiB to a LAN of devices (each in its own network namespace, one bridge, MTU 1500)\n`);
  if (process.getuid?.() !== 0 || !have('ip')) { console.log('(skipped: needs root and ip, to make the namespaces)'); return; }
  const peers = ensureCommands(['uftp', 'uftpd', 'nft'], ['uftp', 'nftables'], 'the fan-out benchmark');
  const most = Math.max(...o.devices);
  const work = tempDir('nxt-fanout-');
  try {
    createNet(most);
    const rows: string[] = [
      '| devices | nxt multicast | nxt multicast, `--multicast-datagram 1472` (unfragmented) | nxt unicast | UFTP multicast, 500 Mbit/s (transfer phase) | N parallel TCP | nxt multicast ÷ UFTP (1472) | nxt unicast ÷ TCP | server CPU s (m / m 1472 / u) | server peak RSS MB (m / u) | all devices\' CPU s (m / u; UFTP\'s receivers) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
    const tenMulticast: number[] = [];
    for (const n of [1, ...o.devices]) {
      const m = n === 1 ? [] : await nxtRuns(work, n, o.mib, o.runs, { explain: o.explain, multicast: true });
      const big = n === 1 ? [] : await nxtRuns(work, n, o.mib, o.runs, { explain: o.explain, multicast: true, groupDatagram: 1472 });
      const u = await nxtRuns(work, n, o.mib, o.runs, { explain: o.explain, multicast: false });
      const uftp = n === 1 || !peers ? [] : await uftpRuns(work, n, o.mib, o.runs, 500_000);
      const tcp = await tcpRuns(work, n, o.mib, o.runs);
      const mm = median(m.map((x) => x.ms));
      if (n === 10) tenMulticast.push(mm);
      const um = median(u.map((x) => x.ms));
      const uw = median(uftp.map((x) => x.wall));
      const ut = median(uftp.map((x) => x.transfer));
      const tm = median(tcp);
      const bm = median(big.map((x) => x.ms));
      rows.push(`| ${n} | ${n === 1 ? '—' : fmt(mm)} | ${n === 1 ? '—' : fmt(bm)} | ${fmt(um)} | ${uftp.length ? `${fmt(uw)} (${fmt(ut)})` : '—'} | ${fmt(tm)} | `
        + `${uftp.length ? `${(mm / uw).toFixed(2)} (${(bm / uw).toFixed(2)})` : '—'} | ${(um / tm).toFixed(2)} | `
        + `${m.length ? `${median(m.map((x) => x.cpu)).toFixed(2)} / ${median(big.map((x) => x.cpu)).toFixed(2)}` : '— / —'} / ${median(u.map((x) => x.cpu)).toFixed(2)} | `
        + `${m.length ? median(m.map((x) => x.rssMb)) : '—'} / ${median(u.map((x) => x.rssMb))} | `
        + `${m.length ? median(m.map((x) => x.devicesCpu)).toFixed(1) : '—'} / ${median(u.map((x) => x.devicesCpu)).toFixed(1)}${uftp.length ? `; ${median(uftp.map((x) => x.receiversCpu)).toFixed(1)}` : ''} |`);
      console.error(rows.at(-1));
    }
    console.log(rows.join('\n'));
    if (o.devices.includes(10)) {
      // Pushes with and without the lossy device alternate in one fleet: on this machine every
      // push late in the section is slower than early on (a clean push measured after the rest
      // took 1.98 s, 1.29 s at the start of the same section), so a clean time from minutes
      // before says little. The same nine devices are timed either way (their own "in N ms").
      const runs = (await nxtRuns(work, 10, o.mib, o.runs, { explain: o.explain, multicast: true, lossyDevice: 0, alternate: true })).filter((x) => !x.warmUp);
      const lossy = runs.filter((x) => x.lossy);
      const clean = runs.filter((x) => !x.lossy);
      const others = median(lossy.map((x) => x.straggler ?? NaN));
      const cleanOthers = median(clean.map((x) => x.straggler ?? NaN));
      const first = tenMulticast[0] ?? NaN;
      console.log(`\nOne of 10 devices behind 5% loss (multicast), alternated with clean pushes to the same fleet (${lossy.length} each): the other 9 done in ${fmt(others)} `
        + `(all 10 in ${fmt(median(lossy.map((x) => x.ms)))}), against ${fmt(cleanOthers)} in the clean pushes (all 10 in ${fmt(median(clean.map((x) => x.ms)))}): `
        + `${(others / cleanOthers).toFixed(2)}× (target ≤ 1.2×); against the section's first clean 10-device time (${fmt(first)}): ${(others / first).toFixed(2)}×`);
    }
    if (o.devices.includes(50) && o.devices.includes(10)) console.log('(50 devices target: ≤ 2 × the 10-device multicast time)');
    // The floor under those rows: devices with nothing of nxt in them, on the same cores.
    const cores = availableParallelism();
    const floor = ['', `Bare receivers (bench/bare.ts: node:dgram, ChaCha20-Poly1305, SHA-256, 512 KiB writes, then \`import()\`; nothing of nxt: no session, ACK or repair), the group paced at ${bareMbit} Mbit/s, on the same ${cores} cores:`, '',
      '| receivers | CPU s to receive (each) | the least time for that on these cores (CPU ÷ cores) | CPU s with the load (each) | chunks lost | loaded | wall |', '|---|---:|---:|---:|---:|---:|---:|'];
    for (const n of o.devices) {
      const b = await bareRun(work, n, o.mib, bareMbit);
      floor.push(`| ${n} | ${b.receiveCpu.toFixed(1)} (${(b.receiveCpu / n).toFixed(2)}) | ${fmt((b.receiveCpu / cores) * 1000)} | ${b.cpu.toFixed(1)} (${(b.cpu / n).toFixed(2)}) | ${b.lost} | ${b.loaded} of ${n} | ${fmt(b.ms)} |`);
      console.error(floor.at(-1));
      if (n === 50 && tenMulticast[0] !== undefined) {
        floor.push('', `(Fifty receivers that do no more than receive need ${fmt((b.receiveCpu / cores) * 1000)} of these cores at the least; the target allows 2 × nxt's ten-device time: ${fmt(2 * tenMulticast[0])}.)`);
      }
    }
    console.log(floor.join('\n'));
  } finally {
    await stopAll();
    removeNet(most);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = benchArgs('npm run bench:fanout --', 'One release to devices in network namespaces on one bridge, beside UFTP multicast and N parallel TCP; needs root and ip (it says so and skips otherwise).', {
    mib: { number: 16, help: 'the module\'s size in MiB' },
    devices: { numbers: [10, 50], help: 'how many devices (each count a row; with --lossy-only the first)' },
    runs: { number: undefined, help: 'pushes per figure (3; with --lossy-only 1)' },
    'lossy-only': { flag: true, help: 'development: only nxt\'s pushes, the first device behind 5% loss unless --clean' },
    clean: { flag: true, help: 'with --lossy-only: no device behind loss' },
    unicast: { flag: true, help: 'with --lossy-only: by unicast, not multicast' },
    'multicast-datagram': { number: undefined, help: 'with --lossy-only: the server\'s --multicast-datagram' },
    'after-peers': { flag: true, help: 'with --lossy-only: UFTP\'s and TCP\'s rounds first, as the whole section runs them' },
    explain: { flag: true, help: 'print the server\'s lines, the devices\' CPU and each push\'s window in --cpu-prof\'s clock' },
    'bare-mbit': { number: BARE_MBIT, help: 'the pace of the bare receivers\' group (the floor: devices with nothing of nxt)' },
    'bare-only': { flag: true, help: 'development: only the bare receivers, for each --devices count' },
  });
  if (args['bare-only']) {
    const most = Math.max(...args.devices);
    const work = tempDir('nxt-fanout-');
    createNet(most);
    try {
      for (const n of args.devices) console.log(n, await bareRun(work, n, args.mib, args['bare-mbit']), `cores ${availableParallelism()}`);
    } finally { await stopAll(); removeNet(most); }
  } else if (args['lossy-only']) {
    const n = args.devices[0] ?? 10;
    const work = tempDir('nxt-fanout-');
    createNet(n);
    try {
      if (args['after-peers']) {
        await uftpRuns(work, n, args.mib, 3, 500_000);
        await tcpRuns(work, n, args.mib, 3);
      }
      const r = await nxtRuns(work, n, args.mib, args.runs ?? 1, {
        multicast: !args.unicast, lossyDevice: args.clean ? undefined : 0, groupDatagram: args['multicast-datagram'], explain: args.explain,
      });
      console.log(r);
    } finally { await stopAll(); removeNet(n); }
  } else {
    await runFanout({ mib: args.mib, devices: args.devices, runs: Math.max(1, args.runs ?? 3), explain: args.explain, bareMbit: args['bare-mbit'] });
  }
}
