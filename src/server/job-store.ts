/**
 * The maintenance job queue, kept in the state dir (`jobs.json`, written atomically on every
 * change): jobs wait here until their device polls, so a device that is offline gets them when it
 * comes back, and none is lost or repeated across a server restart.
 */
import { join } from 'node:path';
import { readStateFile, writeFileAtomic } from '../util/atomic-file.js';

export type JobKindName = 'logs' | 'backup' | 'put' | 'clean' | 'config' | 'configRestore' | 'install' | 'report';
export type JobState = 'queued' | 'sent' | 'done' | 'failed';

export interface Job {
  readonly id: number;
  readonly device: string;
  readonly kind: JobKindName;
  readonly params: Record<string, unknown>;
  state: JobState;
  /** 'ok', or the device's reason: 'invalid job', 'file does not exist', … */
  result?: string;
  message?: string;
  /** What the device uploaded (logs, backup), under uploads/<device>/<job>/. */
  file?: string;
  /** For put and config: the server's copy of the file to send. */
  source?: string;
  readonly createdAt: string;
  updatedAt: string;
}

export class JobStore {
  private readonly jobs: Job[] = [];
  private nextId = 1;

  constructor(private readonly dir: string | undefined) {
    if (dir === undefined) return;
    const saved = readStateFile(join(dir, 'jobs.json'), (text) => {
      const parsed = JSON.parse(text) as { nextId: number; jobs: Job[] };
      if (!Array.isArray(parsed.jobs) || typeof parsed.nextId !== 'number') throw new Error('not a job list');
      return parsed;
    });
    if (!saved) return;
    this.jobs.push(...saved.jobs);
    this.nextId = saved.nextId;
  }

  add(device: string, kind: JobKindName, params: Record<string, unknown>, wallNow: Date, source?: string): Job {
    const at = wallNow.toISOString();
    const job: Job = { id: this.nextId++, device, kind, params, state: 'queued', createdAt: at, updatedAt: at, source };
    this.jobs.push(job);
    try {
      this.save();
    } catch (err) {
      // Not on disk, so not queued: nothing may claim otherwise (the caller reports the error).
      this.jobs.pop();
      this.nextId--;
      throw err;
    }
    return job;
  }

  get(id: number): Job | undefined { return this.jobs.find((j) => j.id === id); }

  list(filter: (j: Job) => boolean = () => true): Job[] { return this.jobs.filter(filter); }

  /** The device's oldest job not finished yet (a job sent but never answered is sent again). */
  nextFor(device: string): Job | undefined {
    return this.jobs.find((j) => j.device === device && (j.state === 'queued' || j.state === 'sent'));
  }

  /** Change a job and save; if the save fails the job is as it was (and the error thrown). */
  update(job: Job, change: Partial<Pick<Job, 'state' | 'result' | 'message' | 'file'>>, wallNow: Date): void {
    const before = { state: job.state, result: job.result, message: job.message, file: job.file, updatedAt: job.updatedAt };
    Object.assign(job, change, { updatedAt: wallNow.toISOString() });
    try {
      this.save();
    } catch (err) {
      Object.assign(job, before);
      throw err;
    }
  }

  private save(): void {
    if (this.dir === undefined) return;
    writeFileAtomic(join(this.dir, 'jobs.json'), `${JSON.stringify({ version: 1, nextId: this.nextId, jobs: this.jobs }, null, 1)}\n`);
  }
}
