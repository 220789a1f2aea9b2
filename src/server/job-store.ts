/**
 * The maintenance job queue, kept in the store (every change saved before it counts): jobs wait
 * here until their device polls, so a device that is offline gets them when it comes back, and
 * none is lost or repeated across a server restart.
 */
import type { Store } from '../store/store.js';

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
  private jobs: Job[];
  /** Each device's jobs, oldest first: a device's poll looks at its own, not at the fleet's. */
  private readonly byDevice = new Map<string, Job[]>();
  /** Without a store (tests): ids counted here. */
  private lastId = 0;

  /** `store` undefined: nothing persisted (tests). */
  constructor(private readonly store: Store | undefined, saved: readonly Job[] = []) {
    // Not push(...saved): a spread of a few hundred thousand arguments overflows the stack.
    this.jobs = saved.slice();
    this.index();
  }

  static async open(store: Store): Promise<JobStore> {
    return new JobStore(store, await store.jobs());
  }

  /** Resolves once the job is saved: a job the store did not take is not queued (the error is thrown). */
  async add(device: string, kind: JobKindName, params: Record<string, unknown>, wallNow: Date, source?: string): Promise<Job> {
    const at = wallNow.toISOString();
    const id = this.store ? await this.store.nextJobId() : ++this.lastId;
    const job: Job = { id, device, kind, params, state: 'queued', createdAt: at, updatedAt: at, source };
    await this.store?.saveJob(job);
    this.jobs.push(job);
    this.deviceJobs(device).push(job);
    return job;
  }

  /**
   * Jobs another node queued or ran (several nodes): new ones are added; those for devices this
   * node does not hold (`holds`) take the store's state. Jobs for devices held here are this
   * node's to change, and stay as they are in memory.
   */
  adopt(saved: readonly Job[], holds: (device: string) => boolean): void {
    const byId = new Map(this.jobs.map((j) => [j.id, j]));
    for (const j of saved) {
      const known = byId.get(j.id);
      if (!known) this.jobs.push(j);
      else if (!holds(j.device)) Object.assign(known, { state: j.state, result: j.result, message: j.message, file: j.file, updatedAt: j.updatedAt });
    }
    this.jobs.sort((a, b) => a.id - b.id);
    this.index();
  }

  get(id: number): Job | undefined { return this.jobs.find((j) => j.id === id); }

  list(filter: (j: Job) => boolean = () => true): Job[] { return this.jobs.filter(filter); }

  /** The device's jobs, oldest first. */
  listFor(device: string): readonly Job[] { return this.byDevice.get(device) ?? []; }

  /** The device's oldest job not finished yet (a job sent but never answered is sent again). */
  nextFor(device: string): Job | undefined {
    return this.byDevice.get(device)?.find((j) => j.state === 'queued' || j.state === 'sent');
  }

  /** Change a job and save; if the save fails the job is as it was (and the error thrown). */
  async update(job: Job, change: Partial<Pick<Job, 'state' | 'result' | 'message' | 'file'>>, wallNow: Date): Promise<void> {
    const before = { state: job.state, result: job.result, message: job.message, file: job.file, updatedAt: job.updatedAt };
    Object.assign(job, change, { updatedAt: wallNow.toISOString() });
    try {
      await this.store?.saveJob(job);
    } catch (err) {
      Object.assign(job, before);
      throw err;
    }
  }

  /** Forget these jobs (job-files.ts: jobsToForget), from the store first: if that fails, all
   *  stay (and the error is thrown). */
  async forget(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.store?.deleteJobs(ids);
    const gone = new Set(ids);
    this.jobs = this.jobs.filter((j) => !gone.has(j.id));
    this.index();
  }

  private deviceJobs(device: string): Job[] {
    let list = this.byDevice.get(device);
    if (!list) this.byDevice.set(device, list = []);
    return list;
  }

  private index(): void {
    this.byDevice.clear();
    for (const j of this.jobs) this.deviceJobs(j.device).push(j);
  }
}
