/**
 * Runs the rollout campaigns (campaign.ts) against the live server: once a second, and at once
 * when a device registers or reports its probation, each running campaign's due devices get the
 * release (prepared and sealed once, shared by every push). Push results and probation outcomes
 * move devices on; every change is saved (in the store) before anything is said about it, so a
 * campaign survives a server restart and goes on from where it was. The changes of one moment (a
 * tick sending to a thousand devices) are saved together, once.
 */
import { EventEmitter } from 'node:events';
import { NxtError, errorMessage } from '../errors.js';
import { compareReleaseVersions } from '../protocol/release-version.js';
import { ResultCode } from '../protocol/result-codes.js';
import type { Store } from '../store/store.js';
import type { WallClock } from '../util/clock.js';
import { Campaign, type CampaignEvent, type CampaignRecord, type CampaignSpec } from './campaign.js';
import type { Release } from './release.js';
import type { ReleaseStore, StoredRelease } from './release-store.js';
import type { ClientRecord } from './registry.js';
import type { NxtServer, PushReport, TrialOutcome } from './server.js';

const TICK_MS = 1000;
/** A device that came online is looked at within this long. */
const SOON_MS = 100;
/** Finished campaigns kept for `rollout status`. */
const KEEP_FINISHED = 50;

export interface RolloutsOptions {
  readonly server: NxtServer;
  readonly releases: ReleaseStore;
  readonly prepare: (stored: StoredRelease) => Promise<Release>;
  readonly wallClock: WallClock;
  /** undefined: nothing persisted (tests). */
  readonly store?: Store;
  /** The campaigns the store had at start (Store.campaigns). */
  readonly saved?: readonly CampaignRecord[];
  /** This node's name when several nodes share the store: it runs the campaigns saved under it. */
  readonly node?: string;
}

/** Events: 'event' (Campaign, CampaignEvent): a stage began, it paused by itself, or it is done;
 *  'warning' (string). */
export class Rollouts extends EventEmitter {
  private readonly campaigns: Campaign[] = [];
  private readonly timer: NodeJS.Timeout;
  private ticking = false;
  private soon: NodeJS.Timeout | undefined;
  /** Campaigns changed since the last save, and that save's promise while it is being gathered. */
  private readonly dirty = new Set<Campaign>();
  private saving: Promise<void> | undefined;

