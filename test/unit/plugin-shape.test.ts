import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { loadPlugin } from '../../src/plugin/plugin-shape.js';
import { tempDir } from '../support/processes.js';

const dir = tempDir('nxt-plugin-');
function moduleUrl(name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return pathToFileURL(path).href;
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try { await p; } catch (err) { return err instanceof NxtError ? err.code : 'not-nxt-error'; }
  return undefined;
}

describe('loading a plugin', () => {
  it('reads the product version from a default export or a named productVersion', async () => {
    expect(await loadPlugin(moduleUrl('a.mjs', 'export default () => ({ major: 8, minor: 6, productName: "nxtgen" });')))
      .toEqual({ major: 8, minor: 6, productName: 'nxtgen' });
    expect(await loadPlugin(moduleUrl('b.mjs', 'export function productVersion() { return { major: 1, minor: 2, productName: "x" }; }')))
      .toEqual({ major: 1, minor: 2, productName: 'x' });
  });

  it('refuses a module that never finishes loading, after the deadline', async () => {
    const started = Date.now();
    const err = await loadPlugin(moduleUrl('hang.mjs', 'await new Promise(() => {}); export default () => ({});'), 200).catch((e: unknown) => e);
    expect((err as NxtError).code).toBe('load-failed');
    expect((err as NxtError).message).toMatch(/did not finish loading within 200 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  const bad: [string, string, string][] = [
    ['a syntax error', 'export default (', 'load-failed'],
    ['a throwing top level', 'throw new Error("boom"); export default () => ({});', 'load-failed'],
    ['no function', 'export const x = 1;', 'bad-shape'],
    ['a function that throws', 'export default () => { throw new Error("no"); };', 'load-failed'],
    ['a negative major', 'export default () => ({ major: -1, minor: 0, productName: "x" });', 'bad-shape'],
    ['an empty product name', 'export default () => ({ major: 1, minor: 0, productName: "" });', 'bad-shape'],
  ];
  bad.forEach(([what, source, code], i) => {
    it(`refuses ${what} with ${code}`, async () => {
      expect(await codeOf(loadPlugin(moduleUrl(`bad${i}.mjs`, source)))).toBe(code);
    });
  });
});
