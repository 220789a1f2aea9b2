/**
 * The fleet registry on disk: `clients.json` in the state dir, written atomically (temp file,
 * fsync, rename), so a server killed at any moment restarts with the old list or the new, never a
 * torn one. Registrations are soft state (every client renews within seconds), so the server saves
 * them at most once a second; operator decisions (tags) are saved at once.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NxtError, errorMessage } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import type { SavedClient } from './registry.js';

export const FLEET_FILE = 'clients.json';

export function loadFleet(dir: string): SavedClient[] {
  const path = join(dir, FLEET_FILE);
  if (!existsSync(path)) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new NxtError('bad-state', `${path} is not readable JSON (${errorMessage(err)}): restore it from a backup, or delete it (clients reappear as they renew, without their tags)`);
  }
  const list = (parsed as { clients?: unknown }).clients;
  if (!Array.isArray(list) || !list.every(isSavedClient)) throw new NxtError('bad-state', `${path} is not a list of clients`);
  return list;
}

export function saveFleet(dir: string, clients: readonly SavedClient[]): void {
  writeFileAtomic(join(dir, FLEET_FILE), `${JSON.stringify({ version: 1, clients })}\n`);
}

function isSavedClient(c: unknown): c is SavedClient {
  const x = c as Record<string, unknown>;
  return typeof x === 'object' && x !== null && typeof x.id === 'string' && typeof x.address === 'string' && typeof x.port === 'number'
    && typeof x.version === 'object' && typeof x.product === 'object' && typeof x.lastSeenAt === 'string' && Array.isArray(x.tags);
}