  constructor(private readonly o: RolloutsOptions) {
    super();
    for (const record of o.saved ?? []) {
      const c = new Campaign(record);
      c.restarted();
      this.campaigns.push(c);
    }
    o.server.on('trial-outcome', (t: TrialOutcome) => this.onTrialOutcome(t));
    // A device that comes online may be due: looked at soon, once for all that came meanwhile (a
    // fleet coming back after a restart is thousands of registrations, and a tick reads the fleet).
    o.server.on('client-registered', () => this.tickSoon());
    o.server.on('client-back', () => this.tickSoon());
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  list(): readonly Campaign[] { return this.campaigns; }

  /**
   * Campaigns this node took over from a node that is gone (several nodes): run from where they
   * were, with the probation outcomes heard since they started (`outcomes`, oldest first).
   */
  adopt(records: readonly CampaignRecord[], outcomes: readonly TrialOutcome[]): void {
    const adopted: Campaign[] = [];
    for (const record of records) {
      if (this.campaigns.some((c) => c.id === record.id)) continue;
      const c = new Campaign(record);
      this.campaigns.push(c);
      adopted.push(c);
      this.emit('warning', `rollout ${c.id}: taken over from a node that stopped`);
    }
    // Outcomes first (a device still "sending" to the gone node may have committed since), then
    // what is still "sending" is sent again.
    for (const t of outcomes) this.onTrialOutcome(t);
    for (const c of adopted) c.restarted();
    queueMicrotask(() => this.tick());
  }

  /** The campaign named by id, or the one not finished if there is only one. */
  find(id?: string): Campaign {
    if (id !== undefined) {
      const c = this.campaigns.find((x) => String(x.id) === id);
      if (!c) throw new NxtError('no-such-campaign', `no campaign ${id} (rollout status lists them)`);
      return c;
    }
    const open = this.campaigns.filter((c) => c.state === 'running' || c.state === 'paused');
    if (open.length === 1) return open[0]!;
    throw new NxtError('usage', open.length === 0 ? 'no campaign is running or paused' : `${open.length} campaigns are open: name one (rollout status lists them)`);
  }

  /** Start a campaign; saved before it is returned (or the error thrown, nothing started). */
  async start(spec: CampaignSpec, members: readonly string[]): Promise<Campaign> {
    const id = this.o.store ? await this.o.store.nextCampaignId() : this.campaigns.reduce((max, c) => Math.max(max, c.id), 0) + 1;
    const campaign = Campaign.create(id, spec, members, this.o.wallClock.wallNow());
    this.campaigns.push(campaign);
    try {
      await this.save(campaign);
    } catch (err) {
      this.campaigns.splice(this.campaigns.indexOf(campaign), 1);
      throw err;
    }
    queueMicrotask(() => this.tick());
    return campaign;
  }

  /** Pause, resume or cancel: saved, or undone and the error thrown. */
  async change(campaign: Campaign, action: 'pause' | 'resume' | 'cancel'): Promise<void> {
    const before = JSON.stringify(campaign.record);
    const now = this.o.wallClock.wallNow();
    let events: CampaignEvent[] = [];
    if (action === 'pause') campaign.pause('paused by the operator', now);
    else if (action === 'resume') events = campaign.resume(now);
    else campaign.cancel(now);
    try {
      await this.save(campaign);
    } catch (err) {
      // Not saved, so not done: the record as it was (a reason the change added goes too).
      const record = campaign.record as unknown as Record<string, unknown>;
      const was = JSON.parse(before) as Record<string, unknown>;
      for (const key of Object.keys(record)) if (!(key in was)) delete record[key];
      Object.assign(record, was);
      throw err;
    }
    for (const e of events) this.emit('event', campaign, e);
    if (action === 'resume') queueMicrotask(() => this.tick());
  }

  close(): void {
    clearInterval(this.timer);
    clearTimeout(this.soon);
  }

  /** Save `campaign` with the others changed at this moment (and drop the oldest finished ones):
   *  one write, made once the current task is over. */
  private save(campaign: Campaign): Promise<void> {
    if (!this.o.store) return Promise.resolve();
    const store = this.o.store;
    this.dirty.add(campaign);
    this.saving ??= new Promise<void>((resolve, reject) => queueMicrotask(() => {
      const changed = [...this.dirty];
      this.dirty.clear();
      this.saving = undefined;
      const finished = this.campaigns.filter((c) => c.state === 'done' || c.state === 'cancelled');
      const dropped = finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED));
      for (const old of dropped) this.campaigns.splice(this.campaigns.indexOf(old), 1);
      store.saveCampaigns(changed.filter((c) => !dropped.includes(c)).map((c) => c.record), dropped.map((c) => c.id), this.o.node ?? '').then(resolve, reject);
    }));
    return this.saving;
  }

  /** Move a device on, save, and tell; a save that fails is reported (the next change tries again). */
  private mark(campaign: Campaign, id: string, step: Parameters<Campaign['mark']>[1], detail?: string): void {
    const events = campaign.mark(id, step, detail, this.o.wallClock.wallNow());
    void this.save(campaign).catch((err: unknown) => {
      this.emit('warning', `could not save the rollout campaigns: ${errorMessage(err)}`);
    }).then(() => {
      for (const e of events) this.emit('event', campaign, e);
    });
  }

  private tickSoon(): void {
    if (this.soon !== undefined || !this.campaigns.some((c) => c.state === 'running')) return;
    this.soon = setTimeout(() => { this.soon = undefined; this.tick(); }, SOON_MS);
    this.soon.unref();
  }

  private tick(): void {
    if (this.ticking || !this.campaigns.some((c) => c.state === 'running')) return;
    this.ticking = true;
    try {
      const now = this.o.wallClock.wallNow();
      // The whole fleet's online devices: those other nodes hold are pushed to through them.
      const online = new Map(this.o.server.fleetOnline().map((c) => [c.id, c]));
      for (const campaign of this.campaigns) {
        const due = campaign.due(now, (id) => online.has(id));
        if (due.length === 0) continue;
        const release = this.o.releases.list().find((r) => r.sha256 === campaign.record.spec.release.sha256);
        if (!release) {
          campaign.pause('its release is no longer stored on the server', now);
          this.emit('event', campaign, { kind: 'paused', reason: campaign.record.reason! });
          continue;
        }
        const send: ClientRecord[] = [];
        for (const id of due) {
          const client = online.get(id)!;
          // Already there (or beyond): reported as such, not sent, and not a failure.
          if (compareReleaseVersions(client.version, release.version) >= 0) this.mark(campaign, id, 'already', `runs ${client.version.major}.${client.version.minor}.${client.version.patch}`);
          else {
            this.mark(campaign, id, 'sending');
            send.push(client);
          }
        }
        if (send.length > 0) void this.send(campaign, release, send);
      }
    } finally {
      this.ticking = false;
    }
  }

  private async send(campaign: Campaign, stored: StoredRelease, clients: ClientRecord[]): Promise<void> {
    let reports: PushReport[];
    try {
      reports = await this.o.server.push(await this.o.server.preparedStored(stored, this.o.prepare), clients);
    } catch (err) {
      // Not sent at all (the release could not be prepared or sealed): due again at the next tick.
      this.emit('warning', `rollout ${campaign.id}: ${errorMessage(err)}`);
      for (const c of clients) this.mark(campaign, c.id, 'waiting', errorMessage(err));
      return;
    }
    for (const r of reports) {
      const code = r.outcome.code;
      if (r.already) this.mark(campaign, r.client.id, 'already', r.outcome.message);
      else if (r.ok) this.mark(campaign, r.client.id, 'trial');
      else if (code === ResultCode.timeout || code === ResultCode.cancelled || code === ResultCode.deferred) {
        // Gone quiet, stopped, or kept for a deferred upgrade: sent again when due.
        this.mark(campaign, r.client.id, 'waiting', r.outcome.message);
      } else if (code === ResultCode.rolledBack) this.mark(campaign, r.client.id, 'rolled-back', r.outcome.message);
      else this.mark(campaign, r.client.id, 'failed', r.outcome.message);
    }
  }

  private onTrialOutcome(t: TrialOutcome): void {
    for (const campaign of this.campaigns) {
      if (campaign.record.spec.release.sha256 !== t.sha256) continue;
      const d = campaign.record.devices[t.client.id];
      if (!d || (d.step !== 'trial' && d.step !== 'sending')) continue;
      this.mark(campaign, t.client.id, t.committed ? 'committed' : 'rolled-back', t.committed ? undefined : t.message);
    }
  }
}
