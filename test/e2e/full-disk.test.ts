/**
 * State files on a really full filesystem (a small tmpfs; mounting needs root, which CI has: the
 * tests say why they skip elsewhere).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { JobStore } from '../../src/server/job-store.js';
import { openStore } from '../../src/store/open-store.js';
import { writeFileAtomic } from '../../src/util/atomic-file.js';
import { Proc, ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { writeModule } from '../support/modules.js';
import { UdpProxy, bulkChunks } from '../support/udp-proxy.js';

const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;
let dir: string;

beforeEach(() => {
  if (!canMount) return;
  dir = tempDir('nxt-full-');
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
});

afterEach(() => {
  if (canMount) spawnSync('umount', [dir]);
});

/** Fill the filesystem, then free 8 KiB: a bigger write then takes only part of its bytes, with
 *  no error (the call after it gets ENOSPC), which is what tore state files before. */
function fill(): void {
  writeFileSync(join(dir, 'spare'), Buffer.alloc(8192));
  try { writeFileSync(join(dir, 'ballast'), Buffer.alloc(1024 * 1024)); } catch { /* full: that is the point */ }
  execFileSync('rm', [join(dir, 'spare')]);
}

describe.skipIf(!canMount)('on a full disk (tmpfs, needs root)', () => {
  it('an atomic write that does not fit fails with "the disk is full" and leaves the old file whole', () => {
    const path = join(dir, 'state.json');
    writeFileAtomic(path, '{"old":true}\n');
    fill();
    let err: unknown;
    try { writeFileAtomic(path, `${JSON.stringify({ big: 'x'.repeat(20_000) })}\n`); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(NxtError);
    expect((err as NxtError).code).toBe('ENOSPC');
    expect((err as NxtError).message).toMatch(/the disk is full/);
    expect(readFileSync(path, 'utf8')).toBe('{"old":true}\n');
    // No temporary file left behind to take space.
    expect(execFileSync('ls', [dir], { encoding: 'utf8' }).split('\n').filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a job that cannot be saved is not queued, and the jobs saved before are intact after a restart', async () => {
    const store = await openStore({ stateDir: dir, note: () => {}, warn: () => {} });
    const jobs = await JobStore.open(store);
    const kept = await jobs.add('a'.repeat(32), 'logs', { filter: 'x' }, new Date());
    fill();
    const refused = await jobs.add('a'.repeat(32), 'logs', { pattern: 'y'.repeat(100_000) }, new Date()).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(NxtError);
    expect((refused as NxtError).code).toBe('ENOSPC');
    expect((refused as NxtError).message).toMatch(/cannot save to the database .*nxt\.db: the disk is full/);
    expect(jobs.list().map((j) => j.id)).toEqual([kept.id]);
    await store.close();
    const reopened = await openStore({ stateDir: dir, note: () => {}, warn: () => {} });
    expect((await JobStore.open(reopened)).list().map((j) => j.id)).toEqual([kept.id]);
    await reopened.close();
  });
});

describe.skipIf(!canMount)('a device whose disk is (nearly) full (tmpfs data dir, needs root)', () => {
  let server: Proc;
  let port: number;
  let work: string;

  beforeEach(async () => {
    work = tempDir('nxt-full-work-');
    ({ proc: server, port } = await startServer(join(work, 'server'), ['--renew', '1000']));
  });

  afterEach(async () => {
    await stopAll();
    expect(runningCount()).toBe(0);
  });

  const freeBytes = (): number => { const s = statfsSync(dir); return s.bavail * s.bsize; };
  const fillTo = (leave: number): void => {
    const size = Math.max(0, freeBytes() - leave);
    try { writeFileSync(join(dir, `ballast-${Date.now()}`), Buffer.alloc(size)); } catch { /* full */ }
  };

  it('refuses a module that cannot fit before sending it, and keeps working after its disk filled up', async () => {
    // The data dir is the 64 KiB tmpfs, remounted larger for this test.
    execFileSync('mount', ['-o', 'remount,size=8m', dir]);
    const trust = join(work, 'server/release.pub');
    const client = await startClient('c', port, join(dir, 'c'), trust);
    const proxyless = await server.run(`push ${writeModule(work, 'big_3_0.mjs', 16 * 1024 * 1024)}`, /push finished/);
    expect(proxyless).toMatch(/failed \(storage\): not enough disk space for big_3_0\.mjs/);
    // Refused at the offer: nothing was sent but the first flight that goes with it (one chunk of
    // ~8.6 KB here: one datagram, or six in pieces).
    expect(Number(proxyless.match(/, (\d+) datagrams/)![1])).toBeLessThanOrEqual(6);
    // Now fill the disk, and make the client shake hands again (the server restarts): writing its
    // handshake stamp fails, and it must carry on, not die.
    fillTo(0);
    await server.stop();
    ({ proc: server, port } = await startServer(join(work, 'server'), ['--renew', '1000', '--port', String(port)]));
    await server.waitFor(/client \w+ (registered|is back)/, 20_000);
    expect(client.alive).toBe(true);
    expect(client.output).toMatch(/warning: .*the disk is full; shaking hands with a stamp kept in memory only/);
    // Space again: a push arrives.
    execFileSync('sh', ['-c', `rm -f ${dir}/ballast-*`]);
    expect(await server.run(`push ${writeModule(work, 'small_4_0.mjs', 64 * 1024)}`, /push finished/)).toMatch(/done: 9\.1 bulk active/);
  });

  it('drops a download another offer superseded when the module offered now does not fit beside it', async () => {
    execFileSync('mount', ['-o', 'remount,size=16m', dir]);
    const trust = join(work, 'server/release.pub');
    const client = await startClient('c', port, join(dir, 'c'), trust);
    // What an earlier, larger download left for a resume (its offer superseded): 10 MiB.
    const stale = join(dir, 'c', 'incoming', `${'ab'.repeat(32)}.part`);
    writeFileSync(stale, Buffer.alloc(10 * 1024 * 1024, 1));
    const out = await server.run(`push ${writeModule(work, 'next_3_0.mjs', 8 * 1024 * 1024)}`, /push finished/);
    expect(out).toMatch(/done: 9\.1 bulk active/);
    expect(existsSync(stale)).toBe(false);
    expect(client.output).toMatch(/removed 1 unfinished download\(s\) of other modules \(10485760 bytes\) to make room for next_3_0\.mjs/);
  });

  it('ends a transfer as soon as the disk fills, and gives the space back', async () => {
    execFileSync('mount', ['-o', 'remount,size=16m', dir]);
    const trust = join(work, 'server/release.pub');
    let chunks = 0;
    const proxy = await UdpProxy.start(port, (data, direction) => {
      // A moment into the transfer (past the chunks that go with the offer, before it is
      // accepted), something else on the device takes all but 256 KiB.
      const before = chunks;
      chunks += bulkChunks(data, direction);
      if (before <= 16 && chunks > 16) fillTo(256 * 1024);
      return [{ data }];
    });
    try {
      const client = await startClient('c', proxy.port, join(dir, 'c'), trust);
      const started = Date.now();
      const out = await server.run(`push ${writeModule(work, 'mid_3_0.mjs', 8 * 1024 * 1024)}`, /push finished/);
      expect(out).toMatch(/failed \(storage\): .*the disk is full/);
      expect(Date.now() - started).toBeLessThan(8000);
      expect(client.alive).toBe(true);
      // The partial file is gone and closed: its space is free again.
      execFileSync('sh', ['-c', `rm -f ${dir}/ballast-*`]);
      expect(freeBytes()).toBeGreaterThan(12 * 1024 * 1024);
    } finally {
      await proxy.close();
    }
  });
});

describe.skipIf(!canMount)('a read-only state dir (tmpfs remounted read-only, needs root)', () => {
  it('is named as such by the server and the client, which exit 4', () => {
    execFileSync('mount', ['-o', 'remount,ro', dir]);
    for (const [program, args] of [
      ['server', ['--port', '0', '--state-dir', join(dir, 'server')]],
      ['client', ['--server', '127.0.0.1', '--port', '9', '--trust', join(ROOT, 'test/fixtures/server.pub'), '--server-key', join(ROOT, 'test/fixtures/identity.pub'), '--data-dir', join(dir, 'client')]],
    ] as const) {
      const r = spawnSync('node', [join(ROOT, `dist/cli/${program}.js`), ...args], { encoding: 'utf8', input: '', timeout: 10_000 });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`nxt-${program}: cannot create .*: the filesystem is read-only`));
    }
  });
});

