/**
 * Reconfiguring a device: `job config` writes a file into its config root keeping the one it
 * replaces, `--apply` hands it to the active plugin's reconfigure() (a refusal or a throw puts
 * the old file back and fails the job with the plugin's reason), `job config-restore` swaps the
 * kept version back. Real server, real device, a real plugin module.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { runJobAt as job } from '../support/jobs.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** Takes a config unless it says "refuse" (returns false) or "throw"; notes what it took. */
const PLUGIN = `import { readFileSync, writeFileSync } from 'node:fs';
export default () => ({ major: 9, minor: 2, productName: 'configurable' });
export function reconfigure(name, path) {
  const text = readFileSync(path, 'utf8');
  if (text.includes('refuse')) return false;
  if (text.includes('throw')) throw new Error('bad setting on line 1');
  writeFileSync(process.env.NXT_DATA_DIR + '/applied', name + ': ' + text);
  return 'took ' + name;
}
`;

describe('config jobs', () => {
  it('write, keep the previous, apply through the plugin or put the old one back, and restore', async () => {
    const dir = tempDir('nxt-config-');
    const { proc: server, port } = await startServer(join(dir, 'server'));
    const config = join(dir, 'dev/config');
    mkdirSync(config, { recursive: true });
    writeFileSync(join(config, 'app.conf'), 'v1\n');
    const data = join(dir, 'dev/data');
    const device = await startClient('device', port, data, join(dir, 'server/release.pub'), '127.0.0.1', ['--config-dir', config, '--maintenance', '--poll', '200']);
    const id = device.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    const local = (name: string, text: string): string => { const p = join(dir, name); writeFileSync(p, text); return p; };
    const files = (): [string, string | undefined] => [readFileSync(join(config, 'app.conf'), 'utf8'),
      existsSync(join(config, 'app.conf.previous')) ? readFileSync(join(config, 'app.conf.previous'), 'utf8') : undefined];

    expect(await job(server, `config ${id} ${local('v2', 'v2\n')} app.conf`)).toMatch(/: ok — wrote 3 bytes to config\/app\.conf \(the previous one kept as app\.conf\.previous\)/);
    expect(files()).toEqual(['v2\n', 'v1\n']);
    // The built-in plugin takes no configuration: the file is put back as it was.
    expect(await job(server, `config ${id} ${local('v3', 'v3\n')} app.conf --apply`)).toMatch(/: not applied — config\/app\.conf is as it was: the built-in plugin takes no configuration/);
    expect(files()).toEqual(['v2\n', 'v1\n']);

    const plugin = join(dir, 'configurable_9_2.mjs');
    writeFileSync(plugin, PLUGIN);
    expect(await server.run(`push ${plugin}`, /push finished: .*\n/)).toMatch(/1 done/);
    await device.waitFor(/productName = configurable/);

    expect(await job(server, `config ${id} ${local('v4', 'v4\n')} app.conf --apply`)).toMatch(/: ok — wrote 3 bytes to config\/app\.conf \(the previous one kept as app\.conf\.previous\); applied by the plugin: took app\.conf/);
    expect(files()).toEqual(['v4\n', 'v2\n']);
    expect(readFileSync(join(data, 'applied'), 'utf8')).toBe('app.conf: v4\n');
    // Refused or thrown: the file and its kept version exactly as they were.
    expect(await job(server, `config ${id} ${local('bad1', 'refuse\n')} app.conf --apply`)).toMatch(/: not applied — config\/app\.conf is as it was: its reconfigure\(\) returned false/);
    expect(files()).toEqual(['v4\n', 'v2\n']);
    expect(await job(server, `config ${id} ${local('bad2', 'throw\n')} app.conf --apply`)).toMatch(/: not applied — config\/app\.conf is as it was: its reconfigure\(\) failed: bad setting on line 1/);
    expect(files()).toEqual(['v4\n', 'v2\n']);

    // Restore swaps them, and the plugin takes the restored one.
    expect(await job(server, `config-restore ${id} app.conf --apply`)).toMatch(/: ok — restored config\/app\.conf from app\.conf\.previous .*; applied by the plugin: took app\.conf/);
    expect(files()).toEqual(['v2\n', 'v4\n']);
    expect(readFileSync(join(data, 'applied'), 'utf8')).toBe('app.conf: v2\n');
    expect(await job(server, `config-restore ${id} other.conf`)).toMatch(/: file does not exist — other\.conf\.previous does not exist/);
    // Names that leave the root, or take the kept versions' names, are refused when queued.
    expect(await server.run(`job config ${id} ${local('v5', 'v5\n')} ../escape.conf`, /error.*\n/)).toMatch(/error \[usage\]: .*leaves its root/);
    expect(await server.run(`job config ${id} ${local('v6', 'v6\n')} app.conf.previous`, /error.*\n/)).toMatch(/names ending \.previous hold the kept versions/);
  });
});
