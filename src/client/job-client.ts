/**
 * The device's half of maintenance jobs. In maintenance mode (typed, scheduled, or from the
 * start) it polls the server for jobs, runs each at most once (its id is written down before it
 * runs and its result after, in jobs-done.json, so a job sent again — or a restart — never runs it
 * twice), uploads what a job produced, receives what a put sends, and reports the result until
 * the server acknowledges it. The device opens no listening port: it asks, the server answers.
 */
import { randomBytes } from 'node:crypto';
import { statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { NxtError, errorMessage } from '../errors.js';
import { encode, JobCode, type FileOfferMessage, type Message, MAX_CHUNK_BYTES as JOB_CHUNK_BYTES } from '../protocol/messages.js';
import { ResultCode } from '../protocol/result-codes.js';
import { IncomingModule } from '../plugin/incoming-module.js';
import { IncomingTransfer } from '../files/incoming-transfer.js';
import { OutgoingFile, SessionDataWire } from '../files/outgoing-file.js';
import { PREVIOUS_SUFFIX, runJob, type ConfigPlan, type InstallPlan, type Installers } from '../jobs/job-runner.js';
import { runInstaller } from '../jobs/installer.js';
import { commit, install, restore, undo } from '../jobs/config-files.js';
import type { Roots } from '../jobs/roots.js';
import type { SenderOptions } from '../transfer/sender.js';
import { readStateFile, writeFileAtomic } from '../util/atomic-file.js';
import type { Clock } from '../util/clock.js';
import { hashFile } from '../util/hash-file.js';

const NO_VERSION = { major: 0, minor: 0, patch: 0 };
const REPEAT_MS = 500;
const REPEATS = 40;
/** A put whose file does not arrive within this is failed. */
const PUT_WAIT_MS = 60_000;

interface DoneJob { state: 'started' | 'finished'; code?: number; message?: string }

/** Events: 'log' (string), 'maintenance' (boolean: on or off). */
/** How long an installer may run by default (a package manager on a slow device). */
export const DEFAULT_INSTALL_TIMEOUT_MS = 30 * 60_000;

export class JobClient extends EventEmitter {
  private on_ = false;
  /** On only until the queue is empty (a scheduled visit), not until `maintenance off`. */
  private visiting = false;
  private busy = false;
  private pollSeq = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private scheduleTimer: NodeJS.Timeout | undefined;
  private readonly done: Record<string, DoneJob>;
  private readonly repeats = new Map<string, NodeJS.Timeout>();
  private readonly uploads = new Map<number, OutgoingFile>();
  private readonly puts = new Map<number, { jobId: number; transfer: IncomingTransfer; path: string; config?: ConfigPlan; install?: InstallPlan }>();
  private expectedPut: { jobId: number; path: string; size: number; sha256: string; timer: NodeJS.Timeout; config?: ConfigPlan; install?: InstallPlan } | undefined;
  private readonly donePath: string;

  constructor(private readonly o: {
    readonly send: (message: Uint8Array) => void;
    readonly clock: Clock;
    readonly roots: Roots;
    /** The device's private data dir: jobs-done.json and temporary job output. */
    readonly workDir: string;
    readonly pollMs?: number;
    readonly sender?: Partial<SenderOptions>;
    /** Hand a new config file to the active plugin (job config --apply); resolves with what it
     *  said, rejects when it refuses or takes none. */
    readonly reconfigure?: (name: string, path: string) => Promise<string | undefined>;
    /** Installers the device's config allows (install jobs), and how long one may run. */
    readonly installers?: Installers;
    readonly installTimeoutMs?: number;
    /** The device's status report (job report): JSON-ready. */
    readonly statusReport?: () => Promise<Record<string, unknown>>;
  }) {
    super();
    this.donePath = join(o.workDir, 'jobs-done.json');
    try {
      this.done = readStateFile(this.donePath, (text) => JSON.parse(text) as Record<string, DoneJob>) ?? {};
    } catch (err) {
      // Without it, a job sent again could run twice: stop rather than guess.
      throw new NxtError('bad-state', `${this.donePath} is unreadable (${errorMessage(err)}): restore it, or delete it if no job may be sent again`);
    }
  }

  get maintenance(): boolean { return this.on_; }

  /** Maintenance mode on (poll now and every pollMs) or off. */
  setMaintenance(on: boolean): void {
    this.visiting = false;
    if (on === this.on_) return;
    this.on_ = on;
    this.emit('maintenance', on);
    clearInterval(this.pollTimer);
    if (!on) return;
    this.poll();
    this.pollTimer = setInterval(() => this.poll(), this.o.pollMs ?? 2000);
    this.pollTimer.unref();
  }

  /** Every `everyMs`, visit: maintenance mode until no job is waiting. */
  schedule(everyMs: number): void {
    clearInterval(this.scheduleTimer);
    this.scheduleTimer = setInterval(() => {
      if (this.on_) return;
      this.setMaintenance(true);
      this.visiting = true;
    }, everyMs);
    this.scheduleTimer.unref();
  }

  stop(): void {
    clearInterval(this.pollTimer);
    clearInterval(this.scheduleTimer);
    clearTimeout(this.expectedPut?.timer);
    for (const t of this.repeats.values()) clearTimeout(t);
    for (const u of this.uploads.values()) u.cancel('device stopping');
    for (const p of this.puts.values()) void p.transfer.suspend();
  }

  /** Handle a message that belongs to jobs; false if it is not one of ours. */
  dispatch(msg: Message): boolean {
    switch (msg.type) {
      case 'job':
        this.onJob(msg.jobId, msg.kind, msg.params).catch((err: unknown) => {
          this.busy = false;
          this.emit('log', `job ${msg.jobId}: ${errorMessage(err)}`);
        });
        return true;
      case 'jobAck': this.stopRepeating(`job ${msg.jobId}`); return true;
      case 'fileOffer': this.onFileOffer(msg); return true;
      case 'data': {
        const p = this.puts.get(msg.transferId);
        if (p) p.transfer.onData(msg);
        return p !== undefined;
      }
      case 'ack': case 'result': case 'abort': {
        const u = this.uploads.get(msg.transferId);
        if (!u) return false;
        if (msg.type === 'ack') u.onAck(msg);
        else if (msg.type === 'result') u.onResult(msg.code, msg.message, msg.active);
        else u.onAbort(msg.code, msg.message);
        return true;
      }
      case 'resultAck':
        return this.stopRepeating(`result ${msg.transferId}`);
      default:
        return false;
    }
  }

  private poll(): void {
    if (!this.on_ || this.busy) return;
    this.o.send(encode({ type: 'jobPoll', seq: (this.pollSeq = (this.pollSeq + 1) >>> 0) }));
  }

  /** false (and said) when the record could not be saved: the disk is full or failing. */
  private saveDone(): boolean {
    try {
      writeFileAtomic(this.donePath, `${JSON.stringify(this.done)}\n`);
      return true;
    } catch (err) {
      this.emit('log', `warning: ${errorMessage(err)}`);
      return false;
    }
  }

  private async onJob(jobId: number, kind: number, params: string): Promise<void> {
    if (jobId === 0) {
      if (this.visiting) this.setMaintenance(false);
      return;
    }
    const known = this.done[jobId];
    if (known?.state === 'finished') return this.report(jobId, known.code!, known.message!);
    if (known?.state === 'started') {
      if (this.busy) return; // it is running right now: the poll crossed our result
      return this.finish(jobId, JobCode.generationFailed, 'interrupted: the device stopped while running it (not run again)');
    }
    if (this.busy) return;
    this.done[jobId] = { state: 'started' };
    if (!this.saveDone()) {
      // Not run: without the record, a restart in the middle could run it a second time.
      delete this.done[jobId];
      this.report(jobId, JobCode.generationFailed, 'not run: the device cannot record it on its disk (full or failing)');
      return;
    }
    this.busy = true;
    this.emit('log', `running job ${jobId}`);
    const plan = await runJob(kind, params, this.o.roots, this.o.workDir, jobId, Date.now(), this.o.installers);
    switch (plan.then) {
      case 'report': return this.finish(jobId, plan.code, plan.message);
      case 'upload': {
        let outcome;
        try {
          outcome = await this.upload(jobId, plan.path, plan.name);
        } catch (err) {
          outcome = { code: ResultCode.storage, message: errorMessage(err) };
        }
        if (plan.temporary) try { unlinkSync(plan.path); } catch { /* already gone */ }
        return outcome.code === ResultCode.ok
          ? this.finish(jobId, JobCode.ok, `uploaded ${plan.name}: ${plan.message}`)
          : this.finish(jobId, JobCode.transferFailed, `upload of ${plan.name} failed: ${outcome.message}`);
      }
      case 'receive': {
        const timer = setTimeout(() => {
          if (this.expectedPut?.jobId !== jobId) return;
          this.expectedPut = undefined;
          void this.finish(jobId, JobCode.transferFailed, 'the file never arrived');
        }, PUT_WAIT_MS);
        timer.unref();
        this.expectedPut = { jobId, path: plan.path, size: plan.size, sha256: plan.sha256, timer, config: plan.config, install: plan.install };
        return;
      }
      case 'report-status': {
        const path = join(this.o.workDir, `report-job-${jobId}.json`);
        try {
          if (!this.o.statusReport) throw new NxtError('not-supported', 'this agent makes no status reports');
          writeFileSync(path, `${JSON.stringify(await this.o.statusReport(), null, 1)}\n`, { mode: 0o600 });
        } catch (err) {
          return this.finish(jobId, JobCode.generationFailed, `cannot make the report: ${errorMessage(err)}`);
        }
        let outcome;
        try {
          outcome = await this.upload(jobId, path, `report-job-${jobId}.json`);
        } catch (err) {
          outcome = { code: ResultCode.storage, message: errorMessage(err) };
        }
        try { unlinkSync(path); } catch { /* gone */ }
        return outcome.code === ResultCode.ok
          ? this.finish(jobId, JobCode.ok, 'uploaded the status report')
          : this.finish(jobId, JobCode.transferFailed, `upload of the status report failed: ${outcome.message}`);
      }
      case 'restore': {
        try {
          restore(plan.path);
        } catch (err) {
          return this.finish(jobId, err instanceof NxtError && err.code === 'no-such-file' ? JobCode.noSuchFile : JobCode.generationFailed, errorMessage(err));
        }
        const applied = plan.apply ? await this.apply(plan.name, plan.path, () => restore(plan.path)) : { ok: true, message: '' };
        return applied.ok
          ? this.finish(jobId, JobCode.ok, `restored config/${plan.name} from ${plan.name}${PREVIOUS_SUFFIX} (the replaced one is kept there now)${applied.message}`)
          : this.finish(jobId, JobCode.notApplied, `config/${plan.name} left as it was: ${applied.message}`);
      }
    }
  }

  private async upload(jobId: number, path: string, name: string): Promise<{ code: number; message: string }> {
    const size = statSync(path).size;
    const sha256 = Buffer.from(await hashFile(path), 'hex');
    const newId = (): number => randomBytes(4).readUInt32BE(0) || 1;
    const file: OutgoingFile = new OutgoingFile(newId(), Math.ceil(size / JOB_CHUNK_BYTES), new SessionDataWire({ path, size, chunkSize: JOB_CHUNK_BYTES }, (bytes) => this.o.send(bytes)), {
      send: (bytes) => this.o.send(bytes),
      encodeOffer: (id) => encode({ type: 'fileOffer', transferId: id, jobId, size, chunkSize: JOB_CHUNK_BYTES, sha256, name }),
      renumber: () => { this.uploads.delete(file.transferId); const id = newId(); this.uploads.set(id, file); return id; },
    }, this.o.clock, this.o.sender ?? {});
    this.uploads.set(file.transferId, file);
    file.start();
    const outcome = await file.done;
    this.uploads.delete(file.transferId);
    return outcome;
  }

  private onFileOffer(msg: FileOfferMessage): void {
    const known = this.puts.get(msg.transferId);
    if (known) { known.transfer.onOffer(); return; }
    const expected = this.expectedPut;
    const sha256 = Buffer.from(msg.sha256).toString('hex');
    if (!expected || expected.jobId !== msg.jobId || expected.size !== msg.size || expected.sha256 !== sha256) {
      // For a job already finished here (refused, say), tell the server to stop; otherwise the
      // offer may simply have overtaken its JOB: stay quiet, the server repeats it.
      if (this.done[msg.jobId]?.state === 'finished') {
        this.o.send(encode({ type: 'result', transferId: msg.transferId, code: ResultCode.cancelled, active: NO_VERSION, message: 'no such put expected' }));
      }
      return;
    }
    clearTimeout(expected.timer);
    this.expectedPut = undefined;
    let incoming: IncomingModule;
    try {
      incoming = new IncomingModule({ size: msg.size, sha256, chunkSize: msg.chunkSize }, `${expected.path}.nxt-part`);
    } catch (err) {
      // A link planted at the temporary name, a full or read-only disk: the put fails, with why.
      this.o.send(encode({ type: 'result', transferId: msg.transferId, code: ResultCode.storage, active: NO_VERSION, message: errorMessage(err) }));
      void this.finish(msg.jobId, JobCode.transferFailed, `cannot receive ${expected.path}: ${errorMessage(err)}`);
      return;
    }
    const transfer: IncomingTransfer = new IncomingTransfer(msg.transferId, incoming, {
      send: (bytes) => this.o.send(bytes),
      complete: () => void this.finishPut(msg.transferId),
      idle: () => {
        this.puts.delete(msg.transferId);
        void transfer.suspend();
        void this.finish(msg.jobId, JobCode.transferFailed, 'the server went quiet during the put');
      },
    }, this.o.clock);
    this.puts.set(msg.transferId, { jobId: msg.jobId, transfer, path: expected.path, config: expected.config, install: expected.install });
    transfer.onOffer();
  }

  private async finishPut(transferId: number): Promise<void> {
    const p = this.puts.get(transferId);
    if (!p || p.transfer.finishing) return;
    p.transfer.finishing = true;
    p.transfer.clearTimer();
    this.puts.delete(transferId);
    try {
      const size = p.transfer.incoming.manifest.size;
      if (p.config) {
        // Verified beside the file first, then put in place keeping the old one.
        const fresh = `${p.path}.nxt-new`;
        await p.transfer.incoming.complete(fresh);
        const installed = install(p.path, fresh);
        this.repeat(`result ${transferId}`, encode({ type: 'result', transferId, code: ResultCode.ok, active: NO_VERSION, message: 'stored' }));
        const kept = installed.hadPrevious ? ` (the previous one kept as ${p.config.name}${PREVIOUS_SUFFIX})` : '';
        const applied = p.config.apply ? await this.apply(p.config.name, p.path, () => undo(installed)) : { ok: true, message: '' };
        if (applied.ok) commit(installed);
        await (applied.ok
          ? this.finish(p.jobId, JobCode.ok, `wrote ${size} bytes to config/${p.config.name}${kept}${applied.message}`)
          : this.finish(p.jobId, JobCode.notApplied, `config/${p.config.name} is as it was: ${applied.message}`));
        return;
      }
      await p.transfer.incoming.complete(p.path);
      this.repeat(`result ${transferId}`, encode({ type: 'result', transferId, code: ResultCode.ok, active: NO_VERSION, message: 'stored' }));
      if (p.install) {
        // Verified (size, sha256): now the device's own installer, with the file's path only.
        this.emit('log', `job ${p.jobId}: running installer ${p.install.with}`);
        const outcome = await runInstaller(p.install.with, p.install.command, p.path, this.o.installTimeoutMs ?? DEFAULT_INSTALL_TIMEOUT_MS);
        try { unlinkSync(p.path); } catch { /* the installer may have taken it */ }
        await this.finish(p.jobId, outcome.ok ? JobCode.ok : JobCode.installFailed, outcome.message);
        return;
      }
      await this.finish(p.jobId, JobCode.ok, `wrote ${size} bytes`);
    } catch (err) {
      for (const leftover of [`${p.path}.nxt-part`, `${p.path}.nxt-new`]) try { unlinkSync(leftover); } catch { /* gone */ }
      this.repeat(`result ${transferId}`, encode({ type: 'result', transferId, code: ResultCode.hashMismatch, active: NO_VERSION, message: errorMessage(err) }));
      await this.finish(p.jobId, JobCode.transferFailed, errorMessage(err));
    }
  }

  /** Ask the active plugin to take a config file; on refusal `takeBack()` puts the old one back. */
  private async apply(name: string, path: string, takeBack: () => unknown): Promise<{ ok: boolean; message: string }> {
    try {
      if (!this.o.reconfigure) throw new NxtError('not-supported', 'this agent hands no config to plugins');
      const said = await this.o.reconfigure(name, path);
      return { ok: true, message: `; applied by the plugin${said ? `: ${said}` : ''}` };
    } catch (err) {
      try { takeBack(); } catch (undoErr) { return { ok: false, message: `${errorMessage(err)}; and the old file could not be put back: ${errorMessage(undoErr)}` }; }
      return { ok: false, message: errorMessage(err) };
    }
  }

  private async finish(jobId: number, code: number, message: string): Promise<void> {
    this.done[jobId] = { state: 'finished', code, message };
    this.saveDone(); // if not saved, the result still goes: the job ran
    this.busy = false;
    this.emit('log', `job ${jobId}: ${code === JobCode.ok ? 'ok' : 'failed'}: ${message}`);
    this.report(jobId, code, message);
    this.poll(); // the next one, if any
  }

  private report(jobId: number, code: number, message: string): void {
    this.repeat(`job ${jobId}`, encode({ type: 'jobResult', jobId, code, message }));
  }

  /** Send now and every REPEAT_MS until acknowledged (or REPEATS times). */
  private repeat(key: string, bytes: Uint8Array): void {
    this.stopRepeating(key);
    let tries = 0;
    const send = (): void => {
      if (tries++ >= REPEATS) { this.repeats.delete(key); return; }
      this.o.send(bytes);
      const t = setTimeout(send, REPEAT_MS);
      t.unref();
      this.repeats.set(key, t);
    };
    send();
  }

  private stopRepeating(key: string): boolean {
    const t = this.repeats.get(key);
    if (t) { clearTimeout(t); this.repeats.delete(key); }
    return t !== undefined;
  }
}