describe.skipIf(!canMount)('a server whose state disk fills up (tmpfs state dir, needs root)', () => {
  afterEach(async () => {
    await stopAll();
    expect(runningCount()).toBe(0);
  });

  it('fails a push it cannot seal with "the disk is full", keeps running, and pushes once there is room', async () => {
    execFileSync('mount', ['-o', 'remount,size=32m', dir]);
    const work = tempDir('nxt-full-work-');
    const { proc: server, port } = await startServer(join(dir, 'server'), ['--renew', '1000']);
    await startClient('c', port, join(work, 'c'), join(dir, 'server/release.pub'));
    // Room for half the module: its sealed copy cannot be made (nor the server's copy of it for
    // rollouts, which is only a warning), whichever of the two writes first.
    const module = writeModule(work, 'big_3_0.mjs', 12 * 1024 * 1024);
    const free = (): number => { const s = statfsSync(dir); return s.bavail * s.bsize; };
    writeFileSync(join(dir, 'ballast'), Buffer.alloc(Math.max(0, free() - 6 * 1024 * 1024)));
    const failed = await server.run(`push ${module}`, /push finished.*\n/);
    expect(failed).toMatch(/failed \(storage\): cannot send big_3_0\.mjs: cannot seal .*: the disk is full/);
    expect(server.alive).toBe(true);
    // Nothing half-sealed is left behind to fill the disk further.
    expect(execFileSync('ls', [join(dir, 'server/sealed')], { encoding: 'utf8' }).trim()).toBe('');
    execFileSync('rm', [join(dir, 'ballast')]);
    expect(await server.run(`push ${module}`, /push finished.*\n/)).toMatch(/done: 9\.1 bulk active/);
  });
});
