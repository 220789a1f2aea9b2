/**
 * The server's half of maintenance jobs: hands a polling device its next job, receives what it
 * uploads (into uploads/<device>/<job>/), sends it the files it must put, and records results.
 * Uploads and puts are the same resumable transfers as module pushes, in either direction.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { readdir, rm, rmdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { errorMessage, NxtError } from '../errors.js';
import { encode, JobCode, JobKind, type DataMessage, type FileOfferMessage, type Message, MAX_CHUNK_BYTES as JOB_CHUNK_BYTES } from '../protocol/messages.js';
import { ResultCode } from '../protocol/result-codes.js';
import { IncomingModule } from '../plugin/incoming-module.js';
import { IncomingTransfer } from '../files/incoming-transfer.js';
import type { SharedRate } from '../transfer/rate-share.js';
import { OutgoingFile, SessionDataWire } from '../files/outgoing-file.js';
import type { AuthenticatedPeer } from '../session/server-channel.js';
import type { Peer } from '../net/endpoint.js';
import type { Clock, WallClock } from '../util/clock.js';
import type { SenderOptions } from '../transfer/sender.js';
import type { Job, JobStore } from './job-store.js';
import { DAY_MS, JOB_FILE_SWEEP_MS, MAX_REPORT_BYTES, jobFilesToDelete, jobsToForget, uploadsToDelete, type UploadDir } from './job-files.js';
import type { Notifier } from './notifier.js';

export const JOB_RESULT_NAMES: Record<number, string> = {
  [JobCode.ok]: 'ok', [JobCode.invalidJob]: 'invalid job', [JobCode.noSuchFile]: 'file does not exist',
  [JobCode.generationFailed]: 'generation failed', [JobCode.transferFailed]: 'transfer failed', [JobCode.notApplied]: 'not applied', [JobCode.installFailed]: 'install failed',
};

const NO_VERSION = { major: 0, minor: 0, patch: 0 };
/** A device may upload at most this much for one job: a log extract or a config, not a disk. */
export const MAX_UPLOAD_BYTES = 1024 * 1024 * 1024;
/** RESULT for an upload is repeated this often until the device acknowledges it… */
const RESULT_RETRY_MS = 250;
const RESULT_RETRIES = 40;

interface Upload {
  readonly job: Job;
  readonly device: string;
  readonly final: string;
  readonly transfer: IncomingTransfer;
}

/** Job records forgotten per sweep at most (one write to the store). */
const FORGET_PER_SWEEP = 10_000;
const formatDays = (ms: number): string => `${+(ms / DAY_MS).toFixed(2)} day${ms === DAY_MS ? '' : 's'}`;

