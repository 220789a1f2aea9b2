/** Driving a running server from scripts (ctl), and configuration files. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Proc, ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

const run = promisify(execFile);
const serverJs = join(ROOT, 'dist/cli/server.js');
const clientJs = join(ROOT, 'dist/cli/client.js');
const V2 = join(ROOT, 'plugins/libfunctional_2_0.mjs');

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** Run `nxt-server ctl` (from `cwd`); resolves with its exit code, stdout and stderr, whatever the code. */
async function ctl(stateDir: string, ...words: string[]): Promise<{ code: number; out: string; err: string }> {
  return ctlIn(ROOT, stateDir, ...words);
}
async function ctlIn(cwd: string, stateDir: string, ...words: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const { stdout, stderr } = await run('node', [serverJs, 'ctl', '--state-dir', stateDir, ...words], { cwd });
    return { code: 0, out: stdout, err: stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout, err: e.stderr };
  }
}

describe('nxt-server ctl', () => {
  it('runs console commands in the running server: output on stdout, errors on stderr, exit 0/1/2', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    // A short peer timeout: the device stopped below should fail its push soon.
    const { port } = await startServer(state, ['--peer-timeout', '2000']);
    const a = await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'));
    const listed = await ctl(state, 'clients', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out)).toEqual([expect.objectContaining({ release: '1.0.0', online: true })]);
    // A path relative to the caller's directory, not the server's.
    copyFileSync(V2, join(dir, 'v2_2_0.mjs'));
    const pushed = await ctlIn(dir, state, 'push', 'v2_2_0.mjs', '--to', 'all');
    expect(pushed).toMatchObject({ code: 0, err: '' });
    expect(pushed.out).toMatch(/done: 8\.6 nxtgen active[\s\S]*push finished: 1 done, 0 failed/);
    // ctl handed the server a copy in its state dir (the server's user may not read the caller's
    // files) and took it away again.
    expect(readdirSync(state).filter((f) => f.startsWith('ctl-spool-'))).toEqual([]);
    await a.waitFor('Major = 8');
    expect(await ctl(state, 'rollout', 'latest')).toMatchObject({ code: 0, out: expect.stringMatching(/every online client runs v2_2_0\.mjs 2\.0\.0 or newer; nothing sent/) });
    expect(await ctl(state, 'push', join(dir, 'missing.mjs'))).toMatchObject({ code: 1, out: '', err: expect.stringMatching(/error \[no-such-file\]/) });
    // The server refuses the copy it was handed; the caller is told of the file as they named it.
    writeFileSync(join(dir, 'empty_4_0.mjs'), '');
    writeFileSync(join(dir, 'noversion.mjs'), 'export default () => ({ major: 4, minor: 0 });');
    expect(await ctlIn(dir, state, 'push', 'empty_4_0.mjs')).toMatchObject({ code: 1, err: 'error [empty-module]: empty_4_0.mjs is empty\n' });
    expect(await ctlIn(dir, state, 'push', 'noversion.mjs')).toMatchObject({ code: 1, err: expect.stringMatching(/or use push noversion\.mjs --version X\.Y\.Z\n$/) });
    expect(await ctl(state, 'bogus')).toMatchObject({ code: 2, out: '', err: expect.stringMatching(/unknown command "bogus"/) });
    expect(await ctl(state, 'push')).toMatchObject({ code: 2, err: expect.stringMatching(/usage: push <file>/) });
    const none = await ctl(join(dir, 'elsewhere'), 'clients');
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no server is running with state dir .*elsewhere/);

    // A push that fails on a device exits 1; --json gives every device's outcome.
    await a.stop();
    copyFileSync(join(ROOT, 'plugins/libfunctional_1_0.mjs'), join(dir, 'v3_3_0.mjs'));
    const offline = await ctlIn(dir, state, '--json', 'push', 'v3_3_0.mjs', '--to', 'all');
    expect(offline.code, offline.out).toBe(1);
    const envelope = JSON.parse(offline.out) as { ok: boolean; status: number; errors: string[]; output: string[] };
    expect(envelope).toMatchObject({ ok: false, status: 1, command: ['push', 'v3_3_0.mjs', '--to', 'all'] });
    expect(envelope.errors.join('\n')).toMatch(/failed on 1 of 1 device|nothing sent/);
  });

  it('leaves no copy of a file in the state dir when it is interrupted, nor when it is killed (the next start clears it)', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    const { proc: server, port } = await startServer(state, ['--peer-timeout', '3000']);
    // A device registered, then frozen: each push waits for its peer timeout, time enough to
    // interrupt ctl in the middle of it.
    const device = await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'));
    process.kill(device.pid, 'SIGSTOP');
    const spools = (): string[] => readdirSync(state).filter((f) => f.startsWith('ctl-spool-'));
    const startCtl = (): { child: ChildProcess; exited: Promise<number | null> } => {
      const child = spawn('node', [serverJs, 'ctl', '--state-dir', state, 'push', V2], { stdio: 'ignore' });
      return { child, exited: new Promise((res) => child.on('exit', (code, signal) => res(code ?? (signal ? -1 : null)))) };
    };
    for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const { child, exited } = startCtl();
      await expect.poll(spools, { timeout: 10_000, interval: 20 }).toHaveLength(1);
      child.kill(signal);
      expect(await exited).toBe(status);
      expect(spools()).toEqual([]);
    }
    // Killed outright, it cannot clean up: the server's next start does.
    const { child, exited } = startCtl();
    await expect.poll(spools, { timeout: 10_000, interval: 20 }).toHaveLength(1);
    child.kill('SIGKILL');
    await exited;
    expect(spools()).toHaveLength(1);
    process.kill(device.pid, 'SIGCONT');
    await server.stop();
    await startServer(state);
    expect(spools()).toEqual([]);
  });

  it('--json wraps a command\'s output, errors and data in one document', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    const { port } = await startServer(state);
    await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'));
    const pushed = await ctlIn(ROOT, state, '--json', 'push', V2);
    expect(pushed.code).toBe(0);
    const doc = JSON.parse(pushed.out) as { ok: boolean; data: { done: number; failed: number; devices: { ok: boolean; result: string; active: string }[] }[] };
    expect(doc.ok).toBe(true);
    expect(doc.data[0]).toMatchObject({ done: 1, failed: 0, devices: [{ ok: true, result: 'ok', active: '2.0.0' }] });
    const listed = JSON.parse((await ctl(state, '--json', 'clients', '--json')).out) as { data: unknown[] };
    expect(listed.data[0]).toEqual([expect.objectContaining({ online: true })]);
  });
});

