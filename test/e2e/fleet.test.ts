/**
 * The fleet issue's checks with real processes: groups, versions, lease expiry, a server killed
 * with SIGKILL that restarts with its fleet, releases and history, automatic catch-up, and the
 * defer policy.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Proc, ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { UdpProxy, bulkChunks } from '../support/udp-proxy.js';
import { writeModule } from '../support/modules.js';
import { WIDE_CHUNK_BYTES } from '../../src/protocol/envelope.js';

const V2 = join(ROOT, 'plugins/libfunctional_2_0.mjs');

let dir: string;
let server: Proc;
let port: number;
let trust: string;

beforeEach(() => {
  dir = tempDir();
  trust = join(dir, 'server/release.pub');
});

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** The JSON array a `--json` command printed (after the prompt, on one line). */
function jsonOf<T>(out: string): T {
  return JSON.parse(out.slice(out.indexOf('['), out.lastIndexOf(']') + 1)) as T;
}

interface ClientJson { release: string; updateState: string; updateResult: string }

/** Ask `clients --json` until the (only) client is as `wanted` says: each ask is a round trip
 *  through the console, and the test's timeout bounds the loop. */
async function untilClient(server: Proc, wanted: (c: ClientJson) => boolean): Promise<void> {
  while (!jsonOf<ClientJson[]>(await server.run('clients --json', /\]\n/)).some(wanted)) { /* ask again */ }
}

const idOf = (c: Proc): string => c.output.match(/nxt client ([0-9a-f]{12})/)![1]!;

describe('a fleet of five', () => {
  it('pushes to a group, reports versions, marks a silent client offline, and survives a SIGKILL of the server', async () => {
    ({ proc: server, port } = await startServer(join(dir, 'server'), ['--renew', '1000']));
    const clients = await Promise.all([0, 1, 2, 3, 4].map((i) => startClient(`c${i}`, port, join(dir, `c${i}`), trust)));
    const ids = clients.map(idOf);
    for (const i of [1, 3]) expect(await server.run(`tag ${ids[i]} kiosks`, /is in kiosks/)).toMatch('kiosks');

    expect(await server.run(`push ${V2} --to kiosks`, /push finished/)).toMatch(/to 2 client\(s\)[\s\S]*2 done, 0 failed/);
    for (const i of [1, 3]) await clients[i]!.waitFor('Major = 8');

    const answers = jsonOf<{ id: string; release: string; answered: boolean; tags: string[] }[]>(await server.run('versions --json', /\]\n/));
    expect(answers).toHaveLength(5);
    for (const [i, id] of ids.entries()) {
      const a = answers.find((x) => x.id.startsWith(id))!;
      expect(a.answered).toBe(true);
      expect(a.release).toBe(i === 1 || i === 3 ? '2.0.0' : '1.0.0');
    }
    for (const i of [0, 2, 4]) expect(clients[i]!.output).not.toMatch(/Major = 8/);

    // A client that goes silent (stopped, not killed) is offline once its lease (3 × 1 s + 1 s) lapses.
    process.kill(clients[4]!.pid, 'SIGSTOP');
    for (;;) {
      const out = await server.run('clients', new RegExp(`${ids[4]}.*\\n`));
      if (new RegExp(`${ids[4]} .* offline`).test(out)) break;
    }
    process.kill(clients[4]!.pid, 'SIGCONT');
    await server.waitFor(new RegExp(`client ${ids[4]} is back`));

    // Killed outright, and restarted on the same port: clients, releases and history are all there,
    // and the clients come back by themselves (they shake hands again).
    const before = jsonOf<{ module: string; result: string }[]>(await server.run('history --json', /\]\n/));
    expect(before.filter((e) => e.module === 'libfunctional_2_0.mjs' && e.result === 'ok')).toHaveLength(2);
    await server.stop('SIGKILL');
    // History entries are kept for 0.000001 days (86 ms): all of them go at the start, and
    // `releases` still counts them.
    ({ proc: server } = await startServer(join(dir, 'server'), ['--renew', '1000', '--port', String(port), '--keep-history', '0.000001']));
    await server.waitFor(new RegExp(`forgot ${before.length} push history entr(y|ies) from before \\S+ \\(--keep-history`));
    const listed = await server.run('clients', new RegExp(`(${ids.join('|')}).*\n[\\s\\S]*`.repeat(5)));
    for (const id of ids) expect(listed).toMatch(new RegExp(`${id} .* (1|2)\\.0\\.0 `));
    expect(listed).toMatch(/^ID +HOSTNAME +TYPE +CHANNEL +ADDRESS +RELEASE +PRODUCT +STATE +LAST SEEN +UPDATE +GROUPS$/m);
    expect(listed).toMatch(/ kiosks$/m);
    expect(await server.run('releases', /installed on/)).toMatch(/libfunctional_2_0\.mjs 2\.0\.0 .*installed on 2, 0 failed/);
    expect(jsonOf(await server.run('history --json', /\]\n/))).toEqual([]);
    for (const id of ids) await server.waitFor(new RegExp(`client ${id} is back`));
    for (const c of clients) expect(c.alive).toBe(true);
    expect(await server.run(`push ${V2} --to all`, /push finished/)).toMatch(/3 done, 0 failed, 2 already installed/); // the kiosks run it already
    // Those already running it count as installed, not as failures.
    expect(await server.run('releases', /installed on/)).toMatch(/libfunctional_2_0\.mjs 2\.0\.0 .*installed on 5, 0 failed/);
  }, 90_000);
});

