/**
 * The nxt server: answers registrations, keeps the fleet registry, and runs pushes. It is the
 * dispatcher between the secure channel and the per-client push sessions.
 */
import { EventEmitter } from 'node:events';
import { errorMessage, NxtError } from '../errors.js';
import { createHash, timingSafeEqual } from 'node:crypto';
import { mismatch, type DeviceFacts } from '../security/compatibility.js';
import { decodeOrUndefined, encode, Enrollment, hasFeature, type EnrollmentValue, type Message, type GoodbyeMessage, type RegisterMessage, type TrialOutcomeMessage } from '../protocol/messages.js';
import { ResultCode, resultCodeName } from '../protocol/result-codes.js';
import { formatReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import type { SenderOptions, SendOutcome } from '../transfer/sender.js';
import type { HandOver } from '../transfer/group-pace.js';
import { displayAddress } from '../net/endpoint.js';
import type { AuthenticatedPeer, ServerChannel } from '../session/server-channel.js';
import { fingerprint } from '../session/identity.js';
import { KeyedBuckets } from '../session/rate-limit.js';
import { Devices, parseInventory, type DeviceRecord } from './devices.js';
import type { Job } from './job-store.js';
import type { Clock, WallClock } from '../util/clock.js';
import type { History } from './history.js';
import { offerTimeoutFor, PushSession, type PushProgress } from './push-session.js';
import { DEFAULT_LEASE_MS, DEFAULT_RENEW_MS, Registry, type ClientRecord, type SavedClient } from './registry.js';
import { chunkSizeFor, PRESIGNED_SUFFIX, SMALL_CHUNK_BYTES, type ChunkSizeRelease, type Release } from './release.js';
import { SealedReleases, smallAtOnce, type SealedLease, type SealedRelease } from './sealed-release.js';
import { SealThread } from './seal-thread.js';
import { STALLED_AFTER_MS } from '../files/outgoing-file.js';
import { PathMtu } from '../transfer/path-mtu.js';
import { Turns } from '../util/turns.js';
import { routeTo } from '../net/interface-mtu.js';
import { FRAGMENTED_DATAGRAM, FragmentPolicy, type FragmentDecision } from '../net/fragments.js';
import { MAX_UDP_PAYLOAD_BYTES } from '../protocol/envelope.js';
import { existsSync, mkdtempSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeStored, type ReleaseStore, type StoredRelease } from './release-store.js';
import type { Notifier } from './notifier.js';
import type { JobServer } from './job-server.js';
import { RegistrySaver } from './registry-saver.js';
import type { NodeRow, Store } from '../store/store.js';
import type { Cluster } from './cluster.js';
import { compareReleaseVersions } from '../protocol/release-version.js';
import { UpdateState } from '../protocol/messages.js';
import type { Manifest } from '../security/manifest.js';
import type { SharedRate } from '../transfer/rate-share.js';
import { GroupPush, type GroupPushOptions } from './group-push.js';
import { formatGroup, type MulticastSender } from '../net/multicast.js';

export interface NxtServerOptions {
  /** Every datagram in and out goes through the secure channel. */
  readonly channel: ServerChannel;
  readonly clock: Clock;
  readonly wallClock: WallClock;
  /** Enrollment decisions (approve, reject, revoke). */
  readonly devices: Devices;
  /** A device that registers with one of these is approved without the operator. */
  readonly enrollTokens?: readonly string[];
  readonly randomU32: () => number;
  readonly renewMs?: number;
  readonly leaseMs?: number;
  readonly maxClients?: number;
  readonly sender?: Partial<SenderOptions>;
  /** Where every push result is recorded, whoever started the push, stamped with wall time. */
  readonly history?: {
    readonly log: History; readonly wallClock: WallClock;
    /** Forget entries this much older than now (--keep-history; release summaries stay); none: keep them. */
    readonly keepMs?: number;
  };
  /** Where sealed releases are cached (`sealed/`); none: a temporary folder. */
  readonly stateDir?: string;
  /** Seal releases in a thread of their own (seal-thread.ts), beside sending; else in this one. */
  readonly sealInThread?: boolean;
  /** Where the fleet's state is kept across restarts (store/); none: memory only. */
  readonly store?: Store;
  /** The registrations the store had at start (Store.registrations). */
  readonly savedClients?: readonly SavedClient[];
  /** Several nodes serving one fleet (cluster.ts): pushes to devices other nodes hold go to them. */
  readonly cluster?: Cluster;
  /** Every module pushed, kept for `rollout latest` and automatic catch-up. */
  readonly releases?: ReleaseStore;
  /** Turns a stored module back into a signed release (the release key lives with the console). */
  readonly prepareStored?: (stored: StoredRelease) => Promise<Release>;
  /** Push the latest release to any approved client that registers behind it. */
  readonly autoUpdate?: boolean;
  /** Where alerts go (webhook, email): failed pushes, devices left behind. */
  readonly notifier?: Notifier;
  /** Alert when an online device has run a release older than the latest for this long. */
  readonly behindAfterMs?: number;
  /** The largest datagram to send (`--max-datagram`), below what each path is found to carry. */
  readonly maxDatagram?: number;
  /** Large chunks may go in pieces to devices that take them (false: `--no-pieces`). */
  readonly pieces?: boolean;
  /** Maintenance jobs (their queue, uploads, puts). */
  readonly jobs?: JobServer;
  /** A push to two devices or more goes through this multicast group first (group-push.ts). */
  readonly multicast?: { readonly sender: MulticastSender; readonly options?: Partial<GroupPushOptions> };
  /** The most every transfer together sends (`--max-rate`), shared among them (rate-share.ts). */
  readonly maxRate?: SharedRate;
}

function describeFragmentDecision(d: FragmentDecision, pieces: boolean): string {
  const percent = (x: number): string => `${(100 * x).toFixed(1)}%`;
  const what = pieces ? 'chunks in pieces' : 'datagrams that IP fragments';
  switch (d.change) {
    case 'blocked': return pieces ? `${what} never arrived: small chunks from now on, this push again at once` : `${what} never arrived: whole ones for 10 minutes, this push again at once`;
    case 'lossy': return `${percent(d.share)} of the chunks sent in ${what} were resent: ${pieces ? '1400-byte chunks' : 'whole datagrams'} for 10 minutes, unless they lose as much`;
    case 'link-loss': return `whole datagrams lost as much (${percent(d.share)} resent, against ${percent(d.fragmentedShare ?? 0)}): the link loses datagrams, not ${pieces ? 'pieces' : 'fragments'}; ${pieces ? 'pieces' : 'fragmented ones'} again`;
  }
}

/** A push in datagrams that IP fragments (or in pieces) gives up on them once it has sent this
 *  many chunks and resent more than this share of them (net/fragments.ts). */
const GIVE_UP_AFTER_CHUNKS = 256;
const GIVE_UP_RESENT_SHARE = 0.5;

/** Paths remembered (one per client and address): a fleet's worth, bounded. */
const MAX_PATHS = 200_000;
/** A release not signed yet, as chunkSizeFor sees it (sealEarly: one signed offline goes apart). */
const UNSIGNED: ChunkSizeRelease = { presigned: false, manifest: { chunkSize: SMALL_CHUNK_BYTES } };

/** A datagram size that takes only small chunks (chunkSizeFor). */
const SMALL_CHUNK_DATAGRAM = 1452;

/** The way to one device at one address: what the local interfaces say of it, and the datagram
 *  size search (made anew when fragments are allowed or taken away). */
interface KnownPath {
  readonly whole: number;
  readonly onLink: boolean;
  /** Large chunks in datagrams that IP fragments (a device on our own LAN). */
  fragments: boolean;
  /** Large chunks in pieces (a path whose datagrams cannot carry one whole, and no fragments). */
  pieces: boolean;
  mtu: PathMtu;
  /** How long the device took to answer the last OFFER it answered here: the next one waits for
   *  its answer about twice that before it goes again (offerTimeoutFor). */
  offerAnswerMs?: number;
}

/** After a failed automatic push, wait this long before trying that client again. */
const AUTO_RETRY_MS = 60_000;
/** Manifests signed between two turns of the event loop (~4 ms each: tweetnacl). */
const SIGNATURES_PER_TURN = 4;
/** Registrations are soft state, saved at most this often (tags are saved at once). */
const FLEET_SAVE_MS = 1000;
const FLEET_RETRY_MS = 10_000;
/** How often old history entries are looked for (--keep-history), and how many go at most. */
const HISTORY_SWEEP_MS = 10 * 60_000;
const FORGET_HISTORY_PER_SWEEP = 10_000;

/** How often the server looks at its socket's count of datagrams dropped unread (Linux). */
const DROPS_SAMPLE_MS = 1_000;
const DROPS_WARN_EVERY_MS = 60_000;
/** Probation outcomes a device may report: 20 at once, then one each 10 s. A device reports one
 *  per module it tried; each is a record saved (a commit on this thread) and maybe an alert, so
 *  one misbehaving device could otherwise fill the history and the operator's mailbox. */
const OUTCOMES_PER_SECOND = 0.1;
const OUTCOME_BURST = 20;
const OUTCOME_WARN_EVERY_MS = 60_000;

export interface ServerStats {
  datagrams: number;
  malformed: number;
  unexpected: number;
  foreign: number;
  registrations: number;
  /** Registrations refused because the registry was full of online clients. */
  refused: number;
  /** REGISTERs naming a client id other than the key of the session they came on. */
  impersonation: number;
  /** Probation outcomes beyond a device's budget: acknowledged, not recorded. */
  outcomesIgnored: number;
}

export interface PushReport {
  readonly client: ClientRecord;
  readonly release: Manifest;
  readonly ok: boolean;
  /** The device already ran this release: nothing was installed (ok is true). */
  readonly already: boolean;
  readonly outcome: SendOutcome;
  readonly elapsedMs: number;
  /** Until every chunk was acknowledged; the rest of elapsedMs is the client verifying and loading. */
  readonly dataMs: number | undefined;
  readonly progress: PushProgress;
}

/** What a device last said, kept while it waits for approval so `approve` can add it at once. */
interface LastRegister {
  readonly peer: AuthenticatedPeer;
  readonly msg: RegisterMessage;
}

/** Events: 'client-registered' (ClientRecord, new to the fleet), 'client-gone' (ClientRecord, said
 *  goodbye: offline now), 'client-back' (ClientRecord, was offline), 'client-renewed'
 *  (ClientRecord, every registration), 'push-result' (PushReport),
 *  'auto-update' (ClientRecord, StoredRelease), 'enrollment-request' (DeviceRecord, a new device
 *  waits for approval), 'datagrams' (string: fragmented datagrams taken from or given back to a
 *  device, net/fragments.ts), 'notice' (string: housekeeping done, e.g. old uploads deleted),
 *  'warning' (string). */
export class NxtServer extends EventEmitter {
  readonly stats: ServerStats = { datagrams: 0, malformed: 0, unexpected: 0, foreign: 0, registrations: 0, refused: 0, impersonation: 0, outcomesIgnored: 0 };
  private readonly outcomeBudget = new KeyedBuckets(OUTCOMES_PER_SECOND, OUTCOME_BURST, 100_000);
  private outcomeWarnedAt = Number.NEGATIVE_INFINITY;
  private readonly waiting = new Map<string, LastRegister>();
  private readonly tokenHashes: Buffer[];
  private saveTimer: NodeJS.Timeout | undefined;
  private readonly dropsTimer: NodeJS.Timeout;
  /** The socket's drop count when last looked at (undefined: not known). */
  private dropsSeen: number | undefined;
  private dropsUnreported = 0;
  private dropsWarnedAt = Number.NEGATIVE_INFINITY;
  /** When the server last looked (every DROPS_SAMPLE_MS: at its socket's drops, and whether it
   *  stalled): a look much later than due means it did not run meanwhile (watchStall). */
  private lastLookAt: number;
  private fleetSaveFailing = false;
  private readonly registrySaver: RegistrySaver | undefined;
  /** Multicast pushes whose group pass is under way (for status). */
  readonly groupPushes = new Set<GroupPush>();
  private enrollSaveFailing = false;
  private readonly autoAttempts = new Map<string, { sha256: string; at: number }>();
  private querySeq = 0;
  private catchUpRelease: { sha256: string; release: Promise<Release>; manifest: { created: string; expires: string } | undefined } | undefined;
  /** Since when each online device has been behind the latest release (and whether we said so). */
  private readonly behindSince = new Map<string, { sha256: string; since: number; alerted: boolean }>();
  private readonly behindTimer: NodeJS.Timeout | undefined;
  private readonly historyTimer: NodeJS.Timeout | undefined;
  readonly registry: Registry;
  private readonly sessions = new Map<number, PushSession>();
  /** Releases being kept for rollouts (keep), each under its copy's promise: close() waits for
   *  them, and what a device reports of one names it meanwhile (releaseName). */
  private readonly keeping = new Map<Promise<void>, Release>();
  private readonly renewMs: number;
  /** Datagram-size knowledge per client path, kept across pushes (bounded). */
  private readonly paths = new Map<string, KnownPath>();
  /** Which devices on our LAN may get datagrams that IP fragments (net/fragments.ts). */
  private readonly fragments = new FragmentPolicy();
  /** Clients whose path never delivered a big chunk: they get small ones (bounded as paths are). */
  private readonly largeChunksFailed = new Set<string>();
  private sealed: SealedReleases | undefined;
  private sealThread: SealThread | undefined;
  /** Per-device manifests are signed a few at a time (util/turns.ts). */
  private readonly signing = new Turns(SIGNATURES_PER_TURN);

  constructor(private readonly options: NxtServerOptions) {
    super();
    this.renewMs = options.renewMs ?? DEFAULT_RENEW_MS;
    this.registry = new Registry(options.leaseMs ?? DEFAULT_LEASE_MS, options.maxClients);
    this.tokenHashes = (options.enrollTokens ?? []).filter((t) => t !== '').map(sha256);
    if (options.store) {
      const restored = options.savedClients ?? [];
      this.registry.restore(restored);
      this.registrySaver = new RegistrySaver(options.store, restored, options.cluster?.name ?? '');
    }
    options.channel.onDatagram((data, from) => this.onDatagram(data, from));
    if (options.sealInThread) {
      this.sealThread = new SealThread();
      this.sealThread.start();
    }
    const keepHistoryMs = options.history?.keepMs;
    if (keepHistoryMs !== undefined) {
      const sweep = (): void => { void this.forgetHistory(keepHistoryMs); };
      sweep();
      this.historyTimer = setInterval(sweep, HISTORY_SWEEP_MS);
      this.historyTimer.unref();
    }
    this.dropsSeen = options.channel.receiveDrops();
    this.lastLookAt = options.clock.now();
    this.dropsTimer = setInterval(() => { this.watchStall(); this.watchDrops(); }, DROPS_SAMPLE_MS);
    this.dropsTimer.unref();
    const behindAfter = options.behindAfterMs;
    if (options.notifier && behindAfter !== undefined) {
      this.behindTimer = setInterval(() => this.checkBehind(behindAfter), Math.min(30_000, Math.max(100, behindAfter / 4)));
      this.behindTimer.unref();
    }
  }

  /**
   * The server did not run for a while (stopped, starved of CPU, its VM paused): its devices'
   * ACKs may be waiting unread, so no push session may count that time as their silence. Each
   * session sees this itself when its own timer comes late (OutgoingFile), but one whose timer
   * was due only near the end of the stall comes nearly on time, and it gave up on a device that
   * had answered all along (a 4.5 s stop, the e2e test's, with a 3 s peer timeout). This look,
   * due every second, always comes late after such a stop, and comes first.
   */
  private watchStall(): void {
    const now = this.options.clock.now();
    const lateMs = now - this.lastLookAt - DROPS_SAMPLE_MS;
    this.lastLookAt = now;
    if (lateMs >= STALLED_AFTER_MS) for (const session of this.sessions.values()) session.excuseSilence();
  }

  /**
   * Datagrams the kernel dropped because the server did not read its socket fast enough (short of
   * CPU: at 50 devices sharing its two cores, a third of their ACKs): a push session must not give
   * up on a device for a silence that may be the server's own, so every session under way counts
   * its peer timeout afresh; the operator hears of it at most once a minute.
   */
  private watchDrops(): void {
    const drops = this.options.channel.receiveDrops();
    if (drops === undefined) return;
    const seen = this.dropsSeen;
    this.dropsSeen = drops;
    if (seen === undefined || drops <= seen) return;
    for (const session of this.sessions.values()) session.excuseSilence();
    this.dropsUnreported += drops - seen;
    const now = this.options.clock.now();
    if (now - this.dropsWarnedAt < DROPS_WARN_EVERY_MS) return;
    this.dropsWarnedAt = now;
    this.emit('warning', `the server's UDP socket dropped ${this.dropsUnreported} datagram(s) unread: its receive buffer was full (the server is short of CPU, or net.core.rmem_max caps the buffer); pushes under way wait for devices it may not have heard rather than give up on them`);
    this.dropsUnreported = 0;
  }

  /** Alert once per device and release when an online device stays behind the latest release. */
  private checkBehind(afterMs: number): void {
    const latest = this.options.releases?.latest();
    if (!latest) return;
    const now = this.options.clock.now();
    const behind = new Set(this.behind(latest).map((c) => c.id));
    for (const id of this.behindSince.keys()) if (!behind.has(id)) this.behindSince.delete(id);
    for (const id of behind) {
      let b = this.behindSince.get(id);
      if (!b || b.sha256 !== latest.sha256) {
        b = { sha256: latest.sha256, since: now, alerted: false };
        this.behindSince.set(id, b);
      }
      if (b.alerted || now - b.since < afterMs) continue;
      b.alerted = true;
      const c = this.registry.get(id)!;
      this.options.notifier?.notify({
        event: 'behind', device: id, reason: `runs ${formatReleaseVersion(c.version)}`, release: describeStored(latest),
        detail: `online and behind ${describeStored(latest)} for ${Math.round((now - b.since) / 1000)} s`, at: this.options.wallClock.wallNow().toISOString(),
      });
    }
  }

  /**
   * Save the registry soon: at most once a second, what changed since (registry-saver.ts). A
   * failure is reported once, not every second, and the save is tried again until it works.
   */
  private saveFleet(id?: string): void {
    const saver = this.registrySaver;
    if (!saver) return;
    if (id !== undefined) saver.touch(id);
    this.saveTimer ??= setTimeout(() => {
      void saver.save((c) => this.registry.savedOne(c)).then(() => {
        this.saveTimer = undefined;
        if (this.fleetSaveFailing) this.emit('warning', 'the fleet registry is saved again');
        this.fleetSaveFailing = false;
        if (saver.pending) this.saveFleet();
      }, (err: unknown) => {
        if (!this.fleetSaveFailing) this.emit('warning', `could not save the fleet registry (tried again every ${FLEET_RETRY_MS / 1000} s): ${errorMessage(err)}`);
        this.fleetSaveFailing = true;
        this.saveTimer = setTimeout(() => { this.saveTimer = undefined; this.saveFleet(); }, FLEET_RETRY_MS);
      });
    }, FLEET_SAVE_MS);
  }

  /** Put a client in a group, or take it out; saved at once, or not done (and the error thrown). */
  async setTag(id: string, group: string, on: boolean): Promise<boolean> {
    const elsewhere = this.options.cluster?.remoteClients().find((c) => c.id === id);
    // Another node holds it, and saves it: that node does it.
    if (!this.registry.get(id) && elsewhere) return this.options.cluster!.tag(elsewhere, group, on);
    const changed = on ? this.registry.tag(id, group) : this.registry.untag(id, group);
    if (!changed) return false;
    try {
      await this.registrySaver?.saveNow(this.registry.savedOne(id)!);
    } catch (err) {
      if (on) this.registry.untag(id, group); else this.registry.tag(id, group);
      throw err;
    }
    return true;
  }

  /**
   * Ask every online client to register now, and resolve with what each answered within
   * `timeoutMs` (a client that did not answer keeps its last known version, marked stale).
   */
  async queryVersions(timeoutMs = 3000): Promise<{ client: ClientRecord; answered: boolean }[]> {
    const clients = this.onlineClients();
    const askedAt = this.options.clock.now();
    const seq = (this.querySeq = (this.querySeq + 1) >>> 0);
    const pending = new Set(clients.map((c) => c.id));
    await new Promise<void>((resolve) => {
      const onRegistered = (record: ClientRecord): void => {
        if (pending.delete(record.id) && pending.size === 0) done();
      };
      const done = (): void => {
        clearTimeout(timer);
        this.off('client-renewed', onRegistered);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.on('client-renewed', onRegistered);
      const query = encode({ type: 'query', seq });
      for (const c of clients) this.options.channel.send(query, c.peer);
      if (clients.length === 0) done();
    });
    return clients.map((client) => ({ client, answered: client.lastSeen >= askedAt }));
  }

  /** Approved online clients running a release below `stored`'s. */
  /** Online clients on an older release than `stored`, among those it is for. */
  behind(stored: StoredRelease): ClientRecord[] {
    return this.onlineClients().filter((c) => compareReleaseVersions(c.version, stored.version) < 0 && mismatch(stored.for, this.factsOf(c)) === undefined);
  }

  /** Whether the device's agent takes PIECE frames (its inventory says so: older agents do not). */
  private takesPieces(c: ClientRecord): boolean {
    return this.options.pieces !== false && this.takes(c, 'pieces');
  }

  /** Whether the device's agent said, when it registered, that it takes `feature`. */
  private takes(c: ClientRecord, feature: string): boolean {
    return hasFeature(this.options.devices.get(c.id)?.inventory.features, feature);
  }

  /** A device as a release's compatibility sees it: what it said when it registered. */
  factsOf(c: ClientRecord): DeviceFacts {
    const inv = this.options.devices.get(c.id)?.inventory ?? {};
    return { type: inv.type, arch: inv.arch, channel: inv.channel, agent: inv.agent, product: c.product.productName };
  }

  get devices(): Devices { return this.options.devices; }
  get channel(): ServerChannel { return this.options.channel; }

  /** The operator's answer to an enrollment request (or a change of mind). Approving a device
   *  that is waiting adds it to the fleet at once; revoking one drops its sessions. */
  async decide(id: string, state: 'approved' | 'rejected' | 'revoked'): Promise<DeviceRecord> {
    const record = await this.options.devices.decide(id, state, 'operator', this.options.wallClock.wallNow());
    if (state === 'approved') {
      const last = this.waiting.get(id);
      if (last) this.onRegister(last.msg, last.peer);
    } else {
      this.waiting.delete(id);
      this.registry.remove(id);
      for (const s of this.sessions.values()) if (s.client.id === id) s.cancel(`device ${state}`);
      if (state === 'revoked') this.options.channel.dropClient(id);
      // The decision itself is saved; the fleet list follows when it can.
      this.saveFleet(id);
    }
    return record;
  }

  get activeSessions(): PushSession[] { return [...this.sessions.values()]; }

  /** `--max-rate` and the transfers sharing it now (undefined: this server shares no rate). */
  get maxRate(): SharedRate | undefined { return this.options.maxRate; }

  onlineClients(): ClientRecord[] {
    return this.registry.online(this.options.clock.now());
  }

  /** Decisions made at another node: a device revoked or rejected there leaves this node too;
   *  one approved there while it waits here is let in. */
  adoptDecisions(saved: readonly DeviceRecord[]): void {
    for (const d of this.options.devices.adopt(saved)) {
      if (d.state === 'approved') {
        const last = this.waiting.get(d.id);
        if (last) this.onRegister(last.msg, last.peer);
        continue;
      }
      this.waiting.delete(d.id);
      if (!this.registry.get(d.id)) continue;
      this.registry.remove(d.id);
      for (const s of this.sessions.values()) if (s.client.id === d.id) s.cancel(`device ${d.state}`);
      if (d.state === 'revoked') this.options.channel.dropClient(d.id);
    }
  }

  /** A probation outcome another node heard (several nodes): for the campaigns run here. */
  hearOutcome(t: TrialOutcome): void {
    this.emit('trial-outcome', t);
  }

  /** Releases another node stored (several nodes), once `ready` says their bytes can be had:
   *  from then on --auto-update brings this node's devices up to them (at their next renewal),
   *  and the behind alert counts them. */
  async adoptReleases(ready: (r: StoredRelease) => Promise<boolean>): Promise<void> {
    await this.options.releases?.refresh(ready);
  }

  /** Jobs queued or run at another node (several nodes). */
  adoptJobs(saved: readonly Job[]): void {
    this.options.jobs?.adopt(saved, (device) => this.registry.get(device) !== undefined);
  }

  /** Jobs known here as still to run (several nodes: read again until they are finished). */
  unfinishedJobIds(): number[] {
    return this.options.jobs?.unfinishedIds() ?? [];
  }

  /** This node's name when several serve the fleet (undefined: a lone server). */
  get nodeName(): string | undefined { return this.options.cluster?.name; }

  /** The other live nodes (several nodes). */
  otherNodes(): NodeRow[] { return this.options.cluster?.nodes() ?? []; }

  /** Monotonic ms, as the registry's leases count. */
  now(): number { return this.options.clock.now(); }

  storedReleases(): readonly StoredRelease[] { return this.options.releases?.list() ?? []; }

  /** A release stored at another node, copied here (several nodes: a campaign taken over). */
  adoptRelease(stored: StoredRelease): void { this.options.releases?.adopt(stored); }

  /**
   * Forget a stored release (`remove-release`): `rollout latest`, automatic updates and campaigns
   * no longer see it, and its bytes go (here, and with several nodes from the database and, when
   * they hear of it, from the other nodes). Devices that run it keep it. Refused while it is
   * being pushed here, or while a campaign (of any node) that rolls it out is running or paused.
   */
  async removeRelease(r: StoredRelease): Promise<void> {
    const releases = this.options.releases;
    if (!releases) throw new NxtError('no-store', 'this server keeps no releases');
    const same = (sha256: string, version: string): boolean => sha256 === r.sha256 && version === formatReleaseVersion(r.version);
    if (this.activeSessions.some((s) => same(s.release.manifest.sha256, formatReleaseVersion(s.release.manifest.version)))) {
      throw new NxtError('release-in-use', `${describeStored(r)} is being pushed: wait until the push is over`);
    }
    const campaigns = (await this.options.store?.allCampaigns()) ?? [];
    const open = campaigns.find((c) => (c.state === 'running' || c.state === 'paused') && same(c.spec.release.sha256, c.spec.release.version));
    if (open) throw new NxtError('release-in-use', `rollout ${open.id} (${open.state}) rolls out ${describeStored(r)}: cancel it first (rollout cancel ${open.id})`);
    await releases.remove(r);
    await this.options.cluster?.releaseRemoved(r);
  }

  /** Another node removed this release: forget it here too (its records in the database are
   *  gone); its copy stays while a push here still reads it. */
  async forgetRelease(removed: Pick<StoredRelease, 'sha256' | 'version' | 'for'>): Promise<void> {
    const releases = this.options.releases;
    const r = releases?.find(removed);
    const pushing = this.activeSessions.some((s) => s.release.manifest.sha256 === removed.sha256);
    if (r) await releases!.remove(r, { inStore: false, keepCopy: pushing });
  }

  /** Every device known here and, with several nodes, those the other nodes hold. */
  fleetKnown(): ClientRecord[] {
    return [...this.registry.all(), ...this.elsewhere()];
  }

  /** The online devices here and, with several nodes, those the other nodes hold. */
  fleetOnline(): ClientRecord[] {
    const now = this.options.clock.now();
    return [...this.onlineClients(), ...this.elsewhere().filter((c) => this.registry.isOnline(c, now))];
  }

  /** The devices other nodes hold, but for one that is online here (it moved here since the
   *  last look at the other nodes). */
  private elsewhere(): readonly ClientRecord[] {
    const remote = this.options.cluster?.remoteClients() ?? [];
    if (remote.length === 0) return remote;
    const now = this.options.clock.now();
    return remote.filter((c) => {
      const here = this.registry.get(c.id);
      return !here || !this.registry.isOnline(here, now);
    });
  }

  /** Push one release to each of `clients` (here, and through their nodes to those other nodes
   *  hold); resolves when every one has finished or failed. */
  async push(release: Release, clients: ClientRecord[]): Promise<PushReport[]> {
    const remote = clients.filter((c) => c.node !== undefined);
    const cluster = this.options.cluster;
    if (remote.length === 0 || !cluster) return this.pushHere(release, clients);
    const [here, there] = await Promise.all([
      this.pushHere(release, clients.filter((c) => c.node === undefined)),
      // Shown as they come, like the reports of pushes here (recorded and alerted on by the node
      // that carried them out).
      cluster.push(release, remote, (r) => this.emit('push-result', r)),
    ]);
    return [...here, ...there];
  }

  /**
   * Push to `clients` here, and keep the release for rollouts (keep). A lone server keeps it once
   * the push is over, in the background: copied beside the push, the copy took the cores and the
   * disk the push needed (128 MiB on loopback: ~125 ms longer; copied while the device loaded the
   * module, no faster; docs/benchmarks.md). The module is opened now, so the copy is of the file
   * that was signed even if the operator deletes it once `push` returns, and is checked against
   * the manifest before it counts (ReleaseStore.add). With several nodes it is kept beside the
   * push, before this returns: the others may roll it out at once.
   */
  private async pushHere(release: Release, clients: ClientRecord[]): Promise<PushReport[]> {
    if (clients.length === 0) return [];
    const source = this.options.releases ? open(release.path, 'r').catch(() => undefined) : undefined;
    const beside = this.options.cluster !== undefined ? this.keep(release, source) : undefined;
    try {
      return await this.send(release, clients);
    } finally {
      if (beside) await beside;
      else void this.keep(release, source);
    }
  }

  /** Keep a copy of `release` from `source` (the module as its push opened it; none: from its
   *  path), and share it with the other nodes; warned about, never thrown. `releases`, rollouts
   *  (ReleaseStore.settled) and close() wait for it. */
  private keep(release: Release, source: Promise<FileHandle | undefined> | undefined): Promise<void> {
    const keeping = (async () => {
      const handle = await source;
      try {
        const stored = await this.options.releases?.add(release, this.options.wallClock.wallNow(), handle);
        await this.options.cluster?.shareRelease(stored ? { ...release, path: stored.file } : release);
      } finally {
        await handle?.close().catch(() => undefined);
      }
    })().catch((err: unknown) => { this.emit('warning', `could not keep a copy of ${release.manifest.name} for rollouts: ${errorMessage(err)}`); });
    this.keeping.set(keeping, release);
    void keeping.finally(() => this.keeping.delete(keeping));
    return keeping;
  }

  /** The name of the release with this content: stored, or being pushed or kept here (a trial
   *  that took its agent down is reported before its push is over). */
  private releaseName(sha256: string): string {
    const inHand = [...this.activeSessions.map((s) => s.release), ...this.keeping.values()];
    return this.options.releases?.list().find((r) => r.sha256 === sha256)?.name
      ?? inHand.find((r) => r.manifest.sha256 === sha256)?.manifest.name ?? 'module';
  }

  /** `retries`: this push went again at once after large chunks failed on the way (at most
   *  twice: datagrams that IP fragments, then pieces, then small chunks). */
  private async send(release: Release, clients: ClientRecord[], retries = 0): Promise<PushReport[]> {
    if (clients.length === 0) return [];
    const renumber = (session: PushSession): number => {
      this.sessions.delete(session.transferId);
      const id = this.newTransferId();
      this.sessions.set(id, session);
      return id;
    };
    const m = release.manifest;
    const plan = this.plan(release, clients);
    const { group, paths } = plan;
    // The devices sent datagrams that IP fragments (net/fragments.ts); those sent pieces are
    // known once their sessions are made (PushSession.pieced).
    const fragmented = new Set<string>();
    if (!group) for (const { client, known } of paths) if (known.fragments) fragmented.add(client.id);
    // Sealed once per release and chunk size, whatever the number of devices. Devices are
    // offered it as soon as its sealed file exists: they check the offer's signature while the
    // first blocks are sealed. A release whose sealed file cannot be made fails the push as a
    // whole, with the reason, before any device is offered it; sealing that fails later (a full
    // disk, the module changed after signing) fails each device's session with the reason.
    // Each sealed file stays on disk until this push lets go of it, below (SealedReleases.use).
    const leases = new Map<number, SealedLease>();
    for (const { chunkSize } of paths) {
      if (!leases.has(chunkSize)) leases.set(chunkSize, this.sealedReleases().use(release.path, { size: m.size, sha256: m.sha256, chunkSize, identity: release.identity }));
    }
    try {
      return await this.sendSealed(release, retries, plan, fragmented, new Map([...leases].map(([size, lease]) => [size, lease.sealed])), renumber);
    } finally {
      for (const lease of leases.values()) lease.release();
    }
  }

  /** send(), once the release is being sealed in each chunk size its devices take. */
  private async sendSealed(
    release: Release, retries: number, { group, groupPieces, paths }: ReturnType<NxtServer['plan']>, fragmented: Set<string>,
    sealing: Map<number, Promise<SealedRelease>>, renumber: (session: PushSession) => number,
  ): Promise<PushReport[]> {
    const m = release.manifest;
    // One manifest per device, a few milliseconds each, signed on this thread while the sealing
    // thread seals (the thread turns between them); none more once the push is abandoned.
    let abandoned = false;
    const signatures = paths.map(({ client, chunkSize }) => this.signing.run(() => {
      if (abandoned) throw new NxtError('abandoned', 'push abandoned');
      return release.signedFor(client.id, chunkSize);
    }));
    for (const s of signatures) s.catch(() => undefined);
    const sizes = [...sealing.keys()];
    const settled = await Promise.allSettled(sealing.values());
    const failed = settled.find((x) => x.status === 'rejected');
    if (failed) {
      abandoned = true;
      throw failed.reason;
    }
    const sealedBySize = new Map(settled.map((x, i) => [sizes[i]!, (x as PromiseFulfilledResult<SealedRelease>).value]));
    const prepare = async ({ client, path, known, chunkSize, pieces }: (typeof paths)[number], i: number): Promise<PushSession> => {
      const signed = await signatures[i]!;
      const sender = { offerTimeoutMs: offerTimeoutFor(known.offerAnswerMs, this.options.channel.handshakeRttOf(client.id)), ...this.options.sender };
      const session = new PushSession(this.newTransferId(), client, release, signed, sealedBySize.get(chunkSize)!, path, this.options.channel, this.options.clock, sender, renumber, pieces, this.options.maxRate);
      void session.done.then(() => { if (session.offerAnswerMs !== undefined) known.offerAnswerMs = session.offerAnswerMs; });
      if (session.pieced && !group) fragmented.add(client.id);
      this.sessions.set(session.transferId, session);
      return session;
    };
    const run = async (session: PushSession): Promise<PushReport> => {
      // Fragments that are mostly lost: given up mid-push, not after a push many times as long
      // (unless this device's link was found to lose whole datagrams as much).
      if (fragmented.has(session.client.id) && !this.fragments.tolerates(session.client.id, this.options.clock.now())) {
        session.watchFragments(GIVE_UP_AFTER_CHUNKS, GIVE_UP_RESENT_SHARE);
      }
      // Under `--max-rate`, no more devices at once than the total carries at a chunk a second
      // each: the rest wait their turn (cancelled meanwhile, they never start). A group's
      // members are sent to all at once by the group, which counts once.
      const turn = group ? undefined : this.options.maxRate?.admit(session.floor);
      let outcome: SendOutcome;
      try {
        await session.startInTurn(turn);
        outcome = await session.done;
      } finally {
        turn?.release();
      }
      this.sessions.delete(session.transferId);
      // Big chunks never got through (a path that drops big datagrams, or their fragments): the
      // device accepted the offer, chunks went out, none was acknowledged. This push tries again
      // at once: in pieces, if what failed was datagrams that IP fragments (the policy
      // below takes those away); otherwise in small chunks, which cannot fail like this, and so
      // from now on.
      const { progress } = session;
      const timedOut = outcome.code === ResultCode.timeout;
      const fragmentsLost = session.fragmentsLost;
      const blocked = timedOut && session.chunkSize > SMALL_CHUNK_BYTES && progress.accepted && progress.acked === 0 && progress.datagrams > 0;
      const ipFragments = fragmented.has(session.client.id) && !session.pieced;
      if (blocked && !ipFragments) {
        this.largeChunksFailed.add(session.client.id);
        if (this.largeChunksFailed.size > MAX_PATHS) this.largeChunksFailed.delete(this.largeChunksFailed.values().next().value!);
      }
      // The device fell silent while datagrams that IP fragments were being lost (its kernel may
      // have run out of reassembly memory, which then drops every fragment): as when the session
      // gave up on them mid-way, this push goes again at once in whole datagrams.
      let fragmentsGaveOut = false;
      if (!group) {
        const decision = this.fragments.pushEnded(session.client.id, {
          // Given up early: judged on what it sent, not on the whole file.
          fragmented: fragmented.has(session.client.id), chunks: fragmentsLost ? session.chunksSent : progress.total, acked: progress.acked,
          resent: progress.retransmits - progress.spurious, timedOut, pieces: session.pieced,
        }, this.options.clock.now());
        fragmentsGaveOut = timedOut && ipFragments && decision?.change === 'lossy';
        if (decision) this.emit('datagrams', `${shortId(session.client.id)}: ${describeFragmentDecision(decision, session.pieced)}${fragmentsLost || fragmentsGaveOut ? ', this push again at once' : ''}`);
      }
      if ((blocked || fragmentsLost || fragmentsGaveOut) && retries < 2) return (await this.send(release, [session.client], retries + 1))[0]!;
      if (outcome.code === ResultCode.ok && outcome.active) session.client.version = outcome.active;
      // Refused as "not newer" by a device that runs this very release: already installed, which
      // is not a failure and raises no alert.
      const already = outcome.code === ResultCode.rollback && outcome.active !== undefined && compareReleaseVersions(outcome.active, m.version) === 0;
      const report: PushReport = {
        client: session.client, release: release.manifest, ok: outcome.code === ResultCode.ok || already, already, outcome,
        elapsedMs: this.options.clock.now() - session.startedAt, progress: session.progress,
        dataMs: session.dataDoneAt === undefined ? undefined : session.dataDoneAt - session.startedAt,
      };
      this.record(report);
      if (!report.ok && outcome.code !== ResultCode.deferred) {
        this.options.notifier?.notify({
          event: 'push-failed', device: session.client.id, reason: resultCodeName(outcome.code), detail: outcome.message,
          release: `${release.manifest.name} ${formatReleaseVersion(release.manifest.version)}`, at: this.options.wallClock.wallNow().toISOString(),
        });
      }
      this.emit('push-result', report);
      return report;
    };
    // Without a group, each device starts as soon as its manifest is signed: with thousands of
    // devices the first ones do not wait ~4 ms for each of the others' signatures. A group sends
    // to all its members at once, so it waits for every one.
    const sessions = group ? await this.prepareAll(paths.map(prepare)) : [];
    if (group) for (const session of sessions) session.holdForGroup();
    const reports = group ? sessions.map(run) : paths.map(async (p, i) => run(await prepare(p, i)));
    if (group) {
      const groupPush = new GroupPush(this.newTransferId(), sessions[0]!.sealedRelease, group.sender, sessions, this.options.clock, group.options, groupPieces, this.options.maxRate);
      this.groupPushes.add(groupPush);
      groupPush.start();
      void Promise.all(reports).finally(() => {
        groupPush.close();
        this.groupPushes.delete(groupPush);
        const g = group.sender.group;
        this.emit('group-push', {
          group: formatGroup(g), devices: sessions.length, datagrams: groupPush.datagrams, repaired: groupPush.repaired, handedOver: groupPush.handedOver(),
          passMs: groupPush.passMs,
        } satisfies GroupPushReport);
      });
    }
    return Promise.all(reports);
  }

  /** Every session, or (one could not be made) none: those made are cancelled and let go, and
   *  the first reason is thrown. */
  private async prepareAll(preparing: Promise<PushSession>[]): Promise<PushSession[]> {
    const settled = await Promise.allSettled(preparing);
    const failed = settled.find((x) => x.status === 'rejected');
    if (!failed) return settled.map((x) => (x as PromiseFulfilledResult<PushSession>).value);
    for (const x of settled) {
      if (x.status !== 'fulfilled') continue;
      x.value.cancel('push abandoned');
      this.sessions.delete(x.value.transferId);
    }
    throw failed.reason;
  }

  private record(r: PushReport): void {
    const { history } = this.options;
    if (!history) return;
    history.log.append({
      at: history.wallClock.wallNow().toISOString(), client: r.client.id, address: displayAddress(r.client.peer),
      module: r.release.name, version: formatReleaseVersion(r.release.version), sha256: r.release.sha256,
      result: r.already ? 'already installed' : resultCodeName(r.outcome.code), message: r.outcome.message, elapsedMs: r.elapsedMs, resent: r.progress.retransmits,
    }).catch((err: unknown) => {
      this.emit('warning', `could not record the push result in the history: ${errorMessage(err)}`);
    });
  }

  /** Forget history entries older than `keepMs`, FORGET_HISTORY_PER_SWEEP at a time (a first
   *  sweep over years of entries stays a small write), and say how many. */
  private async forgetHistory(keepMs: number): Promise<void> {
    const { history } = this.options;
    if (!history) return;
    const before = new Date(history.wallClock.wallNow().getTime() - keepMs).toISOString();
    try {
      const n = await history.log.forget(before, FORGET_HISTORY_PER_SWEEP);
      if (n > 0) this.emit('notice', `forgot ${n} push history entr${n === 1 ? 'y' : 'ies'} from before ${before} (--keep-history; \`releases\` still counts them)`);
    } catch (err) {
      this.emit('warning', `could not forget old push history: ${errorMessage(err)}`);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.behindTimer);
    clearInterval(this.historyTimer);
    clearInterval(this.dropsTimer);
    this.options.jobs?.close();
    clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    if (this.registrySaver?.pending) {
      await this.registrySaver.save((c) => this.registry.savedOne(c)).catch((err: unknown) => this.emit('warning', `could not save the fleet registry: ${errorMessage(err)}`));
    }
    for (const s of this.sessions.values()) s.cancel('server shutting down');
    await this.options.channel.close();
    await this.sealThread?.close();
    // A copy begun is finished, not cut short.
    await Promise.allSettled([...this.keeping.keys()]);
  }

  /** A device says it is stopping: offline now (its pushes in progress fail at their timeout). */
  private onGoodbye(msg: GoodbyeMessage, from: AuthenticatedPeer): void {
    const id = Buffer.from(msg.clientId).toString('hex');
    if (id !== from.clientId) { this.stats.impersonation++; return; }
    const record = this.registry.get(id);
    if (!record || !this.registry.isOnline(record, this.options.clock.now())) return;
    record.lastSeen = Number.NEGATIVE_INFINITY;
    this.emit('client-gone', record);
  }

  private onRegister(msg: RegisterMessage, from: AuthenticatedPeer): void {
    const id = Buffer.from(msg.clientId).toString('hex');
    // The id is the hash of the key the session proved: nobody registers as another device.
    if (id !== from.clientId) {
      this.stats.impersonation++;
      return;
    }
    const wallNow = this.options.wallClock.wallNow();
    const devices = this.options.devices;
    const known = devices.get(id);
    const device = devices.request(id, fingerprint(from.clientKey), parseInventory(msg.inventory), from, wallNow);
    if (device.state === 'pending' && this.tokenMatches(msg.enrollToken)) {
      // Approved once that is on disk (saved with the others enrolling now); then this same
      // registration goes on as an approved device's. Until then, and if the save fails, the
      // device is told "pending" and asks again with its token.
      void devices.approveSoon(id, wallNow).then(() => {
        if (this.enrollSaveFailing) this.emit('warning', 'enrollments are saved again');
        this.enrollSaveFailing = false;
        this.onRegister(msg, from);
      }, (err: unknown) => {
        if (!this.enrollSaveFailing) this.emit('warning', `devices enrolling with the token stay pending until this works: ${errorMessage(err)}`);
        this.enrollSaveFailing = true;
        this.options.channel.send(encode({
          type: 'registered', clientId: msg.clientId, seq: msg.seq, leaseMs: this.registry.leaseMs, renewMs: this.renewMs, enrollment: Enrollment.pending,
        }), from);
      });
      return;
    } else if (!known && device.state === 'pending') {
      this.emit('enrollment-request', device);
    }
    const answer = (enrollment: EnrollmentValue): void => {
      this.options.channel.send(encode({
        type: 'registered', clientId: msg.clientId, seq: msg.seq, leaseMs: this.registry.leaseMs, renewMs: this.renewMs, enrollment,
      }), from);
    };
    if (device.state !== 'approved') {
      // Pending and rejected devices get an answer (so they know where they stand) and nothing else.
      if (device.state === 'pending') this.waiting.set(id, { msg, peer: from });
      if (this.waiting.size > 1000) this.waiting.delete(this.waiting.keys().next().value!);
      answer(device.state === 'pending' ? Enrollment.pending : Enrollment.rejected);
      return;
    }
    this.waiting.delete(id);
    // A device with --report-every says when its status report is due: one is queued for it
    // (it runs at the device's next maintenance visit), unless one is waiting already.
    if (parseReportDue(msg.inventory)) this.options.jobs?.queueReport(id, wallNow);
    const now = this.options.clock.now();
    const registered = this.registry.register(id, from, msg.version, msg.product, now, wallNow);
    if (!registered) {
      this.stats.refused++;
      return;
    }
    const { record } = registered;
    record.updateState = msg.updateState;
    record.updateResult = msg.updateResult;
    this.stats.registrations++;
    answer(Enrollment.approved);
    this.saveFleet(id);
    if (registered.isNew) this.emit('client-registered', record);
    else if (registered.cameBack) this.emit('client-back', record);
    this.emit('client-renewed', record);
    this.catchUp(record, now);
  }

  /**
   * A stored release, prepared (hashed and signed) once and shared by every client that catches
   * up or a rollout campaign reaches — after a restart that is the whole fleet, and hashing the
   * module for each would read it once per device — until half its signed lifetime has passed,
   * when it is prepared afresh.
   */
  preparedStored(stored: StoredRelease, prepare: (s: StoredRelease) => Promise<Release>): Promise<Release> {
    const cached = this.catchUpRelease;
    if (cached && cached.sha256 === stored.sha256) {
      const m = cached.manifest;
      if (!m) return cached.release; // still being prepared
      const created = Date.parse(m.created);
      if (this.options.wallClock.wallNow().getTime() < created + (Date.parse(m.expires) - created) / 2) return cached.release;
    }
    const release = prepare(stored);
    const entry: NonNullable<typeof this.catchUpRelease> = { sha256: stored.sha256, release, manifest: undefined };
    this.catchUpRelease = entry;
    void release.then((r) => { entry.manifest = r.manifest; }, () => { if (this.catchUpRelease === entry) this.catchUpRelease = undefined; });
    return release;
  }

  /** With --auto-update: push the latest release to a client that registers behind it. */
  private catchUp(client: ClientRecord, now: number): void {
    const { releases, prepareStored } = this.options;
    if (!this.options.autoUpdate || !releases || !prepareStored) return;
    // The newest release made for this device (another kind's newest is not its).
    const facts = this.factsOf(client);
    const latest = releases.list().filter((r) => mismatch(r.for, facts) === undefined)
      .reduce<StoredRelease | undefined>((best, r) => (!best || compareReleaseVersions(r.version, best.version) > 0 ? r : best), undefined);
    if (!latest || compareReleaseVersions(client.version, latest.version) >= 0) return;
    // Already on its way, or kept on the device for a deferred upgrade: nothing to do.
    if ([...this.sessions.values()].some((s) => s.client.id === client.id)) return;
    if (client.updateState === UpdateState.downloaded) return;
    // It tried this one and rolled it back: sending it again would only be refused.
    if (client.rolledBack === latest.sha256) return;
    const last = this.autoAttempts.get(client.id);
    if (last && last.sha256 === latest.sha256 && now - last.at < AUTO_RETRY_MS) return;
    this.autoAttempts.set(client.id, { sha256: latest.sha256, at: now });
    if (this.autoAttempts.size > 100_000) this.autoAttempts.delete(this.autoAttempts.keys().next().value!);
    this.emit('auto-update', client, latest);
    void this.preparedStored(latest, prepareStored)
      .then((release) => this.push(release, [client]))
      .catch((err: unknown) => this.emit('warning', `automatic update of ${shortId(client.id)} to ${latest.name}: ${errorMessage(err)}`));
  }

  private tokenMatches(token: string): boolean {
    if (token === '' || this.tokenHashes.length === 0) return false;
    const h = sha256(token);
    return this.tokenHashes.some((t) => timingSafeEqual(t, h));
  }

  /**
   * How a push of `release` to `clients` (all of them here) goes: each device's path and the chunk
   * size it gets, and the multicast group, if any. Several devices and a group: the group's
   * datagram size decides one chunk size for all, in pieces (GroupPush) if its datagrams cannot
   * carry a large chunk and every member takes them.
   */
  private plan(release: ChunkSizeRelease, clients: readonly ClientRecord[]) {
    const group = this.options.multicast && clients.length >= 2 ? this.options.multicast : undefined;
    const groupPieces = group !== undefined && clients.every((c) => this.takesPieces(c));
    const paths = clients.map((client) => {
      const known = this.pathTo(client);
      const path = known.mtu;
      const pieces = known.pieces && this.takesPieces(client) && !this.largeChunksFailed.has(client.id);
      const chunkSize = group ? chunkSizeFor(release, group.sender.maxDatagram, groupPieces)
        : this.largeChunksFailed.has(client.id) ? chunkSizeFor(release, SMALL_CHUNK_DATAGRAM)
        : chunkSizeFor(release, path.options.max, pieces, this.takes(client, 'wide'));
      return { client, path, known, chunkSize, pieces };
    });
    return { group, groupPieces, paths };
  }

  /**
   * The module at `modulePath` is about to be pushed to `clients` (the console's `push`, before
   * it hashes and signs it): seal it now, in the chunk sizes those devices' pushes will take,
   * beside the hash (SealedReleases.sealEarly). A module signed offline keeps its own chunk size
   * and goes the usual way. `dropEarly` once the push is over lets go of a seal it did not take.
   */
  sealEarly(modulePath: string, clients: readonly ClientRecord[]): void {
    const here = clients.filter((c) => c.node === undefined);
    if (here.length === 0 || existsSync(modulePath + PRESIGNED_SUFFIX)) return;
    const sizes = new Set(this.plan(UNSIGNED, here).paths.map((p) => p.chunkSize));
    for (const chunkSize of sizes) this.sealedReleases().sealEarly(modulePath, chunkSize);
  }

  dropEarly(modulePath: string): void {
    this.sealed?.dropEarly(modulePath);
  }

  /**
   * What is known of the datagram size the path to this client carries (RFC 8899 search). On
   * the device's own LAN the search may go above what the interface carries whole, up to one
   * large chunk a datagram, which IP fragments, unless fragments failed this device lately.
   */
  private pathTo(client: ClientRecord): KnownPath {
    const key = `${client.id}|${client.peer.address}`;
    let path = this.paths.get(key);
    const cap = this.options.maxDatagram ?? MAX_UDP_PAYLOAD_BYTES;
    if (!path) {
      const route = routeTo(client.peer.address);
      path = { whole: route.whole, onLink: route.onLink, fragments: false, pieces: false, mtu: new PathMtu({ max: Math.min(cap, route.whole) }) };
      this.paths.set(key, path);
      if (this.paths.size > MAX_PATHS) this.paths.delete(this.paths.keys().next().value!);
    }
    // One policy for both ways of cutting a large chunk: a lost frame or piece loses it all.
    const now = this.options.clock.now();
    const fragments = path.onLink && Math.min(cap, FRAGMENTED_DATAGRAM) > path.whole && this.fragments.allowed(client.id, now);
    if (fragments !== path.fragments) {
      path.fragments = fragments;
      path.mtu = new PathMtu({ max: Math.min(cap, fragments ? FRAGMENTED_DATAGRAM : path.whole) });
    }
    path.pieces = !fragments && path.mtu.options.max < FRAGMENTED_DATAGRAM && this.fragments.allowed(client.id, now, true);
    return path;
  }

  private sealedReleases(): SealedReleases {
    this.sealed ??= new SealedReleases(this.options.stateDir !== undefined
      ? join(this.options.stateDir, 'sealed')
      : mkdtempSync(join(tmpdir(), 'nxt-sealed-')), undefined, this.sealThread ? smallAtOnce(this.sealThread.seal) : undefined);
    return this.sealed;
  }

  private newTransferId(): number {
    for (;;) {
      const id = this.options.randomU32() >>> 0;
      if (id !== 0 && !this.sessions.has(id)) return id;
    }
  }

  private onDatagram(data: Buffer, from: AuthenticatedPeer): void {
    this.stats.datagrams++;
    const msg = decodeOrUndefined(data);
    if (!msg) {
      this.stats.malformed++;
      return;
    }
    try {
      this.dispatch(msg, from);
    } catch (err) {
      // One bad datagram must never stop the server; count it and carry on.
      this.stats.malformed++;
      this.emit('warning', `error handling ${msg.type} from ${displayAddress(from)}: ${errorMessage(err)}`);
    }
  }

  /** A device's probation ended: committed, or rolled back (with why). Acted on once, then
   *  acknowledged (every time): after what it changed is saved (history, campaigns), so a server
   *  killed in between hears it again. */
  private onTrialOutcome(msg: TrialOutcomeMessage, from: AuthenticatedPeer): void {
    const ack = (): void => { this.options.channel.send(encode({ type: 'trialAck', seq: msg.seq }), from); };
    const client = this.registry.get(from.clientId);
    if (!client || client.lastOutcomeSeq === msg.seq) { ack(); return; }
    const now = this.options.clock.now();
    if (!this.outcomeBudget.take(client.id, now)) {
      this.stats.outcomesIgnored++;
      if (now - this.outcomeWarnedAt >= OUTCOME_WARN_EVERY_MS) {
        this.outcomeWarnedAt = now;
        this.emit('warning', `device ${client.id.slice(0, 12)} reports probation outcomes faster than one each ${1 / OUTCOMES_PER_SECOND} s: those beyond are acknowledged and not recorded (${this.stats.outcomesIgnored} so far, all devices)`);
      }
      ack();
      return;
    }
    client.lastOutcomeSeq = msg.seq;
    client.version = msg.active;
    this.saveFleet(client.id);
    const sha256 = Buffer.from(msg.sha256).toString('hex');
    if (msg.committed) client.rolledBack = undefined;
    else client.rolledBack = sha256;
    const name = this.releaseName(sha256);
    const outcome: TrialOutcome = {
      client, name, committed: msg.committed, code: msg.code, version: msg.version, sha256, active: msg.active, message: msg.message,
    };
    const at = this.options.wallClock.wallNow().toISOString();
    this.options.history?.log.append({
      at, client: client.id, address: displayAddress(from), module: name, version: formatReleaseVersion(msg.version), sha256,
      result: msg.committed ? 'committed' : `rolled back (${resultCodeName(msg.code)})`, message: msg.message, elapsedMs: 0, resent: 0,
    }).catch((err: unknown) => {
      this.emit('warning', `could not record the probation outcome in the history: ${errorMessage(err)}`);
    });
    if (!msg.committed) {
      this.options.notifier?.notify({
        event: 'rolled-back', device: client.id, reason: resultCodeName(msg.code), detail: msg.message,
        release: `${name} ${formatReleaseVersion(msg.version)}`, at,
      });
    }
    this.emit('trial-outcome', outcome);
    this.options.cluster?.publishOutcome(outcome).catch((err: unknown) => this.emit('warning', `could not tell the other nodes of a probation outcome: ${errorMessage(err)}`));
    // The store saves in order: once what was asked before is saved, this outcome's changes are.
    void (this.options.store?.settled() ?? Promise.resolve()).then(ack);
  }

  private dispatch(msg: Message, from: AuthenticatedPeer): void {
    // Maintenance jobs: polls, results, uploads (FILE_OFFER, DATA from a device) and the
    // acknowledgements of files being put on one.
    const jobs = this.options.jobs;
    if (jobs && (msg.type !== 'ack' && msg.type !== 'result' && msg.type !== 'abort' || !this.sessions.has(msg.transferId)) && jobs.dispatch(msg, from)) return;
    switch (msg.type) {
      case 'register': return this.onRegister(msg, from);
      case 'goodbye': return this.onGoodbye(msg, from);
      case 'trialOutcome': return this.onTrialOutcome(msg, from);
      case 'ack':
      case 'result':
      case 'abort': {
        const session = this.sessions.get(msg.transferId);
        if (!session) {
          // A RESULT whose RESULT_ACK was lost, after we finished: acknowledge again.
          if (msg.type === 'result') this.options.channel.send(encode({ type: 'resultAck', transferId: msg.transferId }), from);
          else this.stats.unexpected++;
          return;
        }
        if (session.client.id !== from.clientId) {
          this.stats.foreign++;
          return;
        }
        if (msg.type === 'ack') session.onAck(msg);
        else if (msg.type === 'result') session.onResult(msg);
        else session.onAbort(msg.code, msg.message);
        return;
      }
      case 'multicastLeave': {
        // From a device: it is not in the group of this push.
        const session = this.sessions.get(msg.transferId);
        if (!session || session.client.id !== from.clientId) { this.stats.unexpected++; return; }
        session.onGroupDeclined();
        return;
      }
      default:
        this.stats.unexpected++; // a message only a server sends
    }
  }
}

/** What a multicast push's group pass did. */
export interface GroupPushReport {
  readonly group: string;
  readonly devices: number;
  readonly datagrams: number;
  /** Chunks sent to the group a second time (many devices missed them). */
  readonly repaired: number;
  /** Devices that went to unicast before the group was done, by why: not hearing the group
   *  (deaf), the group past their receive window (behind), losing far more than the others
   *  (lossy), or saying they are not in the group (declined: they refuse groups, or could not
   *  join). */
  readonly handedOver: Readonly<Record<HandOver | 'declined', number>>;
  /** The first pass's duration (undefined: it never finished). */
  readonly passMs: number | undefined;
}

/** How a device's probation of a module ended (TRIAL_OUTCOME). */
export interface TrialOutcome {
  readonly client: ClientRecord;
  readonly name: string;
  readonly committed: boolean;
  readonly code: number;
  readonly version: ReleaseVersion;
  readonly sha256: string;
  readonly active: ReleaseVersion;
  readonly message: string;
}

export function describeTrialOutcome(o: TrialOutcome): string {
  const what = `${o.name} ${formatReleaseVersion(o.version)}`;
  return o.committed
    ? `client ${shortId(o.client.id)} committed ${what}`
    : `client ${shortId(o.client.id)} rolled back ${what} (${resultCodeName(o.code)}: ${o.message}); it runs ${formatReleaseVersion(o.active)} again`;
}

export function describeOutcome(report: PushReport): string {
  const { outcome, progress } = report;
  const data = report.dataMs !== undefined && report.progress.total > 1 ? ` (data ${Math.round(report.dataMs)} ms)` : '';
  const took = `in ${Math.round(report.elapsedMs)} ms${data}, ${progress.datagrams} datagrams`;
  const needless = progress.spurious > 0 ? ` (${progress.spurious} needlessly: the path reorders)` : '';
  const stalls = progress.spuriousTimeouts;
  const stalled = stalls > 0 ? ` (${stalls === 1 ? 'a stall' : `${stalls} stalls`}, not loss: what was in flight came late)` : '';
  const lossy = progress.retransmits > 0
    ? `, ${progress.retransmits} of ${progress.total} chunks resent${needless}${progress.timeouts > 0 ? `, ${progress.timeouts} × no answer within the retransmission timeout${stalled}` : ''}`
    : '';
  if (report.already) return `already installed: it runs release ${formatReleaseVersion(report.release.version)}`;
  if (report.ok) return `done: ${outcome.message} (release ${outcome.active ? formatReleaseVersion(outcome.active) : '?'}) ${took}${lossy}`;
  if (outcome.code === ResultCode.deferred) return `deferred: ${outcome.message} ${took}${lossy}`;
  const still = outcome.active ? `; still on ${formatReleaseVersion(outcome.active)}` : '';
  return `failed (${resultCodeName(outcome.code)}): ${outcome.message}${still} ${took}${lossy}`;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

/** Whether a REGISTER's inventory says a status report is due (`"reportDue": true`). */
function parseReportDue(inventory: string): boolean {
  try {
    return (JSON.parse(inventory) as { reportDue?: unknown }).reportDue === true;
  } catch {
    return false;
  }
}
