import { describe, expect, it } from 'vitest';
import { jobFilesToDelete } from '../../src/server/job-files.js';
import type { Job, JobState } from '../../src/server/job-store.js';

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
