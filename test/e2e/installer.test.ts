/**
 * The installers as an operator uses them: build both tgz files, unpack them somewhere else,
 * start the server from its unpacked tree, package the client with that server's key, and push.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tar from 'tar';
import { Proc, ROOT, runningCount, stopAll, tempDir } from '../support/processes.js';

/** `npm test` built dist/ already; rebuilding it here would rewrite files under the processes
 *  other tests are running (a half-written module fails to load). */
const PACKAGE_ENV = { ...process.env, NXT_SKIP_BUILD: '1' };

let work: string;

beforeAll(() => {
  work = tempDir('nxt-install-');
  execFileSync(join(ROOT, 'scripts/Package_Server.sh'), ['--out', join(work, 'out')], { stdio: 'pipe', env: PACKAGE_ENV });
}, 120_000);

afterAll(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

async function unpack(tgz: string, into: string): Promise<void> {
  mkdirSync(into, { recursive: true });
  await tar.extract({ file: tgz, cwd: into });
}

describe('the installers', () => {
  it('unpack to runnable trees and push end to end', async () => {
    const serverHost = join(work, 'server-host');
    await unpack(join(work, 'out/nxt_server.tgz'), serverHost);
    const serverScript = join(serverHost, 'nxt/server/bin/UpdateServer.sh');
    expect(existsSync(serverScript)).toBe(true);

    // NXT_STATE_DIR unset: the installed server keeps its state inside its own tree. No
    // enrollment token: the operator approves the new device, as on a real first install.
    const env = { NXT_STATE_DIR: '', NXT_DATA_DIR: '', NXT_TRUST: '', NXT_ENROLL_TOKEN: '' };
    const server = new Proc('installed server', serverScript, ['0'], env);
    const port = Number((await server.waitFor(/listening on UDP port (\d+)/))[1]);
    const pub = join(serverHost, 'nxt/server/state/server/release.pub');
    expect(existsSync(pub)).toBe(true);

    execFileSync(join(ROOT, 'scripts/Package_Client.sh'), ['--trust', pub, '--out', join(work, 'out')], { stdio: 'pipe', env: PACKAGE_ENV });
    const deviceHost = join(work, 'device-host');
    await unpack(join(work, 'out/nxt_client.tgz'), deviceHost);
    expect(readFileSync(join(deviceHost, 'nxt/client/etc/server.pub'), 'utf8')).toBe(readFileSync(pub, 'utf8'));
    expect(readFileSync(join(deviceHost, 'nxt/client/etc/identity.pub'), 'utf8')).toBe(readFileSync(join(dirname(pub), 'identity.pub'), 'utf8'));

    const client = new Proc('installed client', join(deviceHost, 'nxt/client/bin/UpdateClient.sh'), ['127.0.0.1', String(port)], env);
    await client.waitFor(/waiting for the operator to approve this device \(on the server: approve ([0-9a-f]{12})\)/);
    const id = (await server.waitFor(/device ([0-9a-f]{12}) asks to join from 127\.0\.0\.1:\d+ \(.*\d+ CPUs/))[1]!;
    server.type(`approve ${id}`);
    await client.waitFor('registered with the server');
    await client.waitFor(/Major = 5\nMinor = 6/);
    const at = server.type(`push ${join(serverHost, 'nxt/server/plugins/libfunctional_2_0.mjs')}`);
    await server.waitFor(/push finished: 1 done, 0 failed/, 20_000, at);
    await client.waitFor(/Major = 8\nMinor = 6\nproductName = nxtgen/);
    expect(existsSync(join(deviceHost, 'nxt/client/state/client/active.json'))).toBe(true);

    // The client tree carries what a device runs, not the server or its dependencies.
    expect(existsSync(join(deviceHost, 'nxt/client/dist/server'))).toBe(false);
    for (const dep of ['tar', 'nodemailer']) expect(existsSync(join(deviceHost, 'nxt/client/node_modules', dep)), dep).toBe(false);
    expect(existsSync(join(deviceHost, 'nxt/client/node_modules/tweetnacl'))).toBe(true);
  }, 120_000);

  it('a client packaged without --trust carries no keys, and says how to give it some', async () => {
    const out = join(work, 'keyless');
    execFileSync(join(ROOT, 'scripts/Package_Client.sh'), ['--out', out, '--formats', 'tgz'], { stdio: 'pipe', env: PACKAGE_ENV });
    const host = join(work, 'keyless-host');
    await unpack(join(out, 'nxt_client.tgz'), host);
    expect(existsSync(join(host, 'nxt/client/etc'))).toBe(false);
    const r = spawnSync(join(host, 'nxt/client/bin/UpdateClient.sh'), ['127.0.0.1', '9000'], { encoding: 'utf8', input: '', env: { ...process.env, NXT_TRUST: '', NXT_DATA_DIR: join(work, 'keyless-data') } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot read the server's public key at .*: copy release\.pub from the server's state dir/);
  });
});

