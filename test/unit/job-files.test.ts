import { describe, expect, it } from 'vitest';
import { jobFilesToDelete, jobsToForget, uploadsToDelete } from '../../src/server/job-files.js';
import { JobStore, JobsSeen, type Job, type JobState } from '../../src/server/job-store.js';

const sha = (c: string): string => c.repeat(64);
const job = (id: number, state: JobState, sha256?: string): Job => ({
  id, device: 'd', kind: sha256 ? 'put' : 'logs', params: sha256 ? { name: 'f', size: 1, sha256 } : {}, state, createdAt: '', updatedAt: '',
});
const GRACE = 600_000;

describe('which files kept for jobs may go', () => {
  it('those no job still to run names, untouched for the grace period', () => {
    const files = [
      { name: sha('a'), mtimeMs: 0 }, // its job is done
      { name: sha('b'), mtimeMs: 0 }, // a job is queued with it
      { name: sha('c'), mtimeMs: 0 }, // sent, not answered yet
      { name: sha('d'), mtimeMs: 2 * GRACE - 1 }, // done, but touched lately (queued again just now?)
      { name: sha('e'), mtimeMs: 0 }, // one job done, another failed, a third still queued
      { name: 'notes.txt', mtimeMs: 0 }, // not ours
    ];
    const jobs = [job(1, 'done', sha('a')), job(2, 'queued', sha('b')), job(3, 'sent', sha('c')), job(4, 'done', sha('d')),
      job(5, 'done', sha('e')), job(6, 'failed', sha('e')), job(7, 'queued', sha('e')), job(8, 'queued')];
    expect(jobFilesToDelete(files, jobs, 2 * GRACE, GRACE)).toEqual([sha('a')]);
    // Once the last job with it has ended, it goes too.
    jobs[6]!.state = 'failed';
    expect(jobFilesToDelete(files, jobs, 2 * GRACE, GRACE)).toEqual([sha('a'), sha('e')]);
    expect(jobFilesToDelete(files, jobs, 3 * GRACE, GRACE)).toEqual([sha('a'), sha('d'), sha('e')]);
  });
});

describe('which uploads may go', () => {
  const DAY = 86_400_000;
  const ended = (id: number, kind: Job['kind'], state: JobState, device = 'd'): Job => ({
    id, device, kind, params: {}, state, createdAt: '', updatedAt: '', file: state === 'done' ? `uploads/${device}/${id}/x` : undefined,
  });

  it('those of jobs over and untouched for the time kept, except a running job\'s and each device\'s newest report', () => {
    const old = 0;
    const dirs = [
      { device: 'd', job: 1, mtimeMs: old }, // logs, done long ago: goes
      { device: 'd', job: 2, mtimeMs: old }, // report, done, but d's newest report: stays
      { device: 'd', job: 3, mtimeMs: DAY }, // backup, done 29 days ago: stays
      { device: 'd', job: 4, mtimeMs: old }, // logs, still sent (arriving): stays
      { device: 'e', job: 5, mtimeMs: old }, // report, done, but e has a newer report: goes
      { device: 'e', job: 6, mtimeMs: old }, // e's newest report: stays
      { device: 'e', job: 7, mtimeMs: old }, // a job no longer known: goes
      { device: 'd', job: 8, mtimeMs: old }, // logs, failed: goes
    ];
    const jobs = [ended(1, 'logs', 'done'), ended(2, 'report', 'done'), ended(3, 'backup', 'done'), ended(4, 'logs', 'sent'),
      ended(5, 'report', 'done', 'e'), ended(6, 'report', 'done', 'e'), ended(8, 'logs', 'failed')];
    expect(uploadsToDelete(dirs, jobs, 30 * DAY, 30 * DAY).map((d) => d.job)).toEqual([1, 5, 7, 8]);
    // A day later the backup's time is up too.
    expect(uploadsToDelete(dirs, jobs, 31 * DAY, 30 * DAY).map((d) => d.job)).toEqual([1, 3, 5, 7, 8]);
  });
});

describe('which job records may go', () => {
  const DAY = 86_400_000;
  const at = (ms: number): string => new Date(ms).toISOString();
  const rec = (id: number, kind: Job['kind'], state: JobState, updated: number, device = 'd'): Job => ({
    id, device, kind, params: {}, state, createdAt: at(0), updatedAt: at(updated), file: kind === 'report' && state === 'done' ? `uploads/${device}/${id}/report.json` : undefined,
  });

  it('finished ones unchanged for the time kept, except each device\'s newest report; never one still to run', () => {
    const jobs = [
      rec(1, 'logs', 'done', 0), // finished long ago: goes
      rec(2, 'backup', 'failed', 0), // failed long ago: goes
      rec(3, 'logs', 'queued', 0), // queued long ago, the device never came: stays
      rec(4, 'logs', 'sent', 0), // sent, not answered: stays
      rec(5, 'report', 'done', 0), // d's newest report, however old: stays
      rec(6, 'report', 'done', 0, 'e'), // e has a newer report: goes
      rec(7, 'report', 'done', DAY, 'e'), // e's newest: stays
      rec(8, 'clean', 'done', 2 * DAY), // finished a day before the limit: stays
    ];
    expect(jobsToForget(jobs, 30 * DAY, 30 * DAY)).toEqual([1, 2, 6]);
    expect(jobsToForget(jobs, 32 * DAY, 30 * DAY)).toEqual([1, 2, 6, 8]);
  });
});

describe('the jobs a node reads again (several nodes)', () => {
  it('all until a read is old enough, then from the highest id seen that long ago', () => {
    const seen = new JobsSeen(10_000);
    expect(seen.since(0)).toBe(0);
    seen.read(0, 100);
    seen.read(2_000, 120);
    expect(seen.since(9_999)).toBe(0); // no read is 10 s old yet: ids may still be saved below 120
    expect(seen.since(10_000)).toBe(100);
    seen.read(10_000, 150);
    expect(seen.since(12_000)).toBe(120);
    seen.read(30_000, 150);
    expect(seen.since(30_000)).toBe(150);
  });

  it('keep every job in id order, whichever node saved it first, and adopt others\' changes', () => {
    const held = 'h'.repeat(32);
    const other = 'o'.repeat(32);
    const rec = (id: number, device: string, state: JobState): Job => ({ id, device, kind: 'logs', params: {}, state, createdAt: '', updatedAt: '' });
    const jobs = new JobStore(undefined, [rec(1, held, 'done'), rec(3, other, 'queued')]);
    // Job 2 was saved by another node after this one had seen 3.
    jobs.adopt([rec(2, other, 'queued'), rec(4, held, 'queued')], (d) => d === held);
    expect(jobs.list().map((j) => j.id)).toEqual([1, 2, 3, 4]);
    expect(jobs.listFor(other).map((j) => j.id)).toEqual([2, 3]);
    expect(jobs.unfinishedIds()).toEqual([2, 3, 4]);
    expect(jobs.nextFor(other)?.id).toBe(2);
    // The other node finished 2; a job held here keeps this node's state whatever the store says.
    jobs.adopt([rec(2, other, 'done'), rec(4, held, 'failed')], (d) => d === held);
    expect(jobs.get(2)?.state).toBe('done');
    expect(jobs.get(4)?.state).toBe('queued');
    expect(jobs.nextFor(other)?.id).toBe(3);
  });
});
