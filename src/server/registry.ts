/**
 * Registered clients, keyed by the id each client chose for itself (not by "whoever sent last").
 * A registration is a lease: a client that has not renewed within `leaseMs` is offline.
 */
import type { ProductInfo } from '../protocol/messages.js';
import type { ReleaseVersion } from '../protocol/release-version.js';
import type { Peer } from '../net/endpoint.js';

export interface ClientRecord {
  readonly id: string;
  peer: Peer;
  version: ReleaseVersion;
  product: ProductInfo;
  readonly firstSeen: number;
  lastSeen: number;
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

  /** Undefined when the registry is full of online clients. */
  register(id: string, peer: Peer, version: ReleaseVersion, product: ProductInfo, now: number): { record: ClientRecord; isNew: boolean } | undefined {
    const known = this.clients.get(id);
    if (known) {
      // Keep the map ordered by last renewal (a Map iterates in insertion order): the first
      // entry is always the least recently seen, so making room costs O(1), not a scan.
      this.clients.delete(id);
      this.clients.set(id, known);
      known.peer = peer; // a device that moved (DHCP, NAT rebinding) keeps its identity
      known.version = version;
      known.product = product;
      known.lastSeen = now;
      return { record: known, isNew: false };
    }
    if (this.clients.size >= this.maxClients && !this.evictOneOffline(now)) return undefined;
    const record: ClientRecord = { id, peer, version, product, firstSeen: now, lastSeen: now };
    this.clients.set(id, record);
    return { record, isNew: true };
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
