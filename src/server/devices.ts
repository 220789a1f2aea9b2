/**
 * Device enrollment (Mender's accept/reject of pending devices): a client's key is `pending` until
 * the operator approves or rejects it, or an enrollment token approves it; an approved key can be
 * revoked. Only approved devices are in the fleet registry and receive pushes.
 *
 * Decisions are kept in the store (the embedded database, or PostgreSQL), so they survive a
 * restart. Pending requests are kept too, written in batches, so that every node of a fleet lists
 * them and any can decide (and a restart keeps them): at most MAX_PENDING per node (the oldest make
 * room, in memory and in the store), so a flood of new keys cannot fill the disk, and a request
 * that could not be written is written when the device asks again.
 */
import { NxtError } from '../errors.js';
import { displayAddress, type Peer } from '../net/endpoint.js';
import type { Store } from '../store/store.js';
import type { Inventory } from './views.js';
import { peerText } from '../util/peer-text.js';

export type DeviceState = 'pending' | 'approved' | 'rejected' | 'revoked';

/** What a device says about itself (all optional: it is the device's word, shown, never trusted). */
export type { Inventory };

/** Token approvals waiting to be saved together (Devices.approveSoon). */
interface ApprovalBatch {
  readonly ids: Set<string>;
  readonly waiters: { resolve: () => void; reject: (err: unknown) => void; at: Date }[];
  readonly timer: NodeJS.Timeout;
}

/** How long token approvals gather before they are saved together; new requests the same. */
const APPROVAL_BATCH_MS = 100;
const REQUEST_BATCH_MS = 100;

/** Requests to write together: new ones, and those that made room for them. */
interface RequestBatch {
  readonly added: Map<string, DeviceRecord>;
  readonly dropped: Set<string>;
}

export interface DeviceRecord {
  readonly id: string;
  readonly fingerprint: string;
  state: DeviceState;
  inventory: Inventory;
  address: string;
  readonly requestedAt: string;
  decidedAt?: string;
  /** 'operator' or 'enrollment token'. */
  decidedBy?: string;
}

export const MAX_PENDING = 1000;

export class Devices {
  private readonly devices = new Map<string, DeviceRecord>();

  private batch: ApprovalBatch | undefined;
  /** Devices whose decision is being saved right now. */
  private readonly saving = new Set<string>();
  private requests: RequestBatch | undefined;
  /** Requests this node made (only those it drops from the store when they make room). */
  private readonly requestedHere = new Set<string>();
  /** Requests not written (the store failed): written when the device asks again. */
  private readonly unwritten = new Set<string>();

  /** `store` undefined: nothing persisted (tests). */
  constructor(private readonly store: Store | undefined, saved: readonly DeviceRecord[] = [], private readonly maxPending = MAX_PENDING) {
    for (const d of saved) this.devices.set(d.id, d);
    // The newest requests, if more were kept than this node keeps now.
    for (const d of this.pending().slice(0, Math.max(0, this.pending().length - maxPending))) this.devices.delete(d.id);
  }

  static async open(store: Store, maxPending = MAX_PENDING): Promise<Devices> {
    return new Devices(store, await store.devices(), maxPending);
  }

  get(id: string): DeviceRecord | undefined { return this.devices.get(id); }
  all(): DeviceRecord[] { return [...this.devices.values()]; }
  pending(): DeviceRecord[] { return this.all().filter((d) => d.state === 'pending'); }
  isRevoked(id: string): boolean { return this.devices.get(id)?.state === 'revoked'; }

  /**
   * Decisions another node made (several nodes): taken as they are in the store. Returns the
   * devices whose state changed here, for the server to act on (drop a revoked one's sessions).
   */
  adopt(saved: readonly DeviceRecord[]): DeviceRecord[] {
    const changed: DeviceRecord[] = [];
    for (const d of saved) {
      // A decision being saved here is newer than what the store said a moment ago.
      if (this.saving.has(d.id)) continue;
      const known = this.devices.get(d.id);
      if (known && known.state === d.state && known.decidedAt === d.decidedAt) continue;
      if (known) Object.assign(known, { state: d.state, decidedAt: d.decidedAt, decidedBy: d.decidedBy });
      else this.devices.set(d.id, d);
      changed.push(known ?? d);
    }
    return changed;
  }

  /** A device registered: record it as pending if it is new; refresh what it says about itself. */
  request(id: string, fingerprint: string, inventory: Inventory, peer: Peer, wallNow: Date): DeviceRecord {
    const address = displayAddress(peer);
    const known = this.devices.get(id);
    if (known) {
      known.inventory = inventory;
      known.address = address;
      if (known.state === 'pending' && this.unwritten.delete(id)) this.queueRequest(known);
      return known;
    }
    const pending = this.pending();
    if (pending.length >= this.maxPending) {
      const oldest = pending[0]!.id;
      this.devices.delete(oldest);
      this.queueRequest(undefined, oldest);
    }
    const record: DeviceRecord = { id, fingerprint, state: 'pending', inventory, address, requestedAt: wallNow.toISOString() };
    this.devices.set(id, record);
    this.queueRequest(record);
    return record;
  }

