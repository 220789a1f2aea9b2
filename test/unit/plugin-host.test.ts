/** The plugin host's watch over a module's thread: a real worker thread, from the compiled code
 *  (npm test builds first; the worker script is dist's). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/processes.js';

const { PluginHost } = (await import(new URL('../../dist/plugin/plugin-host.js', import.meta.url).href)) as typeof import('../../src/plugin/plugin-host.js');

/** An idle module watched with `hangMs` (and committed with `committedHangMs`, if given): the
 *  watch's ticks and pings while its thread answered three pings, and its tick. */
async function watchedIdle(hangMs: number, committedHangMs?: number): Promise<{ ticks: number; pings: number; tickMs: number }> {
  const file = join(tempDir('nxt-host-'), 'idle.mjs');
  writeFileSync(file, "export default () => ({ major: 1, minor: 0, productName: 'idle' });\n");
  const host = await PluginHost.load(pathToFileURL(file).href, { selfTest: false, limits: { hangMs } });
  try {
    if (committedHangMs !== undefined) host.commit(committedHangMs);
    const before = host.watched;
    for (let i = 0; i < 3; i++) await host.nextAnswer();
    const after = host.watched;
    return { ticks: after.ticks - before.ticks, pings: after.pings - before.pings, tickMs: after.tickMs };
  } finally {
    await host.stop();
  }
}

describe('the plugin host watch', () => {
  it('pings a module ten times a hang limit, not at every tick of its memory watch (an idle device\'s thread wakes twice a second under the default 5 s)', async () => {
    const { ticks, pings, tickMs } = await watchedIdle(2_000);
    expect(pings).toBeGreaterThanOrEqual(3);
    // 2 s: a ping every 200 ms, every second tick of 100 ms.
    expect(tickMs).toBe(100);
    expect(ticks).toBeGreaterThanOrEqual(2 * pings - 1);
    expect(ticks).toBeLessThanOrEqual(2 * pings + 1);
  });

  it('pings at every tick when the hang limit is short (half a 1 s probation)', async () => {
    const { ticks, pings, tickMs } = await watchedIdle(500);
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(ticks).toBe(pings);
    expect(tickMs).toBe(100);
  });

  it('committed, looks at the module (memory and a ping) every tenth of the committed limit', async () => {
    const { ticks, pings, tickMs } = await watchedIdle(500, 2_000);
    expect(tickMs).toBe(200);
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(ticks).toBe(pings);
  });
});
