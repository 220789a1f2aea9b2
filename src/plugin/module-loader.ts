/**
 * Loads a plugin module (an ES module file) in the plugin thread, cheaper than `import()` for
 * big modules.
 *
 * `import(url)` reads the file and decodes it as UTF-8 into a string on V8's heap: for a 128 MiB
 * module on the benchmark VM that was ~0.5 s, mostly the decoder and the page faults of 128 MiB of
 * fresh heap (V8's pages are 4 KiB ones; the client's huge pages do not reach them). A module
 * that is all ASCII (nearly every one: bundlers escape the rest) is the same text read as
 * Latin-1, which Node hands to V8 as an external string: a copy into memory of its own, no
 * decoding, no heap. `vm.SourceTextModule` compiles such a string as the module it is: same
 * semantics, same errors, top-level await, `import.meta.url`. In a worker of its own, import()
 * of that 128 MiB module took 549–737 ms; this 116–248 ms.
 *
 * `vm.SourceTextModule` exists only with `--experimental-vm-modules` (pluginThreadFlags(), given
 * to the plugin thread alone); without it, and for a module that imports anything but Node's
 * built-in modules (found out while linking, before any of its code runs), this is import().
 */
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';
import { constants, isAscii } from 'node:buffer';
import { readFullySync } from '../util/read-fully.js';

/** Node options the plugin thread is started with, where this Node has them: VM modules, and
 *  no warning on stderr that they are experimental. */
export function pluginThreadFlags(allowed: ReadonlySet<string> = process.allowedNodeEnvironmentFlags): string[] {
  return allowed.has('--experimental-vm-modules') && allowed.has('--disable-warning')
    ? ['--experimental-vm-modules', '--disable-warning=ExperimentalWarning']
    : [];
}

/** The module's text as V8 should get it: ASCII as Latin-1 (the same characters; Node makes an
 *  external string of a large one), anything else decoded as import() decodes it (UTF-8, a
 *  leading byte-order mark dropped). `ascii`: whether the bytes are all ASCII, if that is known. */
export function moduleText(bytes: Buffer, ascii = isAscii(bytes)): string {
  return ascii ? bytes.toString('latin1') : new TextDecoder().decode(bytes);
}

/** Refuses a module longer than V8 compiles: checked before reading, since V8 would refuse the
 *  text only once Node had copied it (twice the module's size in memory for nothing; 2.2 GB for a
 *  1 GiB module). */
export function checkTextLength(size: number): void {
  if (size > constants.MAX_STRING_LENGTH) throw new RangeError(`it is ${size} bytes, more than the longest text V8 can compile (${constants.MAX_STRING_LENGTH} characters)`);
}

/** The first `buf.length` bytes of the file at `path`, read into `buf` (fewer if it is shorter). */
function readInto(path: string, buf: Buffer): Buffer {
  const fd = openSync(path, 'r');
  try {
    return buf.subarray(0, readFullySync(fd, buf, 0));
  } finally {
    closeSync(fd);
  }
}

/** A static import this loader leaves to import(): the module goes there whole. */
class NotBuiltin extends Error {}

type Namespace = Record<string, unknown>;

/** A loaded module: its namespace, and how it was compiled (from its text in this thread with
 *  `vm`, or by `import()`). */
export interface LoadedModule {
  readonly exports: Namespace;
  readonly via: 'vm' | 'import';
}

/** Where `specifier`, imported by the module at `url`, is: as import() would resolve it, except
 *  that a package is found the way require() finds it from the module's directory. */
function resolveFrom(url: string, specifier: string): string {
  if (isBuiltin(specifier)) return specifier.startsWith('node:') ? specifier : `node:${specifier}`;
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) return specifier;
  if (specifier.startsWith('/') || specifier.startsWith('./') || specifier.startsWith('../')) return new URL(specifier, url).href;
  return pathToFileURL(createRequire(url).resolve(specifier)).href;
}

/** A built-in module as a vm module: its exports as they are when the plugin links. */
async function builtinModule(specifier: string): Promise<vm.Module> {
  const ns = (await import(specifier)) as Namespace;
  const names = Object.keys(ns);
  return new vm.SyntheticModule(names, function (this: vm.SyntheticModule) {
    for (const name of names) this.setExport(name, ns[name]);
  }, { identifier: specifier });
}

/** The module at `url` (a file: URL), linked and evaluated: its namespace. Rejects as import()
 *  would: a syntax error, a throw or rejection at its top level, an import that is not there.
 *  `into`: memory to read the module into, if it is large enough (the plugin thread's reserve,
 *  whose pages are mapped already); else the module is read into memory of its own.
 *  `text`: the module's text read ahead of its load (readModuleText), if it was. */
export async function loadModule(url: string, into?: Buffer, text?: string): Promise<LoadedModule> {
  if (typeof vm.SourceTextModule !== 'function') return { exports: (await import(url)) as Namespace, via: 'import' };
  const filename = fileURLToPath(url);
  const module = new vm.SourceTextModule(text ?? readModuleText(filename, into), {
    identifier: url,
    initializeImportMeta(meta) {
      Object.assign(meta, { url, filename, dirname: dirname(filename), resolve: (specifier: string) => resolveFrom(url, specifier) });
    },
    // A dynamic import() in the module, resolved from where the module is (not from this file).
    // Node takes a namespace here as well as a vm.Module (so its documentation; not its types).
    importModuleDynamically: (specifier) => import(resolveFrom(url, specifier)) as Promise<never>,
  });
  try {
    // Called once for each distinct specifier (V8 merges a module's repeated imports of one).
    await module.link((specifier, _referencing, extra) => {
      // Import attributes (`with { type: 'json' }`) and anything not built in: import()'s job.
      if (!isBuiltin(specifier) || Object.keys(extra.attributes ?? extra.assert ?? {}).length > 0) throw new NotBuiltin(specifier);
      return builtinModule(specifier);
    });
  } catch (err) {
    // Nothing of the module has run: import() may load it afresh.
    if (err instanceof NotBuiltin) return { exports: (await import(url)) as Namespace, via: 'import' };
    throw err;
  }
  await module.evaluate();
  return { exports: module.namespace as Namespace, via: 'vm' };
}

/**
 * The text of the module file at `path`, as loadModule compiles it: read (into `into` if it is
 * large enough), made a string. Bytes only: nothing parses it here, so it may be read before the
 * file's digest is checked (the plugin thread does, for a large module: plugin-host.ts,
 * readAhead); only loadModule, after that check, compiles it.
 */
export function readModuleText(path: string, into?: Buffer): string {
  const size = statSync(path).size;
  checkTextLength(size);
  // Read at once: this thread has nothing else to do meanwhile, and 128 MiB through libuv's pool,
  // half a MiB a hop, took twice as long.
  const bytes = into !== undefined && into.length >= size ? readInto(path, into.subarray(0, size)) : readFileSync(path);
  return moduleText(bytes);
}
