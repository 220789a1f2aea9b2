/**
 * The device agent: registers with the server, receives pushed modules, verifies and activates
 * them. It is the driver for ChunkReceiver: it turns datagrams into events and the receiver's
 * actions into datagrams, file writes and timers.
 */
import { timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { statSync, unlinkSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { DecodeError, NxtError, errorMessage } from '../errors.js';
import { decodeEnvelope, forEachChunk, TAG_BYTES, type ChunksFrame, type PieceFrame } from '../protocol/envelope.js';
import { PieceAssembler } from '../files/piece-assembler.js';
import { formatGroup, joinMulticast, localAddressToward, type MulticastGroup, type MulticastReceiver } from '../net/multicast.js';
import { DatagramBatch, GROUP_BATCH_DATAGRAMS, GROUP_BATCH_MS } from '../net/datagram-batch.js';
import { ContentKey } from '../session/content-key.js';
import {
  decodeOrUndefined, encode, Enrollment, NO_ECHO, UpdateResult, UpdateState,
  type AbortMessage, type EnrollmentValue, type Message, type MulticastLeaveMessage, type MulticastMessage, type OfferMessage, type UpdateResultValue, type UpdateStateValue,
} from '../protocol/messages.js';
import { ResultCode, resultCodeName, type ResultCodeValue } from '../protocol/result-codes.js';
import { compareReleaseVersions, formatReleaseVersion, parseReleaseVersion, type ReleaseVersion } from '../protocol/release-version.js';
import { isExpired, isTargeted, verifyManifest, type Manifest } from '../security/manifest.js';
import { mismatch, type DeviceFacts } from '../security/compatibility.js';
import type { ReceiverOptions } from '../transfer/receiver.js';
import { IncomingTransfer } from '../files/incoming-transfer.js';
import { GarbagePace } from '../util/garbage.js';
import { sharedHashThread } from '../files/hash-thread.js';
import { IncomingModule } from '../plugin/incoming-module.js';
import { isStorageError } from '../util/atomic-file.js';
import { BUILTIN_REF, refOf, type ActiveModule, type Interrupted, type ModuleRef, type ModuleStore } from '../plugin/module-store.js';
import { DEFAULT_HOST_LIMITS, dropSpare, PluginHost, prepareSpareFor, readAhead, readUpTo, releaseReserve, reserveUpTo, type HostLimits } from '../plugin/plugin-host.js';
import type { Peer } from '../net/endpoint.js';
import type { ClientChannel } from '../session/client-channel.js';
import type { JobClient } from './job-client.js';
import type { Clock, WallClock } from '../util/clock.js';
import { WakeTimer } from '../util/wake-timer.js';

/** The chunks this device opens leave their plaintexts and datagrams as garbage (util/garbage.ts):
 *  collected every 8 MiB of them. */
const garbage = new GarbagePace();

export interface ClientAgentOptions {
  /** Every datagram in and out goes through the secure channel to the server. */
  readonly channel: ClientChannel;
  readonly server: Peer;
  /** The hash of this device's identity key (clientIdOf). */
  readonly clientId: Uint8Array;
  /** Given at install time: approves this device without the operator (may be empty). */
  readonly enrollToken?: string;
  /** What the device says about itself when it registers (JSON, see server/devices.ts). */
  readonly inventory?: () => string;
  /** What kind of device this is, for releases that say what they are for (the running plugin's
   *  productName is added here). */
  readonly facts?: Omit<DeviceFacts, 'product'>;
  readonly store: ModuleStore;
  readonly trustedKey: Uint8Array;
  readonly clock: Clock;
  /** Wall-clock time, for manifest expiry. */
  readonly wallClock: WallClock;
  readonly initial: ActiveModule;
  readonly timing?: Partial<ClientTiming>;
  readonly receiver?: Partial<ReceiverOptions>;
  /** Offers of larger modules are refused before a byte is fetched (DEFAULT_MAX_MODULE_BYTES). */
  readonly maxModuleBytes?: number;
  /** 'auto': activate a verified module at once; 'defer': keep it until upgrade() or deferMaxMs. */
  readonly policy?: UpdatePolicy;
  readonly deferMaxMs?: number;
  /** A module kept for `upgrade` before the last restart (ModuleStore.loadDeferred). */
  readonly deferred?: Manifest;
  /** How long an activated module must run without a fault before it is committed. */
  readonly probationMs?: number;
  /** Join multicast groups the server names for a push (false: --no-multicast, unicast only). */
  readonly multicast?: boolean;
  /** What a plugin module's thread may use and how long it may take (plugin-host.ts). */
  readonly hostLimits?: Partial<HostLimits>;
  /** Modules on probation or on trial when the agent last stopped, rolled back at start
   *  (ModuleStore.loadActive): reported to the server once registered. */
  readonly interrupted?: readonly Interrupted[];
  /** Maintenance jobs: the messages that belong to them go there. */
  readonly jobs?: JobClient;
}

export type UpdatePolicy = 'auto' | 'defer';

/**
 * V8 cannot hold a source text over 2^29 − 24 characters, so a larger module can never be
 * import()ed; downloading it would only fill the disk and, when loading it, memory.
 */
export const DEFAULT_MAX_MODULE_BYTES = 512 * 1024 * 1024;

export interface ClientTiming {
  /** First retry of an unanswered registration; doubles up to registerRetryMaxMs. */
  readonly registerRetryMs: number;
  readonly registerRetryMaxMs: number;
  /** RESULT is repeated this often until the server acknowledges it… */
  readonly resultRetryMs: number;
  /** …at most this many times (≈ the server's peer timeout). */
  readonly resultRetries: number;
  /** Registrations left unanswered in a row before the session is assumed lost (the server
   *  restarted, or we moved) and the client shakes hands again… */
  readonly reconnectAfterUnanswered: number;
  /** …but not a session younger than this: the server answered its handshake just now, so it is
   *  alive and busy (a fleet coming back at once), and another handshake would only add to what
   *  it has to do. A server that lost the session says so (REFUSED), and that is acted on at once. */
  readonly newSessionPatienceMs: number;
}

export const DEFAULT_CLIENT_TIMING: ClientTiming = {
  registerRetryMs: 500,
  registerRetryMaxMs: 30_000,
  resultRetryMs: 250,
  resultRetries: 40,
  reconnectAfterUnanswered: 2,
  newSessionPatienceMs: 10_000,
};

export interface ClientStats {
  datagrams: number;
  malformed: number;
  unknownTransfer: number;
  /** CHUNKS frames received, and sealed chunks in them whose tag failed (forged, corrupted, or
   *  of another release: a replay) or whose index or length the manifest rules out. */
  chunkFrames: number;
  badChunks: number;
  /** Of chunkFrames, those of the transfer in progress that came through a multicast group. */
  groupFrames: number;
  /** Chunks from the group this device held already or could not hold yet: not even opened
   *  (or, in pieces, not even assembled). */
  groupUnwanted: number;
  /** PIECE frames received, and those dropped before assembly: a wrong token (not from one who
   *  holds the release's key) or a piece that does not fit its chunk. A chunk assembled from a
   *  planted piece fails its tag and counts in badChunks. */
  pieceFrames: number;
  badPieces: number;
  /** Of pieceFrames, those of the transfer in progress that came through a multicast group. */
  groupPieces: number;
}

export interface DownloadProgress {
  readonly name: string;
  readonly receivedBytes: number;
  readonly totalBytes: number;
  readonly bytesPerSecond: number;
}

export const DEFAULT_PROBATION_MS = 30_000;
/** A commit that could not be saved is tried again this often. */
const COMMIT_RETRY_MS = 10_000;

/** The result code for a module refused at its trial or failed in its probation. */
function failureCode(err: unknown): ResultCodeValue {
  switch (err instanceof NxtError ? err.code : '') {
    case 'bad-shape': return ResultCode.badShape;
    case 'hung': return ResultCode.hung;
    case 'out-of-memory': return ResultCode.outOfMemory;
    case 'exited': return ResultCode.exited;
    case 'crashed': return ResultCode.crashed;
    case 'self-test-failed': return ResultCode.selfTestFailed;
    case 'unhealthy': return ResultCode.unhealthy;
    default: return isStorageError(err) ? ResultCode.storage : ResultCode.loadFailed;
  }
}

/** Room kept beyond a module's size: the small state files written when it is activated. */
const SPACE_MARGIN_BYTES = 256 * 1024;

/** At most one "no such transfer here" a this often, whatever the transfer ids. */
const UNKNOWN_ABORT_EVERY_MS = 200;

/** How often a download in progress is reported. */
const PROGRESS_EVERY_MS = 1000;

/** While a module that arrived whole is verified and loaded (its trial may take up to
 *  --trial-timeout, 30 s), the device says this often that it holds every chunk: the server
 *  then waits for the verdict instead of giving up after its peer timeout (10 s) on a push
 *  that is about to succeed (a big module on a slow device, or one of many on a busy one). */
const FINISHING_KEEPALIVE_MS = 1000;
const FINISHING_KEEPALIVE_SLACK_MS = 60_000;

/** How long a plugin's reconfigure() may take before the old config is put back. */
const RECONFIGURE_TIMEOUT_MS = 10_000;

/**
 * When to renew: somewhat before the server's renewMs, at random (as DHCP fuzzes its renewal
 * times). Devices registered together — a fleet answering `versions`, or coming back after the
 * server restarted — would otherwise renew together forever: bursts at the server, and after a
 * restart a whole renewal period of silence before any of them finds out.
 */
export function renewalDelay(renewMs: number, random: number): number {
  // Within 0.1 s and a day whatever the server says: a timer longer than ~24.9 days fires at
  // once, and a server that said so (misconfigured, or not ours) would have this device
  // register again every millisecond.
  return Math.min(MAX_RENEW_MS, Math.max(MIN_RENEW_MS, renewMs * (1 - RENEW_JITTER * random)));
}
const RENEW_JITTER = 0.25;
/** A device renews at least daily and at most ten times a second, whatever its server says. */
const MIN_RENEW_MS = 100;
const MAX_RENEW_MS = 86_400_000;

/** Events: 'registered' (approved and in the fleet), 'renewed' (every answered registration,
 *  with the server's renewal interval), 'enrollment' ('pending' | 'rejected': the
 *  operator has not approved this device), 'activated' (ActiveModule), 'deferred' (Manifest: verified,
 *  waiting for upgrade), 'refused' ({ code, message }), 'log' (string), 'progress' (DownloadProgress,
 *  every second while a module arrives). */
export class ClientAgent extends EventEmitter {
  readonly stats: ClientStats = { datagrams: 0, malformed: 0, unknownTransfer: 0, chunkFrames: 0, badChunks: 0, groupFrames: 0, groupUnwanted: 0, pieceFrames: 0, badPieces: 0, groupPieces: 0 };
  /** Multicast groups joined (kept while the agent runs: the next push likely uses them too). */
  private readonly groups = new Map<string, Promise<MulticastReceiver | undefined>>();
  /** The groups' datagrams, handled by the batch (net/datagram-batch.ts). */
  private readonly groupBatch = new DatagramBatch<Buffer>(GROUP_BATCH_DATAGRAMS, GROUP_BATCH_MS);
  private readonly groupBatchTimer: WakeTimer;
  private activeModule: ActiveModule;
  private readonly timing: ClientTiming;
  private registered = false;
  private enrollment: EnrollmentValue | undefined;
  private unanswered = 0;
  /** Whether anything authenticated came from the server since the last REGISTER went out. */
  private heardSinceRegister = false;
  private registerSeq = 0;
  /** The newest registration answered: answers to it or older ones are stale. */
  private answeredSeq = 0;
  private registerDelay: number;
  private registerTimer: NodeJS.Timeout | undefined;
  private current: Transfer | undefined;
  private readonly results = new Map<number, PendingResult>();
  private lastUnknownAbortAt = Number.NEGATIVE_INFINITY;
  /** Modules (by sha256) whose suspended transfer is still writing or closing its partial file. */
  private readonly settling = new Map<string, Promise<void>>();
  private stopped = false;
  private progressTimer: NodeJS.Timeout | undefined;
  /** A verified module kept for `upgrade` (defer policy), with the timer that upgrades anyway. */
  private deferred: { manifest: Manifest; timer: NodeJS.Timeout | undefined } | undefined;
  private updateResult: UpdateResultValue = UpdateResult.initial;
  /** The module activated last, while it is on probation. */
  private probation: {
    readonly manifest: Manifest; readonly previous: ModuleRef; readonly host: PluginHost;
    timer: NodeJS.Timeout; health: NodeJS.Timeout; readonly onFailed: (err: NxtError) => void;
  } | undefined;
  private outcomeSeq = 0;
  private readonly outcomes = new Map<number, PendingResult>();
  private updating = false;
  private readonly clientIdHex: string;

  constructor(private readonly options: ClientAgentOptions) {
    super();
    this.activeModule = options.initial;
    this.clientIdHex = Buffer.from(options.clientId).toString('hex');
    this.timing = { ...DEFAULT_CLIENT_TIMING, ...options.timing };
    this.registerDelay = this.timing.registerRetryMs;
    this.groupBatchTimer = new WakeTimer(options.clock, () => this.takeGroupBatch(), true);
    if (options.deferred && compareReleaseVersions(options.deferred.version, options.initial.version) > 0) this.keepForUpgrade(options.deferred);
    options.channel.onDatagram((data) => this.onDatagram(data));
    options.channel.onChunks((frame) => this.onChunks(frame));
    // A new session (first, rekeyed, or after the server restarted): register on it at once,
    // which also tells the server to use it.
    options.channel.on('established', () => {
      this.registerDelay = this.timing.registerRetryMs;
      this.sendRegister();
    });
  }

  get active(): ActiveModule { return this.activeModule; }
  /** The verified module waiting for `upgrade`, if any. */
  get pendingUpgrade(): Manifest | undefined { return this.deferred?.manifest; }

  /** LwM2M firmware-update State of this device now. */
  get updateState(): UpdateStateValue {
    if (this.updating) return UpdateState.updating;
    if (this.current && !this.current.finishing) return UpdateState.downloading;
    return this.deferred ? UpdateState.downloaded : UpdateState.idle;
  }
  get channel(): ClientChannel { return this.options.channel; }
  get isRegistered(): boolean { return this.registered; }

  start(): void {
    // The committed module the agent started with is watched like one committed while it runs.
    if (this.activeModule.host) this.supervise(this.activeModule.host);
    this.options.channel.connect();
    this.progressTimer = setInterval(() => this.reportProgress(), PROGRESS_EVERY_MS);
    this.progressTimer.unref();
  }

  async stop(): Promise<void> {
    // Said first, once: the server shows this device offline now rather than when its lease
    // lapses (a lost goodbye costs only that).
    if (!this.stopped && this.registered) this.send({ type: 'goodbye', clientId: this.options.clientId });
    this.stopped = true;
    // A module on probation stays a trial on disk: the next start rolls it back.
    this.endProbation();
    for (const o of this.outcomes.values()) clearTimeout(o.timer);
    await this.activeModule.host?.stop();
    await dropSpare();
    for (const g of this.groups.values()) void g.then((r) => r?.close());
    this.groups.clear();
    this.options.jobs?.stop();
    clearTimeout(this.deferred?.timer);
    clearTimeout(this.registerTimer);
    clearInterval(this.progressTimer);
    this.groupBatchTimer.clear();
    this.groupBatch.take();
    if (this.current) this.suspend(this.current);
    this.current = undefined;
    await Promise.all([...this.settling.values()]);
    for (const r of this.results.values()) clearTimeout(r.timer);
    this.results.clear();
    await this.options.channel.close();
  }

  private reportProgress(): void {
    const t = this.current;
    if (!t || t.finishing) return;
    const now = this.options.clock.now();
    const bytes = t.bytesReceived;
    const mark = t.progressMark;
    t.progressMark = { at: now, bytes };
    this.emit('progress', {
      name: t.manifest.name, receivedBytes: bytes, totalBytes: t.manifest.size,
      bytesPerSecond: ((bytes - mark.bytes) * 1000) / Math.max(1, now - mark.at),
    } satisfies DownloadProgress);
  }

  // --- registration ---------------------------------------------------------------------------

  private sendRegister(): void {
    if (this.stopped) return;
    clearTimeout(this.registerTimer);
    if (this.options.channel.isEstablished) {
      this.heardSinceRegister = false;
      this.registerSeq = (this.registerSeq + 1) >>> 0;
      this.send({
        type: 'register', clientId: this.options.clientId, seq: this.registerSeq,
        version: this.activeModule.version, product: this.activeModule.product,
        enrollToken: this.options.enrollToken ?? '', inventory: this.options.inventory?.() ?? '{}',
        updateState: this.updateState, updateResult: this.updateResult,
      });
    } else {
      this.options.channel.connect(); // 'established' registers
    }
    const delay = this.registerDelay;
    // Unanswered: retry sooner than a renewal would, backing off so a dead server is not hammered.
    this.registerDelay = Math.min(this.registerDelay * 2, this.timing.registerRetryMaxMs);
    this.registerTimer = setTimeout(() => {
      this.registered = false;
      // Still no answer, and nothing else heard either (a busy server still sends chunks, and a
      // busy device may drop an answer): the server has likely forgotten our session (it
      // restarted): shake hands.
      if (this.heardSinceRegister) this.unanswered = 0;
      else if (++this.unanswered >= this.timing.reconnectAfterUnanswered && this.options.channel.isEstablished
        && this.options.channel.sessionAgeMs >= this.timing.newSessionPatienceMs) {
        this.unanswered = 0;
        this.options.channel.reconnect();
      }
      this.sendRegister();
    }, delay);
    this.registerTimer.unref();
  }

  private onRegistered(seq: number, renewMs: number, enrollment: EnrollmentValue): void {
    // An answer to the newest registration or to an earlier unanswered one: a busy server answers
    // late, after the device has tried again (with a new seq), and that answer is as good.
    const sinceAnswered = (seq - this.answeredSeq) >>> 0;
    const behindNewest = (this.registerSeq - seq) >>> 0;
    if (sinceAnswered === 0 || sinceAnswered >= 2 ** 31 || behindNewest >= 2 ** 31) return;
    this.answeredSeq = seq;
    const first = !this.registered;
    const changed = enrollment !== this.enrollment;
    this.enrollment = enrollment;
    this.registered = enrollment === Enrollment.approved;
    this.unanswered = 0;
    this.registerDelay = this.timing.registerRetryMs;
    clearTimeout(this.registerTimer);
    this.registerTimer = setTimeout(() => this.sendRegister(), renewalDelay(renewMs, Math.random()));
    this.registerTimer.unref();
    if (this.registered) this.emit('renewed', renewMs);
    if (this.registered && first) {
      this.emit('registered');
      if (this.outcomeSeq === 0) {
        for (const { ref: lost, during } of this.options.interrupted ?? []) {
          this.sendOutcome({
            committed: false, code: ResultCode.interrupted, manifest: { version: parseReleaseVersion(lost.version), sha256: lost.sha256 },
            message: during === 'probation'
              ? `${lost.name} ${lost.version} was on probation when the agent stopped (crash, kill or power loss): rolled back at start`
              : `${lost.name} ${lost.version} was being tried when the agent stopped (it may have taken the agent down): not tried again`,
          });
        }
      }
    }
    else if (!this.registered && changed) this.emit('enrollment', enrollment === Enrollment.pending ? 'pending' : 'rejected');
  }

  // --- datagrams ------------------------------------------------------------------------------

  /** Only what the channel authenticated as the server's arrives here (it drops and counts the rest). */
  private onDatagram(data: Buffer): void {
    this.stats.datagrams++;
    this.heardSinceRegister = true;
    const msg = decodeOrUndefined(data);
    if (!msg) {
      this.stats.malformed++;
      return;
    }
    try {
      this.dispatch(msg);
    } catch (err) {
      // A bug or a disk error while handling one datagram must not take the device down.
      this.log(`error handling ${msg.type}: ${errorMessage(err)}`);
    }
  }

  private dispatch(msg: Message): void {
    if (this.options.jobs?.dispatch(msg)) return;
    switch (msg.type) {
      case 'registered':
        if (Buffer.compare(msg.clientId, this.options.clientId) === 0) this.onRegistered(msg.seq, msg.renewMs, msg.enrollment);
        return;
      case 'offer': return this.onOffer(msg);
      case 'resultAck': {
        const r = this.results.get(msg.transferId);
        if (r) { clearTimeout(r.timer); this.results.delete(msg.transferId); }
        return;
      }
      case 'trialAck': {
        const o = this.outcomes.get(msg.seq);
        if (o) { clearTimeout(o.timer); this.outcomes.delete(msg.seq); }
        return;
      }
      case 'abort': return this.onAbort(msg);
      case 'multicast': return this.onMulticast(msg);
      case 'multicastLeave': return this.onMulticastLeave(msg);
      case 'query':
        // The operator asked for every device's version: answer now, not at the next renewal.
        this.registerDelay = this.timing.registerRetryMs;
        return this.sendRegister();
      default:
        this.stats.malformed++; // a message only a client sends
    }
  }

  /** A new config file for the active plugin (job config --apply), through its reconfigure(). */
  async reconfigure(name: string, path: string): Promise<string | undefined> {
    const host = this.activeModule.host;
    if (!host) throw new NxtError('not-supported', 'the built-in plugin takes no configuration');
    return host.reconfigure(name, path, RECONFIGURE_TIMEOUT_MS);
  }

  /** This device as a release's compatibility sees it. */
  private facts(): DeviceFacts {
    return { ...this.options.facts, product: this.activeModule.product.productName };
  }

  private onOffer(msg: OfferMessage): void {
    if (this.current?.transferId === msg.transferId) {
      this.current.onOffer();
      return;
    }
    const pending = this.results.get(msg.transferId);
    if (pending) { this.options.channel.send(pending.bytes); return; }

    let manifest: Manifest;
    try {
      manifest = verifyManifest(msg.manifest, msg.signature, this.options.trustedKey);
    } catch (err) {
      const code = err instanceof NxtError && err.code === 'bad-signature' ? ResultCode.badSignature : ResultCode.badManifest;
      return this.refuse(msg.transferId, code, errorMessage(err));
    }
    // Mix-and-match attack: a manifest signed for another device is refused.
    if (!isTargeted(manifest, this.clientIdHex)) {
      return this.refuse(msg.transferId, ResultCode.wrongTarget, 'manifest is signed for other devices, not this one');
    }
    // A release for other kinds of device (its signed compatibility): refused whoever offers it.
    const notFor = mismatch(manifest.for, this.facts());
    if (notFor !== undefined) return this.refuse(msg.transferId, ResultCode.notForDevice, `not for this device: ${notFor}`);
    // Freeze attack: an old offer replayed (or held back and released late) is refused.
    if (isExpired(manifest, this.options.wallClock.wallNow())) {
      return this.refuse(msg.transferId, ResultCode.expired,
        `manifest expired at ${manifest.expires}: push it again so the server signs a fresh one (or check this device's clock)`);
    }
    if (this.deferred?.manifest.sha256 === manifest.sha256) {
      return this.sendResult(msg.transferId, ResultCode.deferred, `${manifest.name} ${formatReleaseVersion(manifest.version)} is already verified here, waiting for upgrade`);
    }
    if (this.options.store.wasRolledBack(manifest.sha256)) {
      return this.refuse(msg.transferId, ResultCode.rolledBack, `${manifest.name} ${formatReleaseVersion(manifest.version)} was rolled back on this device before: it is not tried again (push a fixed version)`);
    }
    // Rollback attack: never accept a version that is not above the one running.
    if (compareReleaseVersions(manifest.version, this.activeModule.version) <= 0) {
      return this.refuse(msg.transferId, ResultCode.rollback,
        `version ${formatReleaseVersion(manifest.version)} is not newer than the active ${formatReleaseVersion(this.activeModule.version)}`);
    }
    const maxBytes = this.options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES;
    if (manifest.size > maxBytes) {
      return this.refuse(msg.transferId, ResultCode.tooLarge, `module of ${manifest.size} bytes exceeds this client's limit of ${maxBytes} (--max-module-bytes)`);
    }
    if (this.current?.manifest.sha256 === manifest.sha256 && this.current.manifest.chunkSize !== manifest.chunkSize && !this.current.finishing) {
      // The same module cut into other chunks (a restarted server chose another size for this
      // path): close the partial file and answer nothing; the repeated offer resumes from it.
      this.suspend(this.current);
      this.current = undefined;
      return;
    }
    if (this.current?.manifest.sha256 === manifest.sha256) {
      // Being verified or loaded right now: answer nothing; the server repeats the offer and
      // then gets the real answer.
      if (this.current.finishing) return;
      // The same module offered anew (the server restarted, or the operator pushed again):
      // carry on under the new transfer id with everything already received (a server that
      // restarted sealed the release again, under a new key).
      this.current.transferId = msg.transferId;
      this.current.key = new ContentKey(msg.contentKey, msg.sealId);
      this.current.pieces?.clear();
      this.log(`receiving ${manifest.name} again, resuming after ${this.current.receiver.inOrder} chunks already held`);
      this.current.onOffer();
      return;
    }
    // Its partial file is still being written by a suspended transfer: answer nothing, as above;
    // by the repeated offer the file is whole and closed.
    if (this.settling.has(manifest.sha256)) return;
    if (this.current) {
      // A newer offer replaces whatever was arriving; its bytes stay on disk for a resume.
      this.send({ type: 'abort', transferId: this.current.transferId, code: ResultCode.superseded, message: 'superseded by a newer offer' });
      this.suspend(this.current);
      this.current = undefined;
    }
    // A module that cannot fit is refused now, not after it has crossed the network: the size
    // is in the signed manifest. What a partial file already holds needs no more room.
    const partialPath = this.options.store.partialPath(manifest.sha256);
    let free = this.options.store.freeBytes();
    if (free !== undefined) {
      let held = 0;
      try { held = Math.min(manifest.size, statSync(partialPath).size); } catch { /* none yet */ }
      const need = manifest.size - held + SPACE_MARGIN_BYTES;
      if (free < need) {
        // Downloads superseded by later offers are kept for a resume, but not at the cost of the
        // module offered now.
        const dropped = this.options.store.dropOtherPartials(manifest.sha256);
        if (dropped.files > 0) {
          this.log(`removed ${dropped.files} unfinished download(s) of other modules (${dropped.bytes} bytes) to make room for ${manifest.name}`);
          free = this.options.store.freeBytes() ?? free;
        }
      }
      if (free < need) {
        return this.refuse(msg.transferId, ResultCode.storage, `not enough disk space for ${manifest.name}: it needs ${need} bytes, ${free} are free`);
      }
    }
    let incoming: IncomingModule;
    try {
      // A large module is hashed beside the receiving, in a thread of its own (files/hash-thread.ts),
      // and read into the memory it will load from as its writes land (plugin-host.ts, readUpTo).
      const onDisk = (bytes: number): void => {
        // Only the current transfer's (not one suspended, whose last writes still land), and not
        // from within the constructor (its prefix is read once the reserve is there, below).
        const t = this.current;
        if (t !== undefined && t.incoming === incoming && incoming.identity !== undefined) readUpTo(partialPath, incoming.identity, bytes);
      };
      incoming = new IncomingModule(manifest, partialPath, { hashThread: sharedHashThread(), onDisk });
    } catch (err) {
      return this.refuse(msg.transferId, ResultCode.storage, `cannot store the module: ${errorMessage(err)}`);
    }
    const transfer = new Transfer(this, msg.transferId, manifest, new ContentKey(msg.contentKey, msg.sealId), incoming, this.options.clock, this.options.receiver);
    this.current = transfer;
    const held = incoming.heldChunks > 0 ? `, resuming after ${incoming.heldChunks} chunks already held` : '';
    this.log(`receiving ${manifest.name} ${formatReleaseVersion(manifest.version)} (${manifest.size} bytes${held})`);
    transfer.onOffer();
    // A module too large for the spare thread's heap gets a thread of its own size, started now
    // rather than after the last chunk (a no-op for the usual sizes), and a large module the
    // memory it will be read into (not for one that waits for an upgrade); after the answer to
    // the offer, which starting a thread would hold back by ~7 ms.
    prepareSpareFor(manifest.size, this.options.hostLimits?.heapMb, { reserve: this.options.policy !== 'defer' });
    // What a resumed file holds already.
    if (incoming.identity !== undefined) readUpTo(partialPath, incoming.identity, incoming.bytesOnDisk);
  }

  /**
   * Sealed chunks of the module arriving. They come outside the session, so each is opened with
   * the release's content key (which only the session carried) before anything else: a forged
   * chunk, or one replayed from another release, fails its tag and is dropped and counted; it
   * can neither reach the file nor count as a duplicate. Only the server's address gets here
   * (the channel drops CHUNKS from anyone else).
   */
  private onChunks(frame: ChunksFrame | PieceFrame): void {
    if (frame.type === 'piece') { this.onPiece(frame); return; }
    this.stats.chunkFrames++;
    const t = this.transferFor(frame.transferId);
    if (t) this.takeChunks(t, frame);
  }

  /**
   * A piece of a sealed chunk (a path whose datagrams cannot carry one whole). Its token says it
   * comes from one who holds the release's key; once all its pieces are here, the chunk is opened
   * and taken as if it had come whole, and a planted piece fails the tag there.
   */
  private onPiece(frame: PieceFrame): void {
    const t = this.transferFor(frame.transferId);
    if (t) this.takePiece(t, frame, false);
    else this.stats.pieceFrames++;
  }

  /** `fromGroup`: the piece came through the multicast group (a group member that knows the
   *  release's key could plant one: the chunk's tag still decides). */
  private takePiece(t: Transfer, frame: PieceFrame, fromGroup: boolean): void {
    this.stats.pieceFrames++;
    if (!timingSafeEqual(frame.token, t.key.pieceToken) || frame.index >= t.incoming.totalChunks) { this.stats.badPieces++; return; }
    // A chunk this device holds or cannot hold yet is not assembled: its pieces would only fill
    // the assembler's slots with chunks that never complete (late pieces of a chunk a resend
    // completed). From the group it is counted once; from the session it is a duplicate,
    // answered as any duplicate is, at whichever of its pieces comes first (the late ones may be
    // any): the sender learns that a resend was needless, or that an ACK was lost.
    if (!t.wants(frame.index)) {
      if (fromGroup) {
        if (frame.piece === 0) this.stats.groupUnwanted++;
      } else if (t.lastDuplicate !== frame.index) {
        t.lastDuplicate = frame.index;
        t.onDuplicate(frame.index);
      }
      return;
    }
    t.pieces ??= new PieceAssembler(t.manifest.chunkSize + TAG_BYTES);
    const sealed = t.pieces.add(frame.index, frame.piece, frame.pieces, frame.bytes, t.incoming.chunkLength(frame.index) + TAG_BYTES);
    if (sealed === false) { this.stats.badPieces++; return; }
    try {
      if (sealed) this.takeSealedChunk(t, frame.index, sealed, fromGroup);
    } catch (err) {
      this.log(`error handling a chunk: ${errorMessage(err)}`);
    }
    this.stopIfUnwritable(t);
  }

  /** A datagram from a multicast group: queued, and handled with those that follow it within
   *  GROUP_BATCH_MS (net/datagram-batch.ts says why). The last chunks of a transfer are not kept
   *  waiting: its end is acknowledged at once. */
  private onGroupArrival(data: Buffer): void {
    const full = this.groupBatch.push(data, this.options.clock.now());
    const t = this.current;
    if (full || !t || t.incoming.totalChunks - t.receiver.received <= this.groupBatch.size) this.takeGroupBatch();
    else this.groupBatchTimer.arm(this.groupBatch.dueAt);
  }

  private takeGroupBatch(): void {
    this.groupBatchTimer.clear();
    for (const data of this.groupBatch.take()) this.onGroupDatagram(data);
  }

  /** A datagram from a multicast group this device joined: anyone on the LAN can send one, so
   *  it is only a CHUNKS or PIECE frame of the transfer in progress, and each chunk must open. */
  private onGroupDatagram(data: Buffer): void {
    let frame;
    try {
      frame = decodeEnvelope(data);
    } catch {
      this.stats.malformed++;
      return;
    }
    const t = this.current;
    if ((frame.type !== 'chunks' && frame.type !== 'piece') || !t || t.groupTransferId !== frame.transferId) { this.stats.unknownTransfer++; return; }
    if (frame.type === 'piece') { this.stats.groupPieces++; this.takePiece(t, frame, true); return; }
    this.stats.chunkFrames++;
    this.stats.groupFrames++;
    this.takeChunks(t, frame, true);
  }

  /** The server sends this transfer's chunks to a multicast group too: join it (or say at once
   *  that this device will not, so that its session sends it everything). */
  private onMulticast(msg: MulticastMessage): void {
    const t = this.current;
    if (!t || t.transferId !== msg.transferId || t.groupTransferId === msg.groupTransferId || t.leftGroup === msg.groupTransferId) return;
    if (!this.options.multicast) { this.declineGroup(t, msg.groupTransferId); return; }
    const group = { address: msg.address, port: msg.port };
    t.groupTransferId = msg.groupTransferId;
    t.group = group;
    const key = formatGroup(group);
    if (this.groups.has(key)) return;
    const joining = localAddressToward(this.options.channel.server.address)
      .then((local) => joinMulticast(group, local, (data) => this.onGroupArrival(data)))
      .catch((err: unknown) => {
        // Only this join's entry: a leave may have dropped it, and a later push joined afresh.
        if (this.groups.get(key) === joining) this.groups.delete(key);
        this.log(`cannot join the multicast group ${key} (${errorMessage(err)}): receiving by unicast`);
        if (this.current === t && t.groupTransferId === msg.groupTransferId) this.declineGroup(t, msg.groupTransferId);
        return undefined;
      });
    this.groups.set(key, joining);
  }

  /** Transfer `t` takes nothing more from the group of `groupTransferId`; the group it was in. */
  private stopTakingGroup(t: Transfer, groupTransferId: number): MulticastGroup | undefined {
    const group = t.group;
    t.leftGroup = groupTransferId;
    t.groupTransferId = undefined;
    t.group = undefined;
    return group;
  }

  /** Tell the server this device is not in the group of transfer `t` (MULTICAST_LEAVE). */
  private declineGroup(t: Transfer, groupTransferId: number): void {
    this.stopTakingGroup(t, groupTransferId);
    this.send({ type: 'multicastLeave', transferId: t.transferId, groupTransferId });
  }

  /** The group hands this device to unicast mid-pass: leave it (the next MULTICAST joins again). */
  private onMulticastLeave(msg: MulticastLeaveMessage): void {
    const t = this.current;
    if (!t || t.transferId !== msg.transferId || t.groupTransferId !== msg.groupTransferId) return;
    const group = this.stopTakingGroup(t, msg.groupTransferId);
    if (!group) return;
    const key = formatGroup(group);
    const joined = this.groups.get(key);
    if (!joined) return;
    this.groups.delete(key);
    void joined.then((r) => r?.close());
    this.log(`left the multicast group ${key}: the rest comes by unicast`);
  }

  /** `fromGroup`: the frame came through the multicast group (see ChunkReceiver.onGroupData). */
  private takeChunks(t: Transfer, frame: ChunksFrame, fromGroup = false): void {
    try {
      forEachChunk(frame.entries, (index, sealed) => this.takeSealedChunk(t, index, sealed, fromGroup));
    } catch (err) {
      if (err instanceof DecodeError) this.stats.malformed++;
      else this.log(`error handling chunks: ${errorMessage(err)}`);
    }
    this.stopIfUnwritable(t);
  }

  /** One sealed chunk, whole: checked against the manifest, opened, taken. */
  private takeSealedChunk(t: Transfer, index: number, sealed: Uint8Array, fromGroup: boolean): void {
    // Endless-data attack: exactly the length the signed manifest implies, before any work.
    if (index >= t.incoming.totalChunks || sealed.length !== t.incoming.chunkLength(index) + TAG_BYTES) { this.stats.badChunks++; return; }
    // A group's chunk this device holds or cannot hold yet is not worth opening.
    if (fromGroup && !t.wants(index)) { this.stats.groupUnwanted++; return; }
    const plain = t.key.openChunk(index, sealed);
    // A fresh buffer each time, garbage once written, as is the datagram it came in (util/garbage.ts).
    garbage.spent(2 * sealed.length);
    if (!plain) { this.stats.badChunks++; return; }
    // Only a chunk that opened proves the server is there (a forged frame must not keep
    // this device from noticing that its server restarted).
    this.heardSinceRegister = true;
    t.onChunk(index, plain, fromGroup);
    reserveUpTo(t.bytesReceived);
  }

  /** A write failed (the disk filled up after all): end the transfer now with `storage`. */
  private stopIfUnwritable(t: Transfer): void {
    if (t.incoming.failed && !t.finishing) void this.finish(t);
  }

  /** The transfer that `transferId` names, or undefined (and, once in a while, an ABORT saying so). */
  private transferFor(transferId: number): Transfer | undefined {
    const t = this.current;
    if (t && t.transferId === transferId) return t;
    if (this.results.has(transferId)) return undefined; // late duplicates of a finished transfer
    this.stats.unknownTransfer++;
    // Tell the server once in a while that we do not know this transfer (we restarted): it
    // offers it again and we resume from disk. Once in a while for all ids together: CHUNKS
    // frames are not authenticated as frames, and one forged with a new id each time must not
    // make the device answer each.
    const now = this.options.clock.now();
    if (now - this.lastUnknownAbortAt > UNKNOWN_ABORT_EVERY_MS) {
      this.lastUnknownAbortAt = now;
      this.send({ type: 'abort', transferId, code: ResultCode.unknownTransfer, message: 'no such transfer here' });
    }
    return undefined;
  }

  private onAbort(msg: AbortMessage): void {
    const t = this.current;
    if (t && t.transferId === msg.transferId) {
      this.suspend(t);
      this.current = undefined;
      this.log(`server stopped the transfer of ${t.manifest.name}: ${msg.message}`);
    }
  }

  // --- completion -----------------------------------------------------------------------------

  /** @internal called by Transfer */
  async finish(t: Transfer): Promise<void> {
    if (t.finishing) return;
    t.finishing = true;
    t.clearTimer();
    // No echo: a repeated ACK must not read as a duplicate of the last chunk (a resend wasted).
    // For as long as a trial may last and a minute more (a disk that hangs must not keep the
    // server waiting for ever).
    const until = this.options.clock.now() + (this.options.hostLimits?.loadTimeoutMs ?? DEFAULT_HOST_LIMITS.loadTimeoutMs) + FINISHING_KEEPALIVE_SLACK_MS;
    const keepAlive = setInterval(() => {
      if (this.options.clock.now() > until) clearInterval(keepAlive);
      else this.sendRaw(encode({ ...t.receiver.ack(t.transferId), echo: NO_ECHO }));
    }, FINISHING_KEEPALIVE_MS);
    keepAlive.unref();
    try {
      await this.verifyAndActivate(t);
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async verifyAndActivate(t: Transfer): Promise<void> {
    const { manifest } = t;
    let durable: Promise<void>;
    const finalPath = this.options.store.modulePath(manifest.sha256);
    // Once every byte is written, the plugin thread that reserved for it reads its text (parsing
    // none of it) while its digest is checked; this transfer's end releases it otherwise.
    const readText = this.options.policy === 'defer' ? undefined : (): void => { void readAhead(t.incoming.partialPath, pathToFileURL(finalPath).href); };
    try {
      // Verified and in place; its fsync runs on while the module loads (activate waits for it).
      ({ durable } = await t.incoming.place(finalPath, false, readText));
    } catch (err) {
      // Bad bytes are not worth resuming: discard them.
      try { unlinkSync(t.incoming.partialPath); } catch { /* already gone */ }
      const code = !(err instanceof NxtError) || err.code === 'storage' ? ResultCode.storage
        : err.code === 'size-mismatch' ? ResultCode.sizeMismatch : ResultCode.hashMismatch;
      if (code !== ResultCode.storage) this.updateResult = UpdateResult.integrityFailure;
      return this.endTransfer(t, code, errorMessage(err));
    }
    if (compareReleaseVersions(manifest.version, this.activeModule.version) <= 0) {
      return this.endTransfer(t, ResultCode.rollback, `version ${formatReleaseVersion(manifest.version)} is no longer newer than the active one`);
    }
    if (this.options.policy === 'defer') {
      try {
        await durable;
      } catch (err) {
        return this.endTransfer(t, ResultCode.storage, errorMessage(err));
      }
      this.keepForUpgrade(manifest);
      try {
        this.options.store.setDeferred(manifest);
      } catch (err) {
        this.log(`warning: ${errorMessage(err)}: the kept module waits in memory only (after a restart it is pushed again)`);
      }
      const maxMs = this.options.deferMaxMs;
      this.endTransfer(t, ResultCode.deferred, `verified and kept; activates on "upgrade" at the device${maxMs === undefined ? '' : ` or in ${Math.round(maxMs / 1000)} s`}`);
      this.emit('deferred', manifest);
      this.sendRegister();
      return;
    }
    const outcome = await this.activate(manifest, durable);
    this.endTransfer(t, outcome.code, outcome.message);
  }

  /** Delete the module files nothing needs any more (ModuleStore.prune), sparing those in hand:
   *  the one a transfer is finishing with (in place, its trial not recorded yet) and the one kept
   *  for `upgrade` even where deferred.json could not be written. */
  private pruneModules(): void {
    this.options.store.prune([this.current?.manifest.sha256, this.deferred?.manifest.sha256]);
  }

  /** Keep a verified module for `upgrade`, which happens by itself after deferMaxMs. */
  private keepForUpgrade(manifest: Manifest): void {
    clearTimeout(this.deferred?.timer);
    const maxMs = this.options.deferMaxMs;
    const timer = maxMs === undefined ? undefined : setTimeout(() => { void this.upgrade().catch((err: unknown) => this.log(`upgrade failed: ${errorMessage(err)}`)); }, maxMs);
    timer?.unref();
    this.deferred = { manifest, timer };
    this.updateResult = UpdateResult.deferred;
  }

  /** Activate the module kept by the defer policy (typed `upgrade`, or its time ran out). */
  async upgrade(): Promise<ActiveModule> {
    const d = this.deferred;
    if (!d) throw new NxtError('nothing-deferred', 'no verified update is waiting');
    clearTimeout(d.timer);
    this.deferred = undefined;
    const outcome = await this.activate(d.manifest);
    if (outcome.code !== ResultCode.ok) throw new NxtError('upgrade-failed', outcome.message);
    return this.activeModule;
  }

  /**
   * Try a verified module in a thread of its own (load, shape, selfTest()); if it passes, record
   * it as on probation, make it the running one and watch it for probationMs. A module refused at
   * its trial never touches the running one. Tells the server the new version at once.
   * `durable`: the module's file is on disk (nothing records it as installed before).
   */
  private async activate(manifest: Manifest, durable: Promise<void> = Promise.resolve()): Promise<{ code: ResultCodeValue; message: string }> {
    this.updating = true;
    const { store } = this.options;
    try {
      // Said before it runs: if it takes the agent down, the next start does not try it again.
      store.beginTrying(manifest, this.options.wallClock.wallNow());
      let host: PluginHost;
      try {
        host = await PluginHost.load(pathToFileURL(store.modulePath(manifest.sha256)).href, {
          selfTest: true, limits: this.options.hostLimits, sizeBytes: manifest.size,
        });
        try {
          await durable;
          store.beginTrial(manifest, this.options.wallClock.wallNow());
        } catch (err) {
          await host.stop();
          throw err;
        }
      } finally {
        // An agent stopping meanwhile leaves it, as it leaves a probation a trial on disk: the
        // next start does not try the module again.
        if (!this.stopped) store.endTrying();
      }
      const replaced = this.activeModule;
      // A newer module replaces one still on probation: the one to go back to stays the
      // committed one (beginTrial recorded the same).
      const previous = this.endProbation()?.previous ?? refOf(replaced);
      this.activeModule = { version: manifest.version, product: host.product, sha256: manifest.sha256, name: manifest.name, host };
      // Not awaited: ending a thread takes milliseconds the push need not wait for.
      void replaced.host?.stop().catch(() => undefined);
      this.startProbation(manifest, previous);
      // The trial it replaced (if it was one) is needed no more: its file goes now, not when
      // this trial commits, in case another push comes first.
      this.pruneModules();
      this.updateResult = UpdateResult.success;
      this.emit('activated', this.activeModule);
      const p = host.product;
      return { code: ResultCode.ok, message: `${p.major}.${p.minor} ${p.productName} active, on probation for ${Math.round(this.probationMs / 1000)} s` };
    } catch (err) {
      this.updateResult = UpdateResult.updateFailed;
      return { code: failureCode(err), message: errorMessage(err) };
    } finally {
      this.updating = false;
      // Tell the server our version and state now rather than at the next renewal.
      this.sendRegister();
    }
  }

  private get probationMs(): number { return this.options.probationMs ?? DEFAULT_PROBATION_MS; }

  /** Watch the module just activated: the first failure rolls it back; probationMs without one
   *  commits it. */
  private startProbation(manifest: Manifest, previous: ModuleRef): void {
    const host = this.activeModule.host!;
    const onFailed = (err: NxtError): void => { void this.rollBack(failureCode(err), err.message); };
    host.once('failed', onFailed);
    const every = Math.max(100, Math.min(1000, this.probationMs / 5));
    const health = setInterval(() => {
      if (!host.hasHealthCheck) return;
      host.healthCheck(this.options.hostLimits?.hangMs ?? DEFAULT_HOST_LIMITS.hangMs)
        .catch((err: unknown) => { if (this.probation?.host === host) void this.rollBack(ResultCode.unhealthy, errorMessage(err)); });
    }, every);
    const timer = setTimeout(() => this.commitOnceAnswering(host), this.probationMs);
    health.unref();
    timer.unref();
    this.probation = { manifest, previous, host, timer, health, onFailed };
  }

  /**
   * The probation's time is up: commit once the module's thread answers a ping. A thread silent
   * at this moment has not shown that it runs; whether it is hung or only starved of CPU is the
   * host's hang watch to say (a failure then rolls it back, as during the probation). Without
   * this, a loop that began just before the end was committed when a loaded machine slowed the
   * watch's verdict past the probation.
   */
  private commitOnceAnswering(host: PluginHost): void {
    void host.nextAnswer().then(() => { if (this.probation?.host === host) this.commit(); }, () => undefined);
  }

  private endProbation(): NonNullable<ClientAgent['probation']> | undefined {
    const p = this.probation;
    if (!p) return undefined;
    this.probation = undefined;
    clearTimeout(p.timer);
    clearInterval(p.health);
    p.host.off('failed', p.onFailed);
    return p;
  }

  private commit(): void {
    const p = this.probation;
    if (!p || this.stopped) return;
    try {
      this.options.store.commit();
    } catch (err) {
      // Still a trial on disk: a restart would roll it back. Try again soon; it stays watched.
      this.log(`warning: cannot record ${p.manifest.name} as committed (${errorMessage(err)}); trying again in ${COMMIT_RETRY_MS / 1000} s`);
      p.timer = setTimeout(() => this.commit(), COMMIT_RETRY_MS);
      p.timer.unref();
      return;
    }
    this.endProbation();
    this.supervise(p.host);
    // The module it replaced, and any before, are needed no more.
    this.pruneModules();
    const version = formatReleaseVersion(p.manifest.version);
    this.log(`${p.manifest.name} ${version} committed: it ran ${Math.round(this.probationMs / 1000)} s without a fault`);
    this.emit('committed', this.activeModule);
    this.sendOutcome({ committed: true, code: ResultCode.ok, manifest: p.manifest, message: `committed after ${Math.round(this.probationMs / 1000)} s on probation` });
  }

  /** The module on probation failed: go back to the previous one, without a restart. */
  private async rollBack(code: ResultCodeValue, reason: string): Promise<void> {
    const p = this.endProbation();
    if (!p) return;
    await p.host.stop();
    let back: ModuleRef;
    try {
      back = this.options.store.rollBack();
      // The module rolled back is not tried again: its file goes.
      this.pruneModules();
    } catch (err) {
      // Still a trial on disk: the next start rolls it back anyway.
      this.log(`warning: cannot record the rollback (${errorMessage(err)}); the next start completes it`);
      back = p.previous;
    }
    let restored: ActiveModule;
    try {
      restored = await this.options.store.start(back, this.options.hostLimits ?? {});
    } catch (err) {
      this.log(`warning: ${back.name} ${back.version} does not start again (${errorMessage(err)}); running the built-in plugin`);
      restored = await this.options.store.start(BUILTIN_REF, {});
    }
    if (this.stopped) { await restored.host?.stop(); return; }
    this.activeModule = restored;
    if (restored.host) this.supervise(restored.host);
    this.updateResult = UpdateResult.updateFailed;
    const message = `${resultCodeName(code)}: ${reason}`;
    this.log(`${p.manifest.name} ${formatReleaseVersion(p.manifest.version)} rolled back (${message}); ${restored.name} ${formatReleaseVersion(restored.version)} runs again`);
    this.emit('rolled-back', { manifest: p.manifest, code, reason, active: restored });
    this.sendOutcome({ committed: false, code, manifest: p.manifest, message: reason });
    this.sendRegister();
  }

  /**
   * A committed module that fails later (a fault that shows after its probation) is started
   * again, after a pause that doubles up to a minute: the agent keeps running either way, and
   * its version does not change. It is held to the default hang limit, not its probation's.
   */
  private supervise(host: PluginHost, pauseMs = 1000): void {
    host.commit(DEFAULT_HOST_LIMITS.hangMs);
    host.once('failed', (err: NxtError) => {
      if (this.stopped || this.activeModule.host !== host) return;
      this.log(`warning: ${this.activeModule.name} failed (${err.message}); starting it again in ${Math.round(pauseMs / 1000)} s`);
      this.restartLater(host, pauseMs);
    });
  }

  /** Start the active module again after `pauseMs`, in place of `failed`; if it does not start,
   *  try again after twice the pause. */
  private restartLater(failed: PluginHost, pauseMs: number): void {
    const next = Math.min(pauseMs * 2, 60_000);
    const timer = setTimeout(() => {
      if (this.stopped || this.activeModule.host !== failed) return;
      const ref = refOf(this.activeModule);
      this.options.store.start(ref, this.options.hostLimits ?? {}).then((again) => {
        if (this.stopped || this.activeModule.host !== failed) { void again.host?.stop(); return; }
        this.activeModule = again;
        if (again.host) this.supervise(again.host, next);
      }, (why: unknown) => {
        this.log(`warning: ${ref.name} does not start again (${errorMessage(why)}); trying again in ${Math.round(next / 1000)} s`);
        this.restartLater(failed, next);
      });
    }, pauseMs);
    timer.unref();
  }

  /** Tell the server how a probation ended; repeated until TRIAL_ACK (a bounded number of times). */
  private sendOutcome(o: { committed: boolean; code: ResultCodeValue; manifest: { version: ReleaseVersion; sha256?: string }; message: string }): void {
    const seq = (this.outcomeSeq = (this.outcomeSeq + 1) >>> 0);
    const bytes = encode({
      type: 'trialOutcome', seq, committed: o.committed, code: o.code, version: o.manifest.version,
      sha256: Buffer.from(o.manifest.sha256 ?? '0'.repeat(64), 'hex'), active: this.activeModule.version, message: o.message,
    });
    this.outcomes.set(seq, this.repeated(bytes, this.timing.resultRetryMs * 4, this.timing.resultRetries * 4, () => this.outcomes.delete(seq)));
  }

  /** Send `bytes` now and every `everyMs` until its timer is cleared (acknowledged), at most
   *  `tries` times; then `giveUp`. */
  private repeated(bytes: Uint8Array, everyMs: number, tries: number, giveUp: () => void = () => undefined): PendingResult {
    const pending: PendingResult = { bytes, tries: 0, timer: undefined };
    const resend = (): void => {
      if (this.stopped || pending.tries++ >= tries) { giveUp(); return; }
      this.options.channel.send(bytes);
      pending.timer = setTimeout(resend, everyMs);
      pending.timer.unref();
    };
    resend();
    return pending;
  }

  /** @internal called by Transfer */
  timedOut(t: Transfer): void {
    if (this.current !== t) return;
    this.suspend(t);
    this.current = undefined;
    this.log(`transfer of ${t.manifest.name} stalled: the server went quiet; kept ${t.receiver.inOrder}/${t.incoming.totalChunks} chunks to resume`);
  }

  private suspend(t: Transfer): void {
    releaseReserve();
    const sha = t.manifest.sha256;
    const done = t.suspend();
    this.settling.set(sha, done);
    void done.finally(() => { if (this.settling.get(sha) === done) this.settling.delete(sha); });
  }

  private endTransfer(t: Transfer, code: ResultCodeValue, message: string): void {
    if (this.current === t) this.current = undefined;
    // (A transfer that replaced this one keeps the memory reserved for it.)
    if (this.current === undefined) releaseReserve();
    if (code !== ResultCode.ok && code !== ResultCode.deferred) this.emit('refused', { code, message: `${t.manifest.name}: ${resultCodeName(code)}: ${message}` });
    this.sendResult(t.transferId, code, message);
  }

  private refuse(transferId: number, code: ResultCodeValue, message: string): void {
    this.updateResult = UpdateResult.refused;
    this.emit('refused', { code, message });
    this.sendResult(transferId, code, message);
  }

  private sendResult(transferId: number, code: number, message: string): void {
    const bytes = encode({ type: 'result', transferId, code, active: this.activeModule.version, message });
    const old = this.results.get(transferId);
    if (old) clearTimeout(old.timer);
    // Kept after the last try, so late duplicates of this transfer stay quiet; bounded below.
    this.results.set(transferId, this.repeated(bytes, this.timing.resultRetryMs, this.timing.resultRetries));
    if (this.results.size > 64) {
      const [oldestId, oldest] = this.results.entries().next().value!;
      clearTimeout(oldest.timer);
      this.results.delete(oldestId);
    }
  }

  /** @internal */
  send(msg: Message): void {
    this.options.channel.send(encode(msg));
  }

  /** @internal */
  sendRaw(bytes: Uint8Array): void {
    this.options.channel.send(bytes);
  }

  private log(line: string): void {
    this.emit('log', line);
  }
}

interface PendingResult {
  readonly bytes: Uint8Array;
  tries: number;
  timer: NodeJS.Timeout | undefined;
}

/** One module arriving: an IncomingTransfer with its manifest and progress reporting. */
class Transfer extends IncomingTransfer {
  /** Where the last progress report left off (at the start: what was already held). */
  progressMark: { at: number; bytes: number };
  /** The transfer id its chunks carry in the multicast group, when the server named one. */
  groupTransferId: number | undefined;
  /** That group, while this transfer takes from it. */
  group: MulticastGroup | undefined;
  /** The group transfer id this device was told to leave: a MULTICAST naming it again is stale. */
  leftGroup: number | undefined;
  /** Chunks arriving in pieces, being put together (made at the first piece). */
  pieces: PieceAssembler | undefined;
  /** The chunk whose pieces were last answered as a duplicate (one ACK for its pieces). */
  lastDuplicate = -1;

  constructor(
    agent: ClientAgent, transferId: number, readonly manifest: Manifest,
    /** Opens this release's sealed chunks; replaced when the offer comes again under a new key. */
    public key: ContentKey,
    incoming: IncomingModule, clock: Clock, options?: Partial<ReceiverOptions>,
  ) {
    let self: Transfer | undefined;
    super(transferId, incoming, {
      send: (bytes) => agent.sendRaw(bytes),
      complete: () => { if (self) void agent.finish(self); },
      idle: () => { if (self) agent.timedOut(self); },
    }, clock, options);
    self = this;
    this.progressMark = { at: clock.now(), bytes: this.bytesReceived };
  }
}
