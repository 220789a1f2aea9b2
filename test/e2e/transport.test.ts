/**
 * The transfer under a bad network, end to end: real processes, real UDP through a proxy that
 * loses, duplicates, reorders and delays datagrams with a seeded random source.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeModule } from '../support/modules.js';
import { CHUNKS_HEADER_BYTES, EnvelopeType, forEachChunk, TAG_BYTES, WIDE_CHUNK_BYTES, WIDE_DATAGRAM_BYTES } from '../../src/protocol/envelope.js';
import { LARGE_CHUNK_BYTES } from '../../src/net/fragments.js';
import { Proc, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { UdpProxy, bulkChunks, dropAll, isBulkData, lossyLink, passThrough, rateCapped, stallsOnce } from '../support/udp-proxy.js';

let dir: string;
let server: Proc;
let port: number;
let trust: string;
let proxy: UdpProxy | undefined;

beforeEach(async () => {
  dir = tempDir();
  ({ proc: server, port } = await startServer(join(dir, 'server'), ['--peer-timeout', '3000']));
  trust = join(dir, 'server/release.pub');
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  await stopAll();
  expect(runningCount()).toBe(0);
});

function pushLine(file: string): { at: number; done: Promise<string> } {
  const at = server.type(`push ${file}`);
  return { at, done: server.waitFor(/push finished: .*\n/, 60_000, at).then(() => server.output.slice(at)) };
}

describe('through a lossy link', () => {
  it('completes and verifies at 20% loss with duplication, reordering and 5 ms delay', async () => {
    proxy = await UdpProxy.start(port, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    proxy.rule = lossyLink(20, { loss: 0.2, duplicate: 0.02, reorder: 0.1, delayMs: 5 });
    const file = writeModule(dir, 'bulk_3_0.mjs', 2 * 1024 * 1024);
    const out = await pushLine(file).done;
    expect(out).toMatch(/done: 9\.1 bulk active.*chunks resent/);
    await client.waitFor(/Major = 9\nMinor = 1/);
  });
});

describe('when an offer is lost', () => {
  /** Push `file` with the next datagram to the device dropped (its OFFER: nothing else is due,
   *  the device's lease is renewed every few seconds, by the device); it must not cost the
   *  half second it did. */
  async function pushDroppingOffer(file: string): Promise<void> {
    let drop = true;
    proxy!.rule = (data, direction) => {
      if (drop && direction === 'to-client') { drop = false; return []; }
      return [{ data }];
    };
    const out = await pushLine(file).done;
    expect(drop).toBe(false);
    const took = Number(/done: .* in (\d+) ms/.exec(out)![1]);
    // Before the server knew better, the OFFER went again after the RTO before any sample,
    // 500 ms.
    expect(took, out).toBeLessThan(400);
  }

  // Retried: the time it checks is a few hundred ms, which a machine busy with the other test
  // file's processes can take from a push on its own.
  it('goes again within ~60 ms to a device the server has pushed to before, not after half a second', { retry: 2 }, async () => {
    proxy = await UdpProxy.start(port, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    expect(await pushLine(writeModule(dir, 'first_3_0.mjs', 10 * 1024, 9, 1)).done).toMatch(/done: 9\.1 bulk active/);
    // The OFFER goes again once the device has not answered for twice what its last answer
    // took (at least 60 ms).
    await pushDroppingOffer(writeModule(dir, 'second_4_0.mjs', 10 * 1024, 9, 2));
    await client.waitFor(/Major = 9\nMinor = 2/);
  });

  it('the first to a device goes again after about twice its handshake\'s round trip, not after half a second', { retry: 2 }, async () => {
    proxy = await UdpProxy.start(port, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    // Nothing known of the device but its session: the OFFER goes again after ~64 ms on
    // loopback (twice the handshake's round trip and 30 ms for its check of the signature).
    await pushDroppingOffer(writeModule(dir, 'first_3_0.mjs', 10 * 1024, 9, 1));
    await client.waitFor(/Major = 9\nMinor = 1/);
  });
});

