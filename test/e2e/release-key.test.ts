/** The release key encrypted at rest, as an operator uses it: keygen, start, push. */
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

const serverJs = join(ROOT, 'dist/cli/server.js');

describe('a passphrase-protected release key', () => {
  it('is created by keygen --passphrase, needed to start, and signs pushes clients accept', async () => {
    const dir = tempDir();
    const state = join(dir, 'server');
    execFileSync('node', [serverJs, 'keygen', '--passphrase', '--state-dir', state], { env: { ...process.env, NXT_KEY_PASSPHRASE: 'open sesame' } });

    // No passphrase and no terminal to ask in: a clear refusal, before any socket opens.
    const env = { ...process.env };
    delete env.NXT_KEY_PASSPHRASE;
    const none = spawnSync('node', [serverJs, '--port', '0', '--state-dir', state], { env, input: '', encoding: 'utf8' });
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/encrypted and there is no terminal to ask in: set NXT_KEY_PASSPHRASE/);
    const wrong = spawnSync('node', [serverJs, '--port', '0', '--state-dir', state], { env: { ...env, NXT_KEY_PASSPHRASE: 'nope' }, input: '', encoding: 'utf8' });
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/wrong passphrase/);

    process.env.NXT_KEY_PASSPHRASE = 'open sesame';
    try {
      const { proc: server, port } = await startServer(state);
      const client = await startClient('c', port, join(dir, 'c'), join(state, 'release.pub'));
      const at = server.type(`push ${join(ROOT, 'plugins/libfunctional_2_0.mjs')}`);
      await server.waitFor(/push finished: 1 done, 0 failed/, 20_000, at);
      await client.waitFor('Major = 8');
    } finally {
      delete process.env.NXT_KEY_PASSPHRASE;
    }
  });
});
