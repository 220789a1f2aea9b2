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

export class Registry {
  private readonly clients = new Map<string, ClientRecord>();

  constructor(readonly leaseMs = DEFAULT_LEASE_MS) {}

  register(id: string, peer: Peer, version: ReleaseVersion, product: ProductInfo, now: number): { record: ClientRecord; isNew: boolean } {
    const known = this.clients.get(id);
    if (known) {
      known.peer = peer; // a device that moved (DHCP, NAT rebinding) keeps its identity
      known.version = version;
      known.product = product;
      known.lastSeen = now;
      return { record: known, isNew: false };
    }
    const record: ClientRecord = { id, peer, version, product, firstSeen: now, lastSeen: now };
    this.clients.set(id, record);
    return { record, isNew: true };
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
