/** Maintenance jobs on the device: roots, the log filter, and the job runner on real files. */
import { mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JobCode, JobKind } from '../../src/protocol/messages.js';
import { runJob } from '../../src/jobs/job-runner.js';
import { matches } from '../../src/jobs/log-filter.js';
import { existingUnder, nameUnder, newFileUnder, type Roots } from '../../src/jobs/roots.js';
import { tempDir } from '../support/processes.js';

function device(): { roots: Roots; work: string; outside: string } {
  const base = tempDir('nxt-jobs-');
  const roots = { logs: join(base, 'logs'), config: join(base, 'config'), dropbox: join(base, 'dropbox') };
  for (const d of [...Object.values(roots), join(base, 'work'), join(base, 'outside')]) mkdirSync(d);
  writeFileSync(join(base, 'outside/secret'), 'not yours\n');
  return { roots, work: join(base, 'work'), outside: join(base, 'outside') };
}

describe('device roots', () => {
  it('refuse names that leave the root', () => {
    for (const bad of ['../etc/passwd', '/etc/passwd', 'a/../../b', './x', 'C:\\\\x', 'a\\u0000b', '', 'x\\\\y']) {
      expect(() => nameUnder('/r', bad), bad).toThrow(expect.objectContaining({ code: 'invalid-job' }));
    }
    expect(nameUnder('/r', 'sub/app.log')).toBe('/r/sub/app.log');
  });

  it('refuse a link that leads out, for reading and for writing', () => {
    const { roots, outside } = device();
    symlinkSync(join(outside, 'secret'), join(roots.config, 'escape'));
    symlinkSync(outside, join(roots.dropbox, 'out'));
    expect(() => existingUnder(roots.config, 'escape')).toThrow(/leads out of its root/);
    expect(() => newFileUnder(roots.dropbox, 'out/new')).toThrow(/leads out of its root/);
    expect(() => existingUnder(roots.config, 'missing')).toThrow(expect.objectContaining({ code: 'no-such-file' }));
  });
});

describe('the log filter', () => {
  const at = (iso: string): number => Date.parse(iso);
  it('keeps lines within the time range, at least the severity, matching the pattern', () => {
    const f = { since: at('2026-11-23T10:00:00Z'), until: at('2026-11-23T11:00:00Z'), severity: 'warning', grep: /disk/ };
    expect(matches('2026-11-23T10:30:00Z ERROR disk full', f)).toBe(true);
    expect(matches('2026-11-23 10:30:00Z [WARN] disk slow', f)).toBe(true);
    expect(matches('2026-11-23T10:30:00Z INFO disk fine', f)).toBe(false); // severity
    expect(matches('2026-11-23T11:00:00Z ERROR disk full', f)).toBe(false); // until is exclusive
    expect(matches('2026-11-23T09:59:59Z ERROR disk full', f)).toBe(false);
    expect(matches('2026-11-23T10:30:00Z ERROR net down', f)).toBe(false); // grep
    expect(matches('no timestamp ERROR disk', f)).toBe(false);
    expect(matches('no timestamp at all', {})).toBe(true);
  });
});

