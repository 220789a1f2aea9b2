/**
 * Registered clients, keyed by the id each client chose for itself (not by "whoever sent last").
 * A registration is a lease: a client that has not renewed within `leaseMs` is offline.
 */
import { UpdateResult, UpdateState, type ProductInfo, type UpdateResultValue, type UpdateStateValue } from '../protocol/messages.js';
import { compareReleaseVersions as compareVersions, type ReleaseVersion } from '../protocol/release-version.js';
import type { Peer } from '../net/endpoint.js';

export interface ClientRecord {
  readonly id: string;
  peer: Peer;
  version: ReleaseVersion;
  product: ProductInfo;
  /** Monotonic ms; -Infinity for a client known from the saved fleet that has not renewed yet. */
  lastSeen: number;
  /** Wall-clock time of the last registration, for people (and kept across restarts). */
  lastSeenAt: string;
  /** Groups the operator put it in (`tag`). */
  tags: string[];
  /** What the device last said about its update (LwM2M firmware-update State and Result). */
  updateState: UpdateStateValue;
  updateResult: UpdateResultValue;
  /** The last probation outcome heard (its seq, to ignore repeats), and the module it rolled
   *  back if it did (automatic updates do not send that one again). */
  lastOutcomeSeq?: number;
  rolledBack?: string;
  /** Set when another node holds the device's session (several nodes: cluster.ts); it is not
   *  in this node's registry then, only in its view of the fleet. */
  readonly node?: string;
}

/** What is kept of a client across server restarts (the store's registrations). */
export interface SavedClient {
  readonly id: string;
  readonly address: string;
  readonly port: number;
  readonly version: ReleaseVersion;
  readonly product: ProductInfo;
  readonly lastSeenAt: string;
  readonly tags: readonly string[];
  readonly updateState?: UpdateStateValue;
  readonly updateResult?: UpdateResultValue;
}

function toSaved(c: ClientRecord): SavedClient {
  return {
    id: c.id, address: c.peer.address, port: c.peer.port, version: c.version, product: c.product, lastSeenAt: c.lastSeenAt, tags: [...c.tags],
    updateState: c.updateState, updateResult: c.updateResult,
  };
}

/** Clients renew every RENEW; three renewals may be lost before a client counts as offline. */
export const DEFAULT_RENEW_MS = 10_000;
export const DEFAULT_LEASE_MS = 3 * DEFAULT_RENEW_MS + 1_000;
/** Memory stays bounded whatever happens: at this many clients the least recently seen offline one
 *  makes room, and when all are online a newcomer is refused. */
export const DEFAULT_MAX_CLIENTS = 100_000;

export class Registry {
  private readonly clients = new Map<string, ClientRecord>();

  constructor(readonly leaseMs = DEFAULT_LEASE_MS, readonly maxClients = DEFAULT_MAX_CLIENTS) {}

  get size(): number { return this.clients.size; }

  /**
   * Undefined when the registry is full of online clients. `changed`: new, or its address,
   * version or product changed (worth saving at once); `cameBack`: it was offline until now.
   */
  register(
    id: string, peer: Peer, version: ReleaseVersion, product: ProductInfo, now: number, wallNow = new Date(0),
  ): { record: ClientRecord; isNew: boolean; changed: boolean; cameBack: boolean } | undefined {
    const known = this.clients.get(id);
    if (known) {
      // Keep the map ordered by last renewal (a Map iterates in insertion order): the first
      // entry is always the least recently seen, so making room costs O(1), not a scan.
      this.clients.delete(id);
      this.clients.set(id, known);
      const changed = known.peer.address !== peer.address || known.peer.port !== peer.port
        || compareVersions(known.version, version) !== 0 || JSON.stringify(known.product) !== JSON.stringify(product);
      const cameBack = !this.isOnline(known, now);
      known.peer = peer; // a device that moved (DHCP, NAT rebinding) keeps its identity
      known.version = version;
      known.product = product;
      known.lastSeen = now;
      known.lastSeenAt = wallNow.toISOString();
      return { record: known, isNew: false, changed, cameBack };
    }
    if (this.clients.size >= this.maxClients && !this.evictOneOffline(now)) return undefined;
    const record: ClientRecord = {
      id, peer, version, product, lastSeen: now, lastSeenAt: wallNow.toISOString(), tags: [], updateState: UpdateState.idle, updateResult: UpdateResult.initial,
    };
    this.clients.set(id, record);
    return { record, isNew: true, changed: true, cameBack: true };
  }

  /** Clients saved before a restart: known, offline until they renew. */
  restore(saved: readonly SavedClient[]): void {
    for (const c of saved) {
      if (this.clients.has(c.id) || this.clients.size >= this.maxClients) continue;
      this.clients.set(c.id, {
        id: c.id, peer: { address: c.address, port: c.port }, version: c.version, product: c.product,
        lastSeen: -Infinity, lastSeenAt: c.lastSeenAt, tags: [...c.tags], updateState: c.updateState ?? UpdateState.idle, updateResult: c.updateResult ?? UpdateResult.initial,
      });
    }
  }

  saved(): SavedClient[] {
    return this.all().map(toSaved);
  }

  /** What is kept of one client, or undefined when it is not in the registry. */
  savedOne(id: string): SavedClient | undefined {
    const c = this.clients.get(id);
    return c && toSaved(c);
  }

  /** Put a client in a group (false if it already was). */
  tag(id: string, group: string): boolean {
    const c = this.clients.get(id);
    if (!c || c.tags.includes(group)) return false;
    c.tags.push(group);
    return true;
  }

  untag(id: string, group: string): boolean {
    const c = this.clients.get(id);
    if (!c || !c.tags.includes(group)) return false;
    c.tags = c.tags.filter((t) => t !== group);
    return true;
  }

  private evictOneOffline(now: number): boolean {
    const oldest = this.clients.values().next().value;
    if (!oldest || this.isOnline(oldest, now)) return false;
    this.clients.delete(oldest.id);
    return true;
  }

  remove(id: string): void {
    this.clients.delete(id);
  }

  get(id: string): ClientRecord | undefined {
    return this.clients.get(id);
  }

  isOnline(record: ClientRecord, now: number): boolean {
    return now - record.lastSeen < this.leaseMs;
  }

  online(now: number): ClientRecord[] {
    return [...this.clients.values()].filter((c) => this.isOnline(c, now));
  }

  all(): ClientRecord[] {
    return [...this.clients.values()];
  }
}