describe('through a link that reorders', () => {
  // Retried: the proxy runs in this test's process, and on a machine busy with the other test
  // file's processes it can stall, and what its stall leaves in its sockets' queues may overflow
  // them (a real loss, resent). Alone, or beside two CPU burners, it resends 0.2–0.9%.
  it('resends fewer than 10% of the chunks when a quarter of the datagrams arrive up to 5 ms late', { retry: 2 }, async () => {
    // An Ethernet path, one 1400-byte chunk per datagram (on loopback seven 8 KiB chunks share
    // one datagram, and each late datagram counts seven times; in pieces, a chunk is late when
    // any of its six is: 82% of them here, 5 ms late on a path whose round trip is a tenth of a
    // millisecond, which no reordering window bounded by the round trip covers: see below).
    const { proc: ethernet, port: ethernetPort } = await startServer(join(dir, 'ethernet'), ['--peer-timeout', '3000', '--max-datagram', '1452', '--no-pieces']);
    server = ethernet;
    proxy = await UdpProxy.start(ethernetPort, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), join(dir, 'ethernet/release.pub'));
    proxy.rule = lossyLink(25, { loss: 0, reorder: 0.25, delayMs: 5 });
    const file = writeModule(dir, 'shuffled_3_0.mjs', 4 * 1024 * 1024);
    const out = await pushLine(file).done;
    expect(out).toMatch(/done: 9\.1 bulk active/);
    const m = /(\d+) of (\d+) chunks resent/.exec(out);
    const resent = m ? Number(m[1]) : 0;
    const total = m ? Number(m[2]) : 1;
    expect(resent / total, out).toBeLessThan(0.1);
    await client.waitFor(/Major = 9\nMinor = 1/);
  });

  it('resends under a tenth of the chunks when the relay also stalls a quarter of a second mid-push: the timeouts are found spurious', { retry: 2 }, async () => {
    const { proc: ethernet, port: ethernetPort } = await startServer(join(dir, 'ethernet'), ['--peer-timeout', '3000', '--max-datagram', '1452', '--no-pieces']);
    server = ethernet;
    proxy = await UdpProxy.start(ethernetPort, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), join(dir, 'ethernet/release.pub'));
    proxy.rule = stallsOnce(lossyLink(25, { loss: 0, reorder: 0.25, delayMs: 5 }), 100, 250);
    const out = await pushLine(writeModule(dir, 'stalled_3_0.mjs', 4 * 1024 * 1024)).done;
    expect(out).toMatch(/done: 9\.1 bulk active/);
    // The stall outlasts two timeouts (40 and 80 ms): both are judged spurious when the late
    // chunks' ACKs come, and what the second took for lost goes back in flight. Six such pushes
    // before the verdict existed resent 159–2,681 of 2,996 chunks (median ~300); with it, 18–228
    // (median ~45): under the 10% for reordering, which the code before often was not.
    // Since RACK waits a round trip after a stall for the ACKs of what it held on the way out,
    // 15–84 (median 24, four runs; a 100 ms hold: median 21 of ten against 119 of four before).
    expect(out).toMatch(/× no answer within the retransmission timeout \(a stall, not loss/);
    const [, resent, total] = /(\d+) of (\d+) chunks resent/.exec(out)!;
    expect(Number(resent) / Number(total), out).toBeLessThan(0.1);
    await client.waitFor(/Major = 9\nMinor = 1/);
  });

  it('in pieces through the same link, the push completes with the right bytes', async () => {
    const { proc: ethernet, port: ethernetPort } = await startServer(join(dir, 'ethernet'), ['--peer-timeout', '3000', '--max-datagram', '1452']);
    server = ethernet;
    proxy = await UdpProxy.start(ethernetPort, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), join(dir, 'ethernet/release.pub'));
    proxy.rule = lossyLink(25, { loss: 0, reorder: 0.25, delayMs: 5 });
    const out = await pushLine(writeModule(dir, 'pieces_3_0.mjs', 2 * 1024 * 1024)).done;
    expect(out).toMatch(/done: 9\.1 bulk active/);
    await client.waitFor(/Major = 9\nMinor = 1/);
    expect((await client.run('stats', /bad chunks \d+/)).match(/pieces (\d+)/)![1]).not.toBe('0');
  });
});

