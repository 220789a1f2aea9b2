/**
 * Handing files to the device's own installers: `job install T FILE --with deb` delivers the file
 * over the usual transfer, and the device runs the command its config names for "deb" with the
 * file's path (never a command from the server), bounded in time, reporting the exit code and the
 * output's tail. A device with no installers, or without that one, refuses the job.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { runJobAt as job } from '../support/jobs.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

describe('install jobs', () => {
  it('run the installer the device names, with the file, and report how it ended', async () => {
    const dir = tempDir('nxt-install-');
    const { proc: server, port } = await startServer(join(dir, 'server'));
    // A stand-in for dpkg: records what it was given, fails on request, hangs on request.
    const installer = join(dir, 'fake-dpkg.sh');
    writeFileSync(installer, `#!/bin/sh
echo "installing $1"
cp "$1" "${dir}/installed.bin"
grep -q fail "$1" && { echo "dpkg: error processing package (broken)" >&2; exit 3; }
grep -q hang "$1" && sleep 30
echo done
`);
    chmodSync(installer, 0o755);
    const config = join(dir, 'device.json');
    writeFileSync(config, JSON.stringify({ installers: { deb: `${installer} {file}` }, installTimeout: 2 }));
    const device = await startClient('device', port, join(dir, 'dev'), join(dir, 'server/release.pub'), '127.0.0.1', ['--config', config, '--maintenance', '--poll', '200']);
    const id = device.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    const local = (name: string, text: string): string => { const p = join(dir, name); writeFileSync(p, text); return p; };

    const ok = await job(server, `install ${id} ${local('tool_1.0.deb', 'a package\n')} --with deb`);
    expect(ok).toMatch(/: ok — installed with deb: exit 0; output: installing \S+\/job-\d+\.deb done/);
    expect(readFileSync(join(dir, 'installed.bin'), 'utf8')).toBe('a package\n'); // the bytes that were sent

    expect(await job(server, `install ${id} ${local('bad_1.0.deb', 'fail\n')} --with deb`)).toMatch(/: install failed — installer deb exited 3; output: installing .* dpkg: error processing package \(broken\)/);
    expect(await job(server, `install ${id} ${local('slow_1.0.deb', 'hang\n')} --with deb`)).toMatch(/: install failed — installer deb did not finish within 2 s \(killed\)/);
    expect(await job(server, `install ${id} ${local('fw.swu', 'image\n')} --with swu`)).toMatch(/: invalid job — no installer "swu" on this device \(it has: deb\)/);
    expect(await server.run(`job install ${id} ${local('x.deb', 'x\n')}`, /error.*\n/)).toMatch(/error \[usage\]: usage: job install <target> <local-file> --with <installer>/);
  });

  it('a device with no installers configured refuses every install job', async () => {
    const dir = tempDir('nxt-install-');
    const { proc: server, port } = await startServer(join(dir, 'server'));
    const device = await startClient('device', port, join(dir, 'dev'), join(dir, 'server/release.pub'), '127.0.0.1', ['--maintenance', '--poll', '200']);
    const id = device.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    writeFileSync(join(dir, 'p.deb'), 'p\n');
    expect(await job(server, `install ${id} ${join(dir, 'p.deb')} --with deb`)).toMatch(/: invalid job — this device has no installers configured \("installers" in its config\): it runs no install job/);
  });
});
