/** Keeping the release key off the server: sign elsewhere, push the signed module. */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

const serverJs = join(ROOT, 'dist/cli/server.js');

describe('a release key kept offline', () => {
  it('signs modules elsewhere; a server holding only the public key pushes them and refuses anything else', async () => {
    const dir = tempDir();
    const vault = join(dir, 'vault'); // the offline machine
    const state = join(dir, 'server'); // the server: release.pub only
    execFileSync('node', [serverJs, 'keygen', '--state-dir', vault]);
    mkdirSync(state);
    copyFileSync(join(vault, 'release.pub'), join(state, 'release.pub'));

    const { proc: server, port } = await startServer(state);
    expect(server.output).toMatch(/no release key here \(only its public half\)/);
    const client = await startClient('c', port, join(dir, 'c'), join(state, 'release.pub'));

    const module = join(dir, 'plugin_2_0.mjs');
    copyFileSync(join(ROOT, 'plugins/libfunctional_2_0.mjs'), module);
    let at = server.type(`push ${module}`);
    await server.waitFor(/error \[no-signer\]: this server keeps no release key: sign plugin_2_0\.mjs offline/, 10_000, at);

    const signed = spawnSync('node', [serverJs, 'sign', module, '--state-dir', vault], { encoding: 'utf8' });
    expect(signed.status).toBe(0);
    expect(signed.stdout).toMatch(/signed plugin_2_0\.mjs 2\.0\.0 for all devices, valid until /);

    // A module changed after signing is refused by the server before any device sees it.
    const original = readFileSync(module, 'utf8');
    writeFileSync(module, original.replace('major: 8', 'major: 9'));
    at = server.type(`push ${module}`);
    await server.waitFor(/error \[bad-presigned\]: plugin_2_0\.mjs does not match its signed manifest/, 10_000, at);

    writeFileSync(module, original);
    at = server.type(`push ${module}`);
    await server.waitFor(/push finished: 1 done, 0 failed/, 20_000, at);
    await client.waitFor(/Major = 8\nMinor = 6/);
  });
});
