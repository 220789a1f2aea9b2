/**
 * Several server nodes serving one fleet through one PostgreSQL database (docs/deploy.md).
 *
 * A device's session lives on one node — the one its datagrams reach (a balancer keeps a device
 * on one node) — and only that node can send to it. So each node:
 * - says it is alive every HEARTBEAT_MS (`nodes`), and has a number that is the top byte of every
 *   session index it hands out (the connection id names the node that holds the session);
 * - saves the devices it holds with its name (`registrations.node`), and reads the others' every
 *   REFRESH_MS, so its console lists and targets the whole fleet;
 * - turns a push to devices another node holds into rows of `remote_pushes` (the release in
 *   `release_files`, its bytes in parts: shared-files.ts), which that node claims (FOR UPDATE
 *   SKIP LOCKED), carries out and answers in the same rows; NOTIFY wakes it, a check every
 *   REFRESH_MS makes up for a missed wake-up;
 *   commands for one such device (tag, untag) go the same way through `remote_commands`;
 * - treats a node whose heartbeat is older than NODE_TIMEOUT_MS as gone: its pushes in progress
 *   fail with that reason, and its devices, moved by the balancer, shake hands with a live node
 *   (which tells them at once that it has no session for them: docs/protocol.md).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { signApproval, verifyApproval } from '../security/manifest.js';
import type { Signer } from '../security/release-key.js';
import { UpdateResult, UpdateState } from '../protocol/messages.js';
import { ResultCode } from '../protocol/result-codes.js';
import type { NodeRow, Store } from '../store/store.js';
import type { WallClock } from '../util/clock.js';
import { PRESIGNED_SUFFIX, type Release } from './release.js';
import type { StoredRelease } from './release-store.js';
import type { ClientRecord } from './registry.js';
import { LAST_SEEN_SAVE_MS } from './registry-saver.js';
import type { NxtServer, PushReport, TrialOutcome } from './server.js';
import type { CampaignRecord } from './campaign.js';
import { JobsSeen } from './job-store.js';
import { PARTS_CHANNEL, partsOf, readParts, writeParts } from './shared-files.js';

/** A remote command's answer, as the node that carried it out wrote it. */
type CommandResult = { ok: true; changed: boolean } | { ok: false; code: string; message: string };

export const HEARTBEAT_MS = 2000;
export const NODE_TIMEOUT_MS = 10_000;
export const REFRESH_MS = 2000;
/** A push row no live node took within this long fails (its node lost it). */
const UNCLAIMED_MS = 30_000;
/** Answered pushes are kept a day (to look at), events a month (a campaign taken over replays
 *  the probation outcomes since it began); pruned every ten minutes. */
const KEEP_PUSHES_MS = 24 * 3600_000;
const KEEP_EVENTS_MS = 30 * 24 * 3600_000;
const PRUNE_EVERY_MS = 10 * 60_000;

export interface ClusterOptions {
  readonly store: Store;
  /** This node's name, unique among the nodes (`--node-name`; default host name and port). */
  readonly name: string;
  /** Where devices reach this node, for people (`nodes`). */
  readonly address: string;
  readonly wallClock: WallClock;
  readonly stateDir: string;
  /** A stored release made ready to push (signed for each device here, or signed offline). */
  readonly prepare: (stored: StoredRelease) => Promise<Release>;
  /** The release key, to approve what this node shares (none: only releases signed offline). */
  readonly signer?: Signer;
  /** Its public half: what another node shares must carry its approval. */
  readonly publicKey: Uint8Array;
  readonly warn: (line: string) => void;
}

/** A push report as it travels between nodes (JSON). */
interface WireReport {
  readonly ok: boolean;
  readonly already: boolean;
  readonly code: number;
  readonly message: string;
  readonly active?: ClientRecord['version'];
  readonly elapsedMs: number;
  readonly address?: string;
}

/** A release one node removed (remove-release), as it travels to the others (JSON). */
type RemovedRelease = Pick<StoredRelease, 'sha256' | 'version' | 'for'>;

/** A probation outcome as it travels between nodes (JSON). */
interface WireOutcome {
  readonly client: string;
  readonly name: string;
  readonly committed: boolean;
  readonly code: number;
  readonly version: ClientRecord['version'];
  readonly sha256: string;
  readonly active: ClientRecord['version'];
  readonly message: string;
}

