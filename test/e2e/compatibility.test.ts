/**
 * Releases made for some kinds of device: a fleet of gateways and a kiosk, on two channels. A
 * release signed `--for type=gateway` reaches the gateways only (the kiosk is skipped, and says
 * nothing of it); `--to channel:beta` picks a channel; and a device repurposed during a rollout
 * (it was a gateway when the campaign began) refuses the signed release itself when it comes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

const module = (major: number, minor: number): string => `export default () => ({ major: ${major}, minor: ${minor}, productName: 'nxtgen' });\n`;

describe('releases made for some devices', () => {
  it('reach only the devices they are for, by type and by channel, and the clients table says which is which', async () => {
    const dir = tempDir('nxt-compat-');
    const state = join(dir, 'server');
    const { proc: server, port } = await startServer(state);
    const trust = join(state, 'release.pub');
    const start = async (name: string, extra: string[]): Promise<{ id: string; output: () => string }> => {
      const p = await startClient(name, port, join(dir, name), trust, '127.0.0.1', extra);
      return { id: p.output.match(/nxt client ([0-9a-f]{12})/)![1]!, output: () => p.output };
    };
    const gw = await start('gw', ['--device-type', 'gateway']);
    const beta = await start('beta', ['--device-type', 'gateway', '--channel', 'beta']);
    const kiosk = await start('kiosk', ['--device-type', 'kiosk']);

    // The table's rows (not a registration line that may come in between): the last one ends it.
    const listed = await server.run('clients', new RegExp(`${kiosk.id} +\\S+ +kiosk .*\\n`));
    expect(listed).toMatch(new RegExp(`${gw.id} +\\S+ +gateway +stable `));
    expect(listed).toMatch(new RegExp(`${beta.id} +\\S+ +gateway +beta `));
    expect(listed).toMatch(new RegExp(`${kiosk.id} +\\S+ +kiosk +stable `));

    writeFileSync(join(dir, 'gwonly_2_0.mjs'), module(8, 1));
    const pushed = await server.run(`push ${join(dir, 'gwonly_2_0.mjs')} --for type=gateway`, /push finished: .*\n/);
    expect(pushed).toMatch(new RegExp(`${kiosk.id} skipped: not for this device \\(it is for type gateway; this device's type is kiosk\\)`));
    expect(pushed).toMatch(/to 2 client\(s\)[\s\S]*push finished: 2 done, 0 failed/);
    expect(kiosk.output()).not.toMatch(/receiving gwonly/);

    writeFileSync(join(dir, 'beta_3_0.mjs'), module(8, 2));
    expect(await server.run(`push ${join(dir, 'beta_3_0.mjs')} --to channel:beta`, /push finished: .*\n/)).toMatch(/to 1 client\(s\)[\s\S]*push finished: 1 done, 0 failed/);
    expect(beta.output()).toMatch(/receiving beta_3_0/);
    expect(gw.output()).not.toMatch(/receiving beta_3_0/);

    // Nothing it is for: nothing sent, and said (exit 1 under ctl).
    writeFileSync(join(dir, 'arm_4_0.mjs'), module(8, 3));
    expect(await server.run(`push ${join(dir, 'arm_4_0.mjs')} --for arch=riscv64`, /error.*\n/)).toMatch(/is for arch=riscv64: none of the 3 online client\(s\) named is; nothing sent/);
    expect(await server.run(`push ${join(dir, 'arm_4_0.mjs')} --for colour=red`, /error.*\n/)).toMatch(/error \[usage\]: --for "colour=red"/);
  });

  it('a device that is not what the release is for refuses it, whoever sends it', async () => {
    const dir = tempDir('nxt-compat-');
    const state = join(dir, 'server');
    const { proc: server, port } = await startServer(state);
    const trust = join(state, 'release.pub');
    const devices = [];
    for (const name of ['a', 'b']) {
      const p = await startClient(name, port, join(dir, name), trust, '127.0.0.1', ['--device-type', 'gateway', '--probation', '1']);
      devices.push({ name, id: p.output.match(/nxt client ([0-9a-f]{12})/)![1]!, proc: p });
    }
    // Campaign order is by id: the first gets stage 1, the second waits for stage 2.
    devices.sort((x, y) => x.id.localeCompare(y.id));
    const [first, second] = devices as [typeof devices[0], typeof devices[0]];
    writeFileSync(join(dir, 'gw_2_0.mjs'), module(8, 1));
    await server.run(`rollout start ${join(dir, 'gw_2_0.mjs')} --for type=gateway --stages 1,100%`, /rollout 1: .*\n/);
    await server.run('rollout pause 1', /rollout 1: .*\n/);
    // The second device is repurposed while the campaign waits: now a kiosk.
    await second.proc.stop();
    const kiosk = await startClient('b2', port, join(dir, second.name), trust, '127.0.0.1', ['--device-type', 'kiosk']);
    await server.waitFor(new RegExp(`client ${first.id} committed gw_2_0\\.mjs`), 20_000);
    await server.run('rollout resume 1', /rollout 1: .*\n/);
    // The campaign sends it (its members were fixed at the start); the device checks the signed
    // manifest itself and refuses.
    await server.waitFor(new RegExp(`${second.id} .*failed \\(notForDevice\\): not for this device: it is for type gateway; this device's type is kiosk`), 20_000);
    expect(kiosk.output).toMatch(/update refused: not for this device: it is for type gateway; this device's type is kiosk/);
    expect(kiosk.output).not.toMatch(/Major = 8/);
  });
});
