/**
 * A staged rollout campaign, as a state machine with no I/O (the runner, rollouts.ts, pushes and
 * saves): a release goes to the target devices in stages — each stage a number or a share of
 * them, cumulative — and the next stage starts once enough of the devices reached so far have
 * *committed* the release (or already had it). Failures (refused, failed, rolled back) beyond a
 * limit pause the campaign by itself; the operator resumes or cancels it. An optional daily
 * window (server local time) says when new pushes may start. Devices offline when their stage
 * comes get the release when they come back, while the campaign runs.
 *
 * As hawkBit's rollouts: groups in order, a success threshold to advance, an error threshold that
 * stops. Every method takes the time; nothing here reads a clock.
 */
import { NxtError } from '../errors.js';

export type Stage = { readonly count: number } | { readonly percent: number };
export type Limit = { readonly count: number } | { readonly percent: number };
/** Minutes after local midnight; `to` before `from` wraps past midnight (22:00-04:00). */
export interface TimeWindow { readonly from: number; readonly to: number }

export interface CampaignSpec {
  readonly release: { readonly name: string; readonly version: string; readonly sha256: string };
  /** 'all', or the group the devices were in when it started. */
  readonly target: string;
  readonly stages: readonly Stage[];
  /** Share of the devices reached so far that must have committed before the next stage. */
  readonly successPercent: number;
  /** More failures than this (a count, or a share of the devices reached so far) pause it. */
  readonly maxFailures: Limit;
  readonly window?: TimeWindow;
}

/** Where one device stands: waiting (not sent yet, or to send again), sending, trial (active
 *  on probation), then committed, already (had it, or newer), failed or rolled-back. */
export type DeviceStep = 'waiting' | 'sending' | 'trial' | 'committed' | 'already' | 'failed' | 'rolled-back';
export type CampaignState = 'running' | 'paused' | 'done' | 'cancelled';

export interface CampaignRecord {
  readonly id: number;
  readonly spec: CampaignSpec;
  state: CampaignState;
  /** Why it is paused, cancelled or done, for people. */
  reason?: string;
  /** Index into spec.stages. */
  stage: number;
  /** The target devices when it started, in the order stages take them. */
  readonly members: readonly string[];
  readonly devices: Record<string, { step: DeviceStep; detail?: string }>;
  /** Failures the operator accepted by resuming: only failures beyond them count again. */
  acceptedFailures: number;
  readonly createdAt: string;
  updatedAt: string;
}

export const DEFAULT_STAGES: readonly Stage[] = [{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }];
export const DEFAULT_SUCCESS_PERCENT = 95;
export const DEFAULT_MAX_FAILURES: Limit = { percent: 10 };

const FINAL: ReadonlySet<DeviceStep> = new Set(['committed', 'already', 'failed', 'rolled-back']);
const SUCCEEDED: ReadonlySet<DeviceStep> = new Set(['committed', 'already']);
const FAILED: ReadonlySet<DeviceStep> = new Set(['failed', 'rolled-back']);

/** What changed in one step, for the console and alerts. */
export type CampaignEvent =
  | { kind: 'stage'; stage: number; devices: number }
  | { kind: 'paused'; reason: string }
  | { kind: 'done'; reason: string };

export class Campaign {
  constructor(readonly record: CampaignRecord) {}

  static create(id: number, spec: CampaignSpec, members: readonly string[], now: Date): Campaign {
    if (members.length === 0) throw new NxtError('no-such-client', 'no devices to roll out to');
    const devices: CampaignRecord['devices'] = {};
    for (const m of members) devices[m] = { step: 'waiting' };
    const at = now.toISOString();
    return new Campaign({ id, spec, state: 'running', stage: 0, members: [...members], devices, acceptedFailures: 0, createdAt: at, updatedAt: at });
  }

  get id(): number { return this.record.id; }
  get state(): CampaignState { return this.record.state; }

  /** How many devices the current stage reaches (cumulative, at least 1, at most all). */
  reached(stage = this.record.stage): number {
    return stageSize(this.record.spec.stages[stage]!, this.record.members.length);
  }

  /** The devices to push to now: in the stages reached, waiting, and online. */
  due(now: Date, online: (id: string) => boolean): string[] {
    if (this.record.state !== 'running' || !inWindow(this.record.spec.window, now)) return [];
    return this.record.members.slice(0, this.reached()).filter((id) => this.record.devices[id]!.step === 'waiting' && online(id));
  }

  /** A device moved on; returns what that changed for the campaign. */
  mark(id: string, step: DeviceStep, detail: string | undefined, now: Date): CampaignEvent[] {
    const d = this.record.devices[id];
    if (!d || this.record.state === 'cancelled' || this.record.state === 'done') return [];
    d.step = step;
    if (detail === undefined) delete d.detail; else d.detail = detail;
    this.record.updatedAt = now.toISOString();
    return this.evaluate(now);
  }

  pause(reason: string, now: Date): void {
    if (this.record.state !== 'running') throw new NxtError('not-running', `campaign ${this.id} is ${this.record.state}`);
    this.record.state = 'paused';
    this.record.reason = reason;
    this.record.updatedAt = now.toISOString();
  }

  /** Go on; the failures so far are accepted (only new ones beyond the limit pause it again). */
  resume(now: Date): CampaignEvent[] {
    if (this.record.state !== 'paused') throw new NxtError('not-paused', `campaign ${this.id} is ${this.record.state}, not paused`);
    this.record.state = 'running';
    delete this.record.reason;
    this.record.acceptedFailures = this.count(FAILED);
    this.record.updatedAt = now.toISOString();
    return this.evaluate(now);
  }

