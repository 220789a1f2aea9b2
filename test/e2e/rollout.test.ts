/**
 * Staged rollout campaigns with real processes: ten devices, a module whose selfTest fails on a
 * marked subset, a campaign that pauses by itself at its failure limit without reaching the next
 * stage, a server killed (-9) while it is paused, and the campaign going on after the restart.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Proc, runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** Fails its selfTest on a device whose data dir holds a file named "bad". */
const MODULE = `import { existsSync } from 'node:fs';
export default () => ({ major: 7, minor: 1, productName: 'staged' });
export function selfTest() { if (existsSync(process.env.NXT_DATA_DIR + '/bad')) throw new Error('this device is marked bad'); }
`;

describe('rollout campaigns', () => {
  it('advance stage by stage on commits, pause by themselves at the failure limit, survive a server kill, and finish after resume', async () => {
    const dir = tempDir('nxt-rollout-');
    const state = join(dir, 'server');
    let { proc: server, port } = await startServer(state);
    const devices: { id: string; proc: Proc; data: string }[] = [];
    for (let i = 0; i < 10; i++) {
      const data = join(dir, `d${i}`);
      const proc = await startClient(`d${i}`, port, data, join(state, 'release.pub'), '127.0.0.1', ['--probation', '1.5']);
      devices.push({ id: proc.output.match(/nxt client ([0-9a-f]{12})/)![1]!, proc, data });
    }
    // Campaign order: online devices (all of them) by id. Mark two of stage 2 and one of stage 3 bad.
    devices.sort((a, b) => a.id.localeCompare(b.id));
    for (const i of [2, 3, 7]) writeFileSync(join(devices[i]!.data, 'bad'), '');
    for (const d of devices) await server.run(`tag ${d.id} kiosks`, /is in kiosks/);
    const file = join(dir, 'staged_7_1.mjs');
    writeFileSync(file, MODULE);

    const started = await server.run(`rollout start ${file} --to kiosks --stages 1,50%,100% --success 60% --max-failures 1`, /rollout 1: .*\n/);
    expect(started).toMatch(/to 10 device\(s\) \(group kiosks\) in stages of 1, 5, 10/);
    await server.waitFor(/rollout 1 \(staged_7_1\.mjs 7\.1\.0\): stage 2 of 3 begins: 5 device\(s\)/, 20_000);
    await server.waitFor(/rollout 1 \(staged_7_1\.mjs 7\.1\.0\) paused by itself: 2 devices failed or rolled back, more than the limit of 1 for the 5 reached so far/, 20_000);
    // Paused in stage 2: the devices of stage 3 were never sent anything.
    const status = await server.run('rollout status 1', new RegExp(`${devices[9]!.id}  \\w+.*\\n`));
    expect(status).toMatch(/paused .* stage 2 of 3/);
    for (const d of devices.slice(5)) expect(status).toMatch(new RegExp(`${d.id}  waiting`));
    for (const i of [2, 3]) expect(status).toMatch(new RegExp(`${devices[i]!.id}  failed: .*marked bad`));
    for (const d of devices.slice(5)) expect(d.proc.output).not.toMatch(/receiving staged_7_1/);

    // Killed while paused; the campaign is on disk and goes on after resume.
    // Once the server heard the last of stage 2 commit (and so saved it), it dies.
    await server.waitFor(new RegExp(`client ${devices[4]!.id} committed staged_7_1\\.mjs`), 20_000);
    await server.stop('SIGKILL');
    server = (await startServer(state, [], {}, port)).proc;
    for (const d of devices) await server.waitFor(new RegExp(`client ${d.id} (registered|is back)`), 20_000);
    expect(await server.run('rollout status', /rollout 1: .*\n/)).toMatch(/paused/);
    expect(await server.run('rollout resume', /rollout 1: .*\n/)).toMatch(/running/);
    await server.waitFor(/stage 3 of 3 begins: 10 device\(s\)/, 20_000);
    await server.waitFor(/rollout 1 \(staged_7_1\.mjs 7\.1\.0\) done: 7 committed, 0 already had it, 3 failed or rolled back/, 30_000);
    for (const [i, d] of devices.entries()) {
      const out = await d.proc.run('show version', /Minor = \d+/);
      expect(out).toMatch([2, 3, 7].includes(i) ? /Major = 5\nMinor = 6/ : /Major = 7\nMinor = 1/);
    }
  }, 120_000);

  it('reports a device already on the release as "already", not as a failure, and pause/cancel are the operator\'s', async () => {
    const dir = tempDir('nxt-rollout-');
    const state = join(dir, 'server');
    const { proc: server, port } = await startServer(state);
    const a = await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'), '127.0.0.1', ['--probation', '0.5']);
    const b = await startClient('b', port, join(dir, 'b'), join(state, 'release.pub'), '127.0.0.1', ['--probation', '0.5']);
    const file = join(dir, 'staged_7_1.mjs');
    writeFileSync(file, MODULE);
    await server.run(`push ${file} --to ${a.output.match(/nxt client ([0-9a-f]{12})/)![1]}`, /push finished: 1 done/);
    await a.waitFor(/committed/);
    await server.run('rollout start staged_7_1.mjs --stages 100%', /rollout 1: .*\n/);
    await server.waitFor(/rollout 1 .* done: 1 committed, 1 already had it, 0 failed or rolled back/, 20_000);
    expect(server.output).not.toMatch(/alert|push-failed/);
    await b.waitFor(/committed/);
    expect(await server.run('rollout pause', /error.*\n/)).toMatch(/no campaign is running or paused/);
    expect(await server.run('rollout cancel 1', /error.*\n/)).toMatch(/campaign 1 is done/);
    expect(await server.run('rollout start nothing-like-this', /error.*\n/)).toMatch(/no stored release "nothing-like-this"/);
    expect(await server.run('rollout start latest --stages 0', /error.*\n/)).toMatch(/stage "0"/);
  }, 60_000);

  it('a removed release is refused while a campaign rolls it out, then forgotten: its copy is gone, latest is the one before, also after a restart', async () => {
    const dir = tempDir('nxt-rollout-');
    const state = join(dir, 'server');
    let { proc: server, port } = await startServer(state);
    const a = await startClient('a', port, join(dir, 'a'), join(state, 'release.pub'), '127.0.0.1', ['--probation', '0.5']);
    const first = join(dir, 'staged_7_1.mjs');
    const second = join(dir, 'staged_7_2.mjs');
    writeFileSync(first, MODULE);
    writeFileSync(second, MODULE.replace('minor: 1', 'minor: 2'));
    const shaOf = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
    await server.run(`push ${first}`, /push finished: 1 done/);
    await a.waitFor(/committed/);
    // A campaign for the second, waiting for a window two hours from now (local time, as the server reads it).
    const hhmm = (d: Date): string => `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
    const now = Date.now();
    await server.run(`rollout start ${second} --stages 100% --window ${hhmm(new Date(now + 2 * 3600_000))}-${hhmm(new Date(now + 3 * 3600_000))}`, /rollout 1: .*\n/);
    expect(existsSync(join(state, 'releases', shaOf(second)))).toBe(true);
    expect(await server.run('remove-release 7.2.0', /error.*\n/)).toMatch(/rollout 1 \(running\) rolls out staged_7_2\.mjs 7\.2\.0: cancel it first/);
    await server.run('rollout cancel 1', /cancel/);
    expect(await server.run('remove-release 7.2.0', /removed .*\n/)).toMatch(/removed staged_7_2\.mjs 7\.2\.0 \(sha256 [0-9a-f]{12}…\)/);
    expect(existsSync(join(state, 'releases', shaOf(second)))).toBe(false);
    expect(existsSync(join(state, 'releases', shaOf(first)))).toBe(true);
    expect(await server.run('rollout start 7.2.0', /error.*\n/)).toMatch(/no stored release "7\.2\.0"/);
    expect(await server.run('remove-release 7.2.0', /error.*\n/)).toMatch(/no stored release "7\.2\.0"/);
    // The latest is the first again: the device has it already.
    expect(await server.run('rollout latest', /rollout: .*\n/)).toMatch(/every online client runs staged_7_1\.mjs 7\.1\.0 or newer; nothing sent/);
    expect(a.output).not.toMatch(/Minor = 2/);

    // Remembered across a restart; a copy no record names is deleted at the start.
    await server.stop();
    writeFileSync(join(state, 'releases', 'f'.repeat(64)), 'a stray');
    ({ proc: server, port } = await startServer(state, [], {}, port));
    expect(existsSync(join(state, 'releases', 'f'.repeat(64)))).toBe(false);
    expect(await server.run('rollout start 7.2.0', /error.*\n/)).toMatch(/no stored release "7\.2\.0"/);
    expect(await server.run(`remove-release ${shaOf(first).slice(0, 12)}`, /removed .*\n/)).toMatch(/removed staged_7_1\.mjs 7\.1\.0/);
    expect(existsSync(join(state, 'releases', shaOf(first)))).toBe(false);
    // The history still lists it, as no longer kept.
    expect(await server.run('releases', /staged_7_1\.mjs 7\.1\.0.*\n/)).toMatch(/staged_7_1\.mjs 7\.1\.0 .* not kept here/);
    expect(await server.run('rollout latest', /rollout: .*\n/)).toMatch(/nothing has been pushed yet, so there is no latest release/);
  }, 60_000);
});
