/**
 * The fleet registry on disk: `clients.json` in the state dir, written atomically (temp file,
 * fsync, rename), so a server killed at any moment restarts with the old list or the new, never a
 * torn one. Registrations are soft state (every client renews within seconds), so the server saves
 * them at most once a second; operator decisions (tags) are saved at once.
 */
import { join } from 'node:path';
import { readStateFile, writeFileAtomic } from '../util/atomic-file.js';
import type { SavedClient } from './registry.js';

export const FLEET_FILE = 'clients.json';

export function loadFleet(dir: string): SavedClient[] {
  return readStateFile(join(dir, FLEET_FILE), (text) => {
    const list = (JSON.parse(text) as { clients?: unknown }).clients;
    if (!Array.isArray(list) || !list.every(isSavedClient)) throw new Error('not a list of clients');
    return list;
  }) ?? [];
}

export function saveFleet(dir: string, clients: readonly SavedClient[]): void {
  writeFileAtomic(join(dir, FLEET_FILE), `${JSON.stringify({ version: 1, clients })}\n`);
}

function isSavedClient(c: unknown): c is SavedClient {
  const x = c as Record<string, unknown>;
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.address === 'string' && typeof x.port === 'number'
    && typeof x.version === 'object' && typeof x.product === 'object' && typeof x.lastSeenAt === 'string' && Array.isArray(x.tags);
}