describe('the job runner', () => {
  it('extracts exactly the matching log lines into a file to upload', async () => {
    const { roots, work } = device();
    writeFileSync(join(roots.logs, 'app.log'), [
      '2026-11-23T09:00:00Z ERROR too early',
      '2026-11-23T10:00:00Z ERROR kept one',
      '2026-11-23T10:10:00Z INFO not severe enough',
      '2026-11-23T10:20:00Z CRIT kept two',
      '2026-11-23T12:00:00Z ERROR too late',
    ].join('\n'));
    const plan = await runJob(JobKind.logs, JSON.stringify({ file: 'app.log', since: '2026-11-23T10:00:00Z', until: '2026-11-23T11:00:00Z', severity: 'error' }), roots, work, 7, Date.now());
    expect(plan).toMatchObject({ then: 'upload', name: 'logs-job-7.txt', message: '2 of 5 lines from 1 file(s)' });
    if (plan.then !== 'upload') throw new Error('no upload');
    expect(readFileSync(plan.path, 'utf8')).toBe('2026-11-23T10:00:00Z ERROR kept one\n2026-11-23T10:20:00Z CRIT kept two\n');
  });

  it('cuts a log line longer than 64 KiB there and says so (a file without line ends is no longer one string)', async () => {
    const { roots, work } = device();
    writeFileSync(join(roots.logs, 'app.log'), `2026-11-23T10:00:00Z ERROR disk ${'x'.repeat(100_000)}\n2026-11-23T10:00:01Z ERROR disk full\n`);
    const plan = await runJob(JobKind.logs, JSON.stringify({ grep: 'disk' }), roots, work, 10, Date.now());
    expect(plan).toMatchObject({ then: 'upload', message: '2 of 2 lines from 1 file(s); 1 line(s) longer than 64 KiB cut there' });
    if (plan.then !== 'upload') throw new Error('no upload');
    expect(readFileSync(plan.path, 'utf8').split('\n').map((l) => l.length)).toEqual([64 * 1024, 36, 0]);
  });

  it('runs any --grep in linear time, and refuses one that only backtracking could run', async () => {
    const { roots, work } = device();
    // Against a backtracking engine `(a+)+$` takes ~2^32 steps on this line (minutes): the
    // device's agent, which runs its jobs, would hang with it.
    writeFileSync(join(roots.logs, 'app.log'), ['2026-11-23T10:00:00Z ERROR aaaa', `2026-11-23T10:00:01Z ERROR ${'a'.repeat(32)}b`].join('\n'));
    const started = performance.now();
    const plan = await runJob(JobKind.logs, JSON.stringify({ file: 'app.log', grep: '(a+)+$' }), roots, work, 8, Date.now());
    expect(performance.now() - started).toBeLessThan(2000);
    expect(plan).toMatchObject({ then: 'upload', message: '1 of 2 lines from 1 file(s)' });
    if (plan.then !== 'upload') throw new Error('no upload');
    expect(readFileSync(plan.path, 'utf8')).toBe('2026-11-23T10:00:00Z ERROR aaaa\n');
    // (Node 24 runs lookbehind in linear time, Node 20 does not: it is not asked here.)
    for (const grep of ['(a)\\1', '(?<x>a)\\k<x>', 'a(?!b)']) {
      const refused = await runJob(JobKind.logs, JSON.stringify({ file: 'app.log', grep }), roots, work, 9, Date.now());
      expect(refused, grep).toMatchObject({ then: 'report', code: JobCode.invalidJob, message: expect.stringMatching(/linear time/) });
    }
  });

  it('backs up a config file as it is, and refuses one outside the config root', async () => {
    const { roots, work } = device();
    writeFileSync(join(roots.config, 'app.conf'), 'a=1\n');
    expect(await runJob(JobKind.backup, '{"name":"app.conf"}', roots, work, 1, 0)).toMatchObject({ then: 'upload', path: join(roots.config, 'app.conf') });
    expect(await runJob(JobKind.backup, '{"name":"../../etc/passwd"}', roots, work, 2, 0)).toMatchObject({ then: 'report', code: JobCode.invalidJob });
    expect(await runJob(JobKind.backup, '{"name":"/etc/passwd"}', roots, work, 3, 0)).toMatchObject({ then: 'report', code: JobCode.invalidJob });
    expect(await runJob(JobKind.backup, '{"name":"nope.conf"}', roots, work, 4, 0)).toMatchObject({ then: 'report', code: JobCode.noSuchFile });
  });

  it('cleans only files older than asked, never through links', async () => {
    const { roots, work, outside } = device();
    const now = Date.now();
    for (const [name, ageDays] of [['old1', 10], ['old2', 8], ['new', 1]] as const) {
      const f = join(roots.logs, name);
      writeFileSync(f, name);
      utimesSync(f, new Date(now - ageDays * 86_400_000), new Date(now - ageDays * 86_400_000));
    }
    symlinkSync(join(outside, 'secret'), join(roots.logs, 'link'));
    const plan = await runJob(JobKind.clean, JSON.stringify({ dir: 'logs', olderThanMs: 7 * 86_400_000 }), roots, work, 1, now);
    expect(plan).toMatchObject({ then: 'report', code: JobCode.ok, message: 'removed 2 of 3 files from logs' });
    expect(['old1', 'old2', 'new', 'link'].map((n) => existsSync(join(roots.logs, n)))).toEqual([false, false, true, true]);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('not yours\n');
    expect(await runJob(JobKind.clean, '{"dir":"etc"}', roots, work, 2, now)).toMatchObject({ code: JobCode.invalidJob });
  });
});