  private queueRequest(added: DeviceRecord | undefined, dropped?: string): void {
    if (!this.store) return;
    if (!this.requests) {
      const batch: RequestBatch = { added: new Map(), dropped: new Set() };
      this.requests = batch;
      setTimeout(() => this.flushRequests(batch), REQUEST_BATCH_MS).unref();
    }
    if (added) {
      this.requests.added.set(added.id, added);
      this.requestedHere.add(added.id);
    }
    if (dropped !== undefined) {
      this.requests.added.delete(dropped);
      this.unwritten.delete(dropped);
      if (this.requestedHere.delete(dropped)) this.requests.dropped.add(dropped);
    }
  }

  private flushRequests(batch: RequestBatch): void {
    if (this.requests === batch) this.requests = undefined;
    const added = [...batch.added.values()];
    this.store!.saveRequests(added, [...batch.dropped]).catch(() => {
      // Soft state: the requests stay listed here, and are written when their devices ask again.
      for (const d of added) this.unwritten.add(d.id);
    });
  }

  /** Resolves once the decision is saved; if it cannot be, it is undone and the error thrown. */
  async decide(id: string, state: Exclude<DeviceState, 'pending'>, by: string, wallNow: Date): Promise<DeviceRecord> {
    const d = this.devices.get(id);
    if (!d) throw new NxtError('no-such-device', `no device ${id}`);
    const { state: wasState, decidedAt: wasAt, decidedBy: wasBy } = d;
    d.state = state;
    d.decidedAt = wallNow.toISOString();
    d.decidedBy = by;
    this.requestedHere.delete(id);
    this.unwritten.delete(id);
    this.saving.add(id);
    try {
      await this.store?.saveDevices([d]);
    } catch (err) {
      // Not saved, so not decided.
      d.state = wasState;
      d.decidedAt = wasAt;
      d.decidedBy = wasBy;
      throw err;
    } finally {
      this.saving.delete(id);
    }
    return d;
  }

  /**
   * Approve `id` (it had the enrollment token) together with the others arriving within
   * APPROVAL_BATCH_MS: one transaction for all of them (a thousand devices installed with a token
   * would otherwise wait for a thousand). Resolves once it is on disk; rejects,
   * undone, if that fails.
   */
  approveSoon(id: string, wallNow: Date): Promise<void> {
    if (!this.batch) {
      const batch: ApprovalBatch = { ids: new Set(), waiters: [], timer: setTimeout(() => this.flushApprovals(batch), APPROVAL_BATCH_MS) };
      batch.timer.unref();
      this.batch = batch;
    }
    const batch = this.batch;
    batch.ids.add(id);
    return new Promise((resolve, reject) => batch.waiters.push({ resolve, reject, at: wallNow }));
  }

  private flushApprovals(batch: ApprovalBatch): void {
    if (this.batch === batch) this.batch = undefined;
    const at = batch.waiters[0]!.at.toISOString(); // a batch is made for its first approval
    const changed: DeviceRecord[] = [];
    for (const id of batch.ids) {
      const d = this.devices.get(id);
      if (!d || d.state !== 'pending') continue;
      d.state = 'approved';
      d.decidedAt = at;
      d.decidedBy = 'enrollment token';
      this.requestedHere.delete(id);
      this.unwritten.delete(id);
      changed.push(d);
    }
    void (this.store?.saveDevices(changed) ?? Promise.resolve()).then(
      () => { for (const w of batch.waiters) w.resolve(); },
      (err: unknown) => {
        // Not saved, so not approved: they ask again at their next registration.
        for (const d of changed) { d.state = 'pending'; delete d.decidedAt; delete d.decidedBy; }
        for (const w of batch.waiters) w.reject(err);
      },
    );
  }
}

/** The device's inventory JSON, keeping only well-typed known fields (strings cut to 64 chars). */
export function parseInventory(json: string): Inventory {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return {};
  }
  if (typeof raw !== 'object' || raw === null) return {};
  const r = raw as Record<string, unknown>;
  // JSON escapes (\u001b) make controls the wire text had none of: they are not shown either.
  const text = (v: unknown): string | undefined => (typeof v === 'string' ? peerText(v.slice(0, 64)) : undefined);
  const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);
  const inv: Record<string, string | number> = {};
  for (const [k, v] of Object.entries({
    hostname: text(r.hostname), os: text(r.os), arch: text(r.arch), cpus: count(r.cpus), memoryBytes: count(r.memoryBytes), diskFreeBytes: count(r.diskFreeBytes),
    type: text(r.type), channel: text(r.channel), agent: text(r.agent), features: text(r.features),
  })) if (v !== undefined) inv[k] = v;
  return inv as Inventory;
}

export function describeInventory(i: Inventory): string {
  const gib = (n: number | undefined): string | undefined => (n === undefined ? undefined : `${(n / 2 ** 30).toFixed(1)} GiB`);
  return [
    i.hostname, i.os, i.arch, i.cpus === undefined ? undefined : `${i.cpus} CPUs`,
    gib(i.memoryBytes) && `${gib(i.memoryBytes)} RAM`, gib(i.diskFreeBytes) && `${gib(i.diskFreeBytes)} free`,
  ].filter((x) => x !== undefined).join(', ') || 'no inventory';
}