describe('configuration files', () => {
  it('set what flags do, flags win, and a wrong key is named', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    const { proc: server, port } = await startServer(state);
    const config = join(dir, 'client.json');
    // The port in the file is wrong on purpose: the flag wins.
    writeFileSync(config, JSON.stringify({ server: '127.0.0.1', port: 1, dataDir: join(dir, 'a'), policy: 'defer', trust: join(state, 'release.pub') }));
    const a = new Proc('a', 'node', [clientJs, '--config', config, '--port', String(port)], { NXT_ENROLL_TOKEN: 'e2e-enroll-token' });
    await a.waitFor('registered with the server');
    const at = server.type(`push ${V2}`);
    await server.waitFor(/push finished: 0 done, 0 failed, 1 deferred/, 20_000, at); // policy from the file

    writeFileSync(config, JSON.stringify({ server: '127.0.0.1', prot: 9000 }));
    const bad = await run('node', [clientJs, '--config', config]).catch((err: { code: number; stderr: string }) => err);
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringMatching(/config .*client\.json: line 1: unknown key "prot" \(did you mean "port"\?\)/) });
    writeFileSync(config, JSON.stringify({ renew: '10s' }));
    const badServer = await run('node', [serverJs, '--config', config, '--state-dir', join(dir, 's2')]).catch((err: { code: number; stderr: string }) => err);
    expect(badServer).toMatchObject({ code: 2, stderr: expect.stringMatching(/"renew" must be a whole number, not "10s"/) });
  });
});
