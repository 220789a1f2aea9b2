/**
 * State files on a really full filesystem (a small tmpfs; mounting needs root, which CI has: the
 * tests say why they skip elsewhere).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NxtError } from '../../src/errors.js';
import { JobStore } from '../../src/server/job-store.js';
import { writeFileAtomic } from '../../src/util/atomic-file.js';
import { tempDir } from '../support/processes.js';

const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;
let dir: string;

beforeEach(() => {
  if (!canMount) return;
  dir = tempDir('nxt-full-');
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
});

afterEach(() => {
  if (canMount) spawnSync('umount', [dir]);
});

/** Fill the filesystem, then free 8 KiB: a bigger write then takes only part of its bytes, with
 *  no error (the call after it gets ENOSPC), which is what tore state files before. */
function fill(): void {
  writeFileSync(join(dir, 'spare'), Buffer.alloc(8192));
  try { writeFileSync(join(dir, 'ballast'), Buffer.alloc(1024 * 1024)); } catch { /* full: that is the point */ }
  execFileSync('rm', [join(dir, 'spare')]);
}

describe.skipIf(!canMount)('on a full disk (tmpfs, needs root)', () => {
  it('an atomic write that does not fit fails with "the disk is full" and leaves the old file whole', () => {
    const path = join(dir, 'state.json');
    writeFileAtomic(path, '{"old":true}\n');
    fill();
    let err: unknown;
    try { writeFileAtomic(path, `${JSON.stringify({ big: 'x'.repeat(20_000) })}\n`); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(NxtError);
    expect((err as NxtError).code).toBe('ENOSPC');
    expect((err as NxtError).message).toMatch(/the disk is full/);
    expect(readFileSync(path, 'utf8')).toBe('{"old":true}\n');
    // No temporary file left behind to take space.
    expect(execFileSync('ls', [dir], { encoding: 'utf8' }).split('\n').filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a job that cannot be saved is not queued, and the jobs saved before are intact after a restart', () => {
    const store = new JobStore(dir);
    const kept = store.add('a'.repeat(32), 'logs', { filter: 'x' }, new Date());
    fill();
    expect(() => store.add('a'.repeat(32), 'logs', { pattern: 'y'.repeat(30_000) }, new Date())).toThrow(/the disk is full/);
    expect(store.list().map((j) => j.id)).toEqual([kept.id]);
    const again = new JobStore(dir);
    expect(again.list().map((j) => j.id)).toEqual([kept.id]);
  });
});