  cancel(now: Date): void {
    if (this.record.state === 'done' || this.record.state === 'cancelled') throw new NxtError('not-running', `campaign ${this.id} is ${this.record.state}`);
    this.record.state = 'cancelled';
    this.record.reason = 'cancelled by the operator';
    this.record.updatedAt = now.toISOString();
  }

  /** After a server restart: a push that was under way when it stopped is due again. */
  restarted(): void {
    for (const d of Object.values(this.record.devices)) if (d.step === 'sending') d.step = 'waiting';
  }

  counts(): Record<DeviceStep, number> {
    const c: Record<DeviceStep, number> = { waiting: 0, sending: 0, trial: 0, committed: 0, already: 0, failed: 0, 'rolled-back': 0 };
    for (const d of Object.values(this.record.devices)) c[d.step]++;
    return c;
  }

  private count(steps: ReadonlySet<DeviceStep>, ids: readonly string[] = this.record.members): number {
    return ids.filter((id) => steps.has(this.record.devices[id]!.step)).length;
  }

  /** The failure limit for the devices reached so far. */
  failureLimit(): number {
    const l = this.record.spec.maxFailures;
    return 'count' in l ? l.count : Math.floor((l.percent * this.reached()) / 100);
  }

  private evaluate(now: Date): CampaignEvent[] {
    const r = this.record;
    if (r.state !== 'running') return [];
    const failures = this.count(FAILED) - r.acceptedFailures;
    if (failures > this.failureLimit()) {
      const reason = `${failures} device${failures === 1 ? '' : 's'} failed or rolled back, more than the limit of ${this.failureLimit()} for the ${this.reached()} reached so far`;
      this.pause(reason, now);
      return [{ kind: 'paused', reason }];
    }
    const events: CampaignEvent[] = [];
    while (r.stage < r.spec.stages.length - 1) {
      const reached = r.members.slice(0, this.reached());
      if (this.count(SUCCEEDED, reached) < Math.ceil((r.spec.successPercent * reached.length) / 100)) break;
      r.stage++;
      events.push({ kind: 'stage', stage: r.stage, devices: this.reached() });
    }
    const last = r.stage === r.spec.stages.length - 1;
    const reachedAll = r.members.slice(0, this.reached());
    if (last && this.count(FINAL, reachedAll) === reachedAll.length) {
      r.state = 'done';
      const c = this.counts();
      r.reason = `${c.committed} committed, ${c.already} already had it, ${c.failed + c['rolled-back']} failed or rolled back`;
      events.push({ kind: 'done', reason: r.reason });
    }
    return events;
  }
}

export function stageSize(stage: Stage, members: number): number {
  const n = 'count' in stage ? stage.count : Math.ceil((stage.percent * members) / 100);
  return Math.max(1, Math.min(members, n));
}

export function inWindow(window: TimeWindow | undefined, now: Date): boolean {
  if (!window) return true;
  const minute = now.getHours() * 60 + now.getMinutes();
  return window.from <= window.to ? minute >= window.from && minute < window.to : minute >= window.from || minute < window.to;
}

// --- parsing what the operator types ---------------------------------------------------------

/** "1,10%,50%,100%": counts and shares, each reaching at least as far as the one before. */
export function parseStages(text: string): Stage[] {
  const stages = text.split(',').map((part) => {
    const percent = /^(\d+(?:\.\d+)?)%$/.exec(part);
    if (percent) {
      const p = Number(percent[1]);
      if (p <= 0 || p > 100) throw new NxtError('usage', `stage "${part}": a share is more than 0% and at most 100%`);
      return { percent: p };
    }
    if (!/^\d+$/.test(part) || Number(part) < 1) throw new NxtError('usage', `stage "${part}" is neither a number of devices nor a share like 10%`);
    return { count: Number(part) };
  });
  if (stages.length === 0 || stages.length > 20) throw new NxtError('usage', '--stages takes 1 to 20 stages, e.g. 1,10%,50%,100%');
  return stages;
}

/** "95%" (or "95"): a share from 0 to 100. */
export function parsePercent(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)%?$/.exec(text);
  const p = m ? Number(m[1]) : NaN;
  if (!(p >= 0 && p <= 100)) throw new NxtError('usage', `${flag} "${text}" is not a share from 0% to 100%`);
  return p;
}

/** "3" (devices) or "10%" (of those reached so far). */
export function parseLimit(flag: string, text: string): Limit {
  if (text.endsWith('%')) return { percent: parsePercent(flag, text) };
  if (!/^\d+$/.test(text)) throw new NxtError('usage', `${flag} "${text}" is neither a number of devices nor a share like 10%`);
  return { count: Number(text) };
}

/** "22:00-04:00", server local time. */
export function parseWindow(text: string): TimeWindow {
  const m = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$/.exec(text);
  const minutes = (h: string, mm: string): number => {
    const hour = Number(h);
    const minute = Number(mm);
    if (hour > 23 || minute > 59) throw new NxtError('usage', `--window "${text}": hours 0-23, minutes 0-59`);
    return hour * 60 + minute;
  };
  if (!m) throw new NxtError('usage', `--window "${text}" is not HH:MM-HH:MM`);
  const window = { from: minutes(m[1]!, m[2]!), to: minutes(m[3]!, m[4]!) };
  if (window.from === window.to) throw new NxtError('usage', `--window "${text}" is empty`);
  return window;
}

export function describeStages(spec: CampaignSpec, members: number): string {
  return spec.stages.map((s) => stageSize(s, members)).join(', ');
}

export function formatWindow(w: TimeWindow): string {
  const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return `${hhmm(w.from)}-${hhmm(w.to)}`;
}