/** Events: 'job-result' (Job), 'report-queued' (Job), 'warning' (string), 'notice' (string). */
export class JobServer extends EventEmitter {
  private readonly uploads = new Map<number, Upload>();
  private readonly puts = new Map<number, { job: Job; file: OutgoingFile }>();
  private readonly resultTimers = new Map<number, NodeJS.Timeout>();
  /** Devices whose status report is being queued (saved) right now. */
  private readonly queueingReport = new Set<string>();
  /** Files being fetched from the database for jobs queued at another node, by sha256. */
  private readonly fetching = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: {
    readonly store: JobStore;
    readonly stateDir: string;
    readonly channel: { send(message: Uint8Array, to: Peer): unknown };
    readonly clock: Clock;
    readonly wallClock: WallClock;
    readonly notifier?: Notifier;
    readonly sender?: Partial<SenderOptions>;
    /** `--max-rate`: files put on devices share it with pushes. */
    readonly maxRate?: SharedRate;
    /** Whether a device is in the fleet (approved): others get no jobs. */
    readonly approved: (device: string) => boolean;
    /** Several nodes: fetch a file another node queued a job with (Cluster.fetchFile). */
    readonly fetchFile?: (sha256: string, size: number, dest: string) => Promise<void>;
    /** Several nodes: a job's file none of ours needs any more; its parts may leave the database
     *  (Cluster.dropFile). */
    readonly dropFile?: (sha256: string) => Promise<void>;
    /** What devices uploaded goes this long after it arrived (undefined: kept for ever). */
    readonly keepUploadsMs?: number;
    /** Records of finished jobs go this long after they finished (undefined: kept for ever). */
    readonly keepJobsMs?: number;
  }) {
    super();
  }

  /** Look over the files kept for jobs, and what devices uploaded, now and every
   *  JOB_FILE_SWEEP_MS (job-files.ts). */
  startSweeping(): void {
    const sweep = (): void => {
      void this.sweepFiles().catch((err: unknown) => this.emit('warning', `could not delete files kept for jobs: ${errorMessage(err)}`));
      const keepMs = this.o.keepUploadsMs;
      if (keepMs !== undefined) void this.sweepUploads(keepMs).catch((err: unknown) => this.emit('warning', `could not delete old uploads: ${errorMessage(err)}`));
      const keepJobsMs = this.o.keepJobsMs;
      if (keepJobsMs !== undefined) void this.forgetJobs(keepJobsMs).catch((err: unknown) => this.emit('warning', `could not forget old jobs: ${errorMessage(err)}`));
    };
    sweep();
    this.sweepTimer = setInterval(sweep, JOB_FILE_SWEEP_MS);
    this.sweepTimer.unref();
  }

  /** Delete the files kept for jobs that no job still to run needs. */
  private async sweepFiles(): Promise<void> {
    const dir = join(this.o.stateDir, 'put');
    let names: string[];
    try { names = readdirSync(dir); } catch { return; }
    const files = names.flatMap((name) => {
      try { return [{ name, mtimeMs: statSync(join(dir, name)).mtimeMs }]; } catch { return []; }
    });
    const stale = jobFilesToDelete(files, this.o.store.list(), this.now().getTime()).filter((name) => !this.fetching.has(name));
    for (const name of stale) {
      rmSync(join(dir, name), { force: true });
      await this.o.dropFile?.(name);
    }
  }

  /** Delete what devices uploaded more than `keepMs` ago (uploadsToDelete). Asynchronous: a
   *  fleet's uploads are many folders, and this thread also carries every push. */
  private async sweepUploads(keepMs: number): Promise<void> {
    const root = join(this.o.stateDir, 'uploads');
    const list = (dir: string): Promise<string[]> => readdir(dir).catch(() => []);
    const dirs: UploadDir[] = [];
    for (const device of await list(root)) {
      for (const name of await list(join(root, device))) {
        if (!/^\d{1,15}$/.test(name)) continue;
        try { dirs.push({ device, job: Number(name), mtimeMs: (await stat(join(root, device, name))).mtimeMs }); } catch { /* gone meanwhile */ }
      }
    }
    // Jobs and arriving uploads as they are now, after the listing's awaits.
    const arriving = new Set([...this.uploads.values()].map((u) => u.job.id));
    const stale = uploadsToDelete(dirs, this.o.store.list(), this.now().getTime(), keepMs).filter((d) => !arriving.has(d.job));
    for (const d of stale) await rm(join(root, d.device, String(d.job)), { recursive: true, force: true });
    for (const device of new Set(stale.map((d) => d.device))) {
      await rmdir(join(root, device)).catch(() => { /* not empty: other jobs' uploads */ });
    }
    if (stale.length > 0) {
      this.emit('notice', `deleted what devices uploaded for ${stale.length} job(s) over ${formatDays(keepMs)} ago (--keep-uploads)`);
    }
  }

  /** Forget the records of jobs finished more than `keepMs` ago (jobsToForget), at most
   *  FORGET_PER_SWEEP at a time: a first sweep over years of records stays a small write. */
  private async forgetJobs(keepMs: number): Promise<void> {
    const old = jobsToForget(this.o.store.list(), this.now().getTime(), keepMs).slice(0, FORGET_PER_SWEEP);
    if (old.length === 0) return;
    await this.o.store.forget(old);
    this.emit('notice', `forgot ${old.length} job(s) finished over ${formatDays(keepMs)} ago (--keep-jobs)`);
  }

  /** Handle a message that belongs to jobs; false if it is not one of ours. */
  dispatch(msg: Message, from: AuthenticatedPeer): boolean {
    switch (msg.type) {
      case 'jobPoll': this.onPoll(msg.seq, from); return true;
      case 'jobResult': this.onResult(msg.jobId, msg.code, msg.message, from); return true;
      case 'fileOffer': this.onFileOffer(msg, from); return true;
      case 'data': {
        const u = this.uploads.get(msg.transferId);
        if (!u || u.device !== from.clientId) return false;
        u.transfer.onData(msg as DataMessage);
        return true;
      }
      case 'resultAck': {
        const t = this.resultTimers.get(msg.transferId);
        if (t) { clearTimeout(t); this.resultTimers.delete(msg.transferId); }
        return t !== undefined;
      }
      case 'ack': case 'result': case 'abort': {
        const put = this.puts.get(msg.transferId);
        if (!put || put.job.device !== from.clientId) return false;
        if (msg.type === 'ack') put.file.onAck(msg);
        else if (msg.type === 'result') put.file.onResult(msg.code, msg.message, msg.active);
        else put.file.onAbort(msg.code, msg.message);
        return true;
      }
      default:
        return false;
    }
  }

  close(): void {
    clearInterval(this.sweepTimer);
    for (const t of this.resultTimers.values()) clearTimeout(t);
    for (const p of this.puts.values()) p.file.cancel('server shutting down');
    for (const u of this.uploads.values()) void u.transfer.suspend();
  }

  private now(): Date { return this.o.wallClock.wallNow(); }

  /** Jobs another node queued or ran (several nodes): JobStore.adopt. */
  adopt(saved: readonly Job[], holds: (device: string) => boolean): void {
    this.o.store.adopt(saved, holds);
  }

  /** Jobs queued or sent, not yet finished. */
  unfinishedIds(): number[] { return this.o.store.unfinishedIds(); }

  /** A status report for `device`, unless one is queued or running already. */
  queueReport(device: string, wallNow: Date): void {
    const waiting = this.o.store.listFor(device).filter((j) => j.kind === 'report' && (j.state === 'queued' || j.state === 'sent'));
    if (waiting.length > 0 || this.queueingReport.has(device)) return;
    this.queueingReport.add(device);
    void this.o.store.add(device, 'report', {}, wallNow).then(
      (job) => { this.emit('report-queued', job); },
      () => { /* the disk is failing: the device asks again at its next registration */ },
    ).finally(() => this.queueingReport.delete(device));
  }

  /** A job's change saved in the background; a save that fails is said, and the job is as it was. */
  private saveSoon(job: Job, change: Parameters<JobStore['update']>[1], then?: () => void): void {
    void this.o.store.update(job, change, this.now()).then(then, (err: unknown) => {
      this.emit('warning', `job ${job.id}: could not save its state (${change.state ?? 'its upload'}): ${errorMessage(err)}`);
    });
  }

  private onPoll(seq: number, from: AuthenticatedPeer): void {
    let job = this.o.approved(from.clientId) ? this.o.store.nextFor(from.clientId) : undefined;
    // A job that sends a file waits (the device polls again) until the file is here.
    if (job && this.sendsFile(job) && !this.fileHere(job)) job = undefined;
    const kind = job ? JobKind[job.kind] : 0;
    this.o.channel.send(encode({ type: 'job', seq, jobId: job?.id ?? 0, kind, params: job ? JSON.stringify(job.params) : '' }), from);
    if (!job) return;
    if (job.state === 'queued') this.saveSoon(job, { state: 'sent' });
    if (this.sendsFile(job) && ![...this.puts.values()].some((p) => p.job.id === job.id)) this.startPut(job, from);
  }

  private sendsFile(job: Job): boolean {
    return (job.kind === 'put' || job.kind === 'config' || job.kind === 'install') && job.source !== undefined;
  }

  /** This node's copy of the file a job sends: where the console put it (put/<sha256>), by
   *  content, whichever node queued the job. */
  private fileOf(job: Job): string {
    return join(this.o.stateDir, 'put', String(job.params.sha256));
  }

  /**
   * Whether the job's file is here to send. With several nodes every job's file is in the
   * database too: one queued at another node is fetched now, in the background, for the device's
   * next poll. A file that cannot be had fails its job, with the reason.
   */
  private fileHere(job: Job): boolean {
    if (existsSync(this.fileOf(job))) return true;
    const sha256 = String(job.params.sha256);
    const fail = (why: string): void => {
      this.saveSoon(job, { state: 'failed', result: 'transfer failed', message: why }, () => this.emit('job-result', job));
    };
    if (!this.o.fetchFile) {
      fail(`the file to send is no longer at ${this.fileOf(job)}`);
    } else if (!this.fetching.has(sha256)) {
      this.fetching.add(sha256);
      mkdirSync(join(this.o.stateDir, 'put'), { recursive: true, mode: 0o700 });
      void this.o.fetchFile(sha256, Number(job.params.size), this.fileOf(job))
        .catch((err: unknown) => fail(`its file could not be fetched from the database: ${errorMessage(err)}`))
        .finally(() => this.fetching.delete(sha256));
    }
    return false;
  }

  private startPut(job: Job, to: AuthenticatedPeer): void {
    const size = job.params.size as number;
    const sha256 = Buffer.from(job.params.sha256 as string, 'hex');
    const name = String(job.params.name).split('/').pop()!.slice(0, 64);
    const newId = (): number => randomBytes(4).readUInt32BE(0) || 1;
    let transferId = newId();
    const file = new OutgoingFile(transferId, Math.ceil(size / JOB_CHUNK_BYTES), new SessionDataWire({ path: this.fileOf(job), size, chunkSize: JOB_CHUNK_BYTES }, (bytes) => this.o.channel.send(bytes, to)), {
      send: (bytes) => this.o.channel.send(bytes, to),
      encodeOffer: (id) => encode({ type: 'fileOffer', transferId: id, jobId: job.id, size, chunkSize: JOB_CHUNK_BYTES, sha256, name }),
      renumber: () => {
        this.puts.delete(transferId);
        transferId = newId();
        this.puts.set(transferId, entry);
        return transferId;
      },
    }, this.o.clock, this.o.sender ?? {}, this.o.maxRate);
    const entry = { job, file };
    this.puts.set(transferId, entry);
    file.start();
    void file.done.then(() => this.puts.delete(file.transferId));
  }

  private onResult(jobId: number, code: number, message: string, from: AuthenticatedPeer): void {
    const job = this.o.store.get(jobId);
    // Acknowledged in any case, so the device stops repeating it.
    this.o.channel.send(encode({ type: 'jobAck', jobId }), from);
    if (!job || job.device !== from.clientId || job.state === 'done' || job.state === 'failed') return;
    const ok = code === JobCode.ok;
    this.saveSoon(job, { state: ok ? 'done' : 'failed', result: JOB_RESULT_NAMES[code] ?? `code ${code}`, message }, () => {
      this.emit('job-result', job);
      if (!ok) {
        this.o.notifier?.notify({
          event: 'job-failed', device: job.device, reason: job.result!, detail: `job ${job.id} (${job.kind}): ${message}`, at: this.now().toISOString(),
        });
      }
    });
  }

  private onFileOffer(msg: FileOfferMessage, from: AuthenticatedPeer): void {
    const refuse = (why: string): void => {
      this.o.channel.send(encode({ type: 'result', transferId: msg.transferId, code: ResultCode.cancelled, active: NO_VERSION, message: why }), from);
    };
    const known = this.uploads.get(msg.transferId);
    if (known?.device === from.clientId) { known.transfer.onOffer(); return; }
    if (known) { refuse('that transfer id is another device\'s upload'); return; }
    const job = this.o.store.get(msg.jobId);
    if (!job || job.device !== from.clientId || job.state !== 'sent' || (job.kind !== 'logs' && job.kind !== 'backup' && job.kind !== 'report')) {
      refuse('no upload is expected for this job');
      return;
    }
    const limit = job.kind === 'report' ? MAX_REPORT_BYTES : MAX_UPLOAD_BYTES;
    if (msg.size > limit) {
      refuse(`an upload of ${msg.size} bytes is over the server's limit of ${limit} for a ${job.kind} job`);
      return;
    }
    // One upload a job (a device sends one file for it): offers under ever new transfer ids would
    // each hold a file open here, until the server had none left for anything. A device that
    // restarted reports its job failed (it does not resume it); the upload it left goes idle.
    if ([...this.uploads.values()].some((u) => u.job.id === job.id)) {
      refuse('an upload for this job is under way already');
      return;
    }
    // The device names the file; only its last part, in plain characters, becomes a path here.
    const safe = msg.name.split('/').pop()!.replace(/[^\w.-]/g, '_').replace(/^\.+/, '') || 'upload';
    const dir = join(this.o.stateDir, 'uploads', job.device, String(job.id));
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const incoming = new IncomingModule({ size: msg.size, sha256: Buffer.from(msg.sha256).toString('hex'), chunkSize: msg.chunkSize }, join(dir, `${safe}.part`));
      const upload: Upload = {
        job, device: job.device, final: join(dir, safe),
        transfer: new IncomingTransfer(msg.transferId, incoming, {
          send: (bytes) => this.o.channel.send(bytes, from),
          complete: () => void this.finishUpload(msg.transferId, from),
          idle: () => { this.uploads.delete(msg.transferId); void upload.transfer.suspend(); },
        }, this.o.clock),
      };
      this.uploads.set(msg.transferId, upload);
      upload.transfer.onOffer();
    } catch (err) {
      refuse(`cannot store the upload: ${errorMessage(err)}`);
    }
  }

  private async finishUpload(transferId: number, from: AuthenticatedPeer): Promise<void> {
    const u = this.uploads.get(transferId);
    if (!u || u.transfer.finishing) return;
    u.transfer.finishing = true;
    u.transfer.clearTimer();
    let code: number = ResultCode.ok;
    let message = 'stored';
    try {
      await u.transfer.incoming.complete(u.final);
      await this.o.store.update(u.job, { file: u.final }, this.now());
    } catch (err) {
      code = err instanceof NxtError && err.code === 'size-mismatch' ? ResultCode.sizeMismatch : ResultCode.hashMismatch;
      message = errorMessage(err);
    }
    this.uploads.delete(transferId);
    const bytes = encode({ type: 'result', transferId, code, active: NO_VERSION, message });
    let tries = 0;
    const resend = (): void => {
      this.resultTimers.delete(transferId);
      if (tries++ >= RESULT_RETRIES) return;
      this.o.channel.send(bytes, from);
      const t = setTimeout(resend, RESULT_RETRY_MS);
      t.unref();
      this.resultTimers.set(transferId, t);
    };
    resend();
  }
}
