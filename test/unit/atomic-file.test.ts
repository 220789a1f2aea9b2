/**
 * Saving and reading state files: the last good copy kept beside each one, and what happens when
 * the file is found damaged at start.
 */
import { chmodSync, existsSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LAST_GOOD_SUFFIX, readStateFile, writeFileAtomic } from '../../src/util/atomic-file.js';
import { tempDir } from '../support/processes.js';

let dir: string;
let path: string;
const parse = (text: string): { n: number } => {
  const v = JSON.parse(text) as { n: number };
  if (typeof v.n !== 'number') throw new Error('no n');
  return v;
};

beforeEach(() => {
  dir = tempDir('nxt-atomic-');
  path = join(dir, 'state.json');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic and readStateFile', () => {
  it('keeps the content before the last save as the last good copy', () => {
    writeFileAtomic(path, '{"n":1}');
    expect(existsSync(path + LAST_GOOD_SUFFIX)).toBe(false);
    writeFileAtomic(path, '{"n":2}');
    writeFileAtomic(path, '{"n":3}');
    expect(readFileSync(path + LAST_GOOD_SUFFIX, 'utf8')).toBe('{"n":2}');
    expect(readStateFile(path, parse)).toEqual({ n: 3 });
    expect(statSync(path + LAST_GOOD_SUFFIX).nlink).toBe(1);
  });

  it('a missing file with no copy is "no state yet"', () => {
    expect(readStateFile(path, parse)).toBeUndefined();
  });

  it('a damaged file falls back to its last good copy, says so, and keeps the damaged one', () => {
    writeFileAtomic(path, '{"n":1}');
    writeFileAtomic(path, '{"n":2}');
    writeFileSync(path, '{"n":2, torn');
    const warnings: string[] = [];
    expect(readStateFile(path, parse, (m) => warnings.push(m))).toEqual({ n: 1 });
    expect(warnings.join()).toContain(`${path} was unreadable`);
    expect(readFileSync(`${path}.unreadable`, 'utf8')).toBe('{"n":2, torn');
    // The copy is back in place: the next start reads it without a warning.
    expect(readStateFile(path, parse, (m) => warnings.push(m))).toEqual({ n: 1 });
    expect(warnings).toHaveLength(1);
    // And the next save works as before.
    writeFileAtomic(path, '{"n":5}');
    expect(readStateFile(path, parse)).toEqual({ n: 5 });
    expect(readFileSync(path + LAST_GOOD_SUFFIX, 'utf8')).toBe('{"n":1}');
  });

  it('a file and copy both damaged is an error naming the file', () => {
    writeFileAtomic(path, '{"n":1}');
    writeFileAtomic(path, '{"n":2}');
    writeFileSync(path, 'x');
    writeFileSync(path + LAST_GOOD_SUFFIX, 'y');
    expect(() => readStateFile(path, parse)).toThrow(`${path} is unreadable`);
    writeFileSync(path, '{"m":1}');
    rmSync(path + LAST_GOOD_SUFFIX);
    expect(() => readStateFile(path, parse)).toThrow(/no n.*there is no last good copy/);
  });

  it('does not follow a link planted at its temporary name', () => {
    const outside = join(dir, 'outside');
    writeFileSync(outside, 'keep me');
    chmodSync(outside, 0o644);
    symlinkSync(outside, `${path}.tmp-${process.pid}`);
    writeFileAtomic(path, '{"n":1}');
    expect(readFileSync(outside, 'utf8')).toBe('keep me');
    expect(statSync(outside).mode & 0o777).toBe(0o644);
    expect(readStateFile(path, parse)).toEqual({ n: 1 });
  });
});
