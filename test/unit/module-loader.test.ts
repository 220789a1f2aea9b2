/** The plugin thread's module loader: in a real worker thread started as the plugin host starts
 *  its own (with `pluginThreadFlags()`), from the compiled code (npm test builds first). */
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { constants } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/processes.js';

const LOADER_URL = new URL('../../dist/plugin/module-loader.js', import.meta.url).href;
const { moduleText, pluginThreadFlags } = (await import(LOADER_URL)) as typeof import('../../src/plugin/module-loader.js');

interface Outcome { via?: string; value?: unknown; error?: string }

/** Loads `url` in a fresh worker given `execArgv`, and calls its default export. `intoBytes`:
 *  the loader reads into memory of that size given to it, filled with other text first. */
async function loadInWorker(url: string, execArgv: string[] = pluginThreadFlags(), intoBytes?: number): Promise<Outcome> {
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const into = workerData.intoBytes === undefined ? undefined : Buffer.alloc(workerData.intoBytes, 'throw 1;\\n');
    import(workerData.loader)
      .then(({ loadModule }) => loadModule(workerData.url, into))
      .then(async ({ exports, via }) => parentPort.postMessage({ via, value: await exports.default() }))
      .catch((err) => parentPort.postMessage({ error: String(err) }));`,
  { eval: true, execArgv, workerData: { loader: LOADER_URL, url, intoBytes } });
  try {
    return await new Promise<Outcome>((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
  } finally {
    await worker.terminate();
  }
}

function moduleFile(dir: string, name: string, text: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return pathToFileURL(path).href;
}

describe('the plugin thread\'s module loader', () => {
  it('compiles a module from its text with vm where the thread has the flags, with import()\'s semantics', async () => {
    const dir = tempDir('nxt-loader-');
    mkdirSync(join(dir, 'lib'));
    moduleFile(dir, 'lib/dep.mjs', 'export const answer = 42;\n');
    const cases: [string, string | Buffer, Outcome][] = [
      ['plain', 'export default () => 7;\n', { via: 'vm', value: 7 }],
      ['built-in modules, under both names', `import { createHash } from 'node:crypto'; import path from 'path'; import * as os from 'os';
        export default () => [createHash('sha256').update('x').digest('hex').slice(0, 8), path.basename('/a/b.txt'), typeof os.cpus];\n`,
      { via: 'vm', value: ['2d711642', 'b.txt', 'function'] }],
      ['import.meta', 'export default () => [import.meta.url.endsWith("/meta.mjs"), import.meta.filename.endsWith("/meta.mjs"), import.meta.resolve("./lib/dep.mjs").endsWith("/lib/dep.mjs"), import.meta.resolve("fs")];\n',
        { via: 'vm', value: [true, true, true, 'node:fs'] }],
      ['top-level await', 'const v = await new Promise((r) => setTimeout(() => r(3), 10)); export default () => v;\n', { via: 'vm', value: 3 }],
      ['dynamic imports, from where the module is', 'export default async () => [(await import("./lib/dep.mjs")).answer, typeof (await import("node:os")).hostname];\n',
        { via: 'vm', value: [42, 'function'] }],
      // Not ASCII: decoded as UTF-8 (as Latin-1 it would be other characters), a byte-order mark dropped.
      ['UTF-8 text', 'export default () => "é ü 日本 🚀";\n', { via: 'vm', value: 'é ü 日本 🚀' }],
      ['a byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('export default () => "bom";\n')]), { via: 'vm', value: 'bom' }],
      // Larger than the 1 MiB or so past which Node makes an external string of Latin-1 text.
      ['4 MiB of ASCII', `/*${'x'.repeat(4 << 20)}*/\nexport default () => "big";\n`, { via: 'vm', value: 'big' }],
      // A static import of anything but a built-in module: import() loads it, nothing having run.
      ['a relative import', 'import { answer } from "./lib/dep.mjs"; globalThis.runs = (globalThis.runs ?? 0) + 1; export default () => [answer, globalThis.runs];\n',
        { via: 'import', value: [42, 1] }],
      ['a JSON import', 'import data from "./lib/data.json" with { type: "json" }; export default () => data.n;\n', { via: 'import', value: 5 }],
      ['a syntax error', 'export default (\n', { error: 'SyntaxError' }],
      ['a throw at the top level', 'throw new Error("boom at load"); export default () => 1;\n', { error: 'boom at load' }],
      ['a missing export of a built-in', 'import { noSuchThing } from "node:fs"; export default () => noSuchThing;\n', { error: 'SyntaxError' }],
      ['a missing package', 'import x from "no-such-package-here"; export default () => x;\n', { error: 'no-such-package-here' }],
    ];
    moduleFile(dir, 'lib/data.json', '{"n":5}');
    for (const [what, text, expected] of cases) {
      const name = what === 'import.meta' ? 'meta.mjs' : `${what.replace(/\W+/g, '-')}.mjs`;
      const got = await loadInWorker(moduleFile(dir, name, text));
      if (expected.error !== undefined) expect(got.error, what).toContain(expected.error);
      else expect(got, what).toEqual(expected);
    }
  });

  it('reads a module into memory reserved for it, its own bytes only, and into its own memory where that is too small', async () => {
    const dir = tempDir('nxt-loader-');
    const text = `/*${'r'.repeat(64 * 1024)}*/\nexport default () => "reserved";\n`;
    const url = moduleFile(dir, 'reserved.mjs', text);
    for (const intoBytes of [text.length, text.length + 4096, 3 * text.length, 1024]) {
      expect(await loadInWorker(url, pluginThreadFlags(), intoBytes), `into ${intoBytes} bytes`).toEqual({ via: 'vm', value: 'reserved' });
    }
  });

  it('refuses a module longer than V8 can compile before reading it', async () => {
    const url = moduleFile(tempDir('nxt-loader-'), 'huge.mjs', '');
    // Sparse: no disk is used. Read, it would be copied twice over before V8 said no.
    truncateSync(new URL(url), constants.MAX_STRING_LENGTH + 1);
    expect((await loadInWorker(url)).error).toContain('longest text V8 can compile');
  });

  it('is import() in a thread without the flags', async () => {
    const dir = tempDir('nxt-loader-');
    expect(await loadInWorker(moduleFile(dir, 'a.mjs', 'export default () => import.meta.url.endsWith("/a.mjs");\n'), [])).toEqual({ via: 'import', value: true });
    expect(pluginThreadFlags(new Set(['--experimental-vm-modules']))).toEqual([]);
  });

  it('reads ASCII as Latin-1 and anything else as UTF-8 without its byte-order mark', () => {
    for (const text of ['', 'export default 1;\n', '\u0000\u007f', 'café', '日本', '\u{1f680}']) {
      expect(moduleText(Buffer.from(text))).toBe(text);
      expect(moduleText(Buffer.from(`\ufeff${text}`))).toBe(text);
    }
  });
});
