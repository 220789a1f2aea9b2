/**
 * Every persistent write failing under real, running processes: the server's state dir on a
 * tmpfs filled up; the device's state files failing (ENOSPC, EIO) by a preload
 * (test/support/fault-fs.mjs) that fails their opens, writes, fsyncs, links and renames while a
 * switch file exists. Each case ends with the process up and answering, the failure
 * reported, nothing claimed that is not on disk, and everything saved before still there after
 * a restart.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Proc, ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { writeModule } from '../support/modules.js';

const PRELOAD = join(ROOT, 'test/support/fault-fs.mjs');

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

function faultEnv(match: string, code: string, switchFile: string): Record<string, string> {
  return { NODE_OPTIONS: `--import=${PRELOAD}`, NXT_FAULT_MATCH: match, NXT_FAULT_CODE: code, NXT_FAULT_SWITCH: switchFile };
}

/** The server answers its console: the event loop runs and nothing hangs. */
async function answers(p: Proc): Promise<void> {
  await p.run('clients', /ID\s+HOSTNAME|no clients/);
}

// The server's state is in SQLite, whose writes a preload on node:fs cannot fail: its state dir
// is a small tmpfs filled up for real (mounting needs root, which CI has).
const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;

describe.skipIf(!canMount)('the server\'s state dir on a full disk (tmpfs, needs root)', () => {
  let state: string | undefined;
  afterEach(() => { if (state) spawnSync('umount', ['-l', state]); });

  it('every command that changes state says it was not saved; nothing unsaved is claimed; the server keeps running', async () => {
    const dir = tempDir('nxt-faults-');
    state = join(dir, 'server');
    mkdirSync(state);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', state]);
    const ballast = join(state, 'ballast');
    const { proc: server, port } = await startServer(state, ['--renew', '1000']);
    const client = await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'));
    const id = client.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    const b = await startClient('b', port, join(dir, 'b'), join(state, 'release.pub'));
    const idB = b.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    const kept = (await server.run(`job logs ${id} --file app.log`, /job (\d+) \(\w+\) queued/)).match(/job (\d+)/)![1]!;
    await server.run(`tag ${id} kiosks`, /\n/);
    // A module to push, sealed and stored while there is room (a push needs its sealed copy).
    const module = writeModule(dir, 'm_7_1.mjs', 2000, 7, 1);
    expect(await server.run(`push ${module}`, /push finished: .*\n/)).toMatch(/push finished: 2 done, 0 failed/);

    // Fill the disk: the ballast takes every free byte.
    try { writeFileSync(ballast, Buffer.alloc(32 * 1024 * 1024)); } catch { /* full: that is the point */ }
    const why = /the disk is full/;
    expect(await server.run(`job logs ${id} --file other.log`, /error.*\n/)).toMatch(why);
    expect(await server.run(`tag ${id} lobby`, /error.*\n/)).toMatch(why);
    expect(await server.run('token create ci', /error.*\n|token ci: .*\n/)).toMatch(why);
    // A device enrolling while the disk is full is told "pending" (its approval is not on disk),
    // and is approved at a registration after there is room again.
    const c = await startClient('c', port, join(dir, 'c'), join(state, 'release.pub'), '127.0.0.1', [], { until: /waiting for the operator/ });
    expect(await server.run(`revoke ${idB}`, /error.*\n/)).toMatch(why);
    await answers(server);
    expect(server.alive && client.alive && b.alive && c.alive).toBe(true);

    rmSync(ballast);
    await c.waitFor('registered with the server');
    await server.run(`tag ${id} lobby`, /\n/);
    await server.stop();
    const again = (await startServer(state, ['--renew', '1000'])).proc;
    const jobs = await again.run('jobs', /NxtServer# /);
    expect(jobs).toContain(`${kept} `);
    expect(jobs).not.toMatch(/other\.log/);
    expect(await again.run('clients', /NxtServer# /)).toMatch(/kiosks.*lobby|lobby.*kiosks/);
    expect(await again.run('devices', /NxtServer# /)).not.toMatch(new RegExp(`${idB}.*revoked`));
    expect(await again.run('token list', /NxtServer# /)).not.toMatch(/\bci\b/);
    await again.stop();
  });
});

describe.each(['ENOSPC', 'EIO'])('the device\'s state files failing with %s', (code) => {
  it('a push and a job fail with "storage" and change nothing; the client keeps running and takes both once the disk is good', async () => {
    const dir = tempDir('nxt-faults-');
    const state = join(dir, 'server');
    const data = join(dir, 'device');
    const bad = join(dir, 'disk-is-bad');
    const { proc: server, port } = await startServer(state);
    const logs = join(dir, 'logs');
    mkdirSync(logs);
    writeFileSync(join(logs, 'app.log'), 'one line\n');
    const device = await startClient('device', port, data, join(state, 'release.pub'), '127.0.0.1', ['--logs-dir', logs, '--maintenance', '--poll', '200'], { env: faultEnv(data, code, bad) });
    const id = device.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    const push = async (file: string): Promise<string> => server.run(`push ${file}`, /push finished: .*\n|\nerror.*\n/);

    // The whole data dir: the module cannot even be received.
    writeFileSync(bad, '');
    expect(await push(writeModule(dir, 'm_7_1.mjs', 2000, 7, 1))).toMatch(/failed \(storage\): cannot store the module[\s\S]*0 done, 1 failed/);
    // Only the record of the active module: received and verified, not activated.
    writeFileSync(bad, 'active.json');
    expect(await push(join(dir, 'm_7_1.mjs'))).toMatch(/failed \(storage\): cannot save .*active\.json[\s\S]*0 done, 1 failed/);
    expect(await device.run('show version', /Minor = \d+/)).toMatch(/Major = 5\nMinor = 6/);
    writeFileSync(bad, 'jobs-done.json');
    const refused = (await server.run(`job logs ${id} --file app.log`, /job (\d+) \(\w+\) queued/)).match(/job (\d+)/)![1]!;
    expect((await server.waitFor(new RegExp(`job ${refused} \\(logs\\) on \\w+: .*\\n`)))[0]).toMatch(/cannot record it on its disk/);
    expect(device.alive).toBe(true);

    rmSync(bad);
    expect(await push(writeModule(dir, 'm_7_2.mjs', 2000, 7, 2))).toMatch(/1 done, 0 failed/);
    await device.waitFor('Minor = 2');
    const ran = (await server.run(`job logs ${id} --file app.log`, /job (\d+) \(\w+\) queued/)).match(/job (\d+)/)![1]!;
    expect((await server.waitFor(new RegExp(`job ${ran} \\(logs\\) on \\w+: .*\\n`)))[0]).toMatch(/: ok/);
    expect(existsSync(join(data, 'active.json'))).toBe(true);
  });
});

describe('kill -9 while saving', () => {
  it('every job the server acknowledged as queued is there after each of 8 kills at random moments, and the server starts every time', async () => {
    const dir = tempDir('nxt-kill-');
    const state = join(dir, 'server');
    const first = await startServer(state);
    const device = await startClient('device', first.port, join(dir, 'device'), join(state, 'release.pub'));
    const id = device.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    await device.stop();
    await first.proc.stop();
    const acknowledged = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const server = (await startServer(state)).proc;
      const at = server.output.length;
      // 40 jobs typed at once; the server dies after 5 to 35 of them said "queued".
      server.type(Array.from({ length: 40 }, (_, i) => `job logs ${id} --file r${round}-${i}.log`).join('\n'));
      const upTo = 5 + Math.floor(Math.random() * 30);
      for (let seen = 0, from = at; seen < upTo; seen++) {
        const m = await server.waitFor(/job \d+ \(logs\) queued/, 20_000, from);
        from += m.index! + m[0].length;
      }
      await server.stop('SIGKILL');
      for (const m of server.output.slice(at).matchAll(/job (\d+) \(logs\) queued/g)) acknowledged.add(m[1]!);
    }
    const server = (await startServer(state)).proc;
    const listed = new Set([...(await server.run('jobs --last 100000', /NxtServer# /)).matchAll(/^\s*(\d+)\s/gm)].map((m) => m[1]!));
    expect([...acknowledged].filter((j) => !listed.has(j))).toEqual([]);
    expect(acknowledged.size).toBeGreaterThanOrEqual(8 * 5);
  }, 120_000);
});