describe('chunk size', () => {
  /** The sizes of the CHUNKS entries and datagrams the server sends through `proxy`. */
  function watchChunks(p: UdpProxy): { entries: Set<number>; indices: Set<number>; largest: number } {
    const seen = { entries: new Set<number>(), indices: new Set<number>(), largest: 0 };
    p.rule = (data, direction) => {
      if (isBulkData(data, direction) && data[3] === EnvelopeType.chunks) {
        seen.largest = Math.max(seen.largest, data.length);
        forEachChunk(data.subarray(CHUNKS_HEADER_BYTES), (index, sealed) => { seen.indices.add(index); seen.entries.add(sealed.length - TAG_BYTES); });
      }
      return [{ data }];
    };
    return seen;
  }

  it('on loopback, one wide chunk a 64 KiB datagram; under --max-datagram below that, 8650-byte chunks', async () => {
    proxy = await UdpProxy.start(port, passThrough);
    const seen = watchChunks(proxy);
    let client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    const file = writeModule(dir, 'wide_3_0.mjs', 2 * 1024 * 1024 + 5);
    expect(await pushLine(file).done).toMatch(/done: 9\.1 bulk active/);
    await client.waitFor(/Major = 9\nMinor = 1/);
    const size = statSync(file).size;
    expect([...seen.entries].sort((a, b) => b - a)).toEqual([WIDE_CHUNK_BYTES, size % WIDE_CHUNK_BYTES]);
    expect(seen.indices.size).toBe(Math.ceil(size / WIDE_CHUNK_BYTES));
    expect(seen.largest).toBe(WIDE_DATAGRAM_BYTES);
    await client.stop();
    await proxy.close();

    const { proc: capped, port: cappedPort } = await startServer(join(dir, 'capped'), ['--peer-timeout', '3000', '--max-datagram', String(WIDE_DATAGRAM_BYTES - 1)]);
    server = capped;
    proxy = await UdpProxy.start(cappedPort, passThrough);
    const narrow = watchChunks(proxy);
    client = await startClient('d', proxy.port, join(dir, 'd'), join(dir, 'capped/release.pub'));
    expect(await pushLine(file).done).toMatch(/done: 9\.1 bulk active/);
    await client.waitFor(/Major = 9\nMinor = 1/);
    expect(Math.max(...narrow.entries)).toBe(LARGE_CHUNK_BYTES);
    expect(narrow.indices.size).toBe(Math.ceil(size / LARGE_CHUNK_BYTES));
    expect(narrow.largest).toBeLessThan(WIDE_DATAGRAM_BYTES);
  });
});