/** What takes over a gone node's campaigns (Rollouts.adopt). */
export interface CampaignTaker {
  adopt(records: readonly CampaignRecord[], outcomes: readonly TrialOutcome[]): void;
}

export class Cluster {
  private server: NxtServer | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private remote: ClientRecord[] = [];
  private live = new Map<string, NodeRow>();
  private readonly jobsSeen = new JobsSeen();
  private working = false;
  private closed = false;
  /** Waiters for remote push results, woken by NOTIFY nxt_results. */
  private readonly resultWaiters = new Set<() => void>();
  private lastEvent = 0;
  private prunedAt = 0;
  /** Files whose bytes are in the database (or on their way there), by sha256: `described` once
   *  another node may start fetching (it waits for parts not written yet), `all` once every
   *  part is there. */
  private readonly shares = new Map<string, { described: Promise<void>; all: Promise<void> }>();
  /** Waiters for a part of a shared file, woken by NOTIFY nxt_parts. */
  private readonly partWaiters = new Set<() => void>();
  private reading = false;
  private campaigns: CampaignTaker | undefined;

  private constructor(private readonly o: ClusterOptions, readonly number: number) {}

  static async join(o: ClusterOptions): Promise<Cluster> {
    const now = o.wallClock.wallNow();
    const number = await o.store.joinNode(o.name, o.address, now.toISOString(), new Date(now.getTime() - NODE_TIMEOUT_MS).toISOString());
    return new Cluster(o, number);
  }

  get name(): string { return this.o.name; }

  /** Where the campaigns of a node that is gone go (this node's Rollouts). */
  takeCampaignsInto(taker: CampaignTaker): void { this.campaigns = taker; }

  /** A probation outcome a device told this node: the node running its campaign may be another. */
  async publishOutcome(t: TrialOutcome): Promise<void> {
    const wire: WireOutcome = {
      client: t.client.id, name: t.name, committed: t.committed, code: t.code, version: t.version, sha256: t.sha256, active: t.active, message: t.message,
    };
    await this.o.store.addEvent(this.o.name, 'trial-outcome', wire, this.o.wallClock.wallNow().toISOString());
    await this.o.store.engine.notify?.('nxt_events');
  }

  /** A release was removed here (and its rows from the database): the other nodes forget it and
   *  delete their copies when they read the event; it is shared again if pushed again. */
  async releaseRemoved(r: StoredRelease): Promise<void> {
    this.shares.delete(r.sha256);
    const removed: RemovedRelease = { sha256: r.sha256, version: r.version, ...(r.for === undefined ? {} : { for: r.for }) };
    await this.o.store.addEvent(this.o.name, 'release-removed', removed, this.o.wallClock.wallNow().toISOString());
    await this.o.store.engine.notify?.('nxt_events');
  }

  /** Start: heartbeats, the view of the other nodes' devices, and the work they hand us. */
  async attach(server: NxtServer): Promise<void> {
    this.server = server;
    const engine = this.o.store.engine;
    await engine.listen?.('nxt_work', () => { void this.work(); });
    await engine.listen?.('nxt_results', () => { for (const w of this.resultWaiters) w(); });
    await engine.listen?.(PARTS_CHANNEL, () => { for (const w of this.partWaiters) w(); });
    await engine.listen?.('nxt_events', () => { void this.readEvents().catch((err: unknown) => this.o.warn(`several nodes: ${errorMessage(err)}`)); });
    this.lastEvent = await this.o.store.lastEventId();
    await this.refresh();
    const every = (ms: number, f: () => Promise<void>): void => {
      const t = setInterval(() => { void f().catch((err: unknown) => this.o.warn(`several nodes: ${errorMessage(err)}`)); }, ms);
      t.unref();
      this.timers.push(t);
    };
    every(HEARTBEAT_MS, () => this.o.store.heartbeat(this.o.name, this.o.wallClock.wallNow().toISOString()));
    every(REFRESH_MS, async () => { await this.refresh(); await this.readEvents(); await this.takeOver(); await this.work(); });
  }

