/** The plugin host's watch over a module's thread: a real worker thread, from the compiled code
 *  (npm test builds first; the worker script is dist's). */
import { constants } from 'node:buffer';
import { appendFileSync, closeSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/processes.js';

const { PluginHost, readAhead, readUpTo, dropSpare, keptReserveBytes, prepareSpare, prepareSpareFor, releaseReserve, reserveUpTo, reservesFor, spareThreads } = (await import(new URL('../../dist/plugin/plugin-host.js', import.meta.url).href)) as typeof import('../../src/plugin/plugin-host.js');

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

/** A module of `size` bytes, version 9.`minor`, written a MiB at a time from one buffer: no
 *  garbage whose collection would lower the RSS a test watches. */
function largeModule(dir: string, name: string, size: number, minor: number): string {
  const file = join(dir, name);
  const tail = `*/\nexport default () => ({ major: 9, minor: ${minor}, productName: 'bulk' });\n`;
  const fd = openSync(file, 'w');
  const filler = Buffer.alloc(1024 * 1024, 'x');
  writeSync(fd, '/*');
  for (let left = size - 2 - tail.length; left > 0; left -= filler.length) writeSync(fd, filler, 0, Math.min(left, filler.length));
  writeSync(fd, tail);
  closeSync(fd);
  return file;
}

/** The module at `url` loads as `product`; then the spares go. */
async function expectLoaded(url: string, sizeBytes: number, product: object): Promise<void> {
  const host = await PluginHost.load(url, { selfTest: false, sizeBytes });
  try {
    expect(host.product).toEqual(product);
  } finally {
    await host.stop();
    await dropSpare();
  }
}

describe('a spare thread told of a large module', () => {
  it('maps the memory the module will be read into before it loads, and loads it from there', async () => {
    const size = 32 * 1024 * 1024;
    const file = largeModule(tempDir('nxt-host-'), 'large_9_4.mjs', size, 4);
    // Measured from no spare at all (the threads of the tests before ended, their memory gone).
    await dropSpare();
    const before = process.memoryUsage.rss();
    prepareSpareFor(size);
    // The spare maps the reserve's pages on its own (no load asked for yet), a step ahead of the
    // bytes received: half of them, then all.
    const grown = async (bytes: number): Promise<number> => {
      const deadline = performance.now() + 10_000;
      while (process.memoryUsage.rss() < before + bytes && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return process.memoryUsage.rss() - before;
    };
    reserveUpTo(size / 2);
    expect(await grown(0.4 * size)).toBeGreaterThan(0.4 * size);
    reserveUpTo(size);
    expect(await grown(0.8 * size)).toBeGreaterThan(0.8 * size);
    const host = await PluginHost.load(pathToFileURL(file).href, { selfTest: false, sizeBytes: size });
    try {
      expect(host.product).toEqual({ major: 9, minor: 4, productName: 'bulk' });
    } finally {
      await host.stop();
      await dropSpare();
    }
  });

  it('reads the text of the module on its way ahead of its load, whose load compiles and runs that text', async () => {
    await dropSpare();
    const dir = tempDir('nxt-host-');
    const size = 8 * 1024 * 1024;
    const marker = join(dir, 'evaluated');
    // As a transfer leaves it: whole at its partial path, to be renamed to its final one.
    const partial = largeModule(dir, 'incoming.part', size, 7);
    const text = readFileSync(partial, 'latin1').replace('export default', `import { appendFileSync } from 'node:fs'; appendFileSync(${JSON.stringify(marker)}, Date.now() + '\\n');\nexport default`);
    writeFileSync(partial, text);
    const url = pathToFileURL(join(dir, 'large_9_7.mjs')).href;
    prepareSpareFor(Buffer.byteLength(text));
    reserveUpTo(Buffer.byteLength(text));
    expect(await readAhead(partial, url)).toMatchObject({ ok: true });
    renameSync(partial, join(dir, 'large_9_7.mjs'));
    // Another module in its place now: the load takes the text read ahead, not this file.
    const later = largeModule(dir, 'other.mjs', 1024, 8);
    renameSync(later, join(dir, 'large_9_7.mjs'));
    const asked = Date.now();
    const host = await PluginHost.load(url, { selfTest: false, sizeBytes: Buffer.byteLength(text) });
    try {
      expect(host.product).toEqual({ major: 9, minor: 7, productName: 'bulk' });
      // Its top level ran once, when its load was asked for, not when it was compiled.
      const runs = readFileSync(marker, 'utf8').trim().split('\n').map(Number);
      expect(runs).toHaveLength(1);
      expect(runs[0]).toBeGreaterThanOrEqual(asked);
    } finally {
      await host.stop();
      await dropSpare();
    }
  });

  it('reads the module into its reserve as its writes land, and makes its text of those bytes (UTF-8 split between two reads decoded whole)', async () => {
    await dropSpare();
    const dir = tempDir('nxt-host-');
    const text = Buffer.from(`/*${'x'.repeat(5 * 1024 * 1024)}*/\nexport default () => ({ major: 9, minor: 9, productName: 'b\u00fclk' });\n`);
    // The first write ends inside the two bytes of "ü".
    const split = text.indexOf(Buffer.from('\u00fc')) + 1;
    const partial = join(dir, 'incoming.part');
    writeFileSync(partial, text.subarray(0, split));
    const st = statSync(partial, { bigint: true });
    const identity = `${st.dev}:${st.ino}`;
    prepareSpareFor(text.length);
    readUpTo(partial, identity, split);
    appendFileSync(partial, text.subarray(split));
    readUpTo(partial, identity, text.length);
    const url = pathToFileURL(join(dir, 'large_9_9.mjs')).href;
    // All of it read while it "arrived": none after.
    expect(await readAhead(partial, url)).toEqual({ ok: true, early: text.length });
    renameSync(partial, fileURLToPath(url));
    await expectLoaded(url, text.length, { major: 9, minor: 9, productName: 'b\u00fclk' });
  });

  it('reads into its reserve only the file it was named (not one at its name since), and reads the module whole when that is not the file there', async () => {
    await dropSpare();
    const dir = tempDir('nxt-host-');
    const size = 8 * 1024 * 1024;
    const partial = largeModule(dir, 'incoming.part', size, 3);
    const st = statSync(partial, { bigint: true });
    // Another file's identity: not read.
    prepareSpareFor(size);
    readUpTo(partial, `${st.dev}:${st.ino + 1n}`, size);
    expect(await readAhead(partial, pathToFileURL(join(dir, 'a_9_3.mjs')).href)).toEqual({ ok: true, early: 0 });
    // Read as it arrived, then another module put at its name: the text is the one there.
    prepareSpareFor(size);
    readUpTo(partial, `${st.dev}:${st.ino}`, size / 2);
    renameSync(largeModule(dir, 'other.part', size, 4), partial);
    const url = pathToFileURL(join(dir, 'b_9_4.mjs')).href;
    expect(await readAhead(partial, url)).toEqual({ ok: true, early: 0 });
    renameSync(partial, fileURLToPath(url));
    await expectLoaded(url, size, { major: 9, minor: 4, productName: 'bulk' });
  });

  it('reads ahead a module already renamed, and refuses at its load one that is not a module', async () => {
    await dropSpare();
    const dir = tempDir('nxt-host-');
    const size = 8 * 1024 * 1024;
    const file = largeModule(dir, 'large_9_5.mjs', size, 5);
    prepareSpareFor(size);
    // Renamed before the spare got to it: read where it went.
    expect(await readAhead(join(dir, 'gone.part'), pathToFileURL(file).href)).toMatchObject({ ok: true });
    const host = await PluginHost.load(pathToFileURL(file).href, { selfTest: false, sizeBytes: size });
    expect(host.product).toEqual({ major: 9, minor: 5, productName: 'bulk' });
    await host.stop();
    const broken = join(dir, 'broken_9_6.mjs');
    writeFileSync(broken, `${readFileSync(file, 'latin1')}\nexport default 1;\n`);
    prepareSpareFor(size);
    // Its text is read ahead (bytes only): the load finds it is not a module.
    expect(await readAhead(broken, pathToFileURL(broken).href)).toMatchObject({ ok: true });
    await expect(PluginHost.load(pathToFileURL(broken).href, { selfTest: false, sizeBytes: size })).rejects.toMatchObject({ code: 'load-failed', message: expect.stringMatching(/^module failed to load: .*(declared|[Dd]uplicate)/) });
    await dropSpare();
  });

  it('keeps a spare that reserves for a module on its way when the usual spares are restocked, until the reserve is let go', async () => {
    await dropSpare();
    const size = 64 * 1024 * 1024;
    // Its heap: 320 MiB, more than the usual 256.
    prepareSpareFor(size);
    expect(spareThreads()).toEqual([{ heapMb: 320, reservedBytes: size }]);
    // As at the end of a trial: the usual spares are started again.
    prepareSpare();
    expect(spareThreads()).toContainEqual({ heapMb: 320, reservedBytes: size });
    expect(spareThreads()).toContainEqual({ heapMb: 256, reservedBytes: 0 });
    // The transfer stopped: the next restocking ends it.
    releaseReserve();
    prepareSpare();
    expect(spareThreads().filter((s) => s.heapMb !== 256)).toEqual([]);
    await dropSpare();
  });

  it('reserves for modules from 4 MiB up to what V8 can compile, where the memory there is holds them twice', () => {
    const MiB = 1024 * 1024;
    expect(reservesFor(4 * MiB - 1, 1024 * MiB)).toBe(false);
    expect(reservesFor(4 * MiB, 1024 * MiB)).toBe(true);
    expect(reservesFor(128 * MiB, 256 * MiB)).toBe(true);
    expect(reservesFor(128 * MiB, 256 * MiB - 1)).toBe(false);
    expect(reservesFor(constants.MAX_STRING_LENGTH, 4 * constants.MAX_STRING_LENGTH)).toBe(true);
    expect(reservesFor(constants.MAX_STRING_LENGTH + 1, 4 * constants.MAX_STRING_LENGTH)).toBe(false);
  });
});

describe('a running module\'s memory watch', () => {
  it('does not take the memory of the next module\'s reserve and trial for the running module\'s, and still counts the module\'s own', async () => {
    const dir = tempDir('nxt-host-');
    const small = join(dir, 'small.mjs');
    writeFileSync(small, "export default () => ({ major: 1, minor: 0, productName: 'small' });\n"
      + 'export function healthCheck() { globalThis.kept = Buffer.alloc(640 * 1024 * 1024, 1); return true; }\n');
    // The least growth a module is allowed: 128 MiB (twice the smallest heap, 64 MiB).
    const running = await PluginHost.load(pathToFileURL(small).href, { selfTest: false, limits: { heapMb: 16, rssGrowthMb: 16 } });
    const failures: string[] = [];
    running.on('failed', (err: Error) => failures.push(err.message));
    try {
      // 80 MiB reserved, then read and decoded into as much again, a thread: more than 128 MiB.
      const size = 80 * 1024 * 1024;
      const file = largeModule(dir, 'large_9_6.mjs', size, 6);
      prepareSpareFor(size);
      const trial = await PluginHost.load(pathToFileURL(file).href, { selfTest: false, sizeBytes: size });
      // The running module's memory is looked at every 100 ms, a ping every fifth tick.
      for (let i = 0; i < 5; i++) await running.nextAnswer();
      expect(failures).toEqual([]);
      await trial.stop();
      // Its own 640 MiB: more than its 128 and what is held for the trial (240 MiB) together.
      // (It fails while allocating: the check does not wait for it.)
      await running.healthCheck(5_000).catch(() => undefined);
      const deadline = performance.now() + 5_000;
      while (failures.length === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(failures[0]).toMatch(/memory grew by more than 128 MiB/);
    } finally {
      await running.stop();
      await dropSpare();
    }
  });
});

// Last: what it holds is counted as held for a while after (held-memory.ts), which the memory
// watch above would take into account.
describe('a reserve done with', () => {
  // On a VM that hands freed memory back to its host, taking it again costs as much as fresh
  // memory: the next module's reserve is the last one's, its pages mapped already.
  it('keeps the reserve of a module that loaded for the next module, which maps none of it again', async () => {
    await dropSpare();
    const dir = tempDir('nxt-host-');
    const size = 32 * 1024 * 1024;
    const kept = async (): Promise<number> => {
      const deadline = performance.now() + 10_000;
      while (keptReserveBytes() === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      return keptReserveBytes();
    };
    const faults = (): number => process.resourceUsage().minorPageFault;
    const pushed = async (minor: number): Promise<number> => {
      const file = largeModule(dir, `large_9_${minor}.mjs`, size, minor);
      const before = faults();
      prepareSpareFor(size);
      reserveUpTo(size);
      // Read ahead: the reserve mapped and read, the text made (its own fresh memory).
      expect(await readAhead(file, pathToFileURL(file).href)).toMatchObject({ ok: true });
      const mapped = faults() - before;
      const host = await PluginHost.load(pathToFileURL(file).href, { selfTest: false, sizeBytes: size });
      expect(host.product).toEqual({ major: 9, minor, productName: 'bulk' });
      await host.stop();
      return mapped;
    };
    try {
      const first = await pushed(1);
      expect(await kept()).toBe(size);
      const second = await pushed(2);
      // The first mapped its reserve and its text (a fault a 4 KiB page, fewer in huge pages);
      // the second its text alone.
      expect(second, `page faults: ${first} then ${second}`).toBeLessThan(0.75 * first);
      expect(await kept()).toBe(size);
      // A module larger than what is kept: fresh memory, and what was kept goes.
      prepareSpareFor(2 * size);
      expect(keptReserveBytes()).toBe(0);
      releaseReserve();
      expect(await kept()).toBe(2 * size);
      // Reserved again, released, and its spare no longer wanted at once (the usual spares asked
      // for, as after a trial): the thread ends only once the memory is back.
      prepareSpareFor(2 * size);
      expect(keptReserveBytes()).toBe(0);
      releaseReserve();
      prepareSpare();
      expect(await kept()).toBe(2 * size);
      // One with no reserve at all (it waits for an upgrade): what was kept goes too.
      prepareSpareFor(size, undefined, { reserve: false });
      expect(keptReserveBytes()).toBe(0);
    } finally {
      await dropSpare();
    }
    expect(keptReserveBytes()).toBe(0);
  });

  // The module runs in the thread that hands the reserve back, and may post messages of its own.
  it('is kept only as memory moved to the agent, never as memory a module could still write', async () => {
    await dropSpare();
    const dir = tempDir('nxt-host-');
    const sends = (name: string, memory: string): string => {
      const file = join(dir, name);
      writeFileSync(file, "import { parentPort } from 'node:worker_threads';\n"
        + `const memory = ${memory};\nparentPort.postMessage({ type: 'memory', memory }, memory instanceof ArrayBuffer ? [memory] : []);\n`
        + "export default () => ({ major: 1, minor: 0, productName: 'sender' });\n");
      return pathToFileURL(file).href;
    };
    try {
      // Messages arrive in order: by its 'loaded', the agent has read the module's message.
      const moved = await PluginHost.load(sends('moved.mjs', 'new ArrayBuffer(4 * 1024 * 1024)'), { selfTest: false });
      expect(keptReserveBytes()).toBe(4 * 1024 * 1024);
      await moved.stop();
      const shared = await PluginHost.load(sends('shared.mjs', 'new SharedArrayBuffer(8 * 1024 * 1024)'), { selfTest: false });
      expect(keptReserveBytes()).toBe(0);
      await shared.stop();
    } finally {
      await dropSpare();
    }
  });
});