describe('progress', () => {
  it('is shown on both sides while a push is under way', async () => {
    proxy = await UdpProxy.start(port, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    let open = false;
    // Hold back DATA (not the offer) until both sides have reported progress.
    proxy.rule = (data, direction) => (!open && isBulkData(data, direction) ? [] : [{ data }]);
    const push = pushLine(writeModule(dir, 'slow_3_0.mjs', 256 * 1024));
    await server.waitFor(/\n {2}\w{12} 0% of 256\.0 KiB, 0\.0 MiB\/s, \? left(, \d+ resent)?\n/, 5000, push.at);
    await client.waitFor(/downloading slow_3_0\.mjs: 0% \(0\.0 MiB of 0\.3 MiB\), 0\.0 MiB\/s/, 5000);
    open = true;
    expect(await push.done).toMatch(/done: 9\.1 bulk active/);
  });
});

describe('when the link dies', () => {
  it('fails the push with a clear reason within the peer timeout', async () => {
    proxy = await UdpProxy.start(port, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    proxy.rule = dropAll;
    const started = Date.now();
    const out = await pushLine(writeModule(dir, 'never_3_0.mjs', 100_000)).done;
    const took = Date.now() - started;
    expect(out).toMatch(/failed \(timeout\): client never answered the offer \(silent for 3\d{3} ms\)/);
    expect(took).toBeGreaterThanOrEqual(3000);
    expect(took).toBeLessThan(5000);
    expect(client.output).not.toMatch(/Major = 9/);
  });
});

describe('when the server itself does not run or read for a while', () => {
  it('a server stopped mid-push for longer than the peer timeout finishes the push instead of giving up on the device', async () => {
    // 64 MiB at 24 MiB/s: the push is under way when the progress line comes, however fast the
    // machine (on loopback alone it could end within the first second, before any such line).
    proxy = await UdpProxy.start(port, rateCapped(24 * 1024 * 1024));
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    const from = client.output.length;
    const push = pushLine(writeModule(dir, 'paused_9_1.mjs', 64 * 1024 * 1024));
    await client.waitFor(/downloading paused_9_1\.mjs: /, 20_000, from);
    const pause = (ms: number): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, ms));
    // The device first falls quiet (nothing of it waits in the server's socket), then the server
    // does not run for 4.5 s (a paused VM, a process starved of CPU): past the 3 s peer timeout,
    // within the device's own 15 s patience. The device comes back half a second after it.
    process.kill(client.pid, 'SIGSTOP');
    await pause(300);
    process.kill(server.pid, 'SIGSTOP');
    await pause(4_500);
    process.kill(server.pid, 'SIGCONT');
    await pause(500);
    process.kill(client.pid, 'SIGCONT');
    expect(await push.done).toMatch(/push finished: 1 done, 0 failed/);
    await client.waitFor(/Major = 9\nMinor = 1/, 20_000, from);
  });

  it('counts the datagrams its socket dropped unread, says so, and shows them in stats', async () => {
    const dgram = await import('node:dgram');
    process.kill(server.pid, 'SIGSTOP');
    const flood = dgram.createSocket('udp4');
    const junk = Buffer.alloc(1000, 7);
    // 5,000 datagrams (5 MB) into a receive buffer of about a MiB (the server asks 512 KiB; the
    // kernel doubles it) that nobody reads.
    for (let i = 0; i < 5_000; i++) {
      await new Promise<void>((resolve) => flood.send(junk, port, '127.0.0.1', () => resolve()));
    }
    flood.close();
    process.kill(server.pid, 'SIGCONT');
    await server.waitFor(/the server's UDP socket dropped \d+ datagram\(s\) unread: its receive buffer was full/, 10_000);
    const stats = await server.run('stats', /channel: .*\n/);
    expect(Number(stats.match(/unread, its socket's buffer full (\d+)/)![1])).toBeGreaterThan(0);
  });
});

describe('resume', () => {
  it('a client killed halfway through a 16 MiB push and restarted receives only the missing chunks', async () => {
    const file = writeModule(dir, 'big_4_0.mjs', 16 * 1024 * 1024);
    const totalChunks = Math.ceil(statSync(file).size / WIDE_CHUNK_BYTES); // loopback: wide chunks
    let client = await startClient('first', port, join(dir, 'c'), trust); // learn nothing yet: registered directly
    await client.stop();
    // From now on the client talks through the proxy, which counts DATA and kills the client
    // once half of the chunks have passed (the sender may have a window more in flight).
    proxy = await UdpProxy.start(port, passThrough);
    let dataBeforeKill = 0;
    let dataAfterRestart = 0;
    let killed = false;
    let restarted = false;
    proxy.rule = (data, direction) => {
      const n = bulkChunks(data, direction);
      if (n > 0) {
        if (restarted) dataAfterRestart += n;
        else if (killed) return [];
        else if ((dataBeforeKill += n) >= totalChunks / 2) { killed = true; void client.stop('SIGKILL'); }
      }
      return [{ data }];
    };
    client = await startClient('before', proxy.port, join(dir, 'c'), trust);
    const push = pushLine(file);
    await client.exited;
    restarted = true;
    client = await startClient('after', proxy.port, join(dir, 'c'), trust);
    const out = await push.done;
    expect(out).toMatch(/done: 9\.1 bulk active/);
    const held = Number((await client.waitFor(/resuming after (\d+) chunks already held/))[1]);
    await client.waitFor(/Major = 9\nMinor = 1/);
    // What it kept on disk, less what was still being written when it died (writes queue on
    // libuv's pool, up to 16 MiB: chunks now arrive faster than a disk takes them, so a kill
    // loses more of what had arrived; on a loaded CI machine it kept 9% of 50% once)…
    expect(held).toBeGreaterThan(totalChunks * 0.02);
    // …is not sent again: only the rest crosses the network (plus a few retransmissions).
    expect(dataAfterRestart).toBeLessThan((totalChunks - held) * 1.1 + 100);
    expect(dataAfterRestart).toBeGreaterThanOrEqual(totalChunks - held);
  });

  it('after a server killed mid-push restarts, pushing again sends only what the client lacks', async () => {
    await server.stop();
    const stateDir = join(dir, 'server');
    // Clients renew every second here, so the restarted server learns of them quickly.
    ({ proc: server, port } = await startServer(stateDir, ['--renew', '1000']));
    const file = writeModule(dir, 'big_5_0.mjs', 16 * 1024 * 1024);
    const totalChunks = Math.ceil(statSync(file).size / WIDE_CHUNK_BYTES); // loopback: wide chunks
    // A fixed proxy port, so the client's server address survives the server's restart.
    let serverPort = port;
    let passed = 0;
    let afterRestart = 0;
    let restarted = false;
    proxy = await UdpProxy.start(port, passThrough);
    const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
    proxy.rule = (data, direction) => {
      const n = bulkChunks(data, direction);
      if (n > 0) {
        if (restarted) afterRestart += n;
        else if (passed < totalChunks / 2 && (passed += n) >= totalChunks / 2) void server.stop('SIGKILL');
      }
      return [{ data }];
    };
    server.type(`push ${file}`);
    await server.exited;
    ({ proc: server, port: serverPort } = await startServer(stateDir, ['--renew', '1000', '--port', String(port)]));
    expect(serverPort).toBe(port);
    restarted = true;
    await server.waitFor(/client \w+ (registered|is back)/); // is back: it was in the saved fleet
    const out = await pushLine(file).done;
    expect(out).toMatch(/done: 9\.1 bulk active/);
    const held = Number((await client.waitFor(/resuming after (\d+) chunks already held/))[1]);
    expect(held).toBeGreaterThan(totalChunks * 0.3);
    expect(afterRestart).toBeLessThan((totalChunks - held) * 1.1 + 100);
  });
});

describe('--max-rate', () => {
  it('holds two devices\' pushes together to the cap, and shares it evenly between them', async () => {
    // 8 Mbit/s is 1 MB/s: 2 × 1 MiB takes ~2.1 s capped (each device ~2 s if they share evenly,
    // the first ~1 s if one went first); on loopback uncapped, well under 0.5 s.
    const { proc: capped, port: cappedPort } = await startServer(join(dir, 'capped'), ['--peer-timeout', '3000', '--max-rate', '8']);
    const cappedTrust = join(dir, 'capped/release.pub');
    await startClient('a', cappedPort, join(dir, 'a'), cappedTrust);
    await startClient('b', cappedPort, join(dir, 'b'), cappedTrust);
    const at = capped.type(`push ${writeModule(dir, 'capped_3_0.mjs', 1024 * 1024)}`);
    await capped.waitFor(/push finished: .*\n/, 30_000, at);
    const times = [...capped.output.slice(at).matchAll(/done: 9\.1 bulk active.* in (\d+) ms/g)].map((m) => Number(m[1]));
    expect(times).toHaveLength(2);
    for (const ms of times) {
      expect(ms).toBeGreaterThan(1700);
      expect(ms).toBeLessThan(6000);
    }
    expect(await capped.run('status', /max rate[^\n]*\n/)).toMatch(/max rate 8 Mbit\/s/);
  });

  it('starts no more devices at once than the total carries at a chunk a second each; the rest wait their turn', async () => {
    // 0.1 Mbit/s is 12.5 bytes a ms: one device's floor (a chunk of ~8 KiB a second) fits, two
    // do not. The second waits; a higher total lets it start.
    const { proc: capped, port: cappedPort } = await startServer(join(dir, 'queued'), ['--max-rate', '0.1']);
    const cappedTrust = join(dir, 'queued/release.pub');
    await startClient('qa', cappedPort, join(dir, 'qa'), cappedTrust);
    await startClient('qb', cappedPort, join(dir, 'qb'), cappedTrust);
    const at = capped.type(`push ${writeModule(dir, 'queued_3_0.mjs', 64 * 1024)}`);
    await capped.waitFor(/max rate 0\.1 Mbit\/s carries 1 transfer at a chunk a second each: the others wait their turn/, 10_000, at);
    expect(await capped.run('max-rate', /max rate [^\n]*\n/)).toMatch(/max rate 0\.1 Mbit\/s, shared by 1 transfer under way, 1 waiting its turn/);
    expect(await capped.run('status', /max rate [^\n]*\n/)).toMatch(/ {2}\w+ {2}\S+ \S+ {2}waiting 0\/\d+ chunks/);
    await capped.waitFor(/ {2}\w+ waiting its turn \(max rate\)/, 5_000, at); // the push's progress
    expect(await capped.run('max-rate 8', /max rate [^\n]*\n/)).toMatch(/max rate 8 Mbit\/s, shared by [12] transfers? under way\n/);
    expect(await capped.waitFor(/push finished: .*\n/, 30_000, at)).toBeTruthy();
    expect([...capped.output.slice(at).matchAll(/done: 9\.1 bulk active/g)]).toHaveLength(2);
  });

  it('is set, shown and lifted at the console while the server runs (max-rate)', async () => {
    await startClient('c', port, join(dir, 'c'), trust);
    expect(await server.run('max-rate', /max rate: none[^\n]*\n/)).toMatch(/each transfer as fast as its path carries/);
    expect(await server.run('max-rate fast', /usage: max-rate[^\n]*\n/)).toMatch(/usage: max-rate \[MBIT\|off\] \(0\.1-100000 Mbit\/s\)/);
    expect(await server.run('max-rate 8', /max rate [^\n]*\n/)).toMatch(/max rate 8 Mbit\/s, no transfer under way/);
    const took = async (file: string): Promise<number> => Number(/done: 9\.\d bulk active.* in (\d+) ms/.exec(await pushLine(file).done)![1]);
    // 1 MiB at 1 MB/s: about a second; then, lifted, loopback's pace.
    expect(await took(writeModule(dir, 'slow_3_0.mjs', 1024 * 1024, 9, 1))).toBeGreaterThan(900);
    expect(await server.run('max-rate off', /max rate: [^\n]*\n/)).toMatch(/max rate: none/);
    expect(await took(writeModule(dir, 'fast_3_1.mjs', 1024 * 1024, 9, 2))).toBeLessThan(600);
  });
});
