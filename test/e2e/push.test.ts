/**
 * The core promise, end to end: real server and client processes started by the shipped
 * scripts, talking real UDP on 127.0.0.1.
 */
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Proc, ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { UdpProxy, passThrough, type ProxyRule } from '../support/udp-proxy.js';
import { writeModule } from '../support/modules.js';
import { minorFaults } from '../../bench/proc-stats.js';

const V2 = join(ROOT, 'plugins/libfunctional_2_0.mjs');
const V1 = join(ROOT, 'plugins/libfunctional_1_0.mjs');

let dir: string;
let server: Proc;
let port: number;
let trust: string;

beforeEach(async () => {
  dir = tempDir();
  ({ proc: server, port } = await startServer(join(dir, 'server')));
  trust = join(dir, 'server/release.pub');
});

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** Type a push and wait for its summary line; returns everything it printed. */
async function push(args: string): Promise<string> {
  const at = server.type(`push ${args}`);
  await server.waitFor(/push finished: .*\n|error.*\n|no clients.*\n/, 20_000, at);
  return server.output.slice(at);
}

describe('push to registered clients', () => {
  it('switches two clients from 5.6 to 8.6 without restarting them', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const b = await startClient('b', port, join(dir, 'b'), trust);
    const pids = [a.pid, b.pid];
    for (const c of [a, b]) await c.waitFor(/Major = 5\nMinor = 6\nproductName = nxtgen/);
    const out = await push(V2);
    expect(out).toMatch(/push finished: 2 done, 0 failed/);
    for (const c of [a, b]) {
      await c.waitFor(/Major = 8\nMinor = 6\nproductName = nxtgen/);
      expect(c.alive).toBe(true);
    }
    expect([a.pid, b.pid]).toEqual(pids);
    const at = a.type('show version');
    await a.waitFor(/Major = 8[\s\S]*release = 2\.0\.0/, 5000, at);
  });

  it('reaches a client that registered over IPv6', async () => {
    const a = await startClient('a6', port, join(dir, 'a6'), trust, '::1');
    expect(await push(V2)).toMatch(/\[::1\]:\d+ +done: 8\.6 nxtgen active/);
    await a.waitFor('Major = 8');
  });

  // Sealing only has to stay ahead of the sending (server/seal-thread-worker.ts): on Linux its
  // thread runs 10 nice steps below the server's others, which win the CPU where they want it.
  it.runIf(process.platform === 'linux' && getPriority() < 19)('seals in a thread below the one that sends (10 nice steps), and only that one', async () => {
    await startClient('a', port, join(dir, 'a'), trust);
    expect(await push(writeModule(dir, 'bulk_9_1.mjs', 8 * 1024 * 1024, 9, 1))).toMatch(/push finished: 1 done, 0 failed/);
    const nice = (tid: string): number => {
      const stat = readFileSync(`/proc/${server.pid}/task/${tid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    };
    const main = nice(String(server.pid));
    const others = readdirSync(`/proc/${server.pid}/task`).filter((tid) => tid !== String(server.pid)).map(nice);
    expect(others.filter((n) => n !== main)).toEqual([Math.min(19, main + 10)]);
  });

  // Where the kernel grants transparent huge pages only to memory that asks for them (THP
  // "madvise", as on this machine kind), a client started by the script has none, unless the
  // caller's GLIBC_TUNABLES asks glibc for them: the script passes it on as given.
  const thpOnRequest = ((): boolean => {
    try { return /\[madvise\]/.test(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8')); } catch { return false; }
  })();
  it.runIf(thpOnRequest)('is started with glibc as the caller left it: huge pages only when the caller\'s GLIBC_TUNABLES asks for them', async () => {
    const hugeKb = (pid: number): number => Number(/AnonHugePages:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1]);
    const plain = await startClient('a', port, join(dir, 'a'), trust);
    const asked = await startClient('b', port, join(dir, 'b'), trust, '127.0.0.1', [], { env: { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=2097152' } });
    expect(await push(writeModule(dir, 'bulk_9_1.mjs', 16 * 1024 * 1024, 9, 1))).toMatch(/push finished: 2 done, 0 failed/);
    expect(hugeKb(plain.pid)).toBe(0);
    expect(hugeKb(asked.pid)).toBeGreaterThan(0);
  });

  // A large module's reserve (the memory the module is read into, mapped while it arrives) is
  // kept after its load for the next module, whose load then maps only its text: on a VM that
  // hands freed memory back to its host, memory taken again costs as much as fresh.
  it('reads the next large module into the memory the last one was read into', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const size = 64 * 1024 * 1024;
    const faults: number[] = [];
    for (const minor of [1, 2, 3]) {
      const before = minorFaults(a.pid);
      const from = a.output.length;
      expect(await push(writeModule(dir, `bulk_9_${minor}.mjs`, size, 9, minor))).toMatch(/push finished: 1 done, 0 failed/);
      await a.waitFor(`Major = 9\nMinor = ${minor}`, 5000, from);
      faults.push(minorFaults(a.pid) - before);
    }
    // A fault a 4 KiB page. The first push maps its reserve and its text (44,000–47,000 faults
    // here); each later one its text, the next plugin thread and what else a push touches
    // (21,000–26,000 here, 37,000–37,500 when every reserve was fresh memory).
    expect((faults[1]! + faults[2]!) / 2, `page faults per push: ${faults.join(', ')}`).toBeLessThan(0.68 * faults[0]!);
  });

  it('refuses a second client on the same data dir (it would share the first one\'s identity)', async () => {
    await startClient('a', port, join(dir, 'a'), trust);
    const twin = new Proc('twin', join(ROOT, 'scripts/UpdateClient.sh'), ['127.0.0.1', String(port)], { NXT_DATA_DIR: join(dir, 'a'), NXT_TRUST: trust });
    expect(await twin.exited).toBe(1);
    expect(twin.output).toMatch(/is in use by another client \(pid \d+\): give each client its own directory/);
  });

  it('pushes only to the clients named with --to, and keeps every result in a history that survives a kill', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const b = await startClient('b', port, join(dir, 'b'), trust);
    const idA = (await server.waitFor(/client (\w{12}) registered/))[1]!;
    expect(await push(`${V2} --to ${idA.slice(0, 8)}`)).toMatch(/push .* to 1 client\(s\)[\s\S]*1 done, 0 failed/);
    await a.waitFor('Major = 8');
    let at = b.type('show version');
    await b.waitFor(/Major = 5\nMinor = 6/, 5000, at);
    expect(await push(`${V2} --to ffffffff`)).toMatch(/error \[no-such-client\]: "ffffffff" is neither a group with online clients nor the start of an online client.s id/);
    // Older than A's 2.0.0: refused (rollback); B runs the built-in 1.0.0: already installed.
    expect(await push(V1)).toMatch(/0 done, 1 failed, 1 already installed/);

    await server.stop('SIGKILL');
    ({ proc: server, port } = await startServer(join(dir, 'server'), ['--port', String(port)]));
    at = server.type('history');
    await server.waitFor(/NxtServer# $/, 5000, at + 1);
    const lines = server.output.slice(at).split('\n').filter((l) => /libfunctional/.test(l));
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(new RegExp(`${idA}  libfunctional_2_0\\.mjs 2\\.0\\.0  ok`));
    expect(lines.slice(1).map((l) => /libfunctional_1_0\.mjs 1\.0\.0  (rollback|already installed): /.exec(l)?.[1]).sort()).toEqual(['already installed', 'rollback']);
    at = server.type(`history ${idA.slice(0, 6)}`);
    await server.waitFor(/NxtServer# $/, 5000, at + 1);
    expect(server.output.slice(at).split('\n').filter((l) => /libfunctional/.test(l))).toHaveLength(2);
  });

  it('says so when no client is registered', async () => {
    expect(await push(V2)).toMatch(/no clients are registered; nothing sent/);
  });

  it('refuses an older or equal version, and the client keeps what it runs', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    expect(await push(V2)).toMatch(/1 done/);
    const equal = await push(V2);
    expect(equal).toMatch(/already installed: it runs release 2\.0\.0[\s\S]*push finished: 0 done, 0 failed, 1 already installed/);
    const older = await push(V1);
    expect(older).toMatch(/failed \(rollback\)/);
    const at = a.type('show version');
    await a.waitFor(/Major = 8/, 5000, at);
  });

  it('prints a clear error for a missing file or a file without a version, and keeps serving', async () => {
    await startClient('a', port, join(dir, 'a'), trust);
    expect(await push(join(dir, 'nope_3_0.mjs'))).toMatch(/error \[no-such-file\]: cannot read/);
    const unversioned = join(dir, 'plugin.mjs');
    copyFileSync(V2, unversioned);
    expect(await push(unversioned)).toMatch(/error \[no-version\].*--version X\.Y\.Z/);
    expect(await push(`${unversioned} --version 7.1`)).toMatch(/1 done/);
  });

  it('brings a restarted client back on the version it last committed', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust, '127.0.0.1', ['--probation', '0.5']);
    await push(V2);
    await a.waitFor('Major = 8');
    await a.waitFor(/libfunctional_2_0\.mjs 2\.0\.0 committed/);
    await a.stop();
    const again = await startClient('a2', port, join(dir, 'a'), trust);
    expect(again.output).toMatch(/Major = 8\nMinor = 6/);
    expect(again.output).not.toMatch(/Major = 5/);
  });
});

describe('the console during a push', () => {
  it('answers other commands while a push runs, and cancel stops it on both sides; the next push resumes', async () => {
    // Through a proxy that passes 8 MB/s to the client (a queue, as a slow link has): the push
    // lasts seconds.
    const proxy = await UdpProxy.start(port, passThrough);
    try {
      const a = await startClient('a', proxy.port, join(dir, 'a'), trust);
      let free = 0;
      proxy.rule = (data, direction) => {
        if (direction !== 'to-client') return [{ data }];
        const now = performance.now();
        free = Math.max(free, now) + data.length / 8_000;
        return free - now > 500 ? [] : [{ data, delayMs: free - now }];
      };
      const file = writeModule(dir, 'big_3_0.mjs', 32 * 1024 * 1024);
      const at = server.type(`push ${file}`);
      await server.waitFor(/push big_3_0\.mjs .* to 1 client\(s\)/, 20_000, at);
      await a.waitFor(/receiving big_3_0\.mjs/);
      const status = await server.run('clients', / online .*\n/);
      expect(status).not.toMatch(/push finished/);
      expect(await server.run('cancel', /cancelled 1 push in progress.*\n/)).toMatch(/cancelled 1 push/);
      await server.waitFor(/failed \(cancelled\)[\s\S]*push finished: 0 done, 1 failed/, 20_000, at);
      await a.waitFor(/server stopped the transfer of big_3_0\.mjs: cancelled by the operator/);
      expect(await server.run('cancel', /no push in progress\n/)).toMatch(/no push in progress/);
      // Again, unhindered: it resumes from what arrived.
      proxy.rule = passThrough;
      const again = await push(file);
      expect(again).toMatch(/1 done, 0 failed/);
      await a.waitFor('Major = 9');
    } finally {
      await proxy.close();
    }
  });
});

describe('a module that must not be activated', () => {
  it('arrives as signed even when the file changes on disk during the push (the server sends the bytes it sealed)', async () => {
    const file = join(dir, 'mod_3_0.mjs');
    copyFileSync(V2, file);
    let offersSeen = 0;
    let release: () => void = () => undefined;
    const firstOffer = new Promise<void>((res) => { release = res; });
    let tampered = false;
    // Hold back the OFFER (the only server → client message over 100 bytes before any chunk) until
    // the file has been altered; the server's retransmission carries on.
    const rule: ProxyRule = (data, direction) => {
      if (direction === 'to-client' && data.length > 100 && !tampered) {
        offersSeen++;
        release();
        return [];
      }
      return [{ data }];
    };
    const proxy = await UdpProxy.start(port, rule);
    try {
      const a = await startClient('a', proxy.port, join(dir, 'a'), trust);
      const pushed = push(file);
      await firstOffer;
      writeFileSync(file, readFileSync(file, 'utf8').replace('major: 8', 'major: 9'));
      tampered = true;
      // Sealed (and re-hashed against the manifest) before the first offer: the altered file
      // is never read again, and the device runs exactly what was signed.
      expect(await pushed).toMatch(/done: 8\.6/);
      expect(offersSeen).toBeGreaterThan(0);
      await a.waitFor('Major = 8');
      expect(a.output).not.toMatch(/Major = 9/);
    } finally {
      await proxy.close();
    }
  });

  it('is refused when its signed manifest has expired (freeze attack)', async () => {
    // A server whose manifests expire the moment they are signed.
    const { proc: stale, port: stalePort } = await startServer(join(dir, 'stale'), ['--manifest-ttl', '0']);
    const a = await startClient('a', stalePort, join(dir, 'a'), join(dir, 'stale/release.pub'));
    const at = stale.type(`push ${V2}`);
    await stale.waitFor(/push finished: 0 done, 1 failed/, 20_000, at);
    expect(stale.output.slice(at)).toMatch(/failed \(expired\): manifest expired at \S+: push it again/);
    await a.waitFor(/update refused: manifest expired/);
    expect(a.output).not.toMatch(/Major = 8/);
  });

  it('is refused when it was signed for another device (mix-and-match)', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const b = await startClient('b', port, join(dir, 'b'), trust);
    const idOf = (c: Proc): string => c.output.match(/nxt client ([0-9a-f]{32})/)![1]!;
    // Signed (validly, fresh, newer) for A alone, then offered to B too.
    const file = join(dir, 'only_for_a_3_0.mjs');
    copyFileSync(V2, file);
    const signed = spawnSync('node', [join(ROOT, 'dist/cli/server.js'), 'sign', file, '--state-dir', join(dir, 'server'), '--to', idOf(a)], { encoding: 'utf8' });
    expect(signed.stdout).toMatch(/for 1 device\(s\)/);
    const out = await push(file);
    expect(out).toMatch(new RegExp(`${idOf(b).slice(0, 12)} .*failed \\(wrongTarget\\): manifest is signed for other devices`));
    expect(out).toMatch(/push finished: 1 done, 1 failed/);
    await b.waitFor(/update refused: manifest is signed for other devices/);
    await a.waitFor('Major = 8');
    expect(b.output).not.toMatch(/receiving|Major = 8/);
  });

  it('is refused when signed by another key', async () => {
    const other = join(dir, 'other');
    const { proc: otherServer } = await startServer(other);
    await otherServer.stop();
    // It talks to the real server (whose identity it trusts) but trusts another release key.
    const a = await startClient('a', port, join(dir, 'a'), join(other, 'release.pub'), '127.0.0.1', [], {
      env: { NXT_SERVER_KEY: join(dir, 'server/identity.pub') },
    });
    expect(await push(V2)).toMatch(/failed \(badSignature\)/);
    await a.waitFor(/update refused: manifest signature does not verify/);
    expect(a.output).not.toMatch(/Major = 8/);
  });

  it('is refused at its offer (only the first flight crosses the network) when it exceeds the client\'s size limit', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust, '127.0.0.1', ['--max-module-bytes', '100']);
    expect(await push(V2)).toMatch(/failed \(tooLarge\): module of \d+ bytes exceeds this client's limit of 100/);
    await a.waitFor(/update refused: module of \d+ bytes exceeds/);
    expect(a.output).not.toMatch(/receiving/);
  });

  it('is refused when it fails to load or has the wrong shape, and the old one keeps running', async () => {
    const a = await startClient('a', port, join(dir, 'a'), trust);
    const broken = join(dir, 'broken_3_0.mjs');
    writeFileSync(broken, 'export default function ( {{ not javascript');
    expect(await push(broken)).toMatch(/failed \(loadFailed\)/);
    const shapeless = join(dir, 'shapeless_4_0.mjs');
    writeFileSync(shapeless, 'export default () => ({ major: "eight" });');
    expect(await push(shapeless)).toMatch(/failed \(badShape\)/);
    const at = a.type('show version');
    await a.waitFor(/Major = 5\nMinor = 6/, 5000, at);
    // The failed versions were never activated, so a real update still goes through.
    expect(await push(V2)).toMatch(/1 done/);
  });
});

describe('malformed datagrams', () => {
  const garbage = [
    Buffer.alloc(0),
    Buffer.from([0x4e]),
    Buffer.from([0x4e, 0x58, 1]), // truncated header
    Buffer.from([0x00, 0x00, 1, 1, 0, 0]), // wrong magic
    Buffer.from([0x4e, 0x58, 9, 1]), // unknown protocol version
    Buffer.from([0x4e, 0x58, 1, 200]), // unknown type
    Buffer.concat([Buffer.from([0x4e, 0x58, 1, 3, 0, 0, 0, 1, 0xff, 0xff]), Buffer.alloc(100)]), // huge manifest length
    Buffer.from([0x4e, 0x58, 1, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff]), // huge SACK length
    Buffer.concat([Buffer.from([0x4e, 0x58, 1, 2]), Buffer.alloc(10)]), // truncated REGISTERED
    ...Array.from({ length: 200 }, (_, i) => Buffer.from(Array.from({ length: 1 + ((i * 7) % 1400) }, (_, j) => (i * 31 + j * 17) & 0xff))),
  ];

  it('are dropped and counted by the server, which keeps serving', async () => {
    await startClient('a', port, join(dir, 'a'), trust);
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
    await Promise.all(garbage.map((g) => new Promise<void>((res) => sock.send(g, port, '127.0.0.1', () => res()))));
    sock.close();
    // Counters are read after the datagrams are in: wait until all of them were counted.
    // Counted by the secure channel: as not an nxt datagram at all, or as a message outside a session.
    for (let at = server.type('stats'); ; at = server.type('stats')) {
      const m = await server.waitFor(/dropped: unauthenticated (\d+), malformed (\d+)/, 5000, at);
      if (Number(m[1]) + Number(m[2]) >= garbage.length) break;
      await server.waitFor('NxtServer# ', 5000, at);
    }
    expect(await push(V2)).toMatch(/1 done/);
  });

  it('are dropped and counted by the client, even when they come from the server\'s address', async () => {
    const proxy = await UdpProxy.start(port, passThrough);
    try {
      const a = await startClient('a', proxy.port, join(dir, 'a'), trust);
      for (const g of garbage) await proxy.injectToClient(g);
      for (let at = a.type('stats'); ; at = a.type('stats')) {
        const m = await a.waitFor(/malformed (\d+)/, 5000, at);
        if (Number(m[1]) >= garbage.length) break;
        await a.waitFor('NxtClient# ', 5000, at);
      }
      expect(await push(V2)).toMatch(/1 done/);
      await a.waitFor('Major = 8');
    } finally {
      await proxy.close();
    }
  });
});
