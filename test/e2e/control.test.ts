/** Driving a running server from scripts (ctl), and configuration files. */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
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

/** Run `nxt-server ctl`; resolves with its exit code and output, whatever the code. */
async function ctl(stateDir: string, ...words: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run('node', [serverJs, 'ctl', '--state-dir', stateDir, ...words]);
    return { code: 0, out: stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

describe('nxt-server ctl', () => {
  it('runs console commands in the running server, with output and an exit code for scripts', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    const { port } = await startServer(state);
    const a = await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'));
    const listed = await ctl(state, 'clients', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out)).toEqual([expect.objectContaining({ release: '1.0.0', online: true })]);
    const pushed = await ctl(state, 'push', V2, '--to', 'all');
    expect(pushed.code).toBe(0);
    expect(pushed.out).toMatch(/done: 8\.6 nxtgen active[\s\S]*push finished: 1 done, 0 failed/);
    await a.waitFor('Major = 8');
    expect(await ctl(state, 'rollout', 'latest')).toEqual({ code: 0, out: expect.stringMatching(/every online client runs libfunctional_2_0\.mjs 2\.0\.0 or newer; nothing sent/) });
    expect(await ctl(state, 'push', join(dir, 'missing.mjs'))).toEqual({ code: 1, out: expect.stringMatching(/error \[no-such-file\]/) });
    expect(await ctl(state, 'bogus')).toEqual({ code: 1, out: expect.stringMatching(/unknown command "bogus"/) });
    const none = await ctl(join(dir, 'elsewhere'), 'clients');
    expect(none.code).not.toBe(0);
    expect(none.out).toMatch(/no server is running with state dir .*elsewhere/);
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
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringMatching(/config .*client\.json: unknown key "prot" \(known: server, port,/) });
    writeFileSync(config, JSON.stringify({ renew: '10s' }));
    const badServer = await run('node', [serverJs, '--config', config, '--state-dir', join(dir, 's2')]).catch((err: { code: number; stderr: string }) => err);
    expect(badServer).toMatchObject({ stderr: expect.stringMatching(/"renew" must be a number, not "10s"/) });
  });
});
