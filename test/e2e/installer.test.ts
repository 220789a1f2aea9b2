/**
 * The installers as an operator uses them: build both tgz files, unpack them somewhere else,
 * start the server from its unpacked tree, package the client with that server's key, and push.
 */
import { execFileSync } from 'node:child_process';
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
  }, 120_000);
});

describe('the Dockerfiles', () => {
  // No Docker engine runs here: check that what they ADD/COPY exists once the installers are
  // built, and that their entry point is the installed script.
  for (const kind of ['server', 'client'] as const) {
    it(`Dockerfile.${kind} installs nxt_${kind}.tgz and runs its script`, async () => {
      const text = readFileSync(join(ROOT, `Dockerfile.${kind}`), 'utf8');
      const sources = [...text.matchAll(/^(?:ADD|COPY)\s+(?!--from)(\S+)\s+(\S+)/gm)];
      expect(sources.length).toBeGreaterThan(0);
      const out = join(work, 'out');
      if (!existsSync(join(out, 'nxt_client.tgz'))) {
        execFileSync(join(ROOT, 'scripts/Package_Client.sh'), ['--trust', join(ROOT, 'plugins/../test/fixtures/server.pub'), '--out', out], { stdio: 'pipe', env: PACKAGE_ENV });
      }
      for (const [, src] of sources) expect(existsSync(join(out, src!)), `${src} exists`).toBe(true);
      const [, src, dest] = sources[0]!;
      const image = join(work, `image-${kind}`);
      await unpack(join(out, src!), join(image, dest!));
      const entry = JSON.parse(/^ENTRYPOINT\s+(\[.*\])/m.exec(text)?.[1] ?? '[]') as string[];
      const cmd = JSON.parse(/^CMD\s+(\[.*\])/m.exec(text)?.[1] ?? '[]') as string[];
      const script = join(image, entry[0] ?? 'missing');
      expect(existsSync(script)).toBe(true);
      expect(script).toMatch(kind === 'server' ? /nxt\/server\/bin\/UpdateServer\.sh$/ : /nxt\/client\/bin\/UpdateClient\.sh$/);
      expect(cmd.length).toBe(kind === 'server' ? 1 : 2);
      // The script runs: without arguments it prints its usage and exits 2.
      let status = 0;
      try { execFileSync(script, [], { stdio: 'pipe' }); } catch (err) { status = (err as { status: number }).status; }
      expect(status).toBe(2);
    });
  }
});