  /** The live nodes, as last read. */
  nodes(): NodeRow[] { return [...this.live.values()]; }

  /** The devices other nodes hold: online while their node is alive and saw them lately. */
  remoteClients(): readonly ClientRecord[] { return this.remote; }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.o.store.leaveNode(this.o.name).catch(() => {});
  }

  /** Which nodes are alive (their heartbeat is fresh). */
  private async refreshNodes(): Promise<NodeRow[]> {
    const now = this.o.wallClock.wallNow().getTime();
    const rows = await this.o.store.nodes();
    this.live = new Map(rows.filter((n) => n.name !== this.o.name && n.heartbeatAt !== '' && now - Date.parse(n.heartbeatAt) < NODE_TIMEOUT_MS).map((n) => [n.name, n]));
    // A node seen gone: its devices are offline from this moment, as `nodes` says it is gone.
    for (const c of this.remote) if (!this.live.has(c.node!)) c.lastSeen = Number.NEGATIVE_INFINITY;
    return rows;
  }

  /** The live nodes, the devices they hold, and the decisions, jobs and releases made at them. */
  private async refresh(): Promise<void> {
    await this.refreshNodes();
    const server = this.server;
    if (!server) return;
    server.adoptDecisions(await this.o.store.devices());
    // Only what may have changed (JobsSeen): reading every job every time grows with the fleet's
    // history.
    const now = this.o.wallClock.wallNow().getTime();
    const since = this.jobsSeen.since(now);
    const changed = await this.o.store.jobsChanged(since, server.unfinishedJobIds());
    server.adoptJobs(changed);
    this.jobsSeen.read(now, changed.reduce((max, j) => Math.max(max, j.id), since));
    // A release record is written before its bytes are shared: adopted once its file row is
    // there (the parts follow, and Cluster.copyOf waits for them).
    await server.adoptReleases(async (r) => (await this.o.store.releaseFile(r.sha256)) !== undefined);
    const local = server.registry;
    const monotonic = server.now();
    const wallNow = this.o.wallClock.wallNow().getTime();
    const remote: ClientRecord[] = [];
    for (const { client: c, node } of await this.o.store.otherNodesRegistrations(this.o.name)) {
      const held = local.get(c.id);
      // Held here and online: ours. Held here but gone quiet, and another node has it now: it moved.
      if (held && local.isOnline(held, monotonic)) continue;
      if (held) local.remove(c.id);
      // Online while its node is alive and saw it lately (a mere renewal is saved once a minute);
      // a dead node's devices, and those gone quiet at their node, are listed offline until they
      // register somewhere.
      const online = this.live.has(node) && wallNow - Date.parse(c.lastSeenAt) < LAST_SEEN_SAVE_MS + local.leaseMs;
      remote.push({
        id: c.id, peer: { address: c.address, port: c.port }, version: c.version, product: c.product, lastSeenAt: c.lastSeenAt, tags: [...c.tags],
        lastSeen: online ? monotonic : Number.NEGATIVE_INFINITY, updateState: c.updateState ?? UpdateState.idle, updateResult: c.updateResult ?? UpdateResult.initial, node,
      });
    }
    this.remote = remote;
  }

  /** Outcomes other nodes heard, for the campaigns run here; releases they removed. */
  private async readEvents(): Promise<void> {
    const server = this.server;
    if (!server || this.reading) return;
    this.reading = true;
    try {
      for (;;) {
        const events = await this.o.store.events(this.lastEvent);
        if (events.length === 0) return;
        this.lastEvent = events[events.length - 1]!.id;
        for (const e of events) {
          if (e.node === this.o.name) continue;
          if (e.kind === 'trial-outcome') server.hearOutcome(this.outcomeOf(JSON.parse(e.doc) as WireOutcome));
          if (e.kind === 'release-removed') {
            const removed = JSON.parse(e.doc) as RemovedRelease;
            this.shares.delete(removed.sha256);
            await server.forgetRelease(removed).catch((err: unknown) => this.o.warn(`could not delete the copy of a release node ${e.node} removed: ${errorMessage(err)}`));
          }
        }
      }
    } finally {
      this.reading = false;
    }
  }

  private outcomeOf(w: WireOutcome): TrialOutcome {
    const known = this.remote.find((c) => c.id === w.client) ?? this.server?.registry.get(w.client);
    const client: ClientRecord = known ?? {
      id: w.client, peer: { address: '', port: 0 }, version: w.active, product: { major: 0, minor: 0, productName: '' }, lastSeen: Number.NEGATIVE_INFINITY,
      lastSeenAt: '', tags: [], updateState: UpdateState.idle, updateResult: UpdateResult.initial,
    };
    return { client, name: w.name, committed: w.committed, code: w.code, version: w.version, sha256: w.sha256, active: w.active, message: w.message };
  }

  /** The campaigns of nodes that are gone, run here from now on (once: see Store.takeCampaigns). */
  private async takeOver(): Promise<void> {
    const taker = this.campaigns;
    if (!taker) return;
    const now = this.o.wallClock.wallNow().getTime();
    if (now - this.prunedAt > PRUNE_EVERY_MS) {
      this.prunedAt = now;
      await this.o.store.prune(new Date(now - KEEP_PUSHES_MS).toISOString(), new Date(now - KEEP_EVENTS_MS).toISOString());
    }
    const { records: taken, from } = await this.o.store.takeCampaigns(this.o.name, new Date(now - NODE_TIMEOUT_MS).toISOString());
    if (taken.length === 0) return;
    const shas = new Set(taken.map((c) => c.spec.release.sha256));
    const since = taken.reduce((min, c) => (c.createdAt < min ? c.createdAt : min), taken[0]!.createdAt);
    const outcomes: TrialOutcome[] = [];
    for (let after = 0; ;) {
      const events = await this.o.store.events(after);
      if (events.length === 0) break;
      after = events[events.length - 1]!.id;
      for (const e of events) {
        if (e.kind !== 'trial-outcome' || e.at < since) continue;
        const w = JSON.parse(e.doc) as WireOutcome;
        if (shas.has(w.sha256)) outcomes.push(this.outcomeOf(w));
      }
    }
    for (const sha256 of shas) {
      try {
        this.server?.adoptRelease(await this.copyOf(sha256));
      } catch (err) {
        this.o.warn(`a release of a campaign taken over is not here: ${errorMessage(err)}`);
      }
    }
    this.o.warn(`node ${from.join(', ')} is gone: its ${taken.length} rollout campaign(s) run here now`);
    taker.adopt(taken, outcomes);
  }

  /**
   * Push `release` to devices other nodes hold: its bytes in the database once, a row per device
   * for its node. Each device's report, as its node wrote it (or a failure if the node went away
   * first), goes to `onReport` as it comes; all of them are the result.
   */
  async push(release: Release, clients: readonly ClientRecord[], onReport: (r: PushReport) => void): Promise<PushReport[]> {
    const m = release.manifest;
    const store = this.o.store;
    const started = Date.now();
    // The other nodes start as soon as the release is described (its approval checked while its
    // first part is written), and read each part as it lands.
    const sharing = this.share(release);
    await sharing.described;
    const batch = randomBytes(8).toString('hex');
    // The rows and the wake-up in one transaction: NOTIFY is delivered when it commits.
    await store.addRemotePushes(batch, clients.map((c) => ({ node: c.node!, device: c.id, sha256: m.sha256 })), this.o.wallClock.wallNow().toISOString(), 'nxt_work');
    // Cut short, the share would leave the other nodes waiting for parts that never come.
    sharing.all.catch(async (err: unknown) => {
      for (const node of new Set(clients.map((c) => c.node!))) {
        await store.failRemotePushes(batch, node, () => ({ ok: false, already: false, code: ResultCode.timeout, message: `the release could not be shared with node ${node}: ${errorMessage(err)}`, elapsedMs: Date.now() - started } satisfies WireReport)).catch(() => {});
      }
    });
    const byId = new Map(clients.map((c) => [c.id, c]));
    const reports = new Map<string, PushReport>();
    for (;;) {
      const rows = await store.remotePushes(batch);
      for (const r of rows) {
        if (r.state !== 'done' || reports.has(r.device)) continue;
        const w = JSON.parse(r.report!) as WireReport;
        const client = byId.get(r.device)!;
        if (w.ok && w.active) client.version = w.active;
        const report: PushReport = {
          client, release: m, ok: w.ok, already: w.already, outcome: { code: w.code, message: `${w.message} (via node ${r.node})`, active: w.active },
          elapsedMs: w.elapsedMs, dataMs: undefined, progress: { acked: 0, total: 0, retransmits: 0, timeouts: 0, spuriousTimeouts: 0, phase: 'done', spurious: 0, datagrams: 0, accepted: false },
        };
        reports.set(r.device, report);
        onReport(report);
      }
      if (reports.size === rows.length) return rows.map((r) => reports.get(r.device)!);
      // A node that went away (or never took its rows) fails its devices, with that reason.
      await this.refreshNodes();
      const waited = Date.now() - started;
      for (const node of new Set(rows.filter((r) => r.state !== 'done').map((r) => r.node))) {
        const why = this.unanswered(node, waited, rows.some((r) => r.node === node && r.state === 'queued'), 'the push');
        if (why === undefined) continue;
        await store.failRemotePushes(batch, node, () => ({ ok: false, already: false, code: ResultCode.timeout, message: why, elapsedMs: Date.now() - started } satisfies WireReport));
      }
      await wakeOrAfter(this.resultWaiters, 1000);
    }
  }

  /** Why work handed to `node` `waited` ms ago will not be answered: the node is gone, or it
   *  never took the work (`queued`: not yet claimed) within UNCLAIMED_MS; undefined: wait on. */
  private unanswered(node: string, waited: number, queued: boolean, what: string): string | undefined {
    if (!this.live.has(node)) return `node ${node} stopped answering`;
    if (queued && waited > UNCLAIMED_MS) return `node ${node} did not take ${what} within ${UNCLAIMED_MS / 1000} s`;
    return undefined;
  }



  /**
   * Put a device another node holds in a group, or take it out: done by that node (which saves
   * it), its answer waited for; a node that is gone, or does not take it, fails it with that
   * reason. Resolves with whether it changed anything.
   */
  async tag(client: ClientRecord, group: string, on: boolean): Promise<boolean> {
    const node = client.node!;
    const batch = randomBytes(8).toString('hex');
    const started = Date.now();
    await this.o.store.addRemoteCommand({ batch, node, device: client.id, command: on ? 'tag' : 'untag', args: { group } }, this.o.wallClock.wallNow().toISOString(), 'nxt_work');
    for (;;) {
      const row = await this.o.store.remoteCommand(batch);
      if (row?.state === 'done') {
        const result = JSON.parse(row.result!) as CommandResult;
        if (!result.ok) throw new NxtError(result.code, `${result.message} (at node ${node})`);
        // What the other node did shows in our listing now, not at the next refresh.
        const tags = client.tags as string[];
        if (on && !tags.includes(group)) tags.push(group);
        if (!on && tags.includes(group)) tags.splice(tags.indexOf(group), 1);
        return result.changed;
      }
      await this.refreshNodes();
      const why = this.unanswered(node, Date.now() - started, row?.state === 'queued', 'it');
      if (why !== undefined) {
        await this.o.store.finishRemoteCommand({ batch }, { ok: false, code: 'node-gone', message: why } satisfies CommandResult);
        continue; // its answer may have come first
      }
      await wakeOrAfter(this.resultWaiters, 1000);
    }
  }

  /** The release in the database (once per content), for any node that pushes it later: to
   *  devices it holds, or in a campaign it takes over. Resolves once all of it is there. */
  async shareRelease(release: Release): Promise<void> {
    await this.share(release).all;
  }

  private share(release: Release): { described: Promise<void>; all: Promise<void> } {
    const m = release.manifest;
    const known = this.shares.get(m.sha256);
    if (known) return known;
    let rowWritten!: () => void;
    const written = new Promise<void>((resolve) => { rowWritten = resolve; });
    const all = (async () => {
      const presigned = release.presigned ? readFileSync(release.path + PRESIGNED_SUFFIX, 'utf8') : undefined;
      if (!presigned && !this.o.signer) throw new NxtError('no-signer', `${m.name} cannot be shared with the other nodes: this node keeps no release key to approve it`);
      await this.o.store.putReleaseFile({
        sha256: m.sha256, name: m.name, presigned, parts: partsOf(m.size),
        approval: presigned ? undefined : Buffer.from(signApproval(m, this.o.signer!)).toString('base64'),
        doc: { name: m.name, version: m.version, sha256: m.sha256, size: m.size, ...(m.for === undefined ? {} : { for: m.for }) },
      });
      rowWritten();
      await writeParts(this.o.store, m.sha256, release.path, m.size);
    })();
    const entry = this.remember(m.sha256, { described: Promise.race([written, all]), all });
    entry.described.catch(() => { /* the caller awaits `all` too, or the push says it */ });
    return entry;
  }

  /** A file a job sends (`size` bytes at `path`, already hashed to `sha256`), in the database for
   *  whichever node holds the device when it polls; resolves once all of it is there. */
  async shareFile(sha256: string, path: string, size: number): Promise<void> {
    const known = this.shares.get(sha256);
    if (known) {
      await known.all;
      // Shared before, but a node may have removed the parts since (no job needed them: dropFile).
      if (await this.o.store.filePartCount(sha256) === partsOf(size)) return;
      if (this.shares.get(sha256) === known) this.shares.delete(sha256);
      return this.shareFile(sha256, path, size);
    }
    const all = writeParts(this.o.store, sha256, path, size);
    return this.remember(sha256, { described: all, all }).all;
  }

  /** A job's file that no job still needs: its parts leave the database, unless a job queued
   *  meanwhile (at any node) or a release needs them (the store checks: Store.removeFileParts). */
  async dropFile(sha256: string): Promise<void> {
    this.shares.delete(sha256);
    await this.o.store.removeFileParts(sha256);
  }

  /** A share under way or done, known until it fails (the next push or job then tries again). */
  private remember(sha256: string, entry: { described: Promise<void>; all: Promise<void> }): typeof entry {
    this.shares.set(sha256, entry);
    entry.all.catch(() => { if (this.shares.get(sha256) === entry) this.shares.delete(sha256); });
    return entry;
  }

  /** A file another node shared (shareFile), into `dest`, checked against its sha256. */
  fetchFile(sha256: string, size: number, dest: string): Promise<void> {
    return readParts(this.o.store, sha256, size, dest, () => wakeOrAfter(this.partWaiters, 250));
  }



  /** Carry out the pushes and commands other nodes handed us. */
  private async work(): Promise<void> {
    const server = this.server;
    if (!server || this.working || this.closed) return;
    this.working = true;
    try {
      for (const c of await this.o.store.claimRemoteCommands(this.o.name)) await this.carryOutCommand(server, c);
      for (;;) {
        const claimed = await this.o.store.claimRemotePushes(this.o.name);
        if (claimed.length === 0) return;
        const groups = new Map<string, typeof claimed>();
        for (const c of claimed) {
          const key = `${c.batch} ${c.sha256}`;
          groups.set(key, [...(groups.get(key) ?? []), c]);
        }
        // Each batch in the background: a long push must not hold up the next one.
        for (const rows of groups.values()) void this.carryOut(server, rows);
      }
    } finally {
      this.working = false;
    }
  }

  private async carryOutCommand(server: NxtServer, c: { id: number; device: string; command: string; args: unknown }): Promise<void> {
    let result: CommandResult;
    try {
      const group = (c.args as { group?: unknown }).group;
      if ((c.command !== 'tag' && c.command !== 'untag') || typeof group !== 'string') throw new NxtError('usage', `no such command for a device: ${c.command}`);
      // Held here, or not at all: a device that moved on is not chased from node to node.
      if (!server.registry.get(c.device)) throw new NxtError('held-elsewhere', `${c.device.slice(0, 12)} is not connected to node ${this.o.name} any more`);
      result = { ok: true, changed: await server.setTag(c.device, group, c.command === 'tag') };
    } catch (err) {
      result = { ok: false, code: err instanceof NxtError ? err.code : 'failed', message: errorMessage(err) };
    }
    await this.o.store.finishRemoteCommand({ id: c.id }, result, 'nxt_results').catch(() => {});
  }

  private async carryOut(server: NxtServer, rows: { id: number; batch: string; device: string; sha256: string }[]): Promise<void> {
    const store = this.o.store;
    const started = Date.now();
    const fail = (message: string): WireReport => ({ ok: false, already: false, code: ResultCode.timeout, message, elapsedMs: Date.now() - started });
    try {
      const release = await this.o.prepare(await this.copyOf(rows[0]!.sha256));
      const now = server.now();
      const clients: ClientRecord[] = [];
      for (const r of rows) {
        const c = server.registry.get(r.device);
        if (c && server.registry.isOnline(c, now)) clients.push(c);
        else await store.finishRemotePushes([{ id: r.id, report: fail(`not connected to node ${this.o.name} any more`) }], 'nxt_results');
      }
      const reports = clients.length === 0 ? [] : await server.push(release, clients);
      await store.finishRemotePushes(reports.map((report) => ({
        id: rows.find((r) => r.device === report.client.id)!.id,
        report: { ok: report.ok, already: report.already, code: report.outcome.code, message: report.outcome.message, active: report.outcome.active, elapsedMs: report.elapsedMs } satisfies WireReport,
      })), 'nxt_results');
      return;
    } catch (err) {
      await store.finishRemotePushes(rows.map((r) => ({ id: r.id, report: fail(`node ${this.o.name} could not push it: ${errorMessage(err)}`) })), 'nxt_results').catch(() => {});
    }
  }

  /** The release with this content in our releases folder, from the database if not there yet
   *  (bytes another node stored: checked against the release key's approval). */
  async copyOf(sha256: string): Promise<StoredRelease> {
    const known = this.server?.storedReleases().find((r) => r.sha256 === sha256);
    if (known && existsSync(known.file)) return known;
    const row = await this.o.store.releaseFile(sha256);
    if (!row) throw new Error(`release ${sha256.slice(0, 12)}… is not in the database`);
    const d = JSON.parse(row.doc) as Omit<StoredRelease, 'file' | 'presigned' | 'storedAt'>;
    // Nothing is signed here for bytes the release key did not approve (whoever wrote the row):
    // the approval names the content (sha256 and size), and the bytes are read against it.
    const identity = { name: d.name, version: d.version, size: d.size, sha256, for: d.for };
    if (d.sha256 !== sha256 || (row.presigned === null && (row.approval === null || !verifyApproval(identity, Buffer.from(row.approval, 'base64'), this.o.publicKey)))) {
      throw new NxtError('bad-signature', `release ${d.name} (${sha256.slice(0, 12)}…) in the database does not carry the release key's approval for its bytes: refused`);
    }
    const dir = join(this.o.stateDir, 'releases', sha256);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, /^[\w.-]+$/.test(row.name) && !row.name.startsWith('.') ? row.name : 'module.mjs');
    if (!existsSync(file)) {
      if (row.inParts) {
        await this.fetchFile(sha256, d.size, file);
      } else {
        // Written by a node older than schema version 6: the bytes whole, in the row.
        const bytes = await this.o.store.releaseBytes(sha256);
        if (!bytes || bytes.length !== d.size || createHash('sha256').update(bytes).digest('hex') !== sha256) {
          throw new NxtError('bad-signature', `release ${d.name} (${sha256.slice(0, 12)}…) in the database does not match its approval: refused`);
        }
        const tmp = `${file}.tmp-${process.pid}`;
        writeFileSync(tmp, bytes, { mode: 0o600 });
        renameSync(tmp, file);
      }
    }
    if (row.presigned !== null) writeFileSync(file + PRESIGNED_SUFFIX, row.presigned, { mode: 0o600 });
    // It came from the database: pushing it here must not send it back.
    this.shares.set(sha256, { described: Promise.resolve(), all: Promise.resolve() });
    return { ...d, file, presigned: row.presigned !== null, storedAt: this.o.wallClock.wallNow().toISOString() };
  }
}

/** Until a waiter in `waiters` is woken (a NOTIFY), or `ms` have passed (a wake-up may be missed). */
function wakeOrAfter(waiters: Set<() => void>, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const wake = (): void => { clearTimeout(t); waiters.delete(wake); resolve(); };
    const t = setTimeout(wake, ms);
    waiters.add(wake);
  });
}
