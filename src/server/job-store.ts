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
  /** Every job, by id (oldest first). */
  private jobs: Job[] = [];
  private readonly byId = new Map<number, Job>();
  /** Each device's jobs, oldest first: a device's poll looks at its own, not at the fleet's. */
  private readonly byDevice = new Map<string, Job[]>();
  /** Without a store (tests): ids counted here. */
  private lastId = 0;

  /** `store` undefined: nothing persisted (tests). */
  constructor(private readonly store: Store | undefined, saved: readonly Job[] = []) {
    for (const j of saved) this.insert(j);
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
    this.insert(job);
    return job;
  }

  /**
   * Jobs another node queued or ran (several nodes): new ones are added; those for devices this
   * node does not hold (`holds`) take the store's state. Jobs for devices held here are this
   * node's to change, and stay as they are in memory.
   */
  adopt(saved: readonly Job[], holds: (device: string) => boolean): void {
    for (const j of saved) {
      const known = this.byId.get(j.id);
      if (!known) this.insert(j);
      else if (!holds(j.device)) Object.assign(known, { state: j.state, result: j.result, message: j.message, file: j.file, updatedAt: j.updatedAt });
    }
  }

  get(id: number): Job | undefined { return this.byId.get(id); }

  list(filter: (j: Job) => boolean = () => true): Job[] { return this.jobs.filter(filter); }

  /** Jobs queued or sent, not yet finished. */
  unfinishedIds(): number[] { return this.jobs.filter((j) => j.state === 'queued' || j.state === 'sent').map((j) => j.id); }

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
    const devices = new Set<string>();
    for (const id of ids) {
      const j = this.byId.get(id);
      if (j) devices.add(j.device);
      this.byId.delete(id);
    }
    this.jobs = this.jobs.filter((j) => !gone.has(j.id));
    for (const device of devices) {
      const left = this.byDevice.get(device)!.filter((j) => !gone.has(j.id));
      if (left.length === 0) this.byDevice.delete(device);
      else this.byDevice.set(device, left);
    }
  }

  /** Keep `job`, in id order (jobs arrive nearly in order: adopted ones and ours interleave). */
  private insert(job: Job): void {
    this.byId.set(job.id, job);
    insertById(this.jobs, job);
    let list = this.byDevice.get(job.device);
    if (!list) this.byDevice.set(job.device, list = []);
    insertById(list, job);
  }
}

/** Insert `job` into `list`, sorted by id: at the end unless an older id arrives late. */
function insertById(list: Job[], job: Job): void {
  let at = list.length;
  while (at > 0 && list[at - 1]!.id > job.id) at--;
  list.splice(at, 0, job);
}

/**
 * Where a node's next read of the jobs others changed may start (several nodes read every
 * REFRESH_MS). Jobs are never changed once finished, so a read need only bring back every job
 * still to run, the jobs it had as still to run (finished since, or forgotten), and those created
 * since the last read. "Created since" is by id, with a margin: an id is handed out before its
 * job is saved, and a group's jobs take their ids together and are saved one by one, so a read
 * starts at the highest id seen `marginMs` ago, not at the highest seen. Reading every job every
 * time cost ~0.4 s of the server's thread at 100,000 jobs (SQLite, this machine), every 2 s.
 * Pure: time is an argument.
 */
export class JobsSeen {
  private readonly reads: { at: number; maxId: number }[] = [];

  constructor(private readonly marginMs = 10_000) {}

  /** Read jobs with ids above this (0: all, until a read is `marginMs` old). */
  since(now: number): number {
    let since = 0;
    for (const r of this.reads) if (now - r.at >= this.marginMs && r.maxId > since) since = r.maxId;
    return since;
  }

  /** A read at `now` saw ids up to `maxId`. */
  read(now: number, maxId: number): void {
    this.reads.push({ at: now, maxId });
    // Only the newest read old enough to start from is needed, and those not yet old enough.
    while (this.reads.length > 1 && now - this.reads[1]!.at >= this.marginMs) this.reads.shift();
  }
}
