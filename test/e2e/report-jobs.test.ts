/**
 * Status and error reports: `job report` collects each device's own state and its plugin's
 * statusReport() (an oversized or hanging one bounded, not fatal), `report ID` shows the latest,
 * and `clients --where` filters the fleet on the reports' fields.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runningCount, startClient, startServer, stopAll, tempDir } from '../support/processes.js';
import { runJobAt as job } from '../support/jobs.js';

afterEach(async () => {
  await stopAll();
  expect(runningCount()).toBe(0);
});

/** Reports what its data dir's "mode" file says: normal, huge (too big) or hang (never answers). */
const PLUGIN = `import { existsSync, readFileSync } from 'node:fs';
export default () => ({ major: 9, minor: 3, productName: 'reporting' });
export async function statusReport() {
  const file = process.env.NXT_DATA_DIR + '/mode';
  const mode = existsSync(file) ? readFileSync(file, 'utf8').trim() : 'normal';
  if (mode === 'huge') return { blob: 'x'.repeat(100000) };
  if (mode === 'hang') return new Promise(() => {});
  return { sensors: 3, lastReading: 21.5 };
}
`;

/** The JSON document a `--json` command printed (after the prompt, on its own line). */
const jsonLine = (text: string): any => JSON.parse(/\{.*\}/.exec(text)![0]);

describe('status reports', () => {
  it('carry the agent\'s state and the plugin\'s part, bounded; report shows them; clients --where filters on them', async () => {
    const dir = tempDir('nxt-report-');
    const { proc: server, port } = await startServer(join(dir, 'server'));
    const start = async (name: string, extra: string[] = []): Promise<string> => {
      const p = await startClient(name, port, join(dir, name), join(dir, 'server/release.pub'), '127.0.0.1', ['--maintenance', '--poll', '200', ...extra]);
      return p.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    };
    const a = await start('a', ['--device-type', 'gateway']);
    const b = await start('b');
    writeFileSync(join(dir, 'reporting_9_3.mjs'), PLUGIN);
    expect(await server.run(`push ${join(dir, 'reporting_9_3.mjs')} --to ${a}`, /push finished: .*\n/)).toMatch(/1 done/);

    expect(await job(server, `report ${a}`)).toMatch(/: ok — uploaded the status report/);
    const report = jsonLine(await server.run(`report ${a} --json`, /\}\n/));
    expect(report.module).toMatchObject({ name: 'reporting_9_3.mjs', release: '9.3.0', product: '9.3 reporting' });
    expect(report.agent).toMatchObject({ type: 'gateway', channel: 'stable' });
    expect(report.disk!.dataFreeBytes).toBeGreaterThan(0);
    expect(report.plugin).toEqual({ sensors: 3, lastReading: 21.5 });
    expect(await server.run(`report ${a}`, /plugin: .*\n/)).toMatch(/module: name reporting_9_3\.mjs, release 9\.3\.0[\s\S]*disk: dataFreeBytes [\d.]+ [KMGT]iB/);

    // The other device runs the built-in plugin: no plugin part. It has sent none yet.
    expect(await server.run(`report ${b}`, /error.*\n/)).toMatch(/has sent no status report yet/);
    expect(await job(server, `report ${b}`)).toMatch(/: ok/);
    expect(jsonLine(await server.run(`report ${b} --json`, /\}\n/)).plugin).toBeNull();

    // Filtering on the reports: the plugin's release, free space.
    // (A table ends where the next prompt begins.)
    const table = / GROUPS\n[\s\S]*?NxtServer# /;
    const listed = await server.run(`clients --where module.release=9.3.0`, table);
    expect(listed).toMatch(new RegExp(a));
    expect(listed).not.toMatch(new RegExp(b));
    expect(await server.run('clients --where disk.dataFreeBytes<1KiB', /no clients match\n/)).not.toMatch(new RegExp(`${a}|${b}`));
    expect(await server.run('clients --where disk.dataFreeBytes>1KiB', table)).toMatch(new RegExp(`${a}[\\s\\S]*${b}|${b}[\\s\\S]*${a}`));
    expect(await server.run('clients --where "free space"', /error.*\n/)).toMatch(/--where "free space": expected FIELD<VALUE/);

    // A plugin part too big, or one that never answers: the report still comes, saying so.
    writeFileSync(join(dir, 'a', 'mode'), 'huge');
    expect(await job(server, `report ${a}`)).toMatch(/: ok/);
    expect(jsonLine(await server.run(`report ${a} --json`, /\}\n/)).plugin).toEqual({ error: expect.stringMatching(/its statusReport\(\) is \d+ bytes of JSON, more than the 16384 allowed/) });
    writeFileSync(join(dir, 'a', 'mode'), 'hang');
    expect(await job(server, `report ${a}`)).toMatch(/: ok/);
    expect(jsonLine(await server.run(`report ${a} --json`, /\}\n/)).plugin).toEqual({ error: 'its statusReport() did not answer within 2000 ms' });
  });

  it('a device with --report-every has a report queued for it when one is due, and sends it', async () => {
    const dir = tempDir('nxt-report-');
    const { proc: server, port } = await startServer(join(dir, 'server'), ['--renew', '500']);
    const device = await startClient('d', port, join(dir, 'd'), join(dir, 'server/release.pub'), '127.0.0.1', ['--maintenance', '--poll', '200', '--report-every', '2']);
    const id = device.output.match(/nxt client ([0-9a-f]{12})/)![1]!;
    await server.waitFor(new RegExp(`job 1 \\(report\\) queued for ${id}: its report is due`), 10_000);
    await server.waitFor(new RegExp(`job 1 \\(report\\) on ${id}: ok — uploaded the status report`), 10_000);
    // Due again two seconds later (renewals every half second say so once it is).
    await server.waitFor(new RegExp(`job 2 \\(report\\) on ${id}: ok`), 15_000);
    expect(jsonLine(await server.run(`report ${id} --json`, /\}\n/)).agent.channel).toBe('stable');
  });
});