describe('automatic catch-up', () => {
  it('brings a client stopped during a push up to date when it starts again', async () => {
    ({ proc: server, port } = await startServer(join(dir, 'server'), ['--renew', '1000', '--auto-update', '--peer-timeout', '2000']));
    const file = writeModule(dir, 'big_3_0.mjs', 8 * 1024 * 1024);
    // On loopback the path carries 64 KiB datagrams whole, so the module goes in wide chunks.
    const totalChunks = Math.ceil(statSync(file).size / WIDE_CHUNK_BYTES);
    let chunks = 0;
    let stopped: Promise<unknown> | undefined;
    let a: Proc | undefined;
    const proxy = await UdpProxy.start(port, (data, direction) => {
      // Kill the client a third of the way through the module.
      const before = chunks;
      chunks += bulkChunks(data, direction);
      if (before < totalChunks / 3 && chunks >= totalChunks / 3) stopped = a!.stop('SIGKILL');
      return [{ data }];
    });
    try {
      a = await startClient('a', proxy.port, join(dir, 'a'), trust);
      expect(await server.run(`push ${file}`, /push finished/)).toMatch(/0 done, 1 failed/);
      await stopped;
      const again = await startClient('again', proxy.port, join(dir, 'a'), trust);
      await server.waitFor(/runs 1\.0\.0: updating it to big_3_0\.mjs 3\.0\.0 \(--auto-update\)/);
      await again.waitFor(/resuming after \d+ chunks already held/);
      await again.waitFor('Major = 9');
    } finally {
      await proxy.close();
    }
  }, 60_000);
});

describe('upgrade later', () => {
  it('keeps a verified module until upgrade, even across a restart, then switches without one', async () => {
    ({ proc: server, port } = await startServer(join(dir, 'server')));
    let a = await startClient('a', port, join(dir, 'a'), trust, '127.0.0.1', ['--policy', 'defer']);
    expect(await server.run(`push ${V2}`, /push finished/)).toMatch(/deferred: verified and kept[\s\S]*0 done, 0 failed, 1 deferred/);
    await a.waitFor(/update libfunctional_2_0\.mjs 2\.0\.0 verified and kept: type upgrade/);
    expect(await a.run('show version', /release = /)).toMatch(/Major = 5\nMinor = 6/);
    // The device reports its state in the registration it sends right after deferring.
    await untilClient(server, (c) => c.release === '1.0.0' && c.updateState === 'downloaded' && c.updateResult === 'deferred');
    expect(await server.run('history', /deferred/)).toMatch(/libfunctional_2_0\.mjs 2\.0\.0 +deferred/);
    // Kept across a restart of the device, still not active.
    await a.stop();
    a = await startClient('a again', port, join(dir, 'a'), trust, '127.0.0.1', ['--policy', 'defer']);
    expect(a.output).toMatch(/Major = 5\nMinor = 6\nproductName = nxtgen\nupdate libfunctional_2_0\.mjs 2\.0\.0 is verified and waiting/);
    const pid = a.pid;
    await a.run('upgrade', /Major = 8\nMinor = 6/);
    expect(a.pid).toBe(pid);
    await untilClient(server, (c) => c.release === '2.0.0' && c.updateState === 'idle' && c.updateResult === 'success');
  });
});
